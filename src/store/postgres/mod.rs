//! PostgreSQL backend: every tree in one table (`schema.rs`), a commit one transaction under
//! a write lock every instance takes (`commit.rs`), audit appends in turns across instances
//! ([`Store::exclusive_turn`]), change notices over LISTEN/NOTIFY (`listen.rs`), the instances
//! lock every `serve` holds and `accept-restore` takes exclusively (`instances.rs`), plain or
//! verified TLS (`target.rs`). PostgreSQL commits durably before `COMMIT` returns (with its
//! default `synchronous_commit`).
//!
//! The driver is async (`tokio-postgres`, pooled by `deadpool-postgres`, at most 8
//! connections) and the [`Store`] trait is not: callers are `spawn_blocking` threads, CLI code
//! without a runtime and plain test threads. So the store owns a small runtime of its own (two
//! worker threads named `airlock-pg`); each method spawns its work there and waits for the
//! answer on a std channel. It never `block_on`s the caller's thread, so it works from any
//! thread: one outside any runtime, a `spawn_blocking` thread, even an async worker of another
//! runtime (which then stalls, as on a redb fsync, but cannot deadlock: the work runs on the
//! store's own threads). Only a call from the store's own runtime could wait on itself; none of
//! its tasks calls the store, and such a call is refused rather than hung.
//!
//! The connection URL may hold a password: it is never logged or shown.

mod commit;
mod instances;
mod listen;
mod schema;
mod settle;
mod target;

pub use target::{with_ca_file, TargetError};

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use self::commit::{tree_id, GET_ANY_SQL, GET_SQL};
use self::listen::Changes;
use self::target::{Target, Tls};
use super::{Batch, Changed, Entry, Store, StoreError, Tree};

/// Pooled connections at most (commits are grouped: one at a time; the rest serve reads).
const POOL: usize = 8;
/// Worker threads of the store's runtime.
const THREADS: usize = 2;
/// Longest one store call may take (a commit's lock wait is cut at 30 s by the server); beyond
/// it the caller gets an error (503 on a gated call) rather than waiting on a database host
/// that went silent.
const CALL_LIMIT: Duration = Duration::from_secs(90);

/// `config` with a silently dead peer noticed within about a minute rather than hours: TCP
/// keepalives on an idle connection, and a user timeout on data the peer never acknowledges.
pub(super) fn guarded(config: &tokio_postgres::Config) -> tokio_postgres::Config {
    let mut config = config.clone();
    config
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(10))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(30));
    config
}

thread_local! {
    /// Set on the store runtime's threads, where waiting for the store would wait on itself.
    static ON_STORE_RUNTIME: Cell<bool> = const { Cell::new(false) };
}

