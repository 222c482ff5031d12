//! The storage contract, run against every backend (redb, sled, and PostgreSQL on a throwaway
//! cluster): CAS semantics, ordering, isolation of trees, batches and counters, ranges, reopen,
//! racing writers; and the file backends' lock and corruption errors.

use std::sync::{Arc, Barrier};

#[path = "support/ports.rs"]
mod ports;
#[path = "support/postgres.rs"]
mod postgres_cluster;

use airlock::store::{open, Backend, Store, StoreError, Tree};

const BACKENDS: [Backend; 2] = [Backend::Redb, Backend::Sled];

/// A store to run the contract against: a directory of a file backend, or a database of its
/// own on the test PostgreSQL cluster. `open` again reopens the same one.
enum Place {
    Dir(Backend, tempfile::TempDir),
    Postgres(String),
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Dir(b, _) => write!(f, "{b:?}"),
            Place::Postgres(_) => f.write_str("Postgres"),
        }
    }
}

impl Place {
    fn open(&self) -> Arc<dyn Store> {
        self.try_open().expect("open")
    }

    fn try_open(&self) -> Result<Arc<dyn Store>, StoreError> {
        match self {
            // As `serve` opens it: sled may hold its lock a moment after the last handle drops.
            Place::Dir(b, dir) => {
                airlock::store::open_patiently(*b, dir.path(), std::time::Duration::from_secs(10))
            }
            Place::Postgres(url) => airlock::store::open_postgres(url),
        }
    }
}

/// redb, sled and (when PostgreSQL is installed; always in CI) PostgreSQL, each fresh.
fn places() -> Vec<Place> {
    let mut out: Vec<Place> = BACKENDS
        .iter()
        .map(|b| Place::Dir(*b, tempfile::tempdir().expect("tmp")))
        .collect();
    if let Some(cluster) = postgres_cluster::Cluster::shared() {
        out.push(Place::Postgres(cluster.fresh_database()));
    }
    out
}

#[test]
fn cas_semantics() {
    for b in places() {
        let s = b.open();
        assert_eq!(s.get(Tree::Reviews, b"k").expect("get"), None, "{b:?}");
        assert!(s
            .compare_and_swap(Tree::Reviews, b"k", None, b"v1")
            .expect("cas"));
        assert!(
            !s.compare_and_swap(Tree::Reviews, b"k", None, b"v2")
                .expect("cas"),
            "{b:?}: insert-new over existing must fail"
        );
        assert!(!s
            .compare_and_swap(Tree::Reviews, b"k", Some(b"wrong"), b"v2")
            .expect("cas"));
        assert_eq!(
            s.get(Tree::Reviews, b"k").expect("get").as_deref(),
            Some(&b"v1"[..])
        );
        assert!(s
            .compare_and_swap(Tree::Reviews, b"k", Some(b"v1"), b"v2")
            .expect("cas"));
        assert_eq!(
            s.get(Tree::Reviews, b"k").expect("get").as_deref(),
            Some(&b"v2"[..])
        );
        assert!(!s
            .compare_and_swap(Tree::Reviews, b"missing", Some(b"x"), b"y")
            .expect("cas"));
    }
}

#[test]
fn scan_order_and_tree_isolation() {
    for b in places() {
        let s = b.open();
        for k in ["c", "a", "b"] {
            assert!(s
                .compare_and_swap(Tree::Reviews, k.as_bytes(), None, k.as_bytes())
                .expect("cas"));
        }
        assert!(s
            .compare_and_swap(Tree::Audit, b"z", None, b"z")
            .expect("cas"));
        let keys: Vec<Vec<u8>> = s
            .scan(Tree::Reviews)
            .expect("scan")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()],
            "{b:?}"
        );
        assert_eq!(s.scan(Tree::Audit).expect("scan").len(), 1);
        // Only the format stamp every store gets at open.
        let meta: Vec<Vec<u8>> = s
            .scan(Tree::Meta)
            .expect("scan")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(meta, vec![b"store:format".to_vec()]);
        // A range read from a key: inclusive, ordered, between keys, past the end.
        let from = |start: &[u8]| -> Vec<Vec<u8>> {
            s.scan_from(Tree::Reviews, start)
                .expect("scan_from")
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(from(b"b"), vec![b"b".to_vec(), b"c".to_vec()], "{b:?}");
        assert_eq!(from(b"aa"), vec![b"b".to_vec(), b"c".to_vec()], "{b:?}");
        assert_eq!(from(b""), vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        assert!(from(b"d").is_empty(), "{b:?}");
        assert!(s.scan_from(Tree::Meta, b"t").expect("scan_from").is_empty());
    }
}

