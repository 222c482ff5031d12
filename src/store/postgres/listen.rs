//! Change notices: a commit that writes a watched tree runs `pg_notify` in its transaction
//! ([`NOTIFY_SQL`]); every store keeps one connection outside the pool running `LISTEN` and
//! bumps that tree's counter per notice. A commit that writes a keyed tree (reviews) also
//! names the keys it wrote on a second channel ([`KEYS_SQL`]: `<tree> <key> <key>…`, or
//! `<tree> *` when they do not fit one notice), passed on to [`Changes::subscribe_keys`], so
//! that a wait on one review is not woken by the others'. After losing the connection it
//! reconnects with backoff (100 ms doubling to 5 s), bumps every counter and tells every keyed
//! feed [`Changed::Unknown`], since notices sent meanwhile are lost.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, watch};
use tokio_postgres::AsyncMessage;

use super::explain;
use super::target::{Target, Tls};
use crate::store::{Batch, Changed, StoreError, Tree, Write};

/// The notification channel.
const CHANNEL: &str = "airlock_changes";
/// Trees whose changes are announced (payload: the tree's name).
pub const WATCHED: [Tree; 2] = [Tree::Reviews, Tree::Meta];
/// The statement announcing a change of tree `$1`.
pub const NOTIFY_SQL: &str = "SELECT pg_notify('airlock_changes', $1)";
/// The channel naming the keys a commit wrote (its own, so that instances that do not read
/// keys still find on [`CHANNEL`] exactly the tree names they expect).
const KEYS_CHANNEL: &str = "airlock_keys";
/// Trees whose notices also name the keys written (keys are text without spaces).
const KEYED: Tree = Tree::Reviews;
/// The statement naming the keys a commit wrote (`$1`: [`keys_payload`]).
pub const KEYS_SQL: &str = "SELECT pg_notify('airlock_keys', $1)";
/// The longest key list one notice carries (PostgreSQL takes under 8000 bytes); a commit
/// writing more keys announces `*`, "some keys".
const MOST_PAYLOAD: usize = 7000;
/// Keyed notices a slow follower may fall behind by before it is told [`Changed::Unknown`].
const KEYS_BACKLOG: usize = 1024;

/// One change counter per watched tree, and the keyed feed.
pub struct Changes {
    counters: [watch::Sender<u64>; 2],
    keys: broadcast::Sender<Changed>,
}

impl Changes {
    pub fn new() -> Changes {
        Changes {
            counters: [watch::Sender::new(0), watch::Sender::new(0)],
            keys: broadcast::Sender::new(KEYS_BACKLOG),
        }
    }

    /// The feed of keys written to `tree`, if its notices name them.
    pub fn subscribe_keys(&self, tree: Tree) -> Option<broadcast::Receiver<Changed>> {
        (tree == KEYED).then(|| self.keys.subscribe())
    }

    /// A notice on [`KEYS_CHANNEL`]: passed on, if it is about the keyed tree.
    fn keys_named(&self, payload: &str) {
        if let Some(c) = parse_keys(payload) {
            // No receiver now: nobody waits, nothing to tell.
            let _ = self.keys.send(c);
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
        let _ = self.keys.send(Changed::Unknown);
    }
}

/// The payload of the keyed notice of a commit, if it wrote the keyed tree: `reviews` and the
/// keys written, space-separated, or `reviews *` when they are too many or not plain text.
pub fn keys_payload(batches: &[Batch], applied: &[bool]) -> Option<String> {
    let mut payload = KEYED.name().to_string();
    let mut any = false;
    let mut unknown = false;
    for (b, _) in batches.iter().zip(applied).filter(|(_, ok)| **ok) {
        for w in &b.writes {
            let (Write::Put(t, k, ..) | Write::Delete(t, k) | Write::Add(t, k, ..)) = w;
            if *t != KEYED {
                continue;
            }
            any = true;
            match std::str::from_utf8(k) {
                // Printable ASCII only: no separator, no NUL (PostgreSQL text refuses it).
                Ok(k) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_graphic()) && k != "*" => {
                    if payload.len() + 1 + k.len() > MOST_PAYLOAD {
                        unknown = true;
                    } else {
                        payload.push(' ');
                        payload.push_str(k);
                    }
                }
                _ => unknown = true,
            }
        }
    }
    if !any {
        return None;
    }
    if unknown {
        return Some(format!("{} *", KEYED.name()));
    }
    Some(payload)
}

