//! Echoes of secret-named query values: text elsewhere in a held request (a header, the path,
//! another parameter, the body, the rule's explanation) or in the upstream's answer that equals
//! the value of a secret-named query parameter (`?token=…`). Such text is masked wherever a
//! request is shown, but the agent chose the value, and may have chosen it to hide what matters
//! (`?metadata[token]=acct_1Evil` with `Stripe-Account: acct_1Evil`): so an echo is never shown
//! as a plain `[redacted]`. It reads `[redacted: same value as secret-named query parameter
//! NAME]`, and the pages and the review JSON say that a masked value shows elsewhere
//! ([`QueryEchoes::found_in`]).

use super::redact;

/// How many characters of a parameter's name its echo marker shows.
const NAME_SHOWN: usize = 40;

/// The secret-named query parameters of one request whose values are long enough to be masked
/// where they echo ([`redact::secret_query_values`]), each value with its parameter's name.
#[derive(Clone, Debug, Default)]
pub struct QueryEchoes {
    /// `(value, name)`, longest value first (a value containing another is masked whole).
    fields: Vec<(String, String)>,
}

impl QueryEchoes {
    /// The secret-named query values of `path_and_query` (raw and percent-decoded).
    pub fn of(path_and_query: &str) -> QueryEchoes {
        let mut fields: Vec<(String, String)> = Vec::new();
        let query = path_and_query.split_once('?').map_or("", |x| x.1);
        for pair in query.split('&') {
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let name = redact::decode(name);
            // A value already masked (a sealed review's URL) hides nothing.
            if !redact::is_secret_query_param(&name) || redact::decode(value) == redact::REDACTED {
                continue;
            }
            let forms = redact::with_clipped_forms(&[value.to_string(), redact::decode(value)]);
            for v in forms {
                if v.len() >= redact::MIN_ECHO_LEN && !fields.iter().any(|(f, _)| *f == v) {
                    fields.push((v, name.clone()));
                }
            }
        }
        fields.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        QueryEchoes { fields }
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The values, longest first.
    pub fn values(&self) -> Vec<String> {
        self.fields.iter().map(|(v, _)| v.clone()).collect()
    }

    /// `text` with every echo of a value replaced by its marker, in one pass (a marker is never
    /// searched again: a value such as `redact` cannot break another's marker).
    pub fn mask(&self, text: &str) -> String {
        if !self.fields.iter().any(|(v, _)| text.contains(v.as_str())) {
            return text.to_string();
        }
        // The byte ranges masked, each with the field it echoes; longest values claim first.
        let mut taken: Vec<(usize, usize, usize)> = Vec::new();
        let mut covered = vec![false; text.len()];
        for (i, (v, _)) in self.fields.iter().enumerate() {
            // Every occurrence, overlapping ones included: one that overlaps a longer value's
            // range is skipped by a character, not by its length (a later whole occurrence
            // would be stepped over).
            let mut pos = 0;
            while let Some(off) = text[pos..].find(v.as_str()) {
                let at = pos + off;
                let end = at + v.len();
                if covered[at..end].iter().any(|c| *c) {
                    pos = at + text[at..].chars().next().map_or(1, char::len_utf8);
                    continue;
                }
                covered[at..end].iter_mut().for_each(|c| *c = true);
                taken.push((at, end, i));
                pos = end;
            }
        }
        taken.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut from = 0;
        for (at, end, i) in taken {
            out.push_str(&text[from..at]);
            out.push_str(&self.marker(i));
            from = end;
        }
        out.push_str(&text[from..]);
        out
    }

    /// `[redacted: same value as secret-named query parameter NAME]`.
    fn marker(&self, i: usize) -> String {
        format!(
            "[redacted: same value as secret-named query parameter {}]",
            self.shown_name(&self.fields[i].1)
        )
    }

    /// The names of the parameters whose values show in any of `texts`: each text is shown
    /// masked, so the page must say that something was masked there. Each name once.
    pub fn found_in<'a>(&self, texts: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for t in texts {
            for (v, name) in &self.fields {
                if !names.contains(name) && t.contains(v.as_str()) {
                    names.push(name.clone());
                }
            }
        }
        names
    }

    /// A parameter's name as a marker or a warning shows it: clipped, and itself masked (a
    /// name may spell another parameter's value). A name other than plain form keys
    /// (`metadata[token]`) is shown quoted, its controls escaped: the agent chose it, and a
    /// newline or `]` in it would forge lines or end the marker early.
    pub fn shown_name(&self, name: &str) -> String {
        let mut shown: String = name.chars().take(NAME_SHOWN).collect();
        if name.chars().nth(NAME_SHOWN).is_some() {
            shown.push('…');
        }
        let masked = redact::mask_values(&shown, &self.values());
        if plain_key(name) {
            masked
        } else {
            format!("{masked:?}")
        }
    }
}

