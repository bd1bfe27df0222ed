//! ECS task definitions (oms, frontend-admin, websocket): one container with
//! its image, CPU and memory, ports, environment, Secrets Manager secrets,
//! awslogs logging, EC2 compatibility, awsvpc networking and ARM64.
//!
//! The spec is compared with the latest ACTIVE revision of the family, with
//! the defaults AWS fills in normalized away; any difference registers one
//! new revision (old ones stay, for rollback), and the services follow it.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, CpuArchitecture, KeyValuePair, LogConfiguration, LogDriver, NetworkMode, OsFamily, PortMapping, RuntimePlatform,
    Secret, TaskDefinition, TaskDefinitionField, TransportProtocol,
};
use aws_sdk_ecs::Client;

use super::{tag_list, tag_map};
use crate::aws::{required, AwsError, AwsResult, Built, ErrorClass};
use crate::engine::{ownership_tags, Delta, Desired, FieldReader, Fields, Kind, Layer, Live, OnImmutableChange, ReadCache, Rules, Value};
use crate::kinds::{ecr, iam::role, logs, secretsmanager};
use crate::spec::model::{DeletionPolicy, Tags};
use crate::spec::{physical_name, EnvSpec};

/// Kind name.
pub const KIND: &str = "ecs.task-definition";

fields! {
    CONTAINER = "ContainerName", IMAGE = "Image", CPU = "Cpu", MEMORY = "Memory", PORTS = "Ports", ENVIRONMENT = "Environment",
    SECRETS = "Secrets", LOG_GROUP = "LogGroup", LOG_REGION = "LogRegion", NETWORK = "NetworkMode", COMPATIBILITY = "Compatibility",
    ARCHITECTURE = "CpuArchitecture", EXECUTION_ROLE = "ExecutionRoleArn", TASK_ROLE = "TaskRoleArn",
}

/// Every field: any change means a new revision.
const FIELDS: &[&str] =
    &[CONTAINER, IMAGE, CPU, MEMORY, PORTS, ENVIRONMENT, SECRETS, LOG_GROUP, LOG_REGION, NETWORK, COMPATIBILITY, ARCHITECTURE, EXECUTION_ROLE, TASK_ROLE];

