//! Background duties: expiring overdue reviews, removing finished ones past retention, and
//! recovery after a restart. Each reads an index range, so its cost follows the reviews it
//! touches, not the history.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::execute::Claimer;
use super::index::{self, Query};
use super::review::ReviewState;
use super::{Gate, GateError};
use crate::store::{prefix_end, Batch, Tree};

/// Reviews handled per commit by the sweeper and by retention, at most.
const CHUNK: usize = 2048;
/// A chunk also stops adding reviews once their records' bytes reach this (after at least one
/// review, so a sweep always moves on). A record carries its request body (up to
/// `gate.max_body_bytes`, base64) and its answer, and a chunk holds each about four times (the
/// old and new record, the batch's expectation and write), two chunks in flight: 400 records
/// of 1 MB bodies took one sweep to 3.9 GB. 16 MiB bounds that whatever the bodies (the same
/// sweep peaked at 546 MB, most of it allocator slack), still takes a full 2,048 of the usual
/// few-KB records (one commit, one fsync), and keeps a chunk's writes (each record expected
/// and written: 32 MiB) inside one group commit (64 MiB, `store/group.rs`).
const CHUNK_BYTES: usize = 16 * 1024 * 1024;
/// Retention chunks per step: a step ends after these, and the sweeper runs its other duties
/// (expiry, stranded sends) before the next one (`run_sweeper`).
const RETENTION_CHUNKS_PER_STEP: usize = 4;
/// Pause between two steps of a retention pass: the sweeper's other ticks get their turn.
const RETENTION_STEP_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
/// Used-link records removed with one review (two links per reviewer channel at most).
const LINKS_PER_REVIEW: usize = 1024;

/// The key a chunk that read `used` of `found` goes on from: the last one read, or (all read,
/// or none found) `last`, the last index key the chunk's index read returned.
pub(super) fn resume_key(
    found: &[index::Indexed],
    used: usize,
    last: Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    match used.checked_sub(1).and_then(|i| found.get(i)) {
        Some((_, key)) if used < found.len() => Some(key.clone()),
        _ => last,
    }
}

/// A chunk of a background duty (`expiry`, `retention`) that could not be read or committed:
/// logged and counted; its reviews are left for the next pass.
fn chunk_failed(duty: &'static str, reviews: usize, e: &GateError) {
    crate::metrics::chunk_failed(duty);
    tracing::error!(duty, reviews, error = %e, "a chunk of reviews could not be read or committed; left for the next pass, the chunks behind it go on");
}

/// May retention remove `r` now: final, last changed before `cutoff`, and, if a human may
/// still retry it (`failed`, `outcome_unknown`), past its deadline?
fn prunable(r: &super::Review, cutoff: u64, now: u64) -> bool {
    let retryable = matches!(r.state, ReviewState::Failed | ReviewState::OutcomeUnknown);
    r.state.is_final() && r.updated_at_ms < cutoff && !(retryable && now < r.expires_at_ms)
}

/// What recovery reads of a review in flight (`approved`, `executing`).
struct InFlight {
    id: String,
    updated_at_ms: u64,
    /// Its claim's lease, while `executing`.
    lease_until_ms: Option<u64>,
}

/// The result of a sweep stage's thread, if one was started.
fn joined<T>(
    h: Option<std::thread::ScopedJoinHandle<'_, Result<T, GateError>>>,
) -> Result<Option<T>, GateError> {
    match h.map(|h| h.join()) {
        None => Ok(None),
        Some(Ok(r)) => r.map(Some),
        Some(Err(_)) => Err(GateError::Store(crate::store::StoreError::Io(
            "a sweep thread panicked".into(),
        ))),
    }
}

