//! The anchor beside the key: written after each checkpoint's commit, never moved back; a store
//! whose tail was cut, or that holds another entry where the anchor points, is refused on open
//! until `accept_restore` records the restore in the log.

use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::audit::anchor;

impl Fixture {
    fn anchor_path(&self) -> PathBuf {
        self.dir.path().join("keys/audit.key.anchor")
    }
    fn anchor(&self) -> Anchor {
        anchor::read(&self.anchor_path())
            .unwrap()
            .expect("an anchor")
    }
    /// Opening must fail with an anchor error; returns its message.
    fn refused(&self) -> String {
        let opts = AuditOptions {
            checkpoint_every: 10,
            ..AuditOptions::default()
        };
        match AuditLog::open(self.store(), &self.key_path(), "airlock-test".into(), opts) {
            Err(AuditError::Anchor(m)) => AuditError::Anchor(m).to_string(),
            Err(e) => panic!("refused for another reason: {e}"),
            Ok(_) => panic!("opened a log its anchor does not match"),
        }
    }
    fn accept_restore(&self) -> RestoreAccepted {
        let opts = AuditOptions {
            checkpoint_every: 10,
            ..AuditOptions::default()
        };
        AuditLog::accept_restore(self.store(), &self.key_path(), "airlock-test".into(), opts)
            .unwrap()
    }
}

/// Deletes entries `from..` from the store, as anyone with write access to it could.
fn cut_tail(fx: &Fixture, from: u64, to: u64) {
    let store = fx.store();
    let mut batch = Batch::default();
    for seq in from..=to {
        batch.delete(Tree::Audit, &seq_key(seq));
    }
    assert!(store.apply(batch).unwrap());
}

fn hash_of(line: &str) -> String {
    hex::encode(entry_hash(line.as_bytes()))
}

