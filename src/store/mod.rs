//! Durable key-value storage behind one small trait, with redb (default) and sled backends.
//! See `docs/store.md` for the crash evidence behind the default.

mod redb_store;
mod sled_store;

use std::path::Path;
use std::sync::Arc;

/// The named keyspaces Airlock keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tree {
    Reviews,
    Audit,
    Meta,
}

impl Tree {
    pub fn name(self) -> &'static str {
        match self {
            Tree::Reviews => "reviews",
            Tree::Audit => "audit",
            Tree::Meta => "meta",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O error: {0}")]
    Io(String),
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("store at {0} is in use by another process (is another `airlock serve` running?)")]
    Locked(String),
    #[error("disk full writing {0}; held requests cannot be stored, gated calls are refused")]
    Full(String),
}

pub(crate) fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    if e.raw_os_error() == Some(28) {
        StoreError::Full(path.display().to_string())
    } else {
        StoreError::Io(format!("{}: {e}", path.display()))
    }
}

/// Which embedded database backs the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sled,
    Redb,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sled" => Ok(Backend::Sled),
            "redb" => Ok(Backend::Redb),
            other => Err(format!(
                "unknown store backend {other:?}: expected \"redb\" or \"sled\""
            )),
        }
    }
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The whole storage contract. Every successful write is durable (on disk) before it returns.
pub trait Store: Send + Sync + 'static {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Atomically sets `key` to `new` if its current value equals `expected` (`None`: absent).
    /// Returns `Ok(false)` without writing when the current value differs.
    fn compare_and_swap(
        &self,
        tree: Tree,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError>;
    /// Inserts every `(key, value)` of `entries` into `tree`, where none of the keys may exist
    /// yet. `Ok(false)`: a key existed and nothing was written. The backends do it in one
    /// transaction (all or nothing, one fsync); this default, for wrappers, goes key by key.
    fn insert_new(&self, tree: Tree, entries: &[(&[u8], &[u8])]) -> Result<bool, StoreError> {
        for (k, v) in entries {
            if !self.compare_and_swap(tree, k, None, v)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
    /// Every entry of `tree` whose key is >= `start`, in ascending key order (a range read:
    /// earlier keys are not visited).
    fn scan_from(&self, tree: Tree, start: &[u8]) -> Result<Vec<Entry>, StoreError>;
    /// Every entry of `tree` in ascending key order.
    fn scan(&self, tree: Tree) -> Result<Vec<Entry>, StoreError> {
        self.scan_from(tree, &[])
    }
}

/// Opens (creating if needed) the store of `backend` under directory `path`.
pub fn open(backend: Backend, path: &Path) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match backend {
        Backend::Redb => Arc::new(redb_store::RedbStore::open(path)?),
        Backend::Sled => Arc::new(sled_store::SledStore::open(path)?),
    })
}
