//! Durable key-value storage behind one small trait, with redb (default) and sled backends.
//! See `docs/store.md` for the crash evidence behind the default. Every write is a [`Batch`]
//! (expectations, then writes, all or nothing); concurrent batches share one durable commit
//! (`group.rs`), so many holds cost one fsync.

mod batch;
pub mod format;
mod group;
mod panic_guard;
mod postgres;
mod redb_store;
mod sled_store;
#[cfg(test)]
pub(crate) mod testing;

pub use batch::{counter_value, Batch, Write};
pub use postgres::{with_ca_file, TargetError as PostgresTargetError};

use std::path::Path;
use std::sync::Arc;

/// The named keyspaces Airlock keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tree {
    Reviews,
    Audit,
    Meta,
    /// Secondary indexes (reviews by state, deadline, agent, tool; audit entries by review)
    /// and counters, written in the same batch as what they index.
    Index,
}

impl Tree {
    pub const ALL: [Tree; 4] = [Tree::Reviews, Tree::Audit, Tree::Meta, Tree::Index];

    pub fn name(self) -> &'static str {
        match self {
            Tree::Reviews => "reviews",
            Tree::Audit => "audit",
            Tree::Meta => "meta",
            Tree::Index => "index",
        }
    }

    /// Position in [`Tree::ALL`].
    pub fn slot(self) -> usize {
        match self {
            Tree::Reviews => 0,
            Tree::Audit => 1,
            Tree::Meta => 2,
            Tree::Index => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O error: {0}")]
    Io(String),
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("store at {0} is in use by another process (is another `airlock serve` running?)")]
    Locked(String),
    #[error("disk full writing {0}; held requests cannot be stored, gated calls are refused")]
    Full(String),
    /// Written by a newer build in a format this one cannot read (`format.rs`).
    #[error("{0}")]
    TooNew(String),
    /// A commit whose answer was lost and could not be settled: it may or may not have been
    /// written.
    #[error("{0}")]
    InDoubt(String),
}

pub(crate) fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    if e.raw_os_error() == Some(28) {
        StoreError::Full(path.display().to_string())
    } else {
        StoreError::Io(format!("{}: {e}", path.display()))
    }
}

/// Creates the data directory (and missing parents) with mode 0700 whatever the umask; an
/// existing directory is left as it is (with a warning if others may read it).
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            if m.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    dir = %dir.display(),
                    mode = format!("{:o}", m.permissions().mode() & 0o7777),
                    "the data directory is readable by others; chmod 700 it"
                );
            }
            Ok(())
        }
        // Creating it would fail with a bare "File exists (os error 17)".
        Ok(_) => Err(StoreError::Io(format!(
            "store.path {} is a file, not a directory (the store is a directory Airlock keeps \
             its files in)",
            dir.display()
        ))),
        Err(_) => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io_error(dir, e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io_error(dir, e))
        }
    }
}

/// Sets mode 0600 on a store file (and 0700 on a store subdirectory), whatever the umask.
pub(crate) fn make_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path).map_err(|e| io_error(path, e))?;
    let mode = if meta.is_dir() { 0o700 } else { 0o600 };
    if meta.file_type().is_symlink() || meta.permissions().mode() & 0o7777 == mode {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_error(path, e))
}