#[test]
fn reopen_keeps_everything() {
    for b in places() {
        {
            let s = b.open();
            for i in 0..100u32 {
                assert!(s
                    .compare_and_swap(Tree::Reviews, &i.to_be_bytes(), None, &[i as u8; 300])
                    .expect("cas"));
            }
        }
        let s = b.open();
        let all = s.scan(Tree::Reviews).expect("scan");
        assert_eq!(all.len(), 100, "{b:?}");
        for (i, (_, v)) in all.iter().enumerate() {
            assert_eq!(v, &vec![i as u8; 300]);
        }
    }
}

#[test]
fn racing_cas_has_exactly_one_winner() {
    for b in places() {
        let s = b.open();
        for round in 100..150u32 {
            let key = round.to_be_bytes();
            assert!(s
                .compare_and_swap(Tree::Reviews, &key, None, b"pending")
                .expect("cas"));
            let barrier = Arc::new(Barrier::new(8));
            let wins: usize = (0..8u8)
                .map(|t| {
                    let s = s.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        s.compare_and_swap(Tree::Reviews, &key, Some(b"pending"), &[b'w', t])
                            .expect("cas")
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| usize::from(h.join().expect("join")))
                .sum();
            assert_eq!(wins, 1, "{b:?} round {round}: exactly one racer may win");
        }
    }
}

#[test]
fn second_open_of_a_live_store_is_refused_clearly() {
    // Both backends lock their files per process; a second process gets a clear error. Within one
    // process redb refuses a second handle too; sled shares or refuses. Either way: no panic.
    let dir = tempfile::tempdir().expect("tmp");
    let _first = open(Backend::Redb, dir.path()).expect("open");
    match open(Backend::Redb, dir.path()) {
        Err(StoreError::Locked(p)) => assert!(p.contains("airlock.redb")),
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("a second handle on a live redb store must be refused"),
    }
}

#[test]
fn garbage_file_gives_an_error_not_a_panic() {
    for b in BACKENDS {
        let dir = tempfile::tempdir().expect("tmp");
        match b {
            Backend::Redb => {
                std::fs::write(dir.path().join("airlock.redb"), vec![0x5a; 8192]).expect("write")
            }
            Backend::Sled | Backend::Postgres => {
                std::fs::create_dir_all(dir.path().join("sled")).expect("mkdir");
                std::fs::write(dir.path().join("sled").join("conf"), b"garbage\x00\xff")
                    .expect("write");
            }
        }
        let r = open(b, dir.path());
        assert!(r.is_err(), "{b:?}: a garbage store must not open silently");
    }
}

#[test]
fn backend_names_parse() {
    assert_eq!("redb".parse::<Backend>(), Ok(Backend::Redb));
    assert_eq!("sled".parse::<Backend>(), Ok(Backend::Sled));
    assert!("rocksdb"
        .parse::<Backend>()
        .unwrap_err()
        .contains("rocksdb"));
}

/// `insert_new` (the audit log's group commit): all or nothing, and durable across reopen.
#[test]
fn insert_new_is_all_or_nothing() {
    for b in places() {
        {
            let s = b.open();
            let batch: Vec<(&[u8], &[u8])> = vec![(b"1", b"a"), (b"2", b"b"), (b"3", b"c")];
            assert!(s.insert_new(Tree::Audit, &batch).expect("insert"), "{b:?}");
            // One key of the next batch exists: nothing of it lands.
            let clash: Vec<(&[u8], &[u8])> = vec![(b"4", b"d"), (b"3", b"X"), (b"5", b"e")];
            assert!(!s.insert_new(Tree::Audit, &clash).expect("insert"), "{b:?}");
            assert_eq!(s.get(Tree::Audit, b"4").expect("get"), None, "{b:?}");
            assert_eq!(
                s.get(Tree::Audit, b"3").expect("get").as_deref(),
                Some(&b"c"[..]),
                "{b:?}"
            );
        }
        let s = b.open();
        let keys: Vec<Vec<u8>> = s
            .scan(Tree::Audit)
            .expect("scan")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()],
            "{b:?}"
        );
    }
}

#[test]
fn batches_are_all_or_nothing_across_trees_with_counters() {
    use airlock::store::{counter_value, Batch};
    for b in places() {
        let s = b.open();
        let mut first = Batch::default();
        first
            .expect(Tree::Reviews, b"r1", None)
            .put(Tree::Reviews, b"r1", b"v1")
            .put(Tree::Index, b"i1", b"")
            .add(Tree::Index, b"n", 2);
        // The second expects r1 absent, which the first (earlier in the same commit) changed.
        let mut second = Batch::default();
        second
            .expect(Tree::Reviews, b"r1", None)
            .put(Tree::Index, b"i2", b"")
            .add(Tree::Index, b"n", 5);
        let mut third = Batch::default();
        third
            .expect(Tree::Reviews, b"r1", Some(b"v1"))
            .delete(Tree::Index, b"i1")
            .add(Tree::Index, b"n", -3);
        assert_eq!(
            s.commit(vec![first, second, third]).expect("commit"),
            vec![true, false, true],
            "{b:?}"
        );
        assert_eq!(s.get(Tree::Index, b"i1").expect("get"), None, "{b:?}");
        assert_eq!(s.get(Tree::Index, b"i2").expect("get"), None, "{b:?}");
        let n = s.get(Tree::Index, b"n").expect("get").expect("counter");
        assert_eq!(counter_value(&n), 0, "{b:?}: 2 - 3 clamps at 0");
    }
}

