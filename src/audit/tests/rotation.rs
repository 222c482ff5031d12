//! Signing key rotation: the handoff in one transaction, verification across it, a log still
//! holding the retired key refused, and every state a cut-short rotation can leave finished or
//! refused.

use base64::Engine as _;
use ring::signature::KeyPair as _;

use super::*;
use crate::audit::rotate::next_path_for;

fn opts(every: u64) -> AuditOptions {
    AuditOptions {
        checkpoint_every: every,
        ..AuditOptions::default()
    }
}

impl Fixture {
    fn next_path(&self) -> PathBuf {
        next_path_for(&self.key_path())
    }
    fn rotate(&self) -> Result<Rotation, AuditError> {
        AuditLog::rotate_key(
            self.store(),
            &self.key_path(),
            "airlock-test".into(),
            opts(3),
        )
    }
    fn open_err(&self) -> AuditError {
        match AuditLog::open(self.store(), &self.key_path(), "o".into(), opts(3)) {
            Err(e) => e,
            Ok(_) => panic!("opened"),
        }
    }
    /// A log of `n` entries, closed; returns its public key.
    fn log_of(&self, n: usize) -> String {
        let log = self.open(3);
        for i in 0..n {
            log.append_value("decision", event(i)).unwrap();
        }
        log.public_key_hex()
    }
}

fn pubkey_in(path: &Path) -> String {
    key::public_key_hex(&key::load(path).unwrap().expect("a key"))
}

fn rotated(r: Rotation) -> (String, String, u64, u64) {
    match r {
        Rotation::Rotated {
            old_pubkey,
            new_pubkey,
            rotation_seq,
            checkpoint_seq,
        } => (old_pubkey, new_pubkey, rotation_seq, checkpoint_seq),
        other => panic!("not a rotation: {other:?}"),
    }
}

fn verify_keys(lines: &[String], keys: &[&str]) -> Result<VerifyReport, VerifyError> {
    let text = format!("{}\n", lines.join("\n"));
    verify_lines(Cursor::new(text.into_bytes()), keys)
}

#[test]
fn a_rotation_hands_over_in_one_commit_and_verifies_across_it() {
    let fx = Fixture::new();
    let old = fx.log_of(5); // 0, 1, 2, checkpoint 3, 4, 5
    let (old_pubkey, new, rotation_seq, checkpoint_seq) = rotated(fx.rotate().unwrap());
    assert_eq!(old_pubkey, old);
    assert_ne!(new, old);
    assert_eq!(
        (rotation_seq, checkpoint_seq),
        (6, 8),
        "key_rotated, old's checkpoint, new's"
    );
    assert_eq!(pubkey_in(&fx.key_path()), new);
    assert!(!fx.next_path().exists());
    let anchor = anchor::read(&anchor_path_for(&fx.key_path())).unwrap();
    assert_eq!(anchor.expect("anchor").seq, checkpoint_seq);

    let log = fx.open(3);
    assert_eq!(log.public_key_hex(), new);
    assert_eq!(
        rotate::retired(log.store.as_ref()).unwrap(),
        vec![RetiredKey {
            pubkey: old.clone(),
            successor: new.clone(),
            rotation_seq
        }]
    );
    for i in 0..4 {
        log.append_value("decision", event(i)).unwrap();
    }
    let lines = export(&log, 0);
    let entry: Value = serde_json::from_str(&lines[6]).unwrap();
    assert_eq!(entry["kind"], KEY_ROTATED_KIND);
    assert_eq!(
        (&entry["old_pubkey"], &entry["new_pubkey"]),
        (&json!(old), &json!(new))
    );
    // Both keys, the current one last; the old key alone is refused (a log ending on it could
    // be written by whoever holds it), and so is the current key given first.
    let r = verify_keys(&lines, &[old.as_str(), new.as_str()]).unwrap();
    assert_eq!(r.key_rotations, 1);
    assert_eq!(r.signed_by_hex(), Some(new.clone()));
    for keys in [vec![old.as_str()], vec![new.as_str(), old.as_str()]] {
        let err = verify_keys(&lines, &keys).unwrap_err();
        assert!(err.reason.contains("not with the current key"), "{err}");
    }
    // The new key alone: not from the start, but from after the handoff.
    let err = verify(&lines, &new).unwrap_err();
    assert_eq!(err.seq, Some(3), "{err}");
    let r = verify(&export(&log, checkpoint_seq), &new).unwrap();
    assert_eq!((r.key_rotations, r.signed_by_hex()), (0, Some(new.clone())));
    let live = log.verify_live().unwrap();
    assert_eq!(live.key_rotations, 1);
}

