//! Field values with their structure: text, references to other resources
//! of the spec, sets, ordered lists, words with references among them, and
//! families of keyed entries. References resolve by structure, sets compare
//! as sets, lists keep their order, and no character is special.
//!
//! A value renders as the text the plan has always shown (a set's items
//! sorted and comma-joined, a phrase's words space-joined), and serializes
//! as that text, so reports read the same whatever the structure.

use std::fmt;

use serde::{Serialize, Serializer};

/// One field value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// Plain text (numbers, flags and normalized JSON included).
    Text(String),
    /// A reference to a resource of the spec, `@kind/id`.
    Ref(String),
    /// A physical id (a handle) of another resource, as AWS reports or takes it.
    Handle(String),
    /// Items whose order means nothing: kept sorted by their text, without repeats.
    Set(Vec<Value>),
    /// Items whose order means something.
    List(Vec<Value>),
    /// Words, some of them references (`forward @elbv2.target-group/api`).
    Phrase(Vec<Value>),
    /// A family of entries keyed by value (routes by destination, rules by
    /// what they allow), kept sorted by the keys' text; compared and changed
    /// entry by entry.
    Map(Vec<(Value, Value)>),
}

impl Value {
    /// Plain text.
    pub fn text(text: impl Into<String>) -> Value {
        Value::Text(text.into())
    }

    /// A physical id AWS reported, which the reference map may know as a resource of the spec.
    pub fn handle(handle: impl Into<String>) -> Value {
        Value::Handle(handle.into())
    }

    /// A set of text items.
    pub fn set<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Value {
        Value::set_of(items.into_iter().map(|s| Value::text(s.as_ref())))
    }

    /// A set of physical ids.
    pub fn handles<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Value {
        Value::set_of(items.into_iter().map(|s| Value::handle(s.as_ref())))
    }

    /// A set of values (sorted by their text, repeats dropped).
    pub fn set_of(items: impl IntoIterator<Item = Value>) -> Value {
        let mut items: Vec<Value> = items.into_iter().collect();
        items.sort_by_cached_key(Value::to_string);
        items.dedup();
        Value::Set(items)
    }

    /// A family of entries (sorted by their keys' text).
    pub fn map_of(entries: impl IntoIterator<Item = (Value, Value)>) -> Value {
        let mut entries: Vec<(Value, Value)> = entries.into_iter().collect();
        entries.sort_by_cached_key(|(k, _)| k.to_string());
        entries.dedup_by(|a, b| a.0 == b.0);
        Value::Map(entries)
    }

    /// The text of a single value (text, reference or handle); `None` for a composite one.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) | Value::Ref(s) | Value::Handle(s) => Some(s),
            _ => None,
        }
    }

    /// The items of a set or list, the words of a phrase; a single value is its own only item.
    pub fn items(&self) -> Vec<&Value> {
        match self {
            Value::Set(items) | Value::List(items) | Value::Phrase(items) => items.iter().collect(),
            Value::Map(entries) => entries.iter().map(|(k, _)| k).collect(),
            single => vec![single],
        }
    }

    /// The entries of a family (none for any other value).
    pub fn entries(&self) -> &[(Value, Value)] {
        match self {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    /// The id this value refers to, when it is a reference to a resource of `kind`.
    pub fn id_of(&self, kind: &str) -> Option<&str> {
        match self {
            Value::Ref(r) => r.strip_prefix('@')?.strip_prefix(kind)?.strip_prefix('/'),
            _ => None,
        }
    }

    /// Whether any reference in this value, at any depth, satisfies `found`.
    fn any_reference(&self, found: &impl Fn(&str) -> bool) -> bool {
        match self {
            Value::Ref(r) => found(r),
            Value::Text(_) | Value::Handle(_) => false,
            Value::Set(items) | Value::List(items) | Value::Phrase(items) => items.iter().any(|v| v.any_reference(found)),
            Value::Map(entries) => entries.iter().any(|(k, v)| k.any_reference(found) || v.any_reference(found)),
        }
    }

    /// Whether this value holds the reference `reference` (`@kind/id`) anywhere.
    pub fn refers_to(&self, reference: &str) -> bool {
        self.any_reference(&|r| r == reference)
    }

    /// Whether a reference nobody could resolve is left in this value.
    pub fn is_unresolved(&self) -> bool {
        self.unresolved().is_some()
    }

    /// The first reference nobody could resolve left in this value (a
    /// resource of the spec never created), at any depth.
    pub fn unresolved(&self) -> Option<&str> {
        match self {
            Value::Ref(r) => Some(r),
            Value::Text(_) | Value::Handle(_) => None,
            Value::Set(items) | Value::List(items) | Value::Phrase(items) => items.iter().find_map(Value::unresolved),
            Value::Map(entries) => entries.iter().find_map(|(k, v)| k.unresolved().or_else(|| v.unresolved())),
        }
    }

    /// This value, for the call `operation` to write once resolved: an
    /// error naming a reference left in it (what it refers to does not exist).
    pub fn resolved(&self, operation: &'static str) -> Result<&Value, crate::aws::AwsError> {
        match self.unresolved() {
            Some(r) => Err(crate::aws::AwsError::unexpected(operation, format!("{r} does not exist"))),
            None => Ok(self),
        }
    }

    /// This value with every reference and handle passed through `f`
    /// (which returns the other form, or `None` to keep it), sets and
    /// families sorted again.
    pub fn translated(&self, f: &impl Fn(&Value) -> Option<Value>) -> Value {
        match self {
            Value::Ref(_) | Value::Handle(_) => f(self).unwrap_or_else(|| self.clone()),
            Value::Text(_) => self.clone(),
            Value::Set(items) => Value::set_of(items.iter().map(|v| v.translated(f))),
            Value::List(items) => Value::List(items.iter().map(|v| v.translated(f)).collect()),
            Value::Phrase(words) => Value::Phrase(words.iter().map(|v| v.translated(f)).collect()),
            Value::Map(entries) => Value::map_of(entries.iter().map(|(k, v)| (k.translated(f), v.translated(f)))),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined = |f: &mut fmt::Formatter<'_>, items: &[Value], separator: &str| {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(separator)?;
                }
                write!(f, "{item}")?;
            }
            Ok(())
        };
        match self {
            Value::Text(s) | Value::Ref(s) | Value::Handle(s) => f.write_str(s),
            Value::Set(items) | Value::List(items) => joined(f, items, ","),
            Value::Phrase(words) => joined(f, words, " "),
            Value::Map(entries) => {
                for (i, (k, v)) in entries.iter().enumerate() {
                    write!(f, "{}{k}={v}", if i > 0 { "," } else { "" })?;
                }
                Ok(())
            }
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::Text(text)
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::Text(text.to_string())
    }
}