impl Gate {
    /// Expires every pending review past its deadline. Returns how many it expired. Two
    /// stages overlap: while one chunk commits (each expiry with its audit entry, in one
    /// group commit), the next is read and prepared. A review changed meanwhile, or refused,
    /// is left to the next tick. A chunk that cannot be read or committed is left for the next
    /// tick too, and the chunks behind it go on; the sweep then ends with the first such error.
    ///
    /// Review of session 22: chunks were bounded by count only (2,048 records of 1 MiB bodies
    /// took one sweep to 3.9 GB), and the first chunk that failed ended the sweep, so one
    /// chunk the store always refused (past PostgreSQL's 1 GiB array limit) kept every review
    /// behind it pending for ever.
    pub async fn sweep(self: &Arc<Self>) -> Result<usize, GateError> {
        // A clock too far off the shared database's (claims paused) would expire every
        // instance's reviews early: the others sweep meanwhile.
        if self.claims_paused().is_some() {
            return Ok(0);
        }
        self.blocking(|g| {
            let now = g.clock.now_ms();
            let expire = move |cur: &super::Review| {
                if cur.state != ReviewState::Pending || now < cur.expires_at_ms {
                    return Err(GateError::AlreadyDecided {
                        id: cur.id.clone(),
                        state: cur.state.as_str(),
                    });
                }
                let mut next = cur.clone();
                next.state = ReviewState::Expired;
                Ok(next)
            };
            // Reads the chunk after index key `after` and prepares it: the transitions (or why
            // they could not be read), how many reviews the chunk names, and the key to go on
            // from (`None`: nothing was left). Only an error of the index read ends the sweep.
            let read = move |after: Option<Vec<u8>>| {
                let (found, last) =
                    index::overdue(g.store.as_ref(), now, after.as_deref(), CHUNK)?;
                let ids: Vec<String> = found.iter().map(|(id, _)| id.clone()).collect();
                let prepared = g.prepare_many(&ids, CHUNK_BYTES, expire);
                let used = prepared.as_ref().map_or(found.len(), |(_, used)| *used);
                let resume = resume_key(&found, used, last);
                Ok::<_, GateError>((prepared.map(|(p, _)| p), used, resume))
            };
            std::thread::scope(|scope| {
                let (mut n, mut failed) = (0, None);
                let (mut ready, mut size, mut last) = read(None)?;
                loop {
                    let reading = last
                        .take()
                        .map(|after| scope.spawn(move || read(Some(after))));
                    match ready.and_then(|p| g.commit_prepared(p)) {
                        Ok(moved) => n += moved.len(),
                        Err(e) => {
                            chunk_failed("expiry", size, &e);
                            failed.get_or_insert(e);
                        }
                    }
                    match joined(reading)? {
                        Some(next) => (ready, size, last) = next,
                        None => break,
                    }
                }
                match failed {
                    None => Ok(n),
                    Some(e) => {
                        tracing::warn!(target: "airlock::gate", expired = n, "the expiry sweep went past chunks it could not write");
                        Err(e)
                    }
                }
            })
        })
        .await
    }

    /// Closes the retry window of every `failed` or `outcome_unknown` review past its deadline
    /// (no retry may send it any more: `decide.rs`) and seals it as a final review is sealed,
    /// each with its audit entry (`by: expiry`). Returns how many it closed. A chunk that
    /// cannot be read or committed is logged, counted and left for the next tick.
    ///
    /// Review of session 23: such a review kept what the agent sent as a secret (a card
    /// number, a password) in clear in the store until retention removed it, 90 days later by
    /// default, or never with `retention = "forever"`.
    pub async fn close_retry_windows(self: &Arc<Self>) -> Result<usize, GateError> {
        // As for `sweep`: a clock too far off would close them early.
        if self.claims_paused().is_some() {
            return Ok(0);
        }
        self.blocking(|g| {
            let now = g.clock.now_ms();
            let close = move |cur: &super::Review| {
                let open = matches!(cur.state, ReviewState::Failed | ReviewState::OutcomeUnknown)
                    && !cur.retry_closed;
                if !open || now < cur.expires_at_ms {
                    return Err(GateError::AlreadyDecided {
                        id: cur.id.clone(),
                        state: cur.state.as_str(),
                    });
                }
                let mut next = cur.clone();
                next.retry_closed = true;
                Ok(next)
            };
            // At most a retention step's chunks per tick (a store upgraded with months of
            // failed reviews closes them over several ticks; expiry and stranded sends keep
            // their turns). Closed ones leave the index, so each tick starts from its head.
            let (mut n, mut after, mut failed) = (0, None, None);
            for _ in 0..RETENTION_CHUNKS_PER_STEP {
                let (found, last) =
                    index::retry_overdue(g.store.as_ref(), now, after.as_deref(), CHUNK)?;
                if found.is_empty() {
                    break;
                }
                let ids: Vec<String> = found.iter().map(|(id, _)| id.clone()).collect();
                let done = g
                    .prepare_many(&ids, CHUNK_BYTES, close)
                    .and_then(|(p, used)| Ok((g.commit_prepared(p)?, used)));
                let used = match done {
                    Ok((closed, used)) => {
                        n += closed.len();
                        let closed: std::collections::HashSet<&str> =
                            closed.iter().map(|r| r.id.as_str()).collect();
                        let rest: Vec<index::Indexed> = found[..used]
                            .iter()
                            .filter(|(id, _)| !closed.contains(id.as_str()))
                            .cloned()
                            .collect();
                        if let Err(e) = index::drop_stale_retry_deadlines(g.store.as_ref(), &rest)
                        {
                            tracing::warn!(error = %e, "stale retry-deadline entries left for the next tick");
                        }
                        used
                    }
                    Err(e) => {
                        chunk_failed("retry_close", ids.len(), &e);
                        failed.get_or_insert(e);
                        ids.len()
                    }
                };
                after = resume_key(&found, used, last);
                if after.is_none() {
                    break;
                }
            }
            match failed {
                None => Ok(n),
                Some(e) => Err(e),
            }
        })
        .await
    }

