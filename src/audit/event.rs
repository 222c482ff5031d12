//! The events Airlock writes to the audit log, one typed enum. Each variant has exactly the
//! fields it records: identifiers, names, states, a path without its query string. None has room
//! for headers, bodies, query strings or tokens, so no caller can log a secret by accident.

use serde::Serialize;

/// One audit event; the log adds `seq`, `prev`, `ts` and `kind` ([`Event::kind`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Event {
    /// What the gate or the proxy decided about one request.
    Decision(Box<Decision>),
    /// One transition of a held request's review.
    Review(Box<Transition>),
    /// Allowed-request records that could not be written (queue full, a failed write).
    AuditGap(AuditGap),
    /// An operator accepted a store that no longer holds what the audit anchor named.
    RestoreAccepted(RestoreAccepted),
    /// What a start put in force, or a reload of the rules, people, credentials or settings.
    Policy(Box<super::PolicyChange>),
    /// `airlock audit archive` moved the entries before a checkpoint to a file.
    Archived(Archive),
}

impl Event {
    /// The entry's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Decision(_) => "decision",
            Event::Review(_) => "review",
            Event::AuditGap(_) => "audit_gap",
            Event::RestoreAccepted(_) => "restore_accepted",
            Event::Policy(_) => "policy",
            Event::Archived(_) => super::archive::ARCHIVED_KIND,
        }
    }
}

/// A request path as the log may hold it: the query string and fragment cut off (they may carry
/// tokens). The only way to make one is [`AuditPath::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct AuditPath(String);

impl AuditPath {
    /// The path before any `?` or `#`, at most 1,024 characters.
    pub fn new(path_and_query: &str) -> AuditPath {
        AuditPath(
            path_and_query
                .split(['?', '#'])
                .next()
                .unwrap_or_default()
                .chars()
                .take(1024)
                .collect(),
        )
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What happened to a request: `ALLOW`, `NOTIFY`, `BLOCK` or `ESCALATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    Allow,
    Notify,
    Block,
    Escalate,
}

/// Which gate applied: none, the soft gate, a block, the hard gate (a held review), or a write
/// no rule classifies let through by `rules.unclassified_writes = "allow"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GateKind {
    None,
    Soft,
    Blocked,
    Hard,
    Unclassified,
}

/// A `decision` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub decision_id: String,
    /// The review a held request became.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_id: Option<String>,
    pub outcome: Outcome,
    pub gate: GateKind,
    pub agent: Option<String>,
    pub service: Option<String>,
    pub tool: Option<String>,
    pub rule_id: Option<String>,
    pub reason_codes: Vec<String>,
    pub method: String,
    pub host: String,
    pub path: AuditPath,
    /// RFC 3339; held requests only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// An identical retry of a request already held: it joined `review_id`, nothing new was
    /// stored (`gate/joins.rs`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub joined: bool,
}

/// A `review` entry: one state transition, with what changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    pub review_id: String,
    pub decision_id: String,
    pub from: &'static str,
    pub to: &'static str,
    pub gate: GateKind,
    pub tool: Option<String>,
    pub service: Option<String>,
    pub agent: Option<String>,
    pub method: String,
    pub host: String,
    pub path: AuditPath,
    /// A new approval: who, how many so far, how many needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvals: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required: Option<u32>,
    /// A moved deadline (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// A retry: who, and which attempt this is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<usize>,
    /// Who decided (a reviewer, or `expiry`) and their comment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The approval an execution rests on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// The decision this entry records (approval, retry, reject) was given with the operator's
    /// admin token, whatever name it gave: `true`; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<bool>,
    /// The end of an execution: the upstream's status, how long it took, what went wrong.
    #[serde(flatten)]
    pub execution: Option<ExecutionEnd>,
}

/// How an execution ended, flattened into its `review` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutionEnd {
    pub upstream_status: Option<u16>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// An `audit_gap` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditGap {
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped_allow_records: u64,
    /// Blocked-request records past the agent's share (`audit.block_per_agent`): each was
    /// refused (403) all the same.
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped_block_records: u64,
    pub reason: &'static str,
    /// The agent whose records were past its share (`audit.allow_per_agent`); absent when the
    /// queue was full or a write failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// A `restore_accepted` entry (`airlock audit accept-restore`): what the old anchor named and
/// where the log ended when the restore (or cut) was accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreAccepted {
    /// The old anchor's seq and hash (null: there was none, or it could not be read).
    pub anchor_seq: Option<u64>,
    pub anchor_hash: Option<String>,
    /// Why the old anchor could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor_unreadable: Option<String>,
    /// The store's last entry before this one (null: the log was empty).
    pub log_end_seq: Option<u64>,
    /// The operator declared the restore (`accept-restore --declare`): the anchor matched, as
    /// it does when it was restored with the store.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub declared: bool,
    /// `approved` and `executing` reviews the restore made `outcome_unknown` (the copy may
    /// predate their send: never sent again without a human).
    pub reviews_outcome_unknown: u64,
    /// Reviews marked `restored` (those, and every `pending`, `failed` and `outcome_unknown`
    /// one): their views warn that they may already have been decided and sent.
    pub reviews_marked: u64,
    /// One-click links issued before this (RFC 3339) no longer work.
    pub links_not_before: Option<String>,
}

/// An `archived` entry (`airlock audit archive`): the log now begins at the checkpoint
/// `cut_seq`; the entries `from_seq..=cut_seq` are in a file whose SHA-256 it names (the cut
/// checkpoint is both the file's last line and the log's first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Archive {
    /// Seq of the checkpoint the log now begins at.
    pub cut_seq: u64,
    /// Hex SHA-256 of that checkpoint entry's bytes.
    pub cut_hash: String,
    /// Seq the log began at before (0, or an earlier archive's cut).
    pub from_seq: u64,
    /// Entries removed from the store (`cut_seq - from_seq`).
    pub removed: u64,
    /// Hex SHA-256 of the archive file's bytes.
    pub file_sha256: String,
    /// The archive file's name as given (a path, never its contents).
    pub file: String,
    /// Who ran it (`--by`, or the user and host the command ran as).
    pub by: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_lose_their_query_and_execution_flattens() {
        assert_eq!(AuditPath::new("/v1/x?token=s3cret#f").as_str(), "/v1/x");
        let t = Transition {
            review_id: "rev_1".into(),
            decision_id: "dec_1".into(),
            from: "executing",
            to: "executed",
            gate: GateKind::Hard,
            tool: None,
            service: None,
            agent: None,
            method: "DELETE".into(),
            host: "api.github.com".into(),
            path: AuditPath::new("/repos/o/r?access_token=x"),
            approval_by: None,
            approvals: None,
            required: None,
            expires_at: None,
            retry_by: None,
            attempt: None,
            by: None,
            comment: None,
            approved_by: None,
            admin_token: None,
            execution: Some(ExecutionEnd {
                upstream_status: Some(204),
                duration_ms: Some(12),
                error: None,
            }),
        };
        let v = serde_json::to_value(Event::Review(Box::new(t))).expect("json");
        assert_eq!(v["path"], "/repos/o/r");
        assert_eq!(v["upstream_status"], 204);
        assert_eq!(v["error"], serde_json::Value::Null);
        assert!(v.get("approval_by").is_none());
    }
}
