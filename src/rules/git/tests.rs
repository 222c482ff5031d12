//! Tests of the git smart-HTTP reading: pkt-lines, ref updates, packs.

use std::io::Write;

use super::*;
use crate::rules::{Catalog, CatalogOptions, RequestHead};

const A: &str = "1111111111111111111111111111111111111111";
const B: &str = "2222222222222222222222222222222222222222";
const Z: &str = "0000000000000000000000000000000000000000";
const A256: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const Z256: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Expected (kind, refname) per command.
type Commands = Vec<(UpdateKind, &'static str)>;
/// (name, method, path, headers, body, action, tool, reason codes)
type VerdictCase<'a> = (
    &'static str,
    &'static str,
    &'static str,
    &'a http::HeaderMap,
    Option<Vec<u8>>,
    Action,
    Option<&'static str>,
    &'static [&'static str],
);

/// Frames `payload` as one pkt-line.
fn pkt(payload: &str) -> String {
    format!("{:04x}{payload}", payload.len() + 4)
}

fn body(lines: &[String]) -> Vec<u8> {
    let mut s: String = lines.concat();
    s.push_str("0000");
    s.into_bytes()
}

fn first(old: &str, new: &str, r: &str) -> String {
    pkt(&format!(
        "{old} {new} {r}\0report-status side-band-64k agent=git/2.47"
    ))
}

