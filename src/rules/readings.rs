//! Every value mainstream frameworks may read for a request's parameters: each key as written
//! (every time it is given, in the query or the body), the name Rack 2 and qs give a malformed
//! bracket key (`[amount]` is `amount`), the pairs a split at `;` gives (Rack 1, Go before 1.17),
//! and the pairs a JSON body gives read as a form (Stripe's v1 API reads any body as one). The
//! classifier holds a write these could change (`param_ambiguous`, `query_separator`,
//! `duplicate_key`, `body_ambiguous`: docs/parser-differentials.md); the dashboard shows every
//! reading, from the same rules here, so what it shows and what was held cannot drift apart.

use std::collections::HashMap;

use serde::de::{Deserializer, MapAccess, Visitor};

use super::fields::well_formed_key;

/// A form body as Rack (and Rails' own parser) reads it, when that differs from the reading
/// every other form reader shares: blanks after a `&` or `;` separator are dropped (it splits
/// on `/[&;] */`, so `& amount=9` sets `amount`), and so is one trailing NUL (Rack's "Safari
/// fix"). `None`: both read alike.
pub fn rack_form_text(text: &str) -> Option<String> {
    if !rack_reads_otherwise(text) {
        return None;
    }
    let text = text.strip_suffix('\0').unwrap_or(text);
    let mut out = String::with_capacity(text.len());
    let mut after_separator = false;
    for c in text.chars() {
        if after_separator && c == ' ' {
            continue;
        }
        after_separator = matches!(c, '&' | ';');
        out.push(c);
    }
    Some(out)
}

/// Does Rack read this form body otherwise ([`rack_form_text`] would give `Some`)?
pub fn rack_reads_otherwise(text: &str) -> bool {
    text.contains("& ") || text.contains("; ") || text.ends_with('\0')
}

/// How Rack 2 splits a form key: the name it files the value under, and what follows
/// (`[amount]`, `amount]`, `]amount` -> (`amount`, ``); `a]b` -> (`a`, `b`); `a[b]` -> (`a`,
/// `[b]`)). Its pattern: `\A[\[\]]*([^\[\]]+)\]*`.
pub fn rack2_split(key: &str) -> (&str, &str) {
    let rest = key.trim_start_matches(['[', ']']);
    let end = rest.find(['[', ']']).unwrap_or(rest.len());
    (&rest[..end], rest[end..].trim_start_matches(']'))
}

/// The name a malformed key's value is a plain value of for Rack 2 and qs (`[amount]`,
/// `amount]`, `]amount` -> `amount`); `None` for a well-formed key, read alike everywhere.
pub fn rack2_scalar(key: &str) -> Option<&str> {
    if well_formed_key(key) {
        return None;
    }
    let (name, after) = rack2_split(key);
    (!name.is_empty() && after.is_empty()).then_some(name)
}

/// The flattened name (`a.b.c`) Rack 2 files a malformed key's value under: its pattern
/// applied again to what follows each name (`[fraud_details][user_report]` ->
/// `fraud_details.user_report`, `a]b` -> `a.b`, `[amount]` -> `amount`; an array push `[]` is
/// an empty segment). `None` for a well-formed key (every reader agrees on it). Only the first
/// 32 segments are kept: the names a rule could test.
pub fn rack2_flat(key: &str) -> Option<String> {
    if well_formed_key(key) {
        return None;
    }
    let mut segments: Vec<&str> = Vec::new();
    let mut rest = key;
    while !rest.is_empty() && segments.len() < 32 {
        if let Some(after) = rest.strip_prefix("[]") {
            segments.push("");
            rest = after;
            continue;
        }
        let (name, after) = rack2_split(rest);
        if name.is_empty() {
            break;
        }
        segments.push(name);
        rest = after;
    }
    (!segments.is_empty()).then(|| segments.join("."))
}

/// Where a reading comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    /// The key as written, in the query, a form body or a JSON body.
    AsWritten,
    /// A malformed bracket key Rack 2 and qs read as this name (`[amount]`).
    Brackets,
    /// A pair after a `;`, where Rack 1 and Go before 1.17 split.
    Semicolon,
    /// A pair of the JSON body read as a form.
    JsonAsForm,
    /// A pair as Rack reads the form: a blank after `&` or `;` dropped, or a trailing NUL.
    RackBlanks,
}

/// One value a parameter may be read as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The key as the agent wrote it (`[amount]`).
    pub key: String,
    pub value: String,
    pub spelling: Spelling,
}

/// Every reading of every parameter of a request, by the name a framework files it under.
#[derive(Debug, Default)]
pub struct Readings {
    by_name: HashMap<String, Vec<Reading>>,
}

impl Readings {
    /// The readings of a request's `query` and `body` (a JSON object, else a form if UTF-8; a
    /// JSON body is read as a form as well). The body's come first.
    pub fn of(query: &str, body: &[u8]) -> Readings {
        let mut r = Readings::default();
        let text = std::str::from_utf8(body).ok();
        match json_pairs(body) {
            Some(pairs) => {
                for (key, value) in pairs {
                    r.push(key.clone(), key, value, Spelling::AsWritten);
                }
                if let Some(t) = text {
                    r.add_form(t, Some(Spelling::JsonAsForm));
                }
            }
            None => {
                if let Some(t) = text {
                    r.add_form(t, None);
                }
            }
        }
        r.add_form(query, None);
        r
    }

