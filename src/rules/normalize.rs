//! Request normalisation before matching: method check, host, percent-decoding (including
//! %2F), duplicate slashes, trailing slash, dot segments, matrix parameters.

use std::borrow::Cow;

/// Methods the catalog knows. Anything else (or not upper-case) escalates.
pub const KNOWN_METHODS: &[&str] = &["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"];

pub fn method_ok(m: &str) -> bool {
    KNOWN_METHODS.contains(&m)
}

/// Position of `m` in [`KNOWN_METHODS`].
pub fn method_index(m: &str) -> Option<usize> {
    KNOWN_METHODS.iter().position(|k| *k == m)
}

/// Lower-case, no trailing dot.
pub fn host(h: &str) -> String {
    h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase()
}

/// [`host`] without allocating when the host is already lower-case.
pub fn host_key(h: &str) -> Cow<'_, str> {
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(h.to_ascii_lowercase())
    } else {
        Cow::Borrowed(h)
    }
}

/// [`segments`], borrowing from `raw_path` when nothing needs decoding (no `%`, no `\\`).
pub fn segments_cow(raw_path: &str) -> Option<Vec<Cow<'_, str>>> {
    if raw_path.bytes().any(|b| matches!(b, b'%' | b'\\' | 0)) {
        return segments(raw_path).map(|v| v.into_iter().map(Cow::Owned).collect());
    }
    let mut out = Vec::with_capacity(8);
    for seg in raw_path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(Cow::Borrowed(s)),
        }
    }
    Some(out)
}

/// Splits the raw path (no query) into normalised segments: percent-decoded first (so `%2F`
/// separates), empty segments dropped, `.` removed, `..` pops. `None` if decoding yields
/// invalid UTF-8 or a NUL (the caller escalates).
pub fn segments(raw_path: &str) -> Option<Vec<String>> {
    let decoded = percent_encoding::percent_decode_str(raw_path)
        .decode_utf8()
        .ok()?;
    // Decode twice-encoded separators too (%252F): a second pass must not change the structure.
    let decoded = if decoded.contains('%') {
        match percent_encoding::percent_decode_str(&decoded).decode_utf8() {
            Ok(d) => d.into_owned(),
            Err(_) => return None,
        }
    } else {
        decoded.into_owned()
    };
    if decoded.contains('\0') {
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    for seg in decoded.split(['/', '\\']) {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_string()),
        }
    }
    Some(out)
}

/// The segments as a router that splits the raw path at `/` before decoding each segment (once,
/// as Rails and Express do): `a%2Fb` stays one segment, `a/b`. `None` when no segment decodes to
/// a `/`, `\\` or `%` (the reading is then the one [`segments`] gives), or on invalid UTF-8
/// or a NUL (which [`segments`] refuses too).
pub fn segments_keeping_encoded(raw_path: &str) -> Option<Vec<String>> {
    if !raw_path.contains(['%', '\\']) {
        return None; // the common case: nothing encoded, no allocation
    }
    let mut decoded = Vec::new();
    let mut differs = false;
    for seg in raw_path.split('/') {
        let d = percent_encoding::percent_decode_str(seg)
            .decode_utf8()
            .ok()?
            .into_owned();
        if d.contains('\0') {
            return None;
        }
        differs |= d.contains(['/', '\\', '%']);
        decoded.push(d);
    }
    if !differs {
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    for d in decoded {
        match d.as_str() {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(d),
        }
    }
    Some(out)
}

/// Is the raw path read as written, every way: no escapes or backslashes, no empty, `.` or
/// `..` segments (what [`segments`] would change)?
pub fn is_plain(raw_path: &str) -> bool {
    !raw_path.contains(['%', '\\'])
        && raw_path.strip_prefix('/').is_some_and(|p| {
            p.split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        })
}

/// Does a segment of the raw path hold, encoded (`%2F..%2F`, `%5C.`), a `.` or `..` step that
/// the decoded reading takes and a router keeping the segment whole does not? Then the two
/// readings name different resources, not one spelled two ways.
pub fn encoded_dot_step(raw_path: &str) -> bool {
    if !raw_path.contains(['%', '\\']) {
        return false;
    }
    let dot_step =
        |d: &str| d.contains(['/', '\\']) && d.split(['/', '\\']).any(|p| p == "." || p == "..");
    raw_path.split('/').any(|seg| {
        let once = percent_encoding::percent_decode_str(seg).decode_utf8_lossy();
        if dot_step(&once) {
            return true;
        }
        let twice = percent_encoding::percent_decode_str(&once).decode_utf8_lossy();
        dot_step(&twice)
    })
}

/// The segments as a server that drops `;params` (matrix parameters) from each segment sees
/// them: `r;x=1` -> `r`, `..;` -> `..` (and pops), empty results dropped. `None` when no segment
/// has a `;` (nothing to weigh twice).
pub fn without_matrix(segs: &[Cow<'_, str>]) -> Option<Vec<Cow<'static, str>>> {
    if !segs.iter().any(|s| s.contains(';')) {
        return None;
    }
    let mut out: Vec<Cow<'static, str>> = Vec::with_capacity(segs.len());
    for seg in segs {
        match seg.split(';').next().unwrap_or("") {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(Cow::Owned(s.to_string())),
        }
    }
    Some(out)
}

/// The segments as a framework that takes a trailing `.ext` for a response format (Rails'
/// `(.:format)`, any text after the last dot) routes them: `r.json` -> `r`, `r.x-y` -> `r`.
/// `None` when the last segment has no such suffix.
pub fn without_format<'p>(segs: &[Cow<'p, str>]) -> Option<Vec<Cow<'p, str>>> {
    let (last, rest) = segs.split_last()?;
    let (stem, ext) = last.rsplit_once('.')?;
    // Rails' `(.:format)` takes any text after the last dot (`[^/.?]+`): `.x-y`, `.json_2`.
    if stem.is_empty() || ext.is_empty() {
        return None;
    }
    let mut out = rest.to_vec();
    out.push(Cow::Owned(stem.to_string()));
    Some(out)
}