fn next(old: &str, new: &str, r: &str) -> String {
    pkt(&format!("{old} {new} {r}\n"))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn parses_command_sections() {
    // (name, input, expected (kind, refname) per command)
    let sha256_first = pkt(&format!(
        "{Z256} {A256} refs/heads/x\0report-status object-format=sha256"
    ));
    let cases: Vec<(&str, Vec<u8>, Commands)> = vec![
        ("empty list (git's auth probe)", b"0000".to_vec(), vec![]),
        (
            "create",
            body(&[first(Z, A, "refs/heads/feature")]),
            vec![(UpdateKind::Create, "refs/heads/feature")],
        ),
        (
            "delete",
            body(&[first(A, Z, "refs/heads/scratch")]),
            vec![(UpdateKind::Delete, "refs/heads/scratch")],
        ),
        (
            "update, delete, create; LF-terminated lines",
            body(&[
                first(A, B, "refs/heads/main"),
                next(A, Z, "refs/heads/old"),
                next(Z, B, "refs/tags/v1"),
            ]),
            vec![
                (UpdateKind::Update, "refs/heads/main"),
                (UpdateKind::Delete, "refs/heads/old"),
                (UpdateKind::Create, "refs/tags/v1"),
            ],
        ),
        (
            "SHA-256 object ids",
            body(&[sha256_first]),
            vec![(UpdateKind::Create, "refs/heads/x")],
        ),
        (
            "shallow lines before the commands",
            body(&[pkt(&format!("shallow {A}\n")), first(A, B, "refs/heads/s")]),
            vec![(UpdateKind::Update, "refs/heads/s")],
        ),
        (
            "upper-case hex digits",
            body(&[first(
                "ABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCD",
                Z,
                "refs/heads/u",
            )]),
            vec![(UpdateKind::Delete, "refs/heads/u")],
        ),
        (
            "push options and a packfile after the flush-pkt are not read",
            [
                body(&[first(Z, A, "refs/heads/p")]),
                b"0010ci.skip=true0000PACK\x00\x00\x00\x02garbage".to_vec(),
            ]
            .concat(),
            vec![(UpdateKind::Create, "refs/heads/p")],
        ),
    ];
    for (name, input, want) in cases {
        let got = parse_command_section(&input).unwrap_or_else(|e| panic!("{name}: {e}"));
        let kinds: Vec<(UpdateKind, &str)> = got
            .commands
            .iter()
            .map(|c| (c.kind(), c.refname.as_str()))
            .collect();
        assert_eq!(kinds, want, "{name}");
        assert!(got.len <= input.len(), "{name}");
        assert_eq!(&input[got.len - 4..got.len], b"0000", "{name}");
    }
}

#[test]
fn parse_details() {
    let s = parse_command_section(&body(&[
        first(
            Z,
            "ABCDEF0123456789ABCDEF0123456789ABCDEF01",
            "refs/heads/f",
        ),
        next(A, B, "refs/heads/g"),
    ]))
    .unwrap();
    assert_eq!(
        s.capabilities,
        vec!["report-status", "side-band-64k", "agent=git/2.47"]
    );
    assert_eq!(
        s.commands[0].new,
        "abcdef0123456789abcdef0123456789abcdef01"
    );
    assert_eq!(s.commands[0].old, Z);
    assert_eq!(s.commands[1].refname, "refs/heads/g");
}

#[test]
fn malformed_input_is_a_clear_error() {
    use PushError::*;
    let long_ref = format!("refs/heads/{}", "x".repeat(MAX_PKT_LEN));
    let over = format!("{Z} {A} {long_ref}");
    // (name, input, expected error)
    let cases: Vec<(&str, Vec<u8>, PushError)> = vec![
        ("empty body", vec![], Truncated(0)),
        ("half a length prefix", b"00".to_vec(), Truncated(2)),
        (
            "non-hex length",
            b"zz12".to_vec(),
            BadLength {
                at: 0,
                found: "zz12".into(),
            },
        ),
        ("delim-pkt", b"0001".to_vec(), Special { at: 0, code: 1 }),
        (
            "response-end pkt",
            b"0002".to_vec(),
            Special { at: 0, code: 2 },
        ),
        (
            "empty pkt-line",
            b"0004".to_vec(),
            BadSize { at: 0, len: 4 },
        ),
        (
            "oversized pkt-line",
            format!("fff1{over}").into_bytes(),
            BadSize { at: 0, len: 65521 },
        ),
        (
            "payload shorter than its length",
            first(Z, A, "refs/heads/x").as_bytes()[..50].to_vec(),
            Truncated(50),
        ),
        (
            "no flush-pkt",
            first(Z, A, "refs/heads/x").into_bytes(),
            Truncated(first(Z, A, "refs/heads/x").len()),
        ),
        (
            "signed push",
            body(&[pkt("push-cert\0report-status\n")]),
            PushCert,
        ),
    ];
    for (name, input, want) in cases {
        assert_eq!(parse_command_section(&input), Err(want), "{name}");
    }
    // (name, input, words the message must contain)
    let bad_commands: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "non-hex oid",
            body(&[first(Z, &"g".repeat(40), "refs/heads/x")]),
            "not an object id",
        ),
        (
            "short oid",
            body(&[first(Z, &A[..39], "refs/heads/x")]),
            "not an object id",
        ),
        (
            "SHA-1 and SHA-256 mixed",
            body(&[first(Z, A256, "refs/heads/x")]),
            "mixes",
        ),
        (
            "object-format does not fit",
            body(&[pkt(&format!("{Z} {A} refs/heads/x\0object-format=sha256"))]),
            "object-format",
        ),
        (
            "unknown object-format",
            body(&[pkt(&format!("{Z} {A} refs/heads/x\0object-format=md5"))]),
            "unknown object-format",
        ),
        (
            "both oids zero",
            body(&[first(Z, Z, "refs/heads/x")]),
            "both zero",
        ),
        (
            "missing ref name",
            body(&[pkt(&format!("{Z} {A}"))]),
            "expected",
        ),
        ("ref outside refs/", body(&[first(A, Z, "HEAD")]), "refs/"),
        (
            "ref with ..",
            body(&[first(A, Z, "refs/heads/../main")]),
            "..",
        ),
        (
            "ref with a space",
            body(&[first(A, Z, "refs/heads/a b")]),
            "forbids",
        ),
        (
            "ref with an empty component",
            body(&[first(A, Z, "refs/heads//main")]),
            "empty",
        ),
        (
            "ref ending in .lock",
            body(&[first(A, Z, "refs/heads/main.lock")]),
            ".lock",
        ),
        (
            "NUL after the first command",
            body(&[
                first(Z, A, "refs/heads/a"),
                pkt(&format!("{A} {Z} refs/heads/b\0x")),
            ]),
            "NUL",
        ),
        (
            "shallow with a bad oid",
            body(&[pkt("shallow nothex\n")]),
            "not an object id",
        ),
    ];
    for (name, input, words) in bad_commands {
        match parse_command_section(&input) {
            Err(e @ BadCommand { .. }) => assert!(e.to_string().contains(words), "{name}: {e}"),
            other => panic!("{name}: expected BadCommand, got {other:?}"),
        }
    }
    let mut non_utf8 = first(A, Z, "refs/heads/x").into_bytes();
    let n = non_utf8.len();
    non_utf8[n - 30] = 0xff;
    non_utf8.extend_from_slice(b"0000");
    assert!(matches!(
        parse_command_section(&non_utf8),
        Err(BadCommand { .. })
    ));
}

