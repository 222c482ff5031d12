//! Policy changes into the audit log (`policy` entries, `docs/audit.md`): what a start put in
//! force, and every reload of the rules, agents, reviewers, credentials or restart-only
//! settings, applied or refused. Reloads are queued, never blocking whoever applied them (the
//! rules are swapped under a lock), and one task appends them in order through the log's group
//! commit. A reload has taken effect when it is queued: an entry that cannot be written is
//! logged as an error (a removal must take effect whatever the audit store does).
//!
//! Entries hold names, counts and the rule files' digests: never a token, a token's digest or
//! a credential.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::{
    AuditError, AuditLog, Event, LoosenedTool, PolicyChange, PolicyResult, PolicySubject, RuleFile,
};
use crate::config::{AgentConfig, ReviewerConfig};
use crate::rules::{CatalogDigest, Reloaded, RulesError};

/// Queues policy changes for the audit log.
pub(crate) struct PolicyLog {
    audit: Arc<AuditLog>,
    instance: String,
    queue: mpsc::UnboundedSender<PolicyChange>,
}

impl PolicyLog {
    /// Starts the task that appends what is queued, in order, until `shutdown` (it writes
    /// what is queued then before it ends; `tasks` waits for it).
    pub(crate) fn start(
        audit: Arc<AuditLog>,
        instance: String,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<PolicyLog> {
        let (queue, mut rx) = mpsc::unbounded_channel::<PolicyChange>();
        let log = audit.clone();
        tasks.spawn(async move {
            loop {
                let next = tokio::select! {
                    biased;
                    next = rx.recv() => next,
                    _ = shutdown.cancelled() => None,
                };
                let Some(change) = next else { break };
                write(&log, change).await;
            }
            while let Ok(change) = rx.try_recv() {
                write(&log, change).await;
            }
        });
        Arc::new(PolicyLog {
            audit,
            instance,
            queue,
        })
    }

    /// This instance as its entries name it (`host/pid`).
    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    /// Queues `change` (never blocks).
    pub(crate) fn record(&self, change: PolicyChange) {
        crate::metrics::policy_change(change.change.as_str(), change.result.as_str());
        if self.queue.send(change).is_err() {
            tracing::error!(
                "a policy change came after the audit recorder stopped; it is not in the audit log"
            );
        }
    }

    /// Appends `change` now and waits for it to be durable (the entry a start writes).
    pub(crate) async fn record_now(&self, change: PolicyChange) -> Result<u64, AuditError> {
        crate::metrics::policy_change(change.change.as_str(), change.result.as_str());
        let audit = self.audit.clone();
        let event = Event::Policy(Box::new(change));
        match tokio::task::spawn_blocking(move || audit.append(event)).await {
            Ok(r) => r,
            Err(e) => Err(AuditError::Io(std::io::Error::other(e.to_string()))),
        }
    }

    /// Records a rules reload, taken or refused.
    pub(crate) fn rules(&self, trigger: &'static str, reload: Result<&Reloaded, &RulesError>) {
        self.record(match reload {
            Ok(r) => rules_applied(trigger, &self.instance, r),
            Err(e) => PolicyChange::refused(
                PolicySubject::Rules,
                trigger,
                &self.instance,
                &e.to_string(),
            ),
        });
    }
}

async fn write(audit: &Arc<AuditLog>, change: PolicyChange) {
    let what = change.change;
    let audit = audit.clone();
    let event = Event::Policy(Box::new(change));
    match tokio::task::spawn_blocking(move || audit.append(event)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::error!(change = ?what, error = %e, "a policy change (it took effect) could not be written to the audit log")
        }
        Err(e) => tracing::error!(change = ?what, error = %e, "the audit recorder's write failed"),
    }
}

/// The rules fields of an entry: count, digest and files.
pub(crate) fn with_catalog(mut c: PolicyChange, d: &CatalogDigest) -> PolicyChange {
    c.rules = Some(d.rules);
    c.catalog_sha256 = Some(d.sha256.clone());
    c.files = Some(
        d.files
            .iter()
            .map(|(name, sha256)| RuleFile {
                name: name.clone(),
                sha256: sha256.clone(),
            })
            .collect(),
    );
    c
}

fn rules_applied(trigger: &'static str, instance: &str, r: &Reloaded) -> PolicyChange {
    let c = PolicyChange::new(
        PolicySubject::Rules,
        PolicyResult::Applied,
        trigger,
        instance,
    );
    let mut c = with_catalog(c, &r.digest);
    c.files_changed = Some(r.files_changed.clone());
    c.loosened = Some(
        r.loosened
            .iter()
            .map(|l| LoosenedTool {
                tool: l.tool.clone(),
                old: l.old.clone(),
                new: l.new.clone(),
                rule: l.rule.clone(),
            })
            .collect(),
    );
    c
}

/// Names added, removed, given a new token, or changed otherwise; `None` when nothing changed.
type Diff = (Vec<String>, Vec<String>, Vec<String>, Vec<String>);

