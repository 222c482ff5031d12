//! redb backend: one file `airlock.redb`, one table per tree; every CAS is a write
//! transaction committed with immediate durability (fsync) before it returns.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{io_error, Store, StoreError, Tree};

/// redb's page cache (its default is 1 GiB, which a long-running proxy would grow into as the
/// audit log grows; reviews and recent audit pages fit comfortably in this).
const CACHE_BYTES: usize = 32 * 1024 * 1024;

pub struct RedbStore {
    db: Database,
    path: String,
}

fn table(tree: Tree) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(tree.name())
}

impl RedbStore {
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        super::create_private_dir(dir)?;
        let file = dir.join("airlock.redb");
        let path = file.display().to_string();
        // Created 0600 before redb opens it (redb initialises an empty file).
        if let Err(e) = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
        {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(io_error(&file, e));
            }
        }
        super::make_private(&file)?;
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&file)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.clone()),
                redb::DatabaseError::Storage(redb::StorageError::Io(io)) => io_error(&file, io),
                other => StoreError::Corrupt(format!("{path}: {other}")),
            })?;
        let store = RedbStore { db, path };
        // Create every table up front so reads never meet a missing one.
        let txn = store.db.begin_write().map_err(|e| store.err(e))?;
        for tree in [Tree::Reviews, Tree::Audit, Tree::Meta] {
            txn.open_table(table(tree)).map_err(|e| store.err(e))?;
        }
        txn.commit().map_err(|e| store.err(e))?;
        Ok(store)
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        let e: redb::Error = e.into();
        match e {
            redb::Error::Io(io) => io_error(Path::new(&self.path), io),
            redb::Error::Corrupted(m) => StoreError::Corrupt(format!("{}: {m}", self.path)),
            other => StoreError::Io(format!("{}: {other}", self.path)),
        }
    }
}

impl Store for RedbStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(table(tree)).map_err(|e| self.err(e))?;
        let v = t.get(key).map_err(|e| self.err(e))?;
        Ok(v.map(|g| g.value().to_vec()))
    }

    fn compare_and_swap(
        &self,
        tree: Tree,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = txn.open_table(table(tree)).map_err(|e| self.err(e))?;
            let current = t
                .get(key)
                .map_err(|e| self.err(e))?
                .map(|g| g.value().to_vec());
            if current.as_deref() != expected {
                return Ok(false); // dropping the transaction aborts it
            }
            t.insert(key, new).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(true)
    }

    fn insert_new(&self, tree: Tree, entries: &[(&[u8], &[u8])]) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = txn.open_table(table(tree)).map_err(|e| self.err(e))?;
            for (k, v) in entries {
                if t.get(*k).map_err(|e| self.err(e))?.is_some() {
                    return Ok(false); // dropping the transaction aborts it
                }
                t.insert(*k, *v).map_err(|e| self.err(e))?;
            }
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(true)
    }

    fn scan_from(&self, tree: Tree, start: &[u8]) -> Result<Vec<super::Entry>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(table(tree)).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in t.range(start..).map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}
