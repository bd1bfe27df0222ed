//! The generic reconcile engine: observe → diff → plan → apply, over every
//! registered [`Kind`], in dependency order.
//!
//! Kinds translate between the spec / AWS and a uniform model ([`Desired`],
//! [`Live`], fields of typed [`Value`]s); the engine owns ownership rules, diffing,
//! ordering, retries and the report.

pub mod apply;
pub mod focus;
pub mod narrowing;
pub mod order;
pub mod permissions;
pub mod plan;
mod planning;
pub mod policy;
pub mod references;
pub mod report;
pub mod value;

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::aws::AwsError;
use crate::spec::model::{DeletionPolicy, Tags};
use crate::spec::EnvSpec;

/// Tag naming the operator as the owner.
pub const TAG_MANAGED_BY: &str = "sentry:managed-by";
/// Value of [`TAG_MANAGED_BY`].
pub const MANAGED_BY: &str = "sentry-operator";
/// Tag naming the environment.
pub const TAG_ENV: &str = "sentry:env";
/// Tag naming the logical id in the spec.
pub const TAG_ID: &str = "sentry:id";
/// Tag recording the deletion policy, so it still applies once the spec forgets the resource.
pub const TAG_DELETION_POLICY: &str = "sentry:deletion-policy";

pub use value::Value;

/// Normalized field values of a resource, compared as [`Value`]s.
pub type Fields = BTreeMap<String, Value>;

/// Identifies a resource in the spec: its kind and logical id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ResourceKey {
    /// Kind name, e.g. `sqs.queue`.
    pub kind: &'static str,
    /// Logical id, e.g. `master-order`.
    pub id: String,
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.id)
    }
}

/// What the spec wants of one resource.
#[derive(Clone, Debug)]
pub struct Desired {
    /// Kind and logical id.
    pub key: ResourceKey,
    /// Physical name.
    pub name: String,
    /// Managed fields and their desired values.
    pub fields: Fields,
    /// Tags, ownership tags included.
    pub tags: Tags,
    /// Resources that must exist first.
    pub depends_on: Vec<ResourceKey>,
    /// Whether (and which) existing resource without ownership tags this one takes over.
    pub adopt: Option<Adoption>,
    /// Fields another controller owns once the resource exists (an autoscaler's
    /// desired count): set at creation, never compared or reverted afterwards.
    /// Field → who owns it.
    pub delegated: BTreeMap<String, &'static str>,
}

/// How a desired resource takes over one that exists without this
/// operator's tags (built by hand or by CloudFormation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// The resource of the same name (kinds whose names are unique).
    ByName,
    /// The resource with this identifier (its handle, or its name).
    ById(String),
}

impl Adoption {
    /// The identifier adopted, if adoption is by identifier.
    pub fn id(&self) -> Option<&str> {
        match self {
            Adoption::ById(id) => Some(id),
            Adoption::ByName => None,
        }
    }
}

impl ResourceKey {
    /// The key of `id` of `kind`.
    pub fn new(kind: &'static str, id: &str) -> Self {
        ResourceKey { kind, id: id.into() }
    }
}

impl Desired {
    /// Resource `id` of `kind`, named `name` and tagged `tags`, with no
    /// fields or dependencies yet.
    pub fn new(kind: &'static str, id: &str, name: impl Into<String>, tags: Tags) -> Self {
        Desired {
            key: ResourceKey::new(kind, id),
            name: name.into(),
            fields: Fields::new(),
            tags,
            depends_on: Vec::new(),
            adopt: None,
            delegated: BTreeMap::new(),
        }
    }

