//! Characters a reader cannot see, or that act on what she sees: C0 and C1 controls (a C1 CSI,
//! U+009B, works as ESC [ in many terminals), bidi overrides and isolates, zero-width and
//! other invisible characters, line and paragraph separators, variation selectors and tag
//! characters. Agent text shown to a reviewer (dashboard, link pages, `airlock reviews`) has them
//! escaped, so a held call cannot read as another (`"scratch\u{202E}"` reversing what follows,
//! a terminal told to conceal `prod`).

/// Is `c` hidden or acting (tab, CR and LF are not: they lay text out where it can be seen)?
pub fn hidden(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{7F}'..='\u{9F}'
        | '\u{AD}' | '\u{34F}' | '\u{61C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}' | '\u{E0000}'..='\u{E007F}'
        | '\u{E0100}'..='\u{E01EF}')
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
