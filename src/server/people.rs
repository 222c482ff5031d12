//! The agents and reviewers in force: the config file's, plus, on a shared store (`[store]
//! backend = "postgres"`), the ones kept in the database ([`crate::directory`]). A name in both:
//! the config file's entry wins, with a warning (a refusal would let one stored record stop
//! every instance's next start, or freeze every later reload).
//!
//! Reloaded on SIGHUP and when the config file changes (`watch.rs`: the config file and the
//! database), and whenever any instance commits to the store's Meta tree
//! ([`crate::store::Store::watch`], the database only). A
//! source that cannot be read keeps what is in force; a stored record that no longer checks is
//! skipped with an error. Reviewers are checked against the rules' approval policies as at
//! start; a reload still applies when they fail (the errors are logged), so a removal always
//! takes effect. Every reload that changes something, and every refused one, is recorded in
//! the audit log ([`PolicyLog`]).

use std::path::PathBuf;
use std::sync::Arc;

use super::policy_log::{self, PolicyLog};
use crate::agents::Agents;
use crate::audit::{PolicyChange, PolicyResult, PolicySubject};
use crate::config::{AgentConfig, Config, ConfigError, ReviewerConfig};
use crate::credentials::Vault;
use crate::directory::Directory;
use crate::gate::{People, Roster};
use crate::rules::Classifier;
use crate::store::StoreError;

/// Where the people in force come from, as last read.
#[derive(Debug, Clone, Default)]
pub(super) struct Sources {
    file_agents: Vec<AgentConfig>,
    file_reviewers: Vec<ReviewerConfig>,
    may_approve: bool,
    stored_agents: Vec<AgentConfig>,
    stored_reviewers: Vec<ReviewerConfig>,
    /// The restart-only sections last found changed (recorded when that changes).
    settings_changed: Vec<String>,
}

impl Sources {
    /// The config's people, and the stored ones when `directory` is given (read now).
    pub(super) fn at_start(
        config: &Config,
        directory: Option<&Directory>,
    ) -> Result<Sources, StoreError> {
        let mut s = Sources {
            file_agents: config.agents.clone(),
            file_reviewers: config.reviewers.clone(),
            may_approve: config.admin.may_approve,
            ..Sources::default()
        };
        if let Some(d) = directory {
            (s.stored_agents, s.stored_reviewers) = read_stored(d)?;
        }
        Ok(s)
    }

    /// Agents and reviewers in force: the file's, then the stored ones whose names the file
    /// does not use (those are logged if `warn`).
    pub(super) fn merged(&self, warn: bool) -> (Vec<AgentConfig>, People) {
        let mut agents = self.file_agents.clone();
        for a in &self.stored_agents {
            if agents.iter().any(|f| f.name == a.name) {
                if warn {
                    tracing::warn!(agent = %a.name, "agent is both in the config file and in the database; the config file's entry is in force");
                }
            } else {
                agents.push(a.clone());
            }
        }
        let mut reviewers = self.file_reviewers.clone();
        for r in &self.stored_reviewers {
            if reviewers
                .iter()
                .any(|f| crate::person::same(&f.name, &r.name))
            {
                if warn {
                    tracing::warn!(reviewer = %r.name, "reviewer is both in the config file and in the database; the config file's entry is in force");
                }
            } else {
                reviewers.push(r.clone());
            }
        }
        (agents, People::new(reviewers, self.may_approve))
    }
}

/// The stored agents and reviewers; records that no longer check are logged and skipped.
fn read_stored(d: &Directory) -> Result<(Vec<AgentConfig>, Vec<ReviewerConfig>), StoreError> {
    let agents = d.agents()?;
    let reviewers = d.reviewers()?;
    for why in agents.invalid.iter().chain(&reviewers.invalid) {
        tracing::error!("skipping a stored agent or reviewer: {why}");
    }
    Ok((agents.records, reviewers.records))
}

/// What set off a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trigger {
    /// SIGHUP: the config file and the database.
    Signal,
    /// The config file changed (`watch.rs`): the config file and the database.
    File,
    /// A change to the shared store: the database only.
    Store,
}

impl Trigger {
    pub(super) fn name(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::File => "file change",
            Trigger::Store => "database",
        }
    }
}