    /// Every name a parameter is filed under, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Every reading of `name`, in order (empty: not given).
    pub fn get(&self, name: &str) -> &[Reading] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    /// Adds a form's pairs, as `&` splits them and as `&` and `;` do; `forced`: the spelling
    /// of every pair (a JSON body read as a form).
    fn add_form(&mut self, text: &str, forced: Option<Spelling>) {
        for (k, v) in form_urlencoded::parse(text.as_bytes()) {
            self.add_pair(&k, &v, forced.unwrap_or(Spelling::AsWritten));
        }
        for part in text.split('&').filter(|p| p.contains(';')) {
            for (k, v) in form_urlencoded::parse(part.replace(';', "&").as_bytes()) {
                self.add_pair(&k, &v, forced.unwrap_or(Spelling::Semicolon));
            }
        }
        if let Some(rack) = rack_form_text(text) {
            // Only the pairs Rack reads otherwise: those the blanks or the NUL touched.
            // As `&` splits it, and as `&` and `;` do (those pairs are read above already).
            let as_written: std::collections::HashSet<(String, String)> =
                form_urlencoded::parse(text.as_bytes())
                    .chain(form_urlencoded::parse(text.replace(';', "&").as_bytes()))
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
            for (k, v) in form_urlencoded::parse(rack.replace(';', "&").as_bytes()) {
                if !as_written.contains(&(k.to_string(), v.to_string())) {
                    self.add_pair(&k, &v, forced.unwrap_or(Spelling::RackBlanks));
                }
            }
        }
    }

    /// A form pair under its key, and under the name Rack 2 reads a malformed key as.
    fn add_pair(&mut self, key: &str, value: &str, spelling: Spelling) {
        if key.is_empty() {
            // Every reader skips an empty key.
            return;
        }
        self.push(key.into(), key.into(), value.into(), spelling);
        if let Some(name) = rack2_scalar(key) {
            let spelling = match spelling {
                Spelling::AsWritten => Spelling::Brackets,
                other => other,
            };
            self.push(name.into(), key.into(), value.into(), spelling);
        }
    }

    fn push(&mut self, name: String, key: String, value: String, spelling: Spelling) {
        self.by_name.entry(name).or_default().push(Reading {
            key,
            value,
            spelling,
        });
    }
}

/// A JSON object's top-level pairs in order, a key given twice kept twice (values as text: a
/// string as itself, anything else as JSON); `None` if the body is not one JSON object.
fn json_pairs(body: &[u8]) -> Option<Vec<(String, String)>> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let pairs = (&mut de).deserialize_map(Pairs).ok()?;
    de.end().ok()?;
    Some(pairs)
}

struct Pairs;

impl<'de> Visitor<'de> for Pairs {
    type Value = Vec<(String, String)>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
            let text = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            out.push((k, text));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn rack_form_text_drops_blanks_after_separators_and_a_trailing_nul() {
        assert_eq!(rack_form_text("a=1&b=2"), None);
        assert_eq!(
            rack_form_text("a=1&  amount=9").as_deref(),
            Some("a=1&amount=9")
        );
        assert_eq!(rack_form_text("a=1;  b=2").as_deref(), Some("a=1;b=2"));
        assert_eq!(
            rack_form_text("d=outbound\0").as_deref(),
            Some("d=outbound")
        );
        assert_eq!(rack_form_text("a=x y& b").as_deref(), Some("a=x y&b"));
    }

    use super::*;

    fn values<'a>(r: &'a Readings, name: &str) -> Vec<(&'a str, Spelling)> {
        r.get(name)
            .iter()
            .map(|x| (x.value.as_str(), x.spelling))
            .collect()
    }

    #[test]
    fn rack2_reads_malformed_brackets_as_the_plain_name() {
        for key in ["[amount]", "amount]", "]amount", "[[amount]]"] {
            assert_eq!(rack2_scalar(key), Some("amount"), "{key}");
        }
        for key in [
            "amount",
            "metadata[amount]",
            "amount[",
            "a]b",
            "[]",
            "amount[]",
        ] {
            assert_eq!(rack2_scalar(key), None, "{key}");
        }
        assert_eq!(rack2_split("a]b"), ("a", "b"));
        assert_eq!(rack2_split("[_method]"), ("_method", ""));
        for (key, flat) in [
            ("[amount]", Some("amount")),
            (
                "[fraud_details][user_report]",
                Some("fraud_details.user_report"),
            ),
            ("]a[b][c]", Some("a.b.c")),
            ("a]b", Some("a.b")),
            ("[list][]", Some("list.")),
            ("a[b]", None),
        ] {
            assert_eq!(rack2_flat(key).as_deref(), flat, "{key}");
        }
    }

    #[test]
    fn every_reading_is_kept() {
        use Spelling::*;
        let r = Readings::of("amount=7", b"amount=100&[amount]=5000000");
        assert_eq!(
            values(&r, "amount"),
            vec![("100", AsWritten), ("5000000", Brackets), ("7", AsWritten)]
        );
        let r = Readings::of("", b"amount=1;amount=2");
        assert_eq!(
            values(&r, "amount"),
            vec![
                ("1;amount=2", AsWritten),
                ("1", Semicolon),
                ("2", Semicolon)
            ]
        );
        let r = Readings::of("", br#"{"amount":1,"x":"&amount=9&","amount":"3"}"#);
        assert_eq!(
            values(&r, "amount"),
            vec![("1", AsWritten), ("3", AsWritten), ("9", JsonAsForm)]
        );
        assert!(Readings::of("", b"\xff\xfe").get("amount").is_empty());
    }
}
