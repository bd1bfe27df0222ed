//! A YAML document tree that remembers where every node came from.
//!
//! serde_yaml's `Value` drops source positions, and every spec error must name
//! `file:line:column`, so specs are read through yaml-rust2's event parser into
//! [`Node`]s that carry a [`Loc`]. The loader also defuses hostile input: file
//! size, nesting depth and alias expansion are bounded.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Largest spec file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Deepest nesting of maps and lists accepted.
pub const MAX_DEPTH: usize = 64;
/// Most nodes one file may expand to (aliases included): stops "billion laughs".
pub const MAX_NODES: usize = 200_000;

/// A position in a spec file (1-based line and column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loc {
    /// The file, as the user named it (e.g. `specs/dev.yaml`).
    pub file: Arc<str>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A YAML value with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where the value starts.
    pub loc: Loc,
}

/// The YAML 1.2 core-schema value of a [`Node`].
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string (any quoted scalar, or a plain one that is nothing else).
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping with string keys, in file order.
    Map(Vec<(Key, Node)>),
}

/// A mapping key and where it is written.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    /// The key text.
    pub name: String,
    /// Where the key is written.
    pub loc: Loc,
}

impl Node {
    /// A short name of the node's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    /// The child at `segment` (a map key, or a list index written as digits).
    pub fn child(&self, segment: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == segment).map(|(_, v)| v),
            Value::Seq(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
    }

    /// The key node of `segment` in a map, for errors about the key itself.
    pub fn key(&self, segment: &str) -> Option<&Key> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == segment).map(|(k, _)| k),
            _ => None,
        }
    }

    /// The position of the deepest node along `path` (stops where the path leaves the tree).
    pub fn locate(&self, path: &[String]) -> &Loc {
        let mut node = self;
        for segment in path {
            match node.child(segment) {
                Some(child) => node = child,
                None => break,
            }
        }
        &node.loc
    }
}

/// Why a file could not be read as YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where the problem is.
    pub loc: Loc,
    /// What is wrong.
    pub message: String,
}

/// Parses one YAML document from `text`; `file` names it in positions.
/// An empty document is an empty map.
pub fn parse(file: &str, text: &str) -> Result<Node, SyntaxError> {
    let file: Arc<str> = Arc::from(file);
    let at = |line, col| Loc { file: file.clone(), line, col };
    if text.len() > MAX_FILE_BYTES {
        return Err(SyntaxError { loc: at(1, 1), message: format!("file is {} bytes; the limit is {MAX_FILE_BYTES}", text.len()) });
    }
    let mut builder = TreeBuilder::new(file.clone());
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        let m = e.marker();
        return Err(SyntaxError { loc: at(m.line(), m.col() + 1), message: e.info().to_string() });
    }
    if let Some(error) = builder.error {
        return Err(error);
    }
    match builder.documents.len() {
        0 => Ok(Node { value: Value::Map(Vec::new()), loc: at(1, 1) }),
        1 => Ok(builder.documents.remove(0)),
        _ => Err(SyntaxError { loc: builder.documents[1].loc.clone(), message: "a spec file holds one YAML document; found several".into() }),
    }
}

/// A container being filled while events arrive.
enum Open {
    Seq { anchor: usize, loc: Loc, items: Vec<Node> },
    Map { anchor: usize, loc: Loc, entries: Vec<(Key, Node)>, pending_key: Option<Key> },
}

/// Builds [`Node`]s from parser events, enforcing the hostile-input limits.
struct TreeBuilder {
    file: Arc<str>,
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    documents: Vec<Node>,
    nodes: usize,
    error: Option<SyntaxError>,
}

impl TreeBuilder {
    fn new(file: Arc<str>) -> Self {
        TreeBuilder { file, stack: Vec::new(), anchors: HashMap::new(), documents: Vec::new(), nodes: 0, error: None }
    }

    fn loc(&self, mark: Marker) -> Loc {
        Loc { file: self.file.clone(), line: mark.line(), col: mark.col() + 1 }
    }

    fn fail(&mut self, loc: Loc, message: String) {
        if self.error.is_none() {
            self.error = Some(SyntaxError { loc, message });
        }
    }

    fn count(&mut self, added: usize, loc: &Loc) -> bool {
        self.nodes = self.nodes.saturating_add(added);
        if self.nodes > MAX_NODES {
            self.fail(loc.clone(), format!("document expands to more than {MAX_NODES} nodes (alias bomb?)"));
            return false;
        }
        true
    }

