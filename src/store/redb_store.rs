//! redb backend: one file `airlock.redb`, one table per tree; every commit is one write
//! transaction committed with immediate durability (fsync) before it returns.
//!
//! After an I/O error (a full disk, a file-size limit) redb refuses every later transaction
//! (`PreviousIo`) until the file is opened again; the next operation does that (at most once a
//! second), so the store heals once the disk has room, without a restart. A failed commit was
//! not applied, and reopening recovers to the last committed one.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::batch::{Coalescing, Txn};
use super::{io_error, Batch, Store, StoreError, Tree};

/// redb's page cache (its default is 1 GiB, which a long-running proxy would grow into as the
/// audit log grows). 64 MiB: at a million reviews, 32 MiB cost a fifth of the hold rate and the
/// sweep time (scripts/scale.sh); RSS stays under 150 MB.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

pub struct RedbStore {
    /// `None` while a reopen failed (every operation then fails until one succeeds).
    db: RwLock<Option<Database>>,
    file: PathBuf,
    path: String,
    /// Set by an I/O error: the next operation reopens the file first.
    broken: AtomicBool,
    last_reopen: Mutex<Option<Instant>>,
}

/// Least time between two reopens of a broken store (a disk still full fails each at once).
const REOPEN_EVERY: Duration = Duration::from_secs(1);

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
        let db = open_file(&file, &path)?;
        let store = RedbStore {
            db: RwLock::new(Some(db)),
            file,
            path,
            broken: AtomicBool::new(false),
            last_reopen: Mutex::new(None),
        };
        // Create every table up front so reads never meet a missing one.
        store.with_db(|db| {
            let txn = db.begin_write().map_err(|e| store.err(e))?;
            for tree in Tree::ALL {
                txn.open_table(table(tree)).map_err(|e| store.err(e))?;
            }
            txn.commit().map_err(|e| store.err(e))
        })?;
        Ok(store)
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        let e: redb::Error = e.into();
        match e {
            redb::Error::Io(io) => {
                self.broken.store(true, Ordering::SeqCst);
                io_error(Path::new(&self.path), io)
            }
            redb::Error::Corrupted(m) => StoreError::Corrupt(format!("{}: {m}", self.path)),
            redb::Error::PreviousIo => {
                self.broken.store(true, Ordering::SeqCst);
                StoreError::Io(format!("{}: {e}", self.path))
            }
            other => StoreError::Io(format!("{}: {other}", self.path)),
        }
    }

    /// Runs `f` on the open database, reopening it first if an I/O error broke it.
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            self.reopen();
        }
        let db = self.db.read().unwrap_or_else(|e| e.into_inner());
        match db.as_ref() {
            Some(db) => f(db),
            None => Err(StoreError::Io(format!(
                "{}: closed after an I/O error and not yet reopened",
                self.path
            ))),
        }
    }

    /// Closes and opens the file again (once per [`REOPEN_EVERY`]): redb's only way out of
    /// `PreviousIo`. Operations in flight finish first (they hold the read lock).
    fn reopen(&self) {
        {
            let mut last = self.last_reopen.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < REOPEN_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        if !self.broken.load(Ordering::SeqCst) {
            return; // another thread reopened it meanwhile
        }
        if let Some(old) = db.take() {
            if let Err(e) = old.close() {
                tracing::warn!(store = %self.path, error = %e, "closing the store after an I/O error");
            }
        }
        match open_file(&self.file, &self.path) {
            Ok(fresh) => {
                *db = Some(fresh);
                self.broken.store(false, Ordering::SeqCst);
                tracing::warn!(store = %self.path, "store reopened after an I/O error");
            }
            Err(e) => {
                tracing::error!(store = %self.path, error = %e, "store still unavailable after an I/O error; retrying")
            }
        }
    }
}

fn open_file(file: &Path, path: &str) -> Result<Database, StoreError> {
    // redb panics on some damaged files (an unreachable branch in its table tree) rather than
    // returning an error: a panic here is a corrupt store, named, never an exit 101.
    let opened = super::panic_guard::catch(|| {
        redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(file)
    })
    .map_err(|panic| {
        StoreError::Corrupt(format!(
            "{path}: redb cannot read it ({panic}); the file is damaged: restore the data \
             directory from a backup (README, Backups)"
        ))
    })?;
    opened.map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.to_string()),
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => io_error(file, io),
        other => StoreError::Corrupt(format!("{path}: {other}")),
    })
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
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| self.err(e))?;
            let t = txn.open_table(table(tree)).map_err(|e| self.err(e))?;
            let v = t.get(key).map_err(|e| self.err(e))?;
            Ok(v.map(|g| g.value().to_vec()))
        })
    }

    fn get_many(&self, tree: Tree, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| self.err(e))?;
            let t = txn.open_table(table(tree)).map_err(|e| self.err(e))?;
            keys.iter()
                .map(|k| {
                    let v = t.get(*k).map_err(|e| self.err(e))?;
                    Ok(v.map(|g| g.value().to_vec()))
                })
                .collect()
        })
    }

    fn commit(&self, batches: Vec<Batch>) -> Result<Vec<bool>, StoreError> {
        self.with_db(|db| self.commit_on(db, batches))
    }

    fn range(
        &self,
        tree: Tree,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<super::Entry>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| self.err(e))?;
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
        })
    }
}

impl RedbStore {
    fn commit_on(&self, db: &Database, batches: Vec<Batch>) -> Result<Vec<bool>, StoreError> {
        let mut txn = db.begin_write().map_err(|e| self.err(e))?;
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
}