pub struct PostgresStore {
    /// Where it is, for messages: host and database, never the password.
    shown: String,
    pool: Pool,
    handle: tokio::runtime::Handle,
    /// Taken at drop, to shut down without blocking (the drop may run on an async thread).
    runtime: Option<tokio::runtime::Runtime>,
    changes: Arc<Changes>,
    /// Where it is, for the instances lock's own connection ([`Store::hold_serving`]).
    target: Arc<Target>,
    /// How long a `COMMIT` is waited for before its outcome is settled ([`commit::COMMIT_LIMIT`]).
    commit_limit: Duration,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.pool.close();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn pool(target: &Target) -> Result<Pool, StoreError> {
    let config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match &target.tls {
        Tls::Plain => Manager::from_config(guarded(&target.config), tokio_postgres::NoTls, config),
        Tls::Verified(tls) => Manager::from_config(guarded(&target.config), tls.clone(), config),
    };
    Pool::builder(manager)
        .max_size(POOL)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .create_timeout(Some(Duration::from_secs(10)))
        .wait_timeout(Some(Duration::from_secs(30)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| StoreError::Io(format!("{}: connection pool: {e}", target.shown)))
}

impl PostgresStore {
    /// Connects to `url` (a `postgres://` URL or key=value string, its CA file named by
    /// `sslrootcert`), migrates the schema and starts listening for changes.
    pub fn open(url: &str) -> Result<PostgresStore, StoreError> {
        Self::open_with_commit_limit(url, commit::COMMIT_LIMIT)
    }

    /// [`PostgresStore::open`], waiting at most `commit_limit` for a `COMMIT`'s answer.
    pub fn open_with_commit_limit(
        url: &str,
        commit_limit: Duration,
    ) -> Result<PostgresStore, StoreError> {
        let target =
            Target::parse(url).map_err(|e| StoreError::Io(format!("{}: {e}", e.field())))?;
        let target = Arc::new(target);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(THREADS)
            .thread_name("airlock-pg")
            .on_thread_start(|| ON_STORE_RUNTIME.set(true))
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io(format!("starting the PostgreSQL runtime: {e}")))?;
        let store = PostgresStore {
            shown: target.shown.clone(),
            pool: pool(&target)?,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            changes: Arc::new(Changes::new()),
            target: target.clone(),
            commit_limit,
        };
        let (pool, shown) = (store.pool.clone(), store.shown.clone());
        store.run(async move {
            let mut client = pool.get().await.map_err(|e| io(&shown, explain(&e)))?;
            match schema::migrate(&mut client).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(newer)) => Err(StoreError::TooNew(format!(
                    "{shown}: its schema is at version {newer}, newer than this build knows \
                     ({}): a newer Airlock migrated it, and this one would misread it. Run the \
                     newer build",
                    schema::NEWEST
                ))),
                Err(e) => Err(io(&shown, explain(&e))),
            }
        })?;
        let (ready, listening) = tokio::sync::oneshot::channel();
        store
            .handle
            .spawn(listen::listen(target, store.changes.clone(), ready));
        let shown = store.shown.clone();
        store.run(async move {
            listening
                .await
                .unwrap_or_else(|_| Err(io(&shown, "change listener stopped")))
        })?;
        Ok(store)
    }

    /// The database as shown in messages (never its password).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Runs `work` on the store's runtime and waits for its answer.
    fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        if ON_STORE_RUNTIME.get() {
            return Err(io(&self.shown, "called from the store's own runtime"));
        }
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let shown = self.shown.clone();
        self.handle.spawn(async move {
            let done = tokio::time::timeout(CALL_LIMIT, work)
                .await
                .unwrap_or_else(|_| {
                    Err(io(
                        &shown,
                        format!(
                            "no answer from the database within {}s",
                            CALL_LIMIT.as_secs()
                        ),
                    ))
                });
            let _ = reply.send(done);
        });
        answer
            .recv()
            .map_err(|_| io(&self.shown, "the store's runtime stopped"))?
    }

    /// The rows one read query (a cached statement) answers.
    fn read(&self, sql: &'static str, params: Params) -> Result<Vec<Row>, StoreError> {
        let (pool, shown) = (self.pool.clone(), self.shown.clone());
        self.run(async move {
            let read = async {
                let client = pool.get().await.map_err(|e| explain(&e))?;
                let stmt = client.prepare_cached(sql).await.map_err(|e| explain(&e))?;
                let args: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                client.query(&stmt, &args).await.map_err(|e| explain(&e))
            };
            read.await.map_err(|e| io(&shown, e))
        })
    }
}

/// A query's parameters, owned so that the query can run on the store's runtime.
type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// Rows of (key, value).
fn pairs(rows: Vec<Row>) -> Result<Vec<Entry>, String> {
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<Vec<Entry>, tokio_postgres::Error>>()
        .map_err(|e| explain(&e))
}

fn io(shown: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(format!("{shown}: {e}"))
}

/// An error with its causes, each once ("db error: ERROR: ..."; the driver's own text names
/// only the kind). Neither the driver's nor the server's messages carry the password.
fn explain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = crate::wire::error_chain(e);
    if text.contains("invalid peer certificate") {
        text.push_str(
            " (is store.ca_file the CA that signed the server's certificate, and the host in \
             store.url a name that certificate carries?)",
        );
    }
    text
}