impl From<&String> for Value {
    fn from(text: &String) -> Value {
        Value::Text(text.clone())
    }
}

impl PartialEq<str> for Value {
    fn eq(&self, other: &str) -> bool {
        self.as_text() == Some(other)
    }
}

impl PartialEq<&str> for Value {
    fn eq(&self, other: &&str) -> bool {
        self.as_text() == Some(*other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_sort_and_drop_repeats_lists_keep_order_and_no_character_is_special() {
        assert_eq!(Value::set(["b", "a,c", "b"]).to_string(), "a,c,b");
        assert_eq!(Value::set(["b", "a"]), Value::set(["a", "b"]));
        assert_ne!(Value::List(vec!["b".into(), "a".into()]), Value::List(vec!["a".into(), "b".into()]));
        assert_eq!(Value::text("a b,c").items(), vec![&Value::text("a b,c")], "one text is one item, whatever it holds");
        assert_eq!(Value::Phrase(vec!["forward".into(), Value::Ref("@elbv2.target-group/api".into())]).to_string(), "forward @elbv2.target-group/api");
        assert_eq!(serde_json::to_string(&Value::set(["x", "w"])).ok().as_deref(), Some(r#""w,x""#));
    }

    #[test]
    fn translation_reaches_references_inside_every_shape_and_resorts_sets() {
        let to_ref = |v: &Value| match v {
            Value::Handle(h) if h == "subnet-2" => Some(Value::Ref("@ec2.subnet/a".into())),
            _ => None,
        };
        let set = Value::set_of([Value::handle("subnet-2"), Value::handle("subnet-1")]);
        assert_eq!(set.translated(&to_ref).to_string(), "@ec2.subnet/a,subnet-1");
        assert!(set.translated(&to_ref).items().contains(&&Value::handle("subnet-1")), "what f keeps stays as it was");
        let family = Value::map_of([(Value::Phrase(vec!["tcp".into(), Value::handle("subnet-2")]), "allow".into())]);
        assert_eq!(family.translated(&to_ref).entries()[0].0.to_string(), "tcp @ec2.subnet/a");
        assert!(!family.is_unresolved() && family.translated(&to_ref).is_unresolved());
        assert_eq!(Value::text("subnet-2").translated(&to_ref), Value::text("subnet-2"), "text is never taken for a handle");
        assert_eq!(Value::Ref("@ec2.subnet/a".into()).id_of("ec2.subnet"), Some("a"));
        assert_eq!(Value::Ref("@ec2.subnet-group/a".into()).id_of("ec2.subnet"), None);
    }
}