    /// Sets field `name` to `value`.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(name.into(), value.into());
        self
    }

    /// Adds the entry `key` = `value` to the family `name` (see [`Value::Map`]).
    pub fn with_entry(mut self, name: &str, key: impl Into<Value>, value: impl Into<Value>) -> Self {
        with_entry(&mut self.fields, name, key.into(), value.into());
        self
    }

    /// Sets field `name` to a [`reference`] to `id` of `kind`, which must
    /// therefore exist first.
    pub fn with_reference(self, name: &str, kind: &'static str, id: &str) -> Self {
        self.with(name, Value::Ref(reference(kind, id))).after(kind, id)
    }

    /// Sets field `name` to the set of references to `ids` of `kind`, which
    /// must therefore exist first.
    pub fn with_references<'a>(self, name: &str, kind: &'static str, ids: impl IntoIterator<Item = &'a str>) -> Self {
        let ids: Vec<&str> = ids.into_iter().collect();
        let d = self.with(name, Value::set_of(ids.iter().map(|id| Value::Ref(reference(kind, id)))));
        ids.into_iter().fold(d, |d, id| d.after(kind, id))
    }

    /// Hands field `name` to `owner` (e.g. "the autoscaler (ECS managed
    /// scaling)") once the resource exists: its value is the initial one only.
    pub fn delegate(mut self, name: &str, owner: &'static str) -> Self {
        self.delegated.insert(name.into(), owner);
        self
    }

    /// Makes `id` of `kind` a resource that must exist first.
    pub fn after(mut self, kind: &'static str, id: &str) -> Self {
        let key = ResourceKey::new(kind, id);
        if !self.depends_on.contains(&key) {
            self.depends_on.push(key);
        }
        self
    }

    /// The identifier the spec adopts this resource by, if it adopts by identifier.
    pub fn adopted_id(&self) -> Option<&str> {
        self.adopt.as_ref().and_then(Adoption::id)
    }

    /// Field `name` as the number the call `operation` sends (the spec's
    /// types keep it one): an error, never a default, when it is not.
    pub fn number<T: std::str::FromStr>(&self, name: &str, operation: &'static str) -> Result<T, AwsError> {
        let value = self.field(name);
        value.parse().map_err(|_| AwsError::unexpected(operation, format!("{}: {name} {value:?} is not a number", self.name)))
    }
}

/// What AWS has of one resource.
#[derive(Clone, Debug, Default)]
pub struct Live {
    /// Physical name.
    pub name: String,
    /// The identifier the kind's API calls take (queue URL, ARN, id).
    pub handle: String,
    /// Field values, normalized like [`Desired::fields`].
    pub fields: Fields,
    /// Tags.
    pub tags: Tags,
    /// Kind-private facts needed to act (association ids, ...); never diffed.
    pub meta: BTreeMap<String, String>,
    /// A state worth reporting that is not drift (a subscription waiting for
    /// its endpoint's confirmation): the plan's note on the resource.
    pub status: Option<String>,
}

/// A field value that refers to another resource of the spec, e.g.
/// `@ec2.vpc/vpc`. The engine turns live physical ids into references before
/// diffing, and references into physical ids before writing.
pub fn reference(kind: &str, id: &str) -> String {
    format!("@{kind}/{id}")
}

/// Reading the fields of a resource, desired or live.
pub trait FieldReader {
    /// The resource's fields.
    fn fields(&self) -> &Fields;

    /// The text of field `name`: empty when absent or not a single value.
    fn field(&self, name: &str) -> &str {
        self.fields().get(name).and_then(Value::as_text).unwrap_or("")
    }

    /// The text items of field `name` (a set's or list's; none when absent).
    fn items(&self, name: &str) -> Vec<String> {
        self.fields().get(name).map(|v| v.items().into_iter().filter_map(Value::as_text).map(str::to_string).collect()).unwrap_or_default()
    }

    /// Fields `names`, for the call `operation` to write once resolved: an
    /// error naming the first reference left in them (what it refers to
    /// was never created).
    fn resolved(&self, names: &[&str], operation: &'static str) -> Result<(), AwsError> {
        names.iter().filter_map(|n| self.fields().get(*n)).try_for_each(|v| v.resolved(operation).map(drop))
    }

    /// Field `name` as the plan shows it (empty when absent).
    #[cfg(test)]
    fn shown(&self, name: &str) -> String {
        self.fields().get(name).map(Value::to_string).unwrap_or_default()
    }
}

impl FieldReader for Desired {
    fn fields(&self) -> &Fields {
        &self.fields
    }
}

impl FieldReader for Live {
    fn fields(&self) -> &Fields {
        &self.fields
    }
}

/// Adds `key` = `value` to the family `name` of `fields`.
fn with_entry(fields: &mut Fields, name: &str, key: Value, value: Value) {
    let entries = fields.remove(name).map(|v| v.entries().to_vec()).unwrap_or_default();
    fields.insert(name.into(), Value::map_of(entries.into_iter().chain([(key, value)])));
}