    /// Removes finished reviews whose last change is older than `store.retention`, with the
    /// records of their used one-click links. Their audit entries stay. A `failed` or
    /// `outcome_unknown` review stays until its deadline (a human may still retry it). Returns
    /// how many it removed. Runs [`Gate::prune_step`] until the pass is done; the sweeper runs
    /// one step at a time instead.
    pub async fn prune(self: &Arc<Self>) -> Result<usize, GateError> {
        let mut n = 0;
        let mut from = None;
        loop {
            let (removed, next) = self.prune_step(from).await?;
            n += removed;
            match next {
                Some(next) => from = Some(next),
                None => return Ok(n),
            }
        }
    }

    /// One bounded step of a retention pass: at most [`RETENTION_CHUNKS_PER_STEP`] chunks,
    /// after the finished-index key `from` (`None`: a pass starts). Returns how many reviews it
    /// removed, and the key the next step of this pass goes on from (`None`: the pass is done).
    /// A chunk that cannot be read or committed is logged, counted and passed over (the next
    /// pass finds its reviews again).
    ///
    /// Review of session 22: a pass ran whole in the sweeper's turn, one read per review, so
    /// switching retention on over a big store stopped expiry and stranded-send pickup until
    /// it ended; and its chunks were bounded by count only.
    pub async fn prune_step(
        self: &Arc<Self>,
        from: Option<Vec<u8>>,
    ) -> Result<(usize, Option<Vec<u8>>), GateError> {
        // As for `sweep`: a clock too far off would remove finished reviews early.
        let Some(keep) = self
            .cfg
            .retention
            .filter(|_| self.claims_paused().is_none())
        else {
            return Ok((0, None));
        };
        self.blocking(move |g| {
            let now = g.clock.now_ms();
            let cutoff = now.saturating_sub(keep.as_millis().try_into().unwrap_or(u64::MAX));
            let mut n = 0;
            let mut after = from;
            for _ in 0..RETENTION_CHUNKS_PER_STEP {
                let (found, last) =
                    index::finished_before(g.store.as_ref(), cutoff, after.as_deref(), CHUNK)?;
                let (removed, used) = match g.prune_chunk(&found, cutoff, now) {
                    Ok(done) => done,
                    Err(e) => {
                        chunk_failed("retention", found.len(), &e);
                        (0, found.len())
                    }
                };
                n += removed;
                // On past what was kept (a review awaiting its deadline), so that it neither
                // stops the rest nor is read again in this pass.
                after = resume_key(&found, used, last);
                if after.is_none() {
                    break;
                }
            }
            Ok((n, after))
        })
        .await
    }