#[test]
fn each_checkpoint_moves_the_anchor_to_it() {
    let fx = Fixture::new();
    let log = fx.open(3);
    assert!(!fx.anchor_path().exists(), "no checkpoint yet");
    for i in 0..3 {
        log.append_value("decision", event(i)).unwrap();
    }
    let lines = export(&log, 0);
    assert_eq!(fx.anchor().seq, 3);
    assert_eq!(fx.anchor().hash, hash_of(&lines[3]));
    assert_eq!(log.anchor_path(), fx.anchor_path());
    let mode = std::fs::metadata(fx.anchor_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    log.append_value("decision", event(3)).unwrap();
    assert_eq!(log.checkpoint().unwrap(), Some(5));
    let lines = export(&log, 0);
    assert_eq!(fx.anchor().seq, 5);
    assert_eq!(fx.anchor().hash, hash_of(&lines[5]));
    drop(log);
    fx.open(3);
}

#[test]
fn a_cut_tail_is_refused_naming_both_seqs() {
    let fx = Fixture::new();
    let (log, _) = standard_log(&fx); // checkpoints at 10 and 21, entries 0..=26
    drop(log);
    assert_eq!(fx.anchor().seq, 21);
    // The tail back to before the last checkpoint: what is left still verifies on its own.
    cut_tail(&fx, 15, 26);
    let msg = fx.refused();
    assert!(msg.contains("audit log ends at seq 14"), "{msg}");
    assert!(msg.contains("names seq 21"), "{msg}");
    assert!(
        msg.contains(&fx.anchor_path().display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("airlock audit accept-restore"), "{msg}");
    // All of it.
    cut_tail(&fx, 0, 14);
    let msg = fx.refused();
    assert!(msg.contains("audit log is empty"), "{msg}");
}

#[test]
fn an_older_copy_of_the_store_is_refused() {
    let fx = Fixture::new();
    let db = fx.dir.path().join("db");
    let backup = fx.dir.path().join("backup");
    let (log, _) = standard_log(&fx);
    drop(log);
    copy_dir(&db, &backup);
    let log = fx.open(10);
    for i in 0..10 {
        log.append_value("decision", event(100 + i)).unwrap();
    }
    drop(log);
    assert_eq!(fx.anchor().seq, 32);
    std::fs::remove_dir_all(&db).unwrap();
    copy_dir(&backup, &db);
    let msg = fx.refused();
    assert!(
        msg.contains("ends at seq 26") && msg.contains("names seq 32"),
        "{msg}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn another_entry_at_the_anchor_seq_is_refused() {
    let fx = Fixture::new();
    let (log, lines) = standard_log(&fx);
    drop(log);
    let forged = lines[21].replace("\"ts\":\"", "\"ts\":\"1");
    assert_ne!(forged, lines[21]);
    let store = fx.store();
    let mut batch = Batch::default();
    batch.put(Tree::Audit, &seq_key(21), forged.as_bytes());
    assert!(store.apply(batch).unwrap());
    drop(store);
    let msg = fx.refused();
    assert!(msg.contains("audit entry seq 21"), "{msg}");
    assert!(msg.contains(&hash_of(&lines[21])), "{msg}");
    assert!(msg.contains(&hash_of(&forged)), "{msg}");
}

#[test]
fn a_missing_anchor_opens_and_the_next_checkpoint_writes_it() {
    let fx = Fixture::new();
    let (log, _) = standard_log(&fx);
    drop(log);
    std::fs::remove_file(fx.anchor_path()).unwrap();
    let log = fx.open(10);
    assert!(!fx.anchor_path().exists(), "opening writes nothing");
    assert_eq!(log.checkpoint().unwrap(), Some(27));
    assert_eq!(fx.anchor().seq, 27);
}

#[test]
fn a_corrupt_or_foreign_writable_anchor_is_refused() {
    let fx = Fixture::new();
    let (log, _) = standard_log(&fx);
    drop(log);
    let good = std::fs::read(fx.anchor_path()).unwrap();
    std::fs::write(fx.anchor_path(), b"{\"seq\":21,").unwrap();
    let msg = fx.refused();
    assert!(
        msg.contains("audit anchor") && msg.contains("malformed"),
        "{msg}"
    );
    assert!(msg.contains("accept-restore"), "{msg}");
    std::fs::write(
        fx.anchor_path(),
        br#"{"seq":21,"hash":"zz","written_at":""}"#,
    )
    .unwrap();
    assert!(fx.refused().contains("not 64 hex digits"));
    std::fs::write(fx.anchor_path(), &good).unwrap();
    std::fs::set_permissions(fx.anchor_path(), std::fs::Permissions::from_mode(0o620)).unwrap();
    let msg = fx.refused();
    assert!(msg.contains("lets other users change it"), "{msg}");
    std::fs::set_permissions(fx.anchor_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    fx.open(10);
}

#[test]
fn accept_restore_is_logged_and_lets_the_log_open() {
    let fx = Fixture::new();
    let (log, lines) = standard_log(&fx);
    let pk = log.public_key_hex();
    drop(log);
    cut_tail(&fx, 15, 26);
    fx.refused();
    let accepted = fx.accept_restore();
    assert_eq!(accepted.anchor_seq, Some(21));
    assert_eq!(accepted.anchor_hash, Some(hash_of(&lines[21])));
    assert_eq!(accepted.log_end_seq, Some(14));
    // The entry at 15, then a checkpoint at 16 that the anchor now names (before the old 21).
    assert_eq!(fx.anchor().seq, 16);
    let log = fx.open(10);
    let entries = log.entries(15).unwrap();
    assert_eq!(entries[0]["kind"], "restore_accepted");
    assert_eq!(entries[0]["anchor_seq"], 21);
    assert_eq!(entries[0]["anchor_hash"], hash_of(&lines[21]).as_str());
    assert_eq!(entries[0]["log_end_seq"], 14);
    assert_eq!(entries[1]["kind"], "checkpoint");
    verify(&export(&log, 0), &pk).unwrap();
    log.verify_live().unwrap();
    drop(log);

    // A corrupt anchor is accepted the same way, its reason recorded.
    std::fs::write(fx.anchor_path(), b"garbage").unwrap();
    fx.refused();
    let accepted = fx.accept_restore();
    assert_eq!(accepted.anchor_seq, None);
    let reason = accepted.anchor_unreadable.unwrap_or_default();
    assert!(reason.starts_with("malformed"), "{reason}");
    assert_eq!(fx.anchor().seq, 18);
    fx.open(10);
}

#[test]
fn the_anchor_never_moves_back() {
    let fx = Fixture::new();
    let (log, lines) = standard_log(&fx);
    assert_eq!(fx.anchor().seq, 21);
    log.advance_anchor(10, hash_of(&lines[10]));
    assert_eq!(fx.anchor().seq, 21);
    drop(log);
    // Known from the file after a reopen, too.
    let log = fx.open(10);
    log.advance_anchor(10, hash_of(&lines[10]));
    assert_eq!(fx.anchor().seq, 21);
    assert_eq!(log.checkpoint().unwrap(), Some(27));
    assert_eq!(fx.anchor().seq, 27);
}

#[test]
fn a_failed_anchor_write_does_not_fail_the_append() {
    let fx = Fixture::new();
    let log = fx.open(3);
    // A directory where the anchor goes: the rename onto it fails.
    std::fs::create_dir_all(fx.anchor_path()).unwrap();
    for i in 0..3 {
        assert_eq!(log.append_value("decision", event(i)).unwrap(), i as u64);
    }
    assert_eq!(log.entries(3).unwrap()[0]["kind"], "checkpoint");
    assert!(fx.anchor_path().is_dir());
    // The next checkpoint tries again.
    std::fs::remove_dir(fx.anchor_path()).unwrap();
    log.append_value("decision", event(3)).unwrap();
    assert_eq!(log.checkpoint().unwrap(), Some(5));
    assert_eq!(fx.anchor().seq, 5);
}
