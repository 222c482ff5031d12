//! The instances lock: every `airlock serve` on the database holds a session-level advisory
//! lock on [`INSTANCES_LOCK`] in shared mode, on a connection of its own outside the pool, for
//! as long as it runs; `airlock audit accept-restore` takes the same key exclusively
//! (`pg_try_advisory_lock`, never waiting) and keeps it for its whole run. So a restore cannot
//! begin while an instance runs, even one whose change listener is reconnecting (which
//! `pg_stat_activity` alone cannot see), and no instance can start while a restore runs: a
//! `serve` finding the key held exclusively refuses to start, saying why.
//!
//! A lost lock connection is reconnected with backoff (100 ms doubling to 5 s) and the lock
//! taken again; if a restore holds it by then, the instance is told to stop
//! ([`crate::store::ServingHold::lost`]): it ran through the restore unseen, and what it holds in memory no
//! longer matches the database.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::explain;
use super::target::{Target, Tls};
use crate::store::{ServingHold, StoreError};

/// Session advisory lock key of the instances ("airlock" + 3 in ASCII; the appenders' turn is
/// + 2).
pub(super) const INSTANCES_LOCK: i64 = 0x0361_6972_6c6f_636b;

/// What a `serve` finding the lock held exclusively is told.
pub(super) fn restore_running(shown: &str) -> String {
    format!(
        "{shown}: an `airlock audit accept-restore` is running on this database (it holds the \
         instances lock exclusively): start again once it has finished"
    )
}

/// Aborts the task keeping the lock when the hold drops (its connection closes, and with it
/// the session's lock).
struct Abort(tokio::task::AbortHandle);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts holding [`INSTANCES_LOCK`] shared on `handle`; `Err` when it cannot be taken (a
/// restore holds it, or the database cannot be reached).
pub(super) async fn hold(
    target: Arc<Target>,
    handle: tokio::runtime::Handle,
) -> Result<ServingHold, StoreError> {
    let (ready, taken) = oneshot::channel();
    let (lost_tx, lost) = watch::channel(None);
    let task = handle.spawn(keep(target.clone(), ready, lost_tx));
    match taken.await {
        Ok(Ok(())) => Ok(ServingHold::new(Abort(task.abort_handle()), lost)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(StoreError::Io(format!(
            "{}: the instances lock task stopped",
            target.shown
        ))),
    }
}

/// Takes the lock, tells `ready` (the first time), keeps the session until it is lost; and
/// again, with backoff.
async fn keep(
    target: Arc<Target>,
    ready: oneshot::Sender<Result<(), StoreError>>,
    lost: watch::Sender<Option<String>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    let config = super::guarded(&target.config);
    loop {
        let session = match &target.tls {
            Tls::Plain => session(&config, tokio_postgres::NoTls, &mut ready).await,
            Tls::Verified(tls) => session(&config, tls.clone(), &mut ready).await,
        };
        let why = match session {
            Session::Ended(why) => {
                backoff = Duration::from_millis(100);
                why
            }
            Session::Refused => {
                let why = restore_running(&target.shown);
                match ready.take() {
                    Some(r) => {
                        let _ = r.send(Err(StoreError::Io(why)));
                    }
                    None => {
                        let _ = lost.send(Some(format!(
                            "{why}; it began while this instance's lock connection was down, \
                             so this instance stops: start it again after the restore"
                        )));
                    }
                }
                return;
            }
            Session::Failed(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(StoreError::Io(format!(
                        "{}: instances lock: {e}",
                        target.shown
                    ))));
                    return;
                }
                e
            }
        };
        tracing::warn!(
            database = %target.shown,
            error = %why,
            retry_ms = backoff.as_millis() as u64,
            "the instances lock connection was lost; reconnecting"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// How one lock session went.
enum Session {
    /// Held, then the connection was lost (why).
    Ended(String),
    /// Another session holds the key exclusively.
    Refused,
    /// No connection, or the statement failed.
    Failed(String),
}

async fn session<T>(
    config: &tokio_postgres::Config,
    tls: T,
    ready: &mut Option<oneshot::Sender<Result<(), StoreError>>>,
) -> Session
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = match config.connect(tls).await {
        Ok(c) => c,
        Err(e) => return Session::Failed(explain(&e)),
    };
    let driven = tokio::spawn(connection);
    let taken = client
        .query_one("SELECT pg_try_advisory_lock_shared($1)", &[&INSTANCES_LOCK])
        .await
        .and_then(|row| row.try_get::<_, bool>(0));
    match taken {
        Ok(true) => {}
        Ok(false) => {
            driven.abort();
            return Session::Refused;
        }
        Err(e) => {
            driven.abort();
            return Session::Failed(explain(&e));
        }
    }
    match ready.take() {
        Some(r) => {
            let _ = r.send(Ok(()));
        }
        None => tracing::info!("the instances lock was taken again"),
    }
    let why = match driven.await {
        Ok(Ok(())) => "connection closed".to_string(),
        Ok(Err(e)) => explain(&e),
        Err(e) => e.to_string(),
    };
    drop(client);
    Session::Ended(why)
}
