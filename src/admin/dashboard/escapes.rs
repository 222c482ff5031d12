//! A JSON body that spells keys or values with `\u` escapes of characters that need none
//! (`"\u006e\u0065\u0077_owner":"\u0065\u0076\u0069\u006c"`) reads one way as bytes and
//! another to every JSON parser (`"new_owner":"evil"`). No mainstream writer escapes ASCII
//! letters, digits or most punctuation, so such a body was spelled to be misread: the pages show
//! its decoded reading beside the stored bytes, and name each key and value so spelled.
//! Everything here is the agent's: callers mask and escape it as they show it.

use super::arguments::clip;

/// Pairs named in the warning at most (each clipped): every page listing the review builds it.
const NAMED: usize = 8;

/// Characters JSON writers do escape as `\u00XX` (Go's HTML-safe set, Gson's, .NET's): an
/// escape of one of these is ordinary, not a disguise. `"` and `\` must be escaped.
const WRITERS_ESCAPE: &[char] = &['"', '\\', '<', '>', '&', '\'', '=', '+', '`'];

/// Does `c` need no escape in JSON, and does no common writer escape it?
fn needless(c: char) -> bool {
    (c.is_ascii_graphic() || c == ' ') && !WRITERS_ESCAPE.contains(&c)
}

/// One JSON string token of a body: its text decoded, and whether it holds a needless escape.
struct Token {
    decoded: String,
    needless: bool,
}

/// `body`'s text with every `\uXXXX` escape in its strings written as the character it stands
/// for (a surrogate pair as one character), but those JSON needs escaped (`"`, `\`, controls),
/// and the string tokens met on the way. Outside strings the text is copied.
fn decode(text: &str) -> (String, Vec<Token>) {
    let mut out = String::with_capacity(text.len());
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    let mut current: Option<Token> = None;
    while let Some((i, c)) = chars.next() {
        let Some(token) = current.as_mut() else {
            if c == '"' {
                current = Some(Token {
                    decoded: String::new(),
                    needless: false,
                });
            }
            out.push(c);
            continue;
        };
        match c {
            '"' => {
                out.push(c);
                tokens.extend(current.take());
            }
            '\\' => {
                let Some(&(_, next)) = chars.peek() else {
                    out.push(c);
                    continue;
                };
                if next != 'u' {
                    chars.next();
                    out.push(c);
                    out.push(next);
                    token.decoded.push(simple_escape(next));
                    continue;
                }
                match unicode_escape(&text[i..]) {
                    Some((ch, len)) => {
                        token.needless |= needless(ch);
                        token.decoded.push(ch);
                        if ch == '"' || ch == '\\' || (ch as u32) < 0x20 {
                            out.push_str(&text[i..i + len]);
                        } else {
                            out.push(ch);
                        }
                        // The escape's characters after the backslash (all ASCII).
                        for _ in 1..len {
                            chars.next();
                        }
                    }
                    None => out.push(c),
                }
            }
            c => {
                token.decoded.push(c);
                out.push(c);
            }
        }
    }
    (out, tokens)
}

/// What a two-character escape (`\n`, `\/`) stands for.
fn simple_escape(c: char) -> char {
    match c {
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'b' => '\u{8}',
        'f' => '\u{c}',
        other => other,
    }
}

/// The character a `\uXXXX` escape at the head of `s` stands for (a surrogate pair, two
/// escapes, as one) and the escape's length in bytes; `None` if malformed or a lone surrogate.
fn unicode_escape(s: &str) -> Option<(char, usize)> {
    let unit = |at: usize| -> Option<u32> {
        let hex = s.get(at..at + 6)?.strip_prefix("\\u")?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(hex, 16).ok()
    };
    let first = unit(0)?;
    if (0xD800..0xDC00).contains(&first) {
        let second = unit(6).filter(|u| (0xDC00..0xE000).contains(u))?;
        let c = char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))?;
        return Some((c, 12));
    }
    Some((char::from_u32(first)?, 6))
}

/// A JSON body spelled with needless `\u` escapes, as the pages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Escaped {
    /// The body with its escapes decoded (the reading every JSON parser gives).
    pub decoded: String,
    /// `key=value` (keys as dotted paths), decoded, for each value whose key or text was
    /// spelled with a needless escape; then how many are left off.
    pub pairs: Vec<String>,
}

