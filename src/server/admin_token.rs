//! The admin token a start puts in force ([`load`]): `AIRLOCK_ADMIN_TOKEN`, else on a shared
//! store the database's (written to the token file), else the token file's (created if absent).
//! On a shared store each instance follows a rotation made elsewhere ([`follow`]): it re-reads
//! the stored token (one Meta read) whenever the database announces a Meta change, and every
//! [`SHARED_RECHECK`] besides, so a rotated-out token works here at most that long after the
//! rotation while the database answers. A change taken in is written to the token file and
//! recorded in the audit log (`change: admin_token`, `trigger: database`).

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::policy_log::PolicyLog;
use super::ServerError;
use crate::admin::operator::SHARED_RECHECK;
use crate::admin::{self, AdminError, OperatorToken, TokenSource};
use crate::audit::{PolicyChange, PolicyResult, PolicySubject};
use crate::config::Config;
use crate::store::Store;

/// The admin token in force at a start, and its holder. `shared`: the store several instances
/// share.
pub(super) fn load(
    config: &Config,
    shared: Option<&Arc<dyn Store>>,
) -> Result<(String, Arc<OperatorToken>), ServerError> {
    let file = config.admin.token_file.clone();
    let token = match shared {
        Some(store) => {
            let stored = crate::directory::shared_admin_token(store.as_ref()).map_err(|e| {
                AdminError::TokenFile {
                    path: "store.url".into(),
                    message: e.to_string(),
                }
            })?;
            admin::adopt_shared_token(&file, &stored)?
        }
        None => admin::load_or_create_token(&file)?,
    };
    let source = match (admin::env_token()?, shared) {
        (Some(_), _) => TokenSource::Env,
        (None, Some(store)) => TokenSource::Shared(store.clone()),
        (None, None) => TokenSource::File,
    };
    let operator = Arc::new(OperatorToken::new(&token, file, source));
    Ok((token, operator))
}

/// Follows the shared database's admin token until `shutdown`: on every Meta change notice
/// (`changes`, subscribed to before the token was first read) and every [`SHARED_RECHECK`].
pub(super) fn follow(
    operator: Arc<OperatorToken>,
    mut changes: Option<watch::Receiver<u64>>,
    policy: Arc<PolicyLog>,
    shutdown: CancellationToken,
) {
    if !operator.is_shared() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SHARED_RECHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is at once: the token was just read
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                _ = next_notice(&mut changes) => {}
            }
            refresh(&operator, &policy).await;
        }
    });
}

/// Waits for the next Meta change notice; forever once the feed has ended (the periodic check
/// goes on).
async fn next_notice(changes: &mut Option<watch::Receiver<u64>>) {
    let ended = match changes {
        Some(rx) => rx.changed().await.is_err(),
        None => return std::future::pending().await,
    };
    if ended {
        tracing::warn!(every = ?SHARED_RECHECK, "the store's change feed ended; the shared admin token is checked periodically only");
        *changes = None;
    }
}

/// Takes in the database's admin token when it changed, and records that.
async fn refresh(operator: &Arc<OperatorToken>, policy: &PolicyLog) {
    let op = operator.clone();
    let changed = match tokio::task::spawn_blocking(move || op.refresh()).await {
        Ok(Ok(Some(changed))) => changed,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the shared admin token; the one in force stays");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "the shared admin token check failed");
            return;
        }
    };
    match &changed.file_error {
        None => {
            tracing::info!(file = %operator.file().display(), "the admin token was rotated in the shared database: the new one is in force here and in the token file; the old one no longer works")
        }
        Some(e) => {
            tracing::error!(error = %e, "the admin token was rotated in the shared database: the new one is in force here, but the token file could not be written (the CLI on this host cannot use it)")
        }
    }
    policy.record(PolicyChange::new(
        PolicySubject::AdminToken,
        PolicyResult::Applied,
        "database",
        policy.instance(),
    ));
}