/// Session advisory lock key of the appenders' turn ("airlock" + 2 in ASCII).
const TURN_LOCK: i64 = 0x0261_6972_6c6f_636b;
/// How long a turn is waited for before the append fails (closed).
const TURN_WAIT: Duration = Duration::from_secs(30);

/// A pooled connection holding the session lock `key` ([`TURN_LOCK`], or the instances lock
/// taken exclusively); dropping it unlocks on the store's runtime (a connection that cannot
/// unlock is closed, which ends its session and so its lock, rather than returned to the pool
/// still holding it).
struct HeldTurn {
    client: Option<deadpool_postgres::Object>,
    handle: tokio::runtime::Handle,
    key: i64,
}

impl Drop for HeldTurn {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let key = self.key;
            self.handle.spawn(async move {
                let unlocked = client
                    .query_one("SELECT pg_advisory_unlock($1)", &[&key])
                    .await
                    .ok()
                    .and_then(|row| row.try_get::<_, bool>(0).ok());
                if unlocked != Some(true) {
                    drop(deadpool_postgres::Object::take(client));
                }
            });
        }
    }
}

impl Store for PostgresStore {
    fn watch(&self, tree: Tree) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.changes.subscribe(tree)
    }

    fn watch_keys(&self, tree: Tree) -> Option<tokio::sync::broadcast::Receiver<Changed>> {
        self.changes.subscribe_keys(tree)
    }

    fn clock_ms(&self) -> Option<Result<u64, StoreError>> {
        let read = self.read(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
            Vec::new(),
        );
        Some(read.and_then(|rows| {
            rows.first()
                .and_then(|r| r.try_get::<_, i64>(0).ok())
                .and_then(|ms| u64::try_from(ms).ok())
                .ok_or_else(|| io(&self.shown, "the database's clock could not be read"))
        }))
    }

    fn other_instances(&self) -> Option<Result<u64, StoreError>> {
        // Every instance's change listener ends on this statement (`listen.rs`), this
        // process's own included. A session whose statement this role may not see (another
        // role's, without pg_read_all_stats; or track_activities off) could be one: that is
        // refused, not counted as none.
        let read = self.read(
            "SELECT count(*) FILTER (WHERE query = 'LISTEN airlock_changes'), \
                    count(*) FILTER (WHERE query IS NULL OR query = '' \
                                     OR query = '<insufficient privilege>') \
             FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND backend_type = 'client backend'",
            Vec::new(),
        );
        Some(read.and_then(|rows| {
            let row = rows
                .first()
                .ok_or_else(|| io(&self.shown, "the database's sessions could not be read"))?;
            let count = |i| {
                row.try_get::<_, i64>(i)
                    .ok()
                    .and_then(|n| u64::try_from(n).ok())
            };
            match (count(0), count(1)) {
                (Some(_), Some(hidden)) if hidden > 0 => Err(io(
                    &self.shown,
                    format!(
                        "{hidden} session(s) on the database whose statement this role may not \
                         see (another role's, or track_activities is off): whether other Airlock \
                         instances are connected cannot be told; connect as the role the \
                         instances use (or one with pg_read_all_stats)"
                    ),
                )),
                (Some(listeners), Some(_)) => Ok(listeners.saturating_sub(1)),
                _ => Err(io(&self.shown, "the database's sessions could not be read")),
            }
        }))
    }

    fn exclusive_turn(&self) -> Result<Option<super::Turn>, StoreError> {
        let (pool, shown) = (self.pool.clone(), self.shown.clone());
        let client = self.run(async move {
            let client = pool.get().await.map_err(|e| io(&shown, explain(&e)))?;
            let locked = tokio::time::timeout(
                TURN_WAIT,
                client.execute("SELECT pg_advisory_lock($1)", &[&TURN_LOCK]),
            )
            .await;
            match locked {
                Ok(Ok(_)) => Ok(client),
                Ok(Err(e)) => {
                    drop(deadpool_postgres::Object::take(client));
                    Err(io(&shown, explain(&e)))
                }
                Err(_) => {
                    // The lock may yet be granted to this session: close it.
                    drop(deadpool_postgres::Object::take(client));
                    Err(io(&shown, "waited 30 s for the audit appenders' turn"))
                }
            }
        })?;
        Ok(Some(super::Turn::new(HeldTurn {
            client: Some(client),
            handle: self.handle.clone(),
            key: TURN_LOCK,
        })))
    }

    fn hold_serving(&self) -> Result<Option<super::ServingHold>, StoreError> {
        let (target, handle) = (self.target.clone(), self.handle.clone());
        self.run(instances::hold(target, handle)).map(Some)
    }

    fn try_exclusive_instances(&self) -> Result<Option<super::Turn>, StoreError> {
        let (pool, shown) = (self.pool.clone(), self.shown.clone());
        let client = self.run(async move {
            let client = pool.get().await.map_err(|e| io(&shown, explain(&e)))?;
            let taken = client
                .query_one(
                    "SELECT pg_try_advisory_lock($1)",
                    &[&instances::INSTANCES_LOCK],
                )
                .await
                .and_then(|row| row.try_get::<_, bool>(0));
            match taken {
                Ok(true) => Ok(Some(client)),
                Ok(false) => Ok(None),
                Err(e) => {
                    drop(deadpool_postgres::Object::take(client));
                    Err(io(&shown, explain(&e)))
                }
            }
        })?;
        Ok(client.map(|client| {
            super::Turn::new(HeldTurn {
                client: Some(client),
                handle: self.handle.clone(),
                key: instances::INSTANCES_LOCK,
            })
        }))
    }

    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let params: Params = vec![Box::new(tree_id(tree)), Box::new(key.to_vec())];
        let rows = self.read(GET_SQL, params)?;
        rows.first()
            .map(|r| r.try_get::<_, Vec<u8>>(0))
            .transpose()
            .map_err(|e| io(&self.shown, explain(&e)))
    }

    fn get_many(&self, tree: Tree, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // One query for all of them; answered in the order asked.
        let wanted: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
        let params: Params = vec![Box::new(tree_id(tree)), Box::new(wanted)];
        let found: std::collections::HashMap<Vec<u8>, Vec<u8>> =
            pairs(self.read(GET_ANY_SQL, params)?)
                .map_err(|e| io(&self.shown, e))?
                .into_iter()
                .collect();
        Ok(keys.iter().map(|k| found.get(*k).cloned()).collect())
    }

    fn commit(&self, batches: Vec<Batch>) -> Result<Vec<bool>, StoreError> {
        let (pool, shown, limit) = (self.pool.clone(), self.shown.clone(), self.commit_limit);
        self.run(async move {
            let client = pool.get().await.map_err(|e| io(&shown, explain(&e)))?;
            commit::commit(&pool, client, &shown, &batches, limit).await
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
        let (sql, params): (_, Params) = match end {
            Some(end) => (
                "SELECT key, value FROM airlock_kv
                 WHERE tree = $1 AND key >= $2 AND key < $3 ORDER BY key LIMIT $4",
                vec![
                    Box::new(tree_id(tree)),
                    Box::new(start.to_vec()),
                    Box::new(end.to_vec()),
                    Box::new(limit),
                ],
            ),
            None => (
                "SELECT key, value FROM airlock_kv
                 WHERE tree = $1 AND key >= $2 ORDER BY key LIMIT $3",
                vec![
                    Box::new(tree_id(tree)),
                    Box::new(start.to_vec()),
                    Box::new(limit),
                ],
            ),
        };
        pairs(self.read(sql, params)?).map_err(|e| io(&self.shown, e))
    }
}