#[test]
fn never_panics_on_prefixes_and_mutations() {
    let good = body(&[first(A, B, "refs/heads/main"), next(Z, A, "refs/tags/v1")]);
    for end in 0..good.len() {
        let _ = parse_command_section(&good[..end]);
        let mut r = CommandReader::new(BodyEncoding::Identity);
        r.feed(&good[..end]);
        assert!(r.finish().is_err(), "a prefix of {end} bytes is incomplete");
    }
    for i in 0..good.len() {
        for b in [0u8, b'0', b'f', b'\n', 0xff, b' '] {
            let mut m = good.clone();
            m[i] = b;
            let _ = parse_command_section(&m);
        }
    }
}

fn headers(encoding: Option<&str>) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    if let Some(e) = encoding {
        h.insert("content-encoding", e.parse().unwrap());
    }
    h
}

#[test]
fn reader_stops_at_the_flush_pkt_in_any_chunking() {
    let section = body(&[
        first(A, Z, "refs/heads/scratch"),
        next(Z, B, "refs/heads/new"),
    ]);
    let mut whole = section.clone();
    whole.extend_from_slice(&[b'P'; 5000]); // stands for the packfile
    for (encoding, raw) in [
        (BodyEncoding::Identity, whole.clone()),
        (BodyEncoding::Gzip, gzip(&whole)),
    ] {
        for chunk in [1, 7, 64, raw.len()] {
            let mut r = CommandReader::new(encoding);
            let mut fed = 0;
            for c in raw.chunks(chunk) {
                fed += c.len();
                if r.feed(c) {
                    break;
                }
            }
            let s = r
                .finish()
                .unwrap_or_else(|(e, _)| panic!("{encoding:?}/{chunk}: {e}"));
            assert_eq!(s.commands.len(), 2);
            if encoding == BodyEncoding::Identity {
                assert!(
                    fed <= section.len() + chunk,
                    "stopped soon after the flush-pkt"
                );
            }
        }
    }
}

#[test]
fn reader_errors() {
    // (name, raw body, Content-Encoding, expected reason code)
    let delete = body(&[first(A, Z, "refs/heads/scratch")]);
    let mut corrupt = gzip(&delete);
    let n = corrupt.len();
    corrupt[12..n - 8].iter_mut().for_each(|b| *b ^= 0x5a);
    let cases: Vec<(&str, Vec<u8>, Option<&str>, &str)> = vec![
        ("gzip body", gzip(&delete), Some("gzip"), "ok"),
        ("x-gzip body", gzip(&delete), Some("x-gzip"), "ok"),
        ("identity", delete.clone(), Some("identity"), "ok"),
        (
            "plain body labelled gzip",
            delete.clone(),
            Some("gzip"),
            "git_body_unreadable",
        ),
        ("corrupt gzip", corrupt, Some("gzip"), "git_body_unreadable"),
        (
            "deflate",
            delete.clone(),
            Some("deflate"),
            "git_body_unreadable",
        ),
        ("br", delete.clone(), Some("br"), "git_body_unreadable"),
        (
            "no flush within the cap",
            format!("{:04x}{}", 1004, "x".repeat(1000))
                .repeat(1100)
                .into_bytes(),
            None,
            "git_commands_too_large",
        ),
        (
            "gzip bomb: inflates past the cap with no flush",
            gzip(&vec![b'0'; 8 << 20]),
            Some("gzip"),
            "git_commands_too_large",
        ),
        (
            "truncated gzip",
            gzip(&delete)[..15].to_vec(),
            Some("gzip"),
            "git_commands_incomplete",
        ),
    ];
    for (name, raw, enc, want) in cases {
        let got = match read_command_section(&raw, &headers(enc)) {
            Ok(_) => "ok",
            Err((e, _)) => e.reason_code(),
        };
        assert_eq!(got, want, "{name}");
    }
    let mut two = headers(Some("gzip"));
    two.append("content-encoding", "gzip".parse().unwrap());
    assert!(matches!(
        BodyEncoding::from_headers(&two),
        Err(PushError::Encoding(_))
    ));
}

