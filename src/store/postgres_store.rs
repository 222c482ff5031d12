//! PostgreSQL backend: every tree in one table `airlock_kv (tree, key, value)`, keys compared
//! bytewise as in redb and sled. A commit is one SERIALIZABLE transaction, each batch inside a
//! savepoint (a failed expectation rolls back that batch alone); a serialization failure is
//! retried. PostgreSQL commits durably before `COMMIT` returns (with its default
//! `synchronous_commit`). The schema is versioned and migrated at open under an advisory lock.
//!
//! Connections belong to a few threads of this module's own, each holding one synchronous
//! `postgres` client (which drives its own small runtime, so it must never run on a thread
//! inside the async runtime: callers hand it work over a channel and wait for the answer, as
//! they would wait for a redb fsync). The connection URL may hold a password: it is never
//! logged or shown.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use postgres::error::SqlState;
use postgres::{Client, NoTls, Transaction};

use super::batch::Txn;
use super::{Batch, Entry, Store, StoreError, Tree};

/// Open connections at most (commits are grouped: one at a time; the rest serve reads).
const POOL: usize = 8;
/// Attempts of one commit that keeps meeting serialization failures.
const ATTEMPTS: usize = 20;
/// Advisory lock key taken while migrating ("airlock" in ASCII).
const MIGRATION_LOCK: i64 = 0x0061_6972_6c6f_636b;

/// The schema, one step per version; each step runs once, in order, in one transaction.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE IF NOT EXISTS airlock_kv (
         tree smallint NOT NULL,
         key bytea NOT NULL,
         value bytea NOT NULL,
         PRIMARY KEY (tree, key)
     )",
)];

pub struct PostgresStore {
    /// Where it is, for messages: host and database, never the password.
    shown: String,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    changes: Arc<Changes>,
    listener: Option<std::thread::JoinHandle<()>>,
}

/// The notification channel every commit that writes a watched tree notifies on.
const CHANNEL: &str = "airlock_changes";
/// Trees whose changes are announced (payload: the tree's name).
const WATCHED: [Tree; 2] = [Tree::Reviews, Tree::Meta];

/// One change counter per watched tree, bumped by the listener.
struct Changes {
    counters: [tokio::sync::watch::Sender<u64>; 2],
    stop: std::sync::atomic::AtomicBool,
}

impl Changes {
    fn sender(&self, tree: Tree) -> Option<&tokio::sync::watch::Sender<u64>> {
        WATCHED
            .iter()
            .position(|t| *t == tree)
            .and_then(|i| self.counters.get(i))
    }

    fn bump(&self, tree: Tree) {
        if let Some(s) = self.sender(tree) {
            s.send_modify(|v| *v += 1);
        }
    }

    fn bump_all(&self) {
        for s in &self.counters {
            s.send_modify(|v| *v += 1);
        }
    }
}

