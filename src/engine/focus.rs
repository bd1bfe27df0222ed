//! Narrowed passes. An AWS API call (CloudTrail's record of it) names the
//! resources it touched; each kind says, as data ([`EventMatch`]), which of
//! its resources a call can touch. A pass can then be narrowed ([`Focus`]) to
//! those resources, carry who made the change ([`Attribution`]) into its
//! report, and resolve references to the kinds it does not observe through
//! the handles earlier passes learnt
//! ([`KnownHandles`](super::references::KnownHandles)). No AWS calls here.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

/// Who made a change, and how: from CloudTrail's record of the call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribution {
    /// The principal (`userIdentity.arn`).
    pub actor: String,
    /// Its type (`userIdentity.type`: IAMUser, AssumedRole, Root, AWSService, …).
    pub principal_type: String,
    /// The call (`eventName`).
    pub call: String,
    /// When (`eventTime`).
    pub at: String,
    /// From where (`sourceIPAddress`).
    pub source_ip: String,
}

impl std::fmt::Display for Attribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "changed by {} ({}) via {} at {} from {}", self.actor, self.principal_type, self.call, self.at, self.source_ip)
    }
}

/// One AWS API call as CloudTrail records it: the parts that name resources.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApiCall {
    /// `eventSource`, e.g. `sqs.amazonaws.com`.
    pub source: String,
    /// `eventName`, e.g. `SetQueueAttributes`.
    pub name: String,
    /// `requestParameters`.
    pub request: Value,
    /// `responseElements`.
    pub response: Value,
}

/// Which API calls concern a kind, and where they name its resources: the
/// kind's part of the event contract, declared in its [`super::Rules`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventMatch {
    /// CloudTrail `eventSource` of the kind's service; empty: no call maps to the kind.
    pub source: &'static str,
    /// Words one of which a call's name contains for it to concern the kind
    /// (`NatGateway`), tagging calls aside; empty: every call of the service.
    pub calls: &'static [&'static str],
    /// Request or response parameters (at any depth) whose values name the
    /// resource: an id, a name, a URL or an ARN (`natGatewayId`, `queueUrl`).
    pub ids: &'static [&'static str],
    /// What the kind's ids start with, or what its ARNs hold after a colon
    /// (`nat-`, `targetgroup/`): tagging calls name resources of several
    /// kinds of one service (EC2's CreateTags, ELBv2's AddTags); empty: any.
    pub marker: &'static str,
}

impl EventMatch {
    /// No call maps to the kind.
    pub const NONE: EventMatch = EventMatch::of("", &[], &[]);

    /// The calls of `source` whose names contain one of `calls`, naming the
    /// kind's resources in the parameters `ids`.
    pub const fn of(source: &'static str, calls: &'static [&'static str], ids: &'static [&'static str]) -> Self {
        EventMatch { source, calls, ids, marker: "" }
    }

    /// The same for a kind whose ids start with `marker`, or whose ARNs hold it after a colon.
    pub const fn marked(self, marker: &'static str) -> Self {
        EventMatch { marker, ..self }
    }
}

/// Parameters that name the resources of a tagging call, whatever the service.
const TAGGED_RESOURCE_KEYS: &[&str] =
    &["resourceId", "resourceArn", "ResourceArn", "resourceArns", "ResourceArns", "resourceName", "ResourceName", "ResourceId"];

/// What a call touched of one kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Touched {
    /// Nothing of the kind.
    Nothing,
    /// Resources of the kind, by id, name, URL or ARN.
    Resources(BTreeSet<String>),
    /// Something of the kind the call does not say: the whole kind.
    Kind,
}

/// What `call` touched of the kind `m` describes.
pub fn touched(m: &EventMatch, call: &ApiCall) -> Touched {
    if m.source.is_empty() || m.source != call.source {
        return Touched::Nothing;
    }
    let tagging = is_tagging(&call.name);
    if !tagging && !m.calls.is_empty() && !m.calls.iter().any(|c| call.name.contains(c)) {
        return Touched::Nothing;
    }
    let keys: Vec<&str> = if tagging { m.ids.iter().chain(TAGGED_RESOURCE_KEYS).copied().collect() } else { m.ids.to_vec() };
    let mut ids = BTreeSet::new();
    for value in [&call.request, &call.response] {
        collect(value, &keys, &mut ids);
    }
    let marked = |id: &String| !tagging || m.marker.is_empty() || id.starts_with(m.marker) || id.contains(&format!(":{}", m.marker));
    let ids: BTreeSet<String> = ids.into_iter().filter(marked).collect();
    match (ids.is_empty(), tagging) {
        (false, _) => Touched::Resources(ids),
        // A tagging call names its resources: none of this kind's, then.
        (true, true) => Touched::Nothing,
        (true, false) => Touched::Kind,
    }
}

/// Whether a call only changes tags (`CreateTags`, `TagResource`, `UntagQueue`, `AddTagsToResource`, …).
fn is_tagging(name: &str) -> bool {
    ["CreateTags", "DeleteTags", "AddTags", "RemoveTags"].iter().any(|t| name.starts_with(t)) || name.starts_with("Tag") || name.starts_with("Untag")
}

/// Every string under one of `keys`, at any depth (a string, or a list of them).
fn collect(value: &Value, keys: &[&str], out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if keys.contains(&k.as_str()) {
                    match v {
                        Value::String(s) if !s.is_empty() => {
                            out.insert(s.clone());
                        }
                        Value::Array(items) => out.extend(items.iter().filter_map(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)),
                        _ => {}
                    }
                }
                collect(v, keys, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, keys, out)),
        _ => {}
    }
}

