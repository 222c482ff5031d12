//! Request fields for conditions: query string and body (form with bracket keys, or JSON),
//! flattened to dotted names (`metadata[a]` and `{"metadata":{"a":..}}` both become
//! `metadata.a`). A key seen twice anywhere is reported, never silently resolved.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// A scalar field value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

impl FieldValue {
    pub fn as_text(&self) -> String {
        match self {
            FieldValue::Str(s) => s.clone(),
            FieldValue::Num(n) => n.to_string(),
            FieldValue::Bool(b) => b.to_string(),
            FieldValue::Null => "null".into(),
        }
    }

    /// Numbers, or strings holding one.
    pub fn as_num(&self) -> Option<f64> {
        match self {
            FieldValue::Num(n) => Some(*n),
            FieldValue::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// Booleans, or the strings "true"/"false".
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            FieldValue::Bool(b) => Some(*b),
            FieldValue::Str(s) if s == "true" => Some(true),
            FieldValue::Str(s) if s == "false" => Some(false),
            _ => None,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Fields {
    pub map: BTreeMap<String, FieldValue>,
    /// Keys that appeared more than once.
    pub duplicates: Vec<String>,
    /// Form keys whose brackets frameworks read differently (`[a]`, `a]`, `a[b]c`): Rack 2
    /// and qs take `[amount]` for `amount`, this reader for `.amount`.
    pub malformed: Vec<String>,
    /// JSON objects and arrays given empty (`"reviewers": []` clears a list): given, with no
    /// leaf to show it.
    pub empty: std::collections::BTreeSet<String>,
    /// Keys with a `.` inside a name (`line_items[0.0][price_data]`, JSON
    /// `{"defaults.responsibilities.x": ..}`): names are joined with `.`, so such a key reads
    /// here as a deeper path than the name the service sees. Each: the key as written, and its
    /// names up to the first dotted one, that one cut at its first `.` (`["line_items", "0"]`):
    /// the path a condition must reach to read it otherwise ([`Fields::dotted_reached_by`]).
    pub dotted: Vec<(String, Vec<String>)>,
}

/// `name`, then any number of `[...]` with no bracket inside: the one shape every form reader
/// (Rack, qs, PHP, Stripe's) splits the same way. Empty keys are skipped by all of them.
pub fn well_formed_key(k: &str) -> bool {
    let Some(open) = k.find('[') else {
        return !k.contains(']');
    };
    let (name, mut rest) = k.split_at(open);
    if name.is_empty() || name.contains(']') {
        return false;
    }
    while !rest.is_empty() {
        let Some(inner) = rest.strip_prefix('[') else {
            return false;
        };
        let Some(close) = inner.find(']') else {
            return false;
        };
        if inner[..close].contains('[') {
            return false;
        }
        rest = &inner[close + 1..];
    }
    true
}

impl Fields {
    pub(crate) fn insert(&mut self, key: String, v: FieldValue) {
        match self.map.entry(key) {
            std::collections::btree_map::Entry::Occupied(e) => {
                self.duplicates.push(e.key().clone())
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(v);
            }
        }
    }

    pub fn get(&self, k: &str) -> Option<&FieldValue> {
        self.map.get(k)
    }

    /// A key with a `.` inside a name (see [`Fields::dotted`]) whose path `field` (a condition's
    /// dotted field, `*` for any one name) reaches: `field` goes at least as deep as the dotted
    /// name and agrees with the key's names up to it. `line_items.*.price_data` reaches
    /// `line_items[0.0][price_data]`; `*` (a top-level name) reaches `a.b=1` but not
    /// `metadata[a.b]`, whose top-level name reads alike either way.
    pub fn dotted_reached_by(&self, field: &str) -> Option<&str> {
        let parts: Vec<&str> = field.split('.').collect();
        self.dotted
            .iter()
            .find(|(_, names)| {
                parts.len() >= names.len()
                    && names.iter().zip(&parts).all(|(n, p)| *p == "*" || p == n)
            })
            .map(|(k, _)| k.as_str())
    }

    /// Notes `key` (as written) if one of its `names` holds a `.` (see [`Fields::dotted`]).
    fn note_dotted<'n>(&mut self, key: &str, names: impl IntoIterator<Item = &'n str>) {
        let mut upto = Vec::new();
        for name in names {
            match name.split_once('.') {
                Some((first, _)) => {
                    upto.push(first.to_string());
                    self.dotted.push((key.to_string(), upto));
                    return;
                }
                None => upto.push(name.to_string()),
            }
        }
    }

    /// `k` is given: as a value, or as an object or array with something in it (`files` for
    /// `{"files":{"a.txt":{..}}}`, flattened to `files.a.txt.content`).
    pub fn given(&self, k: &str) -> bool {
        if self.map.contains_key(k) || self.empty.contains(k) {
            return true;
        }
        let below = format!("{k}.");
        self.map
            .range(below.clone()..)
            .next()
            .is_some_and(|(key, _)| key.starts_with(&below))
            || self
                .empty
                .range(below.clone()..)
                .next()
                .is_some_and(|key| key.starts_with(&below))
    }

    /// Adds `a=1&b[c]=2` pairs. Array pushes `a[]=x` get positional names.
    pub fn add_form(&mut self, text: &str) {
        let mut pushes: BTreeMap<String, usize> = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(text.as_bytes()) {
            if !k.is_empty() && !well_formed_key(&k) {
                self.malformed.push(k.to_string());
            }
            if k.contains('.') {
                self.note_dotted(&k, k.split('[').map(|n| n.trim_end_matches(']')));
            }
            let mut key = flatten_brackets(&k);
            if key.ends_with(".") {
                let n = pushes.entry(key.clone()).or_insert(0);
                key = format!("{key}{n}");
                *n += 1;
            }
            self.insert(key, FieldValue::Str(v.into_owned()));
        }
    }

    /// Adds a JSON body; `Err` if it is not JSON or has a duplicate key in any object.
    pub fn add_json(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let mut flat = Flat {
            prefix: String::new(),
            out: self,
        };
        de::DeserializeSeed::deserialize(&mut flat, &mut de).map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())
    }
    /// Adds an already parsed JSON value under `prefix` (`""`: at the top). Public for the
    /// fuzz targets (`fuzz/`), which check it flattens like [`Fields::add_json`].
    pub fn add_value(&mut self, prefix: &str, v: &serde_json::Value) {
        let mut key = prefix.to_string();
        self.add_value_at(&mut key, v);
    }

    fn add_value_at(&mut self, key: &mut String, v: &serde_json::Value) {
        use serde_json::Value;
        let leaf = match v {
            Value::Null => FieldValue::Null,
            Value::Bool(b) => FieldValue::Bool(*b),
            Value::Number(n) => FieldValue::Num(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => FieldValue::Str(s.clone()),
            Value::Array(items) if items.is_empty() => {
                self.empty.insert(key.clone());
                return;
            }
            Value::Object(m) if m.is_empty() => {
                self.empty.insert(key.clone());
                return;
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = key.len();
                    push_key(key, &i.to_string());
                    self.add_value_at(key, item);
                    key.truncate(len);
                }
                return;
            }
            Value::Object(m) => {
                for (k, item) in m {
                    if k.contains('.') {
                        self.note_json_dotted(key, k);
                    }
                    let len = key.len();
                    push_key(key, k);
                    self.add_value_at(key, item);
                    key.truncate(len);
                }
                return;
            }
        };
        self.insert(key.clone(), leaf);
    }
}

impl Fields {
    /// Notes JSON key `name` (with a `.`) of the object at flattened path `prefix`.
    fn note_json_dotted(&mut self, prefix: &str, name: &str) {
        let written = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        };
        let above = prefix.split('.').filter(|_| !prefix.is_empty());
        self.note_dotted(&written, above.chain(std::iter::once(name)));
    }
}

