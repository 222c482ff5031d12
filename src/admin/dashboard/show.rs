//! How a held call's body reads for a reviewer (its arguments and money: `arguments.rs`): the
//! body itself (text as text, anything else as its size and a hex dump of its head, never raw
//! bytes), invisible characters shown as escapes. Everything here is the agent's: the templates
//! escape it.

/// How much of a text body is shown.
const TEXT_SHOWN: usize = 16 * 1024;
/// How many bytes of a binary body are dumped in hex.
const HEX_SHOWN: usize = 256;

/// Invisible and control characters (see [`crate::visible`]) as visible `\u{…}` escapes: an
/// agent must not make the request a reviewer approves read as another (`"scratch\u{202E}"`
/// reversing what follows).
pub(super) fn visible(s: &str) -> String {
    crate::visible::escaped(s)
}

/// Is `body` text a person can read: UTF-8 without control characters other than tab, CR, LF?
fn is_text(body: &[u8]) -> bool {
    std::str::from_utf8(body).is_ok_and(|s| {
        !s.chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
    })
}

/// A body as shown: text (its first 16 KiB), or its size and a hex dump of its head with the
/// printable ASCII beside it (a git push's commands and `PACK` header read there).
pub(super) fn body_text(body: &[u8]) -> String {
    if is_text(body) {
        let mut end = body.len().min(TEXT_SHOWN);
        while end < body.len() && std::str::from_utf8(&body[..end]).is_err() {
            end -= 1;
        }
        let mut t = String::from_utf8_lossy(&body[..end]).into_owned();
        if end < body.len() {
            t.push_str(&format!("\n[… {} more bytes not shown]", body.len() - end));
        }
        return t;
    }
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
        let t = body_text(&pack);
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
        assert_eq!(body_text(b"{\"a\":1}\n"), "{\"a\":1}\n");
        assert_eq!(body_text("héllo".as_bytes()), "héllo");
    }
}
