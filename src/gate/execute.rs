//! Execution of an approved review: claim it (`approved -> executing`, durable), send the
//! stored request once, record the upstream's answer.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::BodyExt;

use super::review::{b64, Execution, Review, ReviewState, StoredRequest};
use super::{Gate, GateError};
use crate::upstream::permit::{self, Permitted};
use crate::upstream::Upstream;
use crate::wire::{full, Body};

enum Outcome {
    Answered {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        truncated: bool,
        /// The body is not kept: it came compressed from a credentialed host, so it could not
        /// be checked for the credential ([`crate::credentials::scrub::UPSTREAM_ENCODING`]).
        withheld: bool,
        /// Secret-named fields of the body masked before storing (a minted token, a webhook's
        /// signing secret, a client secret).
        masked: usize,
    },
    /// Certainly not sent: no byte left (egress refused, resolving, connecting or the TLS
    /// handshake failed, or the stored request is unusable).
    NotSent(String),
    /// Some or all of the request may have reached the upstream: the connection broke after
    /// it was up, the answer was malformed, missing, cut short or too slow.
    Unknown(String),
}

impl Outcome {
    /// The upstream's status, when it answered.
    fn answered_status(&self) -> Option<u16> {
        match self {
            Outcome::Answered { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// For the log: the status, or why there is none.
    fn summary(&self) -> String {
        match self {
            Outcome::Answered { status, .. } => format!("answered {status}"),
            Outcome::NotSent(e) => format!("not sent: {e}"),
            Outcome::Unknown(e) => format!("unknown: {e}"),
        }
    }
}

/// A review's audit entries read before its claim: far more than any review makes.
const MOST_ENTRIES: usize = 10_000;

/// What a send of `review` would rest on that its audit `entries` do not show, if anything:
/// its move to `approved` (the last transition on record), each approval, each retry's. Each
/// decision needs an entry of its own: a reviewer who decided twice (a retry after an earlier
/// one) needs two.
/// How long after an approval its audit entry may still be on its way: never, now that an
/// approval and its entry are one commit, but an instance of an earlier version sharing the
/// store (a rolling upgrade) writes the review, then appends the entry. A sweep's claim in
/// that time that finds no entry leaves the review approved for a later sweep; after it, the
/// review fails unsent.
const APPROVAL_ENTRY_SETTLE_MS: u64 = 60_000;

fn missing_from_record(review: &Review, entries: &[serde_json::Value]) -> Option<String> {
    let field = |e: &serde_json::Value, name: &str| -> Option<String> {
        e.get(name).and_then(|v| v.as_str()).map(str::to_string)
    };
    let transitions: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| field(e, "kind").as_deref() == Some("review"))
        .collect();
    if transitions.last().and_then(|e| field(e, "to")).as_deref() != Some("approved") {
        return Some("its approval".into());
    }
    // The first of `decisions` left without an entry naming its reviewer in `name`.
    let unrecorded = |decisions: &[super::review::Decision], name: &str| {
        let mut left: std::collections::HashMap<String, usize> = Default::default();
        for by in transitions.iter().filter_map(|e| field(e, name)) {
            *left.entry(by).or_default() += 1;
        }
        decisions
            .iter()
            .find(|d| match left.get_mut(&d.by) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    false
                }
                _ => true,
            })
            .map(|d| d.by.clone())
    };
    if let Some(by) = unrecorded(&review.approvals, "approval_by") {
        return Some(format!("{by}'s approval"));
    }
    if let Some(by) = unrecorded(&review.retries, "retry_by") {
        return Some(format!("{by}'s retry"));
    }
    None
}

/// Who claims an approved review.
#[derive(Debug, Clone, Copy)]
pub(super) enum Claimer {
    /// The approval's own caller, right after the approval landed with its audit entry.
    Approver,
    /// A sweep, or a start's recovery on a shared store: the approving instance may still be
    /// appending the approval's entry.
    Sweep,
    /// A start's recovery on a store only this process writes: no entry is still on its way.
    Restart,
}