/// The tags of `tags` a spec may set: neither AWS's own (`aws:…`) nor the operator's.
pub fn user_tags(tags: impl IntoIterator<Item = (String, String)>) -> Tags {
    tags.into_iter().filter(|(k, _)| !crate::spec::validate::is_reserved_tag(k) && !k.starts_with("sentry:") && k != TAG_MANAGED_BY).collect()
}

/// Who owns a live resource, according to its tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Tagged by another tool that says it manages the resource (its `sentry:managed-by`).
    Foreign(String),
    /// Tagged by this operator.
    Managed {
        /// `sentry:env`.
        env: String,
        /// `sentry:id`.
        id: String,
        /// `sentry:deletion-policy`.
        deletion_policy: DeletionPolicy,
    },
    /// No ownership tags: someone else's.
    Unmanaged,
}

impl Live {
    /// Sets field `name` to what AWS reported.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(name.into(), value.into());
        self
    }

    /// Sets field `name` to a physical id of another resource (see [`Value::Handle`]).
    pub fn with_handle(self, name: &str, handle: impl Into<String>) -> Self {
        self.with(name, Value::handle(handle))
    }

    /// Adds the entry `key` = `value` to the family `name` (see [`Value::Map`]).
    pub fn with_entry(mut self, name: &str, key: impl Into<Value>, value: impl Into<Value>) -> Self {
        with_entry(&mut self.fields, name, key.into(), value.into());
        self
    }

    /// The kind-private fact `key` observe recorded (an ARN, a client id),
    /// which the call `operation` needs: an error when it is missing.
    pub fn meta(&self, key: &str, operation: &'static str) -> Result<&str, AwsError> {
        self.meta.get(key).map(String::as_str).ok_or_else(|| AwsError::unexpected(operation, format!("{} was observed without its {key}", self.name)))
    }

    /// Whether the tags say this resource is `id` of environment `env`.
    pub fn is_owned_as(&self, env: &str, id: &str) -> bool {
        matches!(self.ownership(), Ownership::Managed { env: e, id: i, .. } if e == env && i == id)
    }

    /// Whether this resource carries the ownership tags `desired` is created
    /// with: the resource an earlier attempt of the same create made.
    pub fn carries_ownership_of(&self, desired: &Desired) -> bool {
        [TAG_MANAGED_BY, TAG_ENV, TAG_ID].iter().all(|k| desired.tags.contains_key(*k) && self.tags.get(*k) == desired.tags.get(*k))
    }

    /// Whether a kind whose names are unique in the account must see this
    /// resource: the spec names it (`desired`), or environment `env` owns it
    /// (so that one removed from the spec is orphaned or deleted).
    pub fn is_named_or_owned(&self, env: &str, desired: &[Desired]) -> bool {
        desired.iter().any(|d| d.name == self.name) || self.is_owned_by(env)
    }

    /// Whether the tags say this resource belongs to environment `env` (any logical id).
    pub fn is_owned_by(&self, env: &str) -> bool {
        matches!(self.ownership(), Ownership::Managed { env: e, .. } if e == env)
    }

    /// Reads ownership from the tags.
    pub fn ownership(&self) -> Ownership {
        match self.tags.get(TAG_MANAGED_BY) {
            None => return Ownership::Unmanaged,
            Some(owner) if owner != MANAGED_BY => return Ownership::Foreign(owner.clone()),
            Some(_) => {}
        }
        Ownership::Managed {
            env: self.tags.get(TAG_ENV).cloned().unwrap_or_default(),
            id: self.tags.get(TAG_ID).cloned().unwrap_or_default(),
            deletion_policy: match self.tags.get(TAG_DELETION_POLICY).map(String::as_str) {
                Some("delete") => DeletionPolicy::Delete,
                _ => DeletionPolicy::Retain,
            },
        }
    }
}

/// The tags every resource the operator creates carries.
pub fn ownership_tags(env: &EnvSpec, id: &str, policy: DeletionPolicy, extra: &Tags) -> Tags {
    let mut tags = env.spec.tags.clone();
    tags.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    tags.insert(TAG_MANAGED_BY.into(), MANAGED_BY.into());
    tags.insert(TAG_ENV.into(), env.env.clone());
    tags.insert(TAG_ID.into(), id.into());
    tags.insert(TAG_DELETION_POLICY.into(), policy.as_str().into());
    tags
}

