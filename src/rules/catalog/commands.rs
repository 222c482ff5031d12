//! Command texts in free text: a comment or body that a bot or an AI agent acts on (`@copilot`,
//! `bors r+`, `/lgtm`, `atlantis apply`). A `commands = true` condition holds when a field's
//! text, read the widest way any reader might (HTML entities decoded, Markdown escapes dropped,
//! NFKC, invisible characters removed, any case), holds one of the service's `command_texts`.
//! A text starting with a newline must start a line (leading blanks, `>` quote marks, list and
//! heading markers and HTML tags are skipped); one starting and ending with a newline must be a
//! whole line, but for trailing blanks, `.` and `!` (approval words such as a lone `approve`,
//! which approval actions compare with the whole comment); one starting with a blank must follow anything
//! but a letter, digit, `.`, `_`, `/` or `-` (`ok,/deploy` and `(/deploy)` hold, `src/deploy`
//! does not). A phrase, ASCII words with single blanks between them (`ok to test`), also holds
//! with any run of other characters between its words (`ok-to-test`, `ok\n\nto, test`), as a
//! bot matching `ok\W+to\W+test` reads it (Jenkins' pull request builder). Over-matching only
//! costs a review; a reading that misses a trigger lets it through.

use unicode_normalization::UnicodeNormalization;

/// A command text as written in a rule file, in the form it is compared in (a line-start text
/// as the start of a line reads after [`normalize`], so `\n- [x] ship` can match).
pub(super) fn needle(text: &str) -> Option<String> {
    if text.len() > 1 && text.starts_with('\n') && text.ends_with('\n') {
        // A whole line: compared as a line reads once its trailing blanks, `.` and `!` are
        // off, so the word is taken the same way; one holding a line break could never match.
        let word = fold(&text[1..text.len() - 1]);
        let word = line_start_of(word.trim_end_matches([' ', '.', '!']));
        if word.trim().is_empty() || word.contains('\n') {
            return None;
        }
        return Some(format!("\n{word}\n"));
    }
    let line_start = text.starts_with('\n');
    let folded = fold(text.trim_start_matches('\n'));
    let body = if line_start {
        line_start_of(folded.trim_start_matches('\n')).to_string()
    } else {
        folded
    };
    if body.trim().is_empty() {
        return None;
    }
    Some(if line_start {
        format!("\n{body}")
    } else {
        body
    })
}

/// Does `text` hold any of `needles` (each from [`needle`])?
pub(super) fn holds_any(text: &str, needles: &[String]) -> bool {
    let hay = format!("\n{}", normalize(text));
    // The text as words only, made once if a phrase needs it.
    let mut words: Option<String> = None;
    needles.iter().any(|n| match n.strip_prefix(' ') {
        // A whole line.
        None if n.len() > 2 && n.starts_with('\n') && n.ends_with('\n') => {
            let word = &n[1..n.len() - 1];
            hay.split('\n')
                .any(|line| line.trim_end_matches([' ', '.', '!']) == word)
        }
        // After anything but a word character or a path's punctuation.
        Some(rest) => hay.match_indices(rest).any(|(i, _)| {
            hay[..i]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_alphanumeric() || matches!(c, '.' | '_' | '/' | '-')))
        }),
        None => {
            hay.contains(n.as_str())
                || (is_phrase(n)
                    && words
                        .get_or_insert_with(|| words_of(&hay))
                        .contains(n.as_str()))
        }
    })
}

/// Is `needle` a phrase: ASCII letters and digits in words, one blank between each two?
fn is_phrase(needle: &str) -> bool {
    needle.contains(' ')
        && needle
            .split(' ')
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// `text` with every run of characters other than ASCII letters and digits as one blank: how a
/// pattern with `\W+` between its words reads it (Java's `\W` takes every non-ASCII letter, and
/// `_`, here too: over-matching holds).
fn words_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    out
}

/// The widest reading: entities decoded, `\` before punctuation dropped, NFKC, invisible
/// characters and combining marks dropped, lower case (dotless `ı` as `i`, as Python's and
/// Java's case-insensitive matching take it), lines split on any line break (Python's
/// `splitlines` ones too) with what may stand before a command at a line's start removed:
/// blanks, `>` quote marks, Markdown list and heading markers, HTML tags (`<p>/approve`).
fn normalize(text: &str) -> String {
    fold(text)
        .split('\n')
        .map(line_start_of)
        .collect::<Vec<_>>()
        .join("\n")
}

