//! The `policy` entry: what was in force at a start, and every reload of the rules, the agents,
//! the reviewers, the credentials or the config file's other settings, applied or refused, and
//! every admin token rotation. It holds names, counts, digests of the rule files and reasons:
//! never a token, a token's digest or a credential (the fields have no room for one). Format:
//! `docs/audit.md`.

use serde::Serialize;

/// What a `policy` entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicySubject {
    /// What a starting instance put in force: its rules, its roster's sizes, its credentials.
    Startup,
    Rules,
    Agents,
    Reviewers,
    Credentials,
    /// The config file's settings that apply only at the next start.
    Settings,
    /// The admin token was rotated (never the token, nor its digest).
    #[serde(rename = "admin_token")]
    AdminToken,
}

impl PolicySubject {
    /// The name entries and metrics give it.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicySubject::Startup => "startup",
            PolicySubject::Rules => "rules",
            PolicySubject::Agents => "agents",
            PolicySubject::Reviewers => "reviewers",
            PolicySubject::Credentials => "credentials",
            PolicySubject::Settings => "settings",
            PolicySubject::AdminToken => "admin_token",
        }
    }
}

impl PolicyResult {
    /// The name entries and metrics give it.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyResult::Applied => "applied",
            PolicyResult::Refused => "refused",
            PolicyResult::Pending => "pending",
        }
    }
}

/// Whether the change took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyResult {
    Applied,
    /// Refused (a file that does not parse or check): what was in force stays.
    Refused,
    /// Changed in the file, in force only from the next start (restart-only settings).
    Pending,
}

/// One tool a rules reload made less strict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoosenedTool {
    pub tool: String,
    pub old: String,
    pub new: String,
    /// The entry (`file:line`) that decides it now, or that decided it (a removed tool).
    pub rule: String,
}

/// A rule file of the catalog and the hex SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleFile {
    pub name: String,
    pub sha256: String,
}

/// A `policy` entry. Only the fields its subject has are written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyChange {
    pub change: PolicySubject,
    pub result: PolicyResult,
    /// `startup`, `SIGHUP`, `file change`, `database` (another instance's change) or `admin
    /// API` (an admin token rotation asked for there).
    pub trigger: &'static str,
    /// The instance that applied it (`host/pid`): on a shared store each records its own.
    pub instance: String,
    /// Why a reload was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who asked, and over which channel (an admin token rotation through the admin API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Rules in force, the catalog's digest (SHA-256 of `sha256sum`'s lines for its files) and
    /// its files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<RuleFile>>,
    /// Rule files added, removed or edited by this reload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_changed: Option<Vec<String>>,
    /// Tools this reload made less strict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loosened: Option<Vec<LoosenedTool>>,
    /// Agents and reviewers in force after the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agents: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reviewers: Option<usize>,
    /// Names that arrived, left, got a new token, or changed otherwise (an agent's services,
    /// hosts or owner; a reviewer's groups).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<Vec<String>>,
    /// `[admin] may_approve` in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_may_approve: Option<bool>,
    /// Credentials: the services whose secret changed (at a start: every configured one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
    /// Settings: the config file's top-level sections that differ from the ones in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sections: Option<Vec<String>>,
    /// Startup on a store only this instance writes: the entries the last stop left unsigned
    /// (after the last checkpoint; a crash, or a kill). They are signed only now, so whoever
    /// could write the store meanwhile could have changed them unseen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsigned_at_start: Option<SeqRange>,
}

/// A run of audit entries, first and last seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SeqRange {
    pub first_seq: u64,
    pub last_seq: u64,
}

/// Longest `reason` kept (a parse error can quote a long line).
const MAX_REASON: usize = 1000;

impl PolicyChange {
    /// An entry about `change` with none of the optional fields.
    pub fn new(
        change: PolicySubject,
        result: PolicyResult,
        trigger: &'static str,
        instance: &str,
    ) -> PolicyChange {
        PolicyChange {
            change,
            result,
            trigger,
            instance: instance.to_string(),
            reason: None,
            by: None,
            rules: None,
            catalog_sha256: None,
            files: None,
            files_changed: None,
            loosened: None,
            agents: None,
            reviewers: None,
            added: None,
            removed: None,
            rotated: None,
            changed: None,
            admin_may_approve: None,
            services: None,
            sections: None,
            unsigned_at_start: None,
        }
    }

    /// A refused reload of `change` and why (cut to [`MAX_REASON`] characters). The caller
    /// passes a reason that holds no secret.
    pub fn refused(
        change: PolicySubject,
        trigger: &'static str,
        instance: &str,
        reason: &str,
    ) -> PolicyChange {
        let mut c = PolicyChange::new(change, PolicyResult::Refused, trigger, instance);
        c.reason = Some(reason.chars().take(MAX_REASON).collect());
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_fields_set_are_written() {
        let mut c = PolicyChange::new(
            PolicySubject::Agents,
            PolicyResult::Applied,
            "SIGHUP",
            "h/1",
        );
        c.added = Some(vec!["bot".into()]);
        let v = serde_json::to_value(super::super::Event::Policy(Box::new(c))).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"change": "agents", "result": "applied", "trigger": "SIGHUP",
                               "instance": "h/1", "added": ["bot"]})
        );
        let long = "x".repeat(5000);
        let r = PolicyChange::refused(PolicySubject::Rules, "file change", "h/1", &long);
        assert_eq!(r.reason.map(|r| r.len()), Some(MAX_REASON));
    }
}
