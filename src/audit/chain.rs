//! The entry format shared by the writer and the verifier: canonical JSON bytes, the SHA-256
//! chain hash, RFC 3339 timestamps and the exact text a checkpoint signs.
//!
//! Canonical JSON is produced by our own serialiser (object keys sorted by their UTF-8 bytes, no
//! whitespace, strings and numbers escaped/printed by `serde_json`), so it does not depend on
//! whether serde_json's `preserve_order` feature happens to be enabled somewhere in the build.

use std::fmt::Write as _;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Kind of the signed checkpoint entries the log writes itself.
pub const CHECKPOINT_KIND: &str = "checkpoint";
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

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push(b'}');
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
}
