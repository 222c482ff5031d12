//! Turns per agent: at most a given number of one agent's operations of a kind run at once,
//! the others wait in line (cheaply, as futures), other agents never held up. Holds take one
//! turn at a time while `gate.max_pending_per_agent` applies: an agent's pending count is read
//! and its new review written in one turn, so concurrent holds of one agent cannot pass the cap
//! together (on one instance; instances sharing a store may each add the holds they have in
//! flight). Status reads take one of 8, so one agent's reads cannot fill the blocking pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

type Turns = Arc<Mutex<HashMap<String, Arc<Semaphore>>>>;

/// The agents with a turn taken or awaited, each with its line of waiters.
pub(super) struct AgentTurns {
    turns: Turns,
    /// Turns one agent may hold at once.
    per_agent: usize,
}

impl AgentTurns {
    pub(super) fn new(per_agent: usize) -> AgentTurns {
        AgentTurns {
            turns: Turns::default(),
            per_agent: per_agent.max(1),
        }
    }

    /// Waits for one of `agent`'s turns; it lasts until the returned guard is dropped.
    pub(super) async fn take(&self, agent: &str) -> Turn {
        let line = {
            let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
            turns
                .entry(agent.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_agent)))
                .clone()
        };
        loop {
            // Never closed: an error cannot happen, and waiting again is the safe answer.
            if let Ok(permit) = line.clone().acquire_owned().await {
                return Turn {
                    permit: Some(permit),
                    turns: self.turns.clone(),
                };
            }
        }
    }

    /// Agents with a turn taken or awaited (for tests: the map empties as turns end).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.turns.lock().map(|t| t.len()).unwrap_or(0)
    }
}

/// One of an agent's turns; the agent's entry is forgotten when no one else holds or awaits one.
pub struct Turn {
    permit: Option<OwnedSemaphorePermit>,
    turns: Turns,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        drop(self.permit.take());
        // Entries with only the map's own reference left: nobody holds or awaits those agents'
        // turns (a waiter clones the line under this lock before it waits, and a permit holds
        // its semaphore). Every such entry, not only this agent's: one whose waiter was
        // cancelled is tidied too.
        turns.retain(|_, q| Arc::strong_count(q) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_turn_per_agent_and_the_map_empties() {
        let turns = Arc::new(AgentTurns::new(1));
        let first = turns.take("a").await;
        let other = turns.take("b").await;
        let t2 = turns.clone();
        let second = tokio::spawn(async move { t2.take("a").await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "a's second hold waits for a's first");
        drop(other);
        drop(first);
        let second = second.await.expect("the second turn");
        assert_eq!(turns.len(), 1);
        drop(second);
        assert_eq!(turns.len(), 0, "no agent left once every turn ended");
        // A waiter cancelled while it waits leaves nothing behind once the holder is done.
        let holder = turns.take("c").await;
        let t3 = turns.clone();
        let waiter = tokio::spawn(async move { t3.take("c").await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiter.abort();
        let _ = waiter.await;
        drop(holder);
        assert_eq!(turns.len(), 0);
    }

    #[tokio::test]
    async fn several_turns_per_agent_when_asked() {
        let turns = Arc::new(AgentTurns::new(2));
        let (a, b) = (turns.take("a").await, turns.take("a").await);
        let t2 = turns.clone();
        let third = tokio::spawn(async move { t2.take("a").await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "a's third waits while two run");
        drop(a);
        let third = third.await.expect("the third turn");
        drop((b, third));
        assert_eq!(turns.len(), 0);
    }
}
