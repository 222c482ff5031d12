//! Holding an escalated request: audited, then stored durably, before the agent hears anything;
//! or, for an identical retry of a request still held, joined to its review (`joins.rs`).

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use super::events::{escalation_event, joined_event};
use super::joins::{Found, Join};
use super::review::{self, Review, ReviewState, StoredRequest};
use super::{new_id, Gate, GateError, HeldRequest, Hold, HoldRefusal, WAIT_HEADER};
use crate::audit::AuditError;
use crate::rules::Verdict;
use crate::store::{Batch, StoreError, Tree};

/// Airlock's own control headers, never stored with a held request. Credential-like headers are
/// never stored either: see `build_review`.
const NOT_STORED: &[&str] = &["airlock-wait", "host"];

/// Times a hold reads its join entries again after a concurrent identical hold took the slot
/// it expected free (the second read finds that hold's review and joins it).
const JOIN_ATTEMPTS: usize = 8;

/// Most identical resends one review takes, each with its `decision` entry; past it a resend
/// is refused (429) and recorded nowhere, so an agent resending in a loop cannot fill the
/// audit log. Clients retry a handful of times; one polling by resending is told to poll the
/// status URL instead.
pub const MOST_JOINS: usize = 100;

/// What [`Gate::store_or_join`] did.
enum Landed {
    /// Stored as a new review.
    New(Box<Review>),
    /// An identical request's review, joined.
    Joined(Box<Review>),
}

impl Gate {
    /// Stores an escalated request durably, before the agent hears anything. When the agent or
    /// the rule asked to wait, waits for a decision and an execution within the limit. The
    /// proxy renders the outcome. `gone` ends when the sending agent is no longer in force: a
    /// wait then ends at once with [`Hold::AgentGone`], so a removed agent hears nothing more.
    pub async fn hold(
        self: &Arc<Self>,
        req: HeldRequest,
        verdict: Verdict,
        gone: impl std::future::Future<Output = ()>,
    ) -> Hold {
        let mut gone = std::pin::pin!(gone);
        let wait = requested_wait(&req.headers, &verdict, self.cfg.max_wait);
        let added = req.agent_added_ms;
        let review = match self.build_review(req, &verdict) {
            Ok(r) => r,
            Err(e) => return Hold::Refused(HoldRefusal::Unstorable(e.to_string())),
        };
        let cap = self.cfg.max_pending_per_agent;
        // The agent's count and its new review in one turn (kept until the write ends, even if
        // the agent goes away meanwhile), so its concurrent holds cannot pass the cap together.
        let turn = match review.agent.as_deref().filter(|_| cap > 0) {
            Some(agent) => Some(self.hold_turns.take(agent).await),
            None => None,
        };
        // One trip to a blocking thread (each trip is a thread handoff).
        let held = self
            .blocking(move |g| {
                let _turn = turn;
                g.store_or_join(review, added, cap)
            })
            .await;
        let (review, joined) = match held {
            Ok(Ok(Landed::New(r))) => (r, false),
            Ok(Ok(Landed::Joined(r))) => (r, true),
            Ok(Err(refusal)) => return Hold::Refused(refusal),
            Err(e) => {
                tracing::error!(error = %e, "could not store a held request; refusing it (fail closed)");
                return Hold::Refused(HoldRefusal::StoreUnavailable);
            }
        };
        if joined {
            tracing::info!(target: "airlock::gate", review = %review.id, state = review.state.as_str(), "an identical request joined the review");
        } else {
            self.changes.send_modify(|v| *v += 1);
            tracing::info!(target: "airlock::gate", review = %review.id, tool = review.tool.as_deref().unwrap_or("-"), "request held for review");
            // Never blocks: a full or failing channel cannot hold up the gate.
            self.notifier.escalated(review.escalation());
        }
        // A wait takes one of the agent's wait slots, as a status wait does; with none left the
        // hold is answered at once (it is stored; the agent may poll it).
        let agent = review.agent.as_deref().unwrap_or(crate::agents::ANONYMOUS);
        let slot = wait.and_then(|w| Some((w, self.waits.enter(agent)?)));
        if let Some((wait, _slot)) = slot {
            // A failed wait is read again once: the review may have been approved and sent
            // meanwhile, so the pending snapshot taken at the hold would say "not sent" falsely.
            let waited = tokio::select! {
                waited = self.wait_final(&review.id, wait) => waited,
                () = &mut gone => return Hold::AgentGone(review),
            };
            let waited = match waited {
                Ok(r) => Ok(r),
                Err(e) => {
                    tracing::warn!(review = %review.id, error = %e, "a held call's wait could not read its review; reading it once more");
                    self.get(&review.id).await
                }
            };
            let Ok(mut done) = waited else {
                return Hold::Unknown(review);
            };
            if matches!(done.state, ReviewState::Approved | ReviewState::Executing) {
                // Approved and being sent at the deadline: its outcome is at most the send's
                // timeout away, and "not sent" would be false.
                let more = self.cfg.execution_timeout + Duration::from_secs(5);
                tokio::select! {
                    later = self.wait_final(&review.id, more) => if let Ok(later) = later {
                        done = later;
                    },
                    () = &mut gone => return Hold::AgentGone(review),
                }
            }
            if done.state.is_final() {
                return Hold::Finished(Box::new(done));
            }
            // Answered with the review as it is now, so the answer says what is true.
            return Hold::Held(Box::new(done));
        }
        // A joined review that failed, or whose outcome is unknown, is answered as such.
        if review.state.is_final() {
            return Hold::Finished(review);
        }
        Hold::Held(review)
    }

