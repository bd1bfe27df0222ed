//! The networking kinds (EC2 API), one module each, and what they share:
//! the client, ownership filters, tag conversion and physical names.
//!
//! EC2 names are tags, not unique keys, so these kinds match live resources
//! by their `sentry:id` tag and observe only what this environment owns
//! (`Describe*` filtered by tag): resources of others are never even read.

pub mod elastic_ip;
pub mod flow_log;
pub mod internet_gateway;
pub mod nat_gateway;
pub mod network_acl;
pub mod route_table;
pub mod security_group;
pub mod security_group_rules;
pub mod subnet;
pub mod vpc;
pub mod vpc_endpoint;

pub use crate::aws::{gone_is_ok, wait_for};

use std::sync::Arc;

use aws_sdk_ec2::operation::describe_nat_gateways::DescribeNatGatewaysOutput;
use aws_sdk_ec2::operation::describe_security_groups::DescribeSecurityGroupsOutput;
use aws_sdk_ec2::operation::describe_vpcs::DescribeVpcsOutput;
use aws_sdk_ec2::types::{Filter, FlowLog, InternetGateway, NetworkAcl, ResourceType, RouteTable, SecurityGroup, Subnet, Tag, TagSpecification, VpcEndpoint};
use aws_sdk_ec2::Client;

use crate::aws::{AwsError, AwsResult};
use crate::engine::{ownership_tags, Desired, FieldChange, Layer, Live, Matching, ReadCache, Rules, Scope, MANAGED_BY, TAG_ENV, TAG_MANAGED_BY};
use crate::spec::model::{DeletionPolicy, Network, Spec, Tags};
use crate::spec::EnvSpec;

/// The whitelist EIPs' kind name (here, not in its module: the NAT gateways
/// and the whitelist refer to each other).
pub const ELASTIC_IP: &str = "ec2.elastic-ip";
/// The NAT gateways' kind name.
pub const NAT_GATEWAY: &str = "ec2.nat-gateway";

/// Filters selecting what this environment owns.
pub fn owned_by(env: &str) -> Vec<Filter> {
    vec![
        Filter::builder().name(format!("tag:{TAG_MANAGED_BY}")).values(MANAGED_BY).build(),
        Filter::builder().name(format!("tag:{TAG_ENV}")).values(env).build(),
    ]
}

/// The security groups this environment owns: one DescribeSecurityGroups a
/// pass, shared by the group kind and the rules kind.
pub async fn owned_security_groups(client: &Client, env: &str, reads: &ReadCache) -> Result<Arc<DescribeSecurityGroupsOutput>, AwsError> {
    reads
        .get("EC2.DescribeSecurityGroups(owned)", || async {
            client.describe_security_groups().set_filters(Some(owned_by(env))).send().await.aws("EC2.DescribeSecurityGroups")
        })
        .await
}

/// The shared read of the VPCs this environment owns.
const OWNED_VPCS: &str = "EC2.DescribeVpcs(owned)";

/// The security groups `desired` adopts that `owned` does not hold yet (see [`adopted`]).
pub async fn adopted_security_groups(client: &Client, desired: &[Desired], owned: &DescribeSecurityGroupsOutput) -> Result<Vec<SecurityGroup>, AwsError> {
    let known: Vec<&str> = owned.security_groups().iter().filter_map(|g| g.group_id()).collect();
    adopted(desired, &known, |id| async move {
        Ok(client.describe_security_groups().group_ids(id).send().await.aws("EC2.DescribeSecurityGroups")?.security_groups.unwrap_or_default())
    })
    .await
}

/// The VPCs this environment owns (one, whose tags hold the whitelist
/// ledger): one DescribeVpcs a pass, shared by the VPC kind and the whitelist.
pub async fn owned_vpcs(client: &Client, env: &str, reads: &ReadCache) -> Result<Arc<DescribeVpcsOutput>, AwsError> {
    reads.get(OWNED_VPCS, || async { client.describe_vpcs().set_filters(Some(owned_by(env))).send().await.aws("EC2.DescribeVpcs") }).await
}

/// The owned VPCs if this pass already read them (for checks that make no calls).
pub fn owned_vpcs_read(reads: &ReadCache) -> Option<Arc<DescribeVpcsOutput>> {
    reads.peek(OWNED_VPCS)
}

