//! Rules catalog: rule files (`rules/*.toml`) -> checked, compiled matcher -> verdict.
//! `catalog/mod.rs` documents the file format; `live.rs` reloads on file change and (through
//! `server.rs`) on SIGHUP, refusing rules the configured reviewers could never approve.

mod catalog;
mod classifier;
pub mod coverage;
pub mod fields;
pub mod git;
pub mod graphql;
mod live;
pub mod money;
pub mod normalize;
pub mod readings;

pub use catalog::{
    is_read, Catalog, CatalogOptions, Condition, Entry, GraphqlRuleInfo, RefForm, RuleInfo, Test,
};
pub use classifier::{AllowAll, Classifier, PolicyCheck};
pub use live::LiveCatalog;

#[derive(Debug, Clone, thiserror::Error)]
pub enum RulesError {
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    Io { file: String, message: String },
    /// The rules parse, but fail the check against the reviewers ([`PolicyCheck`]).
    #[error("approval policies: {0}")]
    Policy(String),
}

use std::collections::BTreeMap;
use std::time::Duration;

/// What Airlock does with a request.
/// Ordered by severity; when several rules match, the most severe wins.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Forward at once.
    Allow,
    /// Soft gate: forward, record, notify.
    Notify,
    /// Hard gate: hold until a human approves.
    Escalate,
    /// Refuse outright.
    Block,
}

impl Action {
    /// Lower-case name, as in rules files and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Notify => "notify",
            Action::Escalate => "escalate",
            Action::Block => "block",
        }
    }
}

/// How reversible a matched call's effect is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Reversible,
    Visible,
    Irreversible,
    Money,
}

/// The parts of a request the catalog looks at, as received from the agent (not normalised).
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// Method exactly as received (case preserved).
    pub method: &'a str,
    /// Host as received, without port (may carry upper case or a trailing dot).
    pub host: &'a str,
    pub port: u16,
    /// Raw path and query, not percent-decoded.
    pub path_and_query: &'a str,
    pub headers: &'a http::HeaderMap,
}

/// The catalog's answer for one request.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verdict {
    pub action: Action,
    /// Which rule decided, e.g. `github.toml:12`; `None` when a default or a guard decided.
    pub rule_id: Option<String>,
    pub service: Option<String>,
    /// Tool name, e.g. `github.repos.delete`.
    pub tool: Option<String>,
    pub class: Option<Class>,
    /// Stable machine-readable reasons, e.g. `rule_match`, `method_override`, `duplicate_key`.
    pub reason_codes: Vec<String>,
    /// One human sentence: which rule matched and why.
    pub explanation: String,
    /// Parameters the rule extracted (path params, amount, currency, mutation names...).
    pub params: BTreeMap<String, String>,
    /// Per-rule review expiry, overriding the configured default.
    pub expiry: Option<Duration>,
    /// Per-rule default for how long an escalated request may wait for approval inline.
    pub wait: Option<Duration>,
    /// Per-rule approval policy (quorum, approvers, self-approval); `None`: one reviewer.
    pub approval: Option<ApprovalPolicy>,
    /// Money this call moves without review, in US dollars at a high estimate (a rule's
    /// `spends`): counted against the agent's `gate.money_budget_usd`.
    pub spend_usd: Option<f64>,
}

/// Who must approve an escalated request before it executes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ApprovalPolicy {
    /// Distinct reviewers whose approval is needed (quorum).
    pub required: u32,
    /// Reviewer names or `group:NAME`; empty: any reviewer.
    pub approvers: Vec<String>,
    /// May the owner of the agent that sent the request approve it?
    pub self_approval: bool,
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        Self {
            required: 1,
            approvers: Vec::new(),
            self_approval: false,
        }
    }
}

impl ApprovalPolicy {
    /// The policy a request matched by rules with policies `a` and `b` (`None`: one reviewer,
    /// anyone, not the owner) needs: the larger quorum, self-approval only if both allow it,
    /// and the approvers both lists admit (one list when the other is open; two lists that
    /// name no one in common: the list of the larger quorum, else `a`'s).
    pub fn strictest(a: Option<&ApprovalPolicy>, b: Option<&ApprovalPolicy>) -> Option<Self> {
        let (a, b) = match (a, b) {
            (None, None) => return None,
            (Some(p), None) | (None, Some(p)) => (p.clone(), ApprovalPolicy::default()),
            (Some(a), Some(b)) => (a.clone(), b.clone()),
        };
        let approvers = match (a.approvers.is_empty(), b.approvers.is_empty()) {
            (true, _) => b.approvers.clone(),
            (_, true) => a.approvers.clone(),
            _ => {
                let both: Vec<String> = a
                    .approvers
                    .iter()
                    .filter(|x| b.approvers.iter().any(|y| crate::person::same(x, y)))
                    .cloned()
                    .collect();
                match (both.is_empty(), b.required > a.required) {
                    (false, _) => both,
                    (true, true) => b.approvers.clone(),
                    (true, false) => a.approvers.clone(),
                }
            }
        };
        Some(ApprovalPolicy {
            required: a.required.max(b.required),
            approvers,
            self_approval: a.self_approval && b.self_approval,
        })
    }

    /// May `reviewer` (member of `groups`) decide under this policy? Names and groups are
    /// compared normalized ([`crate::person::key`]).
    pub fn admits(&self, reviewer: &str, groups: &[String]) -> bool {
        self.approvers.is_empty()
            || self
                .approvers
                .iter()
                .any(|a| match a.strip_prefix("group:") {
                    Some(g) => groups.iter().any(|x| crate::person::same(x, g)),
                    None => crate::person::same(a, reviewer),
                })
    }
}

/// One rule's approval policy, where it is written: checked against the configured reviewers
/// when Airlock starts, when the reviewers are reloaded and when the rules are reloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulePolicy {
    /// `file:line` of the rule.
    pub rule_id: String,
    pub tool: String,
    pub policy: ApprovalPolicy,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "bucket:   {}", self.action.as_str())?;
        writeln!(f, "tool:     {}", self.tool.as_deref().unwrap_or("-"))?;
        writeln!(f, "service:  {}", self.service.as_deref().unwrap_or("-"))?;
        writeln!(f, "rule:     {}", self.rule_id.as_deref().unwrap_or("-"))?;
        if let Some(c) = self.class {
            writeln!(f, "class:    {}", format!("{c:?}").to_lowercase())?;
        }
        writeln!(f, "reasons:  {}", self.reason_codes.join(", "))?;
        for (k, v) in &self.params {
            writeln!(f, "param:    {k} = {v}")?;
        }
        if let Some(p) = &self.approval {
            let who = match p.approvers.is_empty() {
                true => "any reviewer".to_string(),
                false => p.approvers.join(", "),
            };
            let owner = match p.self_approval {
                true => "",
                false => ", not the agent's owner",
            };
            writeln!(f, "approval: {} of {who}{owner}", p.required)?;
        }
        if let Some(usd) = self.spend_usd {
            writeln!(
                f,
                "spends:   up to ${usd:.2}, counted against the agent's gate.money_budget_usd"
            )?;
        }
        write!(f, "why:      {}", self.explanation)
    }
}
