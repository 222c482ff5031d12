//! Keys a held call gives more than once, for the page's warning: every one of them in a JSON
//! body (at any depth, as a dotted path), a form body and the query, not only the first a
//! strict reader stops at. Servers read them differently (Go and GitHub take the last JSON
//! value, others the first), so an agent could put a harmless duplicate first to hide the one
//! that matters: keys whose values differ come first, and the warning counts what it leaves
//! off. Names are the agent's: the caller shows them through the dashboard's escaping.

use std::collections::HashMap;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Keys given twice named at most in a warning (each clipped): every page listing the review
/// builds it, and a 1 MiB body can repeat thousands.
const NAMED: usize = 12;
/// Characters of one key shown.
const KEY_SHOWN: usize = 40;

/// One key given more than once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Duplicate {
    /// Where: `JSON key`, `body field`, `query field`.
    pub place: &'static str,
    /// The key (a JSON key as its dotted path from the top object).
    pub key: String,
    /// Its values are not all alike.
    pub differs: bool,
    /// It was given in spellings that differ only by characters that show nothing or by NFKC
    /// (`permission` and `permission\u{1D173}`): named by its first spelling.
    pub lookalike: bool,
}

/// Every key `body` (JSON, else a form) and `query` give more than once, in order of first
/// repetition.
pub(super) fn duplicates(query: &str, body: &[u8]) -> Vec<Duplicate> {
    let mut found = Found::default();
    if serde_json::from_slice::<serde_json::Value>(body).is_ok() {
        let mut de = serde_json::Deserializer::from_slice(body);
        // A body serde_json reads reads here too (the same grammar): an error leaves what
        // was found so far.
        let _ = Walk {
            path: String::new(),
            found: &mut found,
        }
        .deserialize(&mut de);
    } else {
        found.form("body field", body);
    }
    found.form("query field", query.as_bytes());
    found.list
}

/// The warning's items for `dups`: those whose values differ first (then the rest, each
/// group in order), at most [`NAMED`], then how many are left off. `priority` names keys
/// shown anyway before the others of their group (the money, the notable arguments).
pub(super) fn warning_items(dups: &[Duplicate], priority: &[&str]) -> Vec<String> {
    let rank = |d: &Duplicate| {
        let named = priority.contains(&d.key.as_str());
        (!d.differs, !named)
    };
    let mut order: Vec<&Duplicate> = dups.iter().collect();
    order.sort_by_key(|d| rank(d));
    let mut items: Vec<String> = order
        .iter()
        .take(NAMED)
        .map(|d| {
            format!(
                "{} `{}` (given twice{}{})",
                d.place,
                super::arguments::clip(&d.key, KEY_SHOWN),
                if d.lookalike {
                    ", once in a look-alike spelling"
                } else {
                    ""
                },
                if d.differs { ", values differ" } else { "" }
            )
        })
        .collect();
    let left = &order[order.len().min(NAMED)..];
    if !left.is_empty() {
        let differ = left.iter().filter(|d| d.differs).count();
        items.push(format!(
            "{} more keys given twice ({differ} with values that differ; see the body)",
            left.len()
        ));
    }
    items
}

#[derive(Default)]
struct Found {
    list: Vec<Duplicate>,
    /// (place, key) -> index in `list`.
    at: HashMap<(&'static str, String), usize>,
}

impl Found {
    fn note(&mut self, place: &'static str, key: String, differs: bool, lookalike: bool) {
        match self.at.get(&(place, key.clone())) {
            Some(&i) => {
                self.list[i].differs |= differs;
                self.list[i].lookalike |= lookalike;
            }
            None => {
                self.at.insert((place, key.clone()), self.list.len());
                self.list.push(Duplicate {
                    place,
                    key,
                    differs,
                    lookalike,
                });
            }
        }
    }

