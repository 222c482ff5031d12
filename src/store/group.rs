//! Group commit: batches that arrive while a commit is in flight wait, then go together in the
//! next one. Whoever finds no commit running leads it (no extra thread); everyone returns only
//! once their batch is durable. Many concurrent holds thus share one fsync.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::{Batch, Entry, Store, StoreError, Tree};

/// At most this many batches share one commit (bounds one transaction's size): room for a
/// sweep's chunk of 2,048 expiries and what joins it, so that the chunk is one fsync, not four.
/// Callers are never split: one caller's batches are all in one commit (a caller with more
/// than this many goes alone), so no caller is told its commit failed while part of it landed.
const MAX_GROUP: usize = 4096;

/// At most this many bytes (keys and values, expected and written: [`Batch::bytes`]) share one
/// commit, whole callers again: 4,096 holds of 1 MiB bodies made one commit of 4 GiB (every
/// value held at once, and PostgreSQL refuses an array parameter over 1 GiB). 64 MiB keeps the
/// usual group (thousands of holds of a few KB, a sweep chunk, capped at 16 MiB of records:
/// `gate/recover.rs`) in one commit, and a PostgreSQL statement far below that limit.
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;

#[derive(Default)]
struct Queue {
    next_ticket: u64,
    /// Batches waiting, each with its ticket and whether it is its caller's last.
    waiting: Vec<(u64, Batch, bool)>,
    done: HashMap<u64, Result<bool, StoreError>>,
    committing: bool,
}

