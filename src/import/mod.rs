//! `import`: reads the estate an environment already has (built with
//! CloudFormation, stacks `sentry-*-<env>` by default; with Terraform, from
//! its state; or by hand) and writes
//! the spec that adopts all of it in place: the live names and settings, every
//! whitelist address pinned, and one `adopt` entry per resource, so that
//! `plan` over it shows adoptions only: nothing created, replaced or deleted.
//!
//! Read-only: it never writes to AWS. Discovery goes through the stacks'
//! resources (logical id → physical id), since CloudFormation's own tags are
//! not on every resource. Resources made outside the stacks are found by
//! name (`…-<env>`, `…_<env>`, `…-<env>.fifo`): queues, tables, clusters, log
//! groups under `/ecs/`, Redis replication groups and Cognito user pools.

pub mod bind;
mod discover;
mod services;
mod terraform;

use std::collections::{BTreeMap, BTreeSet};

use aws_config::SdkConfig;
use serde::Serialize;

use crate::aws::{AwsError, AwsResult, CallCounter};
use crate::engine::permissions::{Grant, Permissions};
use crate::engine::references::ReferenceMap;
use crate::engine::{Adoption, Desired, Importing, Kind, Matching, ReadCache, ResourceKey, Rules};
use crate::kinds::read::TagReads;
use crate::kinds::{cognito, ec2, elasticache};
use crate::sdk_client;
use crate::spec::model::{AdoptTarget, Spec, Tags};
use crate::spec::EnvSpec;

/// What this module's calls need of IAM (`sentry-operator iam-policy` gathers it).
#[rustfmt::skip]
pub const PERMISSIONS: Permissions = Permissions {
    reads: &["ec2:DescribeVpcs", "ec2:DescribeVpcAttribute", "ec2:DescribeSubnets", "ec2:DescribeAddresses", "ec2:DescribeNatGateways", "ec2:DescribeRouteTables", "ec2:DescribeSecurityGroups", "ec2:DescribeVpcEndpoints", "ec2:DescribeFlowLogs", "ec2:DescribeInternetGateways", "ec2:DescribeNetworkAcls", "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeRules", "tag:GetResources", "sqs:ListQueues", "dynamodb:ListTables", "elasticache:DescribeReplicationGroups", "elasticache:DescribeCacheSubnetGroups", "cognito-idp:ListUserPools", "ecs:DescribeClusters", "logs:DescribeLogGroups", "elasticache:DescribeCacheClusters", "ecs:ListClusters"],
    grants: &[
        Grant::allow("ReadCloudFormationStacksForAdoptionAndImport", &["cloudformation:DescribeStacks", "cloudformation:ListStackResources"], &["*"]),
        Grant::allow("QueueWrites", &["sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:ListQueueTags"], &["arn:aws:sqs:*:*:sentry-*"]),
        Grant::allow("DataWrites", &["dynamodb:DescribeTable", "dynamodb:DescribeContinuousBackups", "dynamodb:DescribeTimeToLive", "dynamodb:ListTagsOfResource"], &["arn:aws:dynamodb:*:*:table/sentry-*"]),
        Grant::allow("IdentityWrites", &["cognito-idp:DescribeUserPool", "cognito-idp:GetUserPoolMfaConfig", "cognito-idp:ListGroups", "cognito-idp:ListUserPoolClients", "cognito-idp:DescribeUserPoolClient"], &["*"]),
    ],
};

/// What `import` found and made of it.
#[derive(Debug)]
pub struct Imported {
    /// The spec that adopts the estate.
    pub spec: Spec,
    /// What was found, mapped, left out and why.
    pub summary: Summary,
}

/// The summary `import` prints.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The stacks read (or the Terraform state).
    pub stacks: Vec<String>,
    /// Resources found (stack resources, and those found by name).
    pub found: usize,
    /// Spec resources made of them: `kind/id ← physical id`.
    pub mapped: Vec<String>,
    /// Resources the spec language cannot describe, with why.
    pub not_representable: Vec<String>,
    /// Resources left out on purpose (represented by another, or not the operator's), with why.
    pub skipped: Vec<String>,
}

