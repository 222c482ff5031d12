//! Tests of the audit log: tamper detection on exports, reopen, concurrency, checkpoints,
//! fail-closed appends and key handling.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use super::*;
use crate::store::{Backend, Entry};

mod anchoring;
mod both_or_neither;
mod rotation;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn key_path(&self) -> PathBuf {
        self.dir.path().join("keys/audit.key")
    }
    fn store(&self) -> Arc<dyn Store> {
        crate::store::open(Backend::Redb, &self.dir.path().join("db")).unwrap()
    }
    fn open(&self, every: u64) -> AuditLog {
        self.open_on(self.store(), every)
    }
    fn open_on(&self, store: Arc<dyn Store>, every: u64) -> AuditLog {
        let opts = AuditOptions {
            checkpoint_every: every,
            ..AuditOptions::default()
        };
        AuditLog::open(store, &self.key_path(), "airlock-test".into(), opts).unwrap()
    }
}

fn event(n: usize) -> Value {
    json!({"n": n, "note": "aaaa", "host": "api.example.com", "decision": "approved"})
}

fn export(log: &AuditLog, since: u64) -> Vec<String> {
    let mut out = Vec::new();
    let n = log.export(since, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(lines.len() as u64, n);
    lines
}

fn verify(lines: &[String], pk: &str) -> Result<VerifyReport, VerifyError> {
    let mut text = lines.join("\n");
    text.push('\n');
    verify_lines(Cursor::new(text.into_bytes()), pk)
}

/// 25 events with a checkpoint every 10: checkpoints at seq 10 and 21, 27 lines in all.
fn standard_log(fx: &Fixture) -> (AuditLog, Vec<String>) {
    let log = fx.open(10);
    for i in 0..25 {
        log.append_value("decision", event(i)).unwrap();
    }
    let lines = export(&log, 0);
    (log, lines)
}

fn seq_of(line: &str) -> u64 {
    serde_json::from_str::<Value>(line).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

#[test]
fn untouched_export_verifies() {
    let fx = Fixture::new();
    let (log, lines) = standard_log(&fx);
    assert_eq!(lines.len(), 27);
    let kinds: Vec<u64> = lines
        .iter()
        .filter(|l| l.contains("\"kind\":\"checkpoint\""))
        .map(|l| seq_of(l))
        .collect();
    assert_eq!(kinds, vec![10, 21]);
    let report = verify(&lines, &log.public_key_hex()).unwrap();
    assert_eq!(
        report,
        VerifyReport {
            entries: 27,
            checkpoints: 2,
            first_seq: 0,
            last_seq: 26,
            last_signed_seq: report.last_signed_seq,
            signed_by: signers::parse_key(&log.public_key_hex()),
            key_rotations: 0,
            archived_before: None,
        }
    );
    assert!(report.last_signed_seq.is_some_and(|s| s <= 26));
    assert_eq!(log.verify_live().unwrap(), report);
    // First entry chains from 64 zeros; checkpoint fields are as documented.
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["prev"], GENESIS_PREV);
    assert_eq!(first["kind"], "decision");
    let cp: Value = serde_json::from_str(&lines[10]).unwrap();
    assert_eq!(cp["size"], 10);
    assert_eq!(cp["origin"], "airlock-test");
    assert_eq!(cp["head"], cp["prev"]);
    assert_eq!(
        cp["head"].as_str().unwrap(),
        hex::encode(entry_hash(lines[9].as_bytes()))
    );
    // A partial export verifies on its own.
    let tail = export(&log, 12);
    let r = verify(&tail, &log.public_key_hex()).unwrap();
    assert_eq!((r.first_seq, r.last_seq, r.checkpoints), (12, 26, 1));
    // entries() agrees with the export.
    let parsed = log.entries(20).unwrap();
    assert_eq!(parsed.len(), 7);
    assert_eq!(parsed[0]["seq"], 20);
    // Empty input is a valid (empty) log.
    assert_eq!(
        verify_lines(Cursor::new(Vec::new()), &log.public_key_hex())
            .unwrap()
            .entries,
        0
    );
}

fn edit(lines: &[String], idx: usize, from: &str, to: &str) -> Vec<String> {
    let mut out = lines.to_vec();
    assert!(out[idx].contains(from), "{}", out[idx]);
    out[idx] = out[idx].replacen(from, to, 1);
    assert_eq!(out[idx].len(), lines[idx].len(), "one-byte edit");
    out
}

#[test]
fn one_byte_edit_fails_and_names_the_seq() {
    let fx = Fixture::new();
    let (log, lines) = standard_log(&fx);
    let pk = log.public_key_hex();

    // In an event's value, mid-chain.
    let err = verify(&edit(&lines, 3, "aaaa", "aaba"), &pk).unwrap_err();
    assert_eq!(err.seq, Some(3), "{err}");
    assert_eq!(err.line, 4);
    assert!(
        err.to_string().starts_with("broken at seq 3 (line 4): "),
        "{err}"
    );

    // The entry a checkpoint signs over.
    let err = verify(&edit(&lines, 9, "approved", "approveD"), &pk).unwrap_err();
    assert_eq!(err.seq, Some(9), "{err}");

    // An entry's prev field.
    let prev5 = serde_json::from_str::<Value>(&lines[5]).unwrap()["prev"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bad = prev5.clone().into_bytes();
    bad[10] = if bad[10] == b'0' { b'1' } else { b'0' };
    let bad = String::from_utf8(bad).unwrap();
    let err = verify(&edit(&lines, 5, &prev5, &bad), &pk).unwrap_err();
    assert_eq!(err.seq, Some(5), "{err}");

    // A checkpoint's signed size and its signature.
    let err = verify(&edit(&lines, 21, "\"size\":21", "\"size\":20"), &pk).unwrap_err();
    assert_eq!(err.seq, Some(21), "{err}");
    let sig = serde_json::from_str::<Value>(&lines[10]).unwrap()["sig"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bad_sig = sig.clone().into_bytes();
    bad_sig[5] = if bad_sig[5] == b'A' { b'B' } else { b'A' };
    let bad_sig = String::from_utf8(bad_sig).unwrap();
    let err = verify(&edit(&lines, 10, &sig, &bad_sig), &pk).unwrap_err();
    assert_eq!(err.seq, Some(10), "{err}");

    // The seq itself.
    let err = verify(&edit(&lines, 6, "\"seq\":6", "\"seq\":7"), &pk).unwrap_err();
    assert_eq!(err.seq, Some(6), "{err}");

    // Non-canonical whitespace, and a line that is no longer JSON (named by line).
    let mut spaced = lines.clone();
    spaced[4] = spaced[4].replacen("\"n\":4", "\"n\": 4", 1);
    let err = verify(&spaced, &pk).unwrap_err();
    assert_eq!(err.seq, Some(4), "{err}");
    let mut broken = lines.clone();
    broken[4] = broken[4].replacen('{', "[", 1);
    let err = verify(&broken, &pk).unwrap_err();
    assert_eq!((err.seq, err.line), (None, 5), "{err}");
    assert!(err.to_string().starts_with("broken at line 5: "), "{err}");
}

/// Seqs at the top of the range: nothing may follow seq u64::MAX (the successor used to be
/// computed with an overflow: a panic in debug builds, a wrap to seq 0 in release).
/// Found while writing the `store_codec` fuzz target (docs/fuzzing.md).
#[test]
fn no_entry_after_the_largest_seq() {
    let pk = hex::encode([7u8; 32]);
    let line = |seq: u64, prev: &str| {
        let v = json!({"kind": "x", "prev": prev, "seq": seq, "ts": "t"});
        String::from_utf8(canonical_bytes(&v)).unwrap()
    };
    let after = |l: &str, seq: u64| line(seq, &hex::encode(entry_hash(l.as_bytes())));
    let max = line(u64::MAX, GENESIS_PREV);
    let below = line(u64::MAX - 1, GENESIS_PREV);
    // Ok((first_seq, last_seq)) or Err(line of the break)
    type Want = Result<(u64, u64), usize>;
    let cases: Vec<(Vec<String>, Want)> = vec![
        (vec![max.clone()], Ok((u64::MAX, u64::MAX))),
        (vec![max.clone(), after(&max, 0)], Err(2)),
        (vec![max.clone(), "{}".into()], Err(2)),
        (vec![max.clone(), "not json".into()], Err(2)),
        (
            vec![below.clone(), after(&below, u64::MAX)],
            Ok((u64::MAX - 1, u64::MAX)),
        ),
    ];
    for (i, (lines, want)) in cases.into_iter().enumerate() {
        let got = verify(&lines, &pk)
            .map(|r| (r.first_seq, r.last_seq))
            .map_err(|e| e.line);
        assert_eq!(got, want, "case {i}");
    }
}

#[test]
fn deleting_an_entry_fails() {
    let fx = Fixture::new();
    let (log, mut lines) = standard_log(&fx);
    lines.remove(3);
    let err = verify(&lines, &log.public_key_hex()).unwrap_err();
    assert_eq!(err.seq, Some(3), "{err}");
}

#[test]
fn reordering_two_entries_fails() {
    let fx = Fixture::new();
    let (log, mut lines) = standard_log(&fx);
    lines.swap(3, 4);
    let err = verify(&lines, &log.public_key_hex()).unwrap_err();
    assert_eq!(err.seq, Some(3), "{err}");
}

/// A checkpoint kept elsewhere catches a cut tail and a log rebuilt with the same key; the
/// export is read in one pass (the entry the checkpoint covers last is hashed as it goes by).
#[test]
fn a_trusted_checkpoint_catches_a_cut_tail_and_a_rebuilt_log() {
    let fx = Fixture::new();
    let (log, lines) = standard_log(&fx);
    let pk = log.public_key_hex();
    let trusted = lines[10].clone();
    let check = |lines: &[String]| {
        let mut text = lines.join("\n");
        text.push('\n');
        verify_lines_with_checkpoint(Cursor::new(text.into_bytes()), &pk, trusted.as_bytes())
    };
    check(&lines).unwrap();
    let err = check(&lines[..9]).unwrap_err();
    assert!(err.reason.contains("the tail was truncated"), "{err}");
    // Another store, the same key: a chain that verifies on its own, but not the one signed.
    let other = crate::store::open(Backend::Redb, &fx.dir.path().join("db2")).unwrap();
    let opts = AuditOptions {
        checkpoint_every: 10,
        ..AuditOptions::default()
    };
    let rebuilt =
        AuditLog::open_with_anchor_check(other, &fx.key_path(), "airlock-test".into(), opts, false)
            .unwrap();
    for i in 0..25 {
        rebuilt.append_value("decision", event(100 + i)).unwrap();
    }
    let forged = export(&rebuilt, 0);
    verify(&forged, &pk).unwrap();
    let err = check(&forged).unwrap_err();
    assert_eq!(err.seq, Some(9), "{err}");
    assert!(err.reason.contains("the log was rewritten"), "{err}");
}

#[test]
fn truncation_before_a_checkpoint_fails() {
    let fx = Fixture::new();
    let (log, lines) = standard_log(&fx);
    // The checkpoint at seq 10 covers 10 entries; delete entries 5..=9 and everything after it.
    let mut cut: Vec<String> = lines[..=10].to_vec();
    cut.drain(5..=9);
    let err = verify(&cut, &log.public_key_hex()).unwrap_err();
    assert_eq!(err.seq, Some(5), "{err}");
    assert!(err.reason.contains("truncated"), "{err}");
    // And with the rest of the file kept.
    let mut cut = lines.clone();
    cut.drain(5..=9);
    assert_eq!(
        verify(&cut, &log.public_key_hex()).unwrap_err().seq,
        Some(5)
    );
}

#[test]
fn wrong_public_key_fails() {
    let fx = Fixture::new();
    let (_log, lines) = standard_log(&fx);
    let other = Fixture::new().open(10).public_key_hex();
    let err = verify(&lines, &other).unwrap_err();
    assert_eq!(err.seq, Some(10), "{err}");
    assert!(err.reason.contains("signature"), "{err}");
    let err = verify(&lines, "abcd").unwrap_err();
    assert_eq!(err.seq, None);
}

#[test]
fn reopening_continues_the_chain() {
    let fx = Fixture::new();
    let pk;
    {
        let log = fx.open(3);
        pk = log.public_key_hex();
        for i in 0..5 {
            log.append_value("decision", event(i)).unwrap();
        }
        // 0,1,2 cp3, 4,5 -> next seq 6
    }
    let before = {
        let log = fx.open(3);
        let lines = export(&log, 0);
        assert_eq!(lines.len(), 6);
        assert_eq!(log.public_key_hex(), pk);
        let seq = log.append_value("decision", event(5)).unwrap();
        assert_eq!(seq, 6);
        // Two entries were pending before the reopen, so this third one triggers a checkpoint.
        let all = export(&log, 0);
        assert_eq!(all.len(), 8);
        let e6: Value = serde_json::from_str(&all[6]).unwrap();
        assert_eq!(
            e6["prev"].as_str().unwrap(),
            hex::encode(entry_hash(all[5].as_bytes()))
        );
        assert_eq!(seq_of(&all[7]), 7);
        assert!(all[7].contains("\"kind\":\"checkpoint\""));
        all
    };
    let log = fx.open(3);
    log.append_value("decision", event(6)).unwrap();
    let all = export(&log, 0);
    assert_eq!(&all[..8], &before[..]);
    let report = verify(&all, &pk).unwrap();
    assert_eq!((report.entries, report.checkpoints), (9, 2));
    log.verify_live().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(fx.key_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn concurrent_appends_form_one_valid_chain() {
    let fx = Fixture::new();
    let log = Arc::new(fx.open(7));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..20)
                    .map(|i| log.append_value("decision", event(t * 100 + i)).unwrap())
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 160);
    let lines = export(&log, 0);
    let report = verify(&lines, &log.public_key_hex()).unwrap();
    assert_eq!(report.entries, 160 + report.checkpoints);
    // Group commit may write several entries at once, so a checkpoint comes after at least 7.
    assert!((1..=160 / 7).contains(&report.checkpoints), "{report:?}");
    log.verify_live().unwrap();
}

#[test]
fn append_all_writes_in_order_and_refuses_bad_events_alone() {
    let fx = Fixture::new();
    let log = Arc::new(fx.open(0));
    // Another writer at the same time: the batch still gets consecutive, ordered seqs.
    let other = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for i in 0..50 {
                log.append_value("decision", event(1000 + i)).unwrap();
            }
            50
        })
    };
    let results = log.append_values(vec![
        ("decision", event(1)),
        ("checkpoint", event(2)),
        ("decision", json!("not an object")),
        ("decision", event(3)),
        ("audit_gap", json!({"skipped_allow_records": 4})),
    ]);
    assert_eq!(other.join().unwrap(), 50);
    assert_eq!(results.len(), 5);
    assert!(
        matches!(results[1], Err(AuditError::InvalidEvent(_))),
        "{results:?}"
    );
    assert!(
        matches!(results[2], Err(AuditError::InvalidEvent(_))),
        "{results:?}"
    );
    let seqs: Vec<u64> = [0, 3, 4]
        .iter()
        .map(|&i| *results[i].as_ref().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(log.append_values(Vec::new()).is_empty());
    let lines = export(&log, 0);
    assert_eq!(verify(&lines, &log.public_key_hex()).unwrap().entries, 53);
    log.verify_live().unwrap();
}

#[test]
fn checkpoint_every_and_explicit_checkpoints() {
    let fx = Fixture::new();
    let log = fx.open(4);
    assert_eq!(
        log.checkpoint().unwrap(),
        None,
        "empty log: nothing to sign"
    );
    for i in 0..4 {
        assert_eq!(log.append_value("decision", event(i)).unwrap(), i as u64);
    }
    let cp = &log.entries(4).unwrap()[0];
    assert_eq!(cp["kind"], "checkpoint");
    assert_eq!(cp["size"], 4);
    assert_eq!(
        log.checkpoint().unwrap(),
        None,
        "nothing since the last checkpoint"
    );
    assert_eq!(log.append_value("decision", event(4)).unwrap(), 5);
    assert_eq!(log.checkpoint().unwrap(), Some(6));
    assert_eq!(log.checkpoint().unwrap(), None);
    // 0 disables the count trigger.
    let fx2 = Fixture::new();
    let log2 = fx2.open(0);
    for i in 0..10 {
        log2.append_value("decision", event(i)).unwrap();
    }
    assert_eq!(log2.checkpoint().unwrap(), Some(10));
    verify(&export(&log, 0), &log.public_key_hex()).unwrap();
    verify(&export(&log2, 0), &log2.public_key_hex()).unwrap();
}

/// A store whose audit writes can be made to fail.
struct FlakyStore {
    inner: Arc<dyn Store>,
    fail: AtomicBool,
    /// Armed: the next commit lands, then reports a failure (a connection lost during COMMIT).
    land_then_fail: AtomicBool,
}

impl Store for FlakyStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(tree, key)
    }
    fn commit(&self, batches: Vec<crate::store::Batch>) -> Result<Vec<bool>, StoreError> {
        let audit = batches
            .iter()
            .flat_map(|b| &b.writes)
            .any(|w| matches!(w, crate::store::Write::Put(Tree::Audit, ..)));
        if audit && self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Full("test".into()));
        }
        let done = self.inner.commit(batches);
        if self.land_then_fail.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Io("connection lost during COMMIT".into()));
        }
        done
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
fn failed_writes_fail_closed_without_advancing() {
    let fx = Fixture::new();
    let flaky = Arc::new(FlakyStore {
        inner: fx.store(),
        fail: AtomicBool::new(false),
        land_then_fail: AtomicBool::new(false),
    });
    let log = fx.open_on(flaky.clone(), 3);
    log.append_value("decision", event(0)).unwrap();
    log.append_value("decision", event(1)).unwrap();
    flaky.fail.store(true, Ordering::SeqCst);
    assert!(matches!(
        log.append_value("decision", event(2)),
        Err(AuditError::Store(StoreError::Full(_)))
    ));
    assert!(log.checkpoint().is_err());
    flaky.fail.store(false, Ordering::SeqCst);
    assert_eq!(log.append_value("decision", event(2)).unwrap(), 2);
    assert_eq!(
        log.entries(0).unwrap().len(),
        4,
        "0,1,2 and the checkpoint at 3"
    );
    verify(&export(&log, 0), &log.public_key_hex()).unwrap();
    log.verify_live().unwrap();
}

