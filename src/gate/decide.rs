//! Reading reviews and deciding them: approve (up to the quorum), reject, retry, extend.

use std::sync::Arc;
use std::time::Duration;

use super::index;
use super::review::{self, Review, ReviewState};
use super::{Gate, GateError, Reviewer};
use crate::store::StoreError;

/// Reviews a bulk rejection reads per page.
const BULK_PAGE: usize = 100;

/// What [`Gate::reject_pending`] did: the reviews it rejected, those it could not (id, why),
/// and whether pending reviews of the agent are left past `most`.
#[derive(Debug, Default)]
pub struct BulkRejection {
    pub rejected: Vec<String>,
    pub failed: Vec<(String, String)>,
    pub more: bool,
}

/// How often a wait reads its review even though no change of it was heard of: a change notice
/// lost (a store feed that dropped one unnoticed) delays a wait's answer by at most this.
pub const WAIT_RECHECK: Duration = Duration::from_secs(30);

/// How far ahead of now `extend` may move a review's deadline.
pub const MAX_EXTEND_AHEAD: Duration = Duration::from_secs(7 * 86_400);

impl Gate {
    // ---- reading ----

    pub async fn get(self: &Arc<Self>, id: &str) -> Result<Review, GateError> {
        let id = id.to_string();
        self.blocking(move |g| g.load(&id).map(|(_, r)| r)).await
    }

    /// [`Gate::get`] holding `turn` until the read itself ends (on its blocking thread), not
    /// merely until the caller stops waiting for it: a caller that goes away early (a reset
    /// stream) does not give its turn back while the read still runs.
    pub async fn get_in_turn(
        self: &Arc<Self>,
        id: &str,
        turn: super::Turn,
    ) -> Result<Review, GateError> {
        let id = id.to_string();
        self.blocking(move |g| {
            let _turn = turn;
            g.load(&id).map(|(_, r)| r)
        })
        .await
    }

    /// One page of reviews matching `q`: pending ones soonest expiry first, others newest
    /// first (see `index.rs`); `cursor` comes from the previous page.
    pub async fn list_page(
        self: &Arc<Self>,
        q: index::Query,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<index::Page, GateError> {
        self.blocking(move |g| index::page(g.store.as_ref(), &q, limit, cursor.as_deref()))
            .await
    }

    /// How many reviews are in each state (counters, no scan).
    pub async fn totals(self: &Arc<Self>) -> Result<Vec<(ReviewState, u64)>, GateError> {
        self.blocking(|g| Ok(index::totals(g.store.as_ref())?))
            .await
    }

    /// Waits up to `timeout` (or until shutdown, [`Gate::end_waits`]) for review `id` to reach
    /// a final state; returns it as it then is. Reads the review again only when it changed
    /// (`wakeups.rs`), or every [`WAIT_RECHECK`] should a change notice be lost.
    pub async fn wait_final(
        self: &Arc<Self>,
        id: &str,
        timeout: Duration,
    ) -> Result<Review, GateError> {
        let mut interest = self.wakeups.register(id);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            interest.seen();
            let r = self.wait_read(id).await?;
            if r.state.is_final() {
                return Ok(r);
            }
            let recheck = deadline.min(tokio::time::Instant::now() + WAIT_RECHECK);
            tokio::select! {
                _ = interest.changed() => {}
                _ = tokio::time::sleep_until(recheck) => if recheck >= deadline {
                    return self.wait_read(id).await;
                },
                // Shutting down: answered now, as at the deadline, so the drain is not held.
                _ = self.waits.closed() => return self.wait_read(id).await,
            }
        }
    }

    /// A wait's read of its review, counted ([`Gate::wait_reads`]).
    async fn wait_read(self: &Arc<Self>, id: &str) -> Result<Review, GateError> {
        self.wakeups.count_read();
        self.get(id).await
    }

    /// Ends every wait ([`Gate::wait_final`]) now and from now on, at shutdown: each answers at
    /// once with its review as it is then (what a wait that timed out answers), so an agent's
    /// long poll neither holds the drain nor goes unanswered.
    pub fn end_waits(&self) {
        self.waits.close();
    }

    // ---- deciding ----

    /// `reviewer`'s decision, stamped now.
    fn decision_by(&self, reviewer: &Reviewer, comment: Option<String>) -> review::Decision {
        let who = self.people.current().effective(reviewer);
        review::Decision {
            by: who.name,
            at_ms: self.clock.now_ms(),
            comment,
            admin_token: who.admin_token,
        }
    }