/// The listener: one connection of its own running `LISTEN`, bumping the counter a notification
/// names. After losing the connection it reconnects with backoff and bumps every counter
/// (notifications sent meanwhile are lost). `ready` hears of the first `LISTEN`.
fn listen(
    config: postgres::Config,
    shown: String,
    changes: Arc<Changes>,
    ready: mpsc::SyncSender<Result<(), StoreError>>,
) {
    use std::sync::atomic::Ordering;
    let mut ready = Some(ready);
    let mut backoff = std::time::Duration::from_millis(100);
    while !changes.stop.load(Ordering::Relaxed) {
        let mut client = match config
            .connect(NoTls)
            .and_then(|mut c| c.batch_execute(&format!("LISTEN {CHANNEL}")).map(|()| c))
        {
            Ok(c) => c,
            Err(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(StoreError::Io(format!("{shown}: LISTEN: {e}"))));
                    return;
                }
                tracing::warn!(database = %shown, error = %e, retry_ms = backoff.as_millis() as u64, "store change listener cannot reconnect");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
                continue;
            }
        };
        match ready.take() {
            Some(r) => {
                let _ = r.send(Ok(()));
            }
            None => {
                tracing::info!(database = %shown, "store change listener reconnected");
                changes.bump_all();
            }
        }
        backoff = std::time::Duration::from_millis(100);
        loop {
            if changes.stop.load(Ordering::Relaxed) {
                return;
            }
            let next = postgres::fallible_iterator::FallibleIterator::next(
                &mut client
                    .notifications()
                    .timeout_iter(std::time::Duration::from_millis(200)),
            );
            match next {
                Ok(Some(n)) => {
                    if let Some(tree) = WATCHED.iter().find(|t| t.name() == n.payload()) {
                        changes.bump(*tree);
                    }
                }
                Ok(None) if client.is_closed() => {
                    tracing::warn!(database = %shown, "store change listener lost its connection; reconnecting");
                    break;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(database = %shown, error = %e, "store change listener lost its connection; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Work for a connection thread: it gets the thread's client (connecting first if needed).
type Job = Box<dyn FnOnce(Result<&mut Client, StoreError>) + Send>;

/// One connection thread: takes jobs until the store is dropped; reconnects after a failure.
fn worker(config: postgres::Config, shown: String, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let mut client: Option<Client> = None;
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return; // the store was dropped
        };
        if client.as_ref().is_none_or(Client::is_closed) {
            client = None;
            match config.connect(NoTls) {
                Ok(c) => client = Some(c),
                Err(e) => {
                    job(Err(StoreError::Io(format!("{shown}: {e}"))));
                    continue;
                }
            }
        }
        match client.as_mut() {
            Some(c) => job(Ok(c)),
            None => job(Err(StoreError::Io(format!("{shown}: no connection")))),
        }
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.changes
            .stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(l) = self.listener.take() {
            let _ = l.join();
        }
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take(); // the workers see the channel close and end
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Where `config` points, without credentials.
fn describe(config: &postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports = config.get_ports();
    let port = ports.first().copied().unwrap_or(5432);
    format!(
        "postgres://{}:{port}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

impl PostgresStore {
    /// Connects to `url` (a `postgres://` URL or key=value string) and migrates the schema.
    pub fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let config: postgres::Config = url.parse().map_err(|e| {
            StoreError::Io(format!("store.url is not a PostgreSQL connection URL: {e}"))
        })?;
        if matches!(config.get_ssl_mode(), postgres::config::SslMode::Require) {
            return Err(StoreError::Io(
                "store.url asks for sslmode=require, and Airlock does not speak TLS to \
                 PostgreSQL yet: use a Unix socket or a loopback/private address"
                    .into(),
            ));
        }
        let shown = describe(&config);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..POOL)
            .map(|i| {
                let (config, shown, rx) = (config.clone(), shown.clone(), rx.clone());
                std::thread::Builder::new()
                    .name(format!("airlock-pg-{i}"))
                    .spawn(move || worker(config, shown, rx))
                    .map_err(|e| StoreError::Io(format!("starting a PostgreSQL thread: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let changes = Arc::new(Changes {
            counters: [
                tokio::sync::watch::Sender::new(0),
                tokio::sync::watch::Sender::new(0),
            ],
            stop: std::sync::atomic::AtomicBool::new(false),
        });
        let mut store = PostgresStore {
            shown: shown.clone(),
            jobs: Mutex::new(Some(tx)),
            workers,
            changes: changes.clone(),
            listener: None,
        };
        store.migrate()?;
        let (ready, listening) = mpsc::sync_channel(1);
        store.listener = Some(
            std::thread::Builder::new()
                .name("airlock-pg-listen".into())
                .spawn(move || listen(config, shown, changes, ready))
                .map_err(|e| StoreError::Io(format!("starting a PostgreSQL thread: {e}")))?,
        );
        listening
            .recv()
            .map_err(|_| StoreError::Io(format!("{}: listener failed", store.shown)))??;
        Ok(store)
    }

    /// Runs `f` on a connection thread and waits for its answer.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |client| {
            let _ = reply.send(client.and_then(f));
        });
        let sent = match self.jobs.lock() {
            Ok(jobs) => jobs.as_ref().is_some_and(|tx| tx.send(job).is_ok()),
            Err(_) => false,
        };
        if !sent {
            return Err(StoreError::Io(format!("{}: store is closed", self.shown)));
        }
        answer
            .recv()
            .map_err(|_| StoreError::Io(format!("{}: connection thread failed", self.shown)))?
    }

    /// [`PostgresStore::run`] for a driver call; its error is shown with the location.
    fn with_client<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shown = self.shown.clone();
        self.run(move |c| f(c).map_err(|e| StoreError::Io(format!("{shown}: {e}"))))
    }

    fn migrate(&self) -> Result<(), StoreError> {
        self.with_client(|c| {
            let mut t = c.transaction()?;
            t.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            t.batch_execute(
                "CREATE TABLE IF NOT EXISTS airlock_schema (
                     version integer PRIMARY KEY,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 )",
            )?;
            let done: i32 = t
                .query_one("SELECT coalesce(max(version), 0) FROM airlock_schema", &[])?
                .get(0);
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > done) {
                t.batch_execute(sql)?;
                t.execute(
                    "INSERT INTO airlock_schema (version) VALUES ($1)",
                    &[version],
                )?;
            }
            t.commit()
        })
    }
}

/// One attempt at `batches` in one serializable transaction.
fn try_commit(client: &mut Client, batches: &[Batch]) -> Result<Vec<bool>, TxnFailure> {
    let mut t = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::Serializable)
        .start()
        .map_err(TxnFailure::Pg)?;
    let mut applied = Vec::with_capacity(batches.len());
    for b in batches {
        let mut sp = t.savepoint("batch").map_err(TxnFailure::Pg)?;
        let ok = {
            let mut view = Rows {
                txn: &mut sp,
                failure: None,
            };
            let r = b.apply_in(&mut view);
            if let Some(f) = view.failure {
                return Err(TxnFailure::Pg(f));
            }
            r.map_err(TxnFailure::Store)?
        };
        if ok {
            sp.commit().map_err(TxnFailure::Pg)?;
        } else {
            sp.rollback().map_err(TxnFailure::Pg)?;
        }
        applied.push(ok);
    }
    for tree in WATCHED {
        let written = batches
            .iter()
            .zip(&applied)
            .any(|(b, ok)| *ok && b.writes.iter().any(|w| write_tree(w) == tree));
        if written {
            t.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &tree.name()])
                .map_err(TxnFailure::Pg)?;
        }
    }
    t.commit().map_err(TxnFailure::Pg)?;
    Ok(applied)
}

