//! ECS services: desired count, task definition revision, awsvpc network
//! configuration (private subnets, security groups), deployment settings,
//! the target group the tasks are registered in.
//! Updated in place; deleted only with `deletionPolicy: delete`, and scaled
//! to zero first.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_ecs::types::{AssignPublicIp, AwsVpcConfiguration, DeploymentConfiguration, LaunchType, LoadBalancer, NetworkConfiguration, ServiceField};
use aws_sdk_ecs::Client;

use super::{add_tags, cluster, tag_list, tag_map, task_definition};
use crate::aws::{required, AwsError, AwsResult, Built, ErrorClass};
use crate::engine::{ownership_tags, reference, Delta, Desired, FieldReader, Kind, Layer, Live, ReadCache, Rules, Value};
use crate::kinds::ec2::{security_group, subnet};
use crate::kinds::elbv2;
use crate::spec::model::Tags;
use crate::spec::{physical_name, EnvSpec};

/// Kind name.
pub const KIND: &str = "ecs.service";

fields! {
    CLUSTER = "Cluster", TASK = "TaskDefinition", COUNT = "DesiredCount", SUBNETS = "Subnets", GROUPS = "SecurityGroups",
    MIN_HEALTHY = "MinimumHealthyPercent", MAX_PERCENT = "MaximumPercent", LAUNCH = "LaunchType",
}
/// The target groups the tasks are registered in: `<target group> <container> <port>`
/// items joined with `;` (empty for none).
const LOAD_BALANCERS: &str = "LoadBalancers";
/// Seconds ECS ignores a new task's failing target health checks (set with a load balancer).
const HEALTH_CHECK_GRACE_SECONDS: i32 = 60;
/// DescribeServices takes at most this many names per call.
const DESCRIBE_BATCH: usize = 10;

/// The service kind.
pub struct Services {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

fn network(desired: &Desired) -> Result<NetworkConfiguration, AwsError> {
    desired.resolved(&[SUBNETS, GROUPS], "ECS.CreateService")?;
    let (subnets, groups) = (desired.items(SUBNETS), desired.items(GROUPS));
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(subnets))
        .set_security_groups(Some(groups))
        .assign_public_ip(AssignPublicIp::Disabled)
        .build()
        .built("ECS.CreateService")?;
    Ok(NetworkConfiguration::builder().awsvpc_configuration(vpc).build())
}

fn deployment(desired: &Desired) -> DeploymentConfiguration {
    let number = |f: &str| desired.fields.get(f).and_then(Value::as_text).and_then(|v| v.parse().ok());
    DeploymentConfiguration::builder().set_minimum_healthy_percent(number(MIN_HEALTHY)).set_maximum_percent(number(MAX_PERCENT)).build()
}

/// Load balancer registrations as the [`LOAD_BALANCERS`] field value (sorted, so AWS's order never shows).
fn load_balancers_text(registrations: &[LoadBalancer]) -> Value {
    Value::set_of(registrations.iter().map(|r| {
        let (container, port) = (r.container_name().unwrap_or_default(), r.container_port().unwrap_or_default());
        Value::Phrase(vec![Value::handle(r.target_group_arn().unwrap_or_default()), Value::text(container), Value::text(port.to_string())])
    }))
}

/// The registrations a (resolved) [`LOAD_BALANCERS`] value stands for, for
/// the call `operation`: an error for a target group never created.
fn load_balancers(desired: &Desired, operation: &'static str) -> Result<Vec<LoadBalancer>, AwsError> {
    let registrations = desired.fields.get(LOAD_BALANCERS).map(Value::items).unwrap_or_default();
    registrations
        .into_iter()
        .map(|item| match item.resolved(operation)?.items().into_iter().filter_map(Value::as_text).collect::<Vec<_>>().as_slice() {
            [group, container, port] => {
                let port = port.parse().map_err(|_| AwsError::unexpected(operation, format!("{}: container port {port:?} is not a number", desired.name)))?;
                Ok(LoadBalancer::builder().target_group_arn(*group).container_name(*container).container_port(port).build())
            }
            _ => Err(AwsError::unexpected(operation, format!("{}: \"{item}\" is not `<target group> <container> <port>`", desired.name))),
        })
        .collect()
}

