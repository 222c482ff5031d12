//! sled backend: one tree per [`Tree`]; sled's compare-and-swap is atomic but not durable on
//! its own, so every successful swap is followed by a flush (fsync) before it returns.

use std::path::Path;

use super::{io_error, Store, StoreError, Tree};

pub struct SledStore {
    db: sled::Db,
    trees: [sled::Tree; 3],
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
        let trees = [open(Tree::Reviews)?, open(Tree::Audit)?, open(Tree::Meta)?];
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
        match t {
            Tree::Reviews => &self.trees[0],
            Tree::Audit => &self.trees[1],
            Tree::Meta => &self.trees[2],
        }
    }

    fn err(&self, e: sled::Error) -> StoreError {
        match e {
            sled::Error::Io(io) => io_error(Path::new(&self.path), io),
            sled::Error::Corruption { .. } => StoreError::Corrupt(format!("{}: {e}", self.path)),
            other => StoreError::Io(format!("{}: {other}", self.path)),
        }
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

    fn compare_and_swap(
        &self,
        tree: Tree,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let swapped = self
            .tree(tree)
            .compare_and_swap(key, expected, Some(new))
            .map_err(|e| self.err(e))?
            .is_ok();
        if swapped {
            self.db.flush().map_err(|e| self.err(e))?;
        }
        Ok(swapped)
    }

    fn insert_new(&self, tree: Tree, entries: &[(&[u8], &[u8])]) -> Result<bool, StoreError> {
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        let res = self.tree(tree).transaction(|t| {
            for (k, v) in entries {
                if t.get(*k)?.is_some() {
                    return Err(ConflictableTransactionError::Abort(()));
                }
                t.insert(*k, *v)?;
            }
            Ok(())
        });
        match res {
            Ok(()) => {
                self.db.flush().map_err(|e| self.err(e))?;
                Ok(true)
            }
            Err(TransactionError::Abort(())) => Ok(false),
            Err(TransactionError::Storage(e)) => Err(self.err(e)),
        }
    }

    fn scan_from(&self, tree: Tree, start: &[u8]) -> Result<Vec<super::Entry>, StoreError> {
        self.tree(tree)
            .range(start..)
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|e| self.err(e))
            })
            .collect()
    }
}