#[test]
fn a_claim_whose_other_expectation_fails_writes_nothing_and_counters_follow_the_batch() {
    use airlock::store::{counter_value, Batch};
    for b in places() {
        let s = b.open();
        let mut setup = Batch::default();
        setup
            .put(Tree::Reviews, b"r", b"approved")
            .put(Tree::Index, b"c", &7u64.to_be_bytes());
        assert_eq!(s.commit(vec![setup]).expect("setup"), vec![true], "{b:?}");
        // The claim of r would succeed, but the batch's other expectation fails: r stays.
        let mut claim = Batch::default();
        claim
            .expect(Tree::Reviews, b"r", Some(b"approved"))
            .expect(Tree::Reviews, b"other", Some(b"x"))
            .put(Tree::Reviews, b"r", b"executing")
            .add(Tree::Index, b"c", 1);
        // Counters: a put then two adds in one batch count from the put.
        let mut counters = Batch::default();
        counters
            .put(Tree::Index, b"c2", &10u64.to_be_bytes())
            .add(Tree::Index, b"c2", 5)
            .add(Tree::Index, b"c2", -2)
            .add(Tree::Index, b"c", 3)
            .add(Tree::Index, b"c", 3);
        assert_eq!(
            s.commit(vec![claim, counters]).expect("commit"),
            vec![false, true],
            "{b:?}"
        );
        assert_eq!(
            s.get(Tree::Reviews, b"r").expect("get").as_deref(),
            Some(&b"approved"[..]),
            "{b:?}: the claim rolled back"
        );
        let value = |k: &[u8]| counter_value(&s.get(Tree::Index, k).expect("get").expect("set"));
        assert_eq!(value(b"c"), 13, "{b:?}");
        assert_eq!(value(b"c2"), 13, "{b:?}");
    }
}

#[test]
fn counters_in_one_commit_read_as_if_each_batch_applied_in_turn() {
    use airlock::store::{counter_value, Batch};
    let be = |n: u64| n.to_be_bytes().to_vec();
    for b in places() {
        let s = b.open();
        let mut batches = Vec::new();
        let mut add = Batch::default();
        add.add(Tree::Index, b"n", 1);
        batches.push(add);
        // An expectation sees the running value, an earlier add included.
        let mut seen = Batch::default();
        seen.expect(Tree::Index, b"n", Some(&be(1)))
            .add(Tree::Index, b"n", 1);
        batches.push(seen);
        let mut stale = Batch::default();
        stale
            .expect(Tree::Index, b"n", Some(&be(1)))
            .add(Tree::Index, b"n", 100);
        batches.push(stale);
        let mut gone = Batch::default();
        gone.expect(Tree::Index, b"n", Some(&be(2)))
            .delete(Tree::Index, b"n");
        batches.push(gone);
        let mut absent = Batch::default();
        absent
            .expect(Tree::Index, b"n", None)
            .add(Tree::Index, b"n", 4)
            .add(Tree::Index, b"m", -1);
        batches.push(absent);
        assert_eq!(
            s.commit(batches).expect("commit"),
            vec![true, true, false, true, true],
            "{b:?}"
        );
        let value = |k: &[u8]| {
            s.get(Tree::Index, k)
                .expect("get")
                .map(|v| counter_value(&v))
        };
        assert_eq!(value(b"n"), Some(4), "{b:?}");
        assert_eq!(value(b"m"), Some(0), "{b:?}: clamped at 0, written");
    }
}

#[test]
fn get_many_answers_each_key_in_order() {
    for b in places() {
        let s = b.open();
        for k in ["a", "c"] {
            assert!(s
                .compare_and_swap(Tree::Reviews, k.as_bytes(), None, k.as_bytes())
                .expect("put"));
        }
        let got = s
            .get_many(Tree::Reviews, &[b"c", b"b", b"a", b"c"])
            .expect("get_many");
        let want: Vec<Option<Vec<u8>>> = vec![
            Some(b"c".to_vec()),
            None,
            Some(b"a".to_vec()),
            Some(b"c".to_vec()),
        ];
        assert_eq!(got, want, "{b:?}");
        assert!(
            s.get_many(Tree::Index, &[]).expect("none").is_empty(),
            "{b:?}"
        );
    }
}