/// Whether identifier `id` (from a call) names a resource known as `known`
/// (a handle or a name): the same, or one is the other's last path or ARN segment.
pub fn names(id: &str, known: &str) -> bool {
    let tail =
        |long: &str, short: &str| long.len() > short.len() && long.ends_with(short) && matches!(long.as_bytes()[long.len() - short.len() - 1], b'/' | b':');
    !known.is_empty() && (id == known || tail(id, known) || tail(known, id))
}

/// What a pass is narrowed to, and who caused what it may find.
#[derive(Clone, Debug, Default)]
pub struct Focus {
    /// The kinds the pass covers; `None`: every kind.
    pub kinds: Option<BTreeSet<&'static str>>,
    /// Kinds covered only in part: their resources by identifier. A covered
    /// kind not listed here is covered whole.
    pub resources: BTreeMap<&'static str, BTreeSet<String>>,
    /// Who changed what: by kind, then identifier (empty: the kind as a whole).
    pub causes: BTreeMap<&'static str, BTreeMap<String, Attribution>>,
}

impl Focus {
    /// Whether the pass covers `kind`.
    pub fn covers_kind(&self, kind: &str) -> bool {
        self.kinds.as_ref().map_or(true, |k| k.contains(kind))
    }

    /// Whether the pass covers the resource of `kind` going by `identities`
    /// (its handle, its names, its last known handle).
    pub fn covers(&self, kind: &str, identities: &[String]) -> bool {
        let Some(ids) = self.resources.get(kind) else { return self.covers_kind(kind) };
        ids.iter().any(|id| identities.iter().any(|k| names(id, k)))
    }

    /// The cause of a change to the resource of `kind` going by
    /// `identities`: the call that named it, else a call about its kind as a whole.
    pub fn cause_of(&self, kind: &str, identities: &[String]) -> Option<Attribution> {
        let causes = self.causes.get(kind)?;
        let named = causes.iter().find(|(id, _)| !id.is_empty() && identities.iter().any(|k| names(id, k)));
        named.map(|(_, a)| a).or_else(|| causes.get("")).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NAT: EventMatch = EventMatch::of("ec2.amazonaws.com", &["NatGateway"], &["natGatewayId", "NatGatewayId"]).marked("nat-");
    const SG: EventMatch = EventMatch::of("ec2.amazonaws.com", &["SecurityGroup"], &["groupId", "GroupId"]).marked("sg-");
    const QUEUE: EventMatch = EventMatch::of("sqs.amazonaws.com", &[], &["queueUrl", "queueName"]);

    fn call(source: &str, name: &str, request: Value) -> ApiCall {
        ApiCall { source: source.into(), name: name.into(), request, response: Value::Null }
    }

    fn ids(list: &[&str]) -> Touched {
        Touched::Resources(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn calls_map_to_the_resources_they_name_or_to_the_whole_kind() {
        let delete = call("ec2.amazonaws.com", "DeleteNatGateway", json!({"DeleteNatGatewayRequest": {"NatGatewayId": "nat-1"}}));
        assert_eq!(touched(&NAT, &delete), ids(&["nat-1"]), "found at any depth");
        assert_eq!(touched(&SG, &delete), Touched::Nothing, "another kind of the same service");
        let tags = call("ec2.amazonaws.com", "CreateTags", json!({"resourcesSet": {"items": [{"resourceId": "sg-1"}, {"resourceId": "nat-2"}]}}));
        assert_eq!(touched(&SG, &tags), ids(&["sg-1"]), "a tagging call names resources of several kinds: the marker tells");
        assert_eq!(touched(&NAT, &tags), ids(&["nat-2"]));
        let silent = call("ec2.amazonaws.com", "ModifySecurityGroupRules", json!({}));
        assert_eq!(touched(&SG, &silent), Touched::Kind, "a call that names nothing: the whole kind");
        let set = call("sqs.amazonaws.com", "SetQueueAttributes", json!({"queueUrl": "https://sqs/1/q", "attributes": {}}));
        assert_eq!(touched(&QUEUE, &set), ids(&["https://sqs/1/q"]));
        assert_eq!(touched(&QUEUE, &call("sqs.amazonaws.com", "TagQueue", json!({}))), Touched::Nothing, "a tagging call naming nothing of the kind");
        assert_eq!(touched(&EventMatch::NONE, &set), Touched::Nothing);
    }

    #[test]
    fn identifiers_name_resources_by_id_name_url_or_arn() {
        assert!(names("sg-1", "sg-1"));
        assert!(names("arn:aws:dynamodb:eu-west-1:1:table/sentry-orders-dev", "sentry-orders-dev"));
        assert!(names("https://sqs.eu-west-1.amazonaws.com/1/sentry-q-dev", "sentry-q-dev"));
        assert!(names("sentry-q-dev", "https://sqs.eu-west-1.amazonaws.com/1/sentry-q-dev"));
        assert!(!names("sentry-q-dev-dlq", "sentry-q-dev"), "a longer name is another resource");
        assert!(!names("q", "sentry-q"), "a suffix that is not a segment");
        assert!(!names("x", ""));
    }
}
