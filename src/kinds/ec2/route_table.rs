//! Route tables as the spec lays them out (`network.routeTables`: any
//! layout, such as one private table shared by several subnets), else as
//! the tiers imply: one public (default route to the internet gateway) and
//! one per private subnet (default route to a NAT gateway, so all egress
//! leaves through a whitelist EIP), with their subnet associations. Routes
//! and associations are diffed one by one; gateway-endpoint routes (prefix
//! lists) belong to the endpoints and are left alone.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use crate::engine::Scope;
use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, ResourceType, RouteTable};
use aws_sdk_ec2::Client;

use super::{
    additions_first, created_fields, desired, explicit_name, gone_is_ok, internet_gateway, nat_gateway, network, observed, put_tags, rules, subnet, tag_spec,
    vpc,
};
use crate::aws::{required, AwsError, AwsResult};
use crate::engine::{reference, Delta, Desired, FieldChange, FieldReader, Importing, Kind, Live, ReadCache, Rendering, Rules, Value};
use crate::spec::model::{DefaultRoute, DeletionPolicy, RouteTable as TableSpec, Spec, Tier, PUBLIC_TABLE, ROUTE_TARGETS};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "ec2.route-table";
/// The logical id of the public route table the tiers imply (private ones are named after their subnet).
pub const PUBLIC: &str = PUBLIC_TABLE;

fields! { VPC = "VpcId", ROUTE = "route ", ASSOCIATION = "association ", ASSOCIATED = "associated", DEFAULT_ROUTE = "0.0.0.0/0" }

/// The route-table kind.
pub struct RouteTables {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

/// `$request` (CreateRoute or ReplaceRoute, whose builders share these
/// setters but no type) through `$target`, by the kind of id it is.
macro_rules! route_target {
    ($request:expr, $target:expr) => {
        match $target {
            t if t.starts_with("nat-") => $request.nat_gateway_id(t),
            t if t.starts_with("pcx-") => $request.vpc_peering_connection_id(t),
            t if t.starts_with("tgw-") => $request.transit_gateway_id(t),
            t if t.starts_with("eni-") => $request.network_interface_id(t),
            t if t.starts_with("i-") => $request.instance_id(t),
            t => $request.gateway_id(t), // igw-, vgw-
        }
    };
}

impl RouteTables {
    async fn set_route(&self, table: &str, change: &FieldChange) -> Result<(), AwsError> {
        let destination = change.entry_text("EC2.CreateRoute")?;
        let Some(target) = change.desired.as_ref().map(|t| t.resolved("EC2.CreateRoute")).transpose()?.and_then(Value::as_text) else {
            let result = self.client.delete_route().route_table_id(table).destination_cidr_block(destination).send().await;
            return gone_is_ok(result.map(|_| ()).aws("EC2.DeleteRoute"));
        };
        if change.live.is_none() {
            let request = self.client.create_route().route_table_id(table).destination_cidr_block(destination);
            let request = route_target!(request, target);
            match request.send().await.aws("EC2.CreateRoute") {
                // An earlier attempt whose reply was lost may have made it: replace it with the same target.
                Err(e) if e.code.as_deref() == Some("RouteAlreadyExists") => {}
                other => return other.map(|_| ()),
            }
        }
        let request = self.client.replace_route().route_table_id(table).destination_cidr_block(destination);
        let request = route_target!(request, target);
        request.send().await.aws("EC2.ReplaceRoute")?;
        Ok(())
    }

    /// Associates `subnet` with `table`, moving it from another table if needed.
    async fn associate(&self, table: &str, subnet: &str) -> Result<(), AwsError> {
        let request = self.client.describe_route_tables();
        let current = request.filters(Filter::builder().name("association.subnet-id").values(subnet).build()).send().await.aws("EC2.DescribeRouteTables")?;
        let existing =
            current.route_tables().iter().flat_map(|t| t.associations()).find(|a| a.subnet_id() == Some(subnet)).and_then(|a| a.route_table_association_id());
        match existing {
            Some(association) => {
                self.client
                    .replace_route_table_association()
                    .association_id(association)
                    .route_table_id(table)
                    .send()
                    .await
                    .aws("EC2.ReplaceRouteTableAssociation")?;
            }
            None => {
                self.client.associate_route_table().route_table_id(table).subnet_id(subnet).send().await.aws("EC2.AssociateRouteTable")?;
            }
        }
        Ok(())
    }