/// The services of the spec's clusters (the cluster name in their `meta`):
/// one read a pass, shared by the service kind and the auto scaling kinds,
/// whose resources belong to whoever owns the service they scale.
pub async fn live_services(client: &Client, env: &EnvSpec, reads: &ReadCache) -> Result<Arc<Vec<Live>>, AwsError> {
    reads
        .get("ECS.DescribeServices(clusters of the spec)", || async {
            let Some(c) = &env.spec.compute else { return Ok(Vec::new()) };
            let mut found = Vec::new();
            for (id, spec_cluster) in &c.clusters {
                let cluster_name = physical_name(spec_cluster.name.as_deref(), id, &env.env);
                let listed = client.list_services().cluster(&cluster_name).into_paginator().items().send().try_collect().await;
                let arns: Vec<String> = crate::aws::found(listed.aws("ECS.ListServices"))?.unwrap_or_default(); // none while the cluster does not exist
                for batch in arns.chunks(DESCRIBE_BATCH) {
                    let request = client.describe_services().cluster(&cluster_name).set_services(Some(batch.to_vec()));
                    let out = request.include(ServiceField::Tags).send().await.aws("ECS.DescribeServices")?;
                    for s in out.services().iter().filter(|s| s.status() == Some("ACTIVE")) {
                        let (Some(name), Some(arn)) = (s.service_name(), s.service_arn()) else { continue };
                        let vpc = s.network_configuration().and_then(|n| n.awsvpc_configuration());
                        let deployment = s.deployment_configuration();
                        let meta = [(CLUSTER.to_string(), cluster_name.clone())].into();
                        let l = Live { name: name.into(), handle: arn.into(), tags: tag_map(s.tags()), meta, ..Live::default() };
                        found.push(
                            l.with_handle(CLUSTER, s.cluster_arn().unwrap_or_default())
                                .with_handle(TASK, s.task_definition().unwrap_or_default())
                                .with(COUNT, s.desired_count().to_string())
                                .with(SUBNETS, Value::handles(vpc.map(|v| v.subnets()).unwrap_or_default()))
                                .with(GROUPS, Value::handles(vpc.map(|v| v.security_groups()).unwrap_or_default()))
                                .with(MIN_HEALTHY, deployment.and_then(|d| d.minimum_healthy_percent()).unwrap_or(100).to_string())
                                .with(MAX_PERCENT, deployment.and_then(|d| d.maximum_percent()).unwrap_or(200).to_string())
                                .with(LAUNCH, s.launch_type().map_or("EC2", |t| t.as_str()))
                                .with(LOAD_BALANCERS, load_balancers_text(s.load_balancers())),
                        );
                    }
                }
            }
            Ok(found)
        })
        .await
}

/// The name of the cluster a live service (from [`live_services`]) runs in.
pub fn cluster_of(service: &Live) -> &str {
    service.meta.get(CLUSTER).map_or("", String::as_str)
}

/// The physical name of service `id` (`name` as the spec gives it, else `sentry-<id>-service-<env>`).
pub fn service_name(name: Option<&str>, id: &str, env: &str) -> String {
    physical_name(name, &format!("{id}-service"), env)
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["ecs:ListServices", "ecs:DescribeServices"],
    grants: &[Grant::allow("ComputeWrites", &["ecs:CreateService", "ecs:UpdateService", "ecs:DeleteService", "ecs:TagResource"], &["*"])],
};

