//! serde `Deserializer` over a positioned [`Node`] tree.
//!
//! Errors come back with the spec path (`network.vpc.cidr`) and the position
//! of the offending key or value, so a typo in a field name points at the key.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::yaml::{Key, Loc, Node, Value};

/// A structural error (unknown field, wrong type, missing field).
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    /// What is wrong.
    pub message: String,
    /// Where, once known.
    pub loc: Option<Loc>,
    /// Spec path segments, outermost first.
    pub path: Vec<String>,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError { message: msg.to_string(), loc: None, path: Vec::new() }
    }
}

impl DeError {
    /// Fills in the position and prefixes the path on the way out of a map entry or list item.
    fn within(mut self, segment: &str, loc: &Loc) -> Self {
        if self.loc.is_none() {
            self.loc = Some(loc.clone());
        }
        self.path.insert(0, segment.to_string());
        self
    }
}

/// Deserializes `T` from `node`.
/// An error without a position is about `node` as a whole; the caller knows
/// best where to point (its key, for a map).
pub fn from_node<'de, T: serde::Deserialize<'de>>(node: &'de Node) -> Result<T, DeError> {
    T::deserialize(NodeDe(node))
}

/// The deserializer for one node.
struct NodeDe<'a>(&'a Node);

impl<'a> NodeDe<'a> {
    fn invalid(&self, exp: &dyn de::Expected) -> DeError {
        let unexpected = match &self.0.value {
            Value::Null => de::Unexpected::Unit,
            Value::Bool(b) => de::Unexpected::Bool(*b),
            Value::Int(i) => de::Unexpected::Signed(*i),
            Value::Float(f) => de::Unexpected::Float(*f),
            Value::Str(s) => de::Unexpected::Str(s),
            Value::Seq(_) => de::Unexpected::Seq,
            Value::Map(_) => de::Unexpected::Map,
        };
        de::Error::invalid_type(unexpected, exp)
    }
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Seq(items) => visitor.visit_seq(Items { items: items.iter(), index: 0 }),
            Value::Map(entries) => visitor.visit_map(Entries { entries: entries.iter(), current: None }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Str(s) => visitor.visit_borrowed_str(s),
            _ => Err(self.invalid(&visitor)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(self, _: &'static str, _: &'static [&'static str], visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            _ => Err(self.invalid(&visitor)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct Items<'a> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
}

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else { return Ok(None) };
        let index = self.index;
        self.index += 1;
        seed.deserialize(NodeDe(node)).map(Some).map_err(|e| e.within(&index.to_string(), &node.loc))
    }
}

struct Entries<'a> {
    entries: std::slice::Iter<'a, (Key, Node)>,
    current: Option<&'a (Key, Node)>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else { return Ok(None) };
        self.current = Some(entry);
        let key = &entry.0;
        let key_de: de::value::BorrowedStrDeserializer<'de, DeError> = de::value::BorrowedStrDeserializer::new(&key.name);
        seed.deserialize(key_de).map(Some).map_err(|e| e.within(&key.name, &key.loc))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((key, node)) = self.current else {
            return Err(de::Error::custom("value requested before its key"));
        };
        // Errors about a whole map or list (a missing field) point at its key;
        // errors about a scalar point at the value.
        let loc = if matches!(node.value, Value::Map(_) | Value::Seq(_)) { &key.loc } else { &node.loc };
        seed.deserialize(NodeDe(node)).map_err(|e| e.within(&key.name, loc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::parse;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)] // only deserialized
    struct Inner {
        cidr: String,
        #[serde(default)]
        count: Option<u32>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // only deserialized
    struct Outer {
        vpc: Inner,
        #[serde(default)]
        items: BTreeMap<String, Inner>,
    }

    /// Asserts that `yaml` is refused at `path`, line and column `at`, with
    /// a message containing `message`.
    fn assert_refused(yaml: &str, path: &[&str], at: (usize, usize), message: &str) {
        let node = parse("f.yaml", yaml).expect("yaml");
        let e = from_node::<Outer>(&node).expect_err("refused");
        assert_eq!(e.path, path);
        assert_eq!(e.loc.map(|l| (l.line, l.col)), Some(at));
        assert!(e.message.contains(message), "{}", e.message);
    }

    #[test]
    fn unknown_field_points_at_the_key() {
        assert_refused("vpc:\n  cidr: x\n  cidrr: y\n", &["vpc", "cidrr"], (3, 3), "unknown field `cidrr`");
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        assert_refused("vpc:\n  cidr: x\nitems:\n  a:\n    cidr: y\n    count: many\n", &["items", "a", "count"], (6, 12), "invalid type: string \"many\"");
    }

    #[test]
    fn missing_field_points_at_the_map() {
        assert_refused("vpc:\n  count: 1\n", &["vpc"], (1, 1), "missing field `cidr`");
    }
}
