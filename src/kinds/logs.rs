//! CloudWatch Logs groups of the services, with the environment's retention
//! (7 / 14 / 30 days). Log groups hold logs: removed from the spec they are
//! retained.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::Client;

use crate::aws::{gone_is_ok, required, AwsError, AwsResult};
use crate::engine::{ownership_tags, Delta, Desired, FieldReader, Importing, Kind, Layer, Live, ReadCache, Rendering, Rules, Value};
use crate::kinds::read::common_prefix;
use crate::spec::model::{DeletionPolicy, LogGroup, Observability, Spec, Tags};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "logs.log-group";

const RETENTION: &str = "RetentionInDays";

/// The log-group kind.
pub struct LogGroups {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
    /// Tags in batch.
    pub tags: crate::kinds::read::TagIndex,
}

impl LogGroups {
    async fn set_retention(&self, name: &str, days: &str) -> Result<(), AwsError> {
        self.client.put_retention_policy().log_group_name(name).retention_in_days(days.parse().unwrap_or(7)).send().await.aws("Logs.PutRetentionPolicy")?;
        Ok(())
    }
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["logs:DescribeLogGroups", "tag:GetResources"],
    grants: &[Grant::allow("ComputeWrites", &["logs:CreateLogGroup", "logs:PutRetentionPolicy", "logs:ListTagsForResource", "logs:TagResource", "logs:DeleteLogGroup"], &["*"])],
};

#[async_trait]
impl Kind for LogGroups {
    fn rules(&self) -> Rules {
        Rules {
            events: EventMatch::of("logs.amazonaws.com", &["LogGroup", "RetentionPolicy", "KmsKey"], &["logGroupName", "logGroupIdentifier", "resourceArn"]),
            ..Rules::new(KIND, Layer::SecurityMonitoring).stands_for(&["AWS::Logs::LogGroup", "aws_cloudwatch_log_group"]).needs(PERMISSIONS).imported()
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(o) = &env.spec.observability else { return Vec::new() };
        o.log_groups
            .iter()
            .map(|(id, g)| {
                Desired::new(KIND, id, g.name.replace("${env}", &env.env), ownership_tags(env, id, DeletionPolicy::Retain, &Tags::new()))
                    .with(RETENTION, g.retention_days.unwrap_or(o.log_retention_days).to_string())
            })
            .collect()
    }

    /// Every imported group says its retention; the section's default (for
    /// groups added later) is the shortest of them.
    fn to_spec(&self, id: &str, live: &Live, spec: &mut Spec, _importing: &Importing) -> Result<Rendering, String> {
        // The spec gives every group a retention: adopting one that keeps its events forever would start deleting them.
        let days: u32 = live.field(RETENTION).parse().map_err(|_| "it keeps its events forever, which the spec cannot say".to_string())?;
        let o = spec.observability.get_or_insert_with(|| Observability {
            log_retention_days: days,
            log_groups: Default::default(),
            topics: Default::default(),
            alarm_topic: None,
            alarms: Default::default(),
        });
        o.log_retention_days = o.log_retention_days.min(days);
        o.log_groups.insert(id.to_string(), LogGroup { name: live.name.clone(), retention_days: Some(days) });
        Ok(Rendering::whole())
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        if desired.is_empty() {
            return Ok(Vec::new());
        }
        let prefix = common_prefix(desired.iter().map(|d| d.name.as_str()));
        let request = self.client.describe_log_groups().set_log_group_name_prefix((!prefix.is_empty()).then_some(prefix));
        let groups = request.into_paginator().items().send().try_collect().await.aws("Logs.DescribeLogGroups")?;
        let mut found = Vec::new();
        for g in groups {
            let Some(name) = g.log_group_name() else { continue };
            if !desired.iter().any(|d| d.name == name) {
                continue;
            }
            let arn = required("Logs.DescribeLogGroups", "log group ARN", g.arn())?.trim_end_matches(":*").to_string();
            // Only groups the spec names are read here.
            let tags = match self.tags.tags_of(&env.env, reads, &arn, true).await {
                Some(tags) => tags,
                None => {
                    let out = self.client.list_tags_for_resource().resource_arn(&arn).send().await.aws("Logs.ListTagsForResource")?;
                    out.tags().map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
                }
            };
            let retention = g.retention_in_days().map_or_else(|| "never".into(), |d| d.to_string());
            found.push(Live { name: name.into(), handle: arn, tags, ..Live::default() }.with(RETENTION, retention));
        }
        Ok(found)
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let created = self.client.create_log_group().log_group_name(&desired.name).set_tags(Some(desired.tags.clone().into_iter().collect())).send().await;
        match created.aws("Logs.CreateLogGroup") {
            Err(e) if e.code.as_deref() != Some("ResourceAlreadyExistsException") => return Err(e),
            _ => {}
        }
        if let Some(days) = desired.fields.get(RETENTION).and_then(Value::as_text) {
            self.set_retention(&desired.name, days).await?;
        }
        Ok(desired.name.clone())
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        if let Some(days) = delta.fields.iter().find(|c| c.field == RETENTION).and_then(|c| c.desired_text()) {
            self.set_retention(&desired.name, days).await?;
        }
        if !delta.tags.is_empty() {
            self.client
                .tag_resource()
                .resource_arn(&live.handle)
                .set_tags(Some(delta.tags.clone().into_iter().collect()))
                .send()
                .await
                .aws("Logs.TagResource")?;
        }
        Ok(())
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        gone_is_ok(self.client.delete_log_group().log_group_name(&live.name).send().await.map(|_| ()).aws("Logs.DeleteLogGroup"))
    }
}