/// Every pending or available NAT gateway of the account, whoever owns it
/// (the whitelist must tell where an address is attached): one
/// DescribeNatGateways a pass, shared by the NAT gateway kind and the whitelist.
pub async fn live_nat_gateways(client: &Client, reads: &ReadCache) -> Result<Arc<DescribeNatGatewaysOutput>, AwsError> {
    reads
        .get("EC2.DescribeNatGateways(pending, available)", || async {
            let live = Filter::builder().name("state").values("pending").values("available").build();
            client.describe_nat_gateways().filter(live).send().await.aws("EC2.DescribeNatGateways")
        })
        .await
}

/// The resources `desired` adopts by identifier that `known` (the ids read
/// with this environment's tags) does not hold yet: read one by one with
/// `describe`, a missing one left out (the plan reports it). Once adopted they
/// carry the tags and are read with the others, so this costs nothing then.
pub async fn adopted<T, F, Fut>(desired: &[Desired], known: &[&str], describe: F) -> Result<Vec<T>, AwsError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, AwsError>>,
{
    let mut found = Vec::new();
    for id in desired.iter().filter_map(Desired::adopted_id).filter(|id| !known.contains(id)) {
        found.extend(crate::aws::found(describe(id.to_string()).await)?.unwrap_or_default());
    }
    Ok(found)
}

/// One `Describe*` request of [`owned_and_adopted`]: by filters (this
/// environment's ownership tags), or by ids (what the spec adopts).
pub struct Lookup {
    /// The filters, when it asks by filters.
    pub filters: Option<Vec<Filter>>,
    /// The ids, when it asks by ids.
    pub ids: Option<Vec<String>>,
}

/// The resources of an EC2 kind a pass reads: those tagged as environment
/// `env`'s, in one `describe` by filters, then each one `desired` adopts by
/// id that lacks the tags yet (`describe(Lookup::Id(..))`, see
/// [`adopted`]); `id_of` gives a resource's id.
async fn owned_and_adopted<T, F, Fut>(env: &str, desired: &[Desired], id_of: fn(&T) -> Option<&str>, describe: F) -> Result<Vec<T>, AwsError>
where
    F: Fn(Lookup) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, AwsError>>,
{
    let mut found = describe(Lookup { filters: Some(owned_by(env)), ids: None }).await?;
    let known: Vec<String> = found.iter().filter_map(id_of).map(str::to_string).collect();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    found.extend(adopted(desired, &known, |id| describe(Lookup { filters: None, ids: Some(vec![id]) })).await?);
    Ok(found)
}

/// An EC2 description a kind reads: its id (the kind's handle), its tags,
/// and the `Describe*` call that lists it by filters or by ids.
pub trait Described: Sized {
    /// Its id.
    fn id(&self) -> Option<&str>;
    /// Its tags.
    fn tag_list(&self) -> &[Tag];
    /// The descriptions `lookup` asks for.
    fn describe(client: &Client, lookup: Lookup) -> impl std::future::Future<Output = Result<Vec<Self>, AwsError>> + Send;
}

/// Implements [`Described`]: the description, its id's getter, then the
/// call with its filters and ids setters, the operation's name (in the `.aws` form
/// every call writes, which the IAM test reads) and the output's list.
macro_rules! described {
    ($($description:ty => $id:ident, $call:ident($filters:ident, $ids:ident).aws($operation:literal).$out:ident;)*) => {
        $(impl Described for $description {
            fn id(&self) -> Option<&str> {
                self.$id()
            }
            fn tag_list(&self) -> &[Tag] {
                self.tags()
            }
            async fn describe(client: &Client, lookup: Lookup) -> Result<Vec<Self>, AwsError> {
                let request = client.$call().$filters(lookup.filters).$ids(lookup.ids);
                Ok(request.send().await.aws($operation)?.$out.unwrap_or_default())
            }
        })*
    };
}

described! {
    Subnet => subnet_id, describe_subnets(set_filters, set_subnet_ids).aws("EC2.DescribeSubnets").subnets;
    FlowLog => flow_log_id, describe_flow_logs(set_filter, set_flow_log_ids).aws("EC2.DescribeFlowLogs").flow_logs;
    InternetGateway => internet_gateway_id, describe_internet_gateways(set_filters, set_internet_gateway_ids).aws("EC2.DescribeInternetGateways").internet_gateways;
    VpcEndpoint => vpc_endpoint_id, describe_vpc_endpoints(set_filters, set_vpc_endpoint_ids).aws("EC2.DescribeVpcEndpoints").vpc_endpoints;
    RouteTable => route_table_id, describe_route_tables(set_filters, set_route_table_ids).aws("EC2.DescribeRouteTables").route_tables;
    NetworkAcl => network_acl_id, describe_network_acls(set_filters, set_network_acl_ids).aws("EC2.DescribeNetworkAcls").network_acls;
}