    /// Approves a pending review and executes it; returns the review after execution.
    /// Records `reviewer`'s approval; once the review's quorum is reached, executes it (once).
    /// Below the quorum the review stays pending and is returned as is.
    pub async fn approve(
        self: &Arc<Self>,
        id: &str,
        reviewer: &Reviewer,
        comment: Option<String>,
    ) -> Result<Review, GateError> {
        let decision = self.decision_by(reviewer, comment);
        let id_owned = id.to_string();
        let who = reviewer.clone();
        let approved = match self
            .blocking(move |g| g.decide(&id_owned, ReviewState::Approved, decision, &who))
            .await
        {
            Ok(r) if r.state == ReviewState::Pending => return Ok(r),
            Ok(r) => r,
            Err(e) => return Err(unrecorded("approval", e)),
        };
        self.execute_tracked(approved.id).await
    }

    /// Executes in a tracked task so a disconnecting caller cannot cut the send short.
    async fn execute_tracked(self: &Arc<Self>, id: String) -> Result<Review, GateError> {
        let me = self.clone();
        let handle = self.tasks.spawn(async move { me.execute(&id).await });
        match handle.await {
            Ok(r) => r,
            Err(e) => Err(GateError::Store(StoreError::Io(format!(
                "execution task failed: {e}"
            )))),
        }
    }

    /// A human retry of a review whose send `failed` or has an `outcome_unknown`: the same stored
    /// request (same `Idempotency-Key`, so Stripe answers a duplicate POST with the first
    /// result) is sent once more. Only within the review's deadline, only by people allowed to
    /// approve it, and only once the review's quorum is reached afresh: below it the retry
    /// approval is recorded (`retry_approvals`) and the review is returned as it is. The
    /// earlier execution is kept in `attempts`.
    pub async fn retry(
        self: &Arc<Self>,
        id: &str,
        reviewer: &Reviewer,
        comment: Option<String>,
    ) -> Result<Review, GateError> {
        self.retry_seen(id, reviewer, comment, None).await
    }

    /// [`Gate::retry`], tied to the attempt the reviewer saw: with `seen` (the review's
    /// [`Review::attempt_count`] as shown to her), a review on which another attempt was made
    /// since is not retried (`Changed`): she decided about an outcome that is no longer the
    /// last one.
    pub async fn retry_seen(
        self: &Arc<Self>,
        id: &str,
        reviewer: &Reviewer,
        comment: Option<String>,
        seen: Option<usize>,
    ) -> Result<Review, GateError> {
        let decision = self.decision_by(reviewer, comment);
        let id_owned = id.to_string();
        let reviewer = reviewer.clone();
        let retried = self
            .blocking(move |g| {
                let now = g.clock.now_ms();
                let lease_ms = u64::try_from(g.cfg.execution_lease.as_millis()).unwrap_or(u64::MAX);
                let people = g.people.current();
                g.transition(&id_owned, |cur| {
                    if !matches!(
                        cur.state,
                        ReviewState::Failed | ReviewState::OutcomeUnknown
                    ) {
                        return Err(GateError::BadRequest(format!(
                            "review {} is {}; only failed or outcome_unknown reviews can be retried",
                            cur.id,
                            cur.state.as_str()
                        )));
                    }
                    // Closed by a sweep (on another instance's clock, or before this clock
                    // stepped back): its secrets are sealed, so what is stored is no longer the
                    // call the agent made.
                    if now >= cur.expires_at_ms || cur.retry_closed || cur.sealed_secrets > 0 {
                        return Err(GateError::Expired {
                            id: cur.id.clone(),
                            at: review::rfc3339(cur.expires_at_ms),
                        });
                    }
                    if let Some(seen) = seen.filter(|n| *n != cur.attempt_count()) {
                        return Err(GateError::Changed(format!(
                            "review {} has had {} send attempts, not the {seen} shown when this retry was asked for: another attempt was made meanwhile; read its outcome before retrying",
                            cur.id,
                            cur.attempt_count()
                        )));
                    }
                    cur.may_send(&reviewer, &people, "retry")
                        .map_err(GateError::Forbidden)?;
                    cur.retry_window(now.saturating_add(lease_ms))
                        .map_err(GateError::BadRequest)?;
                    if cur.already(&cur.retry_approvals, &reviewer, &people) {
                        return Err(GateError::Forbidden(format!(
                            "{} already asked for this retry; it needs {} distinct reviewers",
                            decision.by, cur.policy.most_required()
                        )));
                    }
                    let mut next = cur.clone();
                    next.retry_approvals.push(decision.clone());
                    if !next.quorum_met(&next.retry_approvals, &people) {
                        return Ok(next);
                    }
                    next.state = ReviewState::Approved;
                    if let Some(e) = next.execution.take() {
                        next.attempts.push(e);
                    }
                    next.retries.append(&mut next.retry_approvals);
                    Ok(next)
                })
            })
            .await;
        match retried {
            // Below the quorum: recorded, not sent.
            Ok(r) if r.state != ReviewState::Approved => Ok(r),
            Ok(r) => self.execute_tracked(r.id).await,
            Err(e) => Err(unrecorded("retry", e)),
        }
    }

