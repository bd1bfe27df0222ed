//! ECS clusters (`oms`, `gateway`): Container Insights, capacity providers
//! (the cluster's own EC2 provider first, as its default strategy), tags.

use async_trait::async_trait;
use aws_sdk_ecs::types::{CapacityProviderStrategyItem, ClusterField, ClusterSetting, ClusterSettingName};
use aws_sdk_ecs::Client;

use super::{add_tags, capacity_provider, tag_list, tag_map};
use crate::aws::{gone_is_ok, required, AwsError, AwsResult, Built};
use crate::engine::{list_field, list_items, ownership_tags, reference, Delta, Desired, Kind, Live, ReadCache, Rules};
use crate::spec::model::{DeletionPolicy, Tags};
use crate::spec::{physical_name, EnvSpec};

/// Kind name.
pub const KIND: &str = "ecs.cluster";

const INSIGHTS: &str = "ContainerInsights";
const PROVIDERS: &str = "CapacityProviders";
const STRATEGY: &str = "DefaultCapacityProviderStrategy";

/// The cluster kind.
pub struct Clusters {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

fn insights(value: &str) -> ClusterSetting {
    ClusterSetting::builder().name(ClusterSettingName::ContainerInsights).value(value).build()
}

/// The default strategy of `desired`: each provider it lists, weight 1, base 0.
fn strategy(desired: &Desired) -> Result<Vec<CapacityProviderStrategyItem>, AwsError> {
    list_items(desired.field(STRATEGY))
        .into_iter()
        .map(|p| CapacityProviderStrategyItem::builder().capacity_provider(p).weight(1).base(0).build().built("ECS.CapacityProviderStrategyItem"))
        .collect()
}

#[async_trait]
impl Kind for Clusters {
    fn rules(&self) -> Rules {
        Rules::new(KIND)
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(c) = &env.spec.compute else { return Vec::new() };
        c.clusters
            .iter()
            .map(|(id, cluster)| {
                let tags = ownership_tags(env, id, DeletionPolicy::Delete, &Tags::new());
                let d = Desired::new(KIND, id, physical_name(cluster.name.as_deref(), id, &env.env), tags)
                    .with(INSIGHTS, if cluster.container_insights { "enabled" } else { "disabled" });
                if cluster.has_capacity() {
                    // Its own EC2 provider, which tasks use by default.
                    let own = reference(capacity_provider::KIND, id);
                    d.with(PROVIDERS, list_field(cluster.capacity_providers.iter().chain([&own]))).with(STRATEGY, own).after(capacity_provider::KIND, id)
                } else {
                    d.with(PROVIDERS, list_field(&cluster.capacity_providers)).with(STRATEGY, "")
                }
            })
            .collect()
    }

    async fn observe(&self, _env: &EnvSpec, desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        if desired.is_empty() {
            return Ok(Vec::new());
        }
        let request = self.client.describe_clusters().set_clusters(Some(desired.iter().map(|d| d.name.clone()).collect())).include(ClusterField::Settings);
        let out = request.include(ClusterField::Tags).send().await.aws("ECS.DescribeClusters")?;
        Ok(out
            .clusters()
            .iter()
            .filter(|c| c.status() == Some("ACTIVE"))
            .filter_map(|c| {
                let insights =
                    c.settings().iter().find(|s| s.name() == Some(&ClusterSettingName::ContainerInsights)).and_then(|s| s.value()).unwrap_or("disabled");
                let l = Live { name: c.cluster_name()?.into(), handle: c.cluster_arn()?.into(), tags: tag_map(c.tags()), ..Live::default() };
                let strategy = c.default_capacity_provider_strategy().iter().map(|s| match (s.weight(), s.base()) {
                    (1, 0) => s.capacity_provider().to_string(),
                    (weight, base) => format!("{}:{weight}:{base}", s.capacity_provider()),
                });
                Some(
                    l.with(INSIGHTS, if insights == "enhanced" { "enabled" } else { insights })
                        .with(PROVIDERS, list_field(c.capacity_providers()))
                        .with(STRATEGY, list_field(strategy)),
                )
            })
            .collect())
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let request = self
            .client
            .create_cluster()
            .cluster_name(&desired.name)
            .settings(insights(desired.field(INSIGHTS)))
            .set_capacity_providers(Some(list_items(desired.field(PROVIDERS))).filter(|p| !p.is_empty()))
            .set_default_capacity_provider_strategy(Some(strategy(desired)?).filter(|s| !s.is_empty()));
        let out = request.set_tags(Some(tag_list(&desired.tags))).send().await.aws("ECS.CreateCluster")?;
        required("ECS.CreateCluster", "cluster ARN", out.cluster().and_then(|c| c.cluster_arn()))
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        let mut providers_put = false;
        for change in &delta.fields {
            match change.field.as_str() {
                INSIGHTS => {
                    self.client
                        .update_cluster_settings()
                        .cluster(&desired.name)
                        .settings(insights(change.desired.as_deref().unwrap_or("disabled")))
                        .send()
                        .await
                        .aws("ECS.UpdateClusterSettings")?;
                }
                PROVIDERS | STRATEGY if !providers_put => {
                    providers_put = true;
                    self.client
                        .put_cluster_capacity_providers()
                        .cluster(&desired.name)
                        .set_capacity_providers(Some(list_items(desired.field(PROVIDERS))))
                        .set_default_capacity_provider_strategy(Some(strategy(desired)?))
                        .send()
                        .await
                        .aws("ECS.PutClusterCapacityProviders")?;
                }
                _ => {}
            }
        }
        add_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        gone_is_ok(self.client.delete_cluster().cluster(&live.handle).send().await.map(|_| ()).aws("ECS.DeleteCluster"))
    }
}