/// Readings of a path other than as written that a mainstream server could take: without
/// `;params`, and without a format suffix (on the path as written and without `;params`).
/// Empty (no allocation) for a plain path.
pub fn other_readings<'p>(segs: &[Cow<'p, str>]) -> Vec<Vec<Cow<'p, str>>> {
    let mut out: Vec<Vec<Cow<'p, str>>> = Vec::new();
    let mut add = |r: Vec<Cow<'p, str>>| {
        if !out.contains(&r) {
            out.push(r);
        }
    };
    if let Some(f) = without_format(segs) {
        add(f);
    }
    if let Some(m) = without_matrix(segs) {
        if let Some(f) = without_format(&m) {
            add(f);
        }
        add(m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_paths() {
        let cases: &[(&str, &[&str])] = &[
            ("/repos/a/b", &["repos", "a", "b"]),
            ("//repos///a/b/", &["repos", "a", "b"]),
            ("/repos/a/x/../b", &["repos", "a", "b"]),
            ("/repos/./a/b", &["repos", "a", "b"]),
            ("/repos%2Fa%2fb", &["repos", "a", "b"]),
            ("/repos/a%252Fb", &["repos", "a", "b"]),
            ("/re%70os/a/b", &["repos", "a", "b"]),
            ("/repos\\a\\b", &["repos", "a", "b"]),
        ];
        for (raw, want) in cases {
            assert_eq!(
                segments(raw).as_deref(),
                Some(&want.iter().map(|s| s.to_string()).collect::<Vec<_>>()[..]),
                "{raw}"
            );
        }
        for (raw, _) in cases {
            let owned = segments(raw);
            let cow = segments_cow(raw).map(|v| v.into_iter().map(|c| c.into_owned()).collect());
            assert_eq!(owned, cow, "{raw}");
        }
        assert_eq!(segments("/a%00b"), None);
        assert_eq!(segments_cow("/a\0b"), None);
        assert_eq!(host_key("API.GitHub.com."), "api.github.com");
        assert_eq!(segments("/a%ffb"), None);
        let cow = |v: &[&'static str]| v.iter().map(|s| Cow::Borrowed(*s)).collect::<Vec<_>>();
        assert_eq!(without_matrix(&cow(&["repos", "o", "r"])), None);
        assert_eq!(
            without_matrix(&cow(&["repos;x=1", "o", "x", "..;", "r;v=2"])),
            Some(cow(&["repos", "o", "r"]))
        );
        assert_eq!(without_format(&cow(&["repos", "o", "r"])), None);
        assert_eq!(without_format(&cow(&["repos", "o", ".r"])), None);
        assert_eq!(without_format(&cow(&["repos", "o", "r."])), None);
        assert_eq!(
            without_format(&cow(&["repos", "o", "r.json"])),
            Some(cow(&["repos", "o", "r"]))
        );
        // Any text after the last dot, as Rails' `(.:format)` takes it.
        for ext in ["x-y", "json_2", "a-very-long-format-name", "%3F"] {
            assert_eq!(
                without_format(&[Cow::Owned(format!("main.{ext}"))]),
                Some(cow(&["main"])),
                "{ext}"
            );
        }
        // `%2F` kept inside its segment by routers that split before decoding.
        let kept = |p: &str| segments_keeping_encoded(p);
        assert_eq!(kept("/repos/o/r"), None);
        assert_eq!(
            kept("/repos/o/r/environments/prod%2Fvariables/x"),
            Some(
                ["repos", "o", "r", "environments", "prod/variables", "x"]
                    .map(String::from)
                    .to_vec()
            )
        );
        assert_eq!(
            kept("/a/b%5Cc/%252F/../d"),
            Some(["a", "b\\c", "d"].map(String::from).to_vec())
        );
        assert_eq!(kept("/a/b%2F%00"), None);
        assert_eq!(
            kept("/repos/o/r/environments/prod\\variables/x"),
            Some(
                ["repos", "o", "r", "environments", "prod\\variables", "x"]
                    .map(String::from)
                    .to_vec()
            )
        );
        assert!(encoded_dot_step("/threads/1%2F..%2F..%2Frepos%2Fo"));
        assert!(encoded_dot_step("/a/b%5C.%5Cc"));
        assert!(encoded_dot_step("/a/b%252F..%252Fc"));
        assert!(!encoded_dot_step("/repos/o/r/labels/kind%2Fbug"));
        assert!(!encoded_dot_step("/repos/o/r/labels/v1..2"));
        assert_eq!(
            other_readings(&cow(&["repos", "o", "r"])),
            Vec::<Vec<Cow<str>>>::new()
        );
        assert_eq!(
            other_readings(&cow(&["repos", "o", "r.json;x=1"])),
            vec![cow(&["repos", "o", "r"]), cow(&["repos", "o", "r.json"])]
        );
    }
}