#[test]
fn existing_seq_is_a_conflict_not_an_overwrite() {
    let fx = Fixture::new();
    let store = fx.store();
    let log = fx.open_on(store.clone(), 100);
    log.append_value("decision", event(0)).unwrap();
    store
        .compare_and_swap(Tree::Audit, &seq_key(1), None, b"{}")
        .unwrap();
    assert!(matches!(
        log.append_value("decision", event(1)),
        Err(AuditError::Conflict(1))
    ));
    assert_eq!(store.get(Tree::Audit, &seq_key(1)).unwrap().unwrap(), b"{}");
    assert!(log.verify_live().is_err());
}

#[test]
fn reserved_kinds_and_fields_are_rejected() {
    let fx = Fixture::new();
    let log = fx.open(100);
    for (kind, ev) in [
        ("checkpoint", json!({})),
        ("", json!({})),
        ("decision", json!({"seq": 1})),
        ("decision", json!({"prev": "x"})),
        ("decision", json!([1, 2])),
    ] {
        assert!(matches!(
            log.append_value(kind, ev),
            Err(AuditError::InvalidEvent(_))
        ));
    }
    assert!(log.entries(0).unwrap().is_empty());
    assert!(AuditLog::open(
        fx.store_second(),
        &fx.key_path(),
        "two\nlines".into(),
        AuditOptions::default()
    )
    .is_err());
}

