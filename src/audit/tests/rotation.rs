//! Key rotation as the verifier sees it: the handoff checkpoint, the retired key refused after
//! it, and `key_rotated` reserved for the log.

use base64::Engine as _;
use ring::signature::KeyPair as _;

use super::*;

fn verify_keys(lines: &[String], keys: &[&str]) -> Result<VerifyReport, VerifyError> {
    let text = format!("{}\n", lines.join("\n"));
    verify_lines(Cursor::new(text.into_bytes()), keys)
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
    assert_eq!(verify_keys(&good, &[&h1]).unwrap().key_rotations, 1);
    assert_eq!(
        verify_keys(&good, &[&h2, &h1]).unwrap().signed_by_hex(),
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
    assert!(verify_keys(&since, &[&h1]).is_ok());
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
