//! Change notices: a commit that writes a watched tree runs `pg_notify` in its transaction
//! ([`notify_sql`]); every store keeps one connection outside the pool running `LISTEN` and
//! bumps that tree's counter per notice. After losing the connection it reconnects with backoff
//! (100 ms doubling to 5 s) and bumps every counter, since notices sent meanwhile are lost.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use super::explain;
use super::target::{Target, Tls};
use crate::store::{Batch, StoreError, Tree, Write};

/// The notification channel.
const CHANNEL: &str = "airlock_changes";
/// Trees whose changes are announced (payload: the tree's name).
pub const WATCHED: [Tree; 2] = [Tree::Reviews, Tree::Meta];
/// The statement announcing a change of tree `$1`.
pub const NOTIFY_SQL: &str = "SELECT pg_notify('airlock_changes', $1)";

/// One change counter per watched tree.
pub struct Changes {
    counters: [watch::Sender<u64>; 2],
}

impl Changes {
    pub fn new() -> Changes {
        Changes {
            counters: [watch::Sender::new(0), watch::Sender::new(0)],
        }
    }

    pub fn subscribe(&self, tree: Tree) -> Option<watch::Receiver<u64>> {
        let i = WATCHED.iter().position(|t| *t == tree)?;
        self.counters.get(i).map(watch::Sender::subscribe)
    }

    fn bump_named(&self, name: &str) {
        if let Some(i) = WATCHED.iter().position(|t| t.name() == name) {
            if let Some(s) = self.counters.get(i) {
                s.send_modify(|v| *v += 1);
            }
        }
    }

    fn bump_all(&self) {
        for s in &self.counters {
            s.send_modify(|v| *v += 1);
        }
    }
}

/// The watched trees that the applied batches of a commit write.
pub fn written(batches: &[Batch], applied: &[bool]) -> Vec<Tree> {
    let writes = |tree: Tree| {
        batches.iter().zip(applied).any(|(b, ok)| {
            *ok && b.writes.iter().any(|w| {
                let (Write::Put(t, ..) | Write::Delete(t, _) | Write::Add(t, ..)) = w;
                *t == tree
            })
        })
    };
    WATCHED.into_iter().filter(|t| writes(*t)).collect()
}

/// Connects, runs `LISTEN`, tells `ready` (the first time), then serves notices until the
/// connection is lost; and again, with backoff. Runs until the store's runtime shuts down.
pub async fn listen(
    target: Arc<Target>,
    changes: Arc<Changes>,
    ready: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    let config = super::guarded(&target.config);
    loop {
        let lost = match &target.tls {
            Tls::Plain => session(&config, tokio_postgres::NoTls, &changes, &mut ready).await,
            Tls::Verified(tls) => session(&config, tls.clone(), &changes, &mut ready).await,
        };
        let e = match lost {
            Ok(e) => {
                backoff = Duration::from_millis(100);
                e
            }
            Err(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(StoreError::Io(format!(
                        "{}: LISTEN: {e}",
                        target.shown
                    ))));
                    return;
                }
                e
            }
        };
        tracing::warn!(
            database = %target.shown,
            error = %e,
            retry_ms = backoff.as_millis() as u64,
            "store change listener lost its connection; reconnecting"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One listening connection: `Err` if it could not be set up, `Ok` (why) once it was lost.
async fn session<T>(
    config: &tokio_postgres::Config,
    tls: T,
    changes: &Arc<Changes>,
    ready: &mut Option<tokio::sync::oneshot::Sender<Result<(), StoreError>>>,
) -> Result<String, String>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await.map_err(|e| explain(&e))?;
    let served = tokio::spawn(serve(connection, changes.clone()));
    if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
        served.abort();
        return Err(explain(&e));
    }
    match ready.take() {
        Some(r) => {
            let _ = r.send(Ok(()));
        }
        None => {
            tracing::info!("store change listener reconnected");
            changes.bump_all();
        }
    }
    let why = served.await.unwrap_or_else(|e| e.to_string());
    drop(client);
    Ok(why)
}

/// Drives the connection, bumping a counter per notice; returns why it ended.
async fn serve<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    changes: Arc<Changes>,
) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(n))) => changes.bump_named(n.payload()),
            Some(Ok(_)) => {} // a notice
            Some(Err(e)) => return explain(&e),
            None => return "connection closed".into(),
        }
    }
}
