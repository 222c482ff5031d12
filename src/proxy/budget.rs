//! A soft-gated call that moves money (a rule's `spends`) is counted against its agent's
//! `gate.money_budget_usd` before it is forwarded; one that would pass the budget, or whose
//! count cannot be kept (a store error), is held instead (fail closed).

use std::sync::Arc;

use crate::gate::budget::Spend;
use crate::rules::{Action, Verdict};

/// `verdict`, held if it spends past `agent`'s budget.
pub(super) async fn apply(
    gate: &Arc<crate::gate::Gate>,
    agent: &str,
    mut verdict: Verdict,
) -> Verdict {
    let Some(usd) = verdict
        .spend_usd
        .filter(|_| verdict.action <= Action::Notify)
    else {
        return verdict;
    };
    let why = match gate.spend(agent, usd).await {
        Ok(Spend::Counted) => return verdict,
        Ok(Spend::Over {
            spent_usd,
            budget_usd,
        }) => format!(
            "held: agent {agent}'s unreviewed money calls in the last 24 hours came to ${spent_usd:.2} and this one moves up to ${usd:.2}, past gate.money_budget_usd (${budget_usd:.2}; amounts at a high estimate in US dollars)"
        ),
        Err(e) => {
            tracing::error!(error = %e, "could not count a money call against its agent's budget; holding it (fail closed)");
            "held: the money this agent moved unreviewed could not be counted (a store error; Airlock's log has it)".to_string()
        }
    };
    verdict.action = Action::Escalate;
    verdict.reason_codes.push("money_budget".into());
    verdict.explanation = format!("{}; {why}", verdict.explanation);
    verdict.spend_usd = None;
    verdict
}