#[test]
fn ref_patterns() {
    // (pattern, ref, matches)
    let cases = [
        ("refs/heads/main", "refs/heads/main", true),
        ("refs/heads/main", "refs/heads/MAIN", true),
        ("refs/heads/main", "refs/heads/main2", false),
        ("refs/heads/main", "refs/heads/main/x", false),
        ("refs/heads/release/*", "refs/heads/release/1.0", true),
        ("refs/heads/release/*", "refs/heads/Release/a/b", true),
        ("refs/heads/release/*", "refs/heads/release", false),
        ("refs/heads/release/*", "refs/heads/releases/x", false),
        ("refs/tags/*", "refs/tags/v1", true),
        ("refs/*", "refs/anything/at/all", true),
        ("refs/heads/release-*", "refs/heads/release-2.0", true),
        ("refs/heads/release-*", "refs/heads/RELEASE-x/y", true),
        ("refs/heads/release-*", "refs/heads/release-", false),
        ("refs/heads/release-*", "refs/heads/release", false),
        ("refs/heads/release-*", "refs/heads/releases", false),
        // `{N}`: one or more ASCII digits (semantic-release's maintenance branches)
        ("refs/heads/{N}.x", "refs/heads/1.x", true),
        ("refs/heads/{N}.x", "refs/heads/12.X", true),
        ("refs/heads/{N}.x", "refs/heads/1.2.x", false),
        ("refs/heads/{N}.x", "refs/heads/.x", false),
        ("refs/heads/{N}.x", "refs/heads/v1.x", false),
        ("refs/heads/{N}.x", "refs/heads/1.x/y", false),
        ("refs/heads/{N}.x", "refs/heads/1.xy", false),
        ("refs/heads/{N}.x", "refs/heads/\u{661}.x", false),
        ("refs/heads/{N}.{N}.x", "refs/heads/1.2.x", true),
        ("refs/heads/{N}.{N}.x", "refs/heads/10.20.x", true),
        ("refs/heads/{N}.{N}.x", "refs/heads/1.x", false),
        ("refs/heads/{N}.{N}.x", "refs/heads/1..x", false),
        ("refs/heads/{N}.x.x", "refs/heads/3.x.x", true),
        ("refs/heads/v{N}", "refs/heads/v2", true),
        ("refs/heads/v{N}", "refs/heads/v2a", false),
    ];
    for (p, r, want) in cases {
        assert_eq!(RefPattern::parse(p).unwrap().matches(r), want, "{p} vs {r}");
    }
    for bad in [
        "main",
        "refs/heads/*rel",
        "refs/heads/r*l*",
        "refs/heads/a..*",
        "refs/*/main",
        "refs/heads/a..b",
        "refs/heads/",
        "refs/heads/{N}{N}.x",
        "refs/heads/1{N}.x",
        "refs/heads/{N}1.x",
        "refs/heads/{N}.*",
        "refs/heads/{M}.x",
        "refs/heads/{N}.x}",
        "{N}.x",
    ] {
        assert!(RefPattern::parse(bad).is_err(), "{bad}");
    }
}

// ---- the catalog's [git] section ----

const RULES: &str = r#"
[service]
name = "github"
hosts = ["api.github.com"]

[git]
hosts = ["github.com"]
protected_refs = ["refs/heads/main", "refs/heads/release/*", "refs/tags/*"]
"#;

fn catalog(text: &str) -> Result<Catalog, crate::rules::RulesError> {
    Catalog::from_sources(
        &[("g.toml".to_string(), text.to_string())],
        &CatalogOptions::default(),
    )
}

fn judge(
    c: &Catalog,
    method: &str,
    host: &str,
    pq: &str,
    h: &http::HeaderMap,
    body: Option<&[u8]>,
) -> Verdict {
    let head = RequestHead {
        method,
        host,
        port: 443,
        path_and_query: pq,
        headers: h,
    };
    c.evaluate(&head, body)
}

