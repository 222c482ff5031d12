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
    is_read, Catalog, CatalogDigest, CatalogOptions, Condition, Entry, GraphqlRuleInfo, Loosening,
    RefForm, RuleInfo, Test,
};
pub use classifier::{AllowAll, Classifier, PolicyCheck, ReloadObserver};
pub use live::{LiveCatalog, Reloaded};

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
    /// A reload set off by a file change that would drop whole rules files or services (a
    /// half-copied directory looks the same): applied only on SIGHUP or a restart.
    #[error("{0}")]
    Dropped(String),
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
    /// The tools of the other rules held at the same level ([`Verdict::absorb_tie`]), in the
    /// order met: `tool` is only the first, and the agent chooses the order (GraphQL aliases).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_tools: Vec<String>,
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
    /// Further quorums, each of its own approvers, that must all be met too: a request held by
    /// several rules needs what every one of them needs ([`ApprovalPolicy::strictest`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<Quorum>,
}

/// `required` of a policy whose quorums are all in `also` (several rules' merged): more than
/// any build reads as reachable, so one that knows no `also` never approves on it.
pub const MERGED: u32 = u32::MAX;

/// `required` distinct approvals from reviewers `approvers` admits (empty: anyone).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quorum {
    pub required: u32,
    #[serde(default)]
    pub approvers: Vec<String>,
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        Self {
            required: 1,
            approvers: Vec::new(),
            self_approval: false,
            also: Vec::new(),
        }
    }
}

impl Quorum {
    /// Does the quorum's list (names or `group:NAME`, empty: anyone) admit `reviewer` of
    /// `groups`?
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

impl ApprovalPolicy {
    /// Every quorum the policy needs met: its own, then `also`.
    pub fn quorums(&self) -> Vec<Quorum> {
        if self.required == MERGED && !self.also.is_empty() {
            return self.also.clone();
        }
        let own = Quorum {
            required: self.required,
            approvers: self.approvers.clone(),
        };
        std::iter::once(own)
            .chain(self.also.iter().cloned())
            .collect()
    }

    /// The largest quorum: at least this many distinct people must approve.
    pub fn most_required(&self) -> u32 {
        self.quorums()
            .iter()
            .map(|q| q.required)
            .max()
            .unwrap_or(1)
            .max(1)
    }

    /// Are all quorums met by approvals from reviewers `approvers` (each its name and groups)?
    pub fn met_by(&self, approvers: &[(&str, &[String])]) -> bool {
        self.quorums().iter().all(|q| {
            let n = approvers
                .iter()
                .filter(|(name, groups)| q.admits(name, groups))
                .count();
            n >= q.required.max(1) as usize
        })
    }

