//! `append_if`: an entry and the caller's writes (a review's transition) land together or not
//! at all, in one group commit; an item whose record changed is left out of the chain without
//! breaking it, also when the change lands between the read and the commit.

use std::sync::Mutex;

use super::*;

fn gap() -> Event {
    Event::AuditGap(event::AuditGap {
        skipped_allow_records: 1,
        skipped_block_records: 0,
        reason: "test",
        agent: None,
    })
}

/// Puts `value` under `key` if it is still `was`.
fn swap(key: &[u8], was: Option<&[u8]>, value: &[u8]) -> Batch {
    let mut b = Batch::default();
    b.expect(Tree::Reviews, key, was)
        .put(Tree::Reviews, key, value);
    b
}

fn review(store: &Arc<dyn Store>, key: &[u8]) -> Option<Vec<u8>> {
    store.get(Tree::Reviews, key).unwrap()
}

#[test]
fn an_entry_and_its_writes_land_together_or_not_at_all() {
    let fx = Fixture::new();
    let store = fx.store();
    let log = fx.open_on(store.clone(), 3);
    assert_eq!(
        log.append_if(gap(), swap(b"r1", None, b"pending")).unwrap(),
        Landed::Durable
    );
    assert_eq!(review(&store, b"r1").as_deref(), Some(&b"pending"[..]));
    // The record is no longer as expected: neither the entry nor the write.
    assert_eq!(
        log.append_if(gap(), swap(b"r1", None, b"again")).unwrap(),
        Landed::Changed
    );
    assert_eq!(export(&log, 0).len(), 1);
    // One group: the second swap of r2 expects what the first replaces, the third expects
    // what is not there; both are left out, the others chained one after the other.
    let results = log.append_all_if(vec![
        (gap(), swap(b"r2", None, b"a")),
        (gap(), swap(b"r2", None, b"b")),
        (gap(), swap(b"r1", Some(b"approved"), b"executing")),
        (gap(), swap(b"r1", Some(b"pending"), b"approved")),
    ]);
    let results: Vec<bool> = results
        .into_iter()
        .map(|r| r.unwrap() == Landed::Durable)
        .collect();
    assert_eq!(results, [true, false, false, true]);
    assert_eq!(review(&store, b"r2").as_deref(), Some(&b"a"[..]));
    assert_eq!(review(&store, b"r1").as_deref(), Some(&b"approved"[..]));
    let lines = export(&log, 0);
    // Three entries, and the checkpoint after the third.
    assert_eq!(lines.len(), 4, "{lines:#?}");
    verify(&lines, &log.public_key_hex()).unwrap();
    // All of a group left out: nothing is written.
    assert_eq!(
        log.append_all_if(vec![(gap(), swap(b"r2", None, b"c"))])
            .pop()
            .map(Result::unwrap),
        Some(Landed::Changed)
    );
    assert_eq!(export(&log, 0).len(), 4);
    log.verify_live().unwrap();
}

/// A store that refuses every commit writing a review (a review table whose disk is full).
struct RefusesReviews {
    inner: Arc<dyn Store>,
}