    /// A form's keys given twice (compared [`crate::visible::folded`]), but array pushes
    /// (`a[]`), which are meant to repeat.
    fn form(&mut self, place: &'static str, text: &[u8]) {
        // Folded key -> its first spelling and value.
        let mut first: HashMap<String, (String, String)> = HashMap::new();
        for (k, v) in form_urlencoded::parse(text) {
            if k.ends_with("[]") {
                continue;
            }
            let fold = crate::visible::folded(&k);
            match first.get(&fold) {
                Some((raw, seen)) => {
                    let differs = seen != v.as_ref();
                    let lookalike = raw != k.as_ref();
                    let raw = raw.clone();
                    self.note(place, raw, differs, lookalike);
                }
                None => {
                    first.insert(fold, (k.into_owned(), v.into_owned()));
                }
            }
        }
    }
}

/// Reads one JSON value at `path`, noting keys given twice below it; yields the value (the
/// last of a repeated key's) to compare with its siblings.
struct Walk<'a> {
    path: String,
    found: &'a mut Found,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = serde_json::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = serde_json::Value;
    crate::rules::fields::json_scalar_visits!();
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let path = child_path(&self.path, &out.len().to_string());
            let seed = Walk {
                path,
                found: &mut *self.found,
            };
            match seq.next_element_seed(seed)? {
                Some(v) => out.push(v),
                None => return Ok(serde_json::Value::Array(out)),
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        // Keys compared folded ([`crate::visible::folded`]): folded key -> first spelling.
        let mut firsts: HashMap<String, String> = HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = child_path(&self.path, &key);
            let v = map.next_value_seed(Walk {
                path,
                found: &mut *self.found,
            })?;
            let fold = crate::visible::folded(&key);
            match firsts.get(&fold) {
                Some(raw) => {
                    let differs = out.get(raw) != Some(&v);
                    let path = child_path(&self.path, raw);
                    self.found.note("JSON key", path, differs, *raw != key);
                }
                None => {
                    firsts.insert(fold, key.clone());
                }
            }
            out.insert(key, v);
        }
        Ok(serde_json::Value::Object(out))
    }
}

/// Longest path shown, in bytes, and longest segment, in characters.
const PATH_MAX: usize = 200;
const SEGMENT_MAX: usize = 40;

/// A member's path as shown: each segment clipped, the whole clipped. Built for every member,
/// so its cost must not grow with the body (a long key above a long array would be copied once
/// per element).
fn child_path(parent: &str, segment: &str) -> String {
    if parent.len() >= PATH_MAX {
        return parent.to_string();
    }
    let mut path = String::with_capacity(parent.len() + SEGMENT_MAX + 4);
    path.push_str(parent);
    path.push_str(dot(parent));
    path.extend(segment.chars().take(SEGMENT_MAX));
    if segment.chars().nth(SEGMENT_MAX).is_some() {
        path.push('…');
    }
    if path.len() > PATH_MAX {
        let mut cut = PATH_MAX;
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        path.truncate(cut);
        path.push('…');
    }
    path
}

