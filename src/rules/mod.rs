//! Rules catalog: rule files -> compiled matcher -> verdict.
//! (API contract; the implementation lives in submodules written by the rules work.)

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
}