/// The config file's settings that apply only at a start: every table but the people
/// (`[[agents]]`, `[[reviewers]]`, `agents_file`, `[admin] may_approve`), as written. `None`
/// when the file cannot be read or parsed (its reload reports that).
fn restart_settings(path: &std::path::Path) -> Option<toml::Table> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut t: toml::Table = text.parse().ok()?;
    t.remove("agents");
    t.remove("reviewers");
    t.remove("agents_file");
    if let Some(admin) = t.get_mut("admin").and_then(|a| a.as_table_mut()) {
        admin.remove("may_approve");
    }
    Some(t)
}

/// Why a config file was refused, as the audit log may hold it: where, never what (a parse
/// error can quote a value, and the file may hold a database password).
fn config_reason(e: &ConfigError) -> String {
    match e {
        ConfigError::Read { .. } => e.to_string(),
        ConfigError::Parse {
            file, line, column, ..
        } => format!("{file}:{line}:{column}: does not parse"),
        ConfigError::Invalid { file, field, .. } => format!("{file}: {field} does not check"),
    }
}

/// The top-level tables (or keys) in which `a` and `b` differ, sorted.
fn changed_sections(a: &toml::Table, b: &toml::Table) -> Vec<String> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// The people in force and where they are reloaded from.
pub(super) struct InForce {
    /// Held for a whole reload, so that reloads apply in the order they read.
    sources: tokio::sync::Mutex<Sources>,
    /// [`restart_settings`] as at start: a reload that finds them changed says they wait for a
    /// restart.
    at_start: Option<toml::Table>,
    path: Option<PathBuf>,
    directory: Option<Directory>,
    agents: Arc<Agents>,
    roster: Arc<Roster>,
    classifier: Arc<dyn Classifier>,
    /// Its services, with the catalog's, are those a reloaded agent's `services` may name.
    vault: Arc<Vault>,
    policy: Arc<PolicyLog>,
}