fn dot(path: &str) -> &'static str {
    if path.is_empty() {
        ""
    } else {
        "."
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dup(place: &'static str, key: &str, differs: bool) -> Duplicate {
        Duplicate {
            place,
            key: key.into(),
            differs,
            lookalike: false,
        }
    }

    /// Security review: the warning named only the first key given twice (the strict reader
    /// stops there), and a form body's after ten, so a harmless duplicate first hid the one
    /// that matters.
    #[test]
    fn every_key_given_twice_is_found() {
        let cases: &[(&str, &[u8], Vec<Duplicate>)] = &[
            (
                "",
                br#"{"a":1,"a":1,"permission":"pull","permission":"admin"}"#,
                vec![
                    dup("JSON key", "a", false),
                    dup("JSON key", "permission", true),
                ],
            ),
            (
                "",
                br#"{"config":{"url":"https://a","url":"https://b"},"x":[{"k":1,"k":1}]}"#,
                vec![
                    dup("JSON key", "config.url", true),
                    dup("JSON key", "x.0.k", false),
                ],
            ),
            (
                "",
                br#"{"permission":"pull","permissio\u006e":"admin"}"#,
                vec![dup("JSON key", "permission", true)],
            ),
            (
                "name=a&name=b",
                b"d0=1&d0=1&d1=1&d1=1&d2=1&d2=1&d3=1&d3=1&d4=1&d4=1&d5=1&d5=1&d6=1&d6=1&d7=1&d7=1&d8=1&d8=1&d9=1&d9=1&d10=1&d10=1&amount=1&amount=9&x[]=1&x[]=2",
                (0..=10)
                    .map(|i| dup("body field", &format!("d{i}"), false))
                    .chain([
                        dup("body field", "amount", true),
                        dup("query field", "name", true),
                    ])
                    .collect(),
            ),
            // Security review: keys that differ only by a character that shows nothing, or by
            // NFKC, read as one key given twice.
            (
                "",
                "{\"permission\":\"admin\",\"permission\u{1D173}\":\"pull\"}".as_bytes(),
                vec![Duplicate {
                    lookalike: true,
                    ..dup("JSON key", "permission", true)
                }],
            ),
            (
                "",
                br#"{"role":"admin","r\u200bole":"member","\uff52ole":"member"}"#,
                vec![Duplicate {
                    lookalike: true,
                    ..dup("JSON key", "role", true)
                }],
            ),
            (
                "",
                "role=admin&r%E2%80%8Bole=read".as_bytes(),
                vec![Duplicate {
                    lookalike: true,
                    ..dup("body field", "role", true)
                }],
            ),
            ("", br#"{"a":1,"b":2}"#, vec![]),
            ("a=1&b=2", b"c=3", vec![]),
        ];
        for (query, body, want) in cases {
            assert_eq!(
                &duplicates(query, body),
                want,
                "{query} {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// Keys whose values differ come first, whatever precedes them; what is left off is
    /// counted.
    #[test]
    fn keys_whose_values_differ_come_first() {
        let mut dups: Vec<Duplicate> = (0..20)
            .map(|i| dup("JSON key", &format!("decoy{i}"), false))
            .collect();
        dups.push(dup("JSON key", "permission", true));
        let items = warning_items(&dups, &[]);
        assert_eq!(
            items[0],
            "JSON key `permission` (given twice, values differ)"
        );
        assert_eq!(items.len(), NAMED + 1, "{items:?}");
        assert_eq!(
            items[NAMED],
            "9 more keys given twice (0 with values that differ; see the body)"
        );
        let long = dup("body field", &"k".repeat(100), true);
        let items = warning_items(&[long], &[]);
        assert_eq!(
            items,
            vec![format!(
                "body field `{}…` (given twice, values differ)",
                "k".repeat(40)
            )]
        );
        let items = warning_items(
            &[
                dup("body field", "note", true),
                dup("body field", "amount", true),
            ],
            &["amount"],
        );
        assert!(items[0].contains("`amount`"), "{items:?}");
    }
}

#[cfg(test)]
mod path_tests {
    use super::*;

    /// Review of session 18: a member's path copied its parent's whole (a 500 KB key above a
    /// long array cost the key per element). Paths are clipped.
    #[test]
    fn paths_are_clipped_and_a_long_key_above_an_array_costs_little() {
        let long = "k".repeat(100);
        let p = child_path("", &long);
        assert_eq!(p.chars().count(), SEGMENT_MAX + 1, "{p}");
        let deep = (0..20).fold(String::new(), |p, i| {
            child_path(&p, &format!("key{i}x{long}"))
        });
        assert!(deep.len() <= PATH_MAX + '…'.len_utf8(), "{}", deep.len());
        assert_eq!(child_path(&deep, "more"), deep);
        // A repeated key under a long one is still found, named by its clipped path.
        let body = format!("{{\"{long}\":[{{\"a\":1,\"a\":2}}]}}");
        let found = duplicates("", body.as_bytes());
        assert_eq!(found.len(), 1, "{found:?}");
    }
}