impl Fixture {
    fn store_second(&self) -> Arc<dyn Store> {
        crate::store::open(Backend::Redb, &self.dir.path().join("db2")).unwrap()
    }
}

fn write_key(path: &Path, bytes: &[u8], mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = mode;
}

#[test]
fn key_files_der_pem_permissions_and_mismatch() {
    let rng = ring::rand::SystemRandom::new();
    let der = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let expected_pk = hex::encode(
        ring::signature::KeyPair::public_key(&Ed25519KeyPair::from_pkcs8(der.as_ref()).unwrap())
            .as_ref(),
    );

    // DER key, mode 0600: used as is.
    let fx = Fixture::new();
    write_key(&fx.key_path(), der.as_ref(), 0o600);
    let log = fx.open(100);
    assert_eq!(log.public_key_hex(), expected_pk);
    assert_eq!(
        log.store.get(Tree::Meta, PUBKEY_META_KEY).unwrap(),
        Some(expected_pk.clone().into_bytes())
    );
    drop(log);

    // The same key as PEM also opens this store.
    use base64::Engine as _;
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der.as_ref())
    );
    write_key(&fx.key_path(), pem.as_bytes(), 0o600);
    assert_eq!(fx.open(100).public_key_hex(), expected_pk);

    // A group-readable key is refused.
    #[cfg(unix)]
    {
        write_key(&fx.key_path(), pem.as_bytes(), 0o640);
        let err = AuditLog::open(
            fx.store(),
            &fx.key_path(),
            "o".into(),
            AuditOptions::default(),
        );
        assert!(matches!(err, Err(AuditError::Key { .. })));
    }

    // A different key for the same store is refused; so is a missing one.
    let other = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    write_key(&fx.key_path(), other.as_ref(), 0o600);
    let err = AuditLog::open(
        fx.store(),
        &fx.key_path(),
        "o".into(),
        AuditOptions::default(),
    );
    assert!(matches!(err, Err(AuditError::Key { .. })));
    std::fs::remove_file(fx.key_path()).unwrap();
    let err = AuditLog::open(
        fx.store(),
        &fx.key_path(),
        "o".into(),
        AuditOptions::default(),
    );
    assert!(matches!(err, Err(AuditError::Key { .. })));
    assert!(
        !fx.key_path().exists(),
        "no new key is minted for an existing log"
    );

    // Garbage is refused.
    let fx = Fixture::new();
    write_key(&fx.key_path(), b"not a key", 0o600);
    let err = AuditLog::open(
        fx.store(),
        &fx.key_path(),
        "o".into(),
        AuditOptions::default(),
    );
    assert!(matches!(err, Err(AuditError::Key { .. })));
}