    /// The policy a request that rules with policies `a` and `b` hold needs (`None`: one
    /// reviewer, anyone, not the owner): every quorum of both (one another implies dropped),
    /// self-approval only if both allow it. Each quorum is one rule's own, so a merged policy
    /// can be met whenever each rule's can.
    pub fn strictest(a: Option<&ApprovalPolicy>, b: Option<&ApprovalPolicy>) -> Option<Self> {
        if a.is_none() && b.is_none() {
            return None;
        }
        let (a, b) = (
            a.cloned().unwrap_or_default(),
            b.cloned().unwrap_or_default(),
        );
        let mut quorums: Vec<Quorum> = Vec::new();
        for q in a.quorums().into_iter().chain(b.quorums()) {
            // The same people, whatever the spelling or order of the lists.
            let within = |xs: &[String], ys: &[String]| {
                xs.iter()
                    .all(|x| ys.iter().any(|y| crate::person::same(x, y)))
            };
            let same_people = |o: &Quorum| {
                within(&o.approvers, &q.approvers) && within(&q.approvers, &o.approvers)
            };
            match quorums.iter_mut().find(|o| same_people(o)) {
                Some(o) => o.required = o.required.max(q.required),
                None => quorums.push(q),
            }
        }
        // A quorum open to anyone is met whenever another needs at least as many.
        let implied = |q: &Quorum, all: &[Quorum]| {
            q.approvers.is_empty()
                && all
                    .iter()
                    .any(|o| !o.approvers.is_empty() && o.required >= q.required)
        };
        let mut kept: Vec<Quorum> = quorums
            .iter()
            .filter(|q| !implied(q, &quorums))
            .cloned()
            .collect();
        let self_approval = a.self_approval && b.self_approval;
        if kept.len() < 2 {
            let one = kept.pop().unwrap_or(Quorum {
                required: 1,
                approvers: Vec::new(),
            });
            return Some(ApprovalPolicy {
                required: one.required,
                approvers: one.approvers,
                self_approval,
                also: Vec::new(),
            });
        }
        // Several quorums: stored under `also` alone, `required` set to what no build before
        // quorums can meet (it reads `required` and `approvers` only: sharing a store with one
        // must not let it approve on the first quorum). The same order on every run.
        kept.sort_by(|x, y| (y.required, &x.approvers).cmp(&(x.required, &y.approvers)));
        Some(ApprovalPolicy {
            required: MERGED,
            approvers: Vec::new(),
            self_approval,
            also: kept,
        })
    }

    /// [`ApprovalPolicy::strictest`] over the policies of several rules (each `None`: that
    /// rule sets none); `None` when none sets one.
    pub fn strictest_of<'p>(
        policies: impl IntoIterator<Item = Option<&'p ApprovalPolicy>>,
    ) -> Option<Self> {
        let mut any = false;
        let mut merged: Option<ApprovalPolicy> = None;
        let mut first = true;
        for p in policies {
            any |= p.is_some();
            merged = match (first, merged, p) {
                (true, _, p) => p.cloned(),
                // A rule without a policy adds only its "not the owner".
                (false, Some(mut m), None) => {
                    m.self_approval = false;
                    Some(m)
                }
                (false, m, p) => ApprovalPolicy::strictest(m.as_ref(), p),
            };
            first = false;
        }
        merged.filter(|_| any)
    }

    /// May `reviewer` (member of `groups`) decide under this policy (admitted by any of its
    /// quorums)? Names and groups are compared normalized ([`crate::person::key`]).
    pub fn admits(&self, reviewer: &str, groups: &[String]) -> bool {
        self.quorums().iter().any(|q| q.admits(reviewer, groups))
    }