    /// Removes those of `found` retention may remove now, reading their records up to
    /// [`CHUNK_BYTES`] (at least one), in one commit. Returns how many it removed and how many
    /// of `found` it read.
    fn prune_chunk(
        &self,
        found: &[index::Indexed],
        cutoff: u64,
        now: u64,
    ) -> Result<(usize, usize), GateError> {
        let keys: Vec<&[u8]> = found.iter().map(|(id, _)| id.as_bytes()).collect();
        let records =
            crate::store::get_within(self.store.as_ref(), Tree::Reviews, &keys, CHUNK_BYTES)?;
        let used = records.len();
        let mut batches = Vec::with_capacity(used);
        for ((id, _), bytes) in found.iter().zip(records) {
            let Some(bytes) = bytes else {
                continue; // removed meanwhile
            };
            let old = match super::decode_review(id, &bytes) {
                Ok(old) => old,
                // Kept (nothing can say what it indexed), and passed over so that retention
                // goes on with the rest.
                Err(e) => {
                    tracing::error!(error = %e, "an unreadable finished review is kept past retention");
                    continue;
                }
            };
            // The record is read after the index: a retry may have moved it on since.
            if !prunable(&old, cutoff, now) {
                continue;
            }
            let mut b = Batch::default();
            b.expect(Tree::Reviews, id.as_bytes(), Some(&bytes))
                .delete(Tree::Reviews, id.as_bytes());
            index::reindex(&mut b, Some(&old), None);
            // Its one-click links' used records go with it.
            let links = crate::notify::links::used_prefix(id);
            let end = prefix_end(links.as_bytes());
            for (k, _) in self.store.range(
                Tree::Meta,
                links.as_bytes(),
                end.as_deref(),
                LINKS_PER_REVIEW,
            )? {
                b.delete(Tree::Meta, &k);
            }
            batches.push(b);
        }
        if batches.is_empty() {
            return Ok((0, used));
        }
        let removed = self.store.commit(batches)?.iter().filter(|ok| **ok).count();
        Ok((removed, used))
    }

    /// After a restart: the indexes are built if the store predates them; `executing` becomes
    /// `outcome_unknown` (never re-sent); `approved` (the decision landed but sending had not
    /// begun) is executed now. On a store other instances share, an `executing` review may be
    /// another instance's send in progress: only one whose lease has lapsed is given up.
    pub async fn recover(self: &Arc<Self>) -> Result<(), GateError> {
        let built = self
            .blocking(|g| index::ensure_built(g.store.as_ref()))
            .await?;
        if built > 0 {
            tracing::info!(
                reviews = built,
                "indexed the reviews of a store from an earlier version"
            );
        }
        if self.shared_store() {
            self.reap_lapsed().await?;
            self.pick_up_approved(0, Claimer::Sweep).await?;
            return Ok(());
        }
        for review in self.all_reviews_in(ReviewState::Executing).await? {
            self.give_up(review.id, |_| {
                "Airlock stopped while this request was being sent; it may or may not have \
                 reached the upstream and is not retried automatically"
                    .into()
            })
            .await?;
        }
        self.pick_up_approved(0, Claimer::Restart).await.map(drop)
    }

    /// Executes the `approved` reviews last changed more than `settle_ms` ago: their decision
    /// landed but no send began (the deciding instance stopped first). The claim lets exactly
    /// one instance send each.
    async fn pick_up_approved(
        self: &Arc<Self>,
        settle_ms: u64,
        who: Claimer,
    ) -> Result<usize, GateError> {
        let now = self.now_ms();
        let mut n = 0;
        for review in self.all_reviews_in(ReviewState::Approved).await? {
            if review.updated_at_ms.saturating_add(settle_ms) > now {
                continue;
            }
            // This process is claiming or sending it already (the approval's own call, or an
            // earlier sweep's claim still waiting on the store): not a second claim.
            if self.sending.holds(&review.id) {
                continue;
            }
            // Held from now, not from when the task runs: the next tick sees it.
            let slot = self.sending.enter(&review.id);
            n += 1;
            let (me, id) = (self.clone(), review.id);
            self.tasks.spawn(async move {
                let _slot = slot;
                match me.execute_claimed_by(&id, who).await {
                    Ok(_) => {}
                    // Not claimed yet (its approval's entry still on its way, a store error):
                    // a later sweep tries again.
                    Err(GateError::SendPending(_)) => {}
                    Err(e) => {
                        tracing::error!(review = %id, error = %e, "execution of an approved review failed")
                    }
                }
            });
        }
        Ok(n)
    }