/// [`normalize`] short of the line starts: how a command text is compared (its own blanks kept).
fn fold(text: &str) -> String {
    let decoded = unescape_markdown(&decode_entities(text));
    let folded: String = decoded
        .nfkc()
        .filter(|c| !crate::visible::ignorable(*c) && !('\u{300}'..='\u{36f}').contains(c))
        .flat_map(char::to_lowercase)
        .filter(|c| !('\u{300}'..='\u{36f}').contains(c))
        .filter_map(|c| match c {
            '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{b}' | '\u{c}' | '\u{1c}' | '\u{1d}'
            | '\u{1e}' => Some('\n'),
            '\u{1f}' => None,
            '\u{131}' => Some('i'),
            // Any other blank (tab, U+1680, …) reads as a space.
            c if c.is_whitespace() && c != '\n' => Some(' '),
            c => Some(c),
        })
        .collect();
    // Tags split lines too, as a renderer's text reads them (`ok<br>/merge`).
    folded
        .replace("<br>", "\n")
        .replace("<br/>", "\n")
        .replace("<br />", "\n")
}

/// A line with what may stand before a command removed: blanks, `>`, list and heading markers
/// (`-`, `*`, `+`, `#`, `1.`, `1)`), HTML tags.
fn line_start_of(mut line: &str) -> &str {
    loop {
        let before = line.len();
        line = line.trim_start_matches(|c: char| {
            c.is_whitespace() || matches!(c, '>' | '-' | '*' | '+' | '#')
        });
        let digits = line.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && matches!(line.as_bytes().get(digits), Some(b'.' | b')')) {
            line = &line[digits + 1..];
        }
        if line.starts_with('<') {
            if let Some(end) = line.find('>') {
                line = &line[end + 1..];
            }
        }
        if line.len() == before {
            return line;
        }
    }
}

/// HTML character references as Markdown renderers decode them: numeric (`&#64;`, `&#x40;`,
/// the `;` optional as browsers allow) and the named ones for ASCII punctuation and blanks.
fn decode_entities(text: &str) -> String {
    const NAMED: &[(&str, char)] = &[
        ("commat", '@'),
        ("sol", '/'),
        ("bsol", '\\'),
        ("period", '.'),
        ("colon", ':'),
        ("num", '#'),
        ("excl", '!'),
        ("lt", '<'),
        ("gt", '>'),
        ("amp", '&'),
        ("lsqb", '['),
        ("lbrack", '['),
        ("rsqb", ']'),
        ("rbrack", ']'),
        ("plus", '+'),
        ("equals", '='),
        ("hyphen", '-'),
        ("dash", '-'),
        ("lowbar", '_'),
        ("nbsp", ' '),
        ("tab", ' '),
        ("newline", '\n'),
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        let (decoded, used) = reference(rest, NAMED);
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => out.push('&'),
        }
    }
    out.push_str(rest);
    out
}

/// The character a reference after `&` names, and the bytes it used.
fn reference(s: &str, named: &[(&str, char)]) -> (Option<char>, usize) {
    let semi = |n: usize| usize::from(s.as_bytes().get(n) == Some(&b';'));
    if let Some(num) = s.strip_prefix('#') {
        let (hex, digits) = match num.strip_prefix(['x', 'X']) {
            Some(h) => (true, h),
            None => (false, num),
        };
        let len = digits
            .bytes()
            .take_while(|b| {
                if hex {
                    b.is_ascii_hexdigit()
                } else {
                    b.is_ascii_digit()
                }
            })
            .count();
        if len == 0 {
            return (None, 0);
        }
        let value = u32::from_str_radix(&digits[..len], if hex { 16 } else { 10 }).ok();
        let used = 1 + usize::from(hex) + len;
        // An out-of-range reference is U+FFFD to a renderer: nothing a command holds.
        let c = value.and_then(char::from_u32).unwrap_or('\u{fffd}');
        return (Some(c), used + semi(used));
    }
    let len = s.bytes().take_while(u8::is_ascii_alphanumeric).count();
    let name = s[..len].to_ascii_lowercase();
    match named.iter().find(|(n, _)| *n == name) {
        Some((_, c)) if semi(len) == 1 => (Some(*c), len + 1),
        _ => (None, 0),
    }
}

/// Markdown backslash escapes: `\@copilot` renders as `@copilot`.
fn unescape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek().is_some_and(char::is_ascii_punctuation) {
            continue;
        }
        out.push(c);
    }
    out
}

