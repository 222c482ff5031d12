//! `airlock admin-token rotate`: a new random admin token; the old one stops working. Never
//! prints the token: it says where the token file is.
//!
//! - Embedded store (redb, sled) and a running `airlock serve` (it holds the store's lock): the
//!   server is asked over the admin API (`POST /v1/admin-token/rotate`, with the current admin
//!   token, over the admin socket when this is Airlock's user). It writes the token file,
//!   refuses the old token at once and records the rotation in the audit log.
//! - Embedded store, no server running: the token file is rewritten here (the store's lock held
//!   meanwhile, so no server starts half-way); the next start uses it. Only by the store's and
//!   the file's owner: root asks the server, and never takes another user's store or file.
//! - Shared database (`[store] backend = "postgres"`): the database's token is replaced
//!   (compare-and-swap) and this host's token file rewritten; every running instance follows
//!   within [`airlock::admin::operator::SHARED_RECHECK`] (at once as a rule).
//!
//! Refused while `AIRLOCK_ADMIN_TOKEN` is set: that variable is the operator's to change.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use airlock::admin::client::{call, Target};
use airlock::admin::operator::SHARED_RECHECK;
use airlock::config::Config;
use airlock::store::{Store, StoreError};

#[derive(Subcommand)]
pub(super) enum AdminTokenCommand {
    /// Replace the admin token with a new random one, written to the token file (never
    /// printed); the old one stops working at once on a running server (within 10 s on every
    /// instance of a shared database), and dashboard sessions signed in with it end.
    Rotate,
}

pub(super) fn admin_token_cmd(config: Config, cmd: AdminTokenCommand) -> Result<()> {
    match cmd {
        AdminTokenCommand::Rotate => rotate(&config),
    }
}

fn rotate(config: &Config) -> Result<()> {
    if !matches!(airlock::admin::env_token(), Ok(None)) {
        bail!(
            "{} is set: the admin token is that variable's, not Airlock's to rotate; change it where it is set and restart airlock serve (or unset it here to rotate the token file)",
            airlock::admin::TOKEN_ENV
        );
    }
    if let Some(store) = super::shared_store(config)? {
        return rotate_shared(config, store.as_ref());
    }
    let path = config.store.path.display();
    match holder(config)? {
        Holder::Nobody(_lock) => rotate_offline(config),
        Holder::Server => {
            rotate_through_server(config, &format!("airlock serve holds the store at {path}"))
        }
        Holder::Owner(uid) => rotate_through_server(
            config,
            &format!("the store at {path} is uid {uid}'s: with no airlock serve running, run this as that user to rotate the token file"),
        ),
    }
}

/// Who holds the embedded store.
enum Holder {
    /// No server: the store's lock is ours while this lives (`None`: no store there yet, and
    /// none is created).
    Nobody(Option<Arc<dyn Store>>),
    /// A running `airlock serve`.
    Server,
    /// Another user's store (this is root, say): its lock is not probed, since opening it could
    /// leave files that user cannot use; the server is asked.
    Owner(u32),
}

fn holder(config: &Config) -> Result<Holder> {
    let (backend, path) = (config.store.backend, &config.store.path);
    if !airlock::store::holds_store(backend, path) {
        return Ok(Holder::Nobody(None));
    }
    if let Some(uid) = owner(path).filter(|uid| *uid != me()) {
        return Ok(Holder::Owner(uid));
    }
    match airlock::store::open_configured(backend, path, None, std::time::Duration::ZERO) {
        Ok(store) => Ok(Holder::Nobody(Some(store))),
        Err(StoreError::Locked(_)) => Ok(Holder::Server),
        Err(e) => Err(anyhow::anyhow!(
            "opening the store at {} to see whether airlock serve runs: {e}",
            path.display()
        )),
    }
}

/// No server runs: the token file gets a new token, for the next start.
fn rotate_offline(config: &Config) -> Result<()> {
    let file = &config.admin.token_file;
    match owner(file) {
        None => bail!(
            "no admin token at {} to rotate (the first airlock serve creates one; {})",
            file.display(),
            config.home.describe()
        ),
        // The server refuses a token file it does not own.
        Some(uid) if uid != me() => bail!(
            "{} is uid {uid}'s: run this as that user (airlock serve refuses a token file it does not own)",
            file.display()
        ),
        Some(_) => {}
    }
    airlock::admin::write_token_file(file, &airlock::admin::new_token())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    super::note(&format!(
        "no airlock serve is running on this store: the admin token in {} was replaced; the next start uses it (the old one no longer works)",
        file.display()
    ));
    Ok(())
}

/// A server holds the store: it rotates, over the admin API. `why` says why it was asked, for
/// an error when it does not answer.
fn rotate_through_server(config: &Config, why: &str) -> Result<()> {
    let token = super::admin_token(config)?;
    let target = Target::of(config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) = runtime
        .block_on(call(
            &target,
            &token,
            http::Method::POST,
            "/v1/admin-token/rotate",
            None,
        ))
        .with_context(|| format!("{why}, but its admin API does not answer"))?;
    let message = body["message"].as_str().unwrap_or_default();
    match status {
        200 => {
            super::note(message);
            if let Some(e) = body["auditError"].as_str() {
                super::warn(&format!(
                    "the rotation is not in the audit log (it took effect): {e}"
                ));
            }
            Ok(())
        }
        401 => bail!(
            "the server at {target} refused the admin token in {}: it is not the one in force there",
            config.admin.token_file.display()
        ),
        _ => bail!("the server at {target} answered {status}: {message}"),
    }
}

/// A shared database: its token is replaced; every instance follows.
fn rotate_shared(config: &Config, store: &dyn Store) -> Result<()> {
    let token = airlock::directory::rotate_shared_admin_token(store)
        .map_err(|e| anyhow::anyhow!("rotating the admin token in the database: {e}"))?;
    let file = &config.admin.token_file;
    let follow = humantime::format_duration(SHARED_RECHECK);
    // This host's file now (the instances here rewrite it too, once they see the change); one
    // another user owns is theirs to write (root's copy would lock Airlock's user out of it).
    let written = match owner(file) {
        Some(uid) if uid != me() => Err(format!("it is uid {uid}'s")),
        _ => airlock::admin::write_token_file(file, &token).map_err(|e| e.to_string()),
    };
    match written {
        Ok(()) => super::note(&format!(
            "the admin token was rotated in the shared database and written to {}; every running instance refuses the old one within {follow} (and writes the new one to its own token file)",
            file.display()
        )),
        Err(e) => super::warn(&format!(
            "the admin token was rotated in the shared database, but this host's token file could not be written ({e}); every running instance refuses the old one within {follow} and writes the new one to its own token file"
        )),
    }
    Ok(())
}

/// The uid that owns `path`; `None` when it is absent or unreadable.
fn owner(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| m.uid())
}

/// This process's effective uid.
fn me() -> u32 {
    // SAFETY: plain syscall.
    unsafe { libc::geteuid() }
}
