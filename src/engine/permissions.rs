//! What a kind (or a part of the runtime) needs of IAM, declared beside its
//! calls, and the least-privilege policy rendered from those declarations:
//! `sentry-operator iam-policy` prints it, and `deploy/iam-policy.json` is its
//! checked-in output.

use serde::Serialize;
use serde_json::Value;

/// Whether a statement allows or denies its actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Effect {
    /// The actions are allowed on the resources.
    Allow,
    /// The actions are denied on the resources, whatever else allows them.
    Deny,
}

/// One statement of the policy. Grants of several kinds with the same `sid`
/// (and the same effect, resources and condition) become one statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The statement's id, naming what it is for (`QueueWrites`).
    pub sid: &'static str,
    /// Allow or deny.
    pub effect: Effect,
    /// IAM actions, e.g. `sqs:CreateQueue`.
    pub actions: &'static [&'static str],
    /// Resource ARN patterns.
    pub resources: &'static [&'static str],
    /// The statement's `Condition` as JSON text, or empty for none.
    pub condition: &'static str,
}

impl Grant {
    /// Allows `actions` on `resources`.
    pub const fn allow(sid: &'static str, actions: &'static [&'static str], resources: &'static [&'static str]) -> Self {
        Grant { sid, effect: Effect::Allow, actions, resources, condition: "" }
    }

    /// Denies `actions` on `resources`.
    pub const fn deny(sid: &'static str, actions: &'static [&'static str], resources: &'static [&'static str]) -> Self {
        Grant { sid, effect: Effect::Deny, actions, resources, condition: "" }
    }

    /// The same grant under `condition` (a JSON object, e.g.
    /// `{"StringEquals": {"aws:RequestTag/sentry:managed-by": "sentry-operator"}}`).
    pub const fn when(self, condition: &'static str) -> Self {
        Grant { condition, ..self }
    }
}

/// What a kind's calls need: reads allowed on every resource (they find
/// what exists), and scoped grants (writes, and reads of named resources).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permissions {
    /// Read-only actions on any resource: the policy's `ReadTheEstate` statement.
    pub reads: &'static [&'static str],
    /// Every other statement.
    pub grants: &'static [Grant],
}

impl Permissions {
    /// No permission at all.
    pub const NONE: Permissions = Permissions { reads: &[], grants: &[] };
}

/// The id of the statement gathering every [`Permissions::reads`].
pub const READ_SID: &str = "ReadTheEstate";

/// Why the declarations do not make one valid policy.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Two grants share a statement id but not its effect, resources or condition.
    #[error("two grants named {0} differ in effect, resources or condition: give one of them another Sid")]
    SidClash(&'static str),
    /// A condition is not a JSON object.
    #[error("the condition of {sid} is not a JSON object: {reason}")]
    Condition {
        /// The statement.
        sid: &'static str,
        /// What the parser said.
        reason: String,
    },
}

/// A policy document, serialised the way IAM writes it (keys in this order,
/// whatever the JSON library's map type).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    /// The policy language version.
    pub version: &'static str,
    /// The statements.
    pub statement: Vec<Statement>,
}

/// One statement of a [`PolicyDocument`].
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    /// Its id.
    pub sid: &'static str,
    /// Allow or deny.
    pub effect: Effect,
    /// Its actions, each once.
    pub action: Vec<&'static str>,
    /// One resource pattern as a string, several as a list.
    pub resource: Value,
    /// Its condition, if any.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "sorted_condition")]
    pub condition: Option<Value>,
}