#[test]
fn ranges_are_bounded_by_end_and_limit() {
    for b in places() {
        let s = b.open();
        for k in ["a1", "a2", "a3", "b1"] {
            assert!(s
                .compare_and_swap(Tree::Index, k.as_bytes(), None, b"")
                .expect("put"));
        }
        let keys = |start: &str, end: Option<&str>, limit| -> Vec<String> {
            s.range(Tree::Index, start.as_bytes(), end.map(str::as_bytes), limit)
                .expect("range")
                .into_iter()
                .map(|(k, _)| String::from_utf8(k).expect("utf8"))
                .collect()
        };
        assert_eq!(keys("a", Some("b"), 10), ["a1", "a2", "a3"], "{b:?}");
        assert_eq!(keys("a", Some("b"), 2), ["a1", "a2"], "{b:?}");
        assert_eq!(keys("a2\0", None, 10), ["a3", "b1"], "{b:?}");
        assert!(keys("c", None, 10).is_empty(), "{b:?}");
    }
}

#[test]
fn concurrent_commits_all_land_durably() {
    for b in places() {
        let s = b.open();
        let threads = 16;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (s, barrier) = (s.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for i in 0..50 {
                        let k = format!("t{t}-{i}");
                        assert!(s
                            .compare_and_swap(Tree::Reviews, k.as_bytes(), None, b"v")
                            .expect("cas"));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("join");
        }
        drop(s);
        let s = b.open();
        assert_eq!(
            s.scan(Tree::Reviews).expect("scan").len(),
            threads * 50,
            "{b:?}"
        );
    }
}

#[test]
fn a_store_locked_a_moment_longer_is_waited_for() {
    use std::time::Duration;
    let dir = tempfile::tempdir().expect("tmp");
    let held = open(Backend::Redb, dir.path()).expect("open");
    let refused =
        airlock::store::open_patiently(Backend::Redb, dir.path(), Duration::from_millis(200));
    assert!(
        matches!(refused, Err(StoreError::Locked(_))),
        "bounded wait"
    );
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        drop(held);
    });
    let s = airlock::store::open_patiently(Backend::Redb, dir.path(), Duration::from_secs(10))
        .expect("opened once the holder let go");
    assert!(s.get(Tree::Reviews, b"k").expect("get").is_none());
    releaser.join().expect("join");
}

/// PostgreSQL announces commits to the review and meta trees (LISTEN/NOTIFY): a second store
/// on the same database sees its `watch` counters move; an index-only write moves neither.
/// Review of session 22: a commit sent every value as one `bytea[]` parameter, and PostgreSQL
/// refuses an array (and a message) over 1 GiB: a sweep chunk of about 770 reviews with 1 MiB
/// bodies never committed. A commit's values now go in statements of at most 64 MiB, in the
/// same transaction: 1,100 values of 1 MiB land, all or nothing.
#[test]
fn postgres_a_commit_of_more_than_a_gib_of_values_lands() {
    let Some(cluster) = postgres_cluster::Cluster::shared() else {
        return; // the reason is printed; CI requires PostgreSQL
    };
    let s = airlock::store::open_postgres(&cluster.fresh_database()).expect("open");
    let mut b = airlock::store::Batch::default();
    for i in 0..1100u32 {
        // Each value its own (the key in its first bytes), compressible: little disk.
        let mut v = vec![b'x'; 1024 * 1024];
        v[..4].copy_from_slice(&i.to_be_bytes());
        b.put(Tree::Reviews, &i.to_be_bytes(), &v);
    }
    assert!(s.apply(b).expect("a commit of 1.1 GiB"));
    for i in [0u32, 63, 64, 547, 1099] {
        let v = s
            .get(Tree::Reviews, &i.to_be_bytes())
            .expect("get")
            .expect("written");
        assert_eq!((v.len(), &v[..4]), (1024 * 1024, &i.to_be_bytes()[..]));
    }
}

