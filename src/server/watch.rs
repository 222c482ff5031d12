//! Reloads on file change, as the rules directory does (`rules/live.rs`): the config file and
//! its `agents_file` (agents and reviewers, [`people::InForce::reload`]) and each credential file
//! ([`Vault::reload`]). Once a second it compares each file's [`crate::file_stamp`]: an edit in
//! place, an atomic rename and a `chmod`/`chown` (the fix a refused file's error asks for) are
//! all seen; nothing is read until something changed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::people::{self, InForce};
use super::policy_log::PolicyLog;
use crate::audit::{PolicyChange, PolicyResult, PolicySubject};
use crate::credentials::Vault;

/// How often the watched files' metadata is compared.
const EVERY: Duration = Duration::from_secs(1);

/// What identifies one version of a file; `None` while it is missing or unreadable.
type Stamp = Option<crate::file_stamp::FileStamp>;

fn stamp(path: &PathBuf) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .map(|m| crate::file_stamp::of(&m))
}

fn stamps(paths: &[PathBuf]) -> Vec<Stamp> {
    paths.iter().map(stamp).collect()
}

/// Watches `config` (the config file, when the config came from one, and its agents file) and
/// the vault's credential files until `shutdown`.
pub(super) fn spawn(
    config: Vec<PathBuf>,
    in_force: Arc<InForce>,
    vault: Arc<Vault>,
    policy: Arc<PolicyLog>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let secrets = vault.files();
    if config.is_empty() && secrets.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let (mut config_seen, mut secrets_seen) = (stamps(&config), stamps(&secrets));
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = stamps(&config);
            if now != config_seen {
                config_seen = now;
                in_force.reload(people::Trigger::File).await;
            }
            let now = stamps(&secrets);
            if now != secrets_seen {
                secrets_seen = now;
                reload_credentials(&vault, &policy, people::Trigger::File);
            }
        }
    });
}

/// Reads the credentials again, logging what happened and recording it in the audit log: the
/// services whose secret changed, or why the reload was refused (never a secret).
pub(super) fn reload_credentials(vault: &Vault, policy: &PolicyLog, trigger: people::Trigger) {
    let trigger = trigger.name();
    match vault.reload() {
        Ok(changed) if changed.is_empty() => {}
        Ok(changed) => {
            tracing::info!(trigger, services = ?changed, "credentials reloaded");
            let mut c = PolicyChange::new(
                PolicySubject::Credentials,
                PolicyResult::Applied,
                trigger,
                policy.instance(),
            );
            c.services = Some(changed);
            policy.record(c);
        }
        Err(e) => {
            tracing::error!(error = %e, trigger, "credentials reload failed; keeping the credentials in force");
            policy.record(PolicyChange::refused(
                PolicySubject::Credentials,
                trigger,
                policy.instance(),
                &e.to_string(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    /// Review of session 19: a file refused for its mode (a credential file others may read)
    /// and then fixed with the `chmod` its error asks for was never reloaded: a chmod changes
    /// none of device, inode, size or modification time.
    #[test]
    fn a_chmod_changes_the_stamp() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "ghp_x\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let before = super::stamp(&path);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(before.is_some());
        assert_ne!(super::stamp(&path), before);
    }
}
