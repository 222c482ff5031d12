//! A [`Batch`]: expectations on current values, then writes; applied all or nothing. The
//! check-then-write logic lives here once, over each backend's transaction ([`Txn`]).

use super::{StoreError, Tree};

/// One write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put(Tree, Vec<u8>, Vec<u8>),
    Delete(Tree, Vec<u8>),
    /// Adds to an 8-byte big-endian counter (absent: 0), clamped at 0 and `u64::MAX`.
    Add(Tree, Vec<u8>, i64),
}

/// Expectations (`None`: the key is absent) and the writes made only if all of them hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub expect: Vec<(Tree, Vec<u8>, Option<Vec<u8>>)>,
    pub writes: Vec<Write>,
}

impl Batch {
    pub fn expect(&mut self, tree: Tree, key: &[u8], value: Option<&[u8]>) -> &mut Batch {
        self.expect
            .push((tree, key.to_vec(), value.map(<[u8]>::to_vec)));
        self
    }

    pub fn put(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> &mut Batch {
        self.writes
            .push(Write::Put(tree, key.to_vec(), value.to_vec()));
        self
    }

    pub fn delete(&mut self, tree: Tree, key: &[u8]) -> &mut Batch {
        self.writes.push(Write::Delete(tree, key.to_vec()));
        self
    }

    pub fn add(&mut self, tree: Tree, key: &[u8], delta: i64) -> &mut Batch {
        if delta != 0 {
            self.writes.push(Write::Add(tree, key.to_vec(), delta));
        }
        self
    }

    /// The bytes of every key and value the batch names (expected and written): what a commit
    /// of it carries, and what a group commit's byte cap (`group.rs`) counts.
    pub fn bytes(&self) -> usize {
        let expected = self
            .expect
            .iter()
            .map(|(_, k, v)| k.len() + v.as_ref().map_or(0, Vec::len));
        let written = self.writes.iter().map(|w| match w {
            Write::Put(_, k, v) => k.len() + v.len(),
            Write::Delete(_, k) | Write::Add(_, k, _) => k.len() + 8,
        });
        expected.chain(written).sum()
    }

    /// Checks the expectations against `txn` and, if all hold, makes the writes. `Ok(false)`:
    /// an expectation failed and nothing was written.
    pub(crate) fn apply_in(&self, txn: &mut dyn Txn) -> Result<bool, StoreError> {
        for (tree, key, want) in &self.expect {
            if txn.get(*tree, key)?.as_deref() != want.as_deref() {
                return Ok(false);
            }
        }
        for w in &self.writes {
            match w {
                Write::Put(t, k, v) => txn.put(*t, k, v)?,
                Write::Delete(t, k) => txn.delete(*t, k)?,
                Write::Add(t, k, delta) => txn.add(*t, k, *delta)?,
            }
        }
        Ok(true)
    }
}

/// A counter after [`Write::Add`] of `delta`: clamped at 0 and `u64::MAX`.
pub(crate) fn counter_plus(now: u64, delta: i64) -> u64 {
    if delta < 0 {
        now.saturating_sub(delta.unsigned_abs())
    } else {
        now.saturating_add(delta.unsigned_abs())
    }
}

/// Reads a counter written by [`Write::Add`] (a malformed one reads as 0).
pub fn counter_value(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes).map_or(0, u64::from_be_bytes)
}

/// A backend's open write transaction, as a batch sees it.
pub(crate) trait Txn {
    fn get(&mut self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn put(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    fn delete(&mut self, tree: Tree, key: &[u8]) -> Result<(), StoreError>;

    /// [`Write::Add`]: reads the counter, writes it back changed.
    fn add(&mut self, tree: Tree, key: &[u8], delta: i64) -> Result<(), StoreError> {
        let now = self.get(tree, key)?.map_or(0, |v| counter_value(&v));
        self.put(tree, key, &counter_plus(now, delta).to_be_bytes())
    }
}

/// A transaction that keeps counters in memory while many batches add to them, and writes
/// each once at [`Coalescing::finish`] (a sweep chunk moves thousands of reviews between the
/// same few state counters: two writes, not thousands). Reads see the running value; a put or
/// delete of a counter's key replaces it.
pub(crate) struct Coalescing<'t> {
    inner: &'t mut dyn Txn,
    /// A handful (one per state), so a list: looking one up allocates nothing.
    counters: Vec<(Tree, Vec<u8>, u64)>,
}

impl<'t> Coalescing<'t> {
    pub(crate) fn new(inner: &'t mut dyn Txn) -> Coalescing<'t> {
        Coalescing {
            inner,
            counters: Vec::new(),
        }
    }

    fn slot(&self, tree: Tree, key: &[u8]) -> Option<usize> {
        self.counters
            .iter()
            .position(|(t, k, _)| *t == tree && k.as_slice() == key)
    }

    fn forget(&mut self, tree: Tree, key: &[u8]) {
        if let Some(i) = self.slot(tree, key) {
            self.counters.swap_remove(i);
        }
    }

    /// Writes the counters; call before committing.
    pub(crate) fn finish(self) -> Result<(), StoreError> {
        for (tree, key, value) in self.counters {
            self.inner.put(tree, &key, &value.to_be_bytes())?;
        }
        Ok(())
    }
}

impl Txn for Coalescing<'_> {
    fn get(&mut self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.slot(tree, key) {
            Some(i) => Ok(Some(self.counters[i].2.to_be_bytes().to_vec())),
            None => self.inner.get(tree, key),
        }
    }

    fn put(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.forget(tree, key);
        self.inner.put(tree, key, value)
    }

    fn delete(&mut self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        self.forget(tree, key);
        self.inner.delete(tree, key)
    }

    fn add(&mut self, tree: Tree, key: &[u8], delta: i64) -> Result<(), StoreError> {
        match self.slot(tree, key) {
            Some(i) => self.counters[i].2 = counter_plus(self.counters[i].2, delta),
            None => {
                let now = self.inner.get(tree, key)?.map_or(0, |v| counter_value(&v));
                self.counters
                    .push((tree, key.to_vec(), counter_plus(now, delta)));
            }
        }
        Ok(())
    }
}
