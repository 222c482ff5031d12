//! The gate: escalated requests become durable reviews; humans approve or reject; an approval
//! fires the stored request exactly once.
//!
//! Exactly-once rests on compare-and-swap in the store: every transition reads the record,
//! checks the state, and swaps in the new record only if nobody changed it meanwhile. The
//! `approved -> executing` swap is made durable *before* the request is sent, so a crash after
//! it leaves `executing`, which recovery turns into `outcome_unknown`, never a second send.

pub mod agent_api;
mod execute;
pub mod review;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::{self, AuditLog, AuditPath, Event, ExecutionEnd, GateKind, Outcome, Transition};
use crate::config::GateConfig;
use crate::rules::Verdict;
use crate::store::{Store, StoreError, Tree};
use crate::upstream::Upstream;
use crate::wire::Target;
pub use review::{Review, ReviewState, StoredRequest};

pub const OUTCOME_HEADER: &str = "airlock-outcome";
pub const REVIEW_ID_HEADER: &str = "airlock-review-id";
/// Agent asks to wait up to this many seconds for approval instead of getting 423 at once.
pub const WAIT_HEADER: &str = "airlock-wait";
/// Status of the immediate answer to an escalated request: non-2xx, so no client mistakes it
/// for success.
pub const ESCALATE_STATUS: StatusCode = StatusCode::LOCKED;

/// Headers never stored with a held request (credentials; Airlock's own control headers).
const NOT_STORED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-github-token",
    "airlock-wait",
    "host",
];

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("no review with id {0:?}")]
    NotFound(String),
    #[error("review {id} is already {state}; only pending reviews can be decided")]
    AlreadyDecided { id: String, state: &'static str },
    #[error("review {id} expired at {at}; an expired review is a rejection")]
    Expired { id: String, at: String },
    #[error("review store unavailable: {0}")]
    Store(#[from] StoreError),
    #[error("review record {id} is unreadable: {message}")]
    Corrupt { id: String, message: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("review {0} changed concurrently too often; retry")]
    Contention(String),
    #[error("audit log unavailable ({0}); the gated action did not proceed")]
    Audit(String),
    #[error("{0}")]
    Forbidden(String),
}

/// A person deciding reviews (from a reviewer token, or the operator's admin token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewer {
    pub name: String,
    pub groups: Vec<String>,
}

impl Reviewer {
    pub fn named(name: &str) -> Reviewer {
        Reviewer {
            name: name.to_string(),
            groups: Vec::new(),
        }
    }
}

/// Wall-clock source (tests use a manual one).
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock moved by hand.
#[derive(Default)]
pub struct ManualClock(pub AtomicU64);

impl ManualClock {
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A request the catalog escalated, fully buffered.
#[derive(Debug, Clone)]
pub struct HeldRequest {
    pub scheme: String,
    pub target: Target,
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The agent that sent it, and the person responsible for that agent.
    pub agent: String,
    pub agent_owner: Option<String>,
}

/// What became of an escalated request; the proxy turns it into the agent's answer.
#[derive(Debug)]
pub enum Hold {
    /// Stored durably and pending: nothing was sent.
    Held(Box<Review>),
    /// The agent asked to wait, and the review reached a final state in time.
    Finished(Box<Review>),
    /// Not held, and not forwarded either.
    Refused(HoldRefusal),
}

/// Why an escalated request could not be held (it was not forwarded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldRefusal {
    /// The request cannot be stored as it is.
    Unstorable(String),
    /// The decision could not be written to the audit log.
    AuditUnavailable,
    /// The review store could not take it.
    StoreUnavailable,
}

pub struct Gate {
    store: Arc<dyn Store>,
    /// The only way upstream; it injects the real credential at execution time, so no stored
    /// review ever holds one.
    upstream: Arc<Upstream>,
    /// For masking secrets in a recorded answer.
    vault: Arc<crate::credentials::Vault>,
    audit: Arc<AuditLog>,
    notifier: Arc<crate::notify::Notifier>,
    cfg: GateConfig,
    clock: Arc<dyn Clock>,
    /// Bumped after every transition; waiters re-read the store.
    changes: watch::Sender<u64>,
    tasks: TaskTracker,
}

