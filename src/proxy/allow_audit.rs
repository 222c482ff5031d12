//! Records allowed catalog requests in the audit log off the request path. A request hands its
//! record to a bounded queue and moves on; one recorder task writes whatever has queued as one
//! group commit (one blocking thread however many requests are in flight). When the queue is
//! full, or a write fails, the record is counted instead, and the count lands in the log as an
//! `audit_gap` with the next write that succeeds.
//!
//! Each agent has a share of the log ([`AgentShare`]: `audit.allow_per_agent` records a
//! second, a burst of [`BURST_SECONDS`] worth): an agent looping on cheap reads would otherwise
//! grow the log (and the disk every gated call needs) as fast as it can send. Records past its
//! share are counted per agent and land as an `audit_gap` naming the agent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditGap, Event};
use crate::gate::Gate;

/// Most allowed-request records queued at once; beyond it records are skipped and counted.
pub const QUEUE_CAPACITY: usize = 4096;

/// Most records one write takes from the queue.
const BATCH: usize = 256;

/// After shutdown, the recorder stops once no record has arrived for this long.
const DRAIN_QUIET: std::time::Duration = std::time::Duration::from_millis(300);

/// How long counts of records past an agent's share wait for a write to go with.
const OVER_SHARE_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);

/// An agent's share of the log is this many seconds of its rate, taken at once if it has been
/// quiet.
pub const BURST_SECONDS: u64 = 30;

pub struct AllowRecorder {
    tx: mpsc::Sender<Event>,
    rx: Mutex<Option<mpsc::Receiver<Event>>>,
    skipped: AtomicU64,
    /// Records a second one agent may add (0: no cap).
    per_agent: u32,
    /// Blocked-request records a second one agent may add (0: no cap).
    block_per_agent: u32,
    shares: Mutex<HashMap<String, Arc<AgentShare>>>,
    origin: Instant,
}

impl Default for AllowRecorder {
    fn default() -> Self {
        Self::new(0, 0)
    }
}

/// One agent's share of allowed-request records (GCRA: the time its next record is due, in
/// microseconds from the recorder's start), and the records it had past it, not yet logged.
#[derive(Debug, Default)]
pub struct AgentShare {
    due_us: AtomicU64,
    skipped: AtomicU64,
    /// The same for blocked requests' records (`audit.block_per_agent`).
    block_due_us: AtomicU64,
    skipped_blocks: AtomicU64,
}

/// One more of `per_second` (0: no limit), a burst of [`BURST_SECONDS`] worth, against `due`
/// (GCRA: the time the next is due, in microseconds from `origin`).
pub(super) fn admit_at(due_us: &AtomicU64, per_second: u32, origin: Instant) -> bool {
    if per_second == 0 {
        return true;
    }
    let interval = 1_000_000 / u64::from(per_second);
    let tolerance = BURST_SECONDS * 1_000_000;
    let now = u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX);
    let mut due = due_us.load(Ordering::Relaxed);
    loop {
        let next = due.max(now).saturating_add(interval);
        if next - now > tolerance {
            return false;
        }
        match due_us.compare_exchange_weak(due, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(seen) => due = seen,
        }
    }
}

/// Each agent's rate of soft-gated requests (`audit.notify_per_agent`): each is recorded before
/// it is forwarded, so an agent looping on one would grow the log as fast as it can send.
pub struct SoftGateRate {
    per_second: u32,
    origin: Instant,
    shares: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl SoftGateRate {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            origin: Instant::now(),
            shares: Mutex::new(HashMap::new()),
        }
    }

    /// The rate this limits to, a second.
    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Agent `name`'s share (one per agent, kept by its connections).
    pub fn share(&self, name: &str) -> Arc<AtomicU64> {
        let Ok(mut shares) = self.shares.lock() else {
            return Arc::default();
        };
        shares.entry(name.to_string()).or_default().clone()
    }

    /// Whether `share` may send one more now.
    pub fn admit(&self, share: &AtomicU64) -> bool {
        admit_at(share, self.per_second, self.origin)
    }
}

