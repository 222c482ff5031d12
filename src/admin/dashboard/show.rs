//! How a held call's body reads for a reviewer (its arguments and money: `arguments.rs`): the
//! body itself, whole, as text (a git push's packfile and binary answers as their size and a
//! hex dump of their head, never raw bytes), invisible characters shown as escapes. Everything here is the agent's: the templates
//! escape it.

/// How much of an upstream answer's text is shown (a held request's body is shown whole).
const ANSWER_SHOWN: usize = 16 * 1024;
/// How many bytes of a binary body are dumped in hex.
const HEX_SHOWN: usize = 256;

/// Invisible and control characters (see [`crate::visible`]) as visible `\u{…}` escapes: an
/// agent must not make the request a reviewer approves read as another (`"scratch\u{202E}"`
/// reversing what follows).
pub(super) fn visible(s: &str) -> String {
    crate::visible::escaped(s)
}

/// A held request's body as shown to the person deciding: all of it (held bodies are capped
/// when read), as text, control characters escaped by [`visible`] afterwards; bytes that are
/// not UTF-8 shown as U+FFFD, with a note. Nothing the agent adds (padding, a control
/// character, a stray byte) can push a parameter out of view. A git push's body is a packfile
/// (its ref commands are named in the review): its size and a hex dump of its head.
pub(super) fn request_body_text(body: &[u8], git_push: bool) -> String {
    if git_push {
        return hex_head(body);
    }
    match std::str::from_utf8(body) {
        Ok(t) => t.to_string(),
        Err(_) => format!(
            "{}\n[the body is not valid UTF-8: each byte that is not is shown as U+FFFD]",
            String::from_utf8_lossy(body)
        ),
    }
}

/// Line breaks in one run of blanks past which the run is shown as a marker.
const MOST_BREAKS: usize = 3;
/// Blanks on one line past which the run is shown as a marker (deep JSON indents stay).
const MOST_BLANKS: usize = 40;

/// `text` (a stored request as shown) with each run of whitespace longer than a few lines
/// ([`MOST_BREAKS`]) or characters ([`MOST_BLANKS`]) shown as a marker, `[… 3000 blank lines
/// …]`: padding must not push a parameter out of view (the stored bytes are untouched, and sent
/// as they are). Run after masking and escaping, so a mask still matches its value whole.
pub(super) fn collapse_blanks(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(1 << 20));
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let breaks = run.matches('\n').count();
        let chars = run.chars().count();
        if breaks > MOST_BREAKS {
            out.push_str(&format!("\n[… {breaks} blank lines …]\n"));
        } else if breaks == 0 && chars > MOST_BLANKS || breaks > 0 && chars > MOST_BLANKS + breaks {
            out.push_str(&format!(" [… {chars} blank characters …] "));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() {
            run.push(c);
        } else {
            if !run.is_empty() {
                flush(&mut run, &mut out);
            }
            out.push(c);
        }
    }
    if !run.is_empty() {
        flush(&mut run, &mut out);
    }
    out
}

/// An upstream answer's body as shown: UTF-8 text (its first 16 KiB), or its size and a hex
/// dump of its head.
pub(super) fn answer_text(body: &[u8]) -> String {
    if std::str::from_utf8(body).is_err() {
        return hex_head(body);
    }
    let mut end = body.len().min(ANSWER_SHOWN);
    while end < body.len() && std::str::from_utf8(&body[..end]).is_err() {
        end -= 1;
    }
    let mut t = String::from_utf8_lossy(&body[..end]).into_owned();
    if end < body.len() {
        t.push_str(&format!("\n[… {} more bytes not shown]", body.len() - end));
    }
    t
}