/// `text` read loosely, as a lenient upstream might match a name (an accent- and
/// case-insensitive collation, a `strip` that takes NULs): NFKD, combining marks, invisible and
/// control characters dropped, lower case, blanks trimmed.
pub(super) fn loose(text: &str) -> String {
    let folded: String = text
        .nfkd()
        .filter(|c| {
            !crate::visible::ignorable(*c)
                && !c.is_control()
                && !('\u{300}'..='\u{36f}').contains(c)
        })
        .flat_map(char::to_lowercase)
        .collect();
    folded.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needles() -> Vec<String> {
        [
            "@copilot",
            "\nbors ",
            "\n/",
            "atlantis",
            "@mergify",
            "@gemini",
            " /deploy",
            "\napprove\n",
            "\nyes\n",
            "ok to test",
            " digger",
        ]
        .iter()
        .filter_map(|t| needle(t))
        .collect()
    }

    #[test]
    fn command_readings_table() {
        let cases: &[(&str, bool)] = &[
            ("@copilot please fix the tests", true),
            ("thanks @Copilot!", true),
            ("&#64;copilot go", true),
            ("&#x40;COPILOT go", true),
            ("&#064copilot go", true),
            ("&commat;copilot go", true),
            ("\\@copilot go", true),
            ("@co\u{200b}pilot go", true),
            ("\u{ff20}\u{ff43}opilot", true),
            ("bors r+", true),
            ("looks good\n\n  bors r+", true),
            ("> bors r+", true),
            ("LGTM\r\n/lgtm", true),
            ("ok\u{2028}/approve", true),
            ("&sol;lgtm", true),
            ("\\/approve", true),
            ("run atlantis apply", true),
            ("@Merg\u{131}fyio queue", true),
            ("@GEM\u{130}N\u{130} fix", true),
            ("ok\u{1e}/merge", true),
            ("<p>/approve</p>", true),
            ("ok<br>/approve", true),
            ("- /lgtm", true),
            ("1. /lgtm", true),
            ("## /deploy", true),
            ("ok\t/deploy", true),
            ("ok,/deploy", true),
            ("(/deploy)", true),
            ("|/deploy|", true),
            ("see src/deploy/x", false),
            ("a.b/deploy", false),
            ("neighbors agree", false),
            ("see src/test/x.rs", false),
            ("GitHub Copilot wrote this", false),
            ("mail me at a@copi.lot", false),
            ("&amp;#64;copilot", false),
            ("approve", true),
            ("Approve!!\n\n", true),
            ("  YES. ", true),
            ("thanks\n> yes", true),
            ("approve later", false),
            ("yes, but not now", false),
            ("disapprove", false),
            ("", false),
            // a phrase, with any run of non-word characters between its words
            ("ok to test", true),
            ("Is it OK to test this?", true),
            ("ok-to-test", true),
            ("ok_to_test", true),
            ("ok\n\nto,  test", true),
            ("ok\u{a0}to\u{3000}test", true),
            ("ok \u{4e2d} to test", true),
            ("book to testify", true),
            ("ok totest", false),
            ("okto test", false),
            ("ok, not yet; test later", false),
            // a word-start text: after anything but a word character or a path's punctuation
            ("digger apply -p prod", true),
            ("please @digger plan", true),
            ("(digger unlock)", true),
            ("the gravedigger", false),
        ];
        let n = needles();
        for (text, want) in cases {
            assert_eq!(holds_any(text, &n), *want, "{text:?}");
        }
    }

    #[test]
    fn loose_readings() {
        assert_eq!(loose("s\u{e1}fe to test\u{200b}"), "safe to test");
        assert_eq!(loose(" SUCCESS\0"), "success");
        assert_eq!(loose("\u{ff33}uccess"), "success");
    }

    #[test]
    fn blank_needles_are_refused() {
        assert_eq!(needle("\n"), None);
        assert_eq!(needle("  "), None);
        assert_eq!(needle("\n/").as_deref(), Some("\n/"));
        assert_eq!(needle("@CoPilot").as_deref(), Some("@copilot"));
        assert_eq!(needle(" /Deploy").as_deref(), Some(" /deploy"));
        assert_eq!(needle("\n- [x] Ship").as_deref(), Some("\n[x] ship"));
        assert_eq!(needle("\n#deploy").as_deref(), Some("\ndeploy"));
        assert_eq!(needle("\n- "), None);
        assert_eq!(needle("\nApprove\n").as_deref(), Some("\napprove\n"));
        assert_eq!(needle("\nok.\n").as_deref(), Some("\nok\n"));
        assert_eq!(needle("\nfoo\n\n"), None);
        assert_eq!(needle("\n!\n"), None);
    }

    #[test]
    fn phrases_are_ascii_words_with_single_blanks() {
        for (n, want) in [
            ("ok to test", true),
            ("test this please", true),
            ("atlantis", false),
            ("/azp ", false),
            ("ok  to test", false),
            ("kodiak: merge", false),
            ("\nrun plan", false),
        ] {
            assert_eq!(is_phrase(n), want, "{n:?}");
        }
        assert_eq!(words_of("\nOk-_-to\n test!"), " Ok to test ");
    }
}