/// Why `import` could not run.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// An AWS read failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The stacks or resources are not something a spec can be made of.
    #[error("{0}")]
    Input(String),
}

/// One resource of a stack.
#[derive(Debug, Clone)]
pub struct StackResource {
    /// The stack's name.
    pub stack: String,
    /// Its logical id in the template.
    pub logical_id: String,
    /// Its physical id (an id, a name, a URL or an address, by type).
    pub physical_id: String,
    /// Its type: CloudFormation's (`AWS::EC2::VPC`) or Terraform's (`aws_vpc`).
    pub resource_type: String,
}

/// What the operator makes of a CloudFormation or Terraform resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// A resource of this kind.
    Kind(&'static str),
    /// Part of another resource, described with it (a route with its table).
    PartOf(&'static str),
    /// No kind describes it, or its kind is not imported yet, with why.
    NotRepresentable(String),
}

/// The kinds whose sections `import` still builds by hand (Redis and the
/// user pool, found by name); every other kind whose rules say it is
/// [`Rules::imported`] renders its own entries ([`Kind::to_spec`]).
const BY_HAND: &[&str] =
    &[elasticache::replication_group::KIND, elasticache::subnet_group::KIND, cognito::user_pool::KIND, cognito::group::KIND, cognito::app_client::KIND];

/// The operator's mapping of CloudFormation or Terraform resource type `resource_type`,
/// from what the kinds (`kinds`, their rules) declare they stand for.
pub fn mapping(resource_type: &str, kinds: &[Rules]) -> Mapping {
    if let Some(kind) = kinds.iter().find(|k| k.resource_types.contains(&resource_type)) {
        return if kind.imported || BY_HAND.contains(&kind.kind) {
            Mapping::Kind(kind.kind)
        } else {
            Mapping::NotRepresentable(format!("{} is not imported yet: write it in the spec, with an adopt entry", kind.kind))
        };
    }
    match kinds.iter().flat_map(|k| k.resource_parts).find(|(t, _)| *t == resource_type) {
        Some((_, part)) => Mapping::PartOf(part),
        None => Mapping::NotRepresentable("no kind of the operator describes this type".into()),
    }
}

/// Whether `name` matches `glob` (`*` matches any run of characters).
pub fn glob_matches(glob: &str, name: &str) -> bool {
    let parts: Vec<&str> = glob.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return glob == name;
    }
    if !name.starts_with(first) || !name[first.len()..].ends_with(last) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// A readable spec id from a CloudFormation logical id: words in kebab case,
/// with the type's own word dropped (`PublicSubnetA` → `public-a`,
/// `AlbSecurityGroup` → `alb`, `MasterOrderQueue` → `master-order`).
pub fn spec_id(logical_id: &str, type_words: &[&str]) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let chars: Vec<char> = logical_id.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let boundary = c.is_ascii_uppercase()
            && !word.is_empty()
            && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit() || chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase()));
        let digit_boundary = c.is_ascii_digit() && chars.get(i.wrapping_sub(1)).is_some_and(|p| p.is_ascii_alphabetic());
        if (boundary || digit_boundary || !c.is_ascii_alphanumeric()) && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        if c.is_ascii_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let kept: Vec<String> = words.iter().filter(|w| !type_words.contains(&w.as_str())).cloned().collect();
    let chosen = if kept.is_empty() { words } else { kept };
    chosen.join("-")
}

/// `id`, or `id-2`, `id-3`, … if `taken` has it; the result is taken.
fn unique(id: String, taken: &mut BTreeSet<String>) -> String {
    let mut candidate = id.clone();
    let mut n = 2;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{id}-{n}");
        n += 1;
    }
    candidate
}