/// The reads of one pass that several kinds share (the environment's security
/// groups, its VPC, the NAT gateways): each is made once, by whichever kind
/// asks first, and the others get the same answer. A new pass starts empty.
#[derive(Default)]
pub struct ReadCache {
    entries: std::sync::Mutex<HashMap<&'static str, Arc<SharedRead>>>,
    narrowed: bool,
    named: std::collections::BTreeMap<&'static str, std::collections::BTreeSet<String>>,
    adopting: std::sync::OnceLock<std::collections::BTreeSet<String>>,
}

impl ReadCache {
    /// The cache of a pass narrowed by `focus`: a narrowed pass (an event's)
    /// does not use reads that may lag behind a change just made (the
    /// tagging API), and a kind covered only in part may read just the
    /// resources named ([`ReadCache::named`]).
    pub fn for_pass(focus: &focus::Focus) -> Self {
        ReadCache { narrowed: focus.kinds.is_some(), named: focus.resources.clone(), ..ReadCache::default() }
    }

    /// Records the physical ids (or names) the pass adopts: the first call counts.
    pub fn set_adopting(&self, ids: std::collections::BTreeSet<String>) {
        // A second call changes nothing: the set is the pass's, known before any read.
        let _ = self.adopting.set(ids);
    }

    /// Whether the pass adopts the resource of physical id (or name) `id`:
    /// a kind that reads only what the environment owns reads it too.
    pub fn adopts(&self, id: &str) -> bool {
        self.adopting.get().is_some_and(|ids| ids.contains(id))
    }

    /// Whether the pass covers only some kinds.
    pub fn is_narrowed(&self) -> bool {
        self.narrowed
    }

    /// The resources of `kind` the pass covers, by identifier, when it covers
    /// only those (`None`: the whole kind). A kind that reads one resource at
    /// a time may then read only the desired resources they name; the pass
    /// keeps no step of the others.
    pub fn named(&self, kind: &str) -> Option<&std::collections::BTreeSet<String>> {
        self.named.get(kind)
    }

    /// The answer of the read named `key` if a kind already made it in this
    /// pass (for checks that run after observation and make no calls).
    pub fn peek<T: Any + Send + Sync>(&self, key: &'static str) -> Option<Arc<T>> {
        let cell = self.entries.lock().ok()?.get(key)?.clone();
        cell.get()?.clone().downcast::<T>().ok()
    }
}

/// One shared read: made once, its answer kept for the rest of the pass.
type SharedRead = tokio::sync::OnceCell<Arc<dyn Any + Send + Sync>>;

impl ReadCache {
    /// The answer of the read named `key` (e.g. `EC2.DescribeSecurityGroups(owned)`),
    /// made with `read` if no kind made it yet in this pass. A failed read is
    /// not kept: the next kind to ask tries again.
    pub async fn get<T, F, Fut>(&self, key: &'static str, read: F) -> Result<Arc<T>, AwsError>
    where
        T: Any + Send + Sync,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, AwsError>>,
    {
        let cell = match self.entries.lock() {
            Ok(mut entries) => entries.entry(key).or_default().clone(),
            Err(_) => Arc::default(),
        };
        let value = cell.get_or_try_init(|| async { read().await.map(|v| Arc::new(v) as Arc<dyn Any + Send + Sync>) }).await?;
        value.clone().downcast::<T>().map_err(|_| AwsError::unexpected("engine", format!("the shared read {key} was made with another type")))
    }
}

/// Whether a pass only plans or also writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Observe and plan; never write.
    Plan,
    /// Observe, plan and apply.
    Apply,
}

/// Which passes reconcile a kind (narrowest first: a pass of one scope
/// covers the kinds of the narrower ones too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// What the whitelist guard reads: the Elastic IPs, the NAT gateways
    /// holding them and the routes through those (the only kinds of the fast
    /// pass when events announce every other change).
    Whitelist,
    /// Every pass, the daemon's fast one included (the whitelist guard's networking).
    Fast,
    /// Full passes only.
    Full,
}