/// `word` or `word[word]…`, words of letters, digits, `_`, `-` and `.`.
fn plain_key(name: &str) -> bool {
    let word = |w: &str| {
        w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    };
    let (head, mut rest) = name.split_once('[').map_or((name, ""), |(h, r)| (h, r));
    if head.is_empty() || !word(head) {
        return false;
    }
    if name.contains('[') {
        rest = match rest.strip_suffix(']') {
            Some(r) => r,
            None => return false,
        };
        return rest.split("][").all(word);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_names_the_field_whose_value_it_is() {
        let e = QueryEchoes::of("/v1/payouts?metadata%5Btoken%5D=acct_1EvilAcct&page=2&sig=ab");
        let marker = "[redacted: same value as secret-named query parameter metadata[token]]";
        assert_eq!(
            e.mask("stripe-account: acct_1EvilAcct\n"),
            format!("stripe-account: {marker}\n")
        );
        assert_eq!(e.found_in(["x", "a acct_1EvilAcct"]), ["metadata[token]"]);
        assert!(e.found_in(["acct_other"]).is_empty());
        assert_eq!(e.shown_name("metadata[token]"), "metadata[token]");
        // One pass: a value that is a word of the marker leaves the marker whole.
        let e = QueryEchoes::of("/x?token=redact&password=longer_redact");
        assert_eq!(
            e.mask("redact longer_redact"),
            "[redacted: same value as secret-named query parameter token] \
             [redacted: same value as secret-named query parameter password]"
        );
        // A name spelling another parameter's value does not show that value.
        let e = QueryEchoes::of("/x?token=abcdefgh&abcdefgh_token=zzzzzzzz");
        assert_eq!(
            e.mask("zzzzzzzz"),
            "[redacted: same value as secret-named query parameter [redacted]_token]"
        );
        assert!(QueryEchoes::of("/x?token=short").is_empty());
        // A long value clipped by shown text (`prefix…`) is masked too (review of session 18:
        // clipping before masking showed 80 characters of a 93-character token).
        let token = "g".repeat(93);
        let e = QueryEchoes::of(&format!("/x?token={token}"));
        let clipped: String = token.chars().take(80).chain(['…']).collect();
        assert!(!e.mask(&format!("on account {clipped}")).contains("ggg"));
        // An occurrence overlapping a longer value's is not allowed to hide a whole one after
        // it (review of session 18: `match_indices` stepped over it).
        let e = QueryEchoes::of("/x?token=zzzzbbbb&password=bbbbbb");
        let shown = e.mask("zzzzbbbbbbbbbb");
        assert!(!shown.contains("bbbbbb"), "{shown}");
        // A name that could forge lines or end the marker early is shown quoted and escaped.
        let e =
            QueryEchoes::of("/x?a%5D%0Astripe-account%3A%20acct_1Good%0Ax-token=acct_1EvilAcct");
        let shown = e.mask("stripe-account: acct_1EvilAcct");
        assert!(!shown.contains('\n'), "{shown}");
        assert!(
            shown.contains("\"a]\\nstripe-account: acct_1Good\\nx-token\""),
            "{shown}"
        );
        for (name, plain) in [
            ("token", true),
            ("metadata[token]", true),
            ("a[b][c]", true),
            ("a]", false),
            ("a[b", false),
            ("[x]", false),
            ("a b", false),
        ] {
            assert_eq!(plain_key(name), plain, "{name}");
        }
    }
}