#[test]
fn send_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<AuditLog>();
}

#[tokio::test]
async fn timer_writes_checkpoints_when_entries_arrived() {
    let fx = Fixture::new();
    let opts = AuditOptions {
        checkpoint_every: 0,
        checkpoint_interval: std::time::Duration::from_millis(50),
    };
    let log = Arc::new(AuditLog::open(fx.store(), &fx.key_path(), "t".into(), opts).unwrap());
    let timer = log.spawn_checkpoint_timer();
    log.append_value("decision", event(0)).unwrap();
    let mut found = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let entries = log.entries(1).unwrap();
        if let Some(cp) = entries.first() {
            assert_eq!(cp["kind"], "checkpoint");
            found = true;
            break;
        }
    }
    assert!(found, "timer wrote no checkpoint");
    // Nothing new: no further checkpoints.
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(log.entries(0).unwrap().len(), 2);
    timer.abort();
}

#[test]
fn append_with_commits_the_callers_writes_only_with_the_entry() {
    let fx = Fixture::new();
    let store = fx.store();
    let log = fx.open_on(store.clone(), 0);
    let gap = || {
        Event::AuditGap(event::AuditGap {
            skipped_allow_records: 1,
            skipped_block_records: 0,
            reason: "test",
            agent: None,
        })
    };
    let mut with = Batch::default();
    with.expect(Tree::Reviews, b"r1", None)
        .put(Tree::Reviews, b"r1", b"held");
    assert_eq!(log.append_with(gap(), with).unwrap(), Beside::Applied);
    assert_eq!(
        store.get(Tree::Reviews, b"r1").unwrap().as_deref(),
        Some(&b"held"[..])
    );
    // An expectation that fails: the entry is written, the caller's writes are not.
    let mut clash = Batch::default();
    clash
        .expect(Tree::Reviews, b"r1", None)
        .put(Tree::Reviews, b"r1", b"again")
        .put(Tree::Meta, b"side", b"x");
    assert_eq!(
        log.append_with(gap(), clash).unwrap(),
        Beside::ExpectationFailed
    );
    assert_eq!(
        store.get(Tree::Reviews, b"r1").unwrap().as_deref(),
        Some(&b"held"[..])
    );
    assert_eq!(store.get(Tree::Meta, b"side").unwrap(), None);
    assert_eq!(export(&log, 0).len(), 2, "both entries written");
    // A failing store: neither lands.
    let flaky = Arc::new(FlakyStore {
        inner: store.clone(),
        fail: AtomicBool::new(true),
        land_then_fail: AtomicBool::new(false),
    });
    drop(log);
    let log = fx.open_on(flaky, 0);
    let mut lost = Batch::default();
    lost.put(Tree::Reviews, b"r2", b"held");
    assert!(log.append_with(gap(), lost).is_err());
    assert_eq!(store.get(Tree::Reviews, b"r2").unwrap(), None);
}

