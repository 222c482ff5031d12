//! The money an agent may move without review: a rule's `spends` values a soft-gated call
//! (US dollars at a high estimate), and `gate.money_budget_usd` caps their sum per agent over
//! the last 24 hours, so many calls under the per-call limit do not add up unseen. A call that
//! would pass the budget is held instead. Sums are kept per agent and hour as store counters
//! (`spend/<agent>/<hour>` in [`Tree::Meta`]): a check reads at most 24 of them and adds to one
//! under a compare-and-swap, so instances sharing a store share the budget. Hours that left
//! the window are removed a few at a time by the next call of the same agent.

use std::sync::Arc;

use super::{Gate, GateError};
use crate::store::{counter_value, Batch, Tree};

/// The hours a budget spans.
const WINDOW_HOURS: u64 = 24;
/// Past hours removed per call (a window's worth at most ever accrue between two calls).
const PRUNE: usize = 4;
/// Compare-and-swap attempts before giving up (the caller holds the call).
const ATTEMPTS: usize = 16;

/// What a check of the budget found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spend {
    /// Within the budget, and counted.
    Counted,
    /// Over it: `spent` in the window already, not counted.
    Over { spent_usd: f64, budget_usd: f64 },
}

fn prefix(agent: &str) -> Vec<u8> {
    let mut k = b"spend/".to_vec();
    k.extend_from_slice(agent.as_bytes());
    k.push(b'/');
    k
}

fn key(prefix: &[u8], hour: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&hour.to_be_bytes());
    k
}

impl Gate {
    /// Counts `usd` against `agent`'s budget if it fits, else says by how much it would not.
    /// Cents are rounded up. A store error is an error (the caller holds the call).
    pub async fn spend(self: &Arc<Self>, agent: &str, usd: f64) -> Result<Spend, GateError> {
        let agent = agent.to_string();
        self.blocking(move |g| {
            let budget_usd = g.cfg.money_budget_usd;
            let cents = (usd * 100.0).ceil().max(0.0) as u64;
            let budget = (budget_usd * 100.0).floor().max(0.0) as u64;
            let hour = g.clock.now_ms() / 3_600_000;
            let first = hour.saturating_sub(WINDOW_HOURS - 1);
            let prefix = prefix(&agent);
            let (start, now_key, end) = (
                key(&prefix, first),
                key(&prefix, hour),
                key(&prefix, hour + 1),
            );
            for _ in 0..ATTEMPTS {
                let entries =
                    g.store
                        .range(Tree::Meta, &start, Some(&end), WINDOW_HOURS as usize)?;
                let spent: u64 = entries.iter().map(|(_, v)| counter_value(v)).sum();
                if spent.saturating_add(cents) > budget {
                    return Ok(Spend::Over {
                        spent_usd: spent as f64 / 100.0,
                        budget_usd,
                    });
                }
                let current = entries
                    .iter()
                    .find(|(k, _)| *k == now_key)
                    .map(|(_, v)| v.clone());
                let mut b = Batch::default();
                b.expect(Tree::Meta, &now_key, current.as_deref());
                b.add(
                    Tree::Meta,
                    &now_key,
                    i64::try_from(cents).unwrap_or(i64::MAX),
                );
                for (old, _) in g.store.range(Tree::Meta, &prefix, Some(&start), PRUNE)? {
                    b.delete(Tree::Meta, &old);
                }
                if cents == 0 || g.store.apply(b)? {
                    return Ok(Spend::Counted);
                }
            }
            Err(GateError::Contention(format!("money budget of {agent}")))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agents_window_holds_its_own_hours_only() {
        let (a, ab) = (prefix("a"), prefix("a/b"));
        let hour = 490_000;
        let (start, end) = (key(&a, hour - 23), key(&a, hour + 1));
        assert!(start < key(&a, hour) && key(&a, hour) < end);
        assert!(key(&a, 255) < key(&a, 256));
        // Another agent's hour is neither in the window nor among the hours pruned before it.
        let other = key(&ab, hour);
        assert!(!(start <= other && other < end));
        assert!(!(a <= other && other < start));
    }
}
