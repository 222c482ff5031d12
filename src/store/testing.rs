//! A store wrapper for tests: counts the commits that reach the store it wraps.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{Batch, Entry, Store, StoreError, Tree};

pub struct Counting {
    inner: Arc<dyn Store>,
    commits: Arc<AtomicUsize>,
}

impl Counting {
    /// The wrapper, and a handle that reads its count.
    pub fn new(inner: Arc<dyn Store>) -> (Counting, Commits) {
        let commits = Arc::new(AtomicUsize::new(0));
        let handle = Commits(commits.clone());
        (Counting { inner, commits }, handle)
    }
}

/// How many commits reached the wrapped store so far.
pub struct Commits(Arc<AtomicUsize>);

impl Commits {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Store for Counting {
    fn clock_ms(&self) -> Option<Result<u64, StoreError>> {
        self.inner.clock_ms()
    }
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(tree, key)
    }
    fn commit(&self, batches: Vec<Batch>) -> Result<Vec<bool>, StoreError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.inner.commit(batches)
    }
    fn range(
        &self,
        tree: Tree,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.inner.range(tree, start, end, limit)
    }
}