fn push_key(key: &mut String, name: &str) {
    if !key.is_empty() {
        key.push('.');
    }
    key.push_str(name);
}

/// Parses JSON into a value, refusing a duplicate key in any object (`Err` then says
/// "duplicate key") and trailing data.
pub fn strict_json(bytes: &[u8]) -> Result<serde_json::Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = de::DeserializeSeed::deserialize(StrictValue, &mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(v)
}

/// The scalar methods of a serde `Visitor` whose `Value` is `serde_json::Value` (`expecting`,
/// booleans, numbers, strings, null), for visitors that differ only in how they read arrays and
/// objects: [`strict_json`]'s here, and the dashboard's duplicate-key walk.
macro_rules! json_scalar_visits {
    () => {
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
            Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(serde_json::Value::Null)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(serde_json::Value::Null)
        }
    };
}
pub(crate) use json_scalar_visits;

struct StrictValue;

impl<'de> de::DeserializeSeed<'de> for StrictValue {
    type Value = serde_json::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = serde_json::Value;
    json_scalar_visits!();
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            out.push(v);
        }
        Ok(serde_json::Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let v = map.next_value_seed(StrictValue)?;
            if let Some((k, _)) = out.get_key_value(&key) {
                return Err(de::Error::custom(format!("duplicate key `{k}`")));
            }
            out.insert(key, v);
        }
        Ok(serde_json::Value::Object(out))
    }
}