#[test]
fn verdicts_for_git_requests() {
    let c = catalog(RULES).unwrap();
    let none = headers(None);
    let gz = headers(Some("gzip"));
    let br = headers(Some("br"));
    let mut upload = headers(None);
    upload.insert(
        "content-type",
        "application/x-git-upload-pack-request".parse().unwrap(),
    );
    let delete = body(&[first(A, Z, "refs/heads/scratch")]);
    let rp = "/octo/demo.git/git-receive-pack";
    // (name, method, path, headers, body, action, tool, reason codes)
    let cases: Vec<VerdictCase> = vec![
        (
            "ref advertisement for push",
            "GET",
            "/octo/demo.git/info/refs?service=git-receive-pack",
            &none,
            None,
            Action::Allow,
            Some("github.git.info-refs"),
            &["git_read"],
        ),
        (
            "ref advertisement for fetch",
            "GET",
            "/octo/demo/info/refs?service=git-upload-pack",
            &none,
            None,
            Action::Allow,
            Some("github.git.info-refs"),
            &["git_read"],
        ),
        (
            "fetch",
            "POST",
            "/octo/demo.git/git-upload-pack",
            &upload,
            None,
            Action::Allow,
            Some("github.git.fetch"),
            &["git_read"],
        ),
        (
            "new branch",
            "POST",
            rp,
            &none,
            Some(body(&[first(Z, A, "refs/heads/feature")])),
            Action::Allow,
            Some("github.git.push"),
            &["git_push"],
        ),
        (
            "update of an unprotected branch",
            "POST",
            rp,
            &none,
            Some(body(&[first(A, B, "refs/heads/feature")])),
            Action::Allow,
            Some("github.git.push"),
            &["git_push"],
        ),
        (
            "auth probe (flush only)",
            "POST",
            rp,
            &none,
            Some(b"0000".to_vec()),
            Action::Allow,
            Some("github.git.push"),
            &["git_no_commands"],
        ),
        (
            "branch deletion",
            "POST",
            rp,
            &none,
            Some(delete.clone()),
            Action::Escalate,
            Some("github.git.delete-ref"),
            &["git_ref_delete"],
        ),
        (
            "gzip'd branch deletion",
            "POST",
            rp,
            &gz,
            Some(gzip(&delete)),
            Action::Escalate,
            Some("github.git.delete-ref"),
            &["git_ref_delete"],
        ),
        (
            "deletion among creations",
            "POST",
            rp,
            &none,
            Some(body(&[
                first(Z, A, "refs/heads/a"),
                next(A, Z, "refs/heads/b"),
            ])),
            Action::Escalate,
            Some("github.git.delete-ref"),
            &["git_ref_delete", "git_push"],
        ),
        (
            "protected deletion",
            "POST",
            rp,
            &none,
            Some(body(&[first(A, Z, "refs/heads/main")])),
            Action::Escalate,
            Some("github.git.delete-ref"),
            &["git_ref_delete", "git_protected_ref"],
        ),
        (
            "force push to main",
            "POST",
            rp,
            &none,
            Some(body(&[first(A, B, "refs/heads/main")])),
            Action::Escalate,
            Some("github.git.push-protected-ref"),
            &["git_protected_ref"],
        ),
        (
            "main in other case",
            "POST",
            rp,
            &none,
            Some(body(&[first(A, B, "refs/heads/Main")])),
            Action::Escalate,
            Some("github.git.push-protected-ref"),
            &["git_protected_ref"],
        ),
        (
            "new tag",
            "POST",
            rp,
            &none,
            Some(body(&[first(Z, A, "refs/tags/v1.0")])),
            Action::Escalate,
            Some("github.git.push-protected-ref"),
            &["git_protected_ref"],
        ),
        (
            "release branch",
            "POST",
            "/octo/demo/git-receive-pack",
            &none,
            Some(body(&[first(A, B, "refs/heads/release/2")])),
            Action::Escalate,
            Some("github.git.push-protected-ref"),
            &["git_protected_ref"],
        ),
        (
            "malformed",
            "POST",
            rp,
            &none,
            Some(b"00zzjunk".to_vec()),
            Action::Escalate,
            Some("github.git.push"),
            &["git_pktline_malformed"],
        ),
        (
            "body not read",
            "POST",
            rp,
            &none,
            None,
            Action::Escalate,
            Some("github.git.push"),
            &["git_commands_incomplete"],
        ),
        (
            "unknown encoding",
            "POST",
            rp,
            &br,
            Some(delete.clone()),
            Action::Escalate,
            Some("github.git.push"),
            &["git_body_unreadable"],
        ),
        (
            "signed push",
            "POST",
            rp,
            &none,
            Some(body(&[pkt("push-cert\0report-status\n")])),
            Action::Escalate,
            Some("github.git.push"),
            &["git_push_cert"],
        ),
        (
            "percent-encoded path",
            "POST",
            "/octo/demo/git%2Dreceive%2Dpack",
            &none,
            Some(delete.clone()),
            Action::Escalate,
            Some("github.git.delete-ref"),
            &["git_ref_delete"],
        ),
        (
            "web page",
            "GET",
            "/octo/demo",
            &none,
            None,
            Action::Allow,
            None,
            &["no_rule_default"],
        ),
        (
            "lower-case method",
            "post",
            rp,
            &none,
            Some(delete.clone()),
            Action::Escalate,
            None,
            &["bad_method"],
        ),
    ];
    for (name, method, pq, h, b, action, tool, codes) in cases {
        let v = judge(&c, method, "GitHub.com.", pq, h, b.as_deref());
        assert_eq!(v.action, action, "{name}: {v}");
        assert_eq!(v.tool.as_deref(), tool, "{name}: {v}");
        assert_eq!(v.reason_codes, codes.to_vec(), "{name}: {v}");
        assert_eq!(v.service.as_deref(), Some("github"), "{name}");
    }
    let v = judge(&c, "POST", "github.com", rp, &none, Some(&delete));
    assert_eq!(v.params["owner"], "octo");
    assert_eq!(v.params["repo"], "demo");
    assert_eq!(v.params["refs"], "delete refs/heads/scratch");
    assert_eq!(v.rule_id.as_deref(), Some("g.toml:6"));
    assert_eq!(v.class, Some(Class::Irreversible));
}

