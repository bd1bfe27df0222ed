//! The capacity providers of each cluster and its default strategy: the
//! cluster's own EC2 provider (when it has EC2 capacity), used by default,
//! plus any the spec lists (`FARGATE`, or an imported cluster's).
//!
//! A kind of its own, after both the cluster and its provider: the provider's
//! group and template come after the cluster, so that a cluster the operator
//! does not own gets no capacity of the operator's. It has no tags: it belongs
//! to whoever owns the cluster.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use crate::kinds::each;
use async_trait::async_trait;
use aws_sdk_ecs::types::CapacityProviderStrategyItem;
use aws_sdk_ecs::Client;

use super::capacity_provider;
use super::cluster::{self, live_clusters, PROVIDERS, STRATEGY};
use crate::aws::{AwsError, AwsResult, Built};
use crate::engine::{ownership_tags, reference, Adoption, Delta, Desired, FieldReader, Kind, Layer, Live, ReadCache, Rules, Value};
use crate::spec::model::{DeletionPolicy, Tags};
use crate::spec::{physical_name, EnvSpec};

/// Kind name.
pub const KIND: &str = "ecs.cluster-capacity-providers";

/// The cluster-capacity-providers kind.
pub struct ClusterCapacityProviders {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

/// One item of a strategy field: `provider` (weight 1, base 0) or `provider:weight:base`.
fn strategy_item(item: &str) -> Result<CapacityProviderStrategyItem, AwsError> {
    let mut parts = item.split(':');
    let provider = parts.next().unwrap_or_default();
    let number = |part: Option<&str>, default: i32| {
        part.map_or(Ok(default), |p| {
            p.parse().map_err(|_| AwsError::unexpected("ECS.PutClusterCapacityProviders", format!("{item:?} is not provider:weight:base")))
        })
    };
    let (weight, base) = (number(parts.next(), 1)?, number(parts.next(), 0)?);
    CapacityProviderStrategyItem::builder().capacity_provider(provider).weight(weight).base(base).build().built("ECS.PutClusterCapacityProviders")
}

/// The handle of a cluster's providers (distinct from the cluster's own).
fn handle(cluster_name: &str) -> String {
    format!("{cluster_name}/capacity-providers")
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &[],
    grants: &[
        Grant::allow("ComputeWrites", &["ecs:TagResource"], &["*"]),
        Grant::allow("CapacityProviderWrites", &["ecs:PutClusterCapacityProviders"], &["arn:aws:ecs:*:*:capacity-provider/sentry-*", "arn:aws:ecs:*:*:cluster/sentry-*"]),
    ],
};

#[async_trait]
impl Kind for ClusterCapacityProviders {
    fn rules(&self) -> Rules {
        Rules {
            events: EventMatch::of("ecs.amazonaws.com", &["ClusterCapacityProviders"], &["cluster"]),
            ..Rules::new(KIND, Layer::Compute)
                .stands_for(&["AWS::ECS::ClusterCapacityProviderAssociations", "aws_ecs_cluster_capacity_providers"])
                .needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        each(env.spec.compute.as_ref().map(|c| &c.clusters), |(id, cluster)| {
            let mut d =
                Desired::new(KIND, id, physical_name(cluster.name.as_deref(), id, &env.env), ownership_tags(env, id, DeletionPolicy::Delete, &Tags::new()))
                    .after(cluster::KIND, id);
            // Adopting a cluster adopts its providers: they have no tags of their own.
            if env.spec.adopt.contains_key(&format!("{}/{id}", cluster::KIND)) {
                d.adopt = Some(Adoption::ByName);
            }
            if cluster.has_capacity() {
                let own = Value::Ref(reference(capacity_provider::KIND, id));
                let providers = Value::set_of(cluster.capacity_providers.iter().map(Value::text).chain([own.clone()]));
                d.with(PROVIDERS, providers).with(STRATEGY, Value::set_of([own])).after(capacity_provider::KIND, id)
            } else {
                // Without capacity of its own, its default strategy is left as it is.
                d.with(PROVIDERS, Value::set(&cluster.capacity_providers))
            }
        })
    }

    async fn observe(&self, env: &EnvSpec, _desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let clusters = live_clusters(&self.client, env, reads).await?;
        Ok(clusters
            .iter()
            .map(|c| {
                let live = Live { name: c.name.clone(), handle: handle(&c.name), tags: c.tags.clone(), ..Live::default() };
                [PROVIDERS, STRATEGY].into_iter().fold(live, |l, f| match c.fields.get(f) {
                    Some(v) => l.with(f, v.clone()),
                    None => l,
                })
            })
            .collect())
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        // A new cluster has no strategy to keep; an update passes the live one when the spec sets none.
        let strategy = desired.items(STRATEGY).into_iter().map(|item| strategy_item(&item)).collect::<Result<Vec<_>, _>>()?;
        let request = self
            .client
            .put_cluster_capacity_providers()
            .cluster(&desired.name)
            .set_capacity_providers(Some(desired.items(PROVIDERS)))
            .set_default_capacity_provider_strategy(Some(strategy));
        request.send().await.aws("ECS.PutClusterCapacityProviders")?;
        Ok(handle(&desired.name))
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        // The tags are the cluster's, kept by the cluster kind. The call
        // replaces both lists: a strategy the spec does not set is kept.
        if !delta.fields.is_empty() {
            let mut desired = desired.clone();
            if !desired.fields.contains_key(STRATEGY) {
                // Kept, but only over providers that stay attached.
                let providers = desired.items(PROVIDERS);
                let kept = live.items(STRATEGY).into_iter().filter(|item| providers.iter().any(|p| item.split(':').next() == Some(p.as_str())));
                desired.fields.insert(STRATEGY.into(), Value::set(kept));
            }
            self.create(&desired, "", &ReadCache::default()).await?;
        }
        Ok(())
    }

    async fn delete(&self, _live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        // Deleting the cluster takes its providers' association with it.
        Ok(())
    }
}