/// What building the spec shares: the environment, the resources found by
/// kind, the adoption entries and the summary so far.
struct Context {
    env: String,
    /// The rules of every kind.
    kinds: Vec<Rules>,
    /// The imported subnets' tiers, by subnet id (`subnet-…`).
    tiers: Option<Vec<(String, crate::spec::model::Tier)>>,
    by_kind: BTreeMap<&'static str, Vec<StackResource>>,
    adopt: BTreeMap<String, AdoptTarget>,
    summary: Summary,
}

impl Context {
    /// The stack resources of `kind`.
    fn of(&self, kind: &str) -> Vec<StackResource> {
        self.by_kind.get(kind).cloned().unwrap_or_default()
    }

    /// Records that spec resource `kind/id` adopts `physical` (by `target`).
    fn adopt(&mut self, kind: &str, id: &str, physical: &str, target: AdoptTarget) {
        self.summary.mapped.push(format!("{kind}/{id} <- {physical}"));
        self.adopt.insert(format!("{kind}/{id}"), target);
    }

    /// Records a resource the spec cannot describe.
    fn not_representable(&mut self, what: String) {
        self.summary.not_representable.push(what);
    }
}

/// Sorts stack resources by what the operator makes of them; a resource that
/// two stacks claim is an error (it could be adopted twice).
fn sort(ctx: &mut Context, resources: Vec<StackResource>) -> Result<(), ImportError> {
    let mut claimed: BTreeMap<(String, String), String> = BTreeMap::new();
    for r in resources {
        let claim = (r.resource_type.clone(), r.physical_id.clone());
        // Parts (routes, associations) may share a physical id; resources may not.
        let mapped = mapping(&r.resource_type, &ctx.kinds);
        let resource = matches!(mapped, Mapping::Kind(_));
        if let Some(other) = claimed.insert(claim, format!("{} {}", r.stack, r.logical_id)).filter(|_| resource) {
            return Err(ImportError::Input(format!(
                "{} {} is claimed by two stacks: {other} and {} {}; a resource can be adopted once",
                r.resource_type, r.physical_id, r.stack, r.logical_id
            )));
        }
        match mapped {
            Mapping::Kind(kind) => ctx.by_kind.entry(kind).or_default().push(r),
            Mapping::PartOf(what) => ctx.summary.skipped.push(format!("{} {} ({}): described as {what}", r.resource_type, r.logical_id, r.stack)),
            Mapping::NotRepresentable(why) => ctx.not_representable(format!("{} {} ({}): {why}", r.resource_type, r.logical_id, r.stack)),
        }
    }
    Ok(())
}

/// Adoption by identifier.
fn by_id(id: &str) -> AdoptTarget {
    AdoptTarget { id: Some(id.to_string()), ..AdoptTarget::default() }
}

/// The words of a CloudFormation or Terraform type a logical id need not
/// repeat (`AWS::DynamoDB::Table`: `dynamodb`, `table`; `aws_route_table`:
/// `route`, `table`).
fn type_words(resource_type: &str) -> Vec<String> {
    if let Some(words) = resource_type.strip_prefix("aws_") {
        return words.split('_').map(str::to_string).collect();
    }
    let mut parts = resource_type.split("::").skip(1);
    let service = parts.next().unwrap_or_default().to_ascii_lowercase();
    let resource = spec_id(parts.next().unwrap_or_default(), &[]);
    std::iter::once(service).chain(resource.split('-').map(str::to_string)).collect()
}

/// The name a physical id stands for: a load balancer's or a target group's
/// in its ARN, the last part of a URL (a queue's) or of another ARN, else
/// the id itself.
fn physical_name_of(physical_id: &str) -> &str {
    let resource = physical_id.strip_prefix("arn:").and_then(|arn| arn.splitn(5, ':').nth(4)).map(|r| r.split('/').collect::<Vec<_>>());
    if let Some(["targetgroup", name, _] | ["loadbalancer", "app" | "net", name, _]) = resource.as_deref() {
        return name;
    }
    if physical_id.starts_with("https://") || physical_id.starts_with("http://") || physical_id.starts_with("arn:") {
        physical_id.rsplit('/').next().unwrap_or(physical_id)
    } else {
        physical_id
    }
}

