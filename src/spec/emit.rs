//! Writes a spec as YAML (block style, keys in order, nulls left out), in
//! the subset the loader reads back to the same value: strings that could
//! read as anything else (numbers, booleans, null, `ON`, ARNs with `:`) are
//! double-quoted.

use std::fmt::Write as _;

use serde_json::Value;

/// The YAML text of `value` (a JSON object), with `header` as a comment on top.
pub fn to_yaml(value: &Value, header: &str) -> String {
    let mut out = String::new();
    for line in header.lines() {
        let _ = writeln!(out, "# {line}");
    }
    if let Value::Object(map) = value {
        for (key, v) in map.iter().filter(|(_, v)| !v.is_null()) {
            entry(&mut out, 0, key, v);
        }
    }
    out
}

/// One `key: value` at `indent`, nested values below it.
fn entry(out: &mut String, indent: usize, key: &str, value: &Value) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if map.values().any(|v| !v.is_null()) => {
            let _ = writeln!(out, "{pad}{}:", scalar_key(key));
            for (k, v) in map.iter().filter(|(_, v)| !v.is_null()) {
                entry(out, indent + 2, k, v);
            }
        }
        Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
            let _ = writeln!(out, "{pad}{}:", scalar_key(key));
            for item in items {
                list_item(out, indent + 2, item);
            }
        }
        _ => {
            let _ = writeln!(out, "{pad}{}: {}", scalar_key(key), inline(value));
        }
    }
}

/// One `- item` at `indent`; a map's first key goes on the dash line.
fn list_item(out: &mut String, indent: usize, item: &Value) {
    let pad = " ".repeat(indent);
    match item {
        Value::Object(map) if map.values().any(|v| !v.is_null()) => {
            let mut first = true;
            for (k, v) in map.iter().filter(|(_, v)| !v.is_null()) {
                if first {
                    let mut nested = String::new();
                    entry(&mut nested, indent + 2, k, v);
                    let _ = write!(out, "{pad}- {}", &nested[indent + 2..]);
                    first = false;
                } else {
                    entry(out, indent + 2, k, v);
                }
            }
        }
        _ => {
            let _ = writeln!(out, "{pad}- {}", inline(item));
        }
    }
}

/// A value on one line: a scalar, or a flow list / map of scalars.
fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar(s),
        Value::Array(items) => format!("[{}]", items.iter().map(inline).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            let entries: Vec<String> = map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| format!("{}: {}", scalar_key(k), inline(v))).collect();
            if entries.is_empty() {
                "{}".into()
            } else {
                format!("{{ {} }}", entries.join(", "))
            }
        }
    }
}

/// A key: plain when it is a plain word or a `kind/id` key, else quoted.
fn scalar_key(key: &str) -> String {
    scalar(key)
}

/// A string: plain when it cannot read as anything but that string.
fn scalar(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '/')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !matches!(s.to_ascii_lowercase().as_str(), "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | "~");
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::{self, Node};
    use serde_json::json;

    fn json_of(node: &Node) -> Value {
        match &node.value {
            yaml::Value::Null => Value::Null,
            yaml::Value::Bool(b) => json!(b),
            yaml::Value::Int(i) => json!(i),
            yaml::Value::Float(f) => json!(f),
            yaml::Value::Str(s) => json!(s),
            yaml::Value::Seq(items) => Value::Array(items.iter().map(json_of).collect()),
            yaml::Value::Map(entries) => Value::Object(entries.iter().map(|(k, v)| (k.name.clone(), json_of(v))).collect()),
        }
    }

    #[test]
    fn what_is_written_reads_back_the_same() {
        let value = json!({
            "region": "us-east-1",
            "tags": { "Project": "sentry", "aws-like": "a:b" },
            "network": {
                "vpc": { "cidr": "10.0.0.0/16", "enableDnsHostnames": false, "name": null },
                "subnets": { "public-a": { "tier": "public", "az": "us-east-1a", "cidr": "10.0.0.0/24" } },
                "securityGroups": { "alb": { "description": "ALB: HTTP(S)", "ingress": [{ "protocol": "tcp", "ports": 443, "cidr": "0.0.0.0/0" }, { "protocol": "all" }], "egress": [] } }
            },
            "identity": { "userPool": { "mfa": "ON", "name": "7.1" } },
            "adopt": { "ec2.vpc/vpc": { "id": "vpc-1" }, "sqs.queue/orders": {} },
        });
        let text = to_yaml(&value, "generated\nby a test");
        assert!(text.starts_with("# generated\n# by a test\n"), "{text}");
        let tree = yaml::parse("t.yaml", &text).expect("parses");
        assert_eq!(
            json_of(&tree),
            json!({
                "region": "us-east-1",
                "tags": { "Project": "sentry", "aws-like": "a:b" },
                "network": {
                    "vpc": { "cidr": "10.0.0.0/16", "enableDnsHostnames": false },
                    "subnets": { "public-a": { "tier": "public", "az": "us-east-1a", "cidr": "10.0.0.0/24" } },
                    "securityGroups": { "alb": { "description": "ALB: HTTP(S)", "ingress": [{ "protocol": "tcp", "ports": 443, "cidr": "0.0.0.0/0" }, { "protocol": "all" }], "egress": [] } }
                },
                "identity": { "userPool": { "mfa": "ON", "name": "7.1" } },
                "adopt": { "ec2.vpc/vpc": { "id": "vpc-1" }, "sqs.queue/orders": {} },
            }),
            "{text}"
        );
    }
}
