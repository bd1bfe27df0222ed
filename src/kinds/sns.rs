//! SNS topics the alarms notify, with their subscriptions. The operator owns
//! a topic's list of subscriptions: a missing one is subscribed, one added
//! by hand is removed. A subscription waiting for its endpoint's
//! confirmation counts as present (subscribing again would only send the
//! confirmation again) and is reported in the plan.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use crate::kinds::each;
use async_trait::async_trait;
use aws_sdk_sns::types::{Subscription, Tag};
use aws_sdk_sns::Client;

use crate::aws::{gone_is_ok, required, AwsError, AwsResult, Built};
use crate::engine::{ownership_tags, Delta, Desired, FieldReader, Kind, Layer, Live, ReadCache, Rules, Value};
use crate::kinds::read::describe_each;
use crate::spec::model::Tags;
use crate::spec::{physical_name, EnvSpec};

/// Kind name.
pub const KIND: &str = "sns.topic";

/// The subscriptions, each `protocol:endpoint`.
const SUBSCRIPTIONS: &str = "Subscriptions";
/// What SNS reports instead of an ARN for a subscription not yet confirmed.
const PENDING: &str = "PendingConfirmation";
/// The meta key of a subscription's ARN.
fn subscription_meta(entry: &str) -> String {
    format!("subscription {entry}")
}

/// The topic kind.
pub struct Topics {
    /// The service's client.
    pub client: Client,
    /// Tags in batch.
    pub tags: crate::kinds::read::TagIndex,
}

fn tag_list(tags: &Tags) -> Result<Vec<Tag>, AwsError> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build().built("SNS.Tag")).collect()
}

/// The live form of a topic's subscriptions: the field (pending ones
/// included), each confirmed one's ARN as meta, and the plan's note on those
/// still waiting for confirmation.
fn subscriptions(live: Live, listed: &[Subscription]) -> Live {
    let entries: Vec<(String, &str)> =
        listed.iter().filter_map(|s| Some((format!("{}:{}", s.protocol()?, s.endpoint()?), s.subscription_arn().unwrap_or(PENDING)))).collect();
    let pending: Vec<&str> = entries.iter().filter(|(_, arn)| *arn == PENDING).map(|(e, _)| e.as_str()).collect();
    let status = (!pending.is_empty()).then(|| format!("pending confirmation by the endpoint: {}", pending.join(", ")));
    let mut live = live.with(SUBSCRIPTIONS, Value::set(entries.iter().map(|(e, _)| e)));
    live.meta.extend(entries.iter().filter(|(_, arn)| *arn != PENDING).map(|(e, arn)| (subscription_meta(e), arn.to_string())));
    Live { status, ..live }
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["sns:ListTopics", "sns:ListTagsForResource", "sns:ListSubscriptionsByTopic", "tag:GetResources"],
    grants: &[Grant::allow("TopicWrites", &["sns:CreateTopic", "sns:Subscribe", "sns:Unsubscribe", "sns:TagResource", "sns:DeleteTopic"], &["arn:aws:sns:*:*:sentry-*"])],
};