/// A name without what it shares with every name of environment `env`:
/// its path, `sentry-`, the environment and `.fifo`.
fn name_stem(name: &str, env: &str) -> String {
    let stem = name.strip_suffix(".fifo").unwrap_or(name);
    let stem = stem.strip_suffix(&format!("-{env}")).or_else(|| stem.strip_suffix(&format!("_{env}"))).unwrap_or(stem);
    let stem = stem.rsplit(['/', ':']).next().unwrap_or(stem);
    stem.strip_prefix("sentry-").unwrap_or(stem).to_string()
}

/// The spec id of a stack resource: its logical id in words, without its
/// type's words, or its name's stem when the logical id is only those.
fn import_id(r: &StackResource, env: &str) -> String {
    let words = type_words(&r.resource_type);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let id = spec_id(&r.logical_id, &words);
    if id.split('-').all(|w| words.contains(&w)) {
        return spec_id(&name_stem(physical_name_of(&r.physical_id), env), &[]);
    }
    // A letter or a digit alone reads better with the type's first word it followed (`NatGatewayA`: `nat-a`).
    let all = spec_id(&r.logical_id, &[]);
    match all.split('-').find(|w| words.contains(w)) {
        Some(first) if id.len() <= 2 && all.ends_with(&format!("-{id}")) => format!("{first}-{id}"),
        _ => id,
    }
}

