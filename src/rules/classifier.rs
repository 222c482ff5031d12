//! The classifier the proxy asks about every intercepted request: implemented by the rules
//! catalog ([`super::LiveCatalog`]); tests may supply their own.

use std::sync::Arc;

use super::{Action, CatalogDigest, Reloaded, RequestHead, RulePolicy, RulesError, Verdict};

/// A check a reloaded set of rules must pass before it replaces the rules in force: the rules'
/// approval policies against the reviewers (installed by `server.rs`). `Err` says which rule and
/// why.
pub type PolicyCheck = Arc<dyn Fn(&[RulePolicy]) -> Result<(), String> + Send + Sync>;

/// Hears of every rules reload, taken or refused, with what set it off (`SIGHUP`, `file
/// change`): installed by `server.rs`, which records it in the audit log. Called while the
/// catalog is being swapped: it must only queue what it is handed, never block.
pub type ReloadObserver = Arc<dyn Fn(&'static str, Result<&Reloaded, &RulesError>) + Send + Sync>;

/// Classifies intercepted requests. Implemented by the rules catalog; tests may supply their own.
pub trait Classifier: Send + Sync + 'static {
    /// Does the catalog name this (normalised) host?
    fn inspects(&self, host: &str) -> bool;
    /// Every host the catalog names (patterns as written, `*.example` included).
    fn inspected_hosts(&self) -> Vec<String> {
        Vec::new()
    }
    /// Must the body be read before a verdict can be given?
    fn needs_body(&self, head: &RequestHead<'_>) -> bool;
    fn evaluate(&self, head: &RequestHead<'_>, body: Option<&[u8]>) -> Verdict;
    /// Is this a git push whose verdict needs only the command section at the start of its body
    /// (`rules::git`)? The handler then reads just that much and streams the rest when allowed.
    fn git_push(&self, _head: &RequestHead<'_>) -> bool {
        false
    }
    /// The service whose rules name this (normalised) host, if any.
    fn service_for_host(&self, _host: &str) -> Option<String> {
        None
    }
    /// The services the rules in force name (what an agent's `services` may list besides
    /// the credentials' services); `None` for a classifier without a catalog (nothing checked).
    fn service_names(&self) -> Option<Vec<String>> {
        None
    }
    /// Every rule that sets an approval policy (quorum, approvers, self-approval).
    fn approval_policies(&self) -> Vec<RulePolicy> {
        Vec::new()
    }
    /// Installs the check every later reload must pass; a classifier that never reloads
    /// ignores it.
    fn set_policy_check(&self, _check: PolicyCheck) {}
    /// Re-reads the rules now (SIGHUP): `Some(Ok(rule count))` once the new rules are in force,
    /// `Some(Err(why))` when they were refused and the old ones stay, `None` when there is
    /// nothing to reload.
    fn reload_rules(&self) -> Option<Result<usize, String>> {
        None
    }
    /// What the rules in force were compiled from; `None` for a classifier without rule files.
    fn catalog_digest(&self) -> Option<CatalogDigest> {
        None
    }
    /// Installs the observer of every later reload; a classifier that never reloads ignores it.
    fn set_reload_observer(&self, _observer: ReloadObserver) {}
    /// The rules in force now, fixed: one request is judged by one catalog from its first
    /// question to its verdict, whatever reload lands meanwhile. `None`: this classifier
    /// never changes.
    fn snapshot(&self) -> Option<Arc<dyn Classifier>> {
        None
    }
}

/// A classifier that inspects nothing and allows everything: used when no catalog is loaded.
pub struct AllowAll;

impl Classifier for AllowAll {
    fn inspects(&self, _host: &str) -> bool {
        false
    }
    fn needs_body(&self, _head: &RequestHead<'_>) -> bool {
        false
    }
    fn evaluate(&self, _head: &RequestHead<'_>, _body: Option<&[u8]>) -> Verdict {
        Verdict {
            action: Action::Allow,
            rule_id: None,
            service: None,
            tool: None,
            class: None,
            reason_codes: vec!["no_catalog".into()],
            explanation: "no rules catalog loaded".into(),
            params: Default::default(),
            expiry: None,
            wait: None,
            approval: None,
            spend_usd: None,
            also_tools: Vec::new(),
        }
    }
}