fn diff<T>(
    before: &[T],
    after: &[T],
    name: impl Fn(&T) -> &str,
    same_name: impl Fn(&str, &str) -> bool,
    token: impl Fn(&T) -> [u8; 32],
) -> Option<Diff>
where
    T: PartialEq,
{
    let find = |list: &'_ [T], n: &str| -> Option<usize> {
        list.iter().position(|x| same_name(name(x), n))
    };
    let (mut added, mut removed, mut rotated, mut changed) = Diff::default();
    for b in before {
        match find(after, name(b)).map(|i| &after[i]) {
            None => removed.push(name(b).to_string()),
            Some(a) if token(a) != token(b) => rotated.push(name(a).to_string()),
            Some(a) if a != b => changed.push(name(a).to_string()),
            Some(_) => {}
        }
    }
    for a in after {
        if find(before, name(a)).is_none() {
            added.push(name(a).to_string());
        }
    }
    for v in [&mut added, &mut removed, &mut rotated, &mut changed] {
        v.sort();
    }
    let any = [&added, &removed, &rotated, &changed]
        .iter()
        .any(|v| !v.is_empty());
    any.then_some((added, removed, rotated, changed))
}

fn with_diff(mut c: PolicyChange, (added, removed, rotated, changed): Diff) -> PolicyChange {
    c.added = Some(added);
    c.removed = Some(removed);
    c.rotated = Some(rotated);
    c.changed = Some(changed);
    c
}

/// The entry for an agents reload from `before` to `after`; `None` when nothing changed. Names
/// only: a rotation says that the token changed, never what it is.
pub(crate) fn agents_change(
    trigger: &'static str,
    instance: &str,
    before: &[AgentConfig],
    after: &[AgentConfig],
) -> Option<PolicyChange> {
    let d = diff(
        before,
        after,
        |a| &a.name,
        |x, y| x == y,
        |a| a.token_sha256,
    )?;
    let mut c = PolicyChange::new(
        PolicySubject::Agents,
        PolicyResult::Applied,
        trigger,
        instance,
    );
    c.agents = Some(after.len());
    Some(with_diff(c, d))
}

/// The entry for a reviewers reload from `before` to `after` (and `[admin] may_approve`);
/// `None` when nothing changed.
pub(crate) fn reviewers_change(
    trigger: &'static str,
    instance: &str,
    before: (&[ReviewerConfig], bool),
    after: (&[ReviewerConfig], bool),
) -> Option<PolicyChange> {
    let d = diff(
        before.0,
        after.0,
        |r| &r.name,
        crate::person::same,
        |r| r.token_sha256,
    );
    if d.is_none() && before.1 == after.1 {
        return None;
    }
    let mut c = PolicyChange::new(
        PolicySubject::Reviewers,
        PolicyResult::Applied,
        trigger,
        instance,
    );
    c.reviewers = Some(after.0.len());
    c.admin_may_approve = Some(after.1);
    Some(with_diff(c, d.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, token: u8, services: &[&str]) -> AgentConfig {
        AgentConfig {
            name: name.into(),
            token_sha256: [token; 32],
            services: services.iter().map(|s| s.to_string()).collect(),
            hosts: Vec::new(),
            owner: None,
            added_ms: None,
        }
    }

    fn reviewer(name: &str, token: u8, groups: &[&str]) -> ReviewerConfig {
        ReviewerConfig {
            name: name.into(),
            token_sha256: [token; 32],
            groups: groups.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_roster_change_names_who_and_never_a_digest() {
        let before = [agent("a", 1, &[]), agent("b", 2, &[]), agent("c", 3, &[])];
        let after = [
            agent("b", 9, &[]),
            agent("c", 3, &["github"]),
            agent("d", 4, &[]),
        ];
        let c = agents_change("SIGHUP", "h/1", &before, &after).expect("a change");
        let v = serde_json::to_value(&c).expect("json");
        assert_eq!(v["added"], serde_json::json!(["d"]));
        assert_eq!(v["removed"], serde_json::json!(["a"]));
        assert_eq!(v["rotated"], serde_json::json!(["b"]));
        assert_eq!(v["changed"], serde_json::json!(["c"]));
        assert_eq!(v["agents"], 3);
        let text = v.to_string();
        for digest in [1u8, 2, 9] {
            assert!(!text.contains(&hex::encode([digest; 32])), "{text}");
        }
        assert!(agents_change("SIGHUP", "h/1", &after, &after).is_none());

        let before = [reviewer("Alice", 1, &["ops"]), reviewer("bob", 2, &[])];
        let after = [
            reviewer("alice", 1, &["ops", "sec"]),
            reviewer("carol", 3, &[]),
        ];
        let c = reviewers_change("file change", "h/1", (&before, false), (&after, false))
            .expect("a change");
        assert_eq!(c.added, Some(vec!["carol".to_string()]));
        assert_eq!(c.removed, Some(vec!["bob".to_string()]));
        assert_eq!(c.changed, Some(vec!["alice".to_string()]));
        assert!(reviewers_change("x", "h/1", (&after, false), (&after, false)).is_none());
        let only_setting = reviewers_change("x", "h/1", (&after, false), (&after, true))
            .expect("may_approve changed");
        assert_eq!(only_setting.admin_may_approve, Some(true));
    }
}
