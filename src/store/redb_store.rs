//! redb backend: one file `airlock.redb`, one table per tree; every commit is one write
//! transaction committed with immediate durability (fsync) before it returns.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::batch::{Coalescing, Txn};
use super::{io_error, Batch, Store, StoreError, Tree};

/// redb's page cache (its default is 1 GiB, which a long-running proxy would grow into as the
/// audit log grows). 64 MiB: at a million reviews, 32 MiB cost a fifth of the hold rate and the
/// sweep time (scripts/scale.sh); RSS stays under 150 MB.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

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
        for tree in Tree::ALL {
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

/// A write transaction's four tables, as a [`Batch`] sees them.
struct Tables<'t> {
    tables: Vec<redb::Table<'t, &'static [u8], &'static [u8]>>,
    store: &'t RedbStore,
}

impl Txn for Tables<'_> {
    fn get(&mut self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let v = self.tables[tree.slot()]
            .get(key)
            .map_err(|e| self.store.err(e))?;
        Ok(v.map(|g| g.value().to_vec()))
    }

    fn put(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tables[tree.slot()]
            .insert(key, value)
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }

    fn delete(&mut self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        self.tables[tree.slot()]
            .remove(key)
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }
}

impl Store for RedbStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(table(tree)).map_err(|e| self.err(e))?;
        let v = t.get(key).map_err(|e| self.err(e))?;
        Ok(v.map(|g| g.value().to_vec()))
    }

    fn get_many(&self, tree: Tree, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(table(tree)).map_err(|e| self.err(e))?;
        keys.iter()
            .map(|k| {
                let v = t.get(*k).map_err(|e| self.err(e))?;
                Ok(v.map(|g| g.value().to_vec()))
            })
            .collect()
    }

    fn commit(&self, batches: Vec<Batch>) -> Result<Vec<bool>, StoreError> {
        let mut txn = self.db.begin_write().map_err(|e| self.err(e))?;
        // Each commit saves the allocator state, so opening after a crash does not walk the
        // whole file (restart-to-ready stays flat as history grows).
        txn.set_quick_repair(true);
        let mut applied = Vec::with_capacity(batches.len());
        {
            let mut tables = Tables {
                tables: Vec::with_capacity(Tree::ALL.len()),
                store: self,
            };
            for tree in Tree::ALL {
                tables
                    .tables
                    .push(txn.open_table(table(tree)).map_err(|e| self.err(e))?);
            }
            let mut txn = Coalescing::new(&mut tables);
            for b in &batches {
                applied.push(b.apply_in(&mut txn)?);
            }
            txn.finish()?;
        }
        if applied.contains(&true) {
            txn.commit().map_err(|e| self.err(e))?;
        } // else dropping the transaction aborts it
        Ok(applied)
    }

    fn range(
        &self,
        tree: Tree,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<super::Entry>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(table(tree)).map_err(|e| self.err(e))?;
        let iter = match end {
            Some(end) => t.range(start..end),
            None => t.range(start..),
        }
        .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}
