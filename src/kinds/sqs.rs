//! SQS queues: standard and FIFO, attributes, dead-letter redrive, tags.
//!
//! SQS has no batch describe: observe is one paginated ListQueues (filtered
//! by name prefix) plus GetQueueAttributes per queue, run concurrently; tags
//! come from the pass's one tagging read ([`TagIndex`]), else ListQueueTags.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_sqs::Client;
use serde::{Deserialize, Serialize};

use super::read::{canonical_json, common_prefix, describe_each, named_desired, TagIndex};
use crate::aws::{found, gone_is_ok, required, AwsError, AwsResult};
use crate::engine::{
    ownership_tags, user_tags, Adoption, Delta, Desired, FieldReader, Fields, Importing, Kind, Layer, Live, ReadCache, Rendering, Rules, Value,
};
use crate::spec::model::{DeadLetter, DeletionPolicy, Queue, Spec};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "sqs.queue";

fields! {
    VISIBILITY_TIMEOUT = "VisibilityTimeout", RETENTION = "MessageRetentionPeriod", DELAY = "DelaySeconds",
    WAIT_TIME = "ReceiveMessageWaitTimeSeconds", MAX_SIZE = "MaximumMessageSize", FIFO = "FifoQueue",
    DEDUPLICATION = "ContentBasedDeduplication", REDRIVE = "RedrivePolicy", POLICY = "Policy", ENCRYPTION = "SqsManagedSseEnabled",
}
/// Desired value of [`REDRIVE`] for a queue without a dead-letter queue.
const NO_REDRIVE: &str = "none";

/// How many queues are described at once during observe.
const DESCRIBE_CONCURRENCY: usize = 8;

/// Redrive policy in normalized form: the DLQ by name, so that desired and
/// live compare without knowing the account id.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Redrive {
    dead_letter_target: String,
    max_receive_count: u32,
}

/// The SQS queue kind.
pub struct Queues {
    /// The service's client.
    pub client: Client,
    /// Tags in batch.
    pub tags: TagIndex,
}

impl Queues {
    /// The ARN of queue `name`, asked of SQS when a redrive policy naming it
    /// is written (rare: creates and redrive changes), so no pass keeps state.
    async fn arn_of(&self, name: &str) -> Result<String, AwsError> {
        let out = self.client.get_queue_url().queue_name(name).send().await.aws("SQS.GetQueueUrl")?;
        let url = required("SQS.GetQueueUrl", "queue URL", out.queue_url())?;
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .aws("SQS.GetQueueAttributes")?
            .attributes
            .unwrap_or_default();
        required("SQS.GetQueueAttributes", "queue ARN", attributes.get(&QueueAttributeName::QueueArn).map(String::as_str))
    }

    /// Turns desired/delta fields into SQS attributes (redrive resolved to an ARN).
    async fn attributes<'a>(&self, fields: impl Iterator<Item = (&'a str, &'a str)>) -> Result<HashMap<QueueAttributeName, String>, AwsError> {
        let mut out = HashMap::new();
        for (field, value) in fields {
            let value = if field == REDRIVE {
                if value == NO_REDRIVE {
                    String::new()
                } else {
                    let r: Redrive =
                        serde_json::from_str(value).map_err(|e| AwsError::unexpected("SQS.SetQueueAttributes", format!("bad redrive value {value}: {e}")))?;
                    let arn = self.arn_of(&r.dead_letter_target).await?;
                    serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": r.max_receive_count }).to_string()
                }
            } else {
                value.to_string()
            };
            out.insert(QueueAttributeName::from(field), value);
        }
        Ok(out)
    }

    /// Reads one queue; `None` if it vanished since it was listed.
    async fn describe(&self, env: &str, reads: &ReadCache, desired: &[Desired], url: String) -> Result<Option<Live>, AwsError> {
        let Some(out) =
            found(self.client.get_queue_attributes().queue_url(&url).attribute_names(QueueAttributeName::All).send().await.aws("SQS.GetQueueAttributes"))?
        else {
            return Ok(None);
        };
        let attributes = out.attributes.unwrap_or_default();
        let arn = attributes.get(&QueueAttributeName::QueueArn).map(String::as_str).unwrap_or_default();
        let name = url.rsplit('/').next().unwrap_or_default().to_string();
        let tags = match self.tags.tags_of(env, reads, arn, desired.iter().any(|d| d.name == name)).await {
            Some(tags) => tags,
            None => match found(self.client.list_queue_tags().queue_url(&url).send().await.aws("SQS.ListQueueTags"))? {
                Some(out) => out.tags.unwrap_or_default().into_iter().collect(),
                None => return Ok(None),
            },
        };
        let raw: BTreeMap<String, String> = attributes.into_iter().map(|(k, v)| (k.as_str().to_string(), v)).collect();
        Ok(Some(Live { name, handle: url, fields: normalize(&raw), tags, ..Live::default() }))
    }
}