    pub async fn reject(
        self: &Arc<Self>,
        id: &str,
        reviewer: &Reviewer,
        comment: Option<String>,
    ) -> Result<Review, GateError> {
        let decision = self.decision_by(reviewer, comment);
        let id = id.to_string();
        let who = reviewer.clone();
        self.blocking(move |g| g.decide(&id, ReviewState::Rejected, decision, &who))
            .await
    }

    /// Rejects up to `most` of `agent`'s pending reviews, soonest expiry first, a page at a
    /// time, each as [`Gate::reject`] does it (its own check of who may decide, its own
    /// transition and audit entry): what an operator does when an agent went wrong. A review
    /// decided meanwhile is skipped; one this reviewer may not reject is listed in `failed`.
    /// `more`: a pending review of the agent is left past those `most` (one more read tells).
    ///
    /// Review of session 22: `more` was true whenever exactly `most` were processed, also when
    /// none was left.
    pub async fn reject_pending(
        self: &Arc<Self>,
        agent: &str,
        reviewer: &Reviewer,
        comment: Option<String>,
        most: usize,
    ) -> Result<BulkRejection, GateError> {
        let query = index::Query {
            state: Some(ReviewState::Pending),
            agent: Some(agent.to_string()),
            tool: None,
        };
        let mut done = BulkRejection::default();
        let mut cursor = None;
        loop {
            let left = most.saturating_sub(done.rejected.len() + done.failed.len());
            if left == 0 {
                // Past `most`: is a pending review of the agent left after those looked at?
                done.more = !self.list_page(query, 1, cursor).await?.reviews.is_empty();
                return Ok(done);
            }
            let page = self
                .list_page(query.clone(), left.min(BULK_PAGE), cursor)
                .await?;
            for r in &page.reviews {
                match self.reject(&r.id, reviewer, comment.clone()).await {
                    Ok(_) => done.rejected.push(r.id.clone()),
                    Err(GateError::AlreadyDecided { .. }) => {}
                    Err(e) => done.failed.push((r.id.clone(), e.to_string())),
                }
            }
            match page.next_cursor {
                Some(next) if !page.reviews.is_empty() => cursor = Some(next),
                _ => return Ok(done),
            }
        }
    }