/// Which embedded database backs the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sled,
    Redb,
    /// A PostgreSQL database (`store.url`), instead of a directory.
    Postgres,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sled" => Ok(Backend::Sled),
            "redb" => Ok(Backend::Redb),
            "postgres" => Ok(Backend::Postgres),
            other => Err(format!(
                "unknown store backend {other:?}: expected \"redb\", \"sled\" or \"postgres\""
            )),
        }
    }
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The whole storage contract. Every successful write is durable (on disk) before it returns.
pub trait Store: Send + Sync + 'static {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// The values of `keys` in `tree`, in order (one read transaction where the backend has
    /// them: a page of reviews costs one, not one per review).
    fn get_many(&self, tree: Tree, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|k| self.get(tree, k)).collect()
    }
    /// Applies every batch whose expectations hold (each all or nothing, in order, a later one
    /// seeing the earlier ones' writes) in one durable commit. One flag per batch: applied.
    fn commit(&self, batches: Vec<Batch>) -> Result<Vec<bool>, StoreError>;
    /// Up to `limit` entries with `start <= key < end` (`end: None`: to the last key), in
    /// ascending key order; keys outside the range are not visited.
    fn range(
        &self,
        tree: Tree,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;

    /// Atomically sets `key` to `new` if its current value equals `expected` (`None`: absent).
    /// Returns `Ok(false)` without writing when the current value differs.
    fn compare_and_swap(
        &self,
        tree: Tree,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let mut b = Batch::default();
        b.expect(tree, key, expected).put(tree, key, new);
        self.apply(b)
    }
    /// Inserts every `(key, value)` of `entries` into `tree`, where none of the keys may exist
    /// yet. `Ok(false)`: a key existed and nothing was written.
    fn insert_new(&self, tree: Tree, entries: &[(&[u8], &[u8])]) -> Result<bool, StoreError> {
        let mut b = Batch::default();
        for (k, v) in entries {
            b.expect(tree, k, None).put(tree, k, v);
        }
        self.apply(b)
    }
    /// One batch: `Ok(false)` when an expectation did not hold (nothing written).
    fn apply(&self, batch: Batch) -> Result<bool, StoreError> {
        Ok(self.commit(vec![batch])?.first().copied().unwrap_or(false))
    }
    /// Every entry of `tree` whose key is >= `start`, in ascending key order. For exports and
    /// tests: request paths read bounded [`Store::range`]s.
    fn scan_from(&self, tree: Tree, start: &[u8]) -> Result<Vec<Entry>, StoreError> {
        self.range(tree, start, None, usize::MAX)
    }
    /// Every entry of `tree` in ascending key order.
    fn scan(&self, tree: Tree) -> Result<Vec<Entry>, StoreError> {
        self.scan_from(tree, &[])
    }
    /// For a store several processes share: a counter bumped after any process (this one
    /// included) committed a change to `tree`, so that waiters re-read. `None`: only this
    /// process writes (the embedded stores), and it signals its own changes.
    fn watch(&self, tree: Tree) -> Option<tokio::sync::watch::Receiver<u64>> {
        let _ = tree;
        None
    }
    /// For a store several processes share: a notice after any process (this one included)
    /// committed a change to `tree`, naming the keys it wrote when it can, so that a waiter
    /// reads again only when what it waits on changed. `None`: no such feed (then
    /// [`Store::watch`], if any, is all there is).
    fn watch_keys(&self, tree: Tree) -> Option<tokio::sync::broadcast::Receiver<Changed>> {
        let _ = tree;
        None
    }
    /// For a store several processes share: its own clock (ms since the epoch), the one
    /// reference every instance's clock can be compared with (claims' leases compare the
    /// clocks of instances). `None`: only this process writes.
    fn clock_ms(&self) -> Option<Result<u64, StoreError>> {
        None
    }
    /// For a store several processes share: how many other Airlock processes are connected to
    /// it now (each keeps a change listener), for commands that must run with every instance
    /// stopped. `None`: only one process opens it (the embedded stores' lock says so).
    fn other_instances(&self) -> Option<Result<u64, StoreError>> {
        None
    }
    /// For a store several processes share: waits for the appenders' turn, held across
    /// processes until the guard drops, so that one process at a time reads the audit log's head
    /// and commits after it (no append then loses a race for the next seq and retries).
    /// `None`: only this process writes (the embedded stores).
    fn exclusive_turn(&self) -> Result<Option<Turn>, StoreError> {
        Ok(None)
    }
    /// For a store several processes share: holds the instances lock in shared mode for as
    /// long as the hold lives, saying "an instance serves here" to [`Store::try_exclusive_instances`]
    /// (every `serve` takes it before it reads anything). `Err` when it cannot be had (a
    /// restore holds it exclusively). `None`: only one process opens the store (its file lock
    /// says so).
    fn hold_serving(&self) -> Result<Option<ServingHold>, StoreError> {
        Ok(None)
    }
    /// For a store several processes share: takes the instances lock exclusively, at once or
    /// not at all, held until the turn drops (`airlock audit accept-restore`, for its whole
    /// run): `Ok(None)` while any instance holds it ([`Store::hold_serving`]). The embedded
    /// stores answer a turn that holds nothing (their file lock keeps `serve` out).
    fn try_exclusive_instances(&self) -> Result<Option<Turn>, StoreError> {
        Ok(Some(Turn::new(())))
    }
}

/// A serving instance's hold from [`Store::hold_serving`]; released when dropped.
pub struct ServingHold {
    _held: Box<dyn Send + Sync>,
    lost: tokio::sync::watch::Receiver<Option<String>>,
}