#[test]
fn postgres_watch_hears_commits_of_another_store() {
    use std::time::Duration;
    let Some(cluster) = postgres_cluster::Cluster::shared() else {
        return; // the reason is printed; CI requires PostgreSQL
    };
    let url = cluster.fresh_database();
    let a = airlock::store::open_postgres(&url).expect("open a");
    let b = airlock::store::open_postgres(&url).expect("open b");
    assert!(b.watch(Tree::Audit).is_none() && b.watch(Tree::Index).is_none());
    let mut reviews = b.watch(Tree::Reviews).expect("reviews are watched");
    let mut meta = b.watch(Tree::Meta).expect("meta is watched");
    reviews.borrow_and_update();
    meta.borrow_and_update();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let arrives = |rx: &mut tokio::sync::watch::Receiver<u64>, what: &str| {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), rx.changed())
                .await
                .unwrap_or_else(|_| panic!("no notification of the {what} write within 5 s"))
                .expect("store alive");
        });
        *rx.borrow_and_update()
    };
    assert!(a
        .compare_and_swap(Tree::Index, b"i", None, b"x")
        .expect("index write"));
    assert!(a
        .compare_and_swap(Tree::Meta, b"m", None, b"x")
        .expect("meta write"));
    assert_eq!(arrives(&mut meta, "meta"), 1);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !meta.has_changed().expect("alive") && !reviews.has_changed().expect("alive"),
        "an index-only write notifies nobody, and a meta write only meta"
    );
    assert!(a
        .compare_and_swap(Tree::Reviews, b"r", None, b"x")
        .expect("review write"));
    assert_eq!(arrives(&mut reviews, "review"), 1);
    // A batch whose expectation fails writes nothing and announces nothing.
    assert!(!a
        .compare_and_swap(Tree::Reviews, b"r", None, b"y")
        .expect("refused write"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!reviews.has_changed().expect("alive"));
    // The writer hears its own commits too.
    let mut own = a.watch(Tree::Reviews).expect("watched");
    own.borrow_and_update();
    assert!(a
        .compare_and_swap(Tree::Reviews, b"r2", None, b"x")
        .expect("review write"));
    arrives(&mut own, "own review");
}

/// The approved -> executing claim between instances: two stores (two pools) on one database,
/// many threads racing the same compare-and-swap from one old value; exactly one wins.
#[test]
fn postgres_claim_has_one_winner_across_instances() {
    let Some(cluster) = postgres_cluster::Cluster::shared() else {
        return; // the reason is printed; CI requires PostgreSQL
    };
    let url = cluster.fresh_database();
    let stores = [
        airlock::store::open_postgres(&url).expect("open a"),
        airlock::store::open_postgres(&url).expect("open b"),
    ];
    let racers = 12;
    for round in 0..20u32 {
        let key = round.to_be_bytes();
        assert!(stores[0]
            .compare_and_swap(Tree::Reviews, &key, None, b"approved")
            .expect("hold"));
        let barrier = Arc::new(Barrier::new(racers));
        let winners: Vec<usize> = (0..racers)
            .map(|t| {
                let s = stores[t % 2].clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    let mine = format!("executing by {t}");
                    s.compare_and_swap(Tree::Reviews, &key, Some(b"approved"), mine.as_bytes())
                        .expect("claim")
                        .then_some(t)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .filter_map(|h| h.join().expect("join"))
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: one claim wins: {winners:?}"
        );
        let now = stores[1].get(Tree::Reviews, &key).expect("get");
        assert_eq!(
            now,
            Some(format!("executing by {}", winners[0]).into_bytes()),
            "round {round}: the winner's value stands"
        );
    }
}

/// The synchronous store works from any thread: outside a runtime (the other tests), on an
/// async worker of a multi-thread runtime, on a current-thread runtime, in `spawn_blocking`.
#[test]
fn postgres_store_is_callable_from_runtime_threads() {
    let Some(cluster) = postgres_cluster::Cluster::shared() else {
        return;
    };
    let s = airlock::store::open_postgres(&cluster.fresh_database()).expect("open");
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("runtime");
    let current = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (a, b, c) = (s.clone(), s.clone(), s.clone());
    multi.block_on(async move {
        tokio::spawn(async move {
            assert!(a
                .compare_and_swap(Tree::Meta, b"worker", None, b"1")
                .expect("cas"));
        })
        .await
        .expect("on a worker");
        tokio::task::spawn_blocking(move || {
            assert!(b
                .compare_and_swap(Tree::Meta, b"blocking", None, b"1")
                .expect("cas"));
        })
        .await
        .expect("in spawn_blocking");
    });
    current.block_on(async move {
        assert!(c
            .compare_and_swap(Tree::Meta, b"current", None, b"1")
            .expect("cas"));
    });
    // The three swaps, and the format stamp every store gets at open.
    assert_eq!(s.scan(Tree::Meta).expect("scan").len(), 4);
    drop(multi);
    // Dropping the last handle inside a runtime shuts the store's own runtime down without
    // blocking (a blocking shutdown there would panic).
    current.block_on(async move { drop(s) });
}

/// TLS to PostgreSQL: `sslmode=require` with the CA file that signed the server's certificate
/// works (commits, reads and change notices); another CA, a name the certificate does not
/// carry, or no CA file at all are refused with a clear error; nothing falls back to clear text.
#[test]
fn postgres_over_verified_tls() {
    use airlock::store::with_ca_file;
    use std::time::Duration;
    let Some(tls) = postgres_cluster::Cluster::shared_tls() else {
        return; // the reason is printed; CI requires PostgreSQL
    };
    let db = postgres_cluster::Cluster::database_of(&tls.cluster.fresh_database());
    let url = tls.cluster.url_by_name(&db, "sslmode=require");
    // As `[store] ca_file` gives it.
    let verified = with_ca_file(&url, Some(&tls.ca_file)).expect("with ca_file");
    let a = airlock::store::open_postgres(&verified).expect("open over TLS");
    let b = airlock::store::open_postgres(&verified).expect("open over TLS");
    let mut reviews = b.watch(Tree::Reviews).expect("watched");
    reviews.borrow_and_update();
    assert!(a
        .compare_and_swap(Tree::Reviews, b"k", None, b"v")
        .expect("cas"));
    assert_eq!(
        b.get(Tree::Reviews, b"k").expect("get").as_deref(),
        Some(&b"v"[..])
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), reviews.changed()).await })
        .expect("a notice over the TLS listener within 5 s")
        .expect("alive");

    let refused = |url: &str| match airlock::store::open_postgres(url) {
        Ok(_) => panic!("opened {url}"),
        Err(e) => e.to_string(),
    };
    let other = with_ca_file(&url, Some(&tls.other_ca_file)).expect("with ca_file");
    let e = refused(&other);
    assert!(e.contains("invalid peer certificate"), "another CA: {e}");
    assert!(e.contains("UnknownIssuer"), "another CA: {e}");
    // The same server and CA by an address its certificate does not name.
    let by_ip = format!("{}?sslmode=require", tls.cluster.url(&db));
    let by_ip = with_ca_file(&by_ip, Some(&tls.ca_file)).expect("with ca_file");
    let e = refused(&by_ip);
    assert!(e.contains("invalid peer certificate"), "wrong name: {e}");
    assert!(e.contains("not valid for name"), "wrong name: {e}");
    let e = refused(&url);
    assert!(
        e.contains("store.ca_file") && e.contains("sslmode=require"),
        "{e}"
    );
    let e = refused(&tls.cluster.url_by_name(&db, "sslmode=prefer"));
    assert!(e.contains("sslmode=prefer falls back to clear text"), "{e}");
}