/// A keyed notice's payload read back: `None` when it is about another tree (or none).
fn parse_keys(payload: &str) -> Option<Changed> {
    let mut words = payload.split(' ');
    if words.next() != Some(KEYED.name()) {
        return None;
    }
    let keys: Vec<String> = words
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    if keys.is_empty() || keys.iter().any(|k| k == "*") {
        return Some(Changed::Unknown);
    }
    Some(Changed::Keys(keys.into()))
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
    // The tree channel last: operators (and tests) find the listener by its last statement.
    let listened = async {
        client
            .batch_execute(&format!("LISTEN {KEYS_CHANNEL}"))
            .await?;
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await
    };
    if let Err(e) = listened.await {
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
            Some(Ok(AsyncMessage::Notification(n))) if n.channel() == KEYS_CHANNEL => {
                changes.keys_named(n.payload())
            }
            Some(Ok(AsyncMessage::Notification(n))) => changes.bump_named(n.payload()),
            Some(Ok(_)) => {} // a notice
            Some(Err(e)) => return explain(&e),
            None => return "connection closed".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(tree: Tree, key: &[u8]) -> Batch {
        let mut b = Batch::default();
        b.put(tree, key, b"v");
        b
    }

    #[test]
    fn a_commit_names_the_reviews_it_wrote_and_only_those_applied() {
        let batches = [
            put(Tree::Reviews, b"rev_a"),
            put(Tree::Reviews, b"rev_b"),
            put(Tree::Reviews, b"rev_c"),
            put(Tree::Index, b"state/x"),
        ];
        let payload = keys_payload(&batches, &[true, false, true, true]);
        assert_eq!(payload.as_deref(), Some("reviews rev_a rev_c"));
        let keys = parse_keys(&payload.unwrap_or_default());
        assert_eq!(
            keys,
            Some(Changed::Keys(vec!["rev_a".into(), "rev_c".into()].into()))
        );
        assert_eq!(keys_payload(&[put(Tree::Meta, b"m")], &[true]), None);
        assert_eq!(keys_payload(&batches[..1], &[false]), None);
    }

    #[test]
    fn keys_that_do_not_fit_or_are_not_plain_text_are_announced_as_unknown() {
        let many: Vec<Batch> = (0..1000)
            .map(|i| put(Tree::Reviews, format!("rev_{i:032}").as_bytes()))
            .collect();
        let payload = keys_payload(&many, &[true; 1000]).unwrap_or_default();
        assert_eq!(payload, "reviews *");
        assert_eq!(parse_keys(&payload), Some(Changed::Unknown));
        for odd in [&b"a b"[..], b"\xff", b"*", b"", b"a\0", "é".as_bytes()] {
            let payload = keys_payload(&[put(Tree::Reviews, odd)], &[true]).unwrap_or_default();
            assert_eq!(parse_keys(&payload), Some(Changed::Unknown), "{odd:?}");
        }
        assert_eq!(parse_keys("meta x"), None);
        assert_eq!(parse_keys("reviews"), Some(Changed::Unknown));
    }

    #[tokio::test]
    async fn a_reconnect_tells_the_keyed_feed_it_may_have_missed_notices() {
        let changes = Changes::new();
        let mut keys = changes.subscribe_keys(Tree::Reviews).expect("keyed");
        assert!(changes.subscribe_keys(Tree::Meta).is_none());
        changes.keys_named("reviews rev_a");
        changes.bump_all();
        assert_eq!(
            keys.recv().await.ok(),
            Some(Changed::Keys(vec!["rev_a".to_string()].into()))
        );
        assert_eq!(keys.recv().await.ok(), Some(Changed::Unknown));
    }
}