/// A store whose commits are grouped.
pub struct Grouped {
    inner: Box<dyn Store>,
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Grouped {
    pub fn new(inner: Box<dyn Store>) -> Grouped {
        Grouped {
            inner,
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Only pushes and removals happen under the lock: a poisoned queue is still whole.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Clears the `committing` flag and wakes everyone, also if the commit panicked (its batches
/// then get an error rather than a wait forever).
struct Leading<'a> {
    group: &'a Grouped,
    tickets: Vec<u64>,
    results: Option<Result<Vec<bool>, StoreError>>,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let mut q = self.group.lock();
        let results = self
            .results
            .take()
            .unwrap_or_else(|| Err(StoreError::Io("store commit panicked".into())));
        for (i, t) in self.tickets.iter().enumerate() {
            let r = match &results {
                Ok(flags) => Ok(flags.get(i).copied().unwrap_or(false)),
                Err(e) => Err(e.clone()),
            };
            q.done.insert(*t, r);
        }
        q.committing = false;
        drop(q);
        self.group.changed.notify_all();
    }
}

impl Store for Grouped {
    fn watch(&self, tree: Tree) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.watch(tree)
    }

    fn watch_keys(&self, tree: Tree) -> Option<tokio::sync::broadcast::Receiver<super::Changed>> {
        self.inner.watch_keys(tree)
    }

    fn clock_ms(&self) -> Option<Result<u64, StoreError>> {
        self.inner
            .clock_ms()
            .map(|r| r.inspect_err(|e| counted("clock", e)))
    }

    fn other_instances(&self) -> Option<Result<u64, StoreError>> {
        self.inner.other_instances()
    }

    fn exclusive_turn(&self) -> Result<Option<super::Turn>, StoreError> {
        self.inner
            .exclusive_turn()
            .inspect_err(|e| counted("turn", e))
    }

    fn hold_serving(&self) -> Result<Option<super::ServingHold>, StoreError> {
        self.inner.hold_serving()
    }

    fn try_exclusive_instances(&self) -> Result<Option<super::Turn>, StoreError> {
        self.inner.try_exclusive_instances()
    }

    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(tree, key).inspect_err(|e| counted("get", e))
    }

    fn get_many(&self, tree: Tree, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.inner
            .get_many(tree, keys)
            .inspect_err(|e| counted("get", e))
    }

    fn range(
        &self,
        tree: Tree,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.inner
            .range(tree, start, end, limit)
            .inspect_err(|e| counted("range", e))
    }

    fn commit(&self, batches: Vec<Batch>) -> Result<Vec<bool>, StoreError> {
        self.commit_grouped(batches)
            .inspect_err(|e| counted("commit", e))
    }
}

/// A failed store operation, in the metrics.
fn counted(op: &'static str, e: &StoreError) {
    let kind = match e {
        StoreError::Io(_) => "io",
        StoreError::Corrupt(_) => "corrupt",
        StoreError::Locked(_) => "locked",
        StoreError::Full(_) => "full",
        StoreError::TooNew(_) => "too_new",
        StoreError::InDoubt(_) => "in_doubt",
    };
    crate::metrics::store_error(op, kind);
}

impl Grouped {
    fn commit_grouped(&self, batches: Vec<Batch>) -> Result<Vec<bool>, StoreError> {
        let mut q = self.lock();
        let mut mine = Vec::with_capacity(batches.len());
        let count = batches.len();
        for (i, b) in batches.into_iter().enumerate() {
            let t = q.next_ticket;
            q.next_ticket += 1;
            mine.push(t);
            q.waiting.push((t, b, i + 1 == count));
        }
        loop {
            if mine.iter().all(|t| q.done.contains_key(t)) {
                let mut out = Vec::with_capacity(mine.len());
                for t in &mine {
                    match q.done.remove(t) {
                        Some(Ok(applied)) => out.push(applied),
                        Some(Err(e)) => {
                            for t in &mine {
                                q.done.remove(t);
                            }
                            return Err(e);
                        }
                        None => out.push(false),
                    }
                }
                return Ok(out);
            }
            if !q.committing {
                q.committing = true;
                let n = whole_callers(&q.waiting);
                let (tickets, group): (Vec<u64>, Vec<Batch>) =
                    q.waiting.drain(..n).map(|(t, b, _)| (t, b)).unzip();
                drop(q);
                let mut leading = Leading {
                    group: self,
                    tickets,
                    results: None,
                };
                leading.results = Some(self.inner.commit(group));
                drop(leading);
                q = self.lock();
                continue;
            }
            q = self.changed.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// How many of `waiting`'s batches the next commit takes: whole callers, as many as fit in
/// [`MAX_GROUP`] batches and [`MAX_GROUP_BYTES`] bytes, and at least the first caller whatever
/// its size.
fn whole_callers(waiting: &[(u64, Batch, bool)]) -> usize {
    let mut n = 0;
    let mut bytes = 0usize;
    for (i, (_, b, last)) in waiting.iter().enumerate() {
        bytes = bytes.saturating_add(b.bytes());
        if *last {
            if (i + 1 > MAX_GROUP || bytes > MAX_GROUP_BYTES) && n > 0 {
                break;
            }
            n = i + 1;
            if n >= MAX_GROUP || bytes >= MAX_GROUP_BYTES {
                break;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::testing::Counting;

    /// A sweep's chunk (2,048 transitions) is one commit, one fsync (it was four).
    #[test]
    fn a_sweep_chunk_is_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let inner = super::super::redb_store::RedbStore::open(dir.path()).unwrap();
        let (counting, commits) = Counting::new(Arc::new(inner));
        let store = Grouped::new(Box::new(counting));
        let batches: Vec<Batch> = (0..2048u32)
            .map(|i| {
                let mut b = Batch::default();
                b.expect(Tree::Reviews, &i.to_be_bytes(), None).put(
                    Tree::Reviews,
                    &i.to_be_bytes(),
                    b"x",
                );
                b
            })
            .collect();
        let applied = store.commit(batches).unwrap();
        assert_eq!(applied, vec![true; 2048]);
        assert_eq!(commits.get(), 1);
    }

    /// A commit takes whole callers: a caller of 2,049 batches queued behind one of 2,048 is not
    /// cut at 4,096 (its last batch in the next commit, which could fail after the first
    /// landed); one larger than a group goes alone.
    #[test]
    fn callers_are_never_split_across_commits() {
        let queue = |sizes: &[usize]| -> Vec<(u64, Batch, bool)> {
            sizes
                .iter()
                .flat_map(|&n| (0..n).map(move |i| (0, Batch::default(), i + 1 == n)))
                .collect()
        };
        assert_eq!(whole_callers(&queue(&[2048, 2049])), 2048);
        assert_eq!(whole_callers(&queue(&[2048, 2048, 1])), 4096);
        assert_eq!(whole_callers(&queue(&[1, 5000, 1])), 1);
        assert_eq!(whole_callers(&queue(&[5000, 1])), 5000);
        assert_eq!(whole_callers(&queue(&[3])), 3);
        assert_eq!(whole_callers(&[]), 0);
    }

    /// Review of session 22: a group took up to 4,096 batches whatever their size (4,096 holds
    /// of 1 MiB bodies were one 4 GiB commit, past PostgreSQL's 1 GiB array limit). It now
    /// stops at [`MAX_GROUP_BYTES`], still by whole callers, and a caller larger than that
    /// goes alone.
    #[test]
    fn a_group_is_capped_by_bytes_too() {
        let mb = vec![0u8; 1024 * 1024];
        let big = |n: usize| -> Vec<(u64, Batch, bool)> {
            (0..n)
                .map(|i| {
                    let mut b = Batch::default();
                    b.put(Tree::Reviews, &i.to_be_bytes(), &mb);
                    (0, b, true)
                })
                .collect()
        };
        let per_group = MAX_GROUP_BYTES / (1024 * 1024);
        // One caller per 1 MiB batch: a group ends just past the cap.
        assert_eq!(whole_callers(&big(200)), per_group - 1);
        assert!(
            big(200)[..per_group - 1]
                .iter()
                .map(|(_, b, _)| b.bytes())
                .sum::<usize>()
                <= MAX_GROUP_BYTES
        );
        // One caller of 200 MiB goes alone, whole.
        let mut alone = big(200);
        for item in alone.iter_mut().take(199) {
            item.2 = false;
        }
        alone.extend(big(1));
        assert_eq!(whole_callers(&alone), 200);
        // Small batches still fill a group by count.
        let small: Vec<(u64, Batch, bool)> =
            (0..5000).map(|_| (0, Batch::default(), true)).collect();
        assert_eq!(whole_callers(&small), MAX_GROUP);
    }
}