#[async_trait]
impl Kind for Services {
    fn rules(&self) -> Rules {
        Rules {
            immutable: &[CLUSTER, LAUNCH],
            events: EventMatch::of("ecs.amazonaws.com", &["Service"], &["service", "serviceName", "serviceArn"]).marked("service/"),
            ..Rules::new(KIND, Layer::Compute).stands_for(&["AWS::ECS::Service", "aws_ecs_service"]).needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let (Some(c), Some(n)) = (&env.spec.compute, &env.spec.network) else { return Vec::new() };
        c.services
            .iter()
            .map(|(id, s)| {
                let subnets = n.subnets.iter().filter(|(_, sn)| sn.tier == s.subnets).map(|(sid, _)| sid.as_str());
                let name = service_name(s.name.as_deref(), id, &env.env);
                let d = Desired::new(KIND, id, name, ownership_tags(env, id, s.deletion_policy, &Tags::new()))
                    .with_reference(CLUSTER, cluster::KIND, &s.cluster)
                    .with_reference(TASK, task_definition::KIND, &s.task_definition)
                    .with(COUNT, s.desired_count.to_string())
                    .with_references(SUBNETS, subnet::KIND, subnets)
                    .with_references(GROUPS, security_group::KIND, s.security_groups.iter().map(String::as_str))
                    .with(MIN_HEALTHY, s.min_healthy_percent.to_string())
                    .with(MAX_PERCENT, s.max_percent.to_string())
                    .with(LAUNCH, "EC2");
                // Registered in a target group: it must exist, and ECS takes
                // only one a load balancer already forwards to.
                let d = match &s.load_balancer {
                    None => d.with(LOAD_BALANCERS, Value::set_of([])),
                    Some(lb) => {
                        let container = lb.container.as_deref().unwrap_or(&s.task_definition);
                        let group = Value::Ref(reference(elbv2::target_group::KIND, &lb.target_group));
                        let registration = Value::Phrase(vec![group, Value::text(container), Value::text(lb.port.to_string())]);
                        let d = d.with(LOAD_BALANCERS, Value::set_of([registration])).after(elbv2::target_group::KIND, &lb.target_group);
                        elbv2::forwarders(env, &lb.target_group).into_iter().fold(d, |d, k| d.after(k.kind, &k.id))
                    }
                };
                if s.scaling().is_some() {
                    d.delegate(COUNT, "the autoscaler (Application Auto Scaling)")
                } else {
                    d
                }
            })
            .collect()
    }

    async fn observe(&self, env: &EnvSpec, _desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        Ok(live_services(&self.client, env, reads).await?.as_ref().clone())
    }

    async fn create(&self, desired: &Desired, token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let request = self
            .client
            .create_service()
            .cluster(desired.field(CLUSTER))
            .service_name(&desired.name)
            .client_token(token)
            .task_definition(desired.field(TASK))
            .desired_count(desired.number(COUNT, "ECS.CreateService")?)
            .launch_type(LaunchType::Ec2)
            .network_configuration(network(desired)?)
            .deployment_configuration(deployment(desired));
        let registrations = load_balancers(desired, "ECS.CreateService")?;
        let request = if registrations.is_empty() {
            request
        } else {
            request.set_load_balancers(Some(registrations)).health_check_grace_period_seconds(HEALTH_CHECK_GRACE_SECONDS)
        };
        let out = request.set_tags(Some(tag_list(&desired.tags))).send().await.aws("ECS.CreateService")?;
        required("ECS.CreateService", "service ARN", out.service().and_then(|s| s.service_arn()))
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        let changed = |f: &str| delta.fields.iter().any(|c| c.field == f);
        if !delta.fields.is_empty() {
            let mut request = self.client.update_service().cluster(live.meta(CLUSTER, "ECS.UpdateService")?).service(&desired.name);
            if changed(TASK) {
                request = request.task_definition(desired.field(TASK));
            }
            if changed(COUNT) {
                request = request.desired_count(desired.number(COUNT, "ECS.UpdateService")?);
            }
            if changed(SUBNETS) || changed(GROUPS) {
                request = request.network_configuration(network(desired)?);
            }
            if changed(MIN_HEALTHY) || changed(MAX_PERCENT) {
                request = request.deployment_configuration(deployment(desired));
            }
            // In place: with the rolling-update (ECS) deployment controller,
            // UpdateService takes new load balancer settings (an empty list
            // removes them) and starts a deployment: new tasks are registered
            // with the new target group and the old ones are stopped (and
            // deregistered) as the deployment percents allow. Traffic moves
            // at the pace of that deployment, not at once.
            if changed(LOAD_BALANCERS) {
                let registrations = load_balancers(desired, "ECS.UpdateService")?;
                if !registrations.is_empty() {
                    request = request.health_check_grace_period_seconds(HEALTH_CHECK_GRACE_SECONDS);
                }
                request = request.set_load_balancers(Some(registrations));
            }
            request.send().await.aws("ECS.UpdateService")?;
        }
        add_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        let cluster = live.meta(CLUSTER, "ECS.DeleteService")?;
        // Drain first: a service is scaled to zero before it is deleted.
        let drained = self.client.update_service().cluster(cluster).service(&live.name).desired_count(0).send().await;
        match drained.aws("ECS.UpdateService") {
            Err(e) if e.class == ErrorClass::NotFound => return Ok(()),
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        self.client.delete_service().cluster(cluster).service(&live.name).send().await.aws("ECS.DeleteService")?;
        Ok(())
    }
}