impl Escaped {
    /// The warning line: `JSON body spelled with \u escapes …: new_owner=evil-org`.
    pub fn warning(&self) -> String {
        format!(
            "the JSON body is spelled with \\u escapes of characters that need none, so its \
             bytes read otherwise than every JSON parser reads them; decoded: {}",
            self.pairs.join(", ")
        )
    }
}

/// `body`, a JSON text, spelled with escapes no writer needs ([`needless`]): its decoded
/// reading and the pairs so spelled. `None` for any other body.
pub(crate) fn escaped(body: &[u8]) -> Option<Escaped> {
    let text = std::str::from_utf8(body).ok()?;
    if !text.contains("\\u") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let (decoded, tokens) = decode(text);
    let spelled: std::collections::HashSet<String> = tokens
        .into_iter()
        .filter(|t| t.needless)
        .map(|t| t.decoded)
        .collect();
    if spelled.is_empty() {
        return None;
    }
    let mut pairs = Vec::new();
    let mut more = 0usize;
    walk(&value, "", false, &spelled, &mut pairs, &mut more);
    if more > 0 {
        pairs.push(format!("and {more} more"));
    }
    Some(Escaped { decoded, pairs })
}

/// Lists each leaf under `path` whose key (or a key above it) or text is in `spelled`.
fn walk(
    v: &serde_json::Value,
    path: &str,
    under: bool,
    spelled: &std::collections::HashSet<String>,
    pairs: &mut Vec<String>,
    more: &mut usize,
) {
    let child = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        serde_json::Value::Object(m) => {
            for (k, item) in m {
                let under = under || spelled.contains(k);
                walk(item, &child(k), under, spelled, pairs, more);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &child(&i.to_string()), under, spelled, pairs, more);
            }
        }
        leaf => {
            let text = match leaf {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if under || spelled.contains(&text) {
                if pairs.len() < NAMED {
                    pairs.push(format!("{}={}", clip(path, 60), clip(&text, 80)));
                } else {
                    *more += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review: `"\u006e\u0065\u0077_owner":"\u0065\u0076…"` on a repository transfer showed only
    /// the escapes; every parser reads `new_owner=evil-org`.
    #[test]
    fn needless_escapes_are_decoded_and_named() {
        let body = br#"{"description":"move to our sandbox org acme-sandbox","\u006e\u0065\u0077_owner":"\u0065\u0076\u0069\u006c\u002d\u006f\u0072\u0067"}"#;
        let e = escaped(body).expect("escaped");
        assert_eq!(
            e.decoded,
            r#"{"description":"move to our sandbox org acme-sandbox","new_owner":"evil-org"}"#
        );
        assert_eq!(e.pairs, vec!["new_owner=evil-org".to_string()]);
        assert!(
            e.warning().contains("new_owner=evil-org"),
            "{}",
            e.warning()
        );
        let key = br#"{"c\u006fnfig":{"url":"https://evil.example/x","content_type":"json"}}"#;
        let e = escaped(key).expect("escaped");
        assert_eq!(
            e.pairs,
            vec![
                "config.content_type=json".to_string(),
                "config.url=https://evil.example/x".to_string()
            ]
        );
    }

    /// Escapes writers do make (Go's `\u003c`, Python's non-ASCII, a quote, a control) are not
    /// a disguise: no warning. An escaped backslash before `u` is no escape at all.
    #[test]
    fn ordinary_escapes_are_not_flagged() {
        for body in [
            &br#"{"a":"\u003cb\u003e \u0026 caf\u00e9 \ud83d\ude00"}"#[..],
            br#"{"a":"say \u0022hi\u0022\n","b":"\\u0061"}"#,
            br#"{"a":"plain"}"#,
            b"name=\\u0061",
            br#"{"a":"\u0061""#,
        ] {
            assert_eq!(escaped(body), None, "{}", String::from_utf8_lossy(body));
        }
        // Decoded, everything but what JSON must escape reads as the character.
        let (text, _) = decode(r#"{"a":"\u0061\u0022\u005c\u0001\ud83d\ude00\u00e9"}"#);
        assert_eq!(text, "{\"a\":\"a\\u0022\\u005c\\u0001\u{1F600}é\"}");
    }
}
