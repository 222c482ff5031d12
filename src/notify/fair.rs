//! A channel's queue of notifications not yet sent, fair between agents: taken in turns, one
//! agent's at a time, and when full the newest of the agent with the most waiting gives way. One
//! agent's flood of holds then neither delays another agent's notification behind it (the rate
//! limit sends 30 a minute) nor pushes it out of a full queue.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::Escalation;

pub(super) struct FairQueue {
    by_agent: HashMap<String, VecDeque<Arc<Escalation>>>,
    /// Agents with something waiting, in the order of their turns.
    turns: VecDeque<String>,
    len: usize,
    cap: usize,
}

impl FairQueue {
    pub(super) fn new(cap: usize) -> FairQueue {
        FairQueue {
            by_agent: HashMap::new(),
            turns: VecDeque::new(),
            len: 0,
            cap: cap.max(1),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `e`; when the queue is full, returns the notification given up for it: the newest
    /// of the agent with the most waiting (`e` itself when that is `e`'s agent).
    pub(super) fn push(&mut self, e: Arc<Escalation>) -> Option<Arc<Escalation>> {
        let agent = e.agent.clone().unwrap_or_default();
        if self.len >= self.cap {
            let own = self.by_agent.get(&agent).map_or(0, VecDeque::len);
            let longest = self
                .by_agent
                .iter()
                .max_by_key(|(_, q)| q.len())
                .map(|(a, q)| (a.clone(), q.len()));
            match longest {
                Some((other, n)) if n > own + 1 => {
                    let dropped = self.by_agent.get_mut(&other).and_then(VecDeque::pop_back);
                    self.len -= usize::from(dropped.is_some());
                    self.push_unchecked(agent, e);
                    return dropped;
                }
                _ => return Some(e),
            }
        }
        self.push_unchecked(agent, e);
        None
    }

    fn push_unchecked(&mut self, agent: String, e: Arc<Escalation>) {
        let q = self.by_agent.entry(agent.clone()).or_default();
        if q.is_empty() {
            self.turns.push_back(agent);
        }
        q.push_back(e);
        self.len += 1;
    }

    /// The next notification: the oldest of the agent whose turn it is.
    pub(super) fn pop(&mut self) -> Option<Arc<Escalation>> {
        while let Some(agent) = self.turns.pop_front() {
            let Some(q) = self.by_agent.get_mut(&agent) else {
                continue;
            };
            let Some(e) = q.pop_front() else {
                self.by_agent.remove(&agent);
                continue;
            };
            self.len -= 1;
            if q.is_empty() {
                self.by_agent.remove(&agent);
            } else {
                self.turns.push_back(agent);
            }
            return Some(e);
        }
        None
    }

    /// Everything waiting, in turns.
    pub(super) fn drain(&mut self) -> Vec<Arc<Escalation>> {
        let mut out = Vec::with_capacity(self.len);
        while let Some(e) = self.pop() {
            out.push(e);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(agent: &str, n: usize) -> Arc<Escalation> {
        Arc::new(Escalation {
            review_id: format!("rev_{agent}_{n}"),
            tool: None,
            also_tools: Vec::new(),
            service: None,
            agent: Some(agent.to_string()),
            method: "DELETE".into(),
            host: "api.github.com".into(),
            path: "/".into(),
            reason_codes: Vec::new(),
            expires_at: String::new(),
            expires_at_ms: 0,
            agent_owner: None,
            approval: Default::default(),
        })
    }

    fn ids(v: &[Arc<Escalation>]) -> Vec<&str> {
        v.iter().map(|e| e.review_id.as_str()).collect()
    }

    #[test]
    fn agents_take_turns_behind_a_flood() {
        let mut q = FairQueue::new(100);
        for n in 0..50 {
            assert!(q.push(ev("flood", n)).is_none());
        }
        assert!(q.push(ev("real", 0)).is_none());
        let first: Vec<_> = (0..2).filter_map(|_| q.pop()).collect();
        assert_eq!(ids(&first), ["rev_flood_0", "rev_real_0"]);
        assert_eq!(q.len(), 49);
        assert_eq!(q.drain().len(), 49);
        assert!(q.is_empty() && q.pop().is_none());
    }

    #[test]
    fn a_full_queue_gives_up_the_floods_newest_not_another_agents() {
        let mut q = FairQueue::new(4);
        for n in 0..4 {
            assert!(q.push(ev("flood", n)).is_none());
        }
        let dropped = q.push(ev("real", 0)).expect("one gives way");
        assert_eq!(dropped.review_id, "rev_flood_3");
        let dropped = q.push(ev("flood", 4)).expect("one gives way");
        assert_eq!(dropped.review_id, "rev_flood_4", "the flood's own newest");
        assert_eq!(
            ids(&q.drain()),
            ["rev_flood_0", "rev_real_0", "rev_flood_1", "rev_flood_2"]
        );
    }
}
