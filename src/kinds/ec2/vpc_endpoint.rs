//! VPC gateway endpoints (DynamoDB, S3) on the private route tables.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use async_trait::async_trait;
use aws_sdk_ec2::types::{ResourceType, VpcEndpoint, VpcEndpointType};
use aws_sdk_ec2::Client;

use super::{desired, explicit_name, gone_is_ok, network, observed, put_tags, route_table, rules, tag_spec, vpc};
use crate::aws::{required, AwsError, AwsResult};
use crate::engine::{Delta, Desired, FieldReader, Importing, Kind, Live, OnImmutableChange, ReadCache, Rendering, Rules, Value};
use crate::spec::model::{DeletionPolicy, Endpoint, Spec, Tier};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "ec2.vpc-endpoint";

fields! { VPC = "VpcId", SERVICE = "ServiceName", ROUTE_TABLES = "RouteTableIds" }

/// The VPC endpoint kind.
pub struct VpcEndpoints {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

impl VpcEndpoints {
    fn region(&self) -> String {
        self.client.config().region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into())
    }
}

/// Endpoint `id`'s name in environment `env` unless the spec gives one.
fn default_name(id: &str, env: &str) -> String {
    format!("sentry-{id}-endpoint-{env}")
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["ec2:DescribeVpcs", "ec2:DescribeNatGateways", "ec2:DescribeSecurityGroups", "ec2:DescribeVpcEndpoints"],
    grants: &[Grant::allow("NetworkWrites", &["ec2:CreateVpcEndpoint", "ec2:ModifyVpcEndpoint", "ec2:DeleteVpcEndpoints", "ec2:CreateTags"], &["*"])],
};

#[async_trait]
impl Kind for VpcEndpoints {
    fn rules(&self) -> Rules {
        Rules {
            immutable: &[VPC, SERVICE],
            on_immutable_change: OnImmutableChange::Replace,
            events: EventMatch::of("ec2.amazonaws.com", &["VpcEndpoint"], &["vpcEndpointId", "VpcEndpointId"]).marked("vpce-"),
            ..rules(KIND).stands_for(&["AWS::EC2::VPCEndpoint", "aws_vpc_endpoint"]).needs(PERMISSIONS).imported()
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(n) = network(env) else { return Vec::new() };
        let region = env.spec.region.clone().unwrap_or_else(|| self.region());
        n.endpoints
            .iter()
            .map(|(id, e)| {
                let tables = n.route_tables_of(e.route_tables, &env.env);
                desired(env, KIND, id, e.name.as_deref().map_or_else(|| default_name(id, &env.env), |n| n.replace("${env}", &env.env)), DeletionPolicy::Delete)
                    .with_reference(VPC, vpc::KIND, vpc::ID)
                    .with(SERVICE, format!("com.amazonaws.{region}.{}", e.service))
                    .with_references(ROUTE_TABLES, route_table::KIND, tables.iter().map(String::as_str))
            })
            .collect()
    }

    /// Named after its service (`s3`).
    fn import_id(&self, live: &Live, _proposed: &str, _importing: &Importing) -> String {
        live.field(SERVICE).rsplit('.').next().unwrap_or_default().to_string()
    }

    /// On the route tables of the public subnets, or on those of the private
    /// ones; on any other set of tables, refused.
    fn to_spec(&self, id: &str, live: &Live, spec: &mut Spec, importing: &Importing) -> Result<Rendering, String> {
        let n = super::imported_network(spec, live, Some(VPC))?;
        let mut tables: Vec<String> = live
            .fields
            .get(ROUTE_TABLES)
            .map(Value::items)
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.id_of(route_table::KIND).map_or_else(|| t.to_string(), str::to_string))
            .collect();
        tables.sort();
        let Some(route_tables) = [Tier::Private, Tier::Public].into_iter().find(|tier| {
            let mut of_tier = n.route_tables_of(*tier, importing.env);
            of_tier.sort();
            of_tier == tables
        }) else {
            return Err(format!("it is on route tables {}, not on those of the public or of the private subnets", tables.join(", ")));
        };
        let service = live.field(SERVICE).rsplit('.').next().unwrap_or_default().to_string();
        n.endpoints.insert(id.to_string(), Endpoint { name: explicit_name(live, &default_name(id, importing.env)), service, route_tables });
        Ok(Rendering::whole())
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        observed(&self.client, &env.env, desired, |e: &VpcEndpoint, l| {
            let gone = matches!(e.state().map(|s| s.as_str()), Some("deleted" | "deleting"));
            (!gone).then(|| {
                l.with_handle(VPC, e.vpc_id().unwrap_or_default())
                    .with(SERVICE, e.service_name().unwrap_or_default())
                    .with(ROUTE_TABLES, Value::handles(e.route_table_ids()))
            })
        })
        .await
    }

    async fn create(&self, desired: &Desired, token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let request = self
            .client
            .create_vpc_endpoint()
            .vpc_id(desired.field(VPC))
            .service_name(desired.field(SERVICE))
            .vpc_endpoint_type(VpcEndpointType::Gateway)
            .set_route_table_ids(Some(desired.items(ROUTE_TABLES)))
            .client_token(token);
        let out = request.tag_specifications(tag_spec(ResourceType::VpcEndpoint, &desired.tags)).send().await.aws("EC2.CreateVpcEndpoint")?;
        required("EC2.CreateVpcEndpoint", "VPC endpoint id", out.vpc_endpoint().and_then(|e| e.vpc_endpoint_id()))
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        if delta.fields.iter().any(|c| c.field == ROUTE_TABLES) {
            let (want, have) = (desired.items(ROUTE_TABLES), live.items(ROUTE_TABLES));
            let add: Vec<String> = want.iter().filter(|t| !have.contains(t)).cloned().collect();
            let remove: Vec<String> = have.iter().filter(|t| !want.contains(t)).cloned().collect();
            self.client
                .modify_vpc_endpoint()
                .vpc_endpoint_id(&live.handle)
                .set_add_route_table_ids((!add.is_empty()).then_some(add))
                .set_remove_route_table_ids((!remove.is_empty()).then_some(remove))
                .send()
                .await
                .aws("EC2.ModifyVpcEndpoint")?;
        }
        put_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        let result = self.client.delete_vpc_endpoints().vpc_endpoint_ids(&live.handle).send().await;
        gone_is_ok(result.map(|_| ()).aws("EC2.DeleteVpcEndpoints"))
    }
}
