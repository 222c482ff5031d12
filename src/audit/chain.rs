//! The entry format shared by the writer and the verifier: canonical JSON bytes, the SHA-256
//! chain hash, RFC 3339 timestamps and the exact text a checkpoint signs.
//!
//! Canonical JSON is produced by our own serialiser (object keys sorted by their UTF-8 bytes, no
//! whitespace, strings and numbers escaped/printed by `serde_json`), so it does not depend on
//! whether serde_json's `preserve_order` feature happens to be enabled somewhere in the build.

use std::fmt::Write as _;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Kind of the signed checkpoint entries the log writes itself.
pub const CHECKPOINT_KIND: &str = "checkpoint";
/// Kind of the entry `airlock audit rotate-key` writes: from the checkpoint after it on, the
/// key it names (`new_pubkey`) signs in place of `old_pubkey`. Reserved for the log.
pub const KEY_ROTATED_KIND: &str = "key_rotated";
/// Fields the log adds to every entry; events must not carry them.
pub const RESERVED_FIELDS: [&str; 4] = ["seq", "prev", "ts", "kind"];
/// The `prev` of the first entry (seq 0).
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The canonical bytes of `value`: keys sorted, no whitespace.
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

/// The canonical bytes of the object `fields` with `added` (which take the place of any field
/// of the same name), without copying `fields`.
pub fn canonical_with(fields: &Map<String, Value>, added: &[(&str, &Value)]) -> Vec<u8> {
    let mut members: Vec<(&str, &Value)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .filter(|(k, _)| !added.iter().any(|(a, _)| a == k))
        .chain(added.iter().copied())
        .collect();
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::with_capacity(256);
    write_object(members, &mut out);
    out
}

/// `members` sorted by key.
fn write_object(members: Vec<(&str, &Value)>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (key, v)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // A string key serialises like any JSON string (escaping by serde_json).
        if serde_json::to_writer(&mut *out, key).is_err() {
            out.extend_from_slice(b"\"\"");
        }
        out.push(b':');
        write_canonical(v, out);
    }
    out.push(b'}');
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&str, &Value)> =
                map.iter().map(|(k, v)| (k.as_str(), v)).collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            write_object(members, out);
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    // Serialising a scalar `Value` into a Vec cannot fail (no I/O, no non-string map keys).
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// SHA-256 of an entry's canonical bytes.
pub fn entry_hash(canonical: &[u8]) -> [u8; 32] {
    Sha256::digest(canonical).into()
}

/// The exact bytes a checkpoint's Ed25519 signature covers.
pub fn checkpoint_signing_text(origin: &str, size: u64, head_hex: &str) -> String {
    format!("airlock-checkpoint\n{origin}\n{size}\n{head_hex}\n")
}

/// The current time as RFC 3339 UTC with milliseconds, e.g. `2024-05-01T12:00:00.123Z`.
pub fn now_rfc3339_ms() -> String {
    let now = time::OffsetDateTime::now_utc();
    let mut s = String::with_capacity(24);
    let _ = write!(
        s,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    );
    s
}

/// The 8-byte big-endian store key of `seq`.
pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_sorts_keys_recursively_without_whitespace() {
        let v = serde_json::json!({"b": 1, "a": {"z": [true, null, "x\n"], "c": 1.5}});
        assert_eq!(
            canonical_bytes(&v),
            br#"{"a":{"c":1.5,"z":[true,null,"x\n"]},"b":1}"#.to_vec()
        );
    }

    #[test]
    fn canonical_round_trips_through_parsing() {
        let v = serde_json::json!({"k": "é\u{1}\"", "n": -12, "f": 1e300, "u": u64::MAX});
        let bytes = canonical_bytes(&v);
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(canonical_bytes(&back), bytes);
    }

    #[test]
    fn timestamp_shape() {
        let ts = now_rfc3339_ms();
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.');
    }

    #[test]
    fn an_entry_written_with_added_fields_reads_back_as_the_same_canonical_bytes() {
        let fields: Map<String, Value> = serde_json::from_str(
            r#"{"z":"\u00e9\"","a":[{"y":1,"b":null}],"kind":"stale","m":{"q":true,"c":2.5}}"#,
        )
        .expect("json");
        let (seq, kind) = (Value::from(7), Value::String("decision".into()));
        let written = canonical_with(&fields, &[("seq", &seq), ("kind", &kind)]);
        let mut merged = fields.clone();
        merged.insert("seq".into(), seq);
        merged.insert("kind".into(), kind);
        assert_eq!(written, canonical_bytes(&Value::Object(merged)));
        let text = String::from_utf8(written).expect("utf8");
        assert!(
            text.starts_with(r#"{"a":[{"b":null,"y":1}],"kind":"decision","m":"#),
            "{text}"
        );
    }
}