/// The entries of the kinds that render their own ([`Kind::to_spec`]), in
/// the registry's order: each stack resource of such a kind (or of the kind
/// it is imported with) becomes a desired resource adopting it; the kind
/// observes them, and each one found gets its id ([`Kind::import_id`]) and,
/// its references in spec form (to the ids the kinds before it gave), its
/// entry in `spec`.
async fn rendered(ctx: &mut Context, kinds: &[Box<dyn Kind>], spec: &mut Spec) -> Result<(), ImportError> {
    let env = EnvSpec::new(&ctx.env, Spec::default());
    let reads = ReadCache::default();
    reads.set_adopting(ctx.by_kind.values().flatten().map(|r| r.physical_id.clone()).collect());
    let mut handles = ReferenceMap::default();
    let mut named = BTreeMap::new();
    let mut ids: BTreeMap<(&'static str, String), String> = BTreeMap::new(); // (kind, physical id) -> id
    let mut observed = Vec::new();
    for kind in kinds.iter().filter(|k| k.rules().imported && !BY_HAND.contains(&k.name())) {
        let leader = kind.rules().imported_with;
        let mut taken = BTreeSet::new();
        let resources = ctx.of(leader.unwrap_or(kind.name())).into_iter();
        let stubs: Vec<(StackResource, Desired)> = resources
            .filter_map(|r| {
                let id = match leader {
                    Some(leader) => ids.get(&(leader, r.physical_id.clone()))?.clone(),
                    None => unique(import_id(&r, &ctx.env), &mut taken),
                };
                let d = Desired::new(kind.name(), &id, physical_name_of(&r.physical_id), Tags::new());
                Some((r.clone(), Desired { adopt: Some(Adoption::ById(r.physical_id)), ..d }))
            })
            .collect();
        if stubs.is_empty() {
            continue;
        }
        let desired: Vec<Desired> = stubs.iter().map(|(_, d)| d.clone()).collect();
        let live = kind.observe(&env, &desired, &reads).await?;
        let mut taken = BTreeSet::new();
        let mut found = Vec::new();
        for (r, d) in stubs {
            let Some(l) = live.iter().find(|l| kind.matches(&ctx.env, &d, l)) else {
                ctx.not_representable(format!("{} {} ({}): {} does not exist", r.resource_type, r.logical_id, r.stack, r.physical_id));
                continue;
            };
            // Named with what the kinds before it gave; rendered below, once every id is known.
            let mut seen = l.clone();
            seen.fields = ReferenceMap::rewrite(&l.fields, |v| handles.to_references(v));
            let id = match leader {
                Some(_) => d.key.id,
                None => unique(kind.import_id(&seen, &d.key.id, &Importing { env: &ctx.env, named: &named }), &mut taken),
            };
            handles.learn(&ResourceKey::new(kind.name(), &id), &l.handle);
            named.insert((kind.name(), l.name.clone()), id.clone());
            ids.insert((kind.name(), r.physical_id.clone()), id.clone());
            found.push((r, id, l.clone()));
        }
        observed.push((kind, found));
    }
    let env_name = ctx.env.clone();
    let importing = Importing { env: &env_name, named: &named };
    let rendering_kinds: Vec<&Box<dyn Kind>> = observed.iter().map(|(kind, _)| *kind).collect();
    for (kind, found) in observed {
        for (r, id, mut live) in found {
            let at = format!("{} {} ({})", r.resource_type, r.logical_id, r.stack);
            live.fields = ReferenceMap::rewrite(&live.fields, |v| handles.to_references(v));
            match kind.to_spec(&id, &live, spec, &importing) {
                Ok(rendering) => {
                    for unsaid in rendering.unsaid {
                        ctx.not_representable(format!("{at}: {unsaid}"));
                    }
                    if rendering.named_by_entry {
                        ctx.summary.mapped.push(format!("{}/{id} <- {} (pinned: the guard keeps it)", kind.name(), r.physical_id));
                    } else if kind.rules().matching == Matching::Name {
                        ctx.adopt(kind.name(), &id, &live.name, AdoptTarget::default());
                    } else {
                        ctx.adopt(kind.name(), &id, &r.physical_id, by_id(&r.physical_id));
                    }
                }
                Err(why) => ctx.not_representable(format!("{at}: {why}")),
            }
        }
    }
    for kind in rendering_kinds {
        for (taken, why) in kind.unfinished(spec) {
            for (kind, id) in taken {
                let key = format!("{kind}/{id}");
                ctx.adopt.remove(&key);
                ctx.summary.mapped.retain(|m| !m.starts_with(&format!("{key} <- ")));
                ctx.not_representable(format!("{key}: {why}"));
            }
        }
    }
    Ok(())
}

/// Where `import` finds the estate's resources.
#[derive(Debug, Clone)]
pub enum Source {
    /// The CloudFormation stacks matching this glob (`*` any text, `${env}` the environment).
    Stacks(String),
    /// A Terraform state file (format version 4).
    TerraformState(std::path::PathBuf),
    /// What lies in this VPC (an estate made by hand).
    Vpc(String),
    /// What carries this tag (key, value).
    Tag(String, String),
}

/// Imports environment `env` from `source`. Reads only.
pub async fn import(config: &SdkConfig, env: &str, source: &Source) -> Result<Imported, ImportError> {
    let counter = CallCounter::default();
    let (sources, resources) = match source {
        Source::Stacks(glob) => stack_resources(&sdk_client!(aws_sdk_cloudformation, config, counter), &glob.replace("${env}", env)).await?,
        Source::TerraformState(path) => {
            let (state, resources) = terraform::resources(path)?;
            (vec![state], resources)
        }
        Source::Tag(key, value) => {
            let (source, resources) = discover::tagged_resources(
                &sdk_client!(aws_sdk_resourcegroupstagging, config, counter),
                &sdk_client!(aws_sdk_ec2, config, counter),
                &sdk_client!(aws_sdk_elasticloadbalancingv2, config, counter),
                (key, value),
                env,
            )
            .await?;
            (vec![source], resources)
        }
        Source::Vpc(vpc) => {
            let (source, resources) =
                discover::vpc_resources(&sdk_client!(aws_sdk_ec2, config, counter), &sdk_client!(aws_sdk_elasticloadbalancingv2, config, counter), vpc, env)
                    .await?;
            (vec![source], resources)
        }
    };
    let mut ctx = Context {
        env: env.to_string(),
        kinds: crate::kinds::rules(),
        tiers: None,
        by_kind: BTreeMap::new(),
        adopt: BTreeMap::new(),
        summary: Summary { stacks: sources, ..Summary::default() },
    };
    ctx.summary.found = resources.len();
    sort(&mut ctx, resources)?;
    let sqs = sdk_client!(aws_sdk_sqs, config, counter);
    let dynamodb = sdk_client!(aws_sdk_dynamodb, config, counter);
    let logs = sdk_client!(aws_sdk_cloudwatchlogs, config, counter);
    let ecs = sdk_client!(aws_sdk_ecs, config, counter);
    services::found_by_name(&mut ctx, &sqs, &dynamodb, &logs, &ecs).await?;
    let mut spec = Spec { region: config.region().map(|r| r.to_string()), ..Spec::default() };
    let vpcs = ctx.of(ec2::vpc::KIND);
    if vpcs.len() > 1 {
        let all: Vec<String> = vpcs.iter().map(|v| format!("{} ({} {})", v.physical_id, v.stack, v.logical_id)).collect();
        return Err(ImportError::Input(format!("the source holds {} VPCs ({}); an environment has one: narrow it", vpcs.len(), all.join(", "))));
    }
    rendered(&mut ctx, &crate::kinds::registry(config, &counter, TagReads::default()), &mut spec).await?;
    let adopted = |id: &String| ctx.adopt.get(&format!("{}/{id}", ec2::subnet::KIND)).and_then(|t| t.id.clone());
    ctx.tiers = spec.network.as_ref().map(|n| n.subnets.iter().filter_map(|(id, s)| Some((adopted(id)?, s.tier))).collect());
    if let Some(redis) = services::redis(&mut ctx, &sdk_client!(aws_sdk_elasticache, config, counter)).await? {
        spec.data.get_or_insert_with(Default::default).redis = Some(redis);
    }
    spec.identity = services::identity(&mut ctx, &sdk_client!(aws_sdk_cognitoidentityprovider, config, counter)).await?;
    spec.adopt = ctx.adopt;
    Ok(Imported { spec, summary: ctx.summary })
}

/// The stacks matching `glob` (sorted) and their resources.
async fn stack_resources(cfn: &aws_sdk_cloudformation::Client, glob: &str) -> Result<(Vec<String>, Vec<StackResource>), ImportError> {
    let stacks: Vec<String> = cfn
        .describe_stacks()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .aws("CloudFormation.DescribeStacks")?
        .into_iter()
        .filter(|s| s.stack_status().is_some_and(|st| !st.as_str().starts_with("DELETE_")))
        .filter_map(|s| s.stack_name().map(str::to_string))
        .collect();
    let mut matched: Vec<String> = stacks.iter().filter(|s| glob_matches(glob, s)).cloned().collect();
    matched.sort();
    if matched.is_empty() {
        let known = if stacks.is_empty() { "none".to_string() } else { stacks.join(", ") };
        return Err(ImportError::Input(format!("no CloudFormation stack matches {glob:?} (stacks in this account and region: {known}); use --stacks GLOB")));
    }
    let mut resources = Vec::new();
    for stack in &matched {
        let listed = cfn.list_stack_resources().stack_name(stack).into_paginator().items().send().try_collect().await;
        for r in listed.aws("CloudFormation.ListStackResources")? {
            let (Some(logical_id), Some(physical_id), Some(resource_type)) = (r.logical_resource_id(), r.physical_resource_id(), r.resource_type()) else {
                continue;
            };
            if r.resource_status().is_some_and(|s| s.as_str().starts_with("DELETE_") || s.as_str().ends_with("_FAILED")) {
                continue;
            }
            resources.push(StackResource {
                stack: stack.clone(),
                logical_id: logical_id.to_string(),
                physical_id: physical_id.to_string(),
                resource_type: resource_type.to_string(),
            });
        }
    }
    Ok((matched, resources))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_type_maps_to_its_kind() {
        let kinds = crate::kinds::rules();
        assert_eq!(mapping("AWS::EC2::VPC", &kinds), Mapping::Kind("ec2.vpc"));
        assert_eq!(mapping("AWS::EC2::EIP", &kinds), Mapping::Kind("ec2.elastic-ip"));
        assert_eq!(mapping("AWS::EC2::NatGateway", &kinds), Mapping::Kind("ec2.nat-gateway"));
        assert_eq!(mapping("AWS::SQS::Queue", &kinds), Mapping::Kind("sqs.queue"));
        assert_eq!(mapping("AWS::DynamoDB::Table", &kinds), Mapping::Kind("dynamodb.table"));
        assert_eq!(mapping("AWS::ECS::Cluster", &kinds), Mapping::Kind("ecs.cluster"));
        assert_eq!(mapping("AWS::Logs::LogGroup", &kinds), Mapping::Kind("logs.log-group"));
        assert_eq!(mapping("AWS::Cognito::UserPool", &kinds), Mapping::Kind("cognito.user-pool"));
        assert_eq!(mapping("AWS::ElastiCache::ReplicationGroup", &kinds), Mapping::Kind("elasticache.replication-group"));
        assert!(matches!(mapping("AWS::EC2::Route", &kinds), Mapping::PartOf(_)));
        assert!(matches!(mapping("AWS::EC2::SubnetRouteTableAssociation", &kinds), Mapping::PartOf(_)));
        assert_eq!(
            mapping("AWS::IAM::Role", &kinds),
            Mapping::NotRepresentable("iam.role is not imported yet: write it in the spec, with an adopt entry".into())
        );
        assert_eq!(mapping("AWS::IAM::Policy", &kinds), Mapping::PartOf("an inline policy of its role"));
        assert!(matches!(mapping("AWS::Made::Up", &kinds), Mapping::NotRepresentable(_)));
        // Every kind names at least one type, and no type is claimed twice.
        let mut claimed = BTreeSet::new();
        for k in &kinds {
            assert!(
                k.resource_types.iter().any(|t| t.starts_with("AWS::")) || k.resource_parts.iter().any(|(t, _)| t.starts_with("AWS::")),
                "{} declares no CloudFormation type",
                k.kind
            );
            assert!(
                k.resource_types.iter().chain(k.resource_parts.iter().map(|(t, _)| t)).any(|t| t.starts_with("aws_")),
                "{} declares no Terraform type",
                k.kind
            );
            for t in k.resource_types.iter().chain(k.resource_parts.iter().map(|(t, _)| t)) {
                assert!(claimed.insert(*t), "{t} is claimed by two kinds");
            }
        }
    }

    #[test]
    fn a_resource_two_stacks_claim_is_refused_and_unknown_types_are_listed() {
        let resource = |stack: &str, logical_id: &str, physical_id: &str, resource_type: &str| StackResource {
            stack: stack.into(),
            logical_id: logical_id.into(),
            physical_id: physical_id.into(),
            resource_type: resource_type.into(),
        };
        let mut ctx = Context {
            env: "dev".into(),
            kinds: crate::kinds::rules(),
            tiers: None,
            by_kind: BTreeMap::new(),
            adopt: BTreeMap::new(),
            summary: Summary::default(),
        };
        let fine = vec![
            resource("sentry-vpc-dev", "Vpc", "vpc-1", "AWS::EC2::VPC"),
            resource("sentry-vpc-dev", "AssocA", "rtb-1", "AWS::EC2::SubnetRouteTableAssociation"),
            resource("sentry-vpc-dev", "AssocB", "rtb-1", "AWS::EC2::SubnetRouteTableAssociation"),
            resource("sentry-vpc-dev", "FlowLogsRole", "role", "AWS::IAM::Role"),
        ];
        sort(&mut ctx, fine).expect("parts may share an id");
        assert_eq!(ctx.of("ec2.vpc").len(), 1);
        assert_eq!(ctx.summary.skipped.len(), 2);
        assert!(ctx.summary.not_representable[0].contains("AWS::IAM::Role FlowLogsRole (sentry-vpc-dev): iam.role is not imported yet"), "{:?}", ctx.summary);
        let twice = vec![resource("sentry-vpc-dev", "Vpc", "vpc-1", "AWS::EC2::VPC"), resource("sentry-net-dev", "Network", "vpc-1", "AWS::EC2::VPC")];
        let e = sort(&mut ctx, twice).expect_err("claimed twice");
        assert!(e.to_string().contains("AWS::EC2::VPC vpc-1 is claimed by two stacks: sentry-vpc-dev Vpc and sentry-net-dev Network"), "{e}");
    }

    #[test]
    fn import_ids_drop_the_words_of_their_type() {
        let id = |logical_id: &str, physical_id: &str, resource_type: &str| {
            import_id(
                &StackResource { stack: "s".into(), logical_id: logical_id.into(), physical_id: physical_id.into(), resource_type: resource_type.into() },
                "dev",
            )
        };
        assert_eq!(id("NatGatewayA", "nat-1", "AWS::EC2::NatGateway"), "nat-a");
        assert_eq!(id("PublicSubnetA", "subnet-1", "AWS::EC2::Subnet"), "public-a");
        assert_eq!(id("AlbSecurityGroup", "sg-1", "AWS::EC2::SecurityGroup"), "alb");
        assert_eq!(id("OmsConfigTable", "oms-config-dev", "AWS::DynamoDB::Table"), "oms-config");
        assert_eq!(id("Cluster", "sentry-oms-dev", "AWS::ECS::Cluster"), "oms", "a logical id of type words only: the name's stem");
        assert_eq!(id("Queue", "https://sqs.us-east-1.amazonaws.com/1/sentry-orders-dev.fifo", "AWS::SQS::Queue"), "orders");
    }

    #[test]
    fn stack_globs() {
        assert!(glob_matches("sentry-*-dev", "sentry-vpc-dev"));
        assert!(glob_matches("sentry-*-dev", "sentry-cluster-oms-dev"));
        assert!(!glob_matches("sentry-*-dev", "sentry-vpc-prod"));
        assert!(!glob_matches("sentry-*-dev", "other-vpc-dev"));
        assert!(glob_matches("sentry-vpc-dev", "sentry-vpc-dev"));
        assert!(!glob_matches("sentry-*-dev", "sentry-dev"), "the * stands for at least the dash between");
        assert!(glob_matches("*", "anything"));
    }

    #[test]
    fn readable_ids_from_logical_ids() {
        assert_eq!(spec_id("PublicSubnetA", &["subnet"]), "public-a");
        assert_eq!(spec_id("AlbSecurityGroup", &["security", "group"]), "alb");
        assert_eq!(spec_id("MasterOrderQueue", &["queue"]), "master-order");
        assert_eq!(spec_id("MasterOrderDLQ", &["queue"]), "master-order-dlq");
        assert_eq!(spec_id("WhitelistEip1", &["eip"]), "whitelist-1");
        assert_eq!(spec_id("NatGatewayA", &["gateway"]), "nat-a");
        assert_eq!(spec_id("Queue", &["queue"]), "queue", "a name of type words only is kept");
        let mut taken = BTreeSet::new();
        assert_eq!(unique("a".into(), &mut taken), "a");
        assert_eq!(unique("a".into(), &mut taken), "a-2");
    }
}