/// Why one attempt failed: a driver error (maybe a serialization failure, retried) or ours.
enum TxnFailure {
    Pg(postgres::Error),
    Store(StoreError),
}

fn write_tree(w: &super::Write) -> Tree {
    match w {
        super::Write::Put(t, ..) | super::Write::Delete(t, _) | super::Write::Add(t, ..) => *t,
    }
}

fn tree_id(tree: Tree) -> i16 {
    tree.slot() as i16
}

/// A transaction, as a [`Batch`] sees it. The first driver error is kept (the transaction is
/// then aborted on the server, and the attempt is retried or failed as a whole).
struct Rows<'a, 't> {
    txn: &'a mut Transaction<'t>,
    failure: Option<postgres::Error>,
}

impl Rows<'_, '_> {
    fn fail(&mut self, e: postgres::Error) -> StoreError {
        let shown = StoreError::Io(format!("postgres: {e}"));
        self.failure.get_or_insert(e);
        shown
    }
}

impl Txn for Rows<'_, '_> {
    fn get(&mut self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self.txn.query_opt(
            "SELECT value FROM airlock_kv WHERE tree = $1 AND key = $2",
            &[&tree_id(tree), &key],
        );
        match r {
            Ok(row) => Ok(row.map(|r| r.get::<_, Vec<u8>>(0))),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn put(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let r = self.txn.execute(
            "INSERT INTO airlock_kv (tree, key, value) VALUES ($1, $2, $3)
             ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
            &[&tree_id(tree), &key, &value],
        );
        r.map(drop).map_err(|e| self.fail(e))
    }

    fn delete(&mut self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        let r = self.txn.execute(
            "DELETE FROM airlock_kv WHERE tree = $1 AND key = $2",
            &[&tree_id(tree), &key],
        );
        r.map(drop).map_err(|e| self.fail(e))
    }
}

fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

impl Store for PostgresStore {
    fn watch(&self, tree: Tree) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.changes.sender(tree).map(|s| s.subscribe())
    }

    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_vec();
        self.with_client(move |c| {
            let row = c.query_opt(
                "SELECT value FROM airlock_kv WHERE tree = $1 AND key = $2",
                &[&tree_id(tree), &key],
            )?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    fn commit(&self, batches: Vec<Batch>) -> Result<Vec<bool>, StoreError> {
        let shown = self.shown.clone();
        self.run(move |client| {
            let mut last = None;
            for _ in 0..ATTEMPTS {
                match try_commit(client, &batches) {
                    Ok(applied) => return Ok(applied),
                    Err(TxnFailure::Store(e)) => return Err(e),
                    Err(TxnFailure::Pg(e)) if retryable(&e) => last = Some(e),
                    Err(TxnFailure::Pg(e)) => return Err(StoreError::Io(format!("{shown}: {e}"))),
                }
            }
            Err(StoreError::Io(match last {
                Some(e) => format!("{shown}: {e}"),
                None => format!("{shown}: commit kept conflicting"),
            }))
        })
    }

    fn range(
        &self,
        tree: Tree,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (start, end) = (start.to_vec(), end.map(<[u8]>::to_vec));
        self.with_client(move |c| {
            let rows = match &end {
                Some(end) => c.query(
                    "SELECT key, value FROM airlock_kv
                     WHERE tree = $1 AND key >= $2 AND key < $3 ORDER BY key LIMIT $4",
                    &[&tree_id(tree), &start, &end, &limit],
                )?,
                None => c.query(
                    "SELECT key, value FROM airlock_kv
                     WHERE tree = $1 AND key >= $2 ORDER BY key LIMIT $3",
                    &[&tree_id(tree), &start, &limit],
                )?,
            };
            Ok(rows
                .into_iter()
                .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1)))
                .collect())
        })
    }
}
