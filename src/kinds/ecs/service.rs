//! ECS services: desired count, task definition revision, awsvpc network
//! configuration (private subnets, security groups), deployment settings.
//! Updated in place; deleted only with `deletionPolicy: delete`, and scaled
//! to zero first.

use async_trait::async_trait;
use aws_sdk_ecs::types::{AssignPublicIp, AwsVpcConfiguration, DeploymentConfiguration, LaunchType, NetworkConfiguration, ServiceField};
use aws_sdk_ecs::Client;

use super::{add_tags, cluster, tag_list, tag_map, task_definition};
use crate::aws::{required, AwsError, AwsResult, ErrorClass};
use crate::engine::{is_unresolved, ownership_tags, reference, Delta, Desired, Kind, Live, ReadCache, ResourceKey, Rules};
use crate::kinds::ec2::{security_group, subnet};
use crate::spec::model::Tags;
use crate::spec::{physical_name, EnvSpec};

/// Kind name.
pub const KIND: &str = "ecs.service";

const CLUSTER: &str = "Cluster";
const TASK: &str = "TaskDefinition";
const COUNT: &str = "DesiredCount";
const SUBNETS: &str = "Subnets";
const GROUPS: &str = "SecurityGroups";
const MIN_HEALTHY: &str = "MinimumHealthyPercent";
const MAX_PERCENT: &str = "MaximumPercent";
const LAUNCH: &str = "LaunchType";
/// DescribeServices takes at most this many names per call.
const DESCRIBE_BATCH: usize = 10;

/// The service kind.
pub struct Services {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

fn list(value: Option<&String>) -> Vec<String> {
    value.map(|v| v.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()).unwrap_or_default()
}

fn network(desired: &Desired) -> Result<NetworkConfiguration, AwsError> {
    let (subnets, groups) = (list(desired.fields.get(SUBNETS)), list(desired.fields.get(GROUPS)));
    if let Some(missing) = subnets.iter().chain(&groups).find(|v| is_unresolved(v)) {
        return Err(AwsError::unexpected("ECS.CreateService", format!("{missing} does not exist")));
    }
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(subnets))
        .set_security_groups(Some(groups))
        .assign_public_ip(AssignPublicIp::Disabled)
        .build()
        .map_err(|e| AwsError::unexpected("ECS.CreateService", e.to_string()))?;
    Ok(NetworkConfiguration::builder().awsvpc_configuration(vpc).build())
}

fn deployment(desired: &Desired) -> DeploymentConfiguration {
    let number = |f: &str| desired.fields.get(f).and_then(|v| v.parse().ok());
    DeploymentConfiguration::builder().set_minimum_healthy_percent(number(MIN_HEALTHY)).set_maximum_percent(number(MAX_PERCENT)).build()
}

#[async_trait]
impl Kind for Services {
    fn rules(&self) -> Rules {
        Rules { immutable: &[CLUSTER, LAUNCH], ..Rules::new(KIND) }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let (Some(c), Some(n)) = (&env.spec.compute, &env.spec.network) else { return Vec::new() };
        c.services
            .iter()
            .map(|(id, s)| {
                let subnets: Vec<String> = n.subnets.iter().filter(|(_, sn)| sn.tier == s.subnets).map(|(sid, _)| reference(subnet::KIND, sid)).collect();
                let groups: Vec<String> = s.security_groups.iter().map(|g| reference(security_group::KIND, g)).collect();
                let mut d = Desired {
                    key: ResourceKey { kind: KIND, id: id.clone() },
                    name: physical_name(s.name.as_deref(), &format!("{id}-service"), &env.env),
                    fields: Default::default(),
                    tags: ownership_tags(env, id, s.deletion_policy, &Tags::new()),
                    depends_on: vec![
                        ResourceKey { kind: cluster::KIND, id: s.cluster.clone() },
                        ResourceKey { kind: task_definition::KIND, id: s.task_definition.clone() },
                    ],
                    adopt: false,
                };
                d.depends_on
                    .extend(n.subnets.iter().filter(|(_, sn)| sn.tier == s.subnets).map(|(sid, _)| ResourceKey { kind: subnet::KIND, id: sid.clone() }));
                d.depends_on.extend(s.security_groups.iter().map(|g| ResourceKey { kind: security_group::KIND, id: g.clone() }));
                d.fields.insert(CLUSTER.into(), reference(cluster::KIND, &s.cluster));
                d.fields.insert(TASK.into(), reference(task_definition::KIND, &s.task_definition));
                d.fields.insert(COUNT.into(), s.desired_count.to_string());
                d.fields.insert(SUBNETS.into(), subnets.join(","));
                d.fields.insert(GROUPS.into(), groups.join(","));
                d.fields.insert(MIN_HEALTHY.into(), s.min_healthy_percent.to_string());
                d.fields.insert(MAX_PERCENT.into(), s.max_percent.to_string());
                d.fields.insert(LAUNCH.into(), "EC2".into());
                d
            })
            .collect()
    }