impl Gate {
    /// Executes review `id` if it is `approved`; if another task already claimed it, returns the
    /// review as it is. Never sends twice.
    pub(super) async fn execute(self: &Arc<Self>, id: &str) -> Result<Review, GateError> {
        self.execute_claimed_by(id, Claimer::Approver).await
    }

    /// [`Gate::execute`] by `who`: a sweep that picked up another's approval gives its audit
    /// entry time to land ([`APPROVAL_ENTRY_SETTLE_MS`]) before failing it for a missing one.
    pub(super) async fn execute_claimed_by(
        self: &Arc<Self>,
        id: &str,
        who: Claimer,
    ) -> Result<Review, GateError> {
        // Until this returns, this process's sweeps do not call the claim lapsed: its send
        // ends by its own (monotonic) timeout, whatever the wall clock did meanwhile.
        let _sending = self.sending.enter(id);
        let started = self.now_ms();
        // The claim's lease as this process keeps it: `gate.execution_lease` from now on the
        // monotonic clock, whatever the wall clock does meanwhile (the stored lease, `started`
        // plus as much, is for the other instances' clocks).
        let lease_end = Instant::now() + self.config().execution_lease;
        // The permit comes only from the durable `approved -> executing` claim.
        let mut claimed: Option<Review> = None;
        let permitted = permit::check_claim(id, async {
            let review = self.claim(id, started, lease_end, who).await?;
            let request = build_request(&review.request);
            claimed = Some(review);
            Ok::<_, GateError>(request)
        })
        .await;
        let permitted = match permitted {
            Ok(p) => p,
            Err(GateError::AlreadyDecided { .. }) => return self.get(id).await,
            // The claim did not land (it and its audit entry are one commit, and it failed; a
            // store or audit read error; contention): nothing was sent and the review is still
            // `approved`; the sweeper claims it again.
            Err(e @ GateError::SendPending(_)) => {
                tracing::debug!(review = %id, error = %e, "an approved review is not claimed yet; the sweeper tries again");
                return Err(e);
            }
            Err(e) => {
                tracing::warn!(review = %id, error = %e, "the claim of an approved review failed; the sweeper tries again");
                return Err(GateError::SendPending(e.to_string()));
            }
        };
        let Some(review) = claimed else {
            return Err(GateError::BadRequest("claim yielded no review".into()));
        };
        // The send must end within the claim's lease, or another instance could give the claim
        // up as lapsed (`outcome_unknown`) while this one is still sending, and a human retry
        // would send the request a second time. `lease_end` was set before the claim's audit
        // read and commit, which may have waited on a busy store, and is measured on the
        // monotonic clock (a wall clock stepped back meanwhile does not lengthen it).
        // Past the send, the lease keeps a margin for recording its outcome.
        let limit = self.config().execution_timeout;
        let needed = limit + record_margin(self.config().execution_lease, limit);
        let lease_left = lease_end.saturating_duration_since(Instant::now());
        if lease_left <= needed {
            let why = format!(
                "not sent: recording the claim took {}s, leaving {}s of its lease (gate.execution_lease), less than gate.execution_timeout and {}s to record the outcome; a retry sends it",
                self.config()
                    .execution_lease
                    .saturating_sub(lease_left)
                    .as_secs_f64(),
                lease_left.as_secs_f64(),
                needed.saturating_sub(limit).as_secs_f64()
            );
            tracing::error!(review = %review.id, "{why}");
            let id = review.id.clone();
            let now = self.now_ms();
            let _ = self
                .blocking(move |g| {
                    g.transition(&id, |cur| {
                        if !own_claim(cur, started, &g.instance) {
                            return Err(GateError::AlreadyDecided {
                                id: cur.id.clone(),
                                state: cur.state.as_str(),
                            });
                        }
                        let mut next = cur.clone();
                        next.end_unsent(now, why.clone());
                        Ok(next)
                    })
                })
                .await;
            return self.get(&review.id).await;
        }
        let outcome = match permitted.try_map(|built| built) {
            Err(e) => Outcome::NotSent(e),
            Ok(permitted) => {
                let cap = self.config().max_result_bytes;
                // Read past the cap by a secret's length, scrub, then cut: a secret the cap
                // would split is masked whole, never stored in part.
                let slack = self
                    .vault
                    .scrubber()
                    .map_or(0, |s| s.longest().saturating_sub(1));
                let credentialed = self.vault.service_for_host(&review.request.host).is_some();
                let read = send(
                    &self.upstream,
                    permitted,
                    cap.saturating_add(slack),
                    credentialed,
                );
                match tokio::time::timeout(limit, read).await {
                    Ok(mut o) => {
                        self.scrub(&mut o, &review.id);
                        cut_body(&mut o, cap);
                        o
                    }
                    Err(_) => Outcome::Unknown(format!(
                        "no complete answer within {}s",
                        limit.as_secs_f64()
                    )),
                }
            }
        };
        let finished = self.now_ms();
        let summary = outcome.summary();
        let answered = outcome.answered_status();
        let unsent = matches!(outcome, Outcome::NotSent(_));
        match self
            .record_outcome(&review.id, started, lease_end, finished, outcome)
            .await
        {
            Err(GateError::AlreadyDecided { .. }) => self.get(&review.id).await,
            // The outcome is known only here: it goes to the process's log (the status, never
            // the body or a header), and the caller hears what happened, not "not done". It
            // and its audit entry are one commit: neither was written.
            Err(
                e @ (GateError::Store(_)
                | GateError::Audit(_)
                | GateError::Contention(_)
                | GateError::Corrupt { .. }
                | GateError::NotFound(_)
                | GateError::BadRequest(_)),
            ) => {
                tracing::error!(review = %review.id, outcome = %summary, error = %e, "the outcome of a sent request could not be recorded; the review ends outcome_unknown once its claim's lease lapses");
                Err(GateError::Unrecorded(unrecorded_message(
                    answered, unsent, &summary, &e,
                )))
            }
            other => other,
        }
    }