/// A commit that landed but reported a failure (a connection lost during COMMIT): the entries
/// are read back and never chained a second time, and the caller's writes count as applied,
/// maybe not for good (`Unflushed`), when they read back as written (a hold stored pending is
/// not answered "not held").
#[test]
fn a_commit_that_landed_but_failed_is_not_written_twice() {
    let fx = Fixture::new();
    let store = fx.store();
    let flaky = Arc::new(FlakyStore {
        inner: store.clone(),
        fail: AtomicBool::new(false),
        land_then_fail: AtomicBool::new(false),
    });
    let log = fx.open_on(flaky.clone(), 0);
    let gap = || {
        Event::AuditGap(event::AuditGap {
            skipped_allow_records: 1,
            skipped_block_records: 0,
            reason: "test",
            agent: None,
        })
    };
    log.append_value("decision", event(0)).unwrap();
    let mut with = Batch::default();
    with.expect(Tree::Reviews, b"r1", None)
        .put(Tree::Reviews, b"r1", b"held");
    flaky.land_then_fail.store(true, Ordering::SeqCst);
    assert_eq!(log.append_with(gap(), with).unwrap(), Beside::Unflushed);
    let mut clash = Batch::default();
    clash
        .expect(Tree::Reviews, b"r1", None)
        .put(Tree::Reviews, b"r1", b"again");
    flaky.land_then_fail.store(true, Ordering::SeqCst);
    assert_eq!(
        log.append_with(gap(), clash).unwrap(),
        Beside::ExpectationFailed
    );
    log.append_value("decision", event(3)).unwrap();
    let lines = export(&log, 0);
    assert_eq!(lines.len(), 4, "each entry once: {lines:#?}");
    assert_eq!(
        store.get(Tree::Reviews, b"r1").unwrap().as_deref(),
        Some(&b"held"[..])
    );
    verify(&lines, &log.public_key_hex()).unwrap();
}