/// Keeps the managed attributes, with the redrive policy in normalized form.
fn normalize(raw: &BTreeMap<String, String>) -> Fields {
    let mut fields: Fields = [VISIBILITY_TIMEOUT, RETENTION, DELAY, WAIT_TIME, MAX_SIZE, FIFO, DEDUPLICATION, ENCRYPTION]
        .into_iter()
        .filter_map(|k| raw.get(k).map(|v| (k.to_string(), Value::text(v))))
        .collect();
    if let Some(policy) = raw.get(POLICY).filter(|p| !p.is_empty()) {
        fields.insert(POLICY.into(), Value::from(canonical_json(policy)));
    }
    let redrive = raw.get(REDRIVE).filter(|v| !v.is_empty()).and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok()).and_then(|v| {
        let arn = v.get("deadLetterTargetArn")?.as_str()?;
        let count = match v.get("maxReceiveCount")? {
            serde_json::Value::Number(n) => n.as_u64()?,
            serde_json::Value::String(s) => s.parse().ok()?,
            _ => return None,
        };
        let target = arn.rsplit(':').next()?.to_string();
        serde_json::to_string(&Redrive { dead_letter_target: target, max_receive_count: u32::try_from(count).ok()? }).ok()
    });
    fields.insert(REDRIVE.into(), Value::from(redrive.unwrap_or_else(|| NO_REDRIVE.into())));
    fields
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["sqs:ListQueues", "tag:GetResources"],
    grants: &[Grant::allow("QueueWrites", &["sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:ListQueueTags", "sqs:CreateQueue", "sqs:SetQueueAttributes", "sqs:TagQueue", "sqs:DeleteQueue"], &["arn:aws:sqs:*:*:sentry-*"])],
};

