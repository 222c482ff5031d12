//! Records allowed catalog requests in the audit log off the request path. A request hands its
//! record to a bounded queue and moves on; one recorder task writes whatever has queued as one
//! group commit (one blocking thread however many requests are in flight). When the queue is
//! full, or a write fails, the record is counted instead, and the count lands in the log as an
//! `audit_gap` with the next write that succeeds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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

pub struct AllowRecorder {
    tx: mpsc::Sender<Event>,
    rx: Mutex<Option<mpsc::Receiver<Event>>>,
    skipped: AtomicU64,
}

impl Default for AllowRecorder {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            skipped: AtomicU64::new(0),
        }
    }
}

impl AllowRecorder {
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
                return;
            }
            self.write(gate.clone(), batch).await;
        }
    }

    async fn write(&self, gate: Arc<Gate>, batch: Vec<Event>) {
        let skipped = self.skipped.swap(0, Ordering::Relaxed);
        let records = batch.len();
        let mut events = batch;
        if skipped > 0 {
            events.push(Event::AuditGap(AuditGap {
                skipped_allow_records: skipped,
                reason: "allowed-request records not written (queue full or a failed write)",
            }));
        }
        let res = tokio::task::spawn_blocking(move || gate.audit().append_all(events)).await;
        let results = match res {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "allowed-request audit task failed (allowed requests keep flowing)");
                self.skipped
                    .fetch_add(skipped + records as u64, Ordering::Relaxed);
                return;
            }
        };
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