    /// Every approver entry of every quorum, for messages.
    pub fn all_approvers(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for q in &self.quorums() {
            for a in &q.approvers {
                if !out.contains(a) {
                    out.push(a.clone());
                }
            }
        }
        out
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

/// The tool names a held call is shown under: the first rule's and every tied rule's
/// (`github.graphql.addLabelsToLabelable + github.graphql.deleteBranchProtectionRule`), none
/// left off; `None` when no rule names one.
pub fn tool_names(tool: Option<&str>, also: &[String]) -> Option<String> {
    let names: Vec<&str> = tool
        .into_iter()
        .chain(also.iter().map(String::as_str))
        .collect();
    (!names.is_empty()).then(|| names.join(" + "))
}

impl Verdict {
    /// Keeps the more severe of `best` and `v`; at the same severity, the first verdict taking
    /// in the other ([`Verdict::absorb_tie`]: every rule held at that level is shown and keeps
    /// its policy).
    pub fn keep_strictest(best: &mut Option<Verdict>, v: Verdict) {
        match best.as_mut() {
            Some(b) if v.action == b.action => b.absorb_tie(v),
            Some(b) if v.action < b.action => {}
            _ => *best = Some(v),
        }
    }

    /// Takes in `other`, a verdict at the same severity from another rule the request also
    /// meets: its approval policy joins ([`ApprovalPolicy::strictest`]), and the reviewer
    /// reads its reason, its reason codes, the parameters it tests and its tool (in
    /// `also_tools`, whatever the explanation's cap leaves off). The first rule still names the
    /// verdict.
    pub fn absorb_tie(&mut self, other: Verdict) {
        // Distinct tools are as many as the catalog's rules at most, however many aliases.
        for tool in other.tool.iter().chain(&other.also_tools) {
            if self.tool.as_ref() != Some(tool) && !self.also_tools.contains(tool) {
                self.also_tools.push(tool.clone());
            }
        }
        self.approval = ApprovalPolicy::strictest(self.approval.as_ref(), other.approval.as_ref());
        // Bounded: an agent may send a thousand aliased mutations.
        const SHOWN: usize = 4096;
        let same_rule = other.rule_id.is_some() && other.rule_id == self.rule_id;
        if !same_rule
            && self.explanation.len() < SHOWN
            && !self.explanation.contains(&other.explanation)
        {
            self.explanation.push_str("; also ");
            self.explanation.push_str(&other.explanation);
        }
        // The shorter deadline and inline wait of the two.
        self.expiry = match (self.expiry, other.expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.wait = match (self.wait, other.wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for code in other.reason_codes {
            if !self.reason_codes.contains(&code) {
                self.reason_codes.push(code);
            }
        }
        for (k, v) in other.params {
            match self.params.get(&k) {
                None => {
                    self.params.insert(k, v);
                }
                // Another reading of the path or body gave it another value: both are shown.
                Some(mine)
                    if mine.len() < SHOWN && *mine != v && !mine.split(" | ").any(|m| m == v) =>
                {
                    let both = format!("{mine} | {v}");
                    self.params.insert(k, both);
                }
                Some(_) => {}
            }
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "bucket:   {}", self.action.as_str())?;
        writeln!(
            f,
            "tool:     {}",
            tool_names(self.tool.as_deref(), &self.also_tools)
                .as_deref()
                .unwrap_or("-")
        )?;
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
            let quorums: Vec<String> = p
                .quorums()
                .iter()
                .map(|q| match q.approvers.is_empty() {
                    true => format!("{} of any reviewer", q.required),
                    false => format!("{} of {}", q.required, q.approvers.join(", ")),
                })
                .collect();
            let owner = match p.self_approval {
                true => "",
                false => ", not the agent's owner",
            };
            writeln!(f, "approval: {}{owner}", quorums.join(" and "))?;
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

#[cfg(test)]
mod policy_tests {
    use super::*;

    fn tool_verdict(tool: &str, explanation: String) -> Verdict {
        Verdict {
            action: Action::Escalate,
            rule_id: Some(format!("{tool}.toml:1")),
            service: None,
            tool: Some(tool.into()),
            class: None,
            reason_codes: Vec::new(),
            explanation,
            params: BTreeMap::new(),
            expiry: None,
            wait: None,
            approval: None,
            spend_usd: None,
            also_tools: Vec::new(),
        }
    }

    /// Review: the tool shown was the first of several tied rules (the agent orders a GraphQL
    /// document's aliases), and past the explanation's 4096 characters a tied rule's reason,
    /// tool and all, was left off. Every tied tool is kept apart from the explanation.
    #[test]
    fn every_tied_rules_tool_is_kept_whatever_the_explanation_cap() {
        let mut v = tool_verdict("github.graphql.addLabelsToLabelable", "x".repeat(5000));
        let mut pad = tool_verdict("github.graphql.addLabelsToLabelable", "y".into());
        pad.rule_id = Some("other.toml:2".into());
        v.absorb_tie(pad);
        v.absorb_tie(tool_verdict(
            "github.graphql.deleteBranchProtectionRule",
            "weakens protections".into(),
        ));
        v.absorb_tie(tool_verdict(
            "github.graphql.deleteBranchProtectionRule",
            "again".into(),
        ));
        assert!(!v.explanation.contains("weakens protections"));
        assert_eq!(
            v.also_tools,
            vec!["github.graphql.deleteBranchProtectionRule".to_string()]
        );
        assert_eq!(
            tool_names(v.tool.as_deref(), &v.also_tools).as_deref(),
            Some("github.graphql.addLabelsToLabelable + github.graphql.deleteBranchProtectionRule")
        );
        assert!(v.to_string().contains(
            "tool:     github.graphql.addLabelsToLabelable + github.graphql.deleteBranchProtectionRule"
        ));
    }

    fn policy(required: u32, approvers: &[&str], self_approval: bool) -> ApprovalPolicy {
        ApprovalPolicy {
            required,
            approvers: approvers.iter().map(|a| a.to_string()).collect(),
            self_approval,
            also: Vec::new(),
        }
    }

    #[test]
    fn merged_policies_keep_every_rules_quorum_and_stay_satisfiable() {
        let ab = policy(2, &["alice", "bob"], true);
        let bc = policy(2, &["bob", "carol"], true);
        let m = ApprovalPolicy::strictest(Some(&ab), Some(&bc)).expect("merged");
        assert_eq!(m.quorums().len(), 2);
        assert!(m.self_approval);
        let no: &[String] = &[];
        assert!(
            !m.met_by(&[("alice", no), ("bob", no)]),
            "carol's side lacks one"
        );
        assert!(m.met_by(&[("alice", no), ("bob", no), ("carol", no)]));
        // A group and a name are separate quorums, never a string intersection.
        let sre = policy(1, &["group:sre"], false);
        let alice = policy(1, &["alice"], false);
        let m = ApprovalPolicy::strictest(Some(&sre), Some(&alice)).expect("merged");
        let sre_groups = ["sre".to_string()];
        assert!(
            !m.met_by(&[("dave", &sre_groups)]),
            "alice must approve too"
        );
        assert!(m.met_by(&[("dave", &sre_groups), ("alice", no)]));
        assert!(
            m.met_by(&[("alice", &sre_groups)]),
            "alice of sre meets both"
        );
        // No policy: one reviewer, not the owner; an open quorum another implies is dropped.
        let m = ApprovalPolicy::strictest(None, Some(&ab)).expect("merged");
        assert_eq!((m.quorums().len(), m.self_approval), (1, false));
        assert_eq!(ApprovalPolicy::strictest(None, None), None);
        let open3 = policy(3, &[], true);
        let m = ApprovalPolicy::strictest(Some(&open3), Some(&ab)).expect("merged");
        assert_eq!(
            m.quorums().len(),
            2,
            "3 of anyone is not implied by 2 of two"
        );
        assert_eq!(m.most_required(), 3);
        // Over several rules, a rule without a policy only takes self-approval away.
        let m = ApprovalPolicy::strictest_of([Some(&ab), None, Some(&ab)]).expect("merged");
        assert_eq!((m.quorums().len(), m.self_approval), (1, false));
        assert_eq!(ApprovalPolicy::strictest_of([None, None]), None);
        // Several quorums are stored where a build without quorums cannot meet them.
        let m = ApprovalPolicy::strictest(Some(&ab), Some(&bc)).expect("merged");
        assert_eq!(m.required, MERGED);
        assert!(m.approvers.is_empty());
        let json = serde_json::to_string(&m).expect("json");
        let back: ApprovalPolicy = serde_json::from_str(&json).expect("back");
        assert_eq!(back.quorums(), m.quorums());
        // Spellings of one list are one quorum.
        let ab2 = policy(1, &["Bob", "alice", "ALICE"], true);
        let m = ApprovalPolicy::strictest(Some(&ab), Some(&ab2)).expect("merged");
        assert_eq!(m.quorums().len(), 1, "{m:?}");
        // Stored reviews without `also` still read.
        let old: ApprovalPolicy =
            serde_json::from_str(r#"{"required":2,"approvers":["a"],"selfApproval":false}"#)
                .expect("old form");
        assert!(old.also.is_empty());
    }
}