/// Size and a hex dump of the head, with the printable ASCII beside it (a git push's commands
/// and `PACK` header read there).
fn hex_head(body: &[u8]) -> String {
    let shown = &body[..body.len().min(HEX_SHOWN)];
    let mut t = format!(
        "[binary body, {} bytes; the first {} in hex:]\n",
        body.len(),
        shown.len()
    );
    for (i, line) in shown.chunks(16).enumerate() {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = line
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        t.push_str(&format!(
            "{:08x}  {:<47}  |{ascii}|\n",
            i * 16,
            hex.join(" ")
        ));
    }
    if body.len() > shown.len() {
        t.push_str(&format!("[… {} more bytes]\n", body.len() - shown.len()));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bidi overrides and zero-width characters an agent put in a body are shown as escapes,
    /// so the text a reviewer reads is the text that will be sent.
    #[test]
    fn invisible_characters_are_shown_as_escapes() {
        let shown = visible("{\"name\":\"scratch\u{202E}cilbup\u{200B}\"}");
        assert_eq!(shown, "{\"name\":\"scratch\\u{202E}cilbup\\u{200B}\"}");
        assert_eq!(visible("plain text, é and 中文"), "plain text, é and 中文");
    }

    /// Security review: 3000 newlines between two fields pushed `"permission":"admin"` out of
    /// view. Long runs of blanks are shown as a marker; ordinary layout stays.
    #[test]
    fn padding_is_shown_as_a_marker() {
        let cases: &[(String, &str)] = &[
            (
                format!(
                    "{{\"note\":\"ok\",{}\"permission\":\"admin\"}}",
                    "\n".repeat(3000)
                ),
                "{\"note\":\"ok\",\n[… 3000 blank lines …]\n\"permission\":\"admin\"}",
            ),
            (
                format!("a=1&b={}&role=admin", " ".repeat(500)),
                "a=1&b= [… 500 blank characters …] &role=admin",
            ),
            (
                format!("x{}y", " \r\n\t".repeat(10)),
                "x\n[… 10 blank lines …]\ny",
            ),
            (
                "{\n  \"a\": {\n    \"b\": 1\n  }\n}\n\n".into(),
                "{\n  \"a\": {\n    \"b\": 1\n  }\n}\n\n",
            ),
            (format!("{{\n{}\"deep\":1}}", " ".repeat(40)), ""),
        ];
        for (text, want) in cases {
            let want = if want.is_empty() { text.as_str() } else { want };
            assert_eq!(collapse_blanks(text), want);
        }
    }

    #[test]
    fn binary_bodies_are_a_size_and_a_hex_head() {
        let mut pack = b"00940000000000000000000000000000000000000000 1111111111111111111111111111111111111111 refs/heads/main\0report-status\n0000PACK".to_vec();
        pack.extend((0..=255u8).cycle().take(5000));
        for t in [request_body_text(&pack, true), answer_text(&pack)] {
            assert!(
                t.starts_with(&format!("[binary body, {} bytes;", pack.len())),
                "{t}"
            );
            assert!(t.contains("|0094000000000000|"), "{t}");
            assert!(t.contains("[… "), "{t}");
            assert!(
                t.chars().all(|c| !c.is_control() || c == '\n'),
                "no raw bytes: {t:?}"
            );
        }
        assert_eq!(answer_text(b"{\"a\":1}\n"), "{\"a\":1}\n");
        assert_eq!(answer_text("héllo".as_bytes()), "héllo");
    }

    /// Review of session 16: a control character made the body a 256-byte hex dump, and text
    /// was cut at 16 KiB; either hid a parameter after padding. A request body is now shown
    /// whole, its controls escaped, its stray bytes as U+FFFD.
    #[test]
    fn a_request_body_is_shown_whole_whatever_the_agent_puts_in_front() {
        let padded = format!(
            "{{\"note\":\"\u{85}{}\",\"permission\":\"admin\"}}",
            "x".repeat(300)
        );
        let t = visible(&request_body_text(padded.as_bytes(), false));
        assert!(t.contains("\\u{0085}"), "{t}");
        assert!(t.ends_with("\"permission\":\"admin\"}"), "{t}");
        let long = format!(
            "description={}&transfer_data[destination]=acct_evil",
            "A".repeat(17_000)
        );
        assert!(request_body_text(long.as_bytes(), false).ends_with("acct_evil"));
        let stray = b"amount=1&x=\xff\x00&transfer_data[destination]=acct_evil".to_vec();
        let t = visible(&request_body_text(&stray, false));
        assert!(t.contains("acct_evil"), "{t}");
        assert!(t.contains('\u{FFFD}') && t.contains("\\u{0000}"), "{t}");
        assert!(t.contains("not valid UTF-8"), "{t}");
    }
}