/// Builds verifiable JSON lines by hand: entries chained, checkpoints signed by whichever key.
struct Forge {
    lines: Vec<String>,
}

impl Forge {
    fn new() -> Forge {
        Forge { lines: Vec::new() }
    }
    fn prev(&self) -> String {
        match self.lines.last() {
            Some(l) => hex::encode(entry_hash(l.as_bytes())),
            None => GENESIS_PREV.into(),
        }
    }
    fn push(&mut self, kind: &str, mut fields: Value) -> &mut Forge {
        let seq = self.lines.len() as u64;
        fields["seq"] = json!(seq);
        fields["prev"] = json!(self.prev());
        fields["ts"] = json!("2025-01-01T00:00:00.000Z");
        fields["kind"] = json!(kind);
        let bytes = canonical_bytes(&fields);
        self.lines.push(String::from_utf8(bytes).unwrap());
        self
    }
    fn entry(&mut self) -> &mut Forge {
        self.push("decision", json!({"n": 1}))
    }
    fn checkpoint(&mut self, key: &Ed25519KeyPair) -> &mut Forge {
        let (size, head) = (self.lines.len() as u64, self.prev());
        let sig = key.sign(checkpoint_signing_text("o", size, &head).as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(sig.as_ref());
        self.push(
            CHECKPOINT_KIND,
            json!({"origin": "o", "size": size, "head": head, "sig": sig}),
        )
    }
    fn rotation(&mut self, old: &str, new: &str) -> &mut Forge {
        self.push(
            KEY_ROTATED_KIND,
            json!({"old_pubkey": old, "new_pubkey": new}),
        )
    }
}

fn new_key() -> (Ed25519KeyPair, String) {
    let rng = ring::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
    let hex_key = hex::encode(pair.public_key().as_ref());
    (pair, hex_key)
}

fn reason(r: Result<VerifyReport, VerifyError>) -> (Option<u64>, String) {
    let e = r.unwrap_err();
    (e.seq, e.reason)
}

#[test]
fn the_verifier_follows_a_rotation_and_refuses_what_breaks_it() {
    let ((k1, h1), (k2, h2), (_, h3)) = (new_key(), new_key(), new_key());
    let mut f = Forge::new();
    f.entry().checkpoint(&k1).rotation(&h1, &h2).checkpoint(&k1);
    f.entry().checkpoint(&k2); // seqs 0..=5
    let good = f.lines.clone();
    assert_eq!(verify_keys(&good, &[&h1, &h2]).unwrap().key_rotations, 1);
    assert_eq!(
        verify_keys(&good, &[&h1, &h2]).unwrap().signed_by_hex(),
        Some(h2.clone())
    );

    // After the handoff the old key signs nothing: the message says so.
    let mut forged = Forge {
        lines: good.clone(),
    };
    forged.entry().checkpoint(&k1);
    for keys in [vec![h1.as_str()], vec![h1.as_str(), h2.as_str()]] {
        let (seq, why) = reason(verify_keys(&forged.lines, &keys));
        assert_eq!(seq, Some(7));
        assert!(
            why.contains("checkpoint signed with a retired key"),
            "{why}"
        );
    }
    // The handoff checkpoint must be the old key's.
    let mut f = Forge::new();
    f.entry().checkpoint(&k1).rotation(&h1, &h2).checkpoint(&k2);
    let (seq, why) = reason(verify_keys(&f.lines, &[&h1, &h2]));
    assert_eq!(seq, Some(3));
    assert!(why.contains("must be signed with the old key"), "{why}");
    // A rotation away from a key not in force.
    let mut f = Forge::new();
    f.entry().checkpoint(&k1).rotation(&h3, &h2);
    let (seq, why) = reason(verify_keys(&f.lines, &[&h1, &h3]));
    assert_eq!(seq, Some(2));
    assert!(why.contains("but the key in force is"), "{why}");
    // An export starting at the rotation: its old key must be given.
    let since: Vec<String> = good[2..].to_vec();
    assert!(verify_keys(&since, &[&h1, &h2]).is_ok());
    let (_, why) = reason(verify_keys(&since, &[&h2]));
    assert!(why.contains("not a given public key"), "{why}");
    // Without a rotation in the log, a second given key takes nothing over.
    let mut f = Forge::new();
    f.entry().checkpoint(&k1).entry().checkpoint(&k2);
    let (seq, why) = reason(verify_keys(&f.lines, &[&h1, &h2]));
    assert_eq!(seq, Some(3));
    assert!(why.contains("no key_rotated entry hands over"), "{why}");
    // One key, none rotated: the message callers know.
    let (_, why) = reason(verify_keys(&good[..2], &[&h3]));
    assert_eq!(
        why,
        "checkpoint signature does not verify with the given public key"
    );
}

#[test]
fn callers_cannot_append_a_key_rotation() {
    let fx = Fixture::new();
    let log = fx.open(3);
    let err = log
        .append_value(
            KEY_ROTATED_KIND,
            json!({"old_pubkey": "a", "new_pubkey": "b"}),
        )
        .unwrap_err();
    assert!(matches!(err, AuditError::InvalidEvent(_)), "{err}");
}

/// Two logs on one store stand for two instances on one database: the one still holding the
/// retired key stores entries (a later checkpoint of the new key signs them) but no checkpoint,
/// nor the entries that would land with one.
#[test]
fn a_log_still_holding_the_retired_key_signs_nothing() {
    let fx = Fixture::new();
    let store = fx.store();
    let running = fx.open_on(store.clone(), 3);
    let rotation = AuditLog::rotate_key(
        store.clone(),
        &fx.key_path(),
        "airlock-test".into(),
        opts(3),
    );
    let (old, new, _, _) = rotated(rotation.unwrap());
    assert_eq!(running.public_key_hex(), old);
    running.append_value("decision", event(1)).unwrap();
    running.append_value("decision", event(2)).unwrap();
    let stored = export(&running, 0).len();
    let err = running.append_value("decision", event(3)).unwrap_err();
    assert!(
        matches!(&err, AuditError::KeyRotated { ours, current } if *ours == old && *current == new),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("restart this instance with the new key file"));
    assert!(matches!(
        running.checkpoint(),
        Err(AuditError::KeyRotated { .. })
    ));
    assert_eq!(export(&running, 0).len(), stored, "nothing landed");
    let log = fx.open_on(store, 3);
    log.checkpoint().unwrap();
    let r = log.verify_live().unwrap();
    assert_eq!((r.key_rotations, r.signed_by_hex()), (1, Some(new)));
}

#[test]
fn a_next_key_left_by_a_run_cut_short_is_reused() {
    let fx = Fixture::new();
    fx.log_of(2);
    let (made, _) = key::load_or_create(&fx.next_path(), true).unwrap();
    let (_, new, _, _) = rotated(fx.rotate().unwrap());
    assert_eq!(new, key::public_key_hex(&made));
}

/// The store transaction landed, the rename did not: opening says how to finish; serve's
/// `finish_interrupted` and `rotate_key` finish it, and no third key is made.
#[test]
fn a_rotation_cut_short_before_the_rename_is_finished() {
    let fx = Fixture::new();
    let old = fx.log_of(4);
    let log = fx.open(3);
    let (next, _) = key::load_or_create(&fx.next_path(), true).unwrap();
    let new = key::public_key_hex(&next);
    let seq = log.commit_rotation(&new).unwrap();
    drop(log);
    let why = fx.open_err().to_string();
    assert!(
        why.contains("cut short") && why.contains("rotate-key"),
        "{why}"
    );
    assert!(why.contains(&format!("seq {seq}")), "{why}");

    match fx.rotate().unwrap() {
        Rotation::Finished {
            new_pubkey,
            rotation_seq,
            checkpoint_seq,
        } => {
            assert_eq!(
                (new_pubkey.as_str(), rotation_seq),
                (new.as_str(), Some(seq))
            );
            assert_eq!(checkpoint_seq, seq + 2);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pubkey_in(&fx.key_path()), new);
    assert!(!fx.next_path().exists());
    let log = fx.open(3);
    let r = verify_keys(&export(&log, 0), &[old.as_str(), new.as_str()]).unwrap();
    assert_eq!((r.key_rotations, r.signed_by_hex()), (1, Some(new)));
}

#[test]
fn serve_finishes_the_rename_of_a_rotation_cut_short() {
    let fx = Fixture::new();
    fx.log_of(1);
    let log = fx.open(3);
    let (next, _) = key::load_or_create(&fx.next_path(), true).unwrap();
    let new = key::public_key_hex(&next);
    log.commit_rotation(&new).unwrap();
    drop(log);
    let store = fx.store();
    let renamed = finish_interrupted_rotation(store.as_ref(), &fx.key_path()).unwrap();
    assert_eq!(renamed, Some(new.clone()));
    assert_eq!(fx.open_on(store, 3).public_key_hex(), new);
}

/// The new key's file is gone: the retired key left in the key file is refused, naming the
/// rotation and the key in force; `rotate_key` refuses too, without making another key.
#[test]
fn a_retired_key_whose_successor_is_lost_is_refused() {
    let fx = Fixture::new();
    fx.log_of(2);
    let log = fx.open(3);
    let (next, _) = key::load_or_create(&fx.next_path(), true).unwrap();
    let new = key::public_key_hex(&next);
    let seq = log.commit_rotation(&new).unwrap();
    drop(log);
    std::fs::remove_file(fx.next_path()).unwrap();
    let why = fx.open_err().to_string();
    assert!(
        why.contains(&format!("retired by the key rotation at seq {seq}")),
        "{why}"
    );
    assert!(why.contains(&format!("public key {new}")), "{why}");
    assert!(why.contains("never signs again"), "{why}");
    let err = fx.rotate().unwrap_err().to_string();
    assert!(err.contains("never signs again"), "{err}");
    assert!(!fx.next_path().exists(), "no third key");
    assert_eq!(
        finish_interrupted_rotation(fx.store().as_ref(), &fx.key_path()).unwrap(),
        None
    );
}

/// Renamed, but the new key has not signed: `rotate_key` signs with it and rotates nothing
/// more; run again, it rotates.
#[test]
fn a_rotation_cut_short_before_the_new_keys_checkpoint_is_finished() {
    let fx = Fixture::new();
    fx.log_of(2);
    let log = fx.open(3);
    let (next, _) = key::load_or_create(&fx.next_path(), true).unwrap();
    let new = key::public_key_hex(&next);
    log.commit_rotation(&new).unwrap();
    drop(log);
    crate::secret_file::rename_over(&fx.next_path(), &fx.key_path()).unwrap();
    assert!(
        matches!(fx.rotate().unwrap(), Rotation::Finished { new_pubkey, .. } if new_pubkey == new)
    );
    let (old, _, _, _) = rotated(fx.rotate().unwrap());
    assert_eq!(old, new);
    let log = fx.open(3);
    assert_eq!(log.verify_live().unwrap().key_rotations, 2);
    assert_eq!(rotate::retired(log.store.as_ref()).unwrap().len(), 2);
}

#[test]
fn a_next_key_that_is_in_force_or_retired_is_refused() {
    let fx = Fixture::new();
    fx.log_of(1);
    std::fs::copy(fx.key_path(), fx.next_path()).unwrap();
    let err = fx.rotate().unwrap_err().to_string();
    assert!(err.contains("the key in force"), "{err}");
    std::fs::remove_file(fx.next_path()).unwrap();
    let retired_key = std::fs::read(fx.key_path()).unwrap();
    fx.rotate().unwrap();
    write_key(&fx.next_path(), &retired_key, 0o600);
    let err = fx.rotate().unwrap_err().to_string();
    assert!(err.contains("a retired key"), "{err}");
}