#[test]
fn hosts_and_body_needs() {
    let c = catalog(RULES).unwrap();
    assert!(c.inspects("github.com"));
    assert_eq!(c.service_for_host("GITHUB.com").as_deref(), Some("github"));
    assert!(c.hosts().contains(&"github.com".to_string()));
    let h = headers(None);
    let head = |method, pq| RequestHead {
        method,
        host: "github.com",
        port: 443,
        path_and_query: pq,
        headers: &h,
    };
    assert!(c.git_push(&head("POST", "/o/r.git/git-receive-pack")));
    assert!(c.needs_body(&head("POST", "/o/r.git/git-receive-pack")));
    assert!(!c.git_push(&head("POST", "/o/r.git/git-upload-pack")));
    assert!(!c.git_push(&head("GET", "/o/r.git/info/refs?service=git-receive-pack")));
    // REST hosts are untouched by [git].
    let api = RequestHead {
        host: "api.github.com",
        ..head("POST", "/o/r.git/git-receive-pack")
    };
    assert!(!c.git_push(&api));
}

/// A push of `lines` (pkt-lines) to a github.com repository.
fn push_to_github_com(c: &Catalog, lines: &[String]) -> Verdict {
    judge(
        c,
        "POST",
        "github.com",
        "/o/r.git/git-receive-pack",
        &headers(None),
        Some(&body(lines)),
    )
}

#[test]
fn the_shipped_catalog_protects_main_on_github_com() {
    let c = Catalog::embedded(&CatalogOptions::default()).unwrap();
    let v = push_to_github_com(&c, &[first(A, B, "refs/heads/main")]);
    assert_eq!(v.action, Action::Escalate, "{v}");
    assert_eq!(v.tool.as_deref(), Some("github.git.push-protected-ref"));
    // Deploy branches by name, and bots' pull-request branches (auto-merge a person turned on
    // stays on when someone else pushes): held. An ordinary branch passes.
    for (name, held) in [
        ("refs/heads/production", true),
        ("refs/heads/Staging", true),
        ("refs/heads/releases/2.0", true),
        ("refs/heads/release-2.0", true),
        ("refs/heads/hotfix/crash", true),
        ("refs/heads/dependabot/npm_and_yarn/lodash-4.17.21", true),
        ("refs/heads/renovate/lodash-4.x", true),
        ("refs/heads/release-please--branches--main", true),
        ("refs/heads/changeset-release/main", true),
        ("refs/heads/develop", true),
        ("refs/heads/trunk", true),
        ("refs/heads/next", true),
        ("refs/heads/feature-x", false),
        ("refs/heads/develop-x", false),
        ("refs/heads/productions", false),
    ] {
        let v = push_to_github_com(&c, &[first(A, B, name)]);
        // Unprotected: soft-gated (an audit entry each), as the API's ref writes.
        let want = if held {
            Action::Escalate
        } else {
            Action::Notify
        };
        assert_eq!(v.action, want, "{name}: {v}");
    }
}