/// A checkpoint whose commit was reported failed but landed may not be durable (a flush that
/// failed): the anchor must not name it; the next checkpoint that commits moves it.
#[test]
fn a_checkpoint_that_landed_but_failed_does_not_move_the_anchor() {
    let fx = Fixture::new();
    let flaky = Arc::new(FlakyStore {
        inner: fx.store(),
        fail: AtomicBool::new(false),
        land_then_fail: AtomicBool::new(false),
    });
    let log = fx.open_on(flaky.clone(), 2);
    log.append_value("decision", event(0)).unwrap();
    flaky.land_then_fail.store(true, Ordering::SeqCst);
    // Completes the count: a checkpoint is chained into the same commit.
    log.append_value("decision", event(1)).unwrap();
    assert_eq!(
        export(&log, 0).len(),
        3,
        "the entry and its checkpoint landed"
    );
    assert!(
        !log.anchor_path().exists(),
        "the anchor names a checkpoint whose commit failed"
    );
    log.append_value("decision", event(2)).unwrap();
    log.append_value("decision", event(3)).unwrap();
    let anchor = std::fs::read_to_string(log.anchor_path()).unwrap();
    assert!(anchor.contains("\"seq\":5"), "{anchor}");
}

#[test]
fn logs_of_two_instances_on_one_store_keep_one_chain() {
    // Two logs on one store stand for two instances sharing a database: each appends after
    // the entries the other stored, so the chain stays linear and dense, checkpoints included.
    let fx = Fixture::new();
    let store = fx.store();
    let logs = [
        Arc::new(fx.open_on(store.clone(), 7)),
        Arc::new(fx.open_on(store.clone(), 7)),
    ];
    for i in 0..30 {
        logs[i % 3 / 2].append_value("decision", event(i)).unwrap();
    }
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = logs[t % 2].clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    log.append_value("decision", event(t * 100 + i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let report = logs[1].verify_live().unwrap();
    assert!(report.checkpoints > 0, "{report:?}");
    assert_eq!(
        report.entries - report.checkpoints,
        30 + 4 * 50,
        "{report:?}"
    );
    let lines = export(&logs[0], 0);
    assert_eq!(
        verify(&lines, &logs[0].public_key_hex()).unwrap().entries,
        report.entries
    );
}

/// A sweep's expiries are one append of 2,048 events: one commit, checkpoints inside it after
/// every `checkpoint_every` entries (they once cost a commit of their own after each group).
#[test]
fn a_bulk_append_is_one_commit_with_its_checkpoints_inside() {
    let fx = Fixture::new();
    let (counting, commits) = crate::store::testing::Counting::new(fx.store());
    let log = fx.open_on(Arc::new(counting), 100);
    let before = commits.get();
    let seqs: Vec<u64> = log
        .append_values((0..2048).map(|i| ("decision", event(i))).collect())
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(commits.get() - before, 1);
    // Entry 100 (seq 100) is the checkpoint over the first 100; the 101st event gets seq 101.
    assert_eq!(&seqs[..2], &[0, 1]);
    assert_eq!(seqs[99], 99);
    assert_eq!(seqs[100], 101);
    assert_eq!(seqs[2047], 2047 + 20);
    let lines = export(&log, 0);
    let checkpoints: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == "checkpoint")
        .collect();
    assert_eq!(checkpoints.len(), 20);
    assert_eq!(checkpoints[0]["seq"], 100);
    assert_eq!(checkpoints[0]["size"], 100);
    assert_eq!(checkpoints[1]["seq"], 201);
    assert_eq!(verify(&lines, &log.public_key_hex()).unwrap().entries, 2068);
    log.verify_live().unwrap();
}

/// Review of session 22: a group commit took up to 2,048 queued entries whatever the writes
/// they carry (2,048 holds of 1 MiB bodies were one transaction of about 3 GB, past
/// PostgreSQL's 1 GiB limit). It now also stops at [`MAX_BATCH_BYTES`], after at least one.
#[test]
fn a_group_commit_is_capped_by_the_bytes_it_carries() {
    let mb = vec![0u8; 1024 * 1024];
    let queued = |n: usize, value: &[u8]| -> Vec<Queued> {
        (0..n)
            .map(|i| {
                let mut b = Batch::default();
                b.put(Tree::Reviews, &i.to_be_bytes(), value);
                Queued {
                    ticket: i as u64,
                    kind: "review".into(),
                    fields: Map::new(),
                    with: Some(With::Only(b)),
                }
            })
            .collect()
    };
    let per_group = MAX_BATCH_BYTES / mb.len();
    assert_eq!(group_size(&queued(200, &mb)), per_group - 1);
    // One entry larger than the cap goes alone.
    let huge = vec![0u8; MAX_BATCH_BYTES + 1];
    assert_eq!(group_size(&queued(3, &huge)), 1);
    // Small ones fill a group by count.
    assert_eq!(group_size(&queued(3000, b"x")), MAX_BATCH);
    assert_eq!(group_size(&[]), 0);
}

/// Review of session 22: resends that joined a review were filed with its own entries before
/// they got an index of their own, so a review pending at the upgrade with many of them still
/// could not be sent, and its resend cap started from zero. Opening the log moves them.
#[test]
fn resends_filed_with_a_reviews_own_entries_move_to_its_joins() {
    let fx = Fixture::new();
    let store = fx.store();
    {
        let log = fx.open_on(store.clone(), 100);
        log.append_value(
            "decision",
            json!({"review_id": "rev_1", "outcome": "escalate"}),
        )
        .unwrap();
        for _ in 0..3 {
            log.append_value(
                "decision",
                json!({"review_id": "rev_1", "outcome": "escalate", "joined": true}),
            )
            .unwrap();
        }
    }
    // The layout before: every entry under the review's own key, the index marked built.
    let mut batch = Batch::default();
    for seq in 1..4 {
        batch.delete(Tree::Index, &join_key("rev_1", seq));
        batch.put(Tree::Index, &review_key("rev_1", seq), &[]);
    }
    batch.delete(Tree::Meta, REVIEW_INDEX_BUILT);
    batch.put(Tree::Meta, b"index:audit-by-review:v1", b"1");
    store.apply(batch).unwrap();
    let log = fx.open_on(store, 100);
    assert_eq!(log.entries_for_review("rev_1", 100).unwrap().len(), 1);
    assert_eq!(log.join_count("rev_1", 100).unwrap(), 3);
}