/// Where a kind sits in the estate's architecture: the layers of the seeds'
/// diagrams, by which the graph groups resources and the plan's summary its kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Layer {
    /// VPC, subnets, gateways, the whitelist's addresses, routes, security groups.
    Networking,
    /// ECS, its EC2 capacity, scaling, the load balancer, images.
    Compute,
    /// Queues, tables, Redis.
    DataMessaging,
    /// Identity, keys, secrets, roles, logs, alarms and notifications.
    SecurityMonitoring,
}

impl Layer {
    /// Every layer, in the seeds' order.
    pub const ALL: [Layer; 4] = [Layer::Networking, Layer::Compute, Layer::DataMessaging, Layer::SecurityMonitoring];

    /// Its title, e.g. `Layer 1: Networking`.
    pub fn title(self) -> &'static str {
        match self {
            Layer::Networking => "Layer 1: Networking",
            Layer::Compute => "Layer 2: Compute",
            Layer::DataMessaging => "Layer 3: Data & Messaging",
            Layer::SecurityMonitoring => "Layer 4: Security & Monitoring",
        }
    }
}

/// What a finding is about: its report section and its alert metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FindingClass {
    /// The state of one Elastic IP whitelist entry.
    Whitelist,
    /// A security setting found weakened (MFA switched off).
    SecurityDrift,
}

impl FindingClass {
    /// The title of the report section that lists findings of this class.
    pub fn title(self) -> &'static str {
        match self {
            FindingClass::Whitelist => "Elastic IP whitelist (the exchanges trust these addresses)",
            FindingClass::SecurityDrift => "Security drift (MFA)",
        }
    }

    /// The CloudWatch metric a violation of this class counts in.
    pub fn metric(self) -> &'static str {
        match self {
            FindingClass::Whitelist => "WhitelistViolation",
            FindingClass::SecurityDrift => "SecurityDrift",
        }
    }
}

/// Something a kind's review of the plan reports beyond the plan's changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What it is about.
    pub class: FindingClass,
    /// The resource concerned.
    pub resource: ResourceKey,
    /// The field concerned, if one.
    pub field: Option<String>,
    /// Its desired value, if known.
    pub desired: Option<String>,
    /// Its live value, if known.
    pub live: Option<String>,
    /// Whether an invariant is broken (alerted), rather than a state reported.
    pub violation: bool,
    /// One line for the report.
    pub message: String,
    /// Facts the line states, by name, for pages that lay them out (a
    /// whitelist entry's `address` and `attachedTo`); not in the JSON report.
    #[serde(skip)]
    pub facts: BTreeMap<&'static str, String>,
}

/// What a kind's review of the plan found.
#[derive(Clone, Debug, Default)]
pub struct Review {
    /// Problems that must stop the pass before any write.
    pub errors: Vec<String>,
    /// Broken invariants a human must handle (exit 3).
    pub violations: Vec<String>,
    /// Typed findings, rendered in the report and alerted when violations.
    pub findings: Vec<Finding>,
}

/// One field that differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// Field (or `tags.<key>`; for an entry of a family, the family's name and the entry's key).
    pub field: String,
    /// For an entry of a family ([`Value::Map`]), its key.
    #[serde(skip)]
    pub entry: Option<Value>,
    /// Live value; `None` when absent.
    pub live: Option<Value>,
    /// Desired value; `None` when it should be absent.
    pub desired: Option<Value>,
}

impl FieldChange {
    /// A change of field `field` from `live` to `desired`.
    pub fn of(field: &str, live: Option<Value>, desired: Option<Value>) -> FieldChange {
        FieldChange { field: field.into(), entry: None, live, desired }
    }

    /// The live text (`None` when absent or not a single value).
    pub fn live_text(&self) -> Option<&str> {
        self.live.as_ref().and_then(Value::as_text)
    }

    /// The desired text (`None` when absent or not a single value).
    pub fn desired_text(&self) -> Option<&str> {
        self.desired.as_ref().and_then(Value::as_text)
    }

    /// The text of the entry of a family this change is to, which the call
    /// `operation` needs: an error for a change of a whole field.
    pub fn entry_text(&self, operation: &'static str) -> Result<&str, AwsError> {
        self.entry
            .as_ref()
            .map(|e| e.resolved(operation))
            .transpose()?
            .and_then(Value::as_text)
            .ok_or_else(|| AwsError::unexpected(operation, format!("{} is no entry of a family", self.field)))
    }