/// Review of session 16: decoys in front pushed a deletion of main out of the shown list (20
/// commands). Deletions and protected refs now come first and are always named.
#[test]
fn a_deletion_behind_decoys_is_named_first() {
    let c = Catalog::embedded(&CatalogOptions::default()).unwrap();
    let mut lines = vec![
        first(A, Z, "refs/heads/tmp-scratch"),
        next(A, B, "refs/heads/gh-pages"),
    ];
    for i in 0..40 {
        lines.push(next(A, B, &format!("refs/heads/feature-{i}")));
    }
    lines.push(next(A, Z, "refs/heads/main"));
    let v = push_to_github_com(&c, &lines);
    let refs = v.params.get("refs").expect("refs");
    assert!(
        refs.starts_with("delete refs/heads/main (protected), delete refs/heads/tmp-scratch, update refs/heads/gh-pages (protected), update refs/heads/feature-0"),
        "{refs}"
    );
    assert!(
        refs.ends_with(", … 23 more (none a deletion or a protected ref)"),
        "{refs}"
    );
    assert!(v.explanation.contains("delete refs/heads/main"), "{v}");
}

#[test]
fn rule_file_errors_name_the_line() {
    // (name, file text, "line:column" the error names, words in the message)
    let cases = [
        (
            "bad pattern",
            RULES.replace("\"refs/tags/*\"", "\n  \"refs/tags/v*-*\""),
            "g.toml:9:3",
            "may only end the pattern",
        ),
        (
            "pattern outside refs/",
            RULES.replace("\"refs/heads/main\"", "\"main\""),
            "g.toml:8:",
            "does not start with refs/",
        ),
        (
            "unknown field",
            RULES.replace("[git]\n", "[git]\nprotect = []\n"),
            "g.toml:7:",
            "unknown field",
        ),
        (
            "unknown action",
            RULES.replace("[git]\n", "[git]\ndelete = \"maybe\"\n"),
            "g.toml:7:",
            "unknown variant",
        ),
        (
            "no hosts",
            RULES.replace("hosts = [\"github.com\"]", "hosts = []"),
            "g.toml:6:",
            "hosts must not be empty",
        ),
        (
            "git host is a REST host",
            RULES.replace("hosts = [\"github.com\"]", "hosts = [\"api.github.com\"]"),
            "g.toml:6:",
            "REST hosts",
        ),
    ];
    for (name, text, at, words) in cases {
        let e = catalog(&text)
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"))
            .to_string();
        assert!(e.starts_with(at), "{name}: {e}");
        assert!(e.contains(words), "{name}: {e}");
    }
    let clash = Catalog::from_sources(
        &[
            ("a.toml".to_string(), RULES.to_string()),
            (
                "b.toml".to_string(),
                "[service]\nname = \"mirror\"\nhosts = [\"x.test\"]\n\n[git]\nhosts = [\"api.github.com\"]\n"
                    .to_string(),
            ),
        ],
        &CatalogOptions::default(),
    );
    let e = clash.expect_err("clash refused").to_string();
    assert!(
        e.starts_with("b.toml:5:1: [git] host api.github.com"),
        "{e}"
    );
    let two = Catalog::from_sources(
        &[
            ("a.toml".to_string(), RULES.to_string()),
            ("b.toml".to_string(), RULES.to_string()),
        ],
        &CatalogOptions::default(),
    );
    assert!(two
        .err()
        .is_some_and(|e| e.to_string().contains("[git] section in two files")));
}