/// `a[b][0]` -> `a.b.0`; `a[]` -> `a.` (push).
fn flatten_brackets(k: &str) -> String {
    let mut out = String::with_capacity(k.len());
    for (i, part) in k.split('[').enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(part.trim_end_matches(']'));
    }
    out
}

struct Flat<'a> {
    prefix: String,
    out: &'a mut Fields,
}

impl Flat<'_> {
    fn leaf(&mut self, v: FieldValue) {
        let key = self.prefix.clone();
        self.out.insert(key, v);
    }
}

impl<'de> de::DeserializeSeed<'de> for &mut Flat<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Flat<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.leaf(FieldValue::Bool(v));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.leaf(FieldValue::Num(v as f64));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.leaf(FieldValue::Num(v as f64));
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.leaf(FieldValue::Num(v));
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.leaf(FieldValue::Str(v.to_string()));
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.leaf(FieldValue::Null);
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        self.leaf(FieldValue::Null);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            let len = self.prefix.len();
            push_key(&mut self.prefix, &i.to_string());
            let more = seq.next_element_seed(&mut *self)?;
            self.prefix.truncate(len);
            if more.is_none() {
                if i == 0 {
                    self.out.empty.insert(self.prefix.clone());
                }
                return Ok(());
            }
            i += 1;
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = Seen::default();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(&key) {
                push_key(&mut self.prefix, &key);
                return Err(de::Error::custom(format!(
                    "duplicate key `{}`",
                    self.prefix
                )));
            }
            if key.contains('.') {
                self.out.note_json_dotted(&self.prefix, &key);
            }
            let len = self.prefix.len();
            push_key(&mut self.prefix, &key);
            map.next_value_seed(&mut *self)?;
            self.prefix.truncate(len);
        }
        if seen.is_empty() {
            self.out.empty.insert(self.prefix.clone());
        }
        Ok(())
    }
}

/// Keys of one JSON object: a linear scan while few (no hashing, one allocation), a hash set
/// beyond, so huge objects stay linear.
#[derive(Default)]
struct Seen {
    few: Vec<String>,
    many: std::collections::HashSet<String>,
}

impl Seen {
    fn is_empty(&self) -> bool {
        self.few.is_empty() && self.many.is_empty()
    }

