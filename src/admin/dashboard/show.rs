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