/// The task-definition kind.
pub struct TaskDefinitions {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

impl TaskDefinitions {
    fn region(&self) -> String {
        self.client.config().region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into())
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn map_of(json_text: Option<&Value>) -> BTreeMap<String, String> {
    json_text.and_then(Value::as_text).and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default()
}

/// Container ports as one field: a list, numerically sorted.
fn ports_field<P: Ord + ToString>(ports: impl Iterator<Item = P>) -> Value {
    let mut ports: Vec<P> = ports.collect();
    ports.sort_unstable();
    Value::List(ports.iter().map(|p| Value::text(p.to_string())).collect())
}

/// The fields of a registered revision, AWS defaults normalized.
fn revision_fields(td: &TaskDefinition) -> Fields {
    let mut f = Fields::new();
    let Some(c) = td.container_definitions().first() else { return f };
    f.insert(CONTAINER.into(), Value::from(c.name().unwrap_or_default()));
    f.insert(IMAGE.into(), Value::from(c.image().unwrap_or_default()));
    f.insert(CPU.into(), Value::from(td.cpu().unwrap_or_default()));
    f.insert(MEMORY.into(), Value::from(td.memory().unwrap_or_default()));
    f.insert(PORTS.into(), ports_field(c.port_mappings().iter().filter_map(|p| p.container_port())));
    let env: BTreeMap<&str, &str> = c.environment().iter().filter_map(|kv| Some((kv.name()?, kv.value().unwrap_or_default()))).collect();
    f.insert(ENVIRONMENT.into(), Value::from(json(&env)));
    let secrets: BTreeMap<&str, &str> = c.secrets().iter().map(|s| (s.name(), s.value_from())).collect();
    f.insert(SECRETS.into(), Value::from(json(&secrets)));
    let options = c.log_configuration().and_then(|l| l.options());
    let option = |k: &str| options.and_then(|o| o.get(k)).cloned().unwrap_or_default();
    f.insert(LOG_GROUP.into(), Value::from(option("awslogs-group")));
    f.insert(LOG_REGION.into(), Value::from(option("awslogs-region")));
    f.insert(NETWORK.into(), Value::from(td.network_mode().map(|n| n.as_str()).unwrap_or("bridge")));
    f.insert(COMPATIBILITY.into(), Value::from(if td.requires_compatibilities().contains(&Compatibility::Ec2) { "EC2" } else { "" }));
    // AWS leaves the runtime platform out when it is the default (x86_64 Linux).
    f.insert(ARCHITECTURE.into(), Value::from(td.runtime_platform().and_then(|r| r.cpu_architecture()).map(|a| a.as_str()).unwrap_or("X86_64")));
    f.insert(EXECUTION_ROLE.into(), Value::handle(td.execution_role_arn().unwrap_or_default()));
    f.insert(TASK_ROLE.into(), Value::handle(td.task_role_arn().unwrap_or_default()));
    f
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["ecs:DescribeTaskDefinition"],
    grants: &[Grant::allow("ComputeWrites", &["ecs:RegisterTaskDefinition", "ecs:DeregisterTaskDefinition", "ecs:TagResource"], &["*"])],
};

#[async_trait]
impl Kind for TaskDefinitions {
    fn rules(&self) -> Rules {
        Rules {
            immutable: FIELDS,
            on_immutable_change: OnImmutableChange::NewVersion,
            events: EventMatch::of("ecs.amazonaws.com", &["TaskDefinition"], &["family", "taskDefinition", "taskDefinitionArn"]).marked("task-definition/"),
            ..Rules::new(KIND, Layer::Compute).stands_for(&["AWS::ECS::TaskDefinition", "aws_ecs_task_definition"]).needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(c) = &env.spec.compute else { return Vec::new() };
        let log_groups = env.spec.observability.as_ref().map(|o| &o.log_groups);
        let region = env.spec.region.clone().unwrap_or_else(|| self.region());
        c.task_definitions
            .iter()
            .map(|(id, td)| {
                let group = log_groups.and_then(|g| g.get(&td.log_group)).map(|g| g.name.replace("${env}", &env.env)).unwrap_or_default();
                let tags = ownership_tags(env, id, DeletionPolicy::Retain, &Tags::new());
                let d = Desired::new(KIND, id, physical_name(td.family.as_deref(), id, &env.env), tags)
                    .after(logs::KIND, &td.log_group)
                    .with(CONTAINER, id)
                    .with(IMAGE, format!("{}:{}", ecr::repository_uri(env, &td.repository), td.image_tag))
                    .with(CPU, td.cpu.to_string())
                    .with(MEMORY, td.memory.to_string())
                    .with(PORTS, ports_field(td.ports.iter().copied()))
                    .with(ENVIRONMENT, json(&td.environment))
                    .with(SECRETS, json(&td.secrets.iter().map(|(k, v)| (k, secretsmanager::value_from(env, v))).collect::<BTreeMap<_, _>>()))
                    .with(LOG_GROUP, group)
                    .with(LOG_REGION, &region)
                    .with(NETWORK, "awsvpc")
                    .with(COMPATIBILITY, "EC2")
                    .with(ARCHITECTURE, &td.cpu_architecture)
                    .with(EXECUTION_ROLE, Value::handle(td.execution_role_arn.clone().unwrap_or_default()))
                    .with(TASK_ROLE, "");
                let spec_secrets = env.spec.security.as_ref().map(|s| &s.secrets);
                let used = td.secrets.values().filter_map(|v| v.split(':').next()).filter(|id| spec_secrets.is_some_and(|s| s.contains_key(*id)));
                let d = used.fold(d, |d, id| d.after(secretsmanager::KIND, id));
                let d = match env.spec.images.as_ref().filter(|i| i.repositories.contains_key(&td.repository)) {
                    Some(_) => d.after(ecr::KIND, &td.repository),
                    None => d,
                };
                let d = match &td.execution_role {
                    Some(role) => d.with_reference(EXECUTION_ROLE, role::KIND, role),
                    None => d,
                };
                match &td.task_role {
                    Some(role) => d.with_reference(TASK_ROLE, role::KIND, role),
                    None => d,
                }
            })
            .collect()
    }

    async fn observe(&self, _env: &EnvSpec, desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        // No batch read: one DescribeTaskDefinition (latest ACTIVE revision) per family.
        let mut found = Vec::new();
        for d in desired {
            let out = match self
                .client
                .describe_task_definition()
                .task_definition(&d.name)
                .include(TaskDefinitionField::Tags)
                .send()
                .await
                .aws("ECS.DescribeTaskDefinition")
            {
                Ok(out) => out,
                // ECS answers a missing family with a ClientException.
                Err(e) if e.class == ErrorClass::NotFound || e.code.as_deref() == Some("ClientException") => continue,
                Err(e) => return Err(e),
            };
            let Some(td) = out.task_definition() else { continue };
            found.push(Live {
                name: td.family().unwrap_or_default().into(),
                handle: td.task_definition_arn().unwrap_or_default().into(),
                fields: revision_fields(td),
                tags: tag_map(out.tags()),
                ..Live::default()
            });
        }
        Ok(found)
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let field = |f: &str| desired.field(f).to_string();
        let port_mappings: Vec<PortMapping> = desired
            .items(PORTS)
            .iter()
            .filter_map(|p| p.parse().ok())
            .map(|p| PortMapping::builder().container_port(p).protocol(TransportProtocol::Tcp).build())
            .collect();
        let environment: Vec<KeyValuePair> =
            map_of(desired.fields.get(ENVIRONMENT)).into_iter().map(|(k, v)| KeyValuePair::builder().name(k).value(v).build()).collect();
        let secrets: Vec<Secret> =
            map_of(desired.fields.get(SECRETS)).into_iter().filter_map(|(k, v)| Secret::builder().name(k).value_from(v).build().ok()).collect();
        let logging = LogConfiguration::builder()
            .log_driver(LogDriver::Awslogs)
            .options("awslogs-group", field(LOG_GROUP))
            .options("awslogs-region", field(LOG_REGION))
            .options("awslogs-stream-prefix", field(CONTAINER))
            .build()
            .built("ECS.RegisterTaskDefinition")?;
        let container = ContainerDefinition::builder()
            .name(field(CONTAINER))
            .image(field(IMAGE))
            .essential(true)
            .set_port_mappings(Some(port_mappings))
            .set_environment(Some(environment))
            .set_secrets(Some(secrets))
            .log_configuration(logging)
            .build();
        let (role, task_role) = (field(EXECUTION_ROLE), field(TASK_ROLE));
        let out = self
            .client
            .register_task_definition()
            .family(&desired.name)
            .container_definitions(container)
            .cpu(field(CPU))
            .memory(field(MEMORY))
            .network_mode(NetworkMode::Awsvpc)
            .requires_compatibilities(Compatibility::Ec2)
            .runtime_platform(
                RuntimePlatform::builder()
                    .cpu_architecture(CpuArchitecture::from(field(ARCHITECTURE).as_str()))
                    .operating_system_family(OsFamily::Linux)
                    .build(),
            )
            .set_execution_role_arn((!role.is_empty()).then_some(role))
            .set_task_role_arn((!task_role.is_empty()).then_some(task_role))
            .set_tags(Some(tag_list(&desired.tags)))
            .send()
            .await
            .aws("ECS.RegisterTaskDefinition")?;
        required("ECS.RegisterTaskDefinition", "task definition ARN", out.task_definition().and_then(|t| t.task_definition_arn()))
    }

    async fn update(&self, _desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        super::add_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        let result = self.client.deregister_task_definition().task_definition(&live.handle).send().await;
        result.map(|_| ()).aws("ECS.DeregisterTaskDefinition")
    }
}