    /// The words of the entry of a family this change is to (a rule's), which the call `operation` needs.
    pub fn entry_words(&self, operation: &'static str) -> Result<Vec<&str>, AwsError> {
        match self.entry.as_ref().map(|e| e.resolved(operation)).transpose()? {
            Some(Value::Phrase(words)) => Ok(words.iter().filter_map(Value::as_text).collect()),
            _ => Err(AwsError::unexpected(operation, format!("{} is no rule", self.field))),
        }
    }

    /// The changes of `field` from `live` to `desired`: one per entry that
    /// differs for a family, else one.
    pub fn between(field: &str, live: Option<&Value>, desired: Option<&Value>) -> Vec<FieldChange> {
        let family = |v: Option<&Value>| v.is_some_and(|v| matches!(v, Value::Map(_)));
        if !family(live) && !family(desired) {
            return if live == desired { Vec::new() } else { vec![FieldChange::of(field, live.cloned(), desired.cloned())] };
        }
        let (live, desired) = (live.map_or(&[][..], Value::entries), desired.map_or(&[][..], Value::entries));
        let find = |entries: &[(Value, Value)], key: &Value| entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let keys = desired.iter().map(|(k, _)| k).chain(live.iter().map(|(k, _)| k).filter(|k| find(desired, k).is_none()));
        keys.filter_map(|key| {
            let (l, d) = (find(live, key), find(desired, key));
            (l != d).then(|| FieldChange { field: format!("{field}{key}"), entry: Some(key.clone()), live: l, desired: d })
        })
        .collect()
    }
}

/// What differs between desired and live: fields, and tags to add or change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Delta {
    /// Fields whose live value differs.
    pub fields: Vec<FieldChange>,
    /// Tags to set (missing or with another value).
    pub tags: Tags,
}

impl Delta {
    /// Nothing differs.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.tags.is_empty()
    }
}

/// How a live resource is recognised as the one a desired resource describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matching {
    /// The same physical name (names unique in the account: queues, tables, clusters).
    Name,
    /// This environment's `sentry:id` tag (EC2, where a name is only a tag).
    OwnershipTag,
    /// The kind's own [`Kind::matches`].
    Custom,
}

/// What becomes of a change to an immutable field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnImmutableChange {
    /// BLOCKED: reported with the reason, never made (stateful resources).
    Block,
    /// The resource is deleted and created anew (stateless resources).
    Replace,
    /// A new version is created and the old one kept (ECS task definitions).
    NewVersion,
}

/// A kind's rules: what the engine needs to know of a kind besides its I/O.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// Kind name, e.g. `sqs.queue`.
    pub kind: &'static str,
    /// Its layer of the architecture.
    pub layer: Layer,
    /// How live resources are matched to desired ones.
    pub matching: Matching,
    /// Which passes reconcile the kind.
    pub scope: Scope,
    /// Fields AWS cannot change in place.
    pub immutable: &'static [&'static str],
    /// What a change to one of them becomes.
    pub on_immutable_change: OnImmutableChange,
    /// Fields set at creation but never compared (AWS does not report them back).
    pub create_only: &'static [&'static str],
    /// The families ([`Value::Map`] fields) the kind owns exhaustively: a live
    /// entry the spec does not list is removed (e.g. security-group rules).
    pub exclusive: &'static [&'static str],
    /// Which API calls touch the kind's resources, and where they name them.
    pub events: focus::EventMatch,
    /// The resource types the kind stands for, CloudFormation's (`AWS::EC2::VPC`)
    /// and Terraform's (`aws_vpc`): `import` maps them to it.
    pub resource_types: &'static [&'static str],
    /// Resource types described as part of the kind's resources, each with
    /// how (`AWS::EC2::Route`, `aws_route`: "a route of its route table").
    pub resource_parts: &'static [(&'static str, &'static str)],
    /// What the kind's calls need of IAM.
    pub permissions: permissions::Permissions,
    /// Whether `import` renders the kind's resources as spec entries ([`Kind::to_spec`]).
    pub imported: bool,
    /// The kind whose stack (or state) resources `import` reads this kind's
    /// from, under the same ids (a security group's rules: the group).
    pub imported_with: Option<&'static str>,
}