impl AllowRecorder {
    /// `per_agent`, `block_per_agent`: allowed and blocked requests' records a second one
    /// agent may add (0: no cap).
    pub fn new(per_agent: u32, block_per_agent: u32) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            skipped: AtomicU64::new(0),
            per_agent,
            block_per_agent,
            shares: Mutex::new(HashMap::new()),
            origin: Instant::now(),
        }
    }

    /// Agent `name`'s share (one per agent, kept by its connections).
    pub fn share(&self, name: &str) -> Arc<AgentShare> {
        let Ok(mut shares) = self.shares.lock() else {
            return Arc::default();
        };
        shares.entry(name.to_string()).or_default().clone()
    }

    /// Whether `share` may add one more record now; if not, it is counted for the log.
    pub fn admit(&self, share: &AgentShare) -> bool {
        let admitted = admit_at(&share.due_us, self.per_agent, self.origin);
        if !admitted {
            share.skipped.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// Whether `share` may add one more blocked request's record now (the request is refused
    /// either way); if not, it is counted for the log.
    pub fn admit_block(&self, share: &AgentShare) -> bool {
        let admitted = admit_at(&share.block_due_us, self.block_per_agent, self.origin);
        if !admitted {
            share.skipped_blocks.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// Every agent's records past its shares since the last call (allowed, blocked), for
    /// `audit_gap` entries (the counts are taken: [`AllowRecorder::put_back`] returns them if
    /// the write fails).
    fn over_share(&self) -> Vec<(String, u64, u64)> {
        let Ok(shares) = self.shares.lock() else {
            return Vec::new();
        };
        shares
            .iter()
            .filter_map(|(name, s)| {
                let n = s.skipped.swap(0, Ordering::Relaxed);
                let b = s.skipped_blocks.swap(0, Ordering::Relaxed);
                (n > 0 || b > 0).then(|| (name.clone(), n, b))
            })
            .collect()
    }

    fn put_back(&self, counts: &[(String, u64, u64)]) {
        if let Ok(shares) = self.shares.lock() {
            for (name, n, b) in counts {
                if let Some(s) = shares.get(name) {
                    s.skipped.fetch_add(*n, Ordering::Relaxed);
                    s.skipped_blocks.fetch_add(*b, Ordering::Relaxed);
                }
            }
        }
    }

    /// Queues `entry` (a `decision` event) without waiting; a full queue skips and counts it.
    pub fn record(&self, entry: Event) {
        if self.tx.try_send(entry).is_err() && self.skipped.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!("audit log is behind: skipping allowed-request records (counted)");
        }
    }

    /// Writes queued records until `shutdown`; after it, until the queue has been empty for
    /// [`DRAIN_QUIET`] (requests finishing during the grace period still get recorded). Runs
    /// once (a second call returns at once).
    pub async fn run(&self, gate: Arc<Gate>, shutdown: CancellationToken) {
        let taken = self.rx.lock().map(|mut rx| rx.take()).unwrap_or(None);
        let Some(mut rx) = taken else {
            return;
        };
        loop {
            let first = if shutdown.is_cancelled() {
                tokio::time::timeout(DRAIN_QUIET, rx.recv())
                    .await
                    .ok()
                    .flatten()
            } else {
                tokio::select! {
                    e = rx.recv() => e,
                    _ = shutdown.cancelled() => continue,
                    // Counts of records past an agent's share land even when nothing else
                    // is written (the flood stopped, or every record was past the share).
                    _ = tokio::time::sleep(OVER_SHARE_FLUSH) => {
                        if self.over_share_pending() {
                            self.write(gate.clone(), Vec::new()).await;
                        }
                        continue;
                    }
                }
            };
            let mut batch: Vec<Event> = first.into_iter().collect();
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                // Counts of records past an agent's share still go on the record, once.
                if self.over_share_pending() {
                    self.write(gate.clone(), batch).await;
                }
                return;
            }
            self.write(gate.clone(), batch).await;
        }
    }

    fn over_share_pending(&self) -> bool {
        self.shares.lock().is_ok_and(|shares| {
            shares.values().any(|s| {
                s.skipped.load(Ordering::Relaxed) > 0
                    || s.skipped_blocks.load(Ordering::Relaxed) > 0
            })
        })
    }

    async fn write(&self, gate: Arc<Gate>, batch: Vec<Event>) {
        let skipped = self.skipped.swap(0, Ordering::Relaxed);
        let over = self.over_share();
        let records = batch.len();
        let mut events = batch;
        if skipped > 0 {
            events.push(Event::AuditGap(AuditGap {
                skipped_allow_records: skipped,
                skipped_block_records: 0,
                reason: "allowed-request records not written (queue full or a failed write)",
                agent: None,
            }));
        }
        // One entry per agent (the results below are matched to `over` by position).
        for (agent, n, b) in &over {
            let reason = match (*n > 0, *b > 0) {
                (true, false) => "allowed-request records past the agent's share (audit.allow_per_agent)",
                (false, _) => "blocked-request records past the agent's share (audit.block_per_agent); each was refused",
                (true, true) => "allowed- and blocked-request records past the agent's shares (audit.allow_per_agent, audit.block_per_agent); each blocked one was refused",
            };
            events.push(Event::AuditGap(AuditGap {
                skipped_allow_records: *n,
                skipped_block_records: *b,
                reason,
                agent: Some(agent.clone()),
            }));
        }
        let res = gate
            .spawn_blocking(move |g| g.audit().append_all(events))
            .await;
        let results = match res {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "allowed-request audit task failed (allowed requests keep flowing)");
                self.skipped
                    .fetch_add(skipped + records as u64, Ordering::Relaxed);
                self.put_back(&over);
                return;
            }
        };
        // An agent's count whose entry did not land is counted again.
        let first_over = records + usize::from(skipped > 0);
        let lost_over: Vec<(String, u64, u64)> = over
            .iter()
            .enumerate()
            .filter(|(i, _)| results.get(first_over + i).is_none_or(|r| r.is_err()))
            .map(|(_, c)| c.clone())
            .collect();
        self.put_back(&lost_over);
        // Records that did not land are counted like skipped ones, so the next write that
        // succeeds puts the gap on the record; so is the count a failed gap entry carried.
        let lost = results.iter().take(records).filter(|r| r.is_err()).count() as u64;
        let gap_lost = skipped > 0 && results.get(records).is_none_or(|r| r.is_err());
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            tracing::warn!(error = %e, lost, of = records, "could not audit allowed requests (allowed requests keep flowing)");
        }
        let carry = lost + if gap_lost { skipped } else { 0 };
        if carry > 0 {
            self.skipped.fetch_add(carry, Ordering::Relaxed);
        }
    }
}