impl InForce {
    // Each argument is a distinct shared service the server assembles.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        sources: Sources,
        path: Option<PathBuf>,
        directory: Option<Directory>,
        agents: Arc<Agents>,
        roster: Arc<Roster>,
        classifier: Arc<dyn Classifier>,
        vault: Arc<Vault>,
        policy: Arc<PolicyLog>,
    ) -> Arc<InForce> {
        Arc::new(InForce {
            sources: tokio::sync::Mutex::new(sources),
            at_start: path.as_deref().and_then(restart_settings),
            path,
            directory,
            agents,
            roster,
            classifier,
            vault,
            policy,
        })
    }

    fn refused(&self, change: PolicySubject, trigger: Trigger, reason: &str) {
        self.policy.record(PolicyChange::refused(
            change,
            trigger.name(),
            self.policy.instance(),
            reason,
        ));
    }

    /// Re-reads the sources `trigger` names and swaps in what changed.
    pub(super) async fn reload(&self, trigger: Trigger) {
        if self.path.is_none() && self.directory.is_none() {
            return; // nothing to re-read: the people were given at start
        }
        let mut sources = self.sources.lock().await;
        let mut next = sources.clone();
        // The config file's reviewers could not be read: those in force are kept.
        let mut reviewers_kept = false;
        if let (Trigger::Signal | Trigger::File, Some(path)) = (trigger, &self.path) {
            let reviewers = match Config::load_reviewers(path) {
                Ok((reviewers, may_approve)) => {
                    next.file_reviewers = reviewers;
                    next.may_approve = may_approve;
                    "reloaded"
                }
                Err(e) => {
                    tracing::error!(error = %e, trigger = trigger.name(), "reviewers reload failed; keeping the config file's reviewers in force");
                    self.refused(PolicySubject::Reviewers, trigger, &config_reason(&e));
                    reviewers_kept = true;
                    "kept (their reload failed)"
                }
            };
            let agents = match Config::load_agents(path) {
                Ok(agents) => {
                    next.file_agents = agents;
                    "reloaded"
                }
                Err(e) => {
                    tracing::error!(error = %e, trigger = trigger.name(), "agents reload failed; keeping the config file's agents in force");
                    self.refused(PolicySubject::Agents, trigger, &config_reason(&e));
                    "kept (their reload failed)"
                }
            };
            // Checked as a start would check it, the secrets it names outside itself included
            // (a webhook URL in a url_file or url_env): the error names where, never the secret.
            let checked = Config::load(path, crate::config::Overrides::default())
                .map_err(|e| (e.to_string(), config_reason(&e)))
                .and_then(|c| {
                    let mut notify = c.notify;
                    notify
                        .read_secrets()
                        .map_err(|e| (e.to_string(), e.to_string()))
                });
            if let Err((error, reason)) = checked {
                tracing::error!(error = %error, reviewers, agents, "the config file no longer checks; nothing but its reviewers and agents reloads, the rest stays as in force (the next start would fail)");
                self.refused(PolicySubject::Settings, trigger, &reason);
            }
            if let (Some(before), Some(now)) = (&self.at_start, restart_settings(path)) {
                let changed = changed_sections(before, &now);
                if !changed.is_empty() {
                    tracing::warn!(changed = %changed.join(", "), "the config file's other settings changed; they apply at the next restart (only the agents and reviewers reload)");
                }
                if changed != next.settings_changed {
                    let mut c = PolicyChange::new(
                        PolicySubject::Settings,
                        PolicyResult::Pending,
                        trigger.name(),
                        self.policy.instance(),
                    );
                    c.sections = Some(changed.clone());
                    self.policy.record(c);
                    next.settings_changed = changed;
                }
            }
        }
        if let Some(d) = self.directory.clone() {
            match tokio::task::spawn_blocking(move || read_stored(&d)).await {
                Ok(Ok((agents, reviewers))) => {
                    next.stored_agents = agents;
                    next.stored_reviewers = reviewers;
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, trigger = trigger.name(), "cannot read the stored agents and reviewers; keeping those in force");
                    let why = format!("the stored agents and reviewers cannot be read: {e}");
                    self.refused(PolicySubject::Agents, trigger, &why);
                    self.refused(PolicySubject::Reviewers, trigger, &why);
                }
                Err(e) => tracing::error!(error = %e, "stored agents and reviewers read panicked"),
            }
        }
        // Name clashes are logged again on SIGHUP, or when the stored records changed.
        let warn = trigger != Trigger::Store
            || next.stored_agents != sources.stored_agents
            || next.stored_reviewers != sources.stored_reviewers;
        self.apply(&next, trigger, warn, reviewers_kept);
        *sources = next;
    }

    /// `reviewers_kept`: the config file's reviewers could not be reloaded; unless the stored
    /// ones changed, nothing was reloaded and nothing says so.
    fn apply(&self, sources: &Sources, trigger: Trigger, warn: bool, reviewers_kept: bool) {
        let (agents, people) = sources.merged(warn);
        let agents_before = self.agents.current();
        let change = self.agents.replace(agents.clone());
        if !change.is_empty() || trigger == Trigger::Signal {
            self.warn_unknown_services(&agents);
        }
        if !change.is_empty() {
            tracing::info!(agents = agents.len(), added = ?change.added, removed = ?change.removed, trigger = trigger.name(), "agents reloaded");
            let (instance, after) = (self.policy.instance(), self.agents.current());
            if let Some(c) =
                policy_log::agents_change(trigger.name(), instance, &agents_before, &after)
            {
                self.policy.record(c);
            }
        }
        let before = self.roster.current();
        if let Some(c) = policy_log::reviewers_change(
            trigger.name(),
            self.policy.instance(),
            (before.reviewers(), before.may_approve_setting()),
            (people.reviewers(), people.may_approve_setting()),
        ) {
            self.policy.record(c);
        }
        // As configured: what follows from it differs once a reload emptied the reviewers.
        let unchanged = before.reviewers() == people.reviewers()
            && before.may_approve_setting() == people.may_approve_setting();
        if unchanged && trigger != Trigger::Signal {
            return;
        }
        let (count, removed) = (
            people.reviewers().len(),
            swap_people(&self.roster, people, &agents, self.classifier.as_ref()),
        );
        // After "reviewers reload failed; keeping …", a "reviewers reloaded" line would say the
        // opposite (with the count of those kept).
        if !(unchanged && reviewers_kept) {
            tracing::info!(reviewers = count, removed = ?removed, trigger = trigger.name(), "reviewers reloaded");
        }
    }

    /// Warns of each agent whose `services` names no service of the rules in force nor of a
    /// credential (a typo such as `githb` admits it nowhere): a start refuses that
    /// (`check_agent_services`); a reload keeps the agents it read, so that a removal or a
    /// rotation in the same edit takes effect, and says so.
    fn warn_unknown_services(&self, agents: &[AgentConfig]) {
        let Some(mut known) = self.classifier.service_names() else {
            return;
        };
        known.extend(self.vault.services());
        let mut unknown = agents.to_vec();
        while let Err(why) = crate::config::check_agent_services(&unknown, &known) {
            tracing::warn!("agents reload: {why}; that agent reaches no service through it (the next start would refuse it)");
            // The next agent: check_agent_services stops at the first.
            let Some(i) = unknown
                .iter()
                .position(|a| a.services.iter().any(|s| !known.contains(s)))
            else {
                break;
            };
            unknown.remove(i);
        }
    }

    /// Reloads the stored people whenever any instance commits to the store's Meta tree, until
    /// `shutdown`. Without a change feed (a store only this process writes) only SIGHUP does.
    /// `changes` is the store's Meta feed, subscribed to before the people were first read (so
    /// that no change in between is missed).
    pub(super) fn spawn_watch(
        self: Arc<Self>,
        changes: Option<tokio::sync::watch::Receiver<u64>>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        if self.directory.is_none() {
            return;
        }
        let Some(mut changes) = changes else {
            tracing::warn!("this store reports no changes made by other instances; stored agents and reviewers reload on SIGHUP only");
            return;
        };
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = changes.changed() => if changed.is_err() {
                        tracing::error!("the store's change feed ended; stored agents and reviewers reload on SIGHUP only");
                        return;
                    },
                }
                // Marked seen before the read, so that a change during it sets off another.
                changes.borrow_and_update();
                self.reload(Trigger::Store).await;
            }
        });
    }
}