    /// Hands a finished node to its parent (or to the document list).
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let duplicate = match self.stack.last_mut() {
            None => {
                self.documents.push(node);
                None
            }
            Some(Open::Seq { items, .. }) => {
                items.push(node);
                None
            }
            Some(Open::Map { entries, pending_key, .. }) => match pending_key.take() {
                Some(key) => {
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == key.name) {
                        Some((key.clone(), first.loc.clone()))
                    } else {
                        entries.push((key, node));
                        None
                    }
                }
                None => match node.value {
                    Value::Str(name) => {
                        *pending_key = Some(Key { name, loc: node.loc });
                        None
                    }
                    Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => {
                        let name = scalar_text(&node.value);
                        *pending_key = Some(Key { name, loc: node.loc });
                        None
                    }
                    _ => {
                        self.fail(node.loc, "map keys must be plain strings".into());
                        None
                    }
                },
            },
        };
        if let Some((key, first)) = duplicate {
            self.fail(key.loc, format!("duplicate key `{}` (first defined at {first})", key.name));
        }
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        _ => String::new(),
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let loc = self.loc(mark);
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                if !self.count(1, &loc) {
                    return;
                }
                let value = if tag.is_some() {
                    self.fail(loc, "YAML tags (`!name`) are not supported in specs".into());
                    return;
                } else if style == TScalarStyle::Plain {
                    resolve_plain(text)
                } else {
                    Value::Str(text)
                };
                self.push(Node { value, loc }, anchor);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.fail(loc, format!("nesting deeper than {MAX_DEPTH} levels"));
                    return;
                }
                if !self.count(1, &loc) {
                    return;
                }
                self.stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Open::Seq { anchor, loc, items: Vec::new() }
                } else {
                    Open::Map { anchor, loc, entries: Vec::new(), pending_key: None }
                });
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Open::Seq { anchor, loc, items }) => self.push(Node { value: Value::Seq(items), loc }, anchor),
                Some(Open::Map { anchor, loc, entries, .. }) => self.push(Node { value: Value::Map(entries), loc }, anchor),
                None => self.fail(loc, "unbalanced YAML structure".into()),
            },
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => {
                    if self.count(node_count(&node), &loc) {
                        self.push(node, 0);
                    }
                }
                None => self.fail(loc, "alias refers to an unknown anchor".into()),
            },
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd => {}
        }
    }
}

fn node_count(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        Value::Map(entries) => 1 + entries.iter().map(|(_, v)| 1 + node_count(v)).sum::<usize>(),
        _ => 1,
    }
}

/// Resolves a plain scalar by the YAML 1.2 core schema.
fn resolve_plain(text: String) -> Value {
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" => return Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Value::Int(i);
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return Value::Int(i);
        }
    }
    let numeric = text.trim_start_matches(['-', '+']);
    if numeric.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Int(i);
        }
        if numeric.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+')) {
            if let Ok(f) = text.parse::<f64>() {
                return Value::Float(f);
            }
        }
    }
    Value::Str(text)
}

