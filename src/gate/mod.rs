//! The gate: escalated requests become durable reviews; humans approve or reject; an approval
//! fires the stored request exactly once.
//!
//! Exactly-once rests on compare-and-swap in the store: every transition reads the record,
//! checks the state, and swaps in the new record only if nobody changed it meanwhile. The
//! `approved -> executing` swap is made durable *before* the request is sent, so a crash after
//! it leaves `executing`, which recovery turns into `outcome_unknown`, never a second send.
//! Every change of a stored review goes through `Gate::transition` below (or, for a sweep's
//! chunk, `Gate::commit_prepared`), which commits it and its audit entry in one transaction:
//! both or neither, so no state change is ever stored without its entry. The rest is split by
//! duty: `hold.rs` (and `joins.rs`, identical retries), `decide.rs`, `execute.rs`, `recover.rs`, and the audit events in `events.rs`.

pub mod agent_api;
pub use agent_slots::{AgentSlot, AgentSlots, MAX_STATUS_READS_PER_AGENT, MAX_WAITS_PER_AGENT};
pub use agent_turns::Turn;
mod agent_slots;
mod agent_turns;
pub mod archive;
pub mod budget;
mod decide;
mod events;
mod execute;
mod hold;
pub mod index;
pub mod joins;
pub mod people;
mod recover;
pub mod restore;
pub mod review;
mod seal;
mod wakeups;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::audit::{AuditLog, Landed};
use crate::config::GateConfig;
use crate::store::{Batch, Changed, Store, StoreError, Tree};
use crate::upstream::Upstream;
use crate::wire::Target;
pub use decide::{BulkRejection, MAX_EXTEND_AHEAD, WAIT_RECHECK};
use events::transition_event;
pub use hold::MOST_JOINS;
pub use people::{People, Roster};
pub use review::{Review, ReviewState, StoredRequest};

pub const OUTCOME_HEADER: &str = "airlock-outcome";
pub const REVIEW_ID_HEADER: &str = "airlock-review-id";
/// Agent asks to wait up to this many seconds for approval instead of getting 423 at once.
pub const WAIT_HEADER: &str = "airlock-wait";
/// Status of the immediate answer to an escalated request: non-2xx, so no client mistakes it
/// for success.
pub const ESCALATE_STATUS: StatusCode = StatusCode::LOCKED;

/// How far the wall clock may drift from the monotonic clock between two checks against a
/// shared store before it is taken for a step and checked again ([`Gate::recheck_if_stepped`]).
const CLOCK_STEP_MS: u64 = 2_000;

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
    /// The review changed since the caller read it (a retry asked for after another attempt
    /// was made): nothing was done.
    #[error("{0}")]
    Changed(String),
    /// The approval (or a retry's) is recorded, but the claim that starts the send failed:
    /// nothing was sent. The sweeper tries the claim again (`recover.rs`) while the approval is
    /// fresh ([`review::Review::approval_stale`]).
    #[error("approved; the send did not start yet ({0}): Airlock retries it at its next sweeps (gate.sweep_interval) while the approval is fresh (before the review's deadline, within an hour); nothing was sent so far")]
    SendPending(String),
    /// The request left (or may have), and what became of it could not be stored: the whole
    /// sentence, naming the upstream's status when it answered.
    #[error("{0}")]
    Unrecorded(String),
}

/// A person deciding reviews (from a reviewer token, or the operator's admin token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewer {
    pub name: String,
    pub groups: Vec<String>,
    /// Deciding with the operator's admin token, not a reviewer's own: one approver at most,
    /// whatever name it gives (see `people.rs`).
    pub admin_token: bool,
}

impl Reviewer {
    /// A reviewer by name alone (no groups, not the admin token).
    pub fn named(name: &str) -> Reviewer {
        Reviewer {
            name: name.to_string(),
            groups: Vec::new(),
            admin_token: false,
        }
    }