/// The change listener survives losing its connection: once it has reconnected it bumps every
/// counter (notices sent meanwhile are lost), and later notices arrive again.
#[test]
fn postgres_watch_reconnects_and_bumps_every_counter() {
    use std::time::Duration;
    let Some(cluster) = postgres_cluster::Cluster::shared() else {
        return; // the reason is printed; CI requires PostgreSQL
    };
    let url = cluster.fresh_database();
    let s = airlock::store::open_postgres(&url).expect("open");
    let mut reviews = s.watch(Tree::Reviews).expect("watched");
    let mut meta = s.watch(Tree::Meta).expect("watched");
    reviews.borrow_and_update();
    meta.borrow_and_update();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let within_5s = |rx: &mut tokio::sync::watch::Receiver<u64>, what: &str| {
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), rx.changed()).await })
            .unwrap_or_else(|_| panic!("{what}: no bump within 5 s"))
            .expect("alive");
    };
    // Cut the listener off, as a server restart or a network failure would.
    let killed: i64 = rt.block_on(async {
        let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        let driven = tokio::spawn(connection);
        let row = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = current_database() AND query = 'LISTEN airlock_changes'",
                &[],
            )
            .await
            .expect("terminate");
        drop(admin);
        let _ = driven.await;
        row.get(0)
    });
    assert_eq!(killed, 1, "one listening connection");
    within_5s(&mut reviews, "reviews after the reconnect");
    within_5s(&mut meta, "meta after the reconnect");
    assert!(s
        .compare_and_swap(Tree::Reviews, b"after", None, b"x")
        .expect("cas"));
    within_5s(&mut reviews, "a review write after the reconnect");
}

/// A database whose default turns `synchronous_commit` off would acknowledge commits (claims
/// among them) before they are on disk; Airlock's commits run with it on regardless. A trigger
/// records the setting each write to the store's table runs under.
#[test]
fn postgres_commits_are_synchronous_whatever_the_database_default() {
    let Some(cluster) = postgres_cluster::Cluster::shared() else {
        return;
    };
    let url = cluster.fresh_database();
    drop(airlock::store::open_postgres(&url).expect("create the schema"));
    let db = postgres_cluster::Cluster::database_of(&url);
    postgres_cluster::psql(
        &url,
        &format!(
            "ALTER DATABASE {db} SET synchronous_commit = off;
             CREATE TABLE seen (setting text);
             CREATE FUNCTION note_setting() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN INSERT INTO seen VALUES (current_setting('synchronous_commit')); RETURN NEW; END $$;
             CREATE TRIGGER note BEFORE INSERT OR UPDATE ON airlock_kv
               FOR EACH ROW EXECUTE FUNCTION note_setting();"
        ),
    );
    assert_eq!(
        postgres_cluster::psql(&url, "SHOW synchronous_commit"),
        ["off"]
    );
    let s = airlock::store::open_postgres(&url).expect("open");
    assert!(s
        .compare_and_swap(Tree::Reviews, b"r", None, b"approved")
        .expect("hold"));
    assert!(s
        .compare_and_swap(Tree::Reviews, b"r", Some(b"approved"), b"executing")
        .expect("claim"));
    let seen = postgres_cluster::psql(&url, "SELECT setting FROM seen");
    assert!(!seen.is_empty(), "the trigger saw the writes");
    assert!(seen.iter().all(|v| v == "on"), "{seen:?}");
}