impl Rules {
    /// The defaults for `kind` of `layer`: matched by name, reconciled by full
    /// passes, no immutable, create-only or exclusive fields, no API call
    /// mapped to the kind, no resource type and no permission.
    pub const fn new(kind: &'static str, layer: Layer) -> Self {
        Rules {
            kind,
            layer,
            matching: Matching::Name,
            scope: Scope::Full,
            immutable: &[],
            on_immutable_change: OnImmutableChange::Block,
            create_only: &[],
            exclusive: &[],
            events: focus::EventMatch::NONE,
            resource_types: &[],
            resource_parts: &[],
            permissions: permissions::Permissions::NONE,
            imported: false,
            imported_with: None,
        }
    }

    /// The same rules for a kind standing for the CloudFormation and Terraform `types`.
    pub const fn stands_for(self, types: &'static [&'static str]) -> Self {
        Rules { resource_types: types, ..self }
    }

    /// The same rules for a kind whose resources describe the CloudFormation
    /// and Terraform types `parts` (each with how).
    pub const fn with_parts(self, parts: &'static [(&'static str, &'static str)]) -> Self {
        Rules { resource_parts: parts, ..self }
    }

    /// The same rules for a kind whose calls need `permissions`.
    pub const fn needs(self, permissions: permissions::Permissions) -> Self {
        Rules { permissions, ..self }
    }

    /// The same rules for a kind `import` renders as spec entries.
    pub const fn imported(self) -> Self {
        Rules { imported: true, ..self }
    }

    /// The same rules for a kind `import` renders from the CloudFormation
    /// resources of kind `leader` (a security group's rules from the group).
    pub const fn imported_with(self, leader: &'static str) -> Self {
        Rules { imported: true, imported_with: Some(leader), ..self }
    }
}

/// What `import` knows when a kind names or renders a resource it observed
/// ([`Kind::import_id`], [`Kind::to_spec`]).
pub struct Importing<'a> {
    /// The environment.
    pub env: &'a str,
    /// The id each imported resource got so far, by kind and live name (a
    /// redrive policy names its dead-letter queue by name).
    pub named: &'a BTreeMap<(&'static str, String), String>,
}

impl Importing<'_> {
    /// The spec's `name` of resource `id` that lives as `live_name`: none
    /// when that is its default name (`sentry-<id>-<env>`).
    pub fn explicit_name(&self, id: &str, live_name: &str) -> Option<String> {
        (crate::spec::physical_name(None, id, self.env) != live_name).then(|| live_name.to_string())
    }

    /// The id of the imported resource of `kind` named `name`.
    pub fn id_named(&self, kind: &'static str, name: &str) -> Option<&str> {
        self.named.get(&(kind, name.to_string())).map(String::as_str)
    }
}

/// What [`Kind::to_spec`] made of a resource.
#[derive(Debug, Default)]
pub struct Rendering {
    /// What the entry does not say of the resource.
    pub unsaid: Vec<String>,
    /// Whether the entry itself names the resource (a pinned whitelist
    /// address), so that it needs no `adopt` entry.
    pub named_by_entry: bool,
}

impl Rendering {
    /// An entry that says everything, adopted through an `adopt` entry.
    pub fn whole() -> Rendering {
        Rendering::default()
    }

    /// An entry that does not say `unsaid` (if any).
    pub fn without(unsaid: impl IntoIterator<Item = String>) -> Rendering {
        Rendering { unsaid: unsaid.into_iter().collect(), ..Rendering::default() }
    }
}

/// One kind of AWS resource: translates the spec into [`Desired`] resources,
/// reads AWS into [`Live`] ones, and performs the writes the engine decides on.
/// Everything else the engine needs is the kind's [`Rules`].
///
/// Observe never writes. Create must tolerate "already exists" and delete
/// must tolerate "already gone".
#[async_trait]
pub trait Kind: Send + Sync {
    /// The kind's rules.
    fn rules(&self) -> Rules;

