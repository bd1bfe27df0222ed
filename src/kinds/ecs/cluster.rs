//! ECS clusters (`oms`, `gateway`): Container Insights and tags; their
//! capacity providers are [`super::cluster_capacity`]'s.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use crate::kinds::each;
use async_trait::async_trait;
use std::sync::Arc;

use aws_sdk_ecs::types::{ClusterField, ClusterSetting, ClusterSettingName};
use aws_sdk_ecs::Client;

use super::{add_tags, tag_list, tag_map};
use crate::aws::{gone_is_ok, required, AwsError, AwsResult};
use crate::engine::{ownership_tags, Delta, Desired, FieldReader, Importing, Kind, Layer, Live, ReadCache, Rendering, Rules, Value};
use crate::spec::model::{Cluster, Compute, DeletionPolicy, Spec, Tags};
use crate::spec::{physical_name, EnvSpec};

/// Kind name.
pub const KIND: &str = "ecs.cluster";

const INSIGHTS: &str = "ContainerInsights";
/// Field of the live cluster, managed by [`super::cluster_capacity`].
pub const PROVIDERS: &str = "CapacityProviders";
/// Field of the live cluster, managed by [`super::cluster_capacity`].
pub const STRATEGY: &str = "DefaultCapacityProviderStrategy";

/// The cluster kind.
pub struct Clusters {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

fn insights(value: &str) -> ClusterSetting {
    ClusterSetting::builder().name(ClusterSettingName::ContainerInsights).value(value).build()
}

/// The spec's clusters as they are (capacity providers and default strategy
/// included, for the provider kind): one DescribeClusters a pass, shared.
pub async fn live_clusters(client: &Client, env: &EnvSpec, reads: &ReadCache) -> Result<Arc<Vec<Live>>, AwsError> {
    reads
        .get("ECS.DescribeClusters(spec)", || async {
            let names: Vec<String> = env.spec.compute.iter().flat_map(|c| &c.clusters).map(|(id, c)| physical_name(c.name.as_deref(), id, &env.env)).collect();
            described(client, names).await
        })
        .await
}

/// The active clusters of `names`, as they are.
async fn described(client: &Client, names: Vec<String>) -> Result<Vec<Live>, AwsError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let request = client.describe_clusters().set_clusters(Some(names)).include(ClusterField::Settings);
    let out = request.include(ClusterField::Tags).send().await.aws("ECS.DescribeClusters")?;
    Ok(out.clusters().iter().filter(|c| c.status() == Some("ACTIVE")).filter_map(live_cluster).collect())
}

fn live_cluster(c: &aws_sdk_ecs::types::Cluster) -> Option<Live> {
    let insights = c.settings().iter().find(|s| s.name() == Some(&ClusterSettingName::ContainerInsights)).and_then(|s| s.value()).unwrap_or("disabled");
    let l = Live { name: c.cluster_name()?.into(), handle: c.cluster_arn()?.into(), tags: tag_map(c.tags()), ..Live::default() };
    let strategy = c.default_capacity_provider_strategy().iter().map(|s| match (s.weight(), s.base()) {
        (1, 0) => Value::handle(s.capacity_provider()),
        // A weighted item names its provider inside its text: it matches no item the spec writes.
        (weight, base) => Value::text(format!("{}:{weight}:{base}", s.capacity_provider())),
    });
    Some(
        l.with(INSIGHTS, if insights == "enhanced" { "enabled" } else { insights })
            .with(PROVIDERS, Value::handles(c.capacity_providers()))
            .with(STRATEGY, Value::set_of(strategy)),
    )
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["ecs:DescribeClusters"],
    grants: &[
        Grant::allow("ComputeWrites", &["ecs:CreateCluster", "ecs:UpdateClusterSettings", "ecs:DeleteCluster", "ecs:TagResource"], &["*"]),
        crate::kinds::SERVICE_LINKED_ROLES,
    ],
};

#[async_trait]
impl Kind for Clusters {
    fn rules(&self) -> Rules {
        Rules {
            events: EventMatch::of("ecs.amazonaws.com", &["Cluster"], &["cluster", "clusterName", "clusterArn"]).marked("cluster/"),
            ..Rules::new(KIND, Layer::Compute).stands_for(&["AWS::ECS::Cluster", "aws_ecs_cluster"]).needs(PERMISSIONS).imported()
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        each(env.spec.compute.as_ref().map(|c| &c.clusters), |(id, cluster)| {
            let tags = ownership_tags(env, id, DeletionPolicy::Delete, &Tags::new());
            Desired::new(KIND, id, physical_name(cluster.name.as_deref(), id, &env.env), tags)
                .with(INSIGHTS, if cluster.container_insights { "enabled" } else { "disabled" })
        })
    }

    /// Its EC2 capacity (launch template, Auto Scaling group, capacity
    /// provider) is not imported yet: the entry lists the providers as they are.
    fn to_spec(&self, id: &str, live: &Live, spec: &mut Spec, importing: &Importing) -> Result<Rendering, String> {
        let providers = live.items(PROVIDERS);
        let cluster = Cluster {
            name: importing.explicit_name(id, &live.name),
            container_insights: live.field(INSIGHTS) != "disabled",
            capacity_providers: providers.clone(),
            ..Cluster::default()
        };
        spec.compute.get_or_insert_with(Compute::default).clusters.insert(id.to_string(), cluster);
        let own_capacity = providers.iter().any(|p| !p.starts_with("FARGATE"));
        Ok(Rendering::without(own_capacity.then(|| {
            "its EC2 capacity (launch template, Auto Scaling group, capacity provider) is left out of the spec: add instanceType, the sizes and \
             instanceRole, and adopt its launch template, group and capacity provider by id"
                .to_string()
        })))
    }

    /// The spec's clusters (one read a pass, shared), and those only the
    /// desired resources name (`import`'s).
    async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let mut found = live_clusters(&self.client, env, reads).await?.as_ref().clone();
        let in_spec = |name: &str| env.spec.compute.iter().flat_map(|c| &c.clusters).any(|(id, c)| physical_name(c.name.as_deref(), id, &env.env) == name);
        let others: Vec<String> = desired.iter().map(|d| d.name.clone()).filter(|n| !in_spec(n)).collect();
        found.extend(described(&self.client, others).await?);
        Ok(found)
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let request = self.client.create_cluster().cluster_name(&desired.name).settings(insights(desired.field(INSIGHTS)));
        let out = request.set_tags(Some(tag_list(&desired.tags))).send().await.aws("ECS.CreateCluster")?;
        required("ECS.CreateCluster", "cluster ARN", out.cluster().and_then(|c| c.cluster_arn()))
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        if delta.fields.iter().any(|c| c.field == INSIGHTS) {
            let request = self.client.update_cluster_settings().cluster(&desired.name).settings(insights(desired.field(INSIGHTS)));
            request.send().await.aws("ECS.UpdateClusterSettings")?;
        }
        add_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        gone_is_ok(self.client.delete_cluster().cluster(&live.handle).send().await.map(|_| ()).aws("ECS.DeleteCluster"))
    }
}