/// The live resources of an EC2 kind: those [`owned_and_adopted`] finds,
/// each its id and tags plus the fields `fields` reads of it (`None` leaves
/// it out: a resource on its way out).
pub async fn observed<T: Described>(client: &Client, env: &str, desired: &[Desired], fields: impl Fn(&T, Live) -> Option<Live>) -> Result<Vec<Live>, AwsError> {
    let found = owned_and_adopted(env, desired, T::id, |lookup| T::describe(client, lookup)).await?;
    Ok(found.iter().filter_map(|r| fields(r, live(r.id()?, tag_map(r.tag_list())))).collect())
}

/// `import`: the network section an imported VPC opened, for the entry of
/// `live`; an error when no VPC was imported, or when `live`'s `vpc_field`
/// (if any) names another VPC.
pub fn imported_network<'a>(spec: &'a mut Spec, live: &Live, vpc_field: Option<&str>) -> Result<&'a mut Network, String> {
    let network = spec.network.as_mut().ok_or("no VPC in the stacks to hold it")?;
    match vpc_field.map(|f| live.fields.get(f).and_then(|v| v.id_of(vpc::KIND))) {
        Some(in_vpc) if in_vpc != Some(vpc::ID) => Err("it lies in another VPC than the environment's".into()),
        _ => Ok(network),
    }
}

/// `import`: the spec's `name` of a resource whose Name tag is not its
/// default name (`None` without a Name tag: the default one is then added).
pub fn explicit_name(live: &Live, default: &str) -> Option<String> {
    live.tags.get("Name").filter(|n| *n != default).cloned()
}

/// What a kind that owns families of fields (`exclusive` families: routes,
/// rules, associations) sets on a resource it just created: every entry of
/// those families, as changes from nothing.
pub fn created_fields(desired: &Desired, exclusive: &[&str]) -> Vec<FieldChange> {
    desired.fields.iter().filter(|(k, _)| exclusive.contains(&k.as_str())).flat_map(|(k, v)| FieldChange::between(k, None, Some(v))).collect()
}

/// `changes` with additions first and removals last: make before break.
pub fn additions_first(changes: &[FieldChange]) -> impl Iterator<Item = &FieldChange> {
    let (adds, removals): (Vec<&FieldChange>, Vec<&FieldChange>) = changes.iter().partition(|c| c.desired.is_some());
    adds.into_iter().chain(removals)
}

/// Whether `desired` adopts the resource `id`.
pub fn adopts(desired: &[Desired], id: &str) -> bool {
    desired.iter().any(|d| d.adopted_id() == Some(id))
}

/// EC2 tags as a map.
pub fn tag_map(tags: &[Tag]) -> Tags {
    tags.iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect()
}

/// A map as EC2 tags.
pub fn tag_list(tags: &Tags) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

/// Tags applied in the create call itself (crash-safe ownership).
pub fn tag_spec(resource: ResourceType, tags: &Tags) -> TagSpecification {
    TagSpecification::builder().resource_type(resource).set_tags(Some(tag_list(tags))).build()
}

/// Adds or overwrites `tags` on `resource`.
pub async fn put_tags(client: &Client, resource: &str, tags: &Tags) -> Result<(), AwsError> {
    if tags.is_empty() {
        return Ok(());
    }
    client.create_tags().resources(resource).set_tags(Some(tag_list(tags))).send().await.aws("EC2.CreateTags")?;
    Ok(())
}

/// The network section, when the spec has one.
pub fn network(env: &EnvSpec) -> Option<&Network> {
    env.spec.network.as_ref()
}

/// A desired networking resource: Name tag `sentry-<id>-<env>` (or `name`), ownership tags.
pub fn desired(env: &EnvSpec, kind: &'static str, id: &str, name: String, policy: DeletionPolicy) -> Desired {
    let mut tags = ownership_tags(env, id, policy, &Tags::new());
    tags.insert("Name".into(), name.clone());
    Desired::new(kind, id, name, tags)
}

/// The rules the networking kinds share: matched by their `sentry:id` tag,
/// reconciled by every pass (the whitelist guard's fast one included).
pub const fn rules(kind: &'static str) -> Rules {
    Rules { matching: Matching::OwnershipTag, scope: Scope::Fast, ..Rules::new(kind, Layer::Networking) }
}

/// A live resource from its id and tags; its name is its Name tag.
pub fn live(handle: &str, tags: Tags) -> Live {
    Live { name: tags.get("Name").cloned().unwrap_or_else(|| handle.to_string()), handle: handle.to_string(), tags, ..Live::default() }
}
