//! Fuzzes the git receive-pack command-section parser (`src/rules/git.rs`): plain, and through
//! `read_command_section` with `Content-Encoding: gzip` when the input starts with the gzip magic.
//!
//! Checks beyond no panic: a parsed section never claims more bytes than it was given and ends
//! with the flush-pkt; every command's oids are lower-case hex of one length (40 or 64); the
//! same bytes with anything appended after the section parse to the same commands (the proxy
//! reads only up to the flush-pkt and streams the rest); a parse of the raw reader agrees with
//! the plain parser.

#![no_main]

use airlock::rules::git::{parse_command_section, read_command_section};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.starts_with(&[0x1f, 0x8b]) {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-encoding", http::HeaderValue::from_static("gzip"));
        let _ = read_command_section(data, &headers);
        return;
    }
    let parsed = parse_command_section(data);
    let plain = read_command_section(data, &http::HeaderMap::new());
    assert_eq!(parsed.is_ok(), plain.is_ok(), "reader and parser disagree");
    let Ok(section) = parsed else {
        return;
    };
    assert!(section.len <= data.len());
    assert_eq!(&data[section.len - 4..section.len], b"0000");
    let width = section.commands.first().map(|c| c.old.len());
    for c in &section.commands {
        for oid in [&c.old, &c.new] {
            assert!(oid.len() == 40 || oid.len() == 64, "oid {oid:?}");
            assert_eq!(Some(oid.len()), width, "mixed oid lengths");
            assert!(oid.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
    }
    let mut longer = data[..section.len].to_vec();
    longer.extend_from_slice(b"PACK\0\0\0\x02 trailing pack bytes");
    let again = parse_command_section(&longer).expect("a prefix that parsed parses again");
    assert_eq!(again.commands, section.commands);
});