    /// Joins the review of an identical request of the agent that may still be sent (with a
    /// `decision` entry naming it), or stores `review` with its entry: the decision is recorded
    /// with the review, before anything is answered (no audit, no hold). A concurrent identical
    /// hold that took the same join slot first is read and joined. `added`: when the agent's
    /// entry was added; reviews created before it are another agent's, never joined.
    fn store_or_join(
        &self,
        mut review: Review,
        added: Option<u64>,
        cap: usize,
    ) -> Result<Result<Landed, HoldRefusal>, GateError> {
        let agent = review.agent.clone().unwrap_or_default();
        for _ in 0..JOIN_ATTEMPTS {
            let now = self.clock.now_ms();
            if let Some(join) = review.join.as_mut() {
                match super::joins::find(self.store.as_ref(), &agent, added, join, now)? {
                    Found::Same(held, record) => {
                        let joins = self
                            .audit
                            .join_count(&held.id, MOST_JOINS)
                            .map_err(|e| GateError::Store(StoreError::Io(e.to_string())))?;
                        if joins >= MOST_JOINS {
                            return Ok(Err(HoldRefusal::TooManyResends {
                                review: held.id,
                                most: MOST_JOINS,
                            }));
                        }
                        // Only while the review is as read: one decided, expired or sent
                        // meanwhile is not joined (read again: this request is held anew).
                        let mut unchanged = Batch::default();
                        unchanged.expect(Tree::Reviews, held.id.as_bytes(), Some(&record));
                        return match self
                            .audit
                            .append_if(joined_event(&review, &held), unchanged)
                        {
                            Ok(crate::audit::Landed::Changed) => continue,
                            Ok(_) => Ok(Ok(Landed::Joined(held))),
                            Err(e) => {
                                tracing::error!(error = %e, "could not audit a request joining its review; refusing it (fail closed)");
                                Ok(Err(HoldRefusal::AuditUnavailable))
                            }
                        };
                    }
                    Found::KeyReused(held) => {
                        let key = review
                            .request
                            .headers
                            .iter()
                            .find(|(k, _)| k == "idempotency-key")
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default();
                        return Ok(Err(HoldRefusal::KeyReused {
                            key,
                            review: held.id,
                        }));
                    }
                    Found::Vacant(Some(slot)) => join.slot = slot,
                    Found::Vacant(None) => review.join = None,
                }
            }
            // Checked before the entry is written (a refused call is not a review; a retry that
            // joins one is not counted again). Reviews past their deadline do not count, swept
            // or not.
            if cap > 0
                && super::index::pending_of_agent(self.store.as_ref(), &agent, now, cap)? >= cap
            {
                return Ok(Err(HoldRefusal::TooManyPending(cap)));
            }
            let bytes = review.encode().map_err(|e| GateError::Corrupt {
                id: review.id.clone(),
                message: e.to_string(),
            })?;
            let mut batch = Batch::default();
            batch.expect(Tree::Reviews, review.id.as_bytes(), None).put(
                Tree::Reviews,
                review.id.as_bytes(),
                &bytes,
            );
            // The join slot is taken here, or by a concurrent identical hold: then read again.
            if let Some(join) = &review.join {
                let mut k = super::index::join_prefix(&agent, &join.identity);
                k.extend_from_slice(&join.slot.to_be_bytes());
                batch.expect(Tree::Index, &k, None);
            }
            super::index::reindex(&mut batch, None, Some(&review));
            // The entry and the review in one transaction (both or neither), group-committed
            // with concurrent holds: one fsync for many.
            match self.audit.append_if(escalation_event(&review), batch) {
                // Unflushed: stored, maybe not for good; if lost, nothing was sent.
                Ok(crate::audit::Landed::Durable | crate::audit::Landed::Unflushed) => {
                    return Ok(Ok(Landed::New(Box::new(review))))
                }
                Ok(crate::audit::Landed::Changed) => continue,
                // The two could not be stored together: the decision is recorded alone if it
                // can be (then the review store failed), else the audit log did.
                Err(AuditError::Store(e))
                    if self.audit.append(escalation_event(&review)).is_ok() =>
                {
                    return Err(GateError::Store(e))
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not audit an escalation; refusing it (fail closed)");
                    return Ok(Err(HoldRefusal::AuditUnavailable));
                }
            }
        }
        Err(GateError::Contention(review.id))
    }