impl Gate {
    // Each argument is a distinct shared service the server assembles; a builder adds nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        upstream: Arc<Upstream>,
        vault: Arc<crate::credentials::Vault>,
        audit: Arc<AuditLog>,
        notifier: Arc<crate::notify::Notifier>,
        cfg: GateConfig,
        clock: Arc<dyn Clock>,
        tasks: TaskTracker,
    ) -> Arc<Gate> {
        Arc::new(Gate {
            store,
            upstream,
            vault,
            audit,
            notifier,
            cfg,
            clock,
            changes: watch::channel(0).0,
            tasks,
        })
    }

    pub fn config(&self) -> &GateConfig {
        &self.cfg
    }

    /// The store reviews live in (one-click links record their use here).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The audit log every decision and transition is written to.
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    // ---- store access (blocking work off the async threads) ----

    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Gate) -> Result<T, GateError> + Send + 'static,
    ) -> Result<T, GateError> {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || f(&me)).await {
            Ok(r) => r,
            Err(e) => Err(GateError::Store(StoreError::Io(format!(
                "store task failed: {e}"
            )))),
        }
    }

    fn load(&self, id: &str) -> Result<(Vec<u8>, Review), GateError> {
        let bytes = self
            .store
            .get(Tree::Reviews, id.as_bytes())?
            .ok_or_else(|| GateError::NotFound(id.to_string()))?;
        let review = Review::decode(&bytes).map_err(|e| GateError::Corrupt {
            id: id.to_string(),
            message: e.to_string(),
        })?;
        Ok((bytes, review))
    }

    /// Atomically applies `change` to review `id`: `change` sees the current record and returns
    /// the next one (or an error); the swap only lands if nobody changed the record meanwhile.
    fn transition(
        &self,
        id: &str,
        change: impl Fn(&Review) -> Result<Review, GateError>,
    ) -> Result<Review, GateError> {
        for _ in 0..16 {
            let (old_bytes, old) = self.load(id)?;
            let mut next = change(&old)?;
            if !old.state.can_become(next.state) {
                return Err(GateError::AlreadyDecided {
                    id: id.to_string(),
                    state: old.state.as_str(),
                });
            }
            next.version = old.version + 1;
            next.updated_at_ms = self.clock.now_ms();
            let new_bytes = next.encode().map_err(|e| GateError::Corrupt {
                id: id.to_string(),
                message: e.to_string(),
            })?;
            if self.store.compare_and_swap(
                Tree::Reviews,
                id.as_bytes(),
                Some(&old_bytes),
                &new_bytes,
            )? {
                self.changes.send_modify(|v| *v += 1);
                tracing::info!(target: "airlock::gate", review = %id, from = old.state.as_str(), to = next.state.as_str(), "review transition");
                self.audit
                    .append(transition_event(&old, &next))
                    .map_err(|e| {
                        tracing::error!(review = %id, error = %e, "audit write failed after a transition");
                        GateError::Audit(e.to_string())
                    })?;
                return Ok(next);
            }
        }
        Err(GateError::Contention(id.to_string()))
    }

    // ---- holding ----

    /// Stores an escalated request durably, before the agent hears anything. When the agent or
    /// the rule asked to wait, waits for a decision and an execution within the limit. The
    /// proxy renders the outcome.
    pub async fn hold(self: &Arc<Self>, req: HeldRequest, verdict: Verdict) -> Hold {
        let wait = requested_wait(&req.headers, &verdict, self.cfg.max_wait);
        let review = match self.build_review(req, &verdict) {
            Ok(r) => r,
            Err(e) => return Hold::Refused(HoldRefusal::Unstorable(e.to_string())),
        };
        // The decision is recorded before anything is stored or answered: no audit, no hold.
        let entry = escalation_event(&review);
        let logged = self
            .blocking(move |g| {
                g.audit
                    .append(entry)
                    .map_err(|e| GateError::Audit(e.to_string()))
            })
            .await;
        if let Err(e) = logged {
            tracing::error!(error = %e, "could not audit an escalation; refusing it (fail closed)");
            return Hold::Refused(HoldRefusal::AuditUnavailable);
        }
        let stored = review.clone();
        let put = self
            .blocking(move |g| {
                let bytes = stored.encode().map_err(|e| GateError::Corrupt {
                    id: stored.id.clone(),
                    message: e.to_string(),
                })?;
                if g.store
                    .compare_and_swap(Tree::Reviews, stored.id.as_bytes(), None, &bytes)?
                {
                    Ok(())
                } else {
                    Err(GateError::BadRequest("review id collision".into()))
                }
            })
            .await;
        if let Err(e) = put {
            tracing::error!(error = %e, "could not store a held request; refusing it (fail closed)");
            return Hold::Refused(HoldRefusal::StoreUnavailable);
        }
        self.changes.send_modify(|v| *v += 1);
        tracing::info!(target: "airlock::gate", review = %review.id, tool = review.tool.as_deref().unwrap_or("-"), "request held for review");
        // Never blocks: a full or failing channel cannot hold up the gate.
        self.notifier.escalated(review.escalation());
        if let Some(wait) = wait {
            if let Ok(done) = self.wait_final(&review.id, wait).await {
                if done.state.is_final() {
                    return Hold::Finished(Box::new(done));
                }
            }
        }
        Hold::Held(Box::new(review))
    }

    fn build_review(&self, req: HeldRequest, verdict: &Verdict) -> Result<Review, GateError> {
        let id = new_id("rev");
        let now = self.clock.now_ms();
        let expiry = verdict.expiry.unwrap_or(self.cfg.review_expiry);
        let mut headers = Vec::new();
        for (name, value) in req.headers.iter() {
            let n = name.as_str();
            if NOT_STORED.contains(&n) || crate::wire::HOP_BY_HOP.contains(&n) {
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
        if is_stripe && !headers.iter().any(|(k, _)| k == "idempotency-key") {
            headers.push(("idempotency-key".into(), format!("airlock-{id}")));
        }
        let request = StoredRequest {
            scheme: req.scheme,
            host: req.target.host.clone(),
            port: req.target.port,
            method: req.method,
            path_and_query: req.path_and_query,
            headers,
            body_b64: review::b64(&req.body),
        };
        let mut review = Review::new(
            id,
            new_id("dec"),
            verdict,
            request,
            now,
            now.saturating_add(expiry.as_millis() as u64),
        );
        review.agent = Some(req.agent);
        review.agent_owner = req.agent_owner;
        review.policy = verdict.approval.clone().unwrap_or_default();
        Ok(review)
    }

    // ---- reading ----

    pub async fn get(self: &Arc<Self>, id: &str) -> Result<Review, GateError> {
        let id = id.to_string();
        self.blocking(move |g| g.load(&id).map(|(_, r)| r)).await
    }

    /// Reviews, newest first, optionally only those in `state`.
    pub async fn list(
        self: &Arc<Self>,
        state: Option<ReviewState>,
    ) -> Result<Vec<Review>, GateError> {
        self.blocking(move |g| {
            let mut out = Vec::new();
            for (key, bytes) in g.store.scan(Tree::Reviews)? {
                match Review::decode(&bytes) {
                    Ok(r) if state.is_none_or(|s| s == r.state) => out.push(r),
                    Ok(_) => {}
                    Err(e) => tracing::error!(key = %String::from_utf8_lossy(&key), error = %e, "unreadable review record skipped"),
                }
            }
            out.sort_by_key(|r| std::cmp::Reverse(r.created_at_ms));
            Ok(out)
        })
        .await
    }

    /// Waits up to `timeout` for review `id` to reach a final state; returns it as it then is.
    pub async fn wait_final(
        self: &Arc<Self>,
        id: &str,
        timeout: Duration,
    ) -> Result<Review, GateError> {
        let mut rx = self.changes.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            let r = self.get(id).await?;
            if r.state.is_final() {
                return Ok(r);
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return Ok(r) },
                _ = tokio::time::sleep_until(deadline) => return self.get(id).await,
            }
        }
    }

    // ---- deciding ----

    /// `reviewer`'s decision, stamped now.
    fn decision_by(&self, reviewer: &Reviewer, comment: Option<String>) -> review::Decision {
        review::Decision {
            by: reviewer.name.clone(),
            at_ms: self.clock.now_ms(),
            comment,
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
        let groups = reviewer.groups.clone();
        let approved = match self
            .blocking(move |g| g.decide(&id_owned, ReviewState::Approved, decision, &groups))
            .await
        {
            Ok(r) if r.state == ReviewState::Pending => return Ok(r),
            Ok(r) => r,
            Err(GateError::Audit(why)) => return Err(self.unrecorded(id, "approval", why).await),
            Err(e) => return Err(e),
        };
        self.execute_tracked(approved.id).await
    }

    /// A decision that would send the request landed but is not on the audit record: the review
    /// becomes `failed` and is never sent. Returns the error for the caller.
    async fn unrecorded(self: &Arc<Self>, id: &str, what: &str, why: String) -> GateError {
        self.fail_unsent(
            id,
            format!("not sent: the {what} could not be written to the audit log ({why})"),
        )
        .await;
        GateError::Audit(format!(
            "the {what} could not be recorded; the request was not sent"
        ))
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
    /// request (same `Idempotency-Key`, so Stripe answers a duplicate with the first result) is
    /// sent once more. Only within the review's original deadline, only by someone allowed to
    /// approve it; the earlier execution is kept in `attempts`.
    pub async fn retry(
        self: &Arc<Self>,
        id: &str,
        reviewer: &Reviewer,
        comment: Option<String>,
    ) -> Result<Review, GateError> {
        let decision = self.decision_by(reviewer, comment);
        let id_owned = id.to_string();
        let reviewer = reviewer.clone();
        let retried = self
            .blocking(move |g| {
                let now = g.clock.now_ms();
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
                    if now >= cur.expires_at_ms {
                        return Err(GateError::Expired {
                            id: cur.id.clone(),
                            at: review::rfc3339(cur.expires_at_ms),
                        });
                    }
                    cur.may_send(&reviewer.name, &reviewer.groups, "retry")
                        .map_err(GateError::Forbidden)?;
                    let mut next = cur.clone();
                    next.state = ReviewState::Approved;
                    if let Some(e) = next.execution.take() {
                        next.attempts.push(e);
                    }
                    next.retries.push(decision.clone());
                    Ok(next)
                })
            })
            .await;
        match retried {
            Ok(r) => self.execute_tracked(r.id).await,
            Err(GateError::Audit(why)) => Err(self.unrecorded(id, "retry", why).await),
            Err(e) => Err(e),
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
        let groups = reviewer.groups.clone();
        self.blocking(move |g| g.decide(&id, ReviewState::Rejected, decision, &groups))
            .await
    }

    /// Moves a pending review's deadline `by` later (from now if it is near), at most 7 days ahead.
    pub async fn extend(
        self: &Arc<Self>,
        id: &str,
        reviewer: &Reviewer,
        by: Duration,
    ) -> Result<Review, GateError> {
        let id = id.to_string();
        let reviewer = reviewer.clone();
        self.blocking(move |g| {
            let now = g.clock.now_ms();
            g.transition(&id, |cur| {
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
                cur.may_decide(&reviewer.name, &reviewer.groups)
                    .map_err(GateError::Forbidden)?;
                let mut next = cur.clone();
                let ceiling = now.saturating_add(7 * 86_400_000);
                next.expires_at_ms = cur
                    .expires_at_ms
                    .saturating_add(by.as_millis() as u64)
                    .min(ceiling);
                Ok(next)
            })
        })
        .await
    }

    /// pending -> approved (once the quorum is reached; below it the approval is recorded and
    /// the review stays pending) | rejected; past its deadline a review becomes expired instead.
    /// Enforces the review's approver list and the self-approval rule.
    fn decide(
        &self,
        id: &str,
        to: ReviewState,
        decision: review::Decision,
        groups: &[String],
    ) -> Result<Review, GateError> {
        let now = self.clock.now_ms();
        let r = self.transition(id, |cur| {
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
                // Rejecting sends nothing, so an agent's owner may reject; the list still applies.
                cur.may_decide(by, groups).map_err(GateError::Forbidden)?;
                next.state = ReviewState::Rejected;
                next.decision = Some(decision.clone());
                return Ok(next);
            }
            cur.may_send(by, groups, "approve")
                .map_err(GateError::Forbidden)?;
            if cur.approvals.iter().any(|d| &d.by == by) {
                return Err(GateError::Forbidden(format!(
                    "{by} already approved; this review needs {} distinct reviewers",
                    cur.policy.required
                )));
            }
            next.approvals.push(decision.clone());
            if next.approvals.len() as u32 >= cur.policy.required.max(1) {
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

    // ---- background duties ----

    /// Expires every pending review past its deadline. Returns how many it expired.
    pub async fn sweep(self: &Arc<Self>) -> Result<usize, GateError> {
        self.blocking(|g| {
            let now = g.clock.now_ms();
            let mut n = 0;
            for (key, bytes) in g.store.scan(Tree::Reviews)? {
                let Ok(r) = Review::decode(&bytes) else {
                    continue;
                };
                if r.state != ReviewState::Pending || now < r.expires_at_ms {
                    continue;
                }
                let id = String::from_utf8_lossy(&key).into_owned();
                let res = g.transition(&id, |cur| {
                    if cur.state != ReviewState::Pending || now < cur.expires_at_ms {
                        return Err(GateError::AlreadyDecided {
                            id: id.clone(),
                            state: cur.state.as_str(),
                        });
                    }
                    let mut next = cur.clone();
                    next.state = ReviewState::Expired;
                    Ok(next)
                });
                if res.is_ok() {
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
    }

    /// After a restart: `executing` becomes `outcome_unknown` (never re-sent); `approved` (the
    /// decision landed but sending had not begun) is executed now.
    pub async fn recover(self: &Arc<Self>) -> Result<(), GateError> {
        let reviews = self.list(None).await?;
        for r in reviews {
            match r.state {
                ReviewState::Executing => {
                    let id = r.id.clone();
                    self.blocking(move |g| {
                        g.transition(&id, |cur| {
                            let mut next = cur.clone();
                            next.state = ReviewState::OutcomeUnknown;
                            if let Some(e) = next.execution.as_mut() {
                                e.error = Some("Airlock stopped while this request was being sent; it may or may not have reached the upstream and is not retried automatically".into());
                            }
                            Ok(next)
                        })
                    })
                    .await?;
                }
                ReviewState::Approved => {
                    let me = self.clone();
                    self.tasks.spawn(async move {
                        if let Err(e) = me.execute(&r.id).await {
                            tracing::error!(review = %r.id, error = %e, "execution after restart failed");
                        }
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Runs the expiry sweeper until `shutdown`.
    pub async fn run_sweeper(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.cfg.sweep_interval);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            match self.sweep().await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(target: "airlock::gate", expired = n, "expired reviews (silence is rejection)")
                }
                Err(e) => tracing::error!(error = %e, "expiry sweep failed"),
            }
        }
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

/// The audit event of one review transition: names and states only, nothing secret.
fn transition_event(old: &Review, next: &Review) -> Event {
    let mut t = Transition {
        review_id: next.id.clone(),
        decision_id: next.decision_id.clone(),
        from: old.state.as_str(),
        to: next.state.as_str(),
        gate: GateKind::Hard,
        tool: next.tool.clone(),
        service: next.service.clone(),
        agent: next.agent.clone(),
        method: next.request.method.clone(),
        host: next.request.host.clone(),
        path: AuditPath::new(&next.request.path_and_query),
        approval_by: None,
        approvals: None,
        required: None,
        expires_at: None,
        retry_by: None,
        attempt: None,
        by: None,
        comment: None,
        approved_by: None,
        execution: None,
    };
    if next.approvals.len() > old.approvals.len() {
        if let Some(d) = next.approvals.last() {
            t.approval_by = Some(d.by.clone());
            t.approvals = Some(next.approvals.len());
            t.required = Some(next.policy.required);
        }
    }
    if next.expires_at_ms != old.expires_at_ms {
        t.expires_at = Some(review::rfc3339(next.expires_at_ms));
    }
    if next.retries.len() > old.retries.len() {
        if let Some(d) = next.retries.last() {
            t.retry_by = Some(d.by.clone());
            t.comment = d.comment.clone();
            t.attempt = Some(next.attempts.len() + 1);
        }
    }
    if next.state == ReviewState::Expired {
        t.by = Some("expiry".into());
    } else if let (Some(d), ReviewState::Approved | ReviewState::Rejected) =
        (&next.decision, next.state)
    {
        t.by = Some(d.by.clone());
        t.comment = d.comment.clone();
    }
    if let Some(x) = &next.execution {
        if next.state == ReviewState::Executing {
            // The approval this execution rests on, repeated so one row says who said yes.
            t.approved_by = next.decision.as_ref().map(|d| d.by.clone());
        } else {
            t.execution = Some(ExecutionEnd {
                upstream_status: x.status,
                duration_ms: x.finished_at_ms.map(|f| f.saturating_sub(x.started_at_ms)),
                error: x.error.clone(),
            });
        }
    }
    Event::Review(Box::new(t))
}

/// The `decision` event of a held request.
fn escalation_event(r: &Review) -> Event {
    Event::Decision(Box::new(audit::Decision {
        decision_id: r.decision_id.clone(),
        review_id: Some(r.id.clone()),
        outcome: Outcome::Escalate,
        gate: GateKind::Hard,
        agent: r.agent.clone(),
        service: r.service.clone(),
        tool: r.tool.clone(),
        rule_id: r.rule_id.clone(),
        reason_codes: r.reason_codes.clone(),
        method: r.request.method.clone(),
        host: r.request.host.clone(),
        path: AuditPath::new(&r.request.path_and_query),
        expires_at: Some(review::rfc3339(r.expires_at_ms)),
    }))
}

/// A random identifier with a readable prefix, e.g. `rev_3f9c...` (128 bits).
pub fn new_id(prefix: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    format!("{prefix}_{}", hex::encode(bytes))
}