    /// Stores `outcome` (with its audit entry) over this instance's claim made at `started`. A
    /// store or audit error is tried again until the claim's lease ends (at least twice more):
    /// the answer is known only here, and once the lease lapses the review can only become
    /// `outcome_unknown`.
    async fn record_outcome(
        self: &Arc<Self>,
        id: &str,
        started: u64,
        lease_end: Instant,
        finished: u64,
        outcome: Outcome,
    ) -> Result<Review, GateError> {
        let outcome = Arc::new(outcome);
        let mut pause = std::time::Duration::from_millis(50);
        let mut tries = 0u32;
        loop {
            tries += 1;
            let (key, outcome) = (id.to_string(), outcome.clone());
            let recorded = self
                .blocking(move |g| {
                    g.transition(&key, |cur| {
                        record_over_claim(cur, started, &g.instance, finished, &outcome)
                    })
                })
                .await;
            match recorded {
                Err(e @ (GateError::Store(_) | GateError::Audit(_) | GateError::Contention(_)))
                    if tries < 3 || Instant::now() + pause < lease_end =>
                {
                    tracing::warn!(review = %id, error = %e, attempt = tries, "the outcome could not be stored; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }
}

/// The review with `outcome` recorded, if it is still under the claim `instance` made at
/// `started` (else `AlreadyDecided`: the claim was given up and maybe taken anew).
fn record_over_claim(
    cur: &Review,
    started: u64,
    instance: &str,
    finished: u64,
    outcome: &Outcome,
) -> Result<Review, GateError> {
    if !own_claim(cur, started, instance) {
        tracing::error!(review = %cur.id, state = cur.state.as_str(), outcome = %outcome.summary(), "a send ended after its claim was given up; its outcome is not recorded over the review's current state");
        return Err(GateError::AlreadyDecided {
            id: cur.id.clone(),
            state: cur.state.as_str(),
        });
    }
    let mut next = cur.clone();
    if let Outcome::NotSent(e) = outcome {
        next.end_unsent(finished, e.clone());
        return Ok(next);
    }
    let exec = next.execution.get_or_insert(Execution::started(started));
    exec.finished_at_ms = Some(finished);
    match outcome {
        Outcome::Answered {
            status,
            headers,
            body,
            truncated,
            withheld,
            masked,
        } => {
            next.state = ReviewState::Executed;
            exec.secrets_masked = *masked;
            exec.status = Some(*status);
            exec.headers = headers.clone();
            exec.body_b64 = b64(body);
            exec.body_truncated = *truncated;
            if *withheld {
                use crate::credentials::scrub::{ENCODED_WITHHELD, UPSTREAM_ENCODING};
                exec.withheld = Some(UPSTREAM_ENCODING.to_string());
                exec.error = Some(ENCODED_WITHHELD.to_string());
            }
            // Stripe's answer while a request with the same key (an earlier attempt) still
            // runs: this attempt did nothing, and what that one did is not known yet.
            if *status == 409 && cur.idempotency_honoured() && idempotency_error(body) {
                next.state = ReviewState::OutcomeUnknown;
                exec.error = Some(KEY_IN_USE.to_string());
            }
        }
        Outcome::Unknown(e) => {
            next.state = ReviewState::OutcomeUnknown;
            exec.error = Some(e.clone());
        }
        Outcome::NotSent(_) => {}
    }
    Ok(next)
}

/// Why a claim the store may not have kept was not sent on.
const UNFLUSHED_CLAIM: &str = "not sent: the store reported that recording the claim failed, although it reads back as recorded; a claim that might not survive a crash is not sent on (after one, the call could be claimed and sent again); a retry sends it";

/// Why a Stripe 409 `idempotency_error` leaves the call's outcome unknown.
const KEY_IN_USE: &str = "Stripe answered 409 idempotency_error: a request with the same Idempotency-Key (an earlier attempt of this call) was still in progress, so this attempt did nothing and what the earlier one did is not known yet; a retry (same key) gets its result";

/// Is `body` a Stripe error of type `idempotency_error`?
fn idempotency_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| {
        v.get("error")
            .and_then(|e| e.get("type"))
            .and_then(serde_json::Value::as_str)
            == Some("idempotency_error")
    })
}

/// What the caller of a send hears when its outcome (`summary`: answered with `status`, or
/// certainly `unsent`, or neither) could not be stored (`e`): never a bare "not done".
fn unrecorded_message(status: Option<u16>, unsent: bool, summary: &str, e: &GateError) -> String {
    let later =
        "the review shows outcome_unknown once its claim's lease (gate.execution_lease) lapses";
    match status {
        Some(status) => format!(
            "sent; the upstream answered {status} but the outcome could not be recorded ({e}); {later}"
        ),
        None if unsent => format!(
            "{summary}; that could not be recorded ({e}): {later}, although nothing was sent"
        ),
        None => format!(
            "the send ended ({summary}) but its outcome could not be recorded ({e}); it may have reached the upstream: {later}"
        ),
    }
}

/// How much of a claim's lease is kept past `gate.execution_timeout` for recording the outcome:
/// a quarter of the slack between them, at most 5 s.
fn record_margin(lease: std::time::Duration, timeout: std::time::Duration) -> std::time::Duration {
    (lease.saturating_sub(timeout) / 4).min(std::time::Duration::from_secs(5))
}

impl Gate {
    /// The durable `approved -> executing` claim: exactly one caller wins it, on whichever
    /// instance. It names this instance and holds for `gate.execution_lease`. A review whose
    /// approval the audit log does not show (an approval and its entry land together, so only
    /// a store written by something else, or by a version that stored them apart, holds one)
    /// is claimed as `failed` instead, and never sent.
    async fn claim(
        self: &Arc<Self>,
        id: &str,
        started: u64,
        lease_end: Instant,
        who: Claimer,
    ) -> Result<Review, GateError> {
        // This clock is too far off the database's to set a lease others can judge: another
        // instance sends it (as when the store refuses a claim).
        self.recheck_if_stepped().await;
        if let Some(why) = self.claims_paused() {
            return Err(GateError::SendPending(why));
        }
        let claim_id = id.to_string();
        let (claimed, durable) = self
            .blocking(move |g| {
                let entries = g
                    .audit
                    .entries_for_review(&claim_id, MOST_ENTRIES)
                    .map_err(|e| GateError::Store(crate::store::StoreError::Io(e.to_string())))?;
                let too_many = entries.len() >= MOST_ENTRIES;
                // Only said: an archive never passes an open review's entries (`archive.rs`),
                // and a send whose entries are missing fails closed whatever the reason.
                let archived = g.audit.log_start().ok().flatten().map(|s| s.seq);
                g.transition_landed(&claim_id, |cur| {
                    if cur.state != ReviewState::Approved {
                        return Err(GateError::AlreadyDecided {
                            id: cur.id.clone(),
                            state: cur.state.as_str(),
                        });
                    }
                    let mut next = cur.clone();
                    // Sealed (its secrets erased): what is stored is no longer the call the
                    // agent made, and must never be sent.
                    if cur.sealed_secrets > 0 || cur.retry_closed {
                        next.execution = None;
                        next.end_unsent(
                            started,
                            "not sent: its secrets were erased when it could no longer be sent \
                             (sealed); what is stored is not the call the agent made"
                                .into(),
                        );
                        return Ok(next);
                    }
                    // Failed, not left `approved`: every sweep would try it again.
                    if too_many {
                        next.execution = None;
                        next.end_unsent(
                            started,
                            format!(
                                "not sent: the review has {MOST_ENTRIES} audit entries or more"
                            ),
                        );
                        return Ok(next);
                    }
                    if let Some(missing) = missing_from_record(cur, &entries) {
                        // Another instance's approval whose entry is still being appended
                        // (the appenders take turns on a shared store): left approved for a
                        // later sweep, not failed on a race.
                        if matches!(who, Claimer::Sweep)
                            && started < cur.updated_at_ms.saturating_add(APPROVAL_ENTRY_SETTLE_MS)
                        {
                            return Err(GateError::SendPending(format!(
                                "{missing} is not in the audit log yet"
                            )));
                        }
                        next.execution = None;
                        let why = match archived {
                            Some(seq) => format!(
                                "not sent: {missing} is not in the audit log (entries before \
                                 seq {seq} were archived)"
                            ),
                            None => format!("not sent: {missing} is not in the audit log"),
                        };
                        next.end_unsent(started, why);
                        return Ok(next);
                    }
                    // A retry claimed long after it was approved (by a sweep after a restart)
                    // may have outlived the idempotency key it counts on.
                    let lease =
                        u64::try_from(g.cfg.execution_lease.as_millis()).unwrap_or(u64::MAX);
                    if let Err(why) = cur.retry_window(started.saturating_add(lease)) {
                        next.execution = None;
                        next.end_unsent(started, format!("not sent: {why}"));
                        return Ok(next);
                    }
                    // An approval whose send did not start in time (its claim failed, and
                    // the sweeper or a restart found it much later) is not sent days late.
                    if let Some(why) = cur.approval_stale(started) {
                        next.execution = None;
                        next.end_unsent(started, format!("not sent: {why}"));
                        return Ok(next);
                    }
                    next.state = ReviewState::Executing;
                    next.execution = Some(Execution {
                        instance: Some(g.instance.clone()),
                        lease_until_ms: Some(started.saturating_add(lease)),
                        ..Execution::started(started)
                    });
                    Ok(next)
                })
            })
            .await?;
        match claimed.state {
            // A claim that may not survive a crash is not sent on: after one, the review would
            // read `approved` again and be claimed and sent anew. Its attempt ends unsent.
            ReviewState::Executing if !durable => {
                tracing::error!(review = %claimed.id, "{UNFLUSHED_CLAIM}");
                let outcome = Outcome::NotSent(UNFLUSHED_CLAIM.to_string());
                let now = self.now_ms();
                let ended = self
                    .record_outcome(id, started, lease_end, now, outcome)
                    .await;
                if let Err(e) = ended {
                    tracing::error!(review = %id, error = %e, "an unsent attempt could not be recorded; the review ends outcome_unknown once its claim's lease lapses, although nothing was sent");
                }
                Err(GateError::AlreadyDecided {
                    id: claimed.id,
                    state: ReviewState::Executing.as_str(),
                })
            }
            // Not claimed for sending: the caller answers with the review as it now is.
            ReviewState::Failed | ReviewState::OutcomeUnknown => Err(GateError::AlreadyDecided {
                id: claimed.id,
                state: claimed.state.as_str(),
            }),
            _ => Ok(claimed),
        }
    }

    /// Makes a recorded answer safe to store: credential-like headers (`Set-Cookie`, and the
    /// same list that is never stored from a request: the built-in names and patterns and every
    /// configured `strip` list) keep their name and lose their value, secret-named fields of
    /// the body lose their value (the answer is stored and shown to reviewers and the agent: a
    /// token the call minted is masked in it), and configured secrets are masked wherever they
    /// appear.
    fn scrub(&self, outcome: &mut Outcome, id: &str) {
        let Outcome::Answered {
            headers,
            body,
            masked,
            ..
        } = outcome
        else {
            return;
        };
        for (k, v) in headers.iter_mut() {
            if self.vault.is_secret_header(k) {
                *v = crate::credentials::redact::REDACTED.to_string();
            }
        }
        let fields = crate::credentials::redact::secret_answer_values(body);
        if !fields.is_empty() {
            let (out, n) = crate::credentials::redact::mask_bytes(body, &fields);
            (*body, *masked) = (out, n);
            tracing::info!(target: "airlock::scrub", review = %id, masked = n, "an approved request's answer had secret-named fields; their values are masked in the stored answer");
        }
        let Some(s) = self.vault.scrubber() else {
            return;
        };
        let mut n = s.scrub_bytes(body);
        for (_, v) in headers.iter_mut() {
            let mut bytes = std::mem::take(v).into_bytes();
            n += s.scrub_bytes(&mut bytes);
            *v = String::from_utf8_lossy(&bytes).into_owned();
        }
        if n > 0 {
            tracing::warn!(target: "airlock::scrub", review = %id, occurrences = n, "executed request's answer contained a configured secret; masked before storing");
        }
    }
}

/// Is `cur` still executing on the claim this instance made at `started`? On a shared store
/// another instance may have given the claim up (its lease lapsed) and a retry claimed it anew.
fn own_claim(cur: &Review, started: u64, instance: &str) -> bool {
    cur.state == ReviewState::Executing
        && cur
            .execution
            .as_ref()
            .is_some_and(|e| e.started_at_ms == started && e.instance.as_deref() == Some(instance))
}

/// Keeps at most `cap` bytes of an answer's body.
fn cut_body(outcome: &mut Outcome, cap: usize) {
    if let Outcome::Answered {
        body, truncated, ..
    } = outcome
    {
        if body.len() > cap {
            body.truncate(cap);
            *truncated = true;
        }
    }
}

fn build_request(stored: &StoredRequest) -> Result<Request<Body>, String> {
    let method = Method::from_bytes(stored.method.as_bytes())
        .map_err(|_| "stored method is invalid".to_string())?;
    let body = stored
        .body()
        .map_err(|_| "stored body is not valid base64".to_string())?;
    let mut req = Request::builder()
        .method(method)
        .uri(stored.url())
        .body(full(body))
        .map_err(|e| format!("stored request cannot be rebuilt: {e}"))?;
    let headers = req.headers_mut();
    for (k, v) in &stored.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("stored header name {k:?} is invalid"))?;
        let value =
            HeaderValue::from_str(v).map_err(|_| format!("stored header {k} is invalid"))?;
        headers.append(name, value);
    }
    // The body is exact now; let the client compute the framing.
    headers.remove(http::header::CONTENT_LENGTH);
    Ok(req)
}

/// Sends the request and reads the answer (up to `cap` bytes of body). `credentialed`: the
/// request carries the injected credential, so an encoded body, which could not be checked for
/// it, is not read: the answer is recorded without it.
async fn send(
    upstream: &Upstream,
    permitted: Permitted<Request<Body>>,
    cap: usize,
    credentialed: bool,
) -> Outcome {
    let resp = match upstream.send_approved(permitted).await {
        Ok(r) => r,
        Err(f) if f.maybe_sent() => return Outcome::Unknown(f.message().to_string()),
        Err(f) => return Outcome::NotSent(f.message().to_string()),
    };
    let status = resp.status().as_u16();
    // (Without hop-by-hop headers: the upstream layer strips them from every answer.)
    let headers = resp
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    if credentialed && crate::credentials::scrub::is_encoded(resp.headers()) {
        tracing::warn!(target: "airlock::scrub", status, "an approved request's answer came encoded although Airlock asked for identity; its body is withheld");
        return Outcome::Answered {
            status,
            headers,
            body: Vec::new(),
            truncated: false,
            withheld: true,
            masked: 0,
        };
    }
    let mut body = resp.into_body();
    let mut kept = Vec::new();
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    let room = cap.saturating_sub(kept.len());
                    if d.len() > room {
                        kept.extend_from_slice(&d[..room]);
                        truncated = true;
                        break;
                    }
                    kept.extend_from_slice(d);
                }
            }
            Err(e) => {
                // The upstream answered and then broke off: what it did is not known.
                return Outcome::Unknown(format!(
                    "the upstream answered {status} and its response body ended early: {e}"
                ));
            }
        }
    }
    Outcome::Answered {
        status,
        headers,
        body: kept,
        truncated,
        withheld: false,
        masked: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::review::Decision;
    use serde_json::json;

    fn by(name: &str) -> Decision {
        Decision {
            by: name.into(),
            at_ms: 0,
            comment: None,
            admin_token: false,
        }
    }

    /// Every decision a send rests on needs its own entry: one entry per reviewer is not enough
    /// when the same reviewer decided twice.
    #[test]
    fn each_decision_needs_an_entry_of_its_own() {
        let mut r = Review::sample("DELETE", "api.github.com", "/repos/o/r", None, b"");
        r.approvals = vec![by("bob")];
        r.retries = vec![by("bob"), by("bob")];
        let approved = json!({"kind": "review", "to": "approved"});
        let approval = json!({"kind": "review", "to": "approved", "approval_by": "bob"});
        let retry = json!({"kind": "review", "to": "approved", "retry_by": "bob"});
        let executing = json!({"kind": "review", "to": "executing"});
        let cases: Vec<(Vec<&serde_json::Value>, Option<&str>)> = vec![
            (vec![&approval, &retry, &retry], None),
            (vec![&approval, &retry, &approved], Some("bob's retry")),
            (vec![&retry, &retry, &approved], Some("bob's approval")),
            (
                vec![&approval, &retry, &retry, &executing],
                Some("its approval"),
            ),
        ];
        for (entries, want) in cases {
            let entries: Vec<serde_json::Value> = entries.into_iter().cloned().collect();
            assert_eq!(
                missing_from_record(&r, &entries).as_deref(),
                want,
                "{entries:?}"
            );
        }
    }
}