/// Swaps `people` into `roster` after checking them against the rules' approval policies (the
/// errors are logged; the swap still happens, so that a removal always takes effect). The
/// names of the reviewers no longer in force (or whose token changed).
pub(super) fn swap_people(
    roster: &Roster,
    people: People,
    agents: &[AgentConfig],
    classifier: &dyn Classifier,
) -> Vec<String> {
    if let Err(e) = super::check_people(&people, &classifier.approval_policies(), agents) {
        tracing::error!("approval policy after the reviewers reload: {e}");
    }
    super::warn_admin_may_approve(&people);
    roster.replace(people)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, digest: u8) -> AgentConfig {
        AgentConfig {
            name: name.into(),
            token_sha256: [digest; 32],
            services: Vec::new(),
            hosts: Vec::new(),
            owner: None,
            added_ms: None,
        }
    }

    fn reviewer(name: &str, digest: u8) -> ReviewerConfig {
        ReviewerConfig {
            name: name.into(),
            token_sha256: [digest; 32],
            groups: Vec::new(),
        }
    }

    #[test]
    fn the_config_file_wins_a_name_clash() {
        let s = Sources {
            file_agents: vec![agent("bot", 1)],
            file_reviewers: vec![reviewer("Alice", 1)],
            may_approve: false,
            stored_agents: vec![agent("bot", 2), agent("other", 3)],
            stored_reviewers: vec![reviewer("alice", 2), reviewer("bob", 3)],
            settings_changed: Vec::new(),
        };
        let (agents, people) = s.merged(true);
        assert_eq!(agents, vec![agent("bot", 1), agent("other", 3)]);
        assert_eq!(
            people.reviewers(),
            &[reviewer("Alice", 1), reviewer("bob", 3)]
        );
    }

    /// Review of session 19: edits to settings that apply only at a start were ignored without
    /// a word on reload. The sections that changed are named; the people's are not.
    #[test]
    fn changed_settings_are_named_and_the_peoples_are_not() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("airlock.toml");
        std::fs::write(
            &path,
            "agents_file = \"a.toml\"\n[gate]\nreview_expiry = \"24h\"\n[admin]\nmay_approve = false\n[[reviewers]]\nname = \"alice\"\n",
        )
        .expect("write");
        let before = restart_settings(&path).expect("parsed");
        std::fs::write(
            &path,
            "agents_file = \"b.toml\"\n[gate]\nreview_expiry = \"1h\"\n[admin]\nmay_approve = true\n[credentials.github]\nenv = \"OTHER\"\n",
        )
        .expect("write");
        let now = restart_settings(&path).expect("parsed");
        assert_eq!(changed_sections(&before, &now), ["credentials", "gate"]);
    }
}
