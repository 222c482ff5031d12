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
                Write::Add(t, k, delta) => {
                    let now = txn.get(*t, k)?.map(|v| counter_value(&v)).unwrap_or(0);
                    txn.put(*t, k, &counter_plus(now, *delta).to_be_bytes())?;
                }
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
}