    /// Moves a pending review's deadline `by` later, at most [`MAX_EXTEND_AHEAD`] ahead of now
    /// (never earlier than it was). Held to the same policy as approving: the agent's owner may
    /// not keep her own agent's request waiting, nor may the admin token unless it may approve.
    /// The flag: the ceiling cut the extension short (the deadline is less than `by` later).
    pub async fn extend(
        self: &Arc<Self>,
        id: &str,
        reviewer: &Reviewer,
        by: Duration,
    ) -> Result<(Review, bool), GateError> {
        let id = id.to_string();
        let reviewer = reviewer.clone();
        self.blocking(move |g| {
            let now = g.clock.now_ms();
            let people = g.people.current();
            let capped = std::cell::Cell::new(false);
            let review = g.transition(&id, |cur| {
                if cur.state != ReviewState::Pending || now >= cur.expires_at_ms {
                    return Err(GateError::AlreadyDecided {
                        id: id.clone(),
                        state: if cur.state == ReviewState::Pending {
                            "expired"
                        } else {
                            cur.state.as_str()
                        },
                    });
                }
                cur.may_send(&reviewer, &people, "extend")
                    .map_err(GateError::Forbidden)?;
                let mut next = cur.clone();
                // At most 7 days ahead, but never earlier than it was (a rule's own expiry may
                // be longer than that).
                let ceiling = now.saturating_add(MAX_EXTEND_AHEAD.as_millis() as u64);
                let asked = cur
                    .expires_at_ms
                    .saturating_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX));
                capped.set(asked > ceiling);
                next.expires_at_ms = asked.min(ceiling).max(cur.expires_at_ms);
                Ok(next)
            })?;
            Ok((review, capped.get()))
        })
        .await
    }

    /// pending -> approved (once the quorum is reached; below it the approval is recorded and
    /// the review stays pending) | rejected; past its deadline a review becomes expired instead.
    /// Enforces the review's approver list, the self-approval rule and the admin token's limits;
    /// the quorum counts only approvals that stand with the reviewers in force now.
    fn decide(
        &self,
        id: &str,
        to: ReviewState,
        decision: review::Decision,
        who: &Reviewer,
    ) -> Result<Review, GateError> {
        let people = self.people.current();
        let r = self.transition(id, |cur| {
            // Read per attempt: a decision retried after a conflict is judged at its own time.
            let now = self.clock.now_ms();
            if cur.state != ReviewState::Pending {
                return Err(GateError::AlreadyDecided {
                    id: id.to_string(),
                    state: cur.state.as_str(),
                });
            }
            let mut next = cur.clone();
            if now >= cur.expires_at_ms {
                next.state = ReviewState::Expired;
                return Ok(next);
            }
            let by = &decision.by;
            if to == ReviewState::Rejected {
                // Rejecting sends nothing, so an agent's owner may reject; the list still applies
                // (the admin token may always reject).
                cur.may_reject(who, &people).map_err(GateError::Forbidden)?;
                next.state = ReviewState::Rejected;
                next.decision = Some(decision.clone());
                return Ok(next);
            }
            cur.may_send(who, &people, "approve")
                .map_err(GateError::Forbidden)?;
            if cur.already(&cur.approvals, who, &people) {
                return Err(GateError::Forbidden(if decision.admin_token {
                    format!(
                        "the admin token already approved; it counts as one approver whatever name it gives, and this review needs {} distinct reviewers",
                        cur.policy.most_required()
                    )
                } else {
                    format!(
                        "{by} already approved; this review needs {} distinct reviewers",
                        cur.policy.most_required()
                    )
                }));
            }
            next.approvals.push(decision.clone());
            if next.quorum_met(&next.approvals, &people) {
                next.state = ReviewState::Approved;
                next.decision = Some(decision.clone());
            }
            Ok(next)
        })?;
        if r.state == ReviewState::Expired {
            return Err(GateError::Expired {
                id: id.to_string(),
                at: review::rfc3339(r.expires_at_ms),
            });
        }
        Ok(r)
    }
}

/// A decision that would send the request (an approval, a retry) whose commit failed: neither
/// it nor its audit entry was written (they land together), so the review is as it was and
/// nothing was sent; unless the commit's outcome is unknown (its answer was lost and could not
/// be settled): then it may have landed, and a sweep would send it. Other errors pass as they
/// are.
fn unrecorded(what: &str, e: GateError) -> GateError {
    match e {
        GateError::Store(StoreError::InDoubt(why)) => GateError::Audit(format!(
            "the {what} may or may not have been recorded ({why}): read the review before \
             deciding again; if it was recorded, the request is sent as approved"
        )),
        GateError::Audit(why) => GateError::Audit(format!(
            "the {what} could not be recorded ({why}); nothing changed and the request was not sent"
        )),
        GateError::Store(why) => GateError::Audit(format!(
            "the {what} could not be recorded ({why}); nothing changed and the request was not sent"
        )),
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_whose_commit_is_in_doubt_is_not_told_nothing_changed() {
        let doubt = unrecorded(
            "approval",
            GateError::Store(StoreError::InDoubt("answer lost".into())),
        )
        .to_string();
        assert!(
            doubt.contains("may or may not have been recorded"),
            "{doubt}"
        );
        assert!(!doubt.contains("nothing changed"), "{doubt}");
        let failed = unrecorded("approval", GateError::Store(StoreError::Io("down".into())));
        assert!(failed.to_string().contains("nothing changed"), "{failed}");
    }
}
