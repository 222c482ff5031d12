//! Counted slots by key, at most so many per key. Per agent: status waits (`GET
//! https://airlock.local/v1/reviews/{id}?wait=N` and held calls sent with `Airlock-Wait`), each of
//! which reads its review again on every change anyone makes, and requests whose bodies Airlock
//! buffers (to judge or hold them), each of which holds up to `gate.max_body_bytes` in memory.
//! Per review id, without a bound: the sends this process has in progress.
//!
//! At shutdown the waits are ended ([`AgentSlots::close`]): each answers at once with its
//! review as it is then, as a wait that timed out does, so no wait holds the drain.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Concurrent waits per agent; more get 429 with `Retry-After` (a client polling many reviews
/// waits on a few at a time, or polls without `wait`).
pub const MAX_WAITS_PER_AGENT: usize = 16;

/// Status reads (without `wait`) per agent at once; more wait their turn (`agent_turns.rs`).
pub const MAX_STATUS_READS_PER_AGENT: usize = 8;

type Open = Arc<Mutex<HashMap<String, usize>>>;

/// Open slots of one kind by key (an agent's name, a review id), at most `max` per key.
pub struct AgentSlots {
    open: Open,
    max: usize,
    /// Cancelled by [`AgentSlots::close`]: whoever holds a slot stops waiting.
    closed: tokio_util::sync::CancellationToken,
}

impl AgentSlots {
    pub fn new(max: usize) -> AgentSlots {
        AgentSlots {
            open: Open::default(),
            max,
            closed: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Tells every holder of a slot, now and later, to stop waiting (at shutdown).
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Resolves once [`AgentSlots::close`] was called (at once if it was already).
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }

    /// The bound per agent.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Does `key` hold a slot now?
    pub fn holds(&self, key: &str) -> bool {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.contains_key(key)
    }

    /// A slot for one more of `agent`'s, or `None` when it has `max` open.
    pub fn enter(&self, agent: &str) -> Option<AgentSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(agent.to_string()).or_default();
        if *n >= self.max {
            if *n == 0 {
                open.remove(agent);
            }
            return None;
        }
        *n += 1;
        Some(AgentSlot {
            open: self.open.clone(),
            agent: agent.to_string(),
        })
    }
}

/// One open slot; given back when dropped (the agent forgotten at zero).
pub struct AgentSlot {
    open: Open,
    agent: String,
}

impl Drop for AgentSlot {
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
        let waits = AgentSlots::new(MAX_WAITS_PER_AGENT);
        let held: Vec<AgentSlot> = (0..MAX_WAITS_PER_AGENT)
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