    fn build_review(&self, req: HeldRequest, verdict: &Verdict) -> Result<Review, GateError> {
        let now = self.clock.now_ms();
        let id = super::new_review_id(now);
        let expiry = verdict.expiry.unwrap_or(self.cfg.review_expiry);
        let mut headers = Vec::new();
        let mut redacted: Vec<String> = Vec::new();
        for (name, value) in req.headers.iter() {
            let n = name.as_str();
            if NOT_STORED.contains(&n) || !crate::wire::is_forwarded_request_header(n) {
                continue;
            }
            // Credential-like headers (the built-in list, the name patterns and every configured
            // `strip` list) are dropped, not stored as "[redacted]": the stored request is what
            // executes, the real credential is injected at execution, and a placeholder would be
            // sent upstream as if it were a value. A non-credential header that merely matches a
            // pattern (say `X-Signature`) is therefore not sent either; its name is kept in
            // `redacted_headers` so reviewers see that it was withheld.
            if self.vault.is_secret_header(n) {
                if !redacted.iter().any(|r| r == n) {
                    redacted.push(n.to_string());
                }
                continue;
            }
            let v = value.to_str().map_err(|_| {
                GateError::BadRequest(format!(
                    "header {n} is not valid text; held requests must be replayable"
                ))
            })?;
            headers.push((n.to_string(), v.to_string()));
        }
        let is_stripe =
            verdict.service.as_deref() == Some("stripe") || req.target.host == "api.stripe.com";
        let mut request = StoredRequest {
            scheme: req.scheme,
            host: req.target.host.clone(),
            port: req.target.port,
            method: req.method,
            path_and_query: req.path_and_query,
            headers,
            body_b64: review::b64(&req.body),
        };
        // What the agent sent, before Airlock's own key: a retry sends the same.
        let join = Join::of(&request, &req.body, is_stripe);
        if is_stripe && !request.headers.iter().any(|(k, _)| k == "idempotency-key") {
            request
                .headers
                .push(("idempotency-key".into(), format!("airlock-{id}")));
        }
        let mut review = Review::new(
            id,
            new_id("dec"),
            verdict,
            request,
            now,
            now.saturating_add(expiry.as_millis() as u64),
        );
        review.redacted_headers = redacted;
        review.agent = Some(req.agent);
        review.agent_owner = req.agent_owner;
        review.agent_added_ms = req.agent_added_ms;
        review.policy = verdict.approval.clone().unwrap_or_default();
        review.join = Some(join);
        Ok(review)
    }
}

fn requested_wait(headers: &HeaderMap, verdict: &Verdict, max: Duration) -> Option<Duration> {
    let asked = headers
        .get(WAIT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .or(verdict.wait)?;
    (!asked.is_zero()).then(|| asked.min(max))
}