    /// Every `executing` review whose lease has lapsed becomes `outcome_unknown` (the instance
    /// sending it died mid-send, or could not record the outcome; it is never re-sent). This
    /// process's own sends end within their lease (`execute.rs`), so on any backend a lapsed
    /// one has no send left running.
    pub(super) async fn reap_lapsed(self: &Arc<Self>) -> Result<usize, GateError> {
        let now = self.now_ms();
        // On a shared store the lease was set by another instance's clock, which may be behind
        // ours by up to twice the allowed skew (each may be off the database's by that, in
        // opposite ways): given up only past that too, so a send still running on a slow clock
        // is never called lapsed (its own clock ends it by its lease).
        let grace = if self.shared_store() {
            self.lapse_grace_ms()
        } else {
            0
        };
        // With this clock too far off, no other instance's lease can be judged (and a claim
        // of this process's is either still sending, below, or left to the others).
        if self.claims_paused().is_some() {
            return Ok(0);
        }
        let mut n = 0;
        let mut clock_checked = !self.shared_store();
        for review in self.all_reviews_in(ReviewState::Executing).await? {
            if review
                .lease_until_ms
                .is_some_and(|until| until.saturating_add(grace) > now)
            {
                continue;
            }
            // Ours and still running (the wall clock jumped, or the VM slept): it ends by its
            // own timeout and records what happened.
            if self.sending.holds(&review.id) {
                continue;
            }
            // Another instance's send is given up on this clock's word: checked against the
            // database's now, not as of the last periodic check (a clock that stepped forward
            // since would call a running send lapsed, and a retry could send it twice).
            if !clock_checked {
                if let Err(e) = self.check_clock().await {
                    tracing::warn!(error = %e, "not giving up lapsed claims: this clock is off the database's");
                    return Ok(n);
                }
                clock_checked = true;
            }
            let moved = self
                .give_up(review.id.clone(), move |exec| {
                    let who = exec
                        .and_then(|e| e.instance.clone())
                        .unwrap_or_else(|| "an earlier Airlock".into());
                    format!(
                        "no outcome was recorded before its claim lapsed (the instance sending \
                         it, {who}, stopped or could not write the outcome); it may or may not \
                         have reached the upstream and is not retried automatically"
                    )
                })
                .await;
            match moved {
                Ok(()) => n += 1,
                // Finished (or given up by another instance) meanwhile.
                Err(GateError::AlreadyDecided { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// `executing -> outcome_unknown`, with `why` (given the execution) recorded as its error.
    async fn give_up(
        self: &Arc<Self>,
        id: String,
        why: impl Fn(Option<&super::review::Execution>) -> String + Send + 'static,
    ) -> Result<(), GateError> {
        let now = self.now_ms();
        self.blocking(move |g| {
            g.transition(&id, |cur| {
                if cur.state != ReviewState::Executing {
                    return Err(GateError::AlreadyDecided {
                        id: cur.id.clone(),
                        state: cur.state.as_str(),
                    });
                }
                // Its lease holds after all (read again in the transaction): leave it.
                let lease = cur.execution.as_ref().and_then(|e| e.lease_until_ms);
                if g.shared_store() && lease.is_some_and(|until| until > now) {
                    return Err(GateError::AlreadyDecided {
                        id: cur.id.clone(),
                        state: cur.state.as_str(),
                    });
                }
                let mut next = cur.clone();
                next.state = ReviewState::OutcomeUnknown;
                let error = why(cur.execution.as_ref());
                if let Some(e) = next.execution.as_mut() {
                    e.error = Some(error);
                    e.finished_at_ms.get_or_insert(now);
                }
                Ok(next)
            })
            .map(drop)
        })
        .await
    }

    /// Every review in `state`, page by page (used for the few in flight), as much of each as
    /// recovery reads: not its request or answer (a page's records are dropped as it is read).
    async fn all_reviews_in(
        self: &Arc<Self>,
        state: ReviewState,
    ) -> Result<Vec<InFlight>, GateError> {
        let q = Query {
            state: Some(state),
            ..Query::default()
        };
        let mut reviews = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.list_page(q.clone(), index::MAX_LIMIT, cursor).await?;
            reviews.extend(page.reviews.into_iter().map(|r| InFlight {
                lease_until_ms: r.execution.as_ref().and_then(|e| e.lease_until_ms),
                updated_at_ms: r.updated_at_ms,
                id: r.id,
            }));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(reviews),
            }
        }
    }

    /// Each sweep, on every backend, also looks after sends left stranded: an `executing` review
    /// whose claim's lease lapsed (its instance died mid-send, or could not record the
    /// outcome) becomes `outcome_unknown`, and an `approved` review left unclaimed for a sweep
    /// interval (its instance stopped before sending, or its claim failed on a store or audit
    /// read error) is claimed and sent, or failed if its approval went stale
    /// ([`super::review::Review::approval_stale`]). On a store only this process writes, a
    /// transient claim failure is thus retried within seconds, not at the next restart.
    async fn look_after_stranded_sends(self: &Arc<Self>) {
        match self.reap_lapsed().await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(target: "airlock::gate", reviews = n, "executions with no outcome recorded within their lease are now outcome_unknown (not re-sent)")
            }
            Err(e) => tracing::error!(error = %e, "checking execution leases failed"),
        }
        // Long enough for the approving call's own claim to go first, short enough that a long
        // sweep interval does not let an approval go stale before its pick-up.
        let settle = u64::try_from(self.cfg.sweep_interval.as_millis())
            .unwrap_or(u64::MAX)
            .min(10_000);
        match self.pick_up_approved(settle, Claimer::Sweep).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(target: "airlock::gate", reviews = n, "claiming approved reviews whose send had not started")
            }
            Err(e) => tracing::error!(error = %e, "picking up approved reviews failed"),
        }
    }

    /// Runs `duty`, and says how long it took (ms), for the logs.
    async fn timed<'a, F, Fut>(self: &'a Arc<Self>, duty: F) -> (Result<usize, GateError>, u128)
    where
        F: FnOnce(&'a Arc<Self>) -> Fut,
        Fut: std::future::Future<Output = Result<usize, GateError>>,
    {
        let start = std::time::Instant::now();
        let r = duty(self).await;
        (r, start.elapsed().as_millis())
    }

    /// One retention step from `from` (see [`Gate::prune_step`]), logged; what `pass` (the
    /// reviews removed so far and when it started) becomes, and where the pass goes on (`None`:
    /// done, or failed: the next minute starts a new one).
    async fn retention_step(
        self: &Arc<Self>,
        from: Option<Vec<u8>>,
        pass: &mut (usize, Option<std::time::Instant>),
    ) -> Option<Vec<u8>> {
        let started = *pass.1.get_or_insert_with(std::time::Instant::now);
        let next = match self.prune_step(from).await {
            Ok((n, next)) => {
                pass.0 += n;
                next
            }
            Err(e) => {
                tracing::error!(error = %e, "retention sweep failed");
                None
            }
        };
        if next.is_none() {
            if pass.0 > 0 {
                tracing::info!(target: "airlock::gate", removed = pass.0, elapsed_ms = started.elapsed().as_millis(), "removed finished reviews past store.retention (their audit entries stay)");
            }
            *pass = (0, None);
        }
        next
    }

    /// Runs the expiry sweeper (and retention, once a minute) until `shutdown`. A retention
    /// pass goes a bounded step at a time ([`Gate::prune_step`]), its steps a moment apart, so
    /// that expiry and stranded sends are looked after on their ticks while a long pass runs.
    pub async fn run_sweeper(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.cfg.sweep_interval);
        let mut prune = tokio::time::interval(std::time::Duration::from_secs(60));
        // A clock that drifts after start pauses claims (`check_clock`), checked again every
        // minute (with retention) until it is back.
        let mut clock = tokio::time::interval(std::time::Duration::from_secs(600));
        clock.tick().await;
        // Where the retention pass under way goes on (`None`: none is). Its steps keep their
        // own interval, so a sweep tick shorter than the pause cannot starve them.
        let mut retention: Option<Vec<u8>> = None;
        let mut pass = (0, None);
        let mut step = tokio::time::interval(RETENTION_STEP_PAUSE);
        step.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    match self.timed(Gate::sweep).await {
                        (Ok(0), _) => {}
                        (Ok(n), ms) => {
                            tracing::info!(target: "airlock::gate", expired = n, elapsed_ms = ms, "expired reviews (silence is rejection)")
                        }
                        (Err(e), _) => tracing::error!(error = %e, "expiry sweep failed"),
                    }
                    match self.close_retry_windows().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(target: "airlock::gate", closed = n, "failed or outcome-unknown reviews past their deadline sealed (no retry may send them)"),
                        Err(e) => tracing::error!(error = %e, "closing retry windows failed"),
                    }
                    // Before judging any claim lapsed by this clock.
                    self.recheck_if_stepped().await;
                    self.look_after_stranded_sends().await;
                }
                _ = clock.tick() => {
                    if let Err(e) = self.check_clock().await {
                        tracing::error!(error = %e, "clock check against the shared store");
                    }
                }
                _ = step.tick(), if retention.is_some() => {
                    retention = self.retention_step(retention.take(), &mut pass).await;
                }
                _ = prune.tick() => {
                    if retention.is_none() {
                        retention = self.retention_step(None, &mut pass).await;
                    }
                    if self.claims_paused().is_some() {
                        if let Err(e) = self.check_clock().await {
                            tracing::error!(error = %e, "clock check against the shared store");
                        }
                    }
                }
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
