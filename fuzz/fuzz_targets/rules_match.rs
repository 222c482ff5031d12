//! Fuzzes the rules normaliser and matcher against the embedded catalog.
//!
//! The input is read twice:
//! 1. As a request in HTTP-like text: `METHOD HOST PATH?QUERY\n`, then `name: value` header
//!    lines, then (after an empty line) the body. Checks: `evaluate` is deterministic; when
//!    `needs_body` is false the body cannot change the verdict (the proxy then never reads it);
//!    when it is true an unread body escalates; `segments_cow` agrees with `segments`; a path
//!    rebuilt from its segments normalises to the same segments (when none holds a `%`);
//!    `host_key` agrees with `host`.
//! 2. As choices (`Unstructured`) that build a request from one shipped rule without
//!    conditions — its method, a host it names, its template filled with plain segment values —
//!    spelled in any equivalent way (case, `%XX` and `%25XX` escapes, `//`, `\`, `%2F`, dot
//!    segments, the GHES `/api/v3` prefix, trailing slash, any query, headers and body). Check:
//!    the verdict is at least that rule's action (capped at escalate, which every guard gives).

#![no_main]

use std::sync::LazyLock;

use airlock::rules::normalize;
use airlock::rules::{Action, Catalog, CatalogOptions, RequestHead, RuleInfo};
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    catalog: Catalog,
    /// Shipped rules without `when` conditions: matching one is enough for its action.
    plain_rules: Vec<RuleInfo>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let catalog = Catalog::embedded(&CatalogOptions::default()).expect("embedded catalog");
    let plain_rules = catalog
        .rules()
        .into_iter()
        .filter(|r| r.when.is_empty())
        .collect();
    Fixture {
        catalog,
        plain_rules,
    }
});

fuzz_target!(|data: &[u8]| {
    let fx = &*FIXTURE;
    as_text(&fx.catalog, data);
    let _ = probe_rule(fx, &mut Unstructured::new(data));
});

/// Splits `METHOD HOST PATH\nheaders\n\nbody`; no blank line: no body (not read).
fn as_text(catalog: &Catalog, data: &[u8]) {
    let (head, body) = match find(data, b"\n\n") {
        Some(i) => (&data[..i], Some(&data[i + 2..])),
        None => (data, None),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n');
    let first = lines.next().unwrap_or("");
    let mut parts = first.splitn(3, ' ');
    let method = parts.next().unwrap_or("");
    let host = parts.next().unwrap_or("");
    let path_and_query = parts.next().unwrap_or("/");
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.trim().as_bytes()),
            http::HeaderValue::from_bytes(value.trim().as_bytes()),
        ) {
            headers.append(n, v);
        }
    }
    let head = RequestHead {
        method,
        host,
        port: 443,
        path_and_query,
        headers: &headers,
    };

    let needs = catalog.needs_body(&head);
    let unread = catalog.evaluate(&head, None);
    let read = catalog.evaluate(&head, Some(body.unwrap_or(b"")));
    assert_eq!(
        read,
        catalog.evaluate(&head, Some(body.unwrap_or(b""))),
        "evaluate is not deterministic"
    );
    if needs {
        assert!(
            unread.action >= Action::Escalate,
            "needs_body but an unread body does not escalate: {unread:?}"
        );
    } else {
        assert_eq!(
            unread, read,
            "needs_body is false but the body changed the verdict"
        );
    }

    let path = path_and_query.split('?').next().unwrap_or("");
    let owned = normalize::segments(path);
    let cow = normalize::segments_cow(path)
        .map(|v| v.into_iter().map(|c| c.into_owned()).collect::<Vec<_>>());
    assert_eq!(owned, cow, "segments_cow differs from segments");
    if let Some(segs) = owned {
        for s in &segs {
            assert!(
                !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0']),
                "bad segment {s:?}"
            );
        }
        if !segs.iter().any(|s| s.contains('%')) {
            let rebuilt = format!("/{}", segs.join("/"));
            assert_eq!(
                normalize::segments(&rebuilt).as_ref(),
                Some(&segs),
                "not idempotent"
            );
        }
    }
    assert_eq!(normalize::host_key(host), normalize::host(host));
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Characters of a filled-in path parameter: nothing that separates, escapes, starts a query
/// or is a dot segment on its own.
const VALUE_CHARS: &[char] = &[
    'a', 'b', 'z', 'A', 'Z', '0', '9', '-', '_', '.', '~', '!', '$', '&', '\'', '(', ')', '*', '+',
    ',', ';', '=', ':', '@', 'é', '日', '🦀',
];

