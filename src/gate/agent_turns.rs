//! One hold at a time per agent while `gate.max_pending_per_agent` applies: an agent's pending
//! count is read and its new review written in one turn, so concurrent holds of one agent
//! cannot pass the cap together (on one instance; instances sharing a store may each add the
//! holds they have in flight). Other agents' holds, and the group commit, are not held up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

type Turns = Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>;

/// The agents with a hold in progress, each with its queue of holds waiting their turn.
#[derive(Default)]
pub(super) struct AgentTurns {
    turns: Turns,
}

impl AgentTurns {
    /// Waits for `agent`'s turn; it lasts until the returned guard is dropped.
    pub(super) async fn take(&self, agent: &str) -> Turn {
        let queue = {
            let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
            turns.entry(agent.to_string()).or_default().clone()
        };
        Turn {
            guard: Some(queue.lock_owned().await),
            turns: self.turns.clone(),
        }
    }

    /// Agents with a turn taken or awaited (for tests: the map empties as turns end).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.turns.lock().map(|t| t.len()).unwrap_or(0)
    }
}

/// One agent's turn to hold; the agent's entry is forgotten when no one else waits.
pub(super) struct Turn {
    guard: Option<OwnedMutexGuard<()>>,
    turns: Turns,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        drop(self.guard.take());
        // Entries with only the map's own reference left: nobody holds or awaits those agents'
        // turns (a waiter clones the queue under this lock before it waits). Every such entry,
        // not only this agent's: one whose waiter was cancelled is tidied too.
        turns.retain(|_, q| Arc::strong_count(q) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_turn_per_agent_and_the_map_empties() {
        let turns = Arc::new(AgentTurns::default());
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
}
