//! How many status waits (`GET http://airlock.local/v1/reviews/{id}?wait=N`) one agent keeps
//! open at once. Each waiter reads its review again on every change anyone makes, so waiters
//! without a bound would turn each hold, decision or expiry into unbounded store reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Concurrent waits per agent; more get 429 with `Retry-After` (a client polling many reviews
/// waits on a few at a time, or polls without `wait`).
pub const MAX_WAITS_PER_AGENT: usize = 16;

type Open = Arc<Mutex<HashMap<String, usize>>>;

/// Agents' open waits.
#[derive(Default)]
pub(super) struct AgentWaits {
    open: Open,
}

impl AgentWaits {
    /// A slot for one more of `agent`'s waits, or `None` when it has [`MAX_WAITS_PER_AGENT`].
    pub(super) fn enter(&self, agent: &str) -> Option<WaitSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(agent.to_string()).or_default();
        if *n >= MAX_WAITS_PER_AGENT {
            return None;
        }
        *n += 1;
        Some(WaitSlot {
            open: self.open.clone(),
            agent: agent.to_string(),
        })
    }
}

/// One open wait; given back when dropped (the agent forgotten at zero).
pub struct WaitSlot {
    open: Open,
    agent: String,
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.agent) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.agent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_agent_has_its_own_bound_and_slots_come_back() {
        let waits = AgentWaits::default();
        let held: Vec<WaitSlot> = (0..MAX_WAITS_PER_AGENT)
            .filter_map(|_| waits.enter("a"))
            .collect();
        assert_eq!(held.len(), MAX_WAITS_PER_AGENT);
        assert!(waits.enter("a").is_none(), "over the bound");
        assert!(waits.enter("b").is_some(), "another agent is not affected");
        drop(held);
        assert!(waits.enter("a").is_some(), "slots come back");
        assert!(waits.open.lock().map(|o| o.is_empty()).unwrap_or(false));
    }
}