/// The policy document granting `whole` (every action of each) and, of
/// `reads_only`, the reads alone (their `reads`, the read actions of their
/// grants, and their denies): statements appear where their first grant
/// does, the reads first, each action once per statement.
pub fn policy(whole: &[Permissions], reads_only: &[Permissions]) -> Result<PolicyDocument, PolicyError> {
    let mut reads: Vec<&'static str> = Vec::new();
    let mut merged: Vec<(Grant, Vec<&'static str>)> = Vec::new();
    for (source, writes) in whole.iter().map(|p| (p, true)).chain(reads_only.iter().map(|p| (p, false))) {
        push_new(&mut reads, source.reads);
        for grant in source.grants {
            let kept: Vec<&'static str> = grant.actions.iter().copied().filter(|a| writes || grant.effect == Effect::Deny || is_read(a)).collect();
            if kept.is_empty() {
                continue;
            }
            match merged.iter_mut().find(|(g, _)| g.sid == grant.sid) {
                Some((g, actions)) if (g.effect, g.resources, g.condition) == (grant.effect, grant.resources, grant.condition) => push_new(actions, &kept),
                Some(_) => return Err(PolicyError::SidClash(grant.sid)),
                None => merged.push((*grant, kept)),
            }
        }
    }
    let mut statement = Vec::with_capacity(merged.len() + 1);
    if !reads.is_empty() {
        statement.push(Statement { sid: READ_SID, effect: Effect::Allow, action: reads, resource: resource(&["*"]), condition: None });
    }
    for (grant, action) in merged {
        let condition = match grant.condition {
            "" => None,
            text => Some(condition(grant.sid, text)?),
        };
        statement.push(Statement { sid: grant.sid, effect: grant.effect, action, resource: resource(grant.resources), condition });
    }
    Ok(PolicyDocument { version: "2012-10-17", statement })
}

/// Whether an IAM action only reads (`Describe*`, `List*`, `Get*`).
fn is_read(action: &str) -> bool {
    let name = action.split_once(':').map_or(action, |(_, name)| name);
    ["Describe", "List", "Get"].iter().any(|p| name.starts_with(p))
}

/// A grant's condition, parsed: a JSON object.
fn condition(sid: &'static str, text: &str) -> Result<Value, PolicyError> {
    match serde_json::from_str::<Value>(text) {
        Ok(value) if value.is_object() => Ok(value),
        Ok(_) => Err(PolicyError::Condition { sid, reason: "not an object".into() }),
        Err(e) => Err(PolicyError::Condition { sid, reason: e.to_string() }),
    }
}

/// A JSON value serialised with the keys of every object in sorted order,
/// whatever the JSON library's map type keeps (insertion or sorted order).
struct Sorted<'a>(&'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self.0 {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                let mut out = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    out.serialize_entry(key, &Sorted(value))?;
                }
                out.end()
            }
            Value::Array(items) => serializer.collect_seq(items.iter().map(Sorted)),
            other => other.serialize(serializer),
        }
    }
}

/// Serialises a statement's condition with [`Sorted`] keys.
fn sorted_condition<S: serde::Serializer>(condition: &Option<Value>, serializer: S) -> Result<S::Ok, S::Error> {
    condition.as_ref().map(Sorted).serialize(serializer)
}

/// Appends the items of `more` that `list` lacks.
fn push_new(list: &mut Vec<&'static str>, more: &[&'static str]) {
    for item in more {
        if !list.contains(item) {
            list.push(item);
        }
    }
}