#[async_trait]
impl Kind for Topics {
    fn rules(&self) -> Rules {
        Rules {
            events: EventMatch::of("sns.amazonaws.com", &[], &["topicArn", "TopicArn", "resourceArn", "name"]),
            ..Rules::new(KIND, Layer::SecurityMonitoring)
                .stands_for(&["AWS::SNS::Topic", "aws_sns_topic"])
                .with_parts(&[("AWS::SNS::Subscription", "a subscription of its topic"), ("aws_sns_topic_subscription", "a subscription of its topic")])
                .needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        each(env.spec.observability.as_ref().map(|o| &o.topics), |(id, t)| {
            Desired::new(KIND, id, physical_name(t.name.as_deref(), id, &env.env), ownership_tags(env, id, t.deletion_policy, &t.tags))
                .with(SUBSCRIPTIONS, Value::set(t.subscriptions.iter().map(|s| format!("{}:{}", s.protocol, env.substitute(&s.endpoint)))))
        })
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        // Every topic ARN in one paginated read; tags and subscriptions per candidate.
        let topics: Vec<_> = self.client.list_topics().into_paginator().items().send().try_collect().await.aws("SNS.ListTopics")?;
        let name_of = |arn: &str| arn.rsplit(':').next().unwrap_or_default().to_string();
        let ours = |n: &str| n.starts_with("sentry-") || desired.iter().any(|d| d.name == n);
        let candidates: Vec<String> = topics.iter().filter_map(|t| t.topic_arn()).filter(|arn| ours(&name_of(arn))).map(str::to_string).collect();
        let live = describe_each(candidates, 4, |arn| async move {
            let tags = match self.tags.tags_of(&env.env, reads, &arn, desired.iter().any(|d| d.name == name_of(&arn))).await {
                Some(tags) => tags,
                None => {
                    let out = self.client.list_tags_for_resource().resource_arn(&arn).send().await.aws("SNS.ListTagsForResource")?;
                    out.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect()
                }
            };
            let listed: Result<Vec<_>, _> = self.client.list_subscriptions_by_topic().topic_arn(&arn).into_paginator().items().send().try_collect().await;
            let listed = listed.aws("SNS.ListSubscriptionsByTopic")?;
            Ok(Some(subscriptions(Live { name: name_of(&arn), handle: arn, tags, ..Live::default() }, &listed)))
        })
        .await?;
        Ok(live.into_iter().filter(|l| l.is_named_or_owned(&env.env, desired)).collect())
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        // CreateTopic returns the existing topic when called again with the same name and tags.
        let out = self.client.create_topic().name(&desired.name).set_tags(Some(tag_list(&desired.tags)?)).send().await.aws("SNS.CreateTopic")?;
        let arn = required("SNS.CreateTopic", "topic ARN", out.topic_arn())?;
        for entry in desired.items(SUBSCRIPTIONS) {
            self.subscribe(&arn, &entry).await?;
        }
        Ok(arn)
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        if delta.fields.iter().any(|c| c.field == SUBSCRIPTIONS) {
            let wanted = desired.items(SUBSCRIPTIONS);
            let present = live.items(SUBSCRIPTIONS);
            for entry in wanted.iter().filter(|e| !present.contains(e)) {
                self.subscribe(&live.handle, entry).await?;
            }
            // A pending subscription has no ARN to remove: SNS drops it after three days.
            for arn in present.iter().filter(|e| !wanted.contains(e)).filter_map(|e| live.meta.get(&subscription_meta(e))) {
                gone_is_ok(self.client.unsubscribe().subscription_arn(arn).send().await.map(|_| ()).aws("SNS.Unsubscribe"))?;
            }
        }
        if !delta.tags.is_empty() {
            self.client.tag_resource().resource_arn(&live.handle).set_tags(Some(tag_list(&delta.tags)?)).send().await.aws("SNS.TagResource")?;
        }
        Ok(())
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        gone_is_ok(self.client.delete_topic().topic_arn(&live.handle).send().await.map(|_| ()).aws("SNS.DeleteTopic"))
    }
}

impl Topics {
    async fn subscribe(&self, topic: &str, entry: &str) -> Result<(), AwsError> {
        let (protocol, endpoint) =
            entry.split_once(':').ok_or_else(|| AwsError::unexpected("SNS.Subscribe", format!("{entry:?} is not `protocol:endpoint`")))?;
        self.client.subscribe().topic_arn(topic).protocol(protocol).endpoint(endpoint).send().await.aws("SNS.Subscribe")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_with_commas_and_spaces_is_one_subscription() {
        let endpoint = "https://hooks.example/alerts?to=a,b&note=x y";
        let listed = Subscription::builder().protocol("https").endpoint(endpoint).subscription_arn("arn:aws:sns:r:1:t:abc").build();
        let live = subscriptions(Live::default(), &[listed]);
        assert_eq!(live.items(SUBSCRIPTIONS), [format!("https:{endpoint}")]);
    }

    #[test]
    fn a_pending_subscription_counts_as_present_and_is_reported() {
        let confirmed = Subscription::builder().protocol("https").endpoint("https://hooks.example/alerts").subscription_arn("arn:aws:sns:r:1:t:abc").build();
        let pending = Subscription::builder().protocol("email").endpoint("oncall@example.com").subscription_arn(PENDING).build();
        let live = subscriptions(Live::default(), &[confirmed, pending]);
        assert_eq!(live.shown(SUBSCRIPTIONS), "email:oncall@example.com,https:https://hooks.example/alerts");
        assert_eq!(live.status.as_deref(), Some("pending confirmation by the endpoint: email:oncall@example.com"));
        assert_eq!(live.meta.len(), 1, "only a confirmed subscription can be removed");
    }
}
