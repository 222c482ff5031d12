//! Characters a reader cannot see, or that act on what she sees: C0 and C1 controls (a C1 CSI,
//! U+009B, works as ESC [ in many terminals), line and paragraph separators, and every
//! character that shows nothing ([`ignorable`]: Unicode's default-ignorable code points and
//! format characters, bidi overrides and isolates, zero-width characters, variation selectors,
//! tag characters, Hangul fillers, the braille blank). Agent text shown to a reviewer
//! (dashboard, link pages, `airlock reviews`) has them escaped, so a held call cannot read as
//! another (`"scratch\u{202E}"` reversing what follows, a terminal told to conceal `prod`); keys
//! are compared with them dropped ([`folded`]), as the catalog's command checks read text.

use unicode_normalization::UnicodeNormalization;

/// Is `c` hidden or acting (tab, CR and LF are not: they lay text out where it can be seen)?
pub fn hidden(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{7F}'..='\u{9F}'
        | '\u{2028}' | '\u{2029}')
        || ignorable(c)
}

/// Does `c` show nothing, or nothing of its own? Every Default_Ignorable_Code_Point and every
/// character of general category Cf (format) as of Unicode 16 (`tests` checks both against
/// regex-syntax's tables), with the Hangul fillers and the braille blank (U+2800), which render
/// as blanks of no width or of a letter's.
pub fn ignorable(c: char) -> bool {
    matches!(c,
        '\u{AD}' | '\u{34F}' | '\u{600}'..='\u{605}' | '\u{61C}' | '\u{6DD}' | '\u{70F}'
        | '\u{890}' | '\u{891}' | '\u{8E2}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{2800}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{110BD}' | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// `s` as keys are compared for look-alikes: NFKC, with every [`hidden`] character dropped
/// (before and after, as NFKC may make one). `permission\u{1D173}` and `ｐermission` fold to
/// `permission`.
pub fn folded(s: &str) -> String {
    s.chars()
        .filter(|c| !hidden(*c))
        .nfkc()
        .filter(|c| !hidden(*c))
        .collect()
}

/// `s` with every [`hidden`] character as a visible `\u{…}` escape.
pub fn escaped(s: &str) -> String {
    escape_with(s, |c, out| {
        out.push_str(&format!("\\u{{{:04X}}}", c as u32))
    })
}

/// `s` (JSON text) with every [`hidden`] character above U+001F written as a JSON `\uXXXX`
/// escape (UTF-16, surrogate pairs above U+FFFF): the same JSON value, safe on a terminal.
/// serde_json escapes C0 controls itself and leaves the rest as they are.
pub fn json_escaped(s: &str) -> String {
    escape_with(s, |c, out| {
        let mut units = [0u16; 2];
        for u in c.encode_utf16(&mut units) {
            out.push_str(&format!("\\u{u:04x}"));
        }
    })
}

fn escape_with(s: &str, esc: impl Fn(char, &mut String)) -> String {
    if !s.chars().any(hidden) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if hidden(c) {
            esc(c, &mut out);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Security review: U+1D173, U+1BCA0, U+13430, U+FFF0, U+E0080 … and the braille blank
    /// were shown raw. Every default-ignorable code point and format character is hidden, by
    /// the Unicode tables regex-syntax carries.
    #[test]
    fn every_ignorable_and_format_character_is_hidden() {
        let tables = [
            regex::Regex::new(r"^\p{Default_Ignorable_Code_Point}$").expect("DI"),
            regex::Regex::new(r"^\p{Cf}$").expect("Cf"),
        ];
        let mut missed = Vec::new();
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let mut b = [0u8; 4];
            if tables.iter().any(|t| t.is_match(c.encode_utf8(&mut b))) && !ignorable(c) {
                missed.push(format!("U+{:04X}", c as u32));
            }
        }
        let first: Vec<&String> = missed.iter().take(40).collect();
        assert!(
            missed.is_empty(),
            "{} not hidden: {first:?} …",
            missed.len()
        );
        for c in [
            '\u{1D173}',
            '\u{1BCA0}',
            '\u{13430}',
            '\u{FFF0}',
            '\u{E0080}',
            '\u{E01F0}',
            '\u{2800}',
        ] {
            assert!(hidden(c), "U+{:04X}", c as u32);
        }
        for c in ['a', ' ', '\t', '\n', 'é', '中', '\u{3000}'] {
            assert!(!hidden(c), "U+{:04X}", c as u32);
        }
        assert_eq!(folded("permission\u{1D173}"), "permission");
        assert_eq!(folded("\u{FF50}ermis\u{200B}sion"), "permission");
    }

    #[test]
    fn hidden_characters_are_escaped_and_json_stays_the_same_value() {
        let agent = "prod\u{9B}8m\u{202E}x\u{2028}y\u{E0041}\u{AD}z\u{1b}";
        assert_eq!(
            escaped(agent),
            "prod\\u{009B}8m\\u{202E}x\\u{2028}y\\u{E0041}\\u{00AD}z\\u{001B}"
        );
        assert_eq!(escaped("tab\tline\nand é 中文"), "tab\tline\nand é 中文");
        let json =
            serde_json::to_string_pretty(&serde_json::json!({ "repo": agent })).expect("json");
        let safe = json_escaped(&json);
        assert!(safe.chars().all(|c| !hidden(c) || c == '\n'), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).expect("still JSON");
        assert_eq!(back["repo"], agent);
    }
}