    /// The operator's admin token, recorded under `name` (`admin` unless no reviewers are
    /// configured and the caller named someone).
    pub fn admin_token(name: &str) -> Reviewer {
        Reviewer {
            name: name.to_string(),
            groups: vec!["admin".into()],
            admin_token: true,
        }
    }

    /// A configured reviewer.
    pub fn from_config(r: &crate::config::ReviewerConfig) -> Reviewer {
        Reviewer {
            name: r.name.clone(),
            groups: r.groups.clone(),
            admin_token: false,
        }
    }
}

/// Wall-clock source (tests use a manual one).
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
    /// A clock that only moves forward at the pace of time (ms from any origin), to tell a
    /// step of `now_ms` from time passing ([`Gate::recheck_if_stepped`]). By default `now_ms`
    /// itself: a clock moved by hand moves its time (no step is ever seen).
    fn monotonic_ms(&self) -> u64 {
        self.now_ms()
    }
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        crate::wall_clock::now_ms()
    }
    fn monotonic_ms(&self) -> u64 {
        static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let origin = ORIGIN.get_or_init(Instant::now);
        u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
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
    /// When that agent's entry was added ([`crate::agents::Agent::added_ms`]): its identical
    /// retries join only reviews created since (an earlier agent of the name sent the others).
    pub agent_added_ms: Option<u64>,
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
    /// Stored durably (this is the review as held), but the agent's wait could not read what
    /// became of it: it may have been approved and sent meanwhile, so neither "held, not sent"
    /// nor an outcome can be answered.
    Unknown(Box<Review>),
    /// Stored durably (this is the review as held), but the agent that sent it was removed,
    /// or its token or limits changed, while it waited: nothing of the outcome is answered.
    AgentGone(Box<Review>),
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
    /// The agent already has `gate.max_pending_per_agent` reviews pending (the number).
    TooManyPending(usize),
    /// The agent's Stripe `Idempotency-Key` already names another request of a review that
    /// may still be sent (`joins.rs`): the key, and that review.
    KeyReused { key: String, review: String },
    /// The agent resent an identical request `most` times already ([`MOST_JOINS`]):
    /// that review still stands; this resend is neither stored nor recorded.
    TooManyResends { review: String, most: usize },
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
    /// The reviewers in force (swapped on reload); approvals are counted against them.
    people: Arc<Roster>,
    cfg: GateConfig,
    clock: Arc<dyn Clock>,
    /// Bumped after every transition (and, on a shared store, after any instance's): the
    /// dashboard's version ([`Gate::change_count`]). Waits do not follow it: see `wakeups`.
    changes: watch::Sender<u64>,
    /// The waits' interest in their reviews: woken by those reviews' changes only.
    wakeups: wakeups::Wakeups,
    tasks: TaskTracker,
    /// The runtime whose blocking pool runs the store, audit and fsync work (the one the gate
    /// was built on: `airlock serve`'s main runtime), whichever runtime asks: no proxy worker's
    /// pool, nor anything a proxy worker does, can keep it waiting. `None` outside a runtime.
    pool: Option<tokio::runtime::Handle>,
    /// Who claims executions: `host/pid`, recorded on each claim.
    instance: String,
    /// One hold at a time per agent while the pending cap applies.
    hold_turns: agent_turns::AgentTurns,
    /// Agents' open status waits, bounded per agent.
    waits: AgentSlots,
    /// Agents' status reads in progress, bounded per agent (the rest wait their turn).
    status_reads: agent_turns::AgentTurns,
    /// Why this instance neither claims approved reviews nor gives up other instances' claims
    /// now (its clock is too far from the shared store's, found by a periodic check).
    claims_paused: std::sync::Mutex<Option<String>>,
    /// This clock and the monotonic one at the last clock check against a shared store
    /// (`None`: none yet, or the store is this instance's alone): a wall clock that stepped
    /// since is checked again before it sets or judges a lease ([`Gate::recheck_if_stepped`]).
    clock_checked: std::sync::Mutex<Option<(u64, u64)>>,
    /// Reviews this process is claiming or executing, by id (counted: an approval's own call
    /// and a sweep may race for one claim): never given up as lapsed by its own sweeps, nor
    /// claimed again by them meanwhile.
    sending: AgentSlots,
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
        people: Arc<Roster>,
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
            people,
            cfg,
            clock,
            changes: watch::channel(0).0,
            wakeups: Default::default(),
            tasks,
            pool: tokio::runtime::Handle::try_current().ok(),
            instance: instance_name(),
            hold_turns: agent_turns::AgentTurns::new(1),
            waits: AgentSlots::new(MAX_WAITS_PER_AGENT),
            status_reads: agent_turns::AgentTurns::new(MAX_STATUS_READS_PER_AGENT),
            claims_paused: Default::default(),
            clock_checked: Default::default(),
            sending: AgentSlots::new(usize::MAX),
        })
    }

    /// Is the store shared with other instances (PostgreSQL)? Then another process may be
    /// executing what this one sees `executing`, and only its lease says when it is gone.
    fn shared_store(&self) -> bool {
        self.store.watch(Tree::Reviews).is_some()
    }

    /// How far this instance's clock is ahead of the shared store's (ms; negative: behind),
    /// measured at the midpoint of one round trip. `None` on a store only this process writes.
    pub async fn clock_skew_ms(self: &Arc<Self>) -> Result<Option<i64>, GateError> {
        self.blocking(|g| {
            let before = g.clock.now_ms();
            let Some(theirs) = g.store.clock_ms() else {
                return Ok(None);
            };
            let theirs = theirs?;
            let after = g.clock.now_ms();
            let ours = before / 2 + after / 2;
            Ok(Some(ours as i64 - theirs as i64))
        })
        .await
    }

    /// The clock difference instances sharing a store may have: half the slack between
    /// `gate.execution_lease` and `gate.execution_timeout`, the other half left for a slow
    /// claim commit. Past it, another instance could give a claim up as lapsed while its
    /// send still runs.
    pub fn max_clock_skew_ms(&self) -> u64 {
        let slack = self
            .cfg
            .execution_lease
            .saturating_sub(self.cfg.execution_timeout);
        u64::try_from(slack.as_millis() / 2).unwrap_or(u64::MAX)
    }

    /// How long past its lease another instance's claim is given up: two instances' clocks
    /// may differ by twice [`Gate::max_clock_skew_ms`], one ahead of the database's and one
    /// behind.
    pub fn lapse_grace_ms(&self) -> u64 {
        self.max_clock_skew_ms().saturating_mul(2)
    }

    /// Why claims are paused (this instance's clock was found too far off), if they are.
    pub fn claims_paused(&self) -> Option<String> {
        let paused = self.claims_paused.lock().unwrap_or_else(|e| e.into_inner());
        paused.clone()
    }

    /// Checks this instance's clock against the shared store's: `Err` (with what to do) past
    /// [`Gate::max_clock_skew_ms`], a warning past a second. Past it, claims pause (no claim,
    /// no other instance's claim given up) until a check finds the clock within it again.
    pub async fn check_clock(self: &Arc<Self>) -> Result<(), GateError> {
        let Some(skew) = self.clock_skew_ms().await? else {
            return Ok(());
        };
        *self.clock_checked.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((self.clock.now_ms(), self.clock.monotonic_ms()));
        let allowed = self.max_clock_skew_ms();
        let way = if skew >= 0 { "ahead of" } else { "behind" };
        let secs = skew.unsigned_abs() as f64 / 1000.0;
        let off = (skew.unsigned_abs() > allowed).then(|| {
            format!(
                "this host's clock is {secs:.1}s {way} the database's; instances sharing it compare clocks to tell a lapsed claim (gate.execution_lease) from a running send, and more than {:.1}s (half of execution_lease minus execution_timeout) could let a call be sent twice: fix the clock (NTP) or lengthen gate.execution_lease",
                allowed as f64 / 1000.0
            )
        });
        self.pause_claims(off.clone());
        if let Some(why) = off {
            return Err(GateError::BadRequest(why));
        }
        if skew.unsigned_abs() > 1000 {
            tracing::warn!(
                skew_ms = skew,
                "this host's clock is {secs:.1}s {way} the database's (allowed: {:.1}s); check NTP",
                allowed as f64 / 1000.0
            );
        }
        Ok(())
    }

    /// Checks the clock against the shared store again now if this host's wall clock moved
    /// more than [`CLOCK_STEP_MS`] away from the monotonic clock since the last check (NTP
    /// stepped it, or someone set it): a claim's lease is set by this clock, and another
    /// instance's by theirs, so a step between the periodic checks could let a running send
    /// be given up as lapsed. Cheap when nothing stepped (no store read).
    pub(super) async fn recheck_if_stepped(self: &Arc<Self>) {
        let stepped = {
            let checked = self.clock_checked.lock().unwrap_or_else(|e| e.into_inner());
            checked.is_some_and(|(wall, mono)| {
                let wall_ms = i128::from(self.clock.now_ms()) - i128::from(wall);
                let mono_ms = i128::from(self.clock.monotonic_ms()) - i128::from(mono);
                (wall_ms - mono_ms).abs() > i128::from(CLOCK_STEP_MS)
            })
        };
        if stepped {
            tracing::warn!("this host's wall clock stepped since its last check against the database's; checking again before claiming");
            if let Err(e) = self.check_clock().await {
                tracing::error!(error = %e, "clock check against the shared store");
            }
        }
    }

    /// Pauses claims for `why`, or resumes them (`None`), saying so when that changes.
    fn pause_claims(&self, why: Option<String>) {
        let mut paused = self.claims_paused.lock().unwrap_or_else(|e| e.into_inner());
        match (&*paused, &why) {
            (None, Some(why)) => tracing::error!(
                "{why}; until it is back within bounds this instance claims no approved review (other instances send them) and gives up no other instance's claim"
            ),
            (Some(_), None) => tracing::warn!(
                "this host's clock is back within the allowed skew of the database's; claiming again"
            ),
            _ => {}
        }
        crate::metrics::claims_paused(why.is_some());
        *paused = why;
    }

    /// On a store other instances share: follows its change feed, as PostgreSQL's NOTIFY
    /// reports any instance's changes. Each notice moves the dashboard's version; a notice
    /// naming reviews wakes the waits on those (`wakeups.rs`), one that names none (the feed
    /// reconnected, or this follower fell behind) wakes every wait once.
    pub fn follow_shared_store(self: &Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let Some(mut rx) = self.store.watch(Tree::Reviews) else {
            return;
        };
        let mut keys = self.store.watch_keys(Tree::Reviews);
        let me = Arc::downgrade(self);
        self.tasks.spawn(async move {
            loop {
                let woken = tokio::select! {
                    changed = rx.changed() => match changed {
                        Ok(()) => Woken::Counter,
                        Err(_) => return,
                    },
                    notice = next_keys(&mut keys) => Woken::Keys(notice),
                    _ = shutdown.cancelled() => return,
                };
                let Some(gate) = me.upgrade() else { return };
                match woken {
                    Woken::Counter => {
                        gate.changes.send_modify(|v| *v += 1);
                        if keys.is_none() {
                            // A feed that names no keys: every wait reads again.
                            gate.wakeups.changed_all();
                        }
                    }
                    Woken::Keys(Some(Changed::Keys(ids))) => {
                        gate.wakeups.changed_many(ids.iter().map(String::as_str))
                    }
                    Woken::Keys(Some(Changed::Unknown)) => gate.wakeups.changed_all(),
                    Woken::Keys(None) => {
                        gate.wakeups.changed_all();
                        keys = None;
                    }
                }
            }
        });
    }

    /// How many reviews this instance's waits are waiting on now (each counted once).
    pub fn waited_on(&self) -> usize {
        self.wakeups.waited_on()
    }

    /// How many times waits read their review since this gate started: each wait's first
    /// read, then one per change of that review (or per notice naming no review) and per
    /// fallback re-check ([`WAIT_RECHECK`]).
    pub fn wait_reads(&self) -> u64 {
        self.wakeups.reads()
    }

    /// A slot for one of `agent`'s status waits, `None` past
    /// [`MAX_WAITS_PER_AGENT`] open at once.
    pub fn wait_slot(&self, agent: &str) -> Option<AgentSlot> {
        self.waits.enter(agent)
    }

    /// A turn for one of `agent`'s status reads, once fewer than
    /// [`MAX_STATUS_READS_PER_AGENT`] of them run.
    pub async fn status_read_turn(&self, agent: &str) -> Turn {
        self.status_reads.take(agent).await
    }

    /// How many times reviews changed since this gate started (any instance's, on a shared
    /// store): the dashboard's live pages compare it, one atomic read, whatever the history.
    pub fn change_count(&self) -> u64 {
        *self.changes.borrow()
    }

    pub fn config(&self) -> &GateConfig {
        &self.cfg
    }

    /// The reviewers in force: the admin listener, the dashboard and one-click links read them
    /// on every request; a reload swaps them.
    pub fn people(&self) -> &Arc<Roster> {
        &self.people
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

    /// This process as it names itself on the executions it claims (`host/pid`).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    // ---- store access (blocking work off the async threads) ----

    /// Runs `f` on the gate's blocking pool (its `pool`'s): store and audit work from
    /// anywhere, a proxy worker included, goes through here.
    pub fn spawn_blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Gate) -> T + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        let me = self.clone();
        match &self.pool {
            Some(pool) => pool.spawn_blocking(move || f(&me)),
            None => tokio::task::spawn_blocking(move || f(&me)),
        }
    }

    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Gate) -> Result<T, GateError> + Send + 'static,
    ) -> Result<T, GateError> {
        match self.spawn_blocking(f).await {
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
        let review = decode_review(id, &bytes)?;
        Ok((bytes, review))
    }

    /// Atomically applies `change` to review `id`: `change` sees the current record and returns
    /// the next one (or an error); the swap only lands if nobody changed the record meanwhile,
    /// and only with its audit entry, in one commit (group-committed with other appends). An
    /// error: nothing was written (`Store` when the store refused the commit, `Audit` for
    /// anything else the log refused).
    fn transition(
        &self,
        id: &str,
        change: impl Fn(&Review) -> Result<Review, GateError>,
    ) -> Result<Review, GateError> {
        self.transition_landed(id, change).map(|(next, _)| next)
    }

    /// [`Gate::transition`], and whether the store confirmed the commit: `false` when it
    /// reported a failure yet the record reads back as written, so it may not survive a crash.
    fn transition_landed(
        &self,
        id: &str,
        change: impl Fn(&Review) -> Result<Review, GateError>,
    ) -> Result<(Review, bool), GateError> {
        for _ in 0..16 {
            let (old_bytes, old) = self.load(id)?;
            let (next, batch) = self.next_version(&old_bytes, &old, &change)?;
            match self.audit.append_if(transition_event(&old, &next), batch) {
                Ok(landed @ (Landed::Durable | Landed::Unflushed)) => {
                    self.landed(&old, &next);
                    return Ok((next, landed == Landed::Durable));
                }
                Ok(Landed::Changed) => {} // changed meanwhile: read again
                Err(e) => {
                    tracing::error!(review = %old.id, from = old.state.as_str(), to = next.state.as_str(), error = %e, "a review transition and its audit entry could not be written; nothing changed");
                    return Err(unwritten(e));
                }
            }
        }
        Err(GateError::Contention(id.to_string()))
    }

    /// The first half of [`Gate::transition`] for the first reviews of `ids`, as many as
    /// `budget` bytes of records take (at least one: [`crate::store::get_within`]): each one's
    /// next version and the batch that swaps it in if it still reads as loaded, and how many
    /// ids were read. Reviews that are gone or that `change` refuses are left out. Nothing is
    /// written.
    fn prepare_many(
        &self,
        ids: &[String],
        budget: usize,
        change: impl Fn(&Review) -> Result<Review, GateError>,
    ) -> Result<(Prepared, usize), GateError> {
        let mut p = Prepared::default();
        let keys: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes()).collect();
        let records = crate::store::get_within(self.store.as_ref(), Tree::Reviews, &keys, budget)?;
        let read = records.len();
        for (id, old_bytes) in ids.iter().zip(records) {
            let Some(old_bytes) = old_bytes else {
                continue; // removed meanwhile
            };
            // One unreadable record must not stop every other review's transition (it heads
            // the deadline index of every sweep): it is left as it is, loudly.
            let old = match decode_review(id, &old_bytes) {
                Ok(old) => old,
                Err(e) => {
                    tracing::error!(review = %id, error = %e, "skipping an unreadable review record");
                    continue;
                }
            };
            if let Ok((next, batch)) = self.next_version(&old_bytes, &old, &change) {
                p.moves.push((old, next));
                p.batches.push(batch);
            }
        }
        Ok((p, read))
    }

    /// Commits a [`Gate::prepare_many`], each transition with its audit entry (both or
    /// neither), through one group commit (no retry: a review changed since it was read is
    /// skipped). Returns the reviews that moved; an error when any could not be written
    /// (those are left as they were, for the next sweep).
    fn commit_prepared(&self, p: Prepared) -> Result<Vec<Review>, GateError> {
        if p.batches.is_empty() {
            return Ok(Vec::new());
        }
        let items = p
            .moves
            .iter()
            .zip(p.batches)
            .map(|((o, n), b)| (transition_event(o, n), b))
            .collect();
        let written = self.audit.append_all_if(items);
        let mut moved = Vec::new();
        let mut failed = None;
        for ((o, n), w) in p.moves.into_iter().zip(written) {
            match w {
                Ok(Landed::Durable | Landed::Unflushed) => moved.push((o, n)),
                Ok(Landed::Changed) => {}
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if !moved.is_empty() {
            self.changes.send_modify(|v| *v += 1);
            self.wakeups
                .changed_many(moved.iter().map(|(_, n)| n.id.as_str()));
        }
        for (o, n) in &moved {
            observe_decision(o, n);
        }
        if let Some(e) = failed {
            tracing::error!(error = %e, "review transitions and their audit entries could not be written; those reviews are left as they were");
            return Err(unwritten(e));
        }
        Ok(moved.into_iter().map(|(_, n)| n).collect())
    }

    /// The record `change` makes of `old`, and the batch that swaps it in with its indexes.
    fn next_version(
        &self,
        old_bytes: &[u8],
        old: &Review,
        change: &impl Fn(&Review) -> Result<Review, GateError>,
    ) -> Result<(Review, Batch), GateError> {
        let mut next = change(old)?;
        if !old.state.can_become(next.state) {
            return Err(GateError::AlreadyDecided {
                id: old.id.clone(),
                state: old.state.as_str(),
            });
        }
        next.version = old.version + 1;
        next.updated_at_ms = self.clock.now_ms();
        seal::seal(&mut next);
        let new_bytes = next.encode().map_err(|e| GateError::Corrupt {
            id: old.id.clone(),
            message: e.to_string(),
        })?;
        let mut batch = Batch::default();
        batch
            .expect(Tree::Reviews, old.id.as_bytes(), Some(old_bytes))
            .put(Tree::Reviews, old.id.as_bytes(), &new_bytes);
        index::reindex(&mut batch, Some(old), Some(&next));
        Ok((next, batch))
    }

    /// After a transition landed with its entry: wake waiters and log it.
    fn landed(&self, old: &Review, next: &Review) {
        self.changes.send_modify(|v| *v += 1);
        self.wakeups.changed(&next.id);
        observe_decision(old, next);
        tracing::info!(target: "airlock::gate", review = %old.id, from = old.state.as_str(), to = next.state.as_str(), "review transition");
    }
}

/// What woke [`Gate::follow_shared_store`].
enum Woken {
    /// The store's change counter moved.
    Counter,
    /// The keyed feed's next notice (`None`: the feed ended).
    Keys(Option<Changed>),
}

/// The next notice of a keyed change feed: a lagging receiver is told "unknown" (the notices it
/// missed named reviews no one knows now); `None` once the feed ends; never, without a feed.
async fn next_keys(
    keys: &mut Option<tokio::sync::broadcast::Receiver<Changed>>,
) -> Option<Changed> {
    use tokio::sync::broadcast::error::RecvError;
    let Some(rx) = keys.as_mut() else {
        return std::future::pending().await;
    };
    match rx.recv().await {
        Ok(c) => Some(c),
        Err(RecvError::Lagged(_)) => Some(Changed::Unknown),
        Err(RecvError::Closed) => None,
    }
}

/// The error of a transition that was not written (neither the review nor its entry).
fn unwritten(e: crate::audit::AuditError) -> GateError {
    match e {
        crate::audit::AuditError::Store(e) => GateError::Store(e),
        e => GateError::Audit(e.to_string()),
    }
}

fn decode_review(id: &str, bytes: &[u8]) -> Result<Review, GateError> {
    Review::decode(bytes).map_err(|e| GateError::Corrupt {
        id: id.to_string(),
        message: e.to_string(),
    })
}

/// Transitions read and checked, not yet committed: see [`Gate::prepare_many`].
#[derive(Default)]
struct Prepared {
    moves: Vec<(Review, Review)>,
    batches: Vec<Batch>,
}

/// A review id: `rev_`, the creation time (48 bits of milliseconds, hex) and 80 random bits.
/// Time-ordered, so reviews held together sit together in the store: holding appends at the
/// end of the table and a sweep of what expired together rewrites neighbouring pages.
pub fn new_review_id(now_ms: u64) -> String {
    let random: [u8; 10] = rand::random();
    format!(
        "rev_{:012x}{}",
        now_ms & 0xffff_ffff_ffff,
        hex::encode(random)
    )
}

/// This process as named on the executions it claims: host name and pid.
fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!(
        "{}/{}",
        if host.is_empty() { "airlock" } else { &host },
        std::process::id()
    )
}

/// A random identifier with a readable prefix, e.g. `rev_3f9c...` (128 bits).
pub fn new_id(prefix: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    format!("{prefix}_{}", hex::encode(bytes))
}

/// Counts a pending review's decision (approved, rejected, expired) and how long it waited.
fn observe_decision(old: &Review, next: &Review) {
    // A send (or a refusal to send an approved call) ended.
    if old.state != next.state
        && matches!(
            next.state,
            ReviewState::Executed | ReviewState::Failed | ReviewState::OutcomeUnknown
        )
    {
        crate::metrics::execution(next.state.as_str());
    }
    if old.state == ReviewState::Pending
        && matches!(
            next.state,
            ReviewState::Approved | ReviewState::Rejected | ReviewState::Expired
        )
    {
        let waited = next.updated_at_ms.saturating_sub(old.created_at_ms);
        crate::metrics::decision(
            next.state.as_str(),
            std::time::Duration::from_millis(waited),
        );
    }
}