/// Review of session 21: a `COMMIT` whose answer never came (a synchronous standby that stopped
/// answering, a stalled disk) was given up at the store's 90 s call limit and reported as an
/// error, "nothing changed", while the transaction could still commit: an approval the
/// reviewer was told failed would then be sent, a hold the agent got 503 for would appear. Now
/// the commit's backend is ended from another connection and its outcome read by transaction
/// id before answering: committed (the standby never answered) is a success, rolled back (a
/// commit stalled before it committed) an error, and the store matches the answer.
#[test]
fn postgres_a_commit_whose_answer_is_lost_is_settled_before_answering() {
    use std::time::{Duration, Instant};
    // Commits wait for a standby that does not exist, but only those asking for it: the
    // cluster's default is `local`, and a trigger asks for `on` when key `replicated` is written.
    let Some(cluster) = postgres_cluster::Cluster::private(
        "-c synchronous_standby_names=nobody -c synchronous_commit=local",
    ) else {
        return;
    };
    let url = cluster.fresh_database();
    let s = airlock::store::open_postgres_with_commit_limit(&url, Duration::from_secs(1))
        .expect("open");
    postgres_cluster::psql(
        &url,
        "CREATE FUNCTION airlock_test_commit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.key = 'replicated'::bytea THEN
             PERFORM set_config('synchronous_commit', 'on', true);
           END IF;
           IF NEW.key = 'stalled'::bytea THEN
             PERFORM pg_sleep(3);
           END IF;
           RETURN NEW;
         END $$;
         CREATE CONSTRAINT TRIGGER airlock_test_commit AFTER INSERT OR UPDATE ON airlock_kv
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION airlock_test_commit();",
    );
    let put = |key: &[u8]| {
        let mut b = airlock::store::Batch::default();
        b.expect(Tree::Meta, key, None).put(Tree::Meta, key, b"v");
        b
    };

    // Committed, its answer lost waiting for the standby: a success, and there.
    let started = Instant::now();
    assert_eq!(s.apply(put(b"replicated")), Ok(true));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "settled, not waited out"
    );
    assert_eq!(
        s.get(Tree::Meta, b"replicated").expect("get"),
        Some(b"v".to_vec())
    );

    // Stalled before committing: ended, rolled back, reported as such, and never lands.
    let err = s.apply(put(b"stalled")).expect_err("rolled back");
    assert!(err.to_string().contains("rolled back"), "{err}");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(s.get(Tree::Meta, b"stalled").expect("get"), None);

    // The store goes on.
    assert_eq!(s.apply(put(b"plain")), Ok(true));
}

/// Review of session 23: nothing refused a store a newer build had migrated (a rollback misread
/// it and wrote it back the old way). A store stamped unreadable by this build's format, or a
/// PostgreSQL schema past the newest version it knows, is refused at open, naming why.
#[test]
fn a_store_a_newer_build_made_unreadable_is_refused_at_open() {
    for b in places() {
        let s = b.open();
        let mut batch = airlock::store::Batch::default();
        let stamp = format!(
            r#"{{"format":{0},"min_reader":{0}}}"#,
            airlock::store::format::FORMAT + 1
        );
        batch.put(Tree::Meta, b"store:format", stamp.as_bytes());
        assert!(s.apply(batch).expect("stamp"));
        drop(s);
        let e = match b.try_open() {
            Ok(_) => panic!("{b:?}: a store stamped for a newer reader opened"),
            Err(e) => e,
        };
        assert!(matches!(e, StoreError::TooNew(_)), "{b:?}: {e}");
        assert!(e.to_string().contains("newer Airlock"), "{b:?}: {e}");
    }
    let Some(cluster) = postgres_cluster::Cluster::shared() else {
        return;
    };
    let url = cluster.fresh_database();
    drop(airlock::store::open_postgres(&url).expect("open"));
    postgres_cluster::psql(&url, "INSERT INTO airlock_schema (version) VALUES (99)");
    let e = match airlock::store::open_postgres(&url) {
        Ok(_) => panic!("a schema at version 99 opened"),
        Err(e) => e,
    };
    assert!(e.to_string().contains("schema is at version 99"), "{e}");
}

