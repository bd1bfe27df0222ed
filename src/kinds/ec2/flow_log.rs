//! VPC flow logs to CloudWatch Logs, where the spec enables them. Every field
//! is fixed at creation, so a change replaces the flow log; disabling them in
//! the spec deletes it.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use async_trait::async_trait;
use aws_sdk_ec2::types::{FlowLog, FlowLogsResourceType, LogDestinationType, ResourceType, TrafficType};
use aws_sdk_ec2::Client;

use super::{desired, explicit_name, gone_is_ok, network, observed, put_tags, rules, tag_spec, vpc};
use crate::aws::{required, AwsError, AwsResult};
use crate::engine::{Delta, Desired, FieldReader, Importing, Kind, Live, OnImmutableChange, ReadCache, Rendering, Rules, Scope, Value};
use crate::kinds::iam;
use crate::spec::model::{self, DeletionPolicy, Spec};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "ec2.flow-log";

fields! { RESOURCE = "ResourceId", TRAFFIC = "TrafficType", LOG_GROUP = "LogGroupName", ROLE = "DeliverLogsPermissionArn" }

/// The flow-log kind.
pub struct FlowLogs {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

/// The flow log's name in environment `env` unless the spec gives one.
fn default_name(env: &str) -> String {
    format!("sentry-vpc-flow-logs-{env}")
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["ec2:DescribeVpcs", "ec2:DescribeNatGateways", "ec2:DescribeSecurityGroups", "ec2:DescribeFlowLogs"],
    grants: &[Grant::allow("NetworkWrites", &["ec2:CreateFlowLogs", "ec2:DeleteFlowLogs", "ec2:CreateTags"], &["*"])],
};

#[async_trait]
impl Kind for FlowLogs {
    fn rules(&self) -> Rules {
        // Full passes only: the role it names is not a networking kind, and
        // the whitelist guard's fast pass has no use for flow logs.
        Rules {
            immutable: &[RESOURCE, TRAFFIC, LOG_GROUP, ROLE],
            on_immutable_change: OnImmutableChange::Replace,
            scope: Scope::Full,
            events: EventMatch::of("ec2.amazonaws.com", &["FlowLog"], &["flowLogId", "FlowLogId", "FlowLogIds"]).marked("fl-"),
            ..rules(KIND).stands_for(&["AWS::EC2::FlowLog", "aws_flow_log"]).needs(PERMISSIONS).imported()
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(n) = network(env).filter(|n| n.vpc.flow_logs.enabled) else { return Vec::new() };
        let f = &n.vpc.flow_logs;
        let flow_log =
            desired(env, KIND, vpc::ID, f.name.as_deref().map_or_else(|| default_name(&env.env), |n| n.replace("${env}", &env.env)), DeletionPolicy::Delete)
                .with_reference(RESOURCE, vpc::KIND, vpc::ID)
                .with(TRAFFIC, f.traffic_type.as_deref().unwrap_or("ALL"))
                .with(LOG_GROUP, f.log_group_name(&env.env));
        vec![match &f.role {
            Some(role) => flow_log.with_reference(ROLE, iam::role::KIND, role),
            None => flow_log.with(ROLE, Value::handle(f.role_arn.clone().unwrap_or_default())),
        }]
    }

    fn import_id(&self, _live: &Live, _proposed: &str, _importing: &Importing) -> String {
        vpc::ID.to_string()
    }

    /// The VPC's flow logs, with their role by id when the spec has it, else by ARN.
    fn to_spec(&self, id: &str, live: &Live, spec: &mut Spec, importing: &Importing) -> Result<Rendering, String> {
        let n = super::imported_network(spec, live, Some(RESOURCE))?;
        if id != vpc::ID || n.vpc.flow_logs.enabled {
            return Err("a second flow log of the VPC: the spec has one".into());
        }
        if live.field(LOG_GROUP).is_empty() || live.field(ROLE).is_empty() {
            return Err("it does not deliver to CloudWatch Logs through a role, the only flow log the spec describes".into());
        }
        let role = live.fields.get(ROLE);
        n.vpc.flow_logs = model::FlowLogs {
            name: explicit_name(live, &default_name(importing.env)),
            enabled: true,
            traffic_type: Some(live.field(TRAFFIC).to_string()),
            log_group: Some(live.field(LOG_GROUP).to_string()),
            role: role.and_then(|r| r.id_of(iam::role::KIND)).map(str::to_string),
            role_arn: role.and_then(Value::as_text).filter(|r| r.starts_with("arn:")).map(str::to_string),
        };
        Ok(Rendering::whole())
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        observed(&self.client, &env.env, desired, |f: &FlowLog, l| {
            Some(
                l.with_handle(RESOURCE, f.resource_id().unwrap_or_default())
                    .with(TRAFFIC, f.traffic_type().map_or("", |t| t.as_str()))
                    .with(LOG_GROUP, f.log_group_name().unwrap_or_default())
                    .with_handle(ROLE, f.deliver_logs_permission_arn().unwrap_or_default()),
            )
        })
        .await
    }

    async fn create(&self, desired: &Desired, token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let request = self
            .client
            .create_flow_logs()
            .resource_ids(desired.field(RESOURCE))
            .resource_type(FlowLogsResourceType::Vpc)
            .traffic_type(TrafficType::from(desired.field(TRAFFIC)))
            .log_destination_type(LogDestinationType::CloudWatchLogs)
            .log_group_name(desired.field(LOG_GROUP))
            .deliver_logs_permission_arn(desired.field(ROLE))
            .client_token(token);
        let out = request.tag_specifications(tag_spec(ResourceType::VpcFlowLog, &desired.tags)).send().await.aws("EC2.CreateFlowLogs")?;
        if let Some(failure) = out.unsuccessful().first() {
            let message = failure.error().and_then(|e| e.message()).unwrap_or("unknown error").to_string();
            return Err(AwsError::unexpected("EC2.CreateFlowLogs", message));
        }
        required("EC2.CreateFlowLogs", "flow log id", out.flow_log_ids().first().map(String::as_str))
    }

    async fn update(&self, _desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        put_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        let result = self.client.delete_flow_logs().flow_log_ids(&live.handle).send().await;
        gone_is_ok(result.map(|_| ()).aws("EC2.DeleteFlowLogs"))
    }
}