    /// Kind name, e.g. `sqs.queue`.
    fn name(&self) -> &'static str {
        self.rules().kind
    }

    /// Whether `live` is the resource `desired` describes, by the rules'
    /// [`Matching`], or the resource `desired` adopts by identifier; kinds
    /// with [`Matching::Custom`] override this.
    fn matches(&self, env: &str, desired: &Desired, live: &Live) -> bool {
        let adopted = desired.adopted_id().is_some_and(|id| id == live.handle || id == live.name);
        adopted
            || match self.rules().matching {
                Matching::Name => desired.name == live.name,
                Matching::OwnershipTag => live.is_owned_as(env, &desired.key.id),
                Matching::Custom => false,
            }
    }

    /// Kind-specific checks of a finished plan, run before anything is written;
    /// `reads` holds the shared reads the pass's observation made.
    fn review(&self, _env: &EnvSpec, _steps: &[&plan::Step], _reads: &ReadCache) -> Review {
        Review::default()
    }

    /// Public SSM parameters [`Kind::desired`] reads (the ECS-optimized AMI):
    /// whoever runs the pass resolves them first, into [`EnvSpec::parameter`].
    fn parameters(&self) -> &'static [&'static str] {
        &[]
    }

    /// The resources of this kind the spec wants.
    fn desired(&self, env: &EnvSpec) -> Vec<Desired>;

    /// `import`: renders `live` (observed for import, its references in spec
    /// form) as spec entry `id`, written into `spec`, so that the plan over it
    /// adopts the resource with no change but the ownership tags. `Ok` holds
    /// what the entry does not say of the resource; `Err` why the spec cannot
    /// describe it at all. Kinds that implement it say so in their rules
    /// ([`Rules::imported`]).
    fn to_spec(&self, _id: &str, _live: &Live, _spec: &mut crate::spec::model::Spec, _importing: &Importing) -> Result<Rendering, String> {
        Err(format!("{} is not imported yet: write it in the spec, with an adopt entry", self.name()))
    }

    /// `import`: the id the resource `live` gets in the spec, `proposed`
    /// made of its logical id (kinds with fixed ids, or ids their resource
    /// decides, such as a route table's, say otherwise).
    fn import_id(&self, _live: &Live, proposed: &str, _importing: &Importing) -> String {
        proposed.to_string()
    }

    /// `import`, once every kind rendered: the entries of this kind that
    /// cannot stand as rendered (a load balancer none of whose listeners was
    /// found) taken out of `spec`, each with the resources (kind, id) whose
    /// adoption goes with it and why.
    fn unfinished(&self, _spec: &mut crate::spec::model::Spec) -> Vec<(Vec<(&'static str, String)>, String)> {
        Vec::new()
    }

    /// Reads every live resource of this kind that could be the operator's
    /// (batched: one list pass, not one call per desired resource where the
    /// API allows). A read another kind also needs goes through `reads`, so
    /// the pass makes it once.
    async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError>;

    /// Creates the resource, tagged at creation; returns its handle.
    /// `token` is unique to this create and the same across its retries, for
    /// APIs that take a ClientToken (a token derived from the resource alone
    /// would be unsafe: AWS answers a repeated token with the original
    /// resource, even one deleted since). `reads` is the pass's read cache.
    async fn create(&self, desired: &Desired, token: &str, reads: &ReadCache) -> Result<String, AwsError>;

    /// Applies `delta` to the live resource.
    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError>;

    /// Deletes the live resource; `reads` is the pass's read cache.
    async fn delete(&self, live: &Live, reads: &ReadCache) -> Result<(), AwsError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::ErrorClass;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_shared_read_is_made_once_per_pass_and_a_failed_one_is_retried() {
        let reads = ReadCache::default();
        let calls = AtomicU32::new(0);
        let read = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok::<_, AwsError>(vec!["sg-1".to_string()])
        };
        let (a, b) = tokio::join!(reads.get("groups", read), reads.get("groups", read));
        assert_eq!((a.ok(), b.ok().map(|v| v.len())), (Some(Arc::new(vec!["sg-1".to_string()])), Some(1)));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "two kinds, one request");

        let failing =
            || async { Err::<u8, _>(AwsError { operation: "EC2.DescribeVpcs", class: ErrorClass::Throttled, code: None, message: "slow down".into() }) };
        assert!(reads.get("vpcs", failing).await.is_err());
        assert_eq!(reads.get("vpcs", || async { Ok::<u8, AwsError>(7) }).await.ok().as_deref(), Some(&7), "a failure is not kept");
        assert!(reads.get::<String, _, _>("groups", || async { Ok(String::new()) }).await.is_err(), "another type under the same key is an error");
        assert!(ReadCache::default().get("groups", || async { Ok::<u8, AwsError>(1) }).await.is_ok(), "a new pass starts empty");
    }
}