/// Review of session 23: `audit accept-restore` on PostgreSQL ran while instances were serving
/// (nothing locks a shared database). A store tells how many other processes listen on it.
#[test]
fn postgres_counts_the_other_instances_connected() {
    let Some(cluster) = postgres_cluster::Cluster::shared() else {
        return;
    };
    let url = cluster.fresh_database();
    let a = airlock::store::open_postgres(&url).expect("open a");
    assert_eq!(a.other_instances().map(|r| r.expect("count")), Some(0));
    let b = airlock::store::open_postgres(&url).expect("open b");
    assert_eq!(a.other_instances().map(|r| r.expect("count")), Some(1));
    drop(b);
    // The other's listener ends with it (its session may take a moment to go).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while a.other_instances().map(|r| r.expect("count")) != Some(0) {
        assert!(std::time::Instant::now() < deadline, "b's listener stayed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let dir = tempfile::tempdir().expect("tmp");
    let embedded = open(Backend::Redb, dir.path()).expect("redb");
    assert!(embedded.other_instances().is_none());
}

/// The instances lock's key (`src/store/postgres/instances.rs`).
const INSTANCES_LOCK: i64 = 0x0361_6972_6c6f_636b;

/// The backend pids holding the instances lock shared on `url`'s database.
fn shared_holders(url: &str) -> Vec<String> {
    postgres_cluster::psql(
        url,
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock' \
         AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
}

/// Left from session 23: `accept-restore` could not see an instance whose change listener
/// was reconnecting. A serving instance holds the instances lock (shared) on a connection of
/// its own: with its listener gone, the exclusive try still fails; once it lets go, the try
/// succeeds and keeps a new instance from starting until the turn drops. A lock connection
/// lost while a restore waits is not taken back: the instance is told to stop.
#[test]
fn postgres_instances_lock_keeps_restores_and_instances_apart() {
    let Some(cluster) = postgres_cluster::Cluster::shared() else {
        return;
    };
    let url = cluster.fresh_database();
    let serving = airlock::store::open_postgres(&url).expect("open serving");
    let hold = serving
        .hold_serving()
        .expect("hold")
        .expect("a shared store holds");
    let restorer = airlock::store::open_postgres(&url).expect("open restorer");
    // The serving store's change listener dropped (as while it reconnects): only the lock
    // tells that it runs.
    postgres_cluster::psql(
        &url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query = 'LISTEN airlock_changes' AND datname = current_database()",
    );
    assert!(
        restorer.try_exclusive_instances().expect("try").is_none(),
        "a restore began beside a serving instance"
    );
    // A second instance shares the lock.
    let other = airlock::store::open_postgres(&url).expect("open other");
    let other_hold = other.hold_serving().expect("shared").expect("held");
    drop(other_hold);
    drop(hold);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let turn = loop {
        if let Some(t) = restorer.try_exclusive_instances().expect("try") {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "the lock stayed held");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let refused = match serving.hold_serving() {
        Ok(_) => panic!("an instance started during a restore"),
        Err(e) => e.to_string(),
    };
    assert!(refused.contains("accept-restore` is running"), "{refused}");
    drop(turn);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let hold = loop {
        match serving.hold_serving() {
            Ok(h) => break h.expect("held"),
            Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // A restore waiting for the lock gets it when the instance's lock connection is cut, before
    // the instance reconnects: the instance is told to stop.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (granted_tx, granted) = std::sync::mpsc::channel::<()>();
    let waiter_url = url.clone();
    let waiter = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(&waiter_url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            let driven = tokio::spawn(connection);
            client
                .execute("SELECT pg_advisory_lock($1)", &[&INSTANCES_LOCK])
                .await
                .expect("lock");
            let _ = granted_tx.send(());
            let _ = tokio::task::spawn_blocking(move || released.recv()).await;
            drop(client);
            let _ = driven.await;
        })
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while postgres_cluster::psql(
        &url,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
    ) != ["1"]
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the restore never waited"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for pid in shared_holders(&url) {
        postgres_cluster::psql(&url, &format!("SELECT pg_terminate_backend({pid})"));
    }
    granted
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the waiting restore got the lock");
    let mut lost = hold.lost();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let why = loop {
        if let Some(why) = lost.borrow_and_update().clone() {
            break why;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the instance was not told"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        why.contains("accept-restore` is running") && why.contains("stops"),
        "{why}"
    );
    let _ = release.send(());
    waiter.join().expect("waiter");
    let dir = tempfile::tempdir().expect("tmp");
    let embedded = open(Backend::Redb, dir.path()).expect("redb");
    assert!(embedded.hold_serving().expect("embedded").is_none());
    assert!(embedded
        .try_exclusive_instances()
        .expect("embedded")
        .is_some());
}