#[async_trait]
impl Kind for Queues {
    fn rules(&self) -> Rules {
        Rules {
            immutable: &[FIFO],
            events: EventMatch::of("sqs.amazonaws.com", &["Queue", "Permission"], &["queueUrl", "QueueUrl", "queueName", "QueueName"]),
            ..Rules::new(KIND, Layer::DataMessaging).stands_for(&["AWS::SQS::Queue", "aws_sqs_queue"]).needs(PERMISSIONS).imported()
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(messaging) = &env.spec.messaging else { return Vec::new() };
        messaging
            .queues
            .iter()
            .map(|(id, q)| {
                let a = q.attributes().or(&messaging.queue_defaults);
                let mut d = Desired {
                    adopt: q.adopt.then_some(Adoption::ByName),
                    ..Desired::new(KIND, id, q.physical_name(id, &env.env), ownership_tags(env, id, q.deletion_policy, &q.tags))
                };
                for (field, value) in [
                    (VISIBILITY_TIMEOUT, a.visibility_timeout_seconds),
                    (RETENTION, a.message_retention_seconds),
                    (DELAY, a.delay_seconds),
                    (WAIT_TIME, a.receive_wait_time_seconds),
                    (MAX_SIZE, a.max_message_size_bytes),
                ] {
                    if let Some(v) = value {
                        d = d.with(field, v.to_string());
                    }
                }
                if let Some(policy) = &q.access_policy {
                    d = d.with(POLICY, canonical_json(&env.substitute(policy)));
                }
                if q.managed_encryption {
                    d = d.with(ENCRYPTION, "true");
                }
                if q.fifo {
                    d = d.with(FIFO, "true").with(DEDUPLICATION, q.content_based_deduplication.unwrap_or(false).to_string());
                }
                match &q.dead_letter {
                    Some(dl) => {
                        let target = messaging.queues.get(&dl.queue).map(|t| t.physical_name(&dl.queue, &env.env)).unwrap_or_default();
                        let redrive =
                            serde_json::to_string(&Redrive { dead_letter_target: target, max_receive_count: dl.max_receive_count }).unwrap_or_default();
                        d.with(REDRIVE, redrive).after(KIND, &dl.queue)
                    }
                    None => d.with(REDRIVE, NO_REDRIVE),
                }
            })
            .collect()
    }

    fn to_spec(&self, id: &str, live: &Live, spec: &mut Spec, importing: &Importing) -> Result<Rendering, String> {
        let number = |field: &str| live.field(field).parse().ok();
        let fifo = live.field(FIFO) == "true";
        let mut unsaid = Vec::new();
        let dead_letter = serde_json::from_str::<Redrive>(live.field(REDRIVE)).ok().and_then(|r| match importing.id_named(KIND, &r.dead_letter_target) {
            Some(queue) => Some(DeadLetter { queue: queue.to_string(), max_receive_count: r.max_receive_count }),
            None => {
                unsaid.push(format!("its dead-letter queue {} is not imported", r.dead_letter_target));
                None
            }
        });
        let mut queue = Queue {
            fifo,
            content_based_deduplication: fifo.then(|| live.field(DEDUPLICATION) == "true"),
            visibility_timeout_seconds: number(VISIBILITY_TIMEOUT),
            message_retention_seconds: number(RETENTION),
            delay_seconds: number(DELAY),
            receive_wait_time_seconds: number(WAIT_TIME),
            max_message_size_bytes: number(MAX_SIZE),
            dead_letter,
            tags: user_tags(live.tags.clone()),
            deletion_policy: DeletionPolicy::Retain,
            ..Queue::default()
        };
        if queue.physical_name(id, importing.env) != live.name {
            queue.name = Some(live.name.clone());
        }
        spec.messaging.get_or_insert_with(Default::default).queues.insert(id.to_string(), queue);
        Ok(Rendering::without(unsaid))
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        // A pass narrowed to some queues (an event's) reads just those: one GetQueueUrl each, no listing.
        if let Some(ids) = reads.named(KIND) {
            let mut urls = Vec::new();
            for name in named_desired(desired, ids) {
                if let Some(out) = found(self.client.get_queue_url().queue_name(&name).send().await.aws("SQS.GetQueueUrl"))? {
                    urls.push(required("SQS.GetQueueUrl", "queue URL", out.queue_url())?);
                }
            }
            return describe_each(urls, DESCRIBE_CONCURRENCY, |url| self.describe(&env.env, reads, desired, url)).await;
        }
        // Names share the `sentry-` convention; the prefix narrows the list to it (or to nothing, if a name breaks it).
        let prefix = common_prefix(std::iter::once("sentry-").chain(desired.iter().map(|d| d.name.as_str())));
        let request = self.client.list_queues().max_results(1000).set_queue_name_prefix((!prefix.is_empty()).then_some(prefix));
        let urls = request.into_paginator().items().send().try_collect().await.aws("SQS.ListQueues")?;
        // Only what the operator could own: its naming convention, or a name the spec gives (an adopted queue).
        let ours = |url: &String| url.rsplit('/').next().is_some_and(|name| name.starts_with("sentry-") || desired.iter().any(|d| d.name == name));
        describe_each(urls.into_iter().filter(ours).collect(), DESCRIBE_CONCURRENCY, |url| self.describe(&env.env, reads, desired, url)).await
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let attributes = self.attributes(desired.fields.iter().filter_map(|(k, v)| Some((k.as_str(), v.as_text()?)))).await?;
        let attributes = attributes.into_iter().filter(|(k, v)| !(*k == QueueAttributeName::RedrivePolicy && v.is_empty())).collect();
        let request = self.client.create_queue().queue_name(&desired.name).set_attributes(Some(attributes));
        let created = request.set_tags(Some(desired.tags.clone().into_iter().collect())).send().await.aws("SQS.CreateQueue")?;
        required("SQS.CreateQueue", "queue URL", created.queue_url.as_deref())
    }

    async fn update(&self, _desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        if !delta.fields.is_empty() {
            let changed = delta.fields.iter().filter_map(|c| c.desired_text().map(|v| (c.field.as_str(), v)));
            let attributes = self.attributes(changed).await?;
            self.client.set_queue_attributes().queue_url(&live.handle).set_attributes(Some(attributes)).send().await.aws("SQS.SetQueueAttributes")?;
        }
        if !delta.tags.is_empty() {
            self.client.tag_queue().queue_url(&live.handle).set_tags(Some(delta.tags.clone().into_iter().collect())).send().await.aws("SQS.TagQueue")?;
        }
        Ok(())
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        gone_is_ok(self.client.delete_queue().queue_url(&live.handle).send().await.map(|_| ()).aws("SQS.DeleteQueue"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_is_normalized_to_the_queue_name() {
        let raw: BTreeMap<String, String> = [
            ("VisibilityTimeout".to_string(), "30".to_string()),
            ("QueueArn".to_string(), "arn:aws:sqs:us-east-1:1:q".to_string()),
            ("RedrivePolicy".to_string(), r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:q-dlq","maxReceiveCount":"5"}"#.to_string()),
        ]
        .into_iter()
        .collect();
        let f = normalize(&raw);
        assert_eq!(f.get(REDRIVE).and_then(Value::as_text), Some(r#"{"deadLetterTarget":"q-dlq","maxReceiveCount":5}"#));
        assert_eq!(f.get(VISIBILITY_TIMEOUT).and_then(Value::as_text), Some("30"));
        assert!(!f.contains_key("QueueArn"));
        assert_eq!(normalize(&BTreeMap::new()).get(REDRIVE).and_then(Value::as_text), Some(NO_REDRIVE));
    }
}
