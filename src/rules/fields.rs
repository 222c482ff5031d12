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
}

impl Fields {
    fn insert(&mut self, key: String, v: FieldValue) {
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

    /// Adds `a=1&b[c]=2` pairs. Array pushes `a[]=x` get positional names.
    pub fn add_form(&mut self, text: &str) {
        let mut pushes: BTreeMap<String, usize> = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(text.as_bytes()) {
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
    fn child(&mut self, name: &str) -> Flat<'_> {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        Flat {
            prefix,
            out: self.out,
        }
    }
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
            let mut child = self.child(&i.to_string());
            if seq.next_element_seed(&mut child)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                let full = if self.prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.prefix)
                };
                return Err(de::Error::custom(format!("duplicate key `{full}`")));
            }
            let mut child = self.child(&key);
            map.next_value_seed(&mut child)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