    /// `false` if `key` was seen before.
    fn insert(&mut self, key: &str) -> bool {
        if self.few.iter().any(|k| k == key) || self.many.contains(key) {
            return false;
        }
        if self.few.len() < 16 {
            self.few.push(key.to_string());
        } else {
            self.many.insert(key.to_string());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_counts_objects_and_arrays_empty_or_not() {
        let body = br#"{"files":{"a.txt":{"content":"x"}},"users":["m"],"empty":{},"none":[],"opts":{"reviewers":[]},"filesx":1}"#;
        let mut j = Fields::default();
        j.add_json(body).expect("json");
        assert!(j.given("files") && j.given("files.a.txt") && j.given("users"));
        assert!(j.given("filesx"));
        // An empty object or list is given (`"reviewers": []` clears a list).
        assert!(
            j.given("empty") && j.given("none") && j.given("opts") && j.given("opts.reviewers")
        );
        assert!(!j.given("file") && !j.given("missing") && !j.given("opts.reviewer"));
        let mut v = Fields::default();
        v.add_value("", &serde_json::from_slice(body).expect("value"));
        assert_eq!(v.empty, j.empty, "parsed and streamed alike");
        let mut f = Fields::default();
        f.add_form("file_link_data[create]=true");
        assert!(f.given("file_link_data") && !f.given("file_link"));
    }

    #[test]
    fn form_and_json_flatten_alike() {
        let mut f = Fields::default();
        f.add_form("amount=500&metadata[order]=7&items[0][price]=p_1&tags[]=a&tags[]=b");
        assert_eq!(f.get("metadata.order"), Some(&FieldValue::Str("7".into())));
        assert_eq!(f.get("items.0.price"), Some(&FieldValue::Str("p_1".into())));
        assert_eq!(f.get("tags.1"), Some(&FieldValue::Str("b".into())));
        let mut j = Fields::default();
        j.add_json(br#"{"metadata":{"order":7},"private":false,"a":[1,{"b":null}]}"#)
            .expect("json");
        assert_eq!(j.get("metadata.order"), Some(&FieldValue::Num(7.0)));
        assert_eq!(j.get("private").and_then(|v| v.as_bool()), Some(false));
        assert_eq!(j.get("a.1.b"), Some(&FieldValue::Null));
    }

    #[test]
    fn a_dot_inside_a_name_is_noted_with_the_path_that_reaches_it() {
        let mut f = Fields::default();
        f.add_form(
            "line_items[0.0][price_data][unit_amount]=1&metadata[app.version]=2&a.b=3&x[y]=4",
        );
        assert_eq!(
            f.dotted,
            vec![
                (
                    "line_items[0.0][price_data][unit_amount]".to_string(),
                    vec!["line_items".to_string(), "0".to_string()]
                ),
                (
                    "metadata[app.version]".to_string(),
                    vec!["metadata".to_string(), "app".to_string()]
                ),
                ("a.b".to_string(), vec!["a".to_string()]),
            ]
        );
        assert_eq!(
            f.dotted_reached_by("line_items.*.price_data"),
            Some("line_items[0.0][price_data][unit_amount]")
        );
        assert_eq!(
            f.dotted_reached_by("line_items.0.price_data"),
            Some("line_items[0.0][price_data][unit_amount]")
        );
        assert_eq!(f.dotted_reached_by("line_items.1.price_data"), None);
        assert_eq!(
            f.dotted_reached_by("metadata.*"),
            Some("metadata[app.version]")
        );
        assert_eq!(f.dotted_reached_by("*"), Some("a.b"));
        assert_eq!(f.dotted_reached_by("a"), Some("a.b"));
        // The names above the dotted one read alike: nothing deeper is tested.
        assert_eq!(f.dotted_reached_by("line_items"), None);
        assert_eq!(f.dotted_reached_by("metadata"), None);
        assert_eq!(f.dotted_reached_by("amount"), None);
        assert_eq!(f.dotted_reached_by("x.y"), None);
        let body = br#"{"defaults.responsibilities.losses_collector":"stripe","files":{"a.txt":{"content":"x"}},"o":[{"k.v":1}]}"#;
        let mut j = Fields::default();
        j.add_json(body).expect("json");
        let mut v = Fields::default();
        v.add_value("", &serde_json::from_slice(body).expect("value"));
        assert_eq!(j.dotted, v.dotted, "parsed and streamed alike");
        assert_eq!(
            j.dotted_reached_by("defaults.responsibilities.losses_collector"),
            Some("defaults.responsibilities.losses_collector")
        );
        assert_eq!(j.dotted_reached_by("dashboard"), None);
        // A gist's file names: `files` given is read alike; a rule reading a file's name would
        // not be.
        assert_eq!(j.dotted_reached_by("files"), None);
        assert_eq!(j.dotted_reached_by("files.*.content"), Some("files.a.txt"));
        assert_eq!(j.dotted_reached_by("o.*.k"), Some("o.0.k.v"));
    }

    #[test]
    fn duplicates_are_caught() {
        let mut f = Fields::default();
        f.add_form("amount=1&amount=99999");
        assert_eq!(f.duplicates, vec!["amount".to_string()]);
        let mut j = Fields::default();
        assert!(j
            .add_json(br#"{"visibility":"private","visibility":"public"}"#)
            .unwrap_err()
            .contains("duplicate key"));
        let mut j = Fields::default();
        assert!(j.add_json(br#"{"a":{"x":1,"x":2}}"#).is_err());
        assert!(Fields::default().add_json(b"{not json").is_err());
        assert!(Fields::default().add_json(b"{} trailing").is_err());
    }
}
