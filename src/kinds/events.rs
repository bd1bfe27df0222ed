//! EventBridge rules: the operator's own rule (`run --events`) that sends
//! CloudTrail's records of write calls to its event queue. Desired only while
//! the daemon runs with events ([`EnvSpec::events`]); its pattern, state,
//! target and the target's dead-letter queue are the managed fields.

use async_trait::async_trait;
use aws_sdk_eventbridge::types::{DeadLetterConfig, RuleState, Tag, Target};
use aws_sdk_eventbridge::Client;

use crate::aws::{found, gone_is_ok, AwsError, AwsResult, Built};
use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use crate::engine::{ownership_tags, Delta, Desired, FieldReader, Kind, Layer, Live, ReadCache, Rules};
use crate::kinds::read::{canonical_json, describe_each};
use crate::spec::model::{DeletionPolicy, Tags};
use crate::spec::{EnvSpec, EVENT_QUEUE_ID, EVENT_RULE_ID};

/// Kind name.
pub const KIND: &str = "events.rule";

fields! { PATTERN = "EventPattern", STATE = "State", TARGET = "Target", DEAD_LETTER = "TargetDeadLetter" }
/// The id of the rule's one target.
const TARGET_ID: &str = "sentry-operator-queue";
/// Names of the operator's rules start with this.
const PREFIX: &str = "sentry-operator-events-";

/// The EventBridge rule kind.
pub struct EventRules {
    /// The service's client.
    pub client: Client,
}

fn tag_list(tags: &Tags) -> Result<Vec<Tag>, AwsError> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build().built("EventBridge.Tag")).collect()
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["events:ListRules", "events:ListTargetsByRule", "events:ListTagsForResource"],
    grants: &[Grant::allow("TheOperatorsEventRule", &["events:PutRule", "events:PutTargets", "events:TagResource", "events:RemoveTargets", "events:DeleteRule"], &["arn:aws:events:*:*:rule/sentry-operator-events-*"])],
};

#[async_trait]
impl Kind for EventRules {
    fn rules(&self) -> Rules {
        Rules {
            events: EventMatch::of("events.amazonaws.com", &["Rule", "Targets"], &["name", "rule", "resourceARN"]).marked("rule/"),
            ..Rules::new(KIND, Layer::SecurityMonitoring).stands_for(&["AWS::Events::Rule", "aws_cloudwatch_event_rule"]).needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let (Some(plumbing), Some(aws)) = (&env.events, &env.aws) else { return Vec::new() };
        let queue_arn = |name: &str| format!("arn:aws:sqs:{}:{}:{name}", aws.region, aws.account);
        let tags = ownership_tags(env, EVENT_RULE_ID, DeletionPolicy::Delete, &Tags::new());
        let d = Desired::new(KIND, EVENT_RULE_ID, plumbing.rule.clone(), tags)
            .with(PATTERN, canonical_json(&plumbing.pattern))
            .with(STATE, RuleState::Enabled.as_str())
            .with(TARGET, queue_arn(&plumbing.queue))
            .with(DEAD_LETTER, queue_arn(&plumbing.dead_letter_queue));
        vec![d.after(super::sqs::KIND, EVENT_QUEUE_ID)]
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        // Nothing to read unless the daemon runs with events: a pass without them leaves the rule alone.
        if env.events.is_none() {
            return Ok(Vec::new());
        }
        let mut rules = Vec::new();
        let mut token = None;
        loop {
            let out = self.client.list_rules().name_prefix(PREFIX).set_next_token(token).send().await.aws("EventBridge.ListRules")?;
            rules.extend(out.rules().iter().cloned());
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let live = describe_each(rules, 4, |rule| async move {
            let (Some(name), Some(arn)) = (rule.name().map(str::to_string), rule.arn().map(str::to_string)) else { return Ok(None) };
            let Some(targets) = found(self.client.list_targets_by_rule().rule(&name).send().await.aws("EventBridge.ListTargetsByRule"))? else {
                return Ok(None);
            };
            let Some(tags) = found(self.client.list_tags_for_resource().resource_arn(&arn).send().await.aws("EventBridge.ListTagsForResource"))? else {
                return Ok(None);
            };
            let target = targets.targets().iter().find(|t| t.id() == TARGET_ID);
            let mut live = Live { name: name.clone(), handle: name, ..Live::default() }
                .with(PATTERN, rule.event_pattern().map(canonical_json).unwrap_or_default())
                .with(STATE, rule.state().map(|s| s.as_str().to_string()).unwrap_or_default())
                .with(TARGET, target.map(|t| t.arn().to_string()).unwrap_or_default())
                .with(DEAD_LETTER, target.and_then(|t| t.dead_letter_config()).and_then(|d| d.arn()).unwrap_or_default());
            live.tags = tags.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect();
            live.meta.insert("arn".into(), arn);
            Ok(Some(live))
        })
        .await?;
        Ok(live.into_iter().filter(|l| l.is_named_or_owned(&env.env, desired)).collect())
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        // PutRule on an existing name updates it: a retried create is harmless.
        let request = self.client.put_rule().name(&desired.name).event_pattern(desired.field(PATTERN)).state(RuleState::from(desired.field(STATE)));
        let request = request.description("CloudTrail's records of write calls to the estate, for sentry-operator's event-driven repair");
        request.set_tags(Some(tag_list(&desired.tags)?)).send().await.aws("EventBridge.PutRule")?;
        self.put_target(desired).await?;
        Ok(desired.name.clone())
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        if delta.fields.iter().any(|c| c.field == PATTERN || c.field == STATE) {
            let request = self.client.put_rule().name(&live.handle).event_pattern(desired.field(PATTERN)).state(RuleState::from(desired.field(STATE)));
            request.send().await.aws("EventBridge.PutRule")?;
        }
        if delta.fields.iter().any(|c| c.field == TARGET || c.field == DEAD_LETTER) {
            self.put_target(desired).await?;
        }
        if !delta.tags.is_empty() {
            let arn = live.meta("arn", "EventBridge.TagResource")?;
            self.client.tag_resource().resource_arn(arn).set_tags(Some(tag_list(&delta.tags)?)).send().await.aws("EventBridge.TagResource")?;
        }
        Ok(())
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        gone_is_ok(self.client.remove_targets().rule(&live.handle).ids(TARGET_ID).send().await.map(|_| ()).aws("EventBridge.RemoveTargets"))?;
        gone_is_ok(self.client.delete_rule().name(&live.handle).send().await.map(|_| ()).aws("EventBridge.DeleteRule"))
    }
}

impl EventRules {
    /// Points the rule at its queue, with the dead-letter queue for what cannot be delivered.
    async fn put_target(&self, desired: &Desired) -> Result<(), AwsError> {
        let dead_letter = DeadLetterConfig::builder().arn(desired.field(DEAD_LETTER)).build();
        let target = Target::builder().id(TARGET_ID).arn(desired.field(TARGET)).dead_letter_config(dead_letter).build().built("EventBridge.Target")?;
        let out = self.client.put_targets().rule(&desired.name).targets(target).send().await.aws("EventBridge.PutTargets")?;
        if out.failed_entry_count() > 0 {
            let why = out.failed_entries().iter().filter_map(|e| e.error_message()).collect::<Vec<_>>().join("; ");
            return Err(AwsError::unexpected("EventBridge.PutTargets", format!("the queue target was refused: {why}")));
        }
        Ok(())
    }
}