/// Deep-merges `overlay` onto `base`: maps merge key by key, anything else
/// (lists included) is replaced, and an explicit `null` in the overlay removes
/// the key from the base.
pub fn merge(base: Node, overlay: Node) -> Node {
    match (base.value, overlay.value) {
        (Value::Map(mut entries), Value::Map(overrides)) => {
            for (key, value) in overrides {
                let existing = entries.iter().position(|(k, _)| k.name == key.name);
                match (existing, value.value) {
                    (Some(i), Value::Null) => {
                        entries.remove(i);
                    }
                    (None, Value::Null) => {}
                    (Some(i), v) => {
                        let (_, old) = entries.remove(i);
                        entries.insert(i, (key, merge(old, Node { value: v, loc: value.loc })));
                    }
                    (None, v) => entries.push((key, Node { value: v, loc: value.loc })),
                }
            }
            Node { value: Value::Map(entries), loc: base.loc }
        }
        (_, value) => Node { value, loc: overlay.loc },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Node {
        parse("t.yaml", text).expect("parses")
    }

    #[test]
    fn scalars_resolve_by_core_schema() {
        let n = p("a: 1\nb: '1'\nc: true\nd: ~\ne: 1.5\nf: text\ng: 0x1f\n");
        assert_eq!(n.child("a").map(|n| &n.value), Some(&Value::Int(1)));
        assert_eq!(n.child("b").map(|n| &n.value), Some(&Value::Str("1".into())));
        assert_eq!(n.child("c").map(|n| &n.value), Some(&Value::Bool(true)));
        assert_eq!(n.child("d").map(|n| &n.value), Some(&Value::Null));
        assert_eq!(n.child("e").map(|n| &n.value), Some(&Value::Float(1.5)));
        assert_eq!(n.child("f").map(|n| &n.value), Some(&Value::Str("text".into())));
        assert_eq!(n.child("g").map(|n| &n.value), Some(&Value::Int(31)));
    }

    #[test]
    fn positions_are_one_based() {
        let n = p("vpc:\n  cidr: 10.0.0.0/16\n");
        let cidr = n.child("vpc").and_then(|v| v.child("cidr")).expect("cidr");
        assert_eq!((cidr.loc.line, cidr.loc.col), (2, 9));
        assert_eq!(n.locate(&["vpc".into(), "cidr".into()]).to_string(), "t.yaml:2:9");
    }

    #[test]
    fn duplicate_keys_are_rejected_with_both_places() {
        let e = parse("t.yaml", "a: 1\nb: 2\na: 3\n").expect_err("duplicate");
        assert_eq!(e.loc.line, 3);
        assert!(e.message.contains("duplicate key `a` (first defined at t.yaml:1:1)"), "{}", e.message);
    }

    #[test]
    fn alias_bombs_are_stopped() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        let e = parse("t.yaml", &text).expect_err("bomb");
        assert!(e.message.contains("alias bomb"), "{}", e.message);
    }

    #[test]
    fn huge_files_are_refused() {
        let e = parse("t.yaml", &"# x\n".repeat(MAX_FILE_BYTES / 4 + 1)).expect_err("too big");
        assert!(e.message.contains("the limit is 1048576"), "{}", e.message);
    }

    #[test]
    fn one_document_per_file() {
        let e = parse("t.yaml", "a: 1\n---\na: 2\n").expect_err("two documents");
        assert!(e.message.contains("one YAML document"), "{}", e.message);
    }

    #[test]
    fn deep_nesting_is_stopped() {
        let text = "[".repeat(200) + &"]".repeat(200);
        let e = parse("t.yaml", &text).expect_err("deep");
        assert!(e.message.contains("nesting deeper"), "{}", e.message);
    }

    #[test]
    fn merge_maps_merge_lists_replace_null_removes() {
        let base = p("a: {x: 1, y: 2}\nl: [1, 2]\nk: keep\ngone: 1\n");
        let over = p("a: {y: 3}\nl: [9]\ngone: null\n");
        let m = merge(base, over);
        let a = m.child("a").expect("a");
        assert_eq!(a.child("x").map(|n| &n.value), Some(&Value::Int(1)));
        assert_eq!(a.child("y").map(|n| &n.value), Some(&Value::Int(3)));
        assert_eq!(a.child("y").map(|n| n.loc.line), Some(1));
        assert!(matches!(&m.child("l").expect("l").value, Value::Seq(v) if v.len() == 1));
        assert!(m.child("gone").is_none());
        assert!(m.child("k").is_some());
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// YAML-ish text: structure characters, scalars, anchors, aliases, tags.
    fn yamlish() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("\n".to_string()),
            Just("  ".to_string()),
            Just(": ".to_string()),
            Just("- ".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            Just(", ".to_string()),
            Just("&a ".to_string()),
            Just("*a".to_string()),
            Just("!tag ".to_string()),
            Just("\"".to_string()),
            Just("'".to_string()),
            Just("#".to_string()),
            Just("null".to_string()),
            Just("~".to_string()),
            "[a-z]{1,6}",
            "-?[0-9]{1,4}",
            "\\PC{0,4}",
        ];
        prop::collection::vec(token, 0..80).prop_map(|t| t.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the input, the loader answers: a tree or a located error, never a panic.
        #[test]
        fn the_loader_never_panics(text in yamlish()) {
            match parse("f.yaml", &text) {
                Ok(tree) => {
                    let merged = merge(tree.clone(), tree);
                    let _ = crate::spec::de::from_node::<crate::spec::Spec>(&merged);
                }
                Err(e) => prop_assert!(e.loc.line >= 1 && !e.message.is_empty()),
            }
        }

        /// Arbitrary bytes (as text) are handled the same way.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = parse("f.yaml", &text);
        }
    }
}