/// Resource patterns as IAM writes them: one as a string, several as a list.
fn resource(patterns: &[&str]) -> Value {
    match patterns {
        [one] => Value::from(*one),
        many => Value::from(many.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUEUES: Permissions =
        Permissions { reads: &["sqs:ListQueues"], grants: &[Grant::allow("QueueWrites", &["sqs:CreateQueue", "sqs:TagQueue"], &["arn:aws:sqs:*:*:sentry-*"])] };
    const DEAD_LETTERS: Permissions = Permissions {
        reads: &["sqs:ListQueues", "sqs:ListDeadLetterSourceQueues"],
        grants: &[
            Grant::allow("QueueWrites", &["sqs:TagQueue", "sqs:DeleteQueue"], &["arn:aws:sqs:*:*:sentry-*"]),
            Grant::deny("NeverPurge", &["sqs:PurgeQueue"], &["*"]),
        ],
    };

    #[test]
    fn grants_of_one_statement_merge_and_reads_gather_first() {
        let policy = serde_json::to_value(policy(&[QUEUES, DEAD_LETTERS], &[]).expect("valid")).expect("JSON");
        let statements = policy["Statement"].as_array().expect("statements");
        assert_eq!(statements.len(), 3);
        assert_eq!(statements[0]["Sid"], READ_SID);
        assert_eq!(statements[0]["Action"], serde_json::json!(["sqs:ListQueues", "sqs:ListDeadLetterSourceQueues"]));
        assert_eq!(statements[0]["Resource"], "*");
        assert_eq!(statements[1]["Action"], serde_json::json!(["sqs:CreateQueue", "sqs:TagQueue", "sqs:DeleteQueue"]), "each action once, in order");
        assert_eq!((statements[2]["Effect"].as_str(), statements[2].get("Condition")), (Some("Deny"), None));
    }

    const TAGGED: Grant = Grant::allow("Tagged", &["kms:CreateKey"], &["*", "arn:aws:kms:*:*:key/*"])
        .when(r#"{"StringEquals": {"aws:RequestTag/sentry:managed-by": "sentry-operator"}}"#);
    const CLASH: Permissions = Permissions { reads: &[], grants: &[TAGGED, Grant::allow("Tagged", &["kms:TagResource"], &["*"])] };
    const BROKEN: Permissions = Permissions { reads: &[], grants: &[Grant::allow("Broken", &["kms:TagResource"], &["*"]).when("{not json")] };

    #[test]
    fn a_source_for_reads_only_keeps_its_reads_read_actions_and_denies() {
        let policy = serde_json::to_value(policy(&[], &[DEAD_LETTERS]).expect("valid")).expect("JSON");
        let statements = policy["Statement"].as_array().expect("statements");
        assert_eq!(statements.len(), 2, "{policy}");
        assert_eq!(statements[0]["Action"], serde_json::json!(["sqs:ListQueues", "sqs:ListDeadLetterSourceQueues"]));
        assert_eq!(statements[1]["Sid"], "NeverPurge", "a deny is kept whole; QueueWrites holds no read, so it is gone");
        const SCOPED_READS: Permissions =
            Permissions { reads: &[], grants: &[Grant::allow("QueueWrites", &["sqs:GetQueueAttributes", "sqs:DeleteQueue"], &["arn:aws:sqs:*:*:sentry-*"])] };
        let policy = serde_json::to_value(super::policy(&[], &[SCOPED_READS]).expect("valid")).expect("JSON");
        assert_eq!(policy["Statement"][0]["Action"], serde_json::json!(["sqs:GetQueueAttributes"]), "scoped reads stay, writes go");
    }

    #[test]
    fn a_document_prints_its_keys_in_iams_order_and_a_conditions_keys_sorted() {
        const UNSORTED: Permissions = Permissions {
            reads: &[],
            grants: &[Grant::allow("Scoped", &["s3:ListBucket"], &["*"])
                .when(r#"{"StringLike": {"s3:prefix": ["specs/*"]}, "Bool": {"aws:SecureTransport": "true"}}"#)],
        };
        let text = serde_json::to_string(&policy(&[QUEUES, UNSORTED], &[]).expect("valid")).expect("JSON");
        assert!(
            text.starts_with(r#"{"Version":"2012-10-17","Statement":[{"Sid":"ReadTheEstate","Effect":"Allow","Action":["sqs:ListQueues"],"Resource":"*"}"#),
            "{text}"
        );
        assert!(text.ends_with(r#""Condition":{"Bool":{"aws:SecureTransport":"true"},"StringLike":{"s3:prefix":["specs/*"]}}}]}"#), "{text}");
    }

    #[test]
    fn a_condition_is_kept_as_json_and_a_clash_of_sids_is_an_error() {
        let policy = serde_json::to_value(policy(&[Permissions { reads: &[], grants: &[TAGGED] }], &[]).expect("valid")).expect("JSON");
        assert_eq!(policy["Statement"][0]["Condition"]["StringEquals"]["aws:RequestTag/sentry:managed-by"], "sentry-operator");
        assert_eq!(policy["Statement"][0]["Resource"], serde_json::json!(["*", "arn:aws:kms:*:*:key/*"]));
        assert_eq!(super::policy(&[CLASH], &[]).err(), Some(PolicyError::SidClash("Tagged")));
        assert!(matches!(super::policy(&[BROKEN], &[]), Err(PolicyError::Condition { sid: "Broken", .. })));
    }
}