/// Segment values the normaliser treats specially at the start of a path: `/repositories/{id}`
/// is rewritten, `/api/v3` is stripped, `/graphql` and `/api/graphql` are GraphQL endpoints.
const SPECIAL: &[&str] = &["repositories", "api", "graphql"];

/// Separators that all normalise to one `/`.
const SEPARATORS: &[&str] = &[
    "/",
    "//",
    "\\",
    "%2F",
    "%2f",
    "%252F",
    "%5C",
    "%255c",
    "/./",
    "/%2e/",
    "/x/../",
    "/x/%2E%2e/",
    "/x%2F..%2F",
];

fn probe_rule(fx: &Fixture, u: &mut Unstructured<'_>) -> ArbResult<()> {
    let rule = u.choose(&fx.plain_rules)?;
    let mut methods = rule.methods.clone();
    if methods.iter().any(|m| m == "PATCH") {
        methods.push("POST".into()); // POST to a PATCH route is weighed as that PATCH
    }
    let method = u.choose(&methods)?.clone();
    let method = flip_case(u, &method)?;
    let host = u.choose(&rule.hosts)?.clone();
    let host = host_for(u, &host)?;

    let mut segs: Vec<String> = Vec::new();
    if rule.service == "github" && u.arbitrary()? {
        // rules/github*.toml: path_prefixes = ["/api/v3"] (GHES).
        segs.push(flip_case(u, "api")?);
        segs.push(flip_case(u, "v3")?);
    }
    for part in rule.path.split('/').filter(|p| !p.is_empty()) {
        match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => {
                let n = if name.ends_with('*') {
                    u.int_in_range(1..=3)?
                } else {
                    1
                };
                for _ in 0..n {
                    segs.push(value(u)?);
                }
            }
            None => segs.push(flip_case(u, part)?),
        }
    }

    let mut path = String::new();
    if u.arbitrary()? {
        path.push_str("/..");
    }
    for s in &segs {
        path.push_str(if path.is_empty() {
            "/"
        } else {
            u.choose(SEPARATORS)?
        });
        encode(u, s, &mut path)?;
    }
    if path.is_empty() || u.arbitrary()? {
        path.push('/');
    }
    if u.arbitrary()? {
        path.push('?');
        path.push_str(u.arbitrary::<&str>()?);
    }
    let mut headers = http::HeaderMap::new();
    if u.arbitrary()? {
        let ct: &str = u.choose(&["application/json", "application/x-www-form-urlencoded"])?;
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(ct),
        );
    }
    let body: &[u8] = u.arbitrary()?;
    let head = RequestHead {
        method: &method,
        host: &host,
        port: 443,
        path_and_query: &path,
        headers: &headers,
    };
    // As the proxy does: the body only when the catalog asks for it.
    let verdict = if fx.catalog.needs_body(&head) {
        fx.catalog.evaluate(&head, Some(body))
    } else {
        fx.catalog.evaluate(&head, None)
    };
    assert!(
        verdict.action >= rule.action.min(Action::Escalate),
        "{method} {host}{path} spells rule {} ({} {}) but got {verdict:?}",
        rule.id,
        rule.methods.join(","),
        rule.path,
    );
    Ok(())
}

fn flip_case(u: &mut Unstructured<'_>, s: &str) -> ArbResult<String> {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        out.push(if u.arbitrary()? {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
    }
    Ok(out)
}

fn host_for(u: &mut Unstructured<'_>, pattern: &str) -> ArbResult<String> {
    let mut host = match pattern.strip_prefix("*.") {
        Some(suffix) => format!("{}.{suffix}", flip_case(u, "tenant-1")?),
        None => flip_case(u, pattern)?,
    };
    if u.arbitrary()? {
        host.push('.');
    }
    Ok(host)
}

/// A plain segment value: 1 to 8 [`VALUE_CHARS`], not `.`/`..`, not one of [`SPECIAL`].
fn value(u: &mut Unstructured<'_>) -> ArbResult<String> {
    let n = u.int_in_range(1..=8)?;
    let mut v = String::new();
    for _ in 0..n {
        v.push(*u.choose(VALUE_CHARS)?);
    }
    if v == "." || v == ".." || SPECIAL.iter().any(|s| v.eq_ignore_ascii_case(s)) {
        v.push('x');
    }
    Ok(v)
}

/// Appends `s`, each character raw, `%XX`-escaped or `%25XX`-escaped (decoded twice).
fn encode(u: &mut Unstructured<'_>, s: &str, out: &mut String) -> ArbResult<()> {
    for c in s.chars() {
        match u.int_in_range(0..=2u8)? {
            0 => out.push(c),
            how => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(if how == 1 { "%" } else { "%25" });
                    out.push_str(&format!("{b:02X}"));
                }
            }
        }
    }
    Ok(())
}