impl Store for RefusesReviews {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(tree, key)
    }
    fn commit(&self, batches: Vec<Batch>) -> Result<Vec<bool>, StoreError> {
        let reviews = batches
            .iter()
            .flat_map(|b| &b.writes)
            .any(|w| matches!(w, crate::store::Write::Put(Tree::Reviews, ..)));
        if reviews {
            return Err(StoreError::Full("test".into()));
        }
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

#[test]
fn a_store_that_refuses_the_commit_writes_neither() {
    let fx = Fixture::new();
    let store = fx.store();
    let flaky = Arc::new(FlakyStore {
        inner: store.clone(),
        fail: AtomicBool::new(true),
        land_then_fail: AtomicBool::new(false),
    });
    let log = fx.open_on(flaky.clone(), 0);
    assert!(log.append_if(gap(), swap(b"r1", None, b"x")).is_err());
    assert_eq!(review(&store, b"r1"), None);
    assert!(log.entries(0).unwrap().is_empty());
    // A commit that landed and then reported a failure: both landed, once, and the caller
    // hears they may not survive a crash.
    flaky.fail.store(false, Ordering::SeqCst);
    flaky.land_then_fail.store(true, Ordering::SeqCst);
    assert_eq!(
        log.append_if(gap(), swap(b"r1", None, b"x")).unwrap(),
        Landed::Unflushed
    );
    assert_eq!(review(&store, b"r1").as_deref(), Some(&b"x"[..]));
    log.append_value("decision", event(0)).unwrap();
    let lines = export(&log, 0);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    verify(&lines, &log.public_key_hex()).unwrap();
    drop(log);

    // Only the callers' writes refused: an entry that may land alone does (append_with), one
    // that lands only with its writes does not.
    let log = fx.open_on(
        Arc::new(RefusesReviews {
            inner: store.clone(),
        }),
        0,
    );
    assert!(matches!(
        log.append_with(gap(), swap(b"r2", None, b"y")),
        Ok(Beside::StoreFailed(_))
    ));
    assert!(matches!(
        log.append_if(gap(), swap(b"r3", None, b"z")),
        Err(AuditError::Store(StoreError::Full(_)))
    ));
    assert_eq!((review(&store, b"r2"), review(&store, b"r3")), (None, None));
    let lines = export(&log, 0);
    assert_eq!(lines.len(), 3, "the append_with entry alone: {lines:#?}");
    verify(&lines, &log.public_key_hex()).unwrap();
}

/// A store on which another writer changes a record between the log's read and its commit.
struct Racing {
    inner: Arc<dyn Store>,
    /// Written (straight to the store) just before the next commit.
    race: Mutex<Option<(Vec<u8>, Vec<u8>)>>,
}

impl Store for Racing {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(tree, key)
    }
    fn commit(&self, batches: Vec<Batch>) -> Result<Vec<bool>, StoreError> {
        if let Some((k, v)) = self.race.lock().unwrap().take() {
            let mut b = Batch::default();
            b.put(Tree::Reviews, &k, &v);
            self.inner.commit(vec![b])?;
        }
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

#[test]
fn a_record_changed_after_its_read_is_left_out_and_the_rest_lands() {
    let fx = Fixture::new();
    let store = fx.store();
    let racing = Arc::new(Racing {
        inner: store.clone(),
        race: Mutex::new(None),
    });
    let log = fx.open_on(racing.clone(), 0);
    log.append_value("decision", event(0)).unwrap();
    *racing.race.lock().unwrap() = Some((b"r5".to_vec(), b"theirs".to_vec()));
    let results: Vec<bool> = log
        .append_all_if(vec![
            (gap(), swap(b"r5", None, b"ours")),
            (gap(), swap(b"r6", None, b"ours")),
        ])
        .into_iter()
        .map(|r| r.unwrap() == Landed::Durable)
        .collect();
    assert_eq!(results, [false, true]);
    assert_eq!(review(&store, b"r5").as_deref(), Some(&b"theirs"[..]));
    assert_eq!(review(&store, b"r6").as_deref(), Some(&b"ours"[..]));
    let lines = export(&log, 0);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    verify(&lines, &log.public_key_hex()).unwrap();
    log.verify_live().unwrap();
}

/// Fails every commit: the first with an outcome in doubt, the rest plainly.
struct DoubtThenDown {
    inner: Arc<dyn Store>,
    armed: AtomicBool,
    commits: std::sync::atomic::AtomicUsize,
}

impl Store for DoubtThenDown {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(tree, key)
    }
    fn commit(&self, batches: Vec<Batch>) -> Result<Vec<bool>, StoreError> {
        if !self.armed.load(Ordering::SeqCst) {
            return self.inner.commit(batches);
        }
        match self.commits.fetch_add(1, Ordering::SeqCst) {
            0 => Err(StoreError::InDoubt("answer lost".into())),
            _ => Err(StoreError::Io("down".into())),
        }
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

/// Review of session 24: an approval sharing a group commit with plain entries, whose commit
/// was in doubt, heard the error of the plain entries' second try instead ("down"), and the
/// approval was answered "nothing changed". Its own commit's error is what it hears.
#[test]
fn an_entry_bound_to_its_writes_hears_its_own_commits_error() {
    let fx = Fixture::new();
    let store = fx.store();
    let doubt = Arc::new(DoubtThenDown {
        inner: store,
        armed: AtomicBool::new(false),
        commits: Default::default(),
    });
    let log = fx.open_on(doubt.clone(), 0);
    doubt.armed.store(true, Ordering::SeqCst);
    let plain = ("decision", event(0), None);
    let bound = (
        "audit_gap",
        serde_json::to_value(gap()).unwrap(),
        Some(with::With::Only(swap(b"r1", None, b"approved"))),
    );
    let written = log.append_checked(vec![plain, bound]);
    assert!(
        matches!(&written[1], Err(AuditError::Store(StoreError::InDoubt(_)))),
        "{:?}",
        written[1]
    );
    assert!(written[0].is_err(), "{:?}", written[0]);
}
