//! VPC gateway endpoints (DynamoDB, S3) on the private route tables.

use async_trait::async_trait;
use aws_sdk_ec2::types::{ResourceType, VpcEndpointType};
use aws_sdk_ec2::Client;

use super::{desired, gone_is_ok, key, live, network, owned_by, put_tags, route_table, tag_map, tag_spec, vpc};
use crate::aws::{required, AwsError, AwsResult};
use crate::engine::{reference, Delta, Desired, Kind, Live, Matching, OnImmutableChange, ReadCache, Rules, Scope};
use crate::spec::model::{DeletionPolicy, Tier};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "ec2.vpc-endpoint";

const VPC: &str = "VpcId";
const SERVICE: &str = "ServiceName";
const ROUTE_TABLES: &str = "RouteTableIds";

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

fn split(list: Option<&str>) -> Vec<String> {
    list.unwrap_or_default().split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

#[async_trait]
impl Kind for VpcEndpoints {
    fn rules(&self) -> Rules {
        Rules {
            matching: Matching::OwnershipTag,
            scope: Scope::Fast,
            immutable: &[VPC, SERVICE],
            on_immutable_change: OnImmutableChange::Replace,
            ..Rules::new(KIND)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(n) = network(env) else { return Vec::new() };
        let region = env.spec.region.clone().unwrap_or_else(|| self.region());
        n.endpoints
            .iter()
            .map(|(id, e)| {
                let mut d = desired(env, KIND, id, format!("sentry-{id}-endpoint-{}", env.env), DeletionPolicy::Delete);
                d.fields.insert(VPC.into(), reference(vpc::KIND, vpc::ID));
                d.fields.insert(SERVICE.into(), format!("com.amazonaws.{region}.{}", e.service));
                d.depends_on.push(key(vpc::KIND, vpc::ID));
                let tables: Vec<String> = if e.route_tables == Tier::Public {
                    vec![route_table::PUBLIC.to_string()]
                } else {
                    n.subnets.iter().filter(|(_, s)| s.tier == Tier::Private).map(|(sid, _)| sid.clone()).collect()
                };
                d.fields.insert(ROUTE_TABLES.into(), tables.iter().map(|t| reference(route_table::KIND, t)).collect::<Vec<_>>().join(","));
                d.depends_on.extend(tables.iter().map(|t| key(route_table::KIND, t)));
                d
            })
            .collect()
    }

    async fn observe(&self, env: &EnvSpec, _desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let out = self.client.describe_vpc_endpoints().set_filters(Some(owned_by(&env.env))).send().await.aws("EC2.DescribeVpcEndpoints")?;
        Ok(out
            .vpc_endpoints()
            .iter()
            .filter(|e| !matches!(e.state().map(|s| s.as_str()), Some("deleted" | "deleting")))
            .filter_map(|e| {
                let mut l = live(e.vpc_endpoint_id()?, tag_map(e.tags()));
                l.fields.insert(VPC.into(), e.vpc_id().unwrap_or_default().into());
                l.fields.insert(SERVICE.into(), e.service_name().unwrap_or_default().into());
                let mut tables: Vec<&str> = e.route_table_ids().iter().map(String::as_str).collect();
                tables.sort_unstable();
                l.fields.insert(ROUTE_TABLES.into(), tables.join(","));
                Some(l)
            })
            .collect())
    }

    async fn create(&self, desired: &Desired, token: &str) -> Result<String, AwsError> {
        let field = |f: &str| desired.fields.get(f).cloned().unwrap_or_default();
        let out = self
            .client
            .create_vpc_endpoint()
            .vpc_id(field(VPC))
            .service_name(field(SERVICE))
            .vpc_endpoint_type(VpcEndpointType::Gateway)
            .set_route_table_ids(Some(split(desired.fields.get(ROUTE_TABLES).map(String::as_str))))
            .client_token(token)
            .tag_specifications(tag_spec(ResourceType::VpcEndpoint, &desired.tags))
            .send()
            .await
            .aws("EC2.CreateVpcEndpoint")?;
        required("EC2.CreateVpcEndpoint", "VPC endpoint id", out.vpc_endpoint().and_then(|e| e.vpc_endpoint_id()))
    }

    async fn update(&self, _desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        if let Some(change) = delta.fields.iter().find(|c| c.field == ROUTE_TABLES) {
            let want = split(change.desired.as_deref());
            let have = split(change.live.as_deref());
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

    async fn delete(&self, live: &Live) -> Result<(), AwsError> {
        let result = self.client.delete_vpc_endpoints().vpc_endpoint_ids(&live.handle).send().await;
        gone_is_ok(result.map(|_| ()).aws("EC2.DeleteVpcEndpoints"))
    }
}