    /// Applies field changes: additions first, removals last (make before break).
    async fn apply(&self, table: &str, live: Option<&Live>, changes: &[FieldChange]) -> Result<(), AwsError> {
        for change in additions_first(changes) {
            if change.field.starts_with(ROUTE) {
                self.set_route(table, change).await?;
            } else if change.field.starts_with(ASSOCIATION) {
                let subnet = change.entry_text("EC2.AssociateRouteTable")?;
                if change.desired.is_some() {
                    self.associate(table, subnet).await?;
                } else if let Some(association) = live.and_then(|l| l.meta.get(subnet)) {
                    let result = self.client.disassociate_route_table().association_id(association).send().await;
                    gone_is_ok(result.map(|_| ()).aws("EC2.DisassociateRouteTable"))?;
                }
            }
        }
        Ok(())
    }
}

/// A route table's routes and associations (`l` holds its id and tags).
fn normalize(table: &RouteTable, l: Live) -> Option<Live> {
    let mut l = l.with_handle(VPC, table.vpc_id().unwrap_or_default());
    for r in table.routes() {
        let Some(destination) = r.destination_cidr_block() else { continue }; // prefix-list routes belong to endpoints
        let target = r
            .gateway_id()
            .or(r.nat_gateway_id())
            .or(r.instance_id())
            .or(r.network_interface_id())
            .or(r.vpc_peering_connection_id())
            .or(r.transit_gateway_id())
            .unwrap_or("blackhole");
        if target != "local" {
            l = l.with_entry(ROUTE, destination, Value::handle(target));
        }
    }
    for a in table.associations() {
        if let (Some(subnet), Some(id)) = (a.subnet_id(), a.route_table_association_id()) {
            l = l.with_entry(ASSOCIATION, Value::handle(subnet), ASSOCIATED);
            l.meta.insert(subnet.into(), id.into());
        }
    }
    Some(l)
}

/// The target of a (spec-form) live table's default route.
fn default_target(live: &Live) -> Option<&Value> {
    live.fields.get(ROUTE)?.entries().iter().find(|(destination, _)| *destination == DEFAULT_ROUTE).map(|(_, target)| target)
}

/// The ids of the imported subnets a (spec-form) live table is associated with.
fn associated(live: &Live) -> impl Iterator<Item = &str> {
    live.fields.get(ASSOCIATION).map_or(&[][..], Value::entries).iter().filter_map(|(subnet, _)| subnet.id_of(subnet::KIND))
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["ec2:DescribeVpcs", "ec2:DescribeNatGateways", "ec2:DescribeRouteTables", "ec2:DescribeSecurityGroups"],
    grants: &[Grant::allow("NetworkWrites", &["ec2:CreateRouteTable", "ec2:DeleteRouteTable", "ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute", "ec2:AssociateRouteTable", "ec2:ReplaceRouteTableAssociation", "ec2:DisassociateRouteTable", "ec2:CreateTags"], &["*"])],
};

#[async_trait]
impl Kind for RouteTables {
    fn rules(&self) -> Rules {
        Rules {
            immutable: &[VPC],
            exclusive: &[ROUTE, ASSOCIATION],
            events: EventMatch::of("ec2.amazonaws.com", &["Route"], &["routeTableId", "RouteTableId"]).marked("rtb-"),
            scope: Scope::Whitelist,
            ..rules(KIND)
                .stands_for(&["AWS::EC2::RouteTable", "aws_route_table"])
                .imported()
                .with_parts(&[
                    ("AWS::EC2::Route", "a route of its route table"),
                    ("aws_route", "a route of its route table"),
                    ("AWS::EC2::SubnetRouteTableAssociation", "an association of its route table"),
                    ("aws_route_table_association", "an association of its route table"),
                ])
                .needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(n) = network(env) else { return Vec::new() };
        let associate =
            |d: Desired, subnet: &str| d.with_entry(ASSOCIATION, Value::Ref(reference(subnet::KIND, subnet)), ASSOCIATED).after(subnet::KIND, subnet);
        let default_route = |d: Desired, kind: &'static str, id: &str| d.with_entry(ROUTE, DEFAULT_ROUTE, Value::Ref(reference(kind, id))).after(kind, id);
        n.route_table_layout(&env.env)
            .into_iter()
            .map(|t| {
                let d = desired(env, KIND, &t.id, t.name, DeletionPolicy::Delete).with_reference(VPC, vpc::KIND, vpc::ID);
                let d = t.subnets.iter().fold(d, |d, s| associate(d, s));
                let d = match t.default_route {
                    Some(DefaultRoute::InternetGateway) => default_route(d, internet_gateway::KIND, internet_gateway::ID),
                    Some(DefaultRoute::NatGateway(nat)) => default_route(d, nat_gateway::KIND, nat),
                    None => d,
                };
                t.routes.iter().fold(d, |d, (destination, target)| d.with_entry(ROUTE, *destination, Value::handle(*target)))
            })
            .collect()
    }

    /// Named the way the tiers would name it where it fits: the table routing
    /// through the internet gateway is `public`, the table associated with a
    /// single subnet takes its id, one associated with none the id of the
    /// private subnet its own name repeats; any other keeps its logical id.
    fn import_id(&self, live: &Live, proposed: &str, importing: &Importing) -> String {
        if default_target(live).is_some_and(|t| t.id_of(internet_gateway::KIND).is_some() || t.as_text().is_some_and(|t| t.starts_with("igw-"))) {
            return PUBLIC.to_string();
        }
        let subnets: Vec<&str> = associated(live).collect();
        let candidates: Vec<&String> =
            importing.named.iter().filter(|((kind, _), id)| *kind == subnet::KIND && !id.contains("public")).map(|(_, id)| id).collect();
        let suffix = |id: &&&String| proposed.ends_with(&format!("-{}", id.rsplit('-').next().unwrap_or_default()));
        match subnets.as_slice() {
            [one] => one.to_string(),
            // Associations not reported: the private subnet its own name repeats, exactly, else by its last word.
            [] => candidates
                .iter()
                .find(|id| ***id == proposed)
                .or_else(|| candidates.iter().find(suffix))
                .map_or_else(|| proposed.to_string(), |id| id.to_string()),
            _ => proposed.to_string(),
        }
    }

    /// Its entry in `routeTables`, as it is: its subnets, its default route
    /// (to a NAT gateway or the internet gateway, which also says the tier of
    /// the subnets it serves), its other routes by target id; a route to
    /// something the spec cannot name (a blackhole, a default route through
    /// a gateway not imported) or a subnet not imported refuses it, since
    /// adopting the table would remove them.
    fn to_spec(&self, id: &str, live: &Live, spec: &mut Spec, importing: &Importing) -> Result<Rendering, String> {
        let n = super::imported_network(spec, live, Some(VPC))?;
        let mut table = TableSpec { name: explicit_name(live, &format!("sentry-rt-{id}-{}", importing.env)), ..TableSpec::default() };
        for (subnet, _) in live.fields.get(ASSOCIATION).map_or(&[][..], Value::entries) {
            match subnet.id_of(subnet::KIND) {
                Some(s) => table.subnets.push(s.to_string()),
                None => return Err(format!("its subnet {subnet} is not imported (adopting the table would move it to the main table)")),
            }
        }
        let mut tier = None;
        for (destination, target) in live.fields.get(ROUTE).map_or(&[][..], Value::entries) {
            let destination = destination.to_string();
            match (destination == DEFAULT_ROUTE, target.id_of(nat_gateway::KIND), target.id_of(internet_gateway::KIND), target.as_text()) {
                (true, Some(nat), _, _) => (table.nat_gateway, tier) = (Some(nat.to_string()), Some(Tier::Private)),
                (true, None, Some(_), _) => (table.internet_gateway, tier) = (true, Some(Tier::Public)),
                (false, None, None, Some(t)) if ROUTE_TARGETS.iter().any(|p| t.starts_with(p)) => _ = table.routes.insert(destination, t.to_string()),
                _ => return Err(format!("its route to {destination} (through {target}) is not in the spec language (adopting the table would remove it)")),
            }
        }
        for s in &table.subnets {
            if let (Some(subnet), Some(tier)) = (n.subnets.get_mut(s), tier) {
                subnet.tier = tier;
            }
        }
        n.route_tables.get_or_insert_with(Default::default).insert(id.to_string(), table);
        Ok(Rendering::whole())
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        observed(&self.client, &env.env, desired, normalize).await
    }

    async fn create(&self, desired: &Desired, token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let request = self.client.create_route_table().vpc_id(desired.field(VPC)).client_token(token);
        let out = request.tag_specifications(tag_spec(ResourceType::RouteTable, &desired.tags)).send().await.aws("EC2.CreateRouteTable")?;
        let id = required("EC2.CreateRouteTable", "route table id", out.route_table().and_then(|t| t.route_table_id()))?;
        self.apply(&id, None, &created_fields(desired, self.rules().exclusive)).await?;
        Ok(id)
    }

    async fn update(&self, _desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        self.apply(&live.handle, Some(live), &delta.fields).await?;
        put_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        for association in live.meta.values() {
            let result = self.client.disassociate_route_table().association_id(association).send().await;
            gone_is_ok(result.map(|_| ()).aws("EC2.DisassociateRouteTable"))?;
        }
        let result = self.client.delete_route_table().route_table_id(&live.handle).send().await;
        gone_is_ok(result.map(|_| ()).aws("EC2.DeleteRouteTable"))
    }
}
