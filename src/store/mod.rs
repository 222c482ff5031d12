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
        _ => {
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
