//! The money an agent may move without review: a rule's `spends` values a soft-gated call
//! (US dollars at a high estimate), and `gate.money_budget_usd` caps their sum per agent over
//! the last 24 hours, so many calls under the per-call limit do not add up unseen. A call that
//! would pass the budget is held instead. Sums are kept per agent and hour as store counters
//! (`spend/<agent>/<hour>` in [`Tree::Index`], which no instance watches for changes): a check
//! reads the agent's counters from 24 hours before the current one on (later ones too: another
//! instance's clock may run ahead, or this one may have stepped back), so a call counts for 24
//! to 25 hours, and adds to the current hour's under a compare-and-swap on every counter it
//! read, so instances sharing a store share the budget. Hours that left the window are removed
//! a few at a time by the next call of the same agent.

use std::sync::Arc;

use super::{Gate, GateError};
use crate::store::{counter_value, prefix_end, Batch, Tree};

/// The hours before the current one that a budget spans.
const WINDOW_HOURS: u64 = 24;
/// Past hours removed per call (a window's worth at most ever accrue between two calls).
const PRUNE: usize = 4;
/// Compare-and-swap attempts before giving up (the caller holds the call).
const ATTEMPTS: usize = 16;
/// Counters read per check: the window, and as many later hours (clocks ahead).
const MOST_READ: usize = 2 * (WINDOW_HOURS as usize + 1);

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
    /// Cents are rounded up; an amount that is not a finite number never fits. A store error is
    /// an error (the caller holds the call).
    pub async fn spend(self: &Arc<Self>, agent: &str, usd: f64) -> Result<Spend, GateError> {
        let agent = agent.to_string();
        self.blocking(move |g| {
            let budget_usd = g.cfg.money_budget_usd;
            let budget = (budget_usd * 100.0).floor().max(0.0) as u64;
            let hour = g.clock.now_ms() / 3_600_000;
            let prefix = prefix(&agent);
            let start = key(&prefix, hour.saturating_sub(WINDOW_HOURS));
            let (now_key, next_key) = (key(&prefix, hour), key(&prefix, hour.saturating_add(1)));
            let end = prefix_end(&prefix);
            for _ in 0..ATTEMPTS {
                let counters = g
                    .store
                    .range(Tree::Index, &start, end.as_deref(), MOST_READ)?;
                let spent = counters
                    .iter()
                    .fold(0u64, |sum, (_, v)| sum.saturating_add(counter_value(v)));
                let over = |spent: u64| Spend::Over {
                    spent_usd: spent as f64 / 100.0,
                    budget_usd,
                };
                if !usd.is_finite() || usd < 0.0 {
                    return Ok(over(spent));
                }
                let cents = (usd * 100.0).ceil() as u64;
                if spent.saturating_add(cents) > budget {
                    return Ok(over(spent));
                }
                if cents == 0 {
                    return Ok(Spend::Counted);
                }
                // Every counter read still reads so, and no later hour began meanwhile.
                let mut b = Batch::default();
                for (k, v) in &counters {
                    b.expect(Tree::Index, k, Some(v));
                }
                for k in [&now_key, &next_key] {
                    if !counters.iter().any(|(c, _)| c == k) {
                        b.expect(Tree::Index, k, None);
                    }
                }
                b.add(
                    Tree::Index,
                    &now_key,
                    i64::try_from(cents).unwrap_or(i64::MAX),
                );
                for (old, _) in g.store.range(Tree::Index, &prefix, Some(&start), PRUNE)? {
                    b.delete(Tree::Index, &old);
                }
                if g.store.apply(b)? {
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
        // Agent names are `[A-Za-z0-9._-]`; a `/` would be the worst case for the prefix.
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
