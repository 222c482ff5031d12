//! Fuzzes the store record codec (`Review::decode` / `encode`) and the audit export verifier.
//!
//! The first byte picks what the rest is: `r` a stored review record, `a` an audit JSON Lines
//! export, `c` a trusted checkpoint line, a newline, then an export. Any other first byte: the
//! whole input goes through all three.
//!
//! Checks beyond no panic: every review that decodes encodes, and decoding that gives an equal
//! review whose encoding is the same bytes; a state's name parses back to the state.
//! The audit seeds were exported by `AuditLog` with the key whose public half is [`PUBKEY`], so
//! their checkpoint signatures verify and the fuzzer reaches the checks after them.

#![no_main]

use std::io::Cursor;

use airlock::audit::{verify_lines, verify_lines_with_checkpoint};
use airlock::gate::review::{rfc3339, Review, ReviewState};
use libfuzzer_sys::fuzz_target;

/// Public key of the audit log that wrote `seeds/store_codec/a_*` and `c_*`.
const PUBKEY: &str = "7e809352d3b80fa730760f6648d8377ee25f2c8bc1cbb3e00542e8129e3d8068";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        b'r' => review(rest),
        b'a' => audit(rest),
        b'c' => audit_with_checkpoint(rest),
        _ => {
            review(data);
            audit(data);
            audit_with_checkpoint(data);
        }
    }
});

fn review(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = s.parse::<ReviewState>();
    }
    let Ok(r) = Review::decode(data) else {
        return;
    };
    let bytes = r.encode().expect("a decoded review encodes");
    let back = Review::decode(&bytes).expect("an encoded review decodes");
    assert_eq!(r, back, "review changed in an encode/decode round trip");
    assert_eq!(
        bytes,
        back.encode().expect("encodes"),
        "encoding is not stable"
    );
    assert_eq!(r.state.as_str().parse::<ReviewState>(), Ok(r.state));
    let _ = r.request.url();
    let _ = r.request.body();
    for ms in [r.created_at_ms, r.updated_at_ms, r.expires_at_ms] {
        let _ = rfc3339(ms);
    }
}

fn audit(data: &[u8]) {
    if let Ok(report) = verify_lines(Cursor::new(data), PUBKEY) {
        assert!(report.checkpoints <= report.entries);
        assert!(report.first_seq <= report.last_seq);
    }
}

fn audit_with_checkpoint(data: &[u8]) {
    let (checkpoint, export) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(report) = verify_lines_with_checkpoint(Cursor::new(export), PUBKEY, checkpoint) {
        // Whatever the trusted checkpoint accepts, the plain verifier accepts too.
        assert_eq!(verify_lines(Cursor::new(export), PUBKEY), Ok(report));
    }
}