/// Review of session 18: pushes read as git's and GitHub's receive-pack read them.
#[test]
fn pushes_are_read_as_receive_pack_reads_them() {
    let c = Catalog::embedded(&CatalogOptions::default()).unwrap();
    let shallow = || pkt(&format!("shallow {A}\n"));
    // (name, body, action, tool, reason codes, refs shown)
    type Case = (
        &'static str,
        Vec<u8>,
        Action,
        &'static str,
        &'static [&'static str],
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "a shallow line after the command (git and GitHub take them anywhere)",
            body(&[
                shallow(),
                shallow(),
                first(A, Z, "refs/heads/main"),
                shallow(),
            ]),
            Action::Escalate,
            "github.git.delete-ref",
            &["git_ref_delete", "git_protected_ref"],
            "delete refs/heads/main (protected)",
        ),
        (
            "a fault after a deletion of main still names the deletion",
            [
                first(A, Z, "refs/heads/main").into_bytes(),
                b"00010000".to_vec(),
            ]
            .concat(),
            Action::Escalate,
            "github.git.delete-ref",
            &[
                "git_pktline_malformed",
                "git_ref_delete",
                "git_protected_ref",
            ],
            "delete refs/heads/main (protected)",
        ),
        (
            "a ref outside refs/heads and refs/tags (Gerrit's refs/for/main%submit)",
            body(&[first(Z, B, "refs/for/main%submit")]),
            Action::Escalate,
            "github.git.push-protected-ref",
            &["git_protected_ref", "git_ref_unusual"],
            "create refs/for/main%submit (outside refs/heads/ and refs/tags/)",
        ),
        (
            "push options asked for (GitLab merges when the pipeline succeeds)",
            [
                body(&[pkt(&format!(
                    "{A} {B} refs/heads/feature\0report-status push-options"
                ))]),
                body(&[pkt("merge_request.merge_when_pipeline_succeeds\n")]),
            ]
            .concat(),
            Action::Escalate,
            "github.git.push-protected-ref",
            &["git_protected_ref", "git_push_options"],
            "update refs/heads/feature (push options unread)",
        ),
        (
            "GitHub's merge queue branch",
            body(&[first(A, B, "refs/heads/gh-readonly-queue/main/pr-1-abc")]),
            Action::Escalate,
            "github.git.push-protected-ref",
            &["git_protected_ref"],
            "update refs/heads/gh-readonly-queue/main/pr-1-abc (protected)",
        ),
        (
            "an ordinary branch",
            body(&[first(A, B, "refs/heads/feature")]),
            Action::Notify,
            "github.git.push",
            &["git_push"],
            "update refs/heads/feature",
        ),
    ];
    for (name, input, action, tool, codes, refs) in cases {
        let v = judge(
            &c,
            "POST",
            "github.com",
            "/o/r.git/git-receive-pack",
            &headers(None),
            Some(&input),
        );
        assert_eq!(v.action, action, "{name}: {v}");
        assert_eq!(v.tool.as_deref(), Some(tool), "{name}: {v}");
        assert_eq!(v.reason_codes, *codes, "{name}: {v}");
        assert_eq!(
            v.params.get("refs").map(String::as_str),
            Some(refs),
            "{name}: {v}"
        );
    }
}

/// Review of session 18: a fetch passes unread only on a plain path with git's upload-pack
/// type; a path that decodes to `git-upload-pack` another way may be a push where the server
/// routes on the raw path.
#[test]
fn only_a_plain_fetch_passes_unread() {
    let c = Catalog::embedded(&CatalogOptions::default()).unwrap();
    let mut fetch = http::HeaderMap::new();
    fetch.insert(
        "content-type",
        "application/x-git-upload-pack-request".parse().unwrap(),
    );
    let mut push = http::HeaderMap::new();
    push.insert(
        "content-type",
        "application/x-git-receive-pack-request".parse().unwrap(),
    );
    let deletion = body(&[first(A, Z, "refs/heads/main")]);
    for (path, h, want) in [
        ("/o/r.git/git-upload-pack", &fetch, Action::Allow),
        ("/o/r.git/git-upload-pack", &push, Action::Escalate),
        (
            "/o/r.git/git-receive-pack%2F..%2Fgit-upload-pack",
            &fetch,
            Action::Escalate,
        ),
        (
            "/o/r.git/git-receive-pack/../git-upload-pack",
            &fetch,
            Action::Escalate,
        ),
        (
            "/o/r.git/git-receive-pack%5C..%5Cgit-upload-pack",
            &fetch,
            Action::Escalate,
        ),
        ("/o/r.git//git-upload-pack", &fetch, Action::Escalate),
    ] {
        let v = judge(&c, "POST", "github.com", path, h, Some(&deletion));
        assert_eq!(v.action, want, "{path}: {v}");
    }
}