    async fn observe(&self, env: &EnvSpec, _desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let Some(c) = &env.spec.compute else { return Ok(Vec::new()) };
        let mut found = Vec::new();
        for (id, spec_cluster) in &c.clusters {
            let cluster_name = physical_name(spec_cluster.name.as_deref(), id, &env.env);
            let mut arns = Vec::new();
            let mut token = None;
            loop {
                let listed = self.client.list_services().cluster(&cluster_name).set_next_token(token).send().await.aws("ECS.ListServices");
                let Some(page) = crate::aws::found(listed)? else {
                    break; // the cluster does not exist yet
                };
                arns.extend(page.service_arns().iter().cloned());
                token = page.next_token;
                if token.is_none() {
                    break;
                }
            }
            for batch in arns.chunks(DESCRIBE_BATCH) {
                let out = self
                    .client
                    .describe_services()
                    .cluster(&cluster_name)
                    .set_services(Some(batch.to_vec()))
                    .include(ServiceField::Tags)
                    .send()
                    .await
                    .aws("ECS.DescribeServices")?;
                for s in out.services().iter().filter(|s| s.status() == Some("ACTIVE")) {
                    let (Some(name), Some(arn)) = (s.service_name(), s.service_arn()) else { continue };
                    let mut l = Live { name: name.into(), handle: arn.into(), tags: tag_map(s.tags()), ..Live::default() };
                    l.fields.insert(CLUSTER.into(), s.cluster_arn().unwrap_or_default().into());
                    l.fields.insert(TASK.into(), s.task_definition().unwrap_or_default().into());
                    l.fields.insert(COUNT.into(), s.desired_count().to_string());
                    let vpc = s.network_configuration().and_then(|n| n.awsvpc_configuration());
                    let mut subnets: Vec<&str> = vpc.map(|v| v.subnets().iter().map(String::as_str).collect()).unwrap_or_default();
                    subnets.sort_unstable();
                    l.fields.insert(SUBNETS.into(), subnets.join(","));
                    let mut groups: Vec<&str> = vpc.map(|v| v.security_groups().iter().map(String::as_str).collect()).unwrap_or_default();
                    groups.sort_unstable();
                    l.fields.insert(GROUPS.into(), groups.join(","));
                    let d = s.deployment_configuration();
                    l.fields.insert(MIN_HEALTHY.into(), d.and_then(|d| d.minimum_healthy_percent()).unwrap_or(100).to_string());
                    l.fields.insert(MAX_PERCENT.into(), d.and_then(|d| d.maximum_percent()).unwrap_or(200).to_string());
                    l.fields.insert(LAUNCH.into(), s.launch_type().map(|t| t.as_str()).unwrap_or("EC2").into());
                    l.meta.insert(CLUSTER.into(), cluster_name.clone());
                    found.push(l);
                }
            }
        }
        Ok(found)
    }

    async fn create(&self, desired: &Desired, token: &str) -> Result<String, AwsError> {
        let field = |f: &str| desired.fields.get(f).cloned().unwrap_or_default();
        let out = self
            .client
            .create_service()
            .cluster(field(CLUSTER))
            .service_name(&desired.name)
            .client_token(token)
            .task_definition(field(TASK))
            .desired_count(field(COUNT).parse().unwrap_or(0))
            .launch_type(LaunchType::Ec2)
            .network_configuration(network(desired)?)
            .deployment_configuration(deployment(desired))
            .set_tags(Some(tag_list(&desired.tags)))
            .send()
            .await
            .aws("ECS.CreateService")?;
        required("ECS.CreateService", "service ARN", out.service().and_then(|s| s.service_arn()))
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        let changed = |f: &str| delta.fields.iter().any(|c| c.field == f);
        if !delta.fields.is_empty() {
            let mut request = self.client.update_service().cluster(live.meta.get(CLUSTER).cloned().unwrap_or_default()).service(&desired.name);
            if changed(TASK) {
                request = request.task_definition(desired.fields.get(TASK).cloned().unwrap_or_default());
            }
            if changed(COUNT) {
                request = request.desired_count(desired.fields.get(COUNT).and_then(|c| c.parse().ok()).unwrap_or(0));
            }
            if changed(SUBNETS) || changed(GROUPS) {
                request = request.network_configuration(network(desired)?);
            }
            if changed(MIN_HEALTHY) || changed(MAX_PERCENT) {
                request = request.deployment_configuration(deployment(desired));
            }
            request.send().await.aws("ECS.UpdateService")?;
        }
        add_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live) -> Result<(), AwsError> {
        let cluster = live.meta.get(CLUSTER).cloned().unwrap_or_default();
        // Drain first: a service is scaled to zero before it is deleted.
        let drained = self.client.update_service().cluster(&cluster).service(&live.name).desired_count(0).send().await;
        match drained.aws("ECS.UpdateService") {
            Err(e) if e.class == ErrorClass::NotFound => return Ok(()),
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        self.client.delete_service().cluster(&cluster).service(&live.name).send().await.aws("ECS.DeleteService")?;
        Ok(())
    }
}
