//! The bytes of request bodies Airlock buffers at once, all agents together
//! (`gate.max_buffered_bytes`). Each agent may have `proxy.max_buffered_per_agent` bodies read
//! or held at once, each up to `gate.max_body_bytes`; across many agents that alone is
//! unbounded. A body takes its bytes before they are read (its declared length at once, else
//! each frame as it comes); one that would pass the budget is refused 503 `buffer_full` with
//! `Retry-After`, nothing stored or sent (fail closed). The bytes come back when the
//! [`Reservation`] is dropped: once the body is sent on, or the held request is answered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::wire::Refusal;

/// The budget shared by every buffered body.
pub struct BufferBudget {
    max: usize,
    used: Arc<AtomicUsize>,
}

impl BufferBudget {
    pub fn new(max: usize) -> BufferBudget {
        BufferBudget {
            max,
            used: Arc::default(),
        }
    }

    /// The bound, in bytes.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes taken now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// An empty reservation, to grow as a body is read.
    pub fn reserve(&self) -> Reservation {
        Reservation {
            used: self.used.clone(),
            max: self.max,
            held: 0,
        }
    }
}

/// The bytes one body holds of the budget; given back when dropped.
pub struct Reservation {
    used: Arc<AtomicUsize>,
    max: usize,
    held: usize,
}

impl Reservation {
    /// Grows the reservation to `total` bytes (no change if it holds that many already), or
    /// the refusal when the budget cannot take them.
    pub fn grow_to(&mut self, total: usize) -> Result<(), Refusal> {
        let more = total.saturating_sub(self.held);
        if more == 0 {
            return Ok(());
        }
        let max = self.max;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more).filter(|n| *n <= max)
            })
            .map_err(|_| full(max))?;
        self.held = total;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.used.fetch_sub(self.held, Ordering::AcqRel);
    }
}

/// 503 while the budget is spent.
pub fn full(max: usize) -> Refusal {
    Refusal::internal(
        "buffer_full",
        format!(
            "Airlock is buffering {max} bytes of request bodies to judge or hold them, the most \
             it holds at once for all agents together (gate.max_buffered_bytes); this request \
             was not read further, stored or forwarded: retry shortly"
        ),
    )
    .retry_after("5")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_budget_and_give_it_back() {
        let budget = BufferBudget::new(100);
        let mut a = budget.reserve();
        assert!(a.grow_to(60).is_ok());
        assert!(a.grow_to(50).is_ok(), "no shrink, no change");
        let mut b = budget.reserve();
        let refused = b.grow_to(41).err();
        assert_eq!(refused.map(|r| r.code), Some("buffer_full"));
        assert!(b.grow_to(40).is_ok());
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
