//! Per-review wakeups for waits ([`super::Gate::wait_final`]: an agent's status wait, a held
//! call's `Airlock-Wait`): a wait registers interest in its review's id and is woken only when
//! that review changes (here, or on another instance as the store's change feed names it), so
//! the cost of waking follows the changes of the reviews waited on, not the number of waits
//! times the number of changes anywhere. A notice that names no review (a feed that reconnected
//! or fell behind) wakes every wait once.
//!
//! One map entry per review waited on, removed when its last wait goes away: the map holds the
//! reviews waited on now, whatever the history. It is locked only by waits coming and going
//! and by review transitions (each already a store commit), never on the pass-through path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

/// The waits' registrations, by review id.
#[derive(Default)]
pub(super) struct Wakeups {
    /// One change counter per review waited on; its receivers are the waits.
    waiting: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Reviews read by waits (each wait's first read, then one per wake or fallback re-check).
    reads: AtomicU64,
}

impl Wakeups {
    fn map(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        // Nothing in the map can be left half-changed by a panic: recover it as it is.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Interest in review `id`'s changes, until the [`Interest`] drops. Registered before the
    /// wait's first read, so no change after that read goes unnoticed.
    pub(super) fn register(&self, id: &str) -> Interest<'_> {
        let rx = self
            .map()
            .entry(id.to_string())
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe();
        Interest {
            wakeups: self,
            id: id.to_string(),
            rx: Some(rx),
        }
    }

    /// Review `id` changed: wakes its waits, if any.
    pub(super) fn changed(&self, id: &str) {
        if let Some(s) = self.map().get(id) {
            s.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// Each of `ids` changed (one lock for them all).
    pub(super) fn changed_many<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let map = self.map();
        if map.is_empty() {
            return;
        }
        for id in ids {
            if let Some(s) = map.get(id) {
                s.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }

    /// Something changed, no one knows which reviews (a change feed that lost notices): wakes
    /// every wait once, each then reads its review.
    pub(super) fn changed_all(&self) {
        for s in self.map().values() {
            s.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// How many reviews are waited on now.
    pub(super) fn waited_on(&self) -> usize {
        self.map().len()
    }

    /// Counts one read of a review by a wait.
    pub(super) fn count_read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        crate::metrics::wait_read();
    }

    /// Reads of reviews by waits so far.
    pub(super) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

/// One wait's interest in one review; deregisters on drop (the entry goes with the last one).
pub(super) struct Interest<'a> {
    wakeups: &'a Wakeups,
    id: String,
    rx: Option<watch::Receiver<u64>>,
}

impl Interest<'_> {
    /// Marks every change so far as seen: call before reading the review.
    pub(super) fn seen(&mut self) {
        if let Some(rx) = self.rx.as_mut() {
            rx.borrow_and_update();
        }
    }

    /// Until the review changes after the last [`Interest::seen`] (at once if it already did).
    pub(super) async fn changed(&mut self) {
        let ended = match self.rx.as_mut() {
            Some(rx) => rx.changed().await.is_err(),
            None => true,
        };
        if ended {
            // Cannot happen (the entry lives while a receiver does); the wait's fallback
            // re-check and its deadline still end it.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Interest<'_> {
    fn drop(&mut self) {
        let mut map = self.wakeups.map();
        // Dropped under the lock, where every subscription is taken: the count is exact.
        drop(self.rx.take());
        if map.get(&self.id).is_some_and(|s| s.receiver_count() == 0) {
            map.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn woken(i: &mut Interest<'_>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), i.changed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn only_the_changed_review_wakes_and_entries_go_with_their_last_wait() {
        let w = Wakeups::default();
        let mut a = w.register("rev_a");
        let mut a2 = w.register("rev_a");
        let mut b = w.register("rev_b");
        assert_eq!(w.waited_on(), 2);
        for _ in 0..100 {
            w.changed("rev_other");
        }
        w.changed_many(["rev_x", "rev_y"]);
        assert!(!woken(&mut a).await && !woken(&mut b).await);
        w.changed("rev_a");
        assert!(woken(&mut a).await && woken(&mut a2).await);
        assert!(!woken(&mut b).await, "b is not woken by a's change");
        a.seen();
        assert!(!woken(&mut a).await, "a change is seen once");
        drop(a);
        assert_eq!(w.waited_on(), 2, "a2 still waits on rev_a");
        drop(a2);
        assert_eq!(w.waited_on(), 1);
        drop(b);
        assert_eq!(w.waited_on(), 0);
    }

    #[tokio::test]
    async fn a_change_no_one_can_name_wakes_every_wait_once() {
        let w = Wakeups::default();
        let mut a = w.register("rev_a");
        let mut b = w.register("rev_b");
        w.changed_all();
        assert!(woken(&mut a).await && woken(&mut b).await);
        a.seen();
        b.seen();
        assert!(!woken(&mut a).await && !woken(&mut b).await);
    }

    #[tokio::test]
    async fn a_change_before_the_wait_sleeps_is_not_lost() {
        let w = Wakeups::default();
        let mut a = w.register("rev_a");
        a.seen();
        w.changed("rev_a"); // between the read and the sleep
        assert!(woken(&mut a).await);
    }
}