impl ServingHold {
    pub fn new(
        held: impl Send + Sync + 'static,
        lost: tokio::sync::watch::Receiver<Option<String>>,
    ) -> ServingHold {
        ServingHold {
            _held: Box::new(held),
            lost,
        }
    }

    /// Becomes `Some(why)` when the hold was lost and could not be had again: the instance
    /// must stop.
    pub fn lost(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.lost.clone()
    }
}

/// A notice of [`Store::watch_keys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// These keys were written (as text: only trees whose keys are text are announced so).
    Keys(std::sync::Arc<[String]>),
    /// Something was written, or may have been (notices were lost): which keys is unknown.
    Unknown,
}

/// A turn from [`Store::exclusive_turn`]; ends when dropped.
pub struct Turn(#[allow(dead_code)] Box<dyn Send>);

impl Turn {
    pub fn new(held: impl Send + 'static) -> Turn {
        Turn(Box::new(held))
    }
}

/// The first key after every key that starts with `prefix` (`None`: there is none), the end of
/// a prefix's [`Store::range`].
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Hands `f` every entry of `tree` from `start` on, `page` entries at a time (memory stays flat
/// however big the tree), in key order.
pub fn for_each_page<E: From<StoreError>>(
    store: &dyn Store,
    tree: Tree,
    start: &[u8],
    page: usize,
    mut f: impl FnMut(&[Entry]) -> Result<(), E>,
) -> Result<(), E> {
    let mut start = start.to_vec();
    loop {
        let rows = store.range(tree, &start, None, page.max(1))?;
        let Some((last, _)) = rows.last() else {
            return Ok(());
        };
        start = last.clone();
        start.push(0); // strictly after the last key read
        f(&rows)?;
    }
}

/// Most keys [`get_within`] reads at once: at most this many values past its budget are ever
/// held (about 45 MB at the largest records of the default 1 MiB `gate.max_body_bytes`), and a
/// chunk of 2,048 small records is 64 reads (one read transaction each on redb, one query on
/// PostgreSQL). Larger slices sized from the values seen so far would overshoot by far more
/// when small records are followed by large ones.
const SLICE: usize = 32;

/// The values of the first keys of `keys` in `tree`, in order, up to the one whose bytes bring
/// the total to `budget` (so at least one, whatever its size): what a chunk or a page may hold
/// when a count says little of the bytes (a review record carries its request body). Read
/// [`SLICE`] keys at a time ([`Store::get_many`]; fewer once the largest value seen says fewer
/// fit); values read past the budget are dropped at once (the next chunk reads them again).
pub fn get_within(
    store: &dyn Store,
    tree: Tree,
    keys: &[&[u8]],
    budget: usize,
) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
    let mut out: Vec<Option<Vec<u8>>> = Vec::new();
    let (mut bytes, mut largest) = (0usize, 0usize);
    while out.len() < keys.len() && bytes < budget {
        let slice = match largest {
            0 => SLICE,
            l => ((budget - bytes) / l).clamp(1, SLICE),
        };
        let end = keys.len().min(out.len() + slice);
        for value in store.get_many(tree, &keys[out.len()..end])? {
            if bytes >= budget {
                break;
            }
            let n = value.as_ref().map_or(0, Vec::len);
            bytes = bytes.saturating_add(n);
            largest = largest.max(n);
            out.push(value);
        }
    }
    Ok(out)
}

/// Opens (creating if needed) the store of `backend` under directory `path`, with group commit.
pub fn open(backend: Backend, path: &Path) -> Result<Arc<dyn Store>, StoreError> {
    let inner: Box<dyn Store> = match backend {
        Backend::Redb => Box::new(redb_store::RedbStore::open(path)?),
        Backend::Sled => Box::new(sled_store::SledStore::open(path)?),
        Backend::Postgres => {
            return Err(StoreError::Io(
                "the postgres backend is opened from store.url, not a directory".into(),
            ))
        }
    };
    let store: Arc<dyn Store> = Arc::new(group::Grouped::new(inner));
    format::check_and_stamp(store.as_ref(), &path.display().to_string())?;
    Ok(store)
}

/// Opens the PostgreSQL store at `url` (migrating its schema), with group commit.
pub fn open_postgres(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let inner = postgres::PostgresStore::open(url)?;
    let shown = inner.shown().to_string();
    let store: Arc<dyn Store> = Arc::new(group::Grouped::new(Box::new(inner)));
    format::check_and_stamp(store.as_ref(), &shown)?;
    Ok(store)
}

/// [`open_postgres`], waiting at most `commit_limit` (rather than 30 s) for a `COMMIT`'s answer
/// before settling its outcome from another connection: for tests of that path.
#[doc(hidden)]
pub fn open_postgres_with_commit_limit(
    url: &str,
    commit_limit: std::time::Duration,
) -> Result<Arc<dyn Store>, StoreError> {
    let inner = postgres::PostgresStore::open_with_commit_limit(url, commit_limit)?;
    let shown = inner.shown().to_string();
    let store: Arc<dyn Store> = Arc::new(group::Grouped::new(Box::new(inner)));
    format::check_and_stamp(store.as_ref(), &shown)?;
    Ok(store)
}

/// The files another embedded backend keeps in the directory `dir` (`airlock.redb` for redb,
/// `sled/` for sled) that exist there, for a store of `backend`: a directory holds one
/// backend's store, and a second instance of the other backend on it would run beside the first
/// unseen (each takes only its own backend's lock).
pub fn other_backend_files(backend: Backend, dir: &Path) -> Vec<std::path::PathBuf> {
    let theirs: &[&str] = match backend {
        Backend::Redb => &["sled"],
        Backend::Sled => &["airlock.redb"],
        Backend::Postgres => &[],
    };
    theirs
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
}

/// Whether the directory `dir` holds a store of the embedded `backend` (its `airlock.redb`, or
/// `sled/`); never for PostgreSQL. Opens nothing.
pub fn holds_store(backend: Backend, dir: &Path) -> bool {
    let name = match backend {
        Backend::Redb => "airlock.redb",
        Backend::Sled => "sled",
        Backend::Postgres => return false,
    };
    dir.join(name).symlink_metadata().is_ok()
}

/// The configured store: PostgreSQL at `url` for [`Backend::Postgres`], else the directory
/// `path`, waiting up to `patience` for a lock another process still holds.
pub fn open_configured(
    backend: Backend,
    path: &Path,
    url: Option<&str>,
    patience: std::time::Duration,
) -> Result<Arc<dyn Store>, StoreError> {
    match (backend, url) {
        (Backend::Postgres, Some(url)) => open_postgres(url),
        (Backend::Postgres, None) => Err(StoreError::Io(
            "the postgres backend needs store.url (or AIRLOCK_DATABASE_URL)".into(),
        )),
        (b, _) => open_patiently(b, path, patience),
    }
}

/// [`open`], retrying for up to `patience` while another process (typically one just killed,
/// whose lock the kernel has not released yet) still holds the store.
pub fn open_patiently(
    backend: Backend,
    path: &Path,
    patience: std::time::Duration,
) -> Result<Arc<dyn Store>, StoreError> {
    let deadline = std::time::Instant::now() + patience;
    let mut warned = false;
    loop {
        match open(backend, path) {
            Err(StoreError::Locked(p)) if std::time::Instant::now() < deadline => {
                if !warned {
                    tracing::warn!(store = %p, wait_s = patience.as_secs(), "store is locked by another process; waiting for it to exit");
                    warned = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review of session 22: chunks and pages read their records by count only (2,048 review
    /// records of 1 MiB bodies at once). [`get_within`] stops at a byte budget, after at least
    /// one value.
    #[test]
    fn get_within_stops_at_the_byte_budget() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = open(Backend::Redb, dir.path()).expect("open");
        let mb = vec![7u8; 1024 * 1024];
        let keys: Vec<Vec<u8>> = (0..40u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let mut b = Batch::default();
        for k in &keys {
            b.put(Tree::Reviews, k, &mb);
        }
        assert!(store.apply(b).expect("apply"));
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let read = get_within(store.as_ref(), Tree::Reviews, &refs, 16 * mb.len()).expect("read");
        assert_eq!(read.len(), 16, "up to the value that reaches the budget");
        assert!(read.iter().all(|v| v.as_deref() == Some(&mb[..])));
        let one = get_within(store.as_ref(), Tree::Reviews, &refs, 10).expect("read");
        assert_eq!(one.len(), 1, "at least one value, whatever its size");
        // Small values: every key, absent ones as `None`.
        let mut more = refs.clone();
        more.push(b"absent");
        let all = get_within(store.as_ref(), Tree::Reviews, &more, usize::MAX).expect("read");
        assert_eq!(all.len(), 41);
        assert_eq!(all[40], None);
    }
}
