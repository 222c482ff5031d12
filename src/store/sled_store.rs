//! sled backend: one tree per [`Tree`]; sled's transactions are atomic but not durable on
//! their own, so every commit that wrote anything ends with a flush (fsync) before it returns.

use std::path::Path;

use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::Transactional;

use super::batch::Txn;
use super::{io_error, Batch, Store, StoreError, Tree};

pub struct SledStore {
    db: sled::Db,
    trees: [sled::Tree; 4],
    path: String,
}

impl SledStore {
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let path = dir.join("sled");
        let shown = path.display().to_string();
        super::create_private_dir(dir)?;
        super::create_private_dir(&path)?;
        let db = sled::open(&path).map_err(|e| match e {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                StoreError::Locked(shown.clone())
            }
            sled::Error::Io(io) if io.to_string().contains("lock") => {
                StoreError::Locked(shown.clone())
            }
            sled::Error::Io(io) => io_error(&path, io),
            sled::Error::Corruption { .. } => StoreError::Corrupt(format!("{shown}: {e}")),
            other => StoreError::Io(format!("{shown}: {other}")),
        })?;
        let open = |t: Tree| {
            db.open_tree(t.name())
                .map_err(|e| StoreError::Io(format!("{shown}: {e}")))
        };
        let trees = [
            open(Tree::Reviews)?,
            open(Tree::Audit)?,
            open(Tree::Meta)?,
            open(Tree::Index)?,
        ];
        // sled creates its files with the umask's modes: 0600 (0700 for directories).
        let mut pending = vec![path.clone()];
        while let Some(d) = pending.pop() {
            let entries = std::fs::read_dir(&d).map_err(|e| io_error(&d, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| io_error(&d, e))?;
                let p = entry.path();
                super::make_private(&p)?;
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    pending.push(p);
                }
            }
        }
        Ok(SledStore {
            db,
            trees,
            path: shown,
        })
    }

    fn tree(&self, t: Tree) -> &sled::Tree {
        &self.trees[t.slot()]
    }

    fn err(&self, e: sled::Error) -> StoreError {
        match e {
            sled::Error::Io(io) => io_error(Path::new(&self.path), io),
            sled::Error::Corruption { .. } => StoreError::Corrupt(format!("{}: {e}", self.path)),
            other => StoreError::Io(format!("{}: {other}", self.path)),
        }
    }
}

/// A sled transaction over every tree, as a [`Batch`] sees it. A conflict (sled retries the
/// transaction) is remembered so the closure can hand it back to sled.
struct Trees<'t> {
    trees: &'t [TransactionalTree],
    conflict: bool,
}

impl Trees<'_> {
    fn fail(&mut self, e: UnabortableTransactionError) -> StoreError {
        if matches!(e, UnabortableTransactionError::Conflict) {
            self.conflict = true;
        }
        StoreError::Io(format!("sled transaction: {e}"))
    }
}

impl Txn for Trees<'_> {
    fn get(&mut self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let v = self.trees[tree.slot()].get(key);
        Ok(v.map_err(|e| self.fail(e))?.map(|v| v.to_vec()))
    }

    fn put(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let r = self.trees[tree.slot()].insert(key, value);
        r.map(drop).map_err(|e| self.fail(e))
    }

    fn delete(&mut self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        let r = self.trees[tree.slot()].remove(key);
        r.map(drop).map_err(|e| self.fail(e))
    }
}

impl Store for SledStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree(tree)
            .get(key)
            .map_err(|e| self.err(e))?
            .map(|v| v.to_vec()))
    }

    fn commit(&self, batches: Vec<Batch>) -> Result<Vec<bool>, StoreError> {
        let mut applied = Vec::with_capacity(batches.len());
        for b in &batches {
            // Each batch is its own sled transaction (all or nothing); one flush below makes
            // the whole group durable.
            let res = self.trees.as_slice().transaction(|ts| {
                let mut view = Trees {
                    trees: ts,
                    conflict: false,
                };
                match b.apply_in(&mut view) {
                    _ if view.conflict => Err(ConflictableTransactionError::Conflict),
                    Ok(true) => Ok(()),
                    Ok(false) => Err(ConflictableTransactionError::Abort(None)),
                    Err(e) => Err(ConflictableTransactionError::Abort(Some(e))),
                }
            });
            match res {
                Ok(_) => applied.push(true),
                Err(TransactionError::Abort(None)) => applied.push(false),
                Err(TransactionError::Abort(Some(e))) => return Err(e),
                Err(TransactionError::Storage(e)) => return Err(self.err(e)),
            }
        }
        if applied.contains(&true) {
            self.db.flush().map_err(|e| self.err(e))?;
        }
        Ok(applied)
    }

    fn range(
        &self,
        tree: Tree,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<super::Entry>, StoreError> {
        let t = self.tree(tree);
        let iter = match end {
            Some(end) => t.range(start..end),
            None => t.range(start..),
        };
        iter.take(limit)
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|e| self.err(e))
            })
            .collect()
    }
}
