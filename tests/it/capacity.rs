//! ECS on EC2 against the emulator: the IAM roles, launch templates, Auto
//! Scaling groups, capacity providers and service auto scaling of dev and
//! prod, drift repaired, and the autoscalers' counts left alone.

use aws_sdk_applicationautoscaling::types::ServiceNamespace;
use aws_sdk_ec2::types::RequestLaunchTemplateData;
use aws_sdk_ecs::types::CapacityProviderField;
use base64::Engine;

use crate::harness::{json_args, operator, repo_specs, sdk_config, specs_with, Moto};

/// The independent clients a test reads the estate with.
struct Clients {
    iam: aws_sdk_iam::Client,
    ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    ecs: aws_sdk_ecs::Client,
    scaling: aws_sdk_applicationautoscaling::Client,
    ssm: aws_sdk_ssm::Client,
}

async fn clients(moto: &Moto) -> Clients {
    let config = sdk_config(&moto.endpoint).await;
    Clients {
        iam: aws_sdk_iam::Client::new(&config),
        ec2: aws_sdk_ec2::Client::new(&config),
        autoscaling: aws_sdk_autoscaling::Client::new(&config),
        ecs: aws_sdk_ecs::Client::new(&config),
        scaling: aws_sdk_applicationautoscaling::Client::new(&config),
        ssm: aws_sdk_ssm::Client::new(&config),
    }
}

impl Clients {
    async fn group(&self, name: &str) -> aws_sdk_autoscaling::types::AutoScalingGroup {
        let out = self.autoscaling.describe_auto_scaling_groups().auto_scaling_group_names(name).send().await.expect("groups");
        out.auto_scaling_groups().first().cloned().unwrap_or_else(|| panic!("group {name}"))
    }

    /// The default version of template `name`: its number and data.
    async fn template(&self, name: &str) -> (i64, aws_sdk_ec2::types::ResponseLaunchTemplateData) {
        let out = self.ec2.describe_launch_template_versions().launch_template_name(name).versions("$Default").send().await.expect("versions");
        let v = out.launch_template_versions().first().cloned().unwrap_or_else(|| panic!("template {name}"));
        (v.version_number().unwrap_or_default(), v.launch_template_data().cloned().expect("data"))
    }

    async fn policy_document(&self, role: &str) -> serde_json::Value {
        let out = self.iam.get_role_policy().role_name(role).policy_name("sentry-operator").send().await.expect("role policy");
        serde_json::from_str(&sentry_operator::kinds::iam::decode_document(out.policy_document())).expect("policy JSON")
    }

    async fn provider(&self, name: &str) -> aws_sdk_ecs::types::CapacityProvider {
        let out = self.ecs.describe_capacity_providers().capacity_providers(name).include(CapacityProviderField::Tags).send().await.expect("providers");
        out.capacity_providers().first().cloned().unwrap_or_else(|| panic!("provider {name}"))
    }

    async fn targets(&self) -> Vec<aws_sdk_applicationautoscaling::types::ScalableTarget> {
        let out = self.scaling.describe_scalable_targets().service_namespace(ServiceNamespace::Ecs).send().await.expect("targets");
        out.scalable_targets().to_vec()
    }

    async fn policies(&self) -> Vec<aws_sdk_applicationautoscaling::types::ScalingPolicy> {
        let out = self.scaling.describe_scaling_policies().service_namespace(ServiceNamespace::Ecs).send().await.expect("policies");
        out.scaling_policies().to_vec()
    }
}

/// The resources of the statement with `action` in a policy document.
fn resources_of(policy: &serde_json::Value, action: &str) -> Vec<String> {
    let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
    let statement = statements.iter().find(|s| s["Action"].as_array().is_some_and(|a| a.iter().any(|x| x == action)) || s["Action"] == action);
    let resources = statement.map(|s| s["Resource"].clone()).unwrap_or_default();
    let mut list: Vec<String> = match resources {
        serde_json::Value::Array(items) => items.iter().filter_map(|r| r.as_str().map(str::to_string)).collect(),
        serde_json::Value::String(one) => vec![one],
        _ => Vec::new(),
    };
    list.sort();
    list
}

#[tokio::test]
async fn dev_capacity_and_roles_converge_with_the_seed_numbers() {
    let (moto, specs) = Moto::built("dev");
    let c = clients(&moto).await;

    // Roles: a least-privilege task role, the execution role, the instance role and its profile.
    let oms = c.policy_document("sentry-oms-task-dev").await;
    let queues = ["sentry-bitget-orders-dev.fifo", "sentry-master-order-dev.fifo"].map(|q| format!("arn:aws:sqs:us-east-1:123456789012:{q}"));
    assert_eq!(resources_of(&oms, "sqs:SendMessage"), queues, "exactly its queues");
    let tables = resources_of(&oms, "dynamodb:GetItem");
    assert_eq!(tables.len(), 4, "two tables and their indexes: {tables:?}");
    assert!(tables.iter().all(|t| t.starts_with("arn:aws:dynamodb:us-east-1:123456789012:table/sentry-")), "{tables:?}");
    let oms_text = oms.to_string();
    assert!(!oms_text.contains("\"*\""), "no wildcard resource in a task role: {oms_text}");
    let execution = c.policy_document("sentry-task-execution-dev").await;
    assert_eq!(resources_of(&execution, "ecr:GetAuthorizationToken"), ["*"], "the one resource AWS requires to be *");
    assert_eq!(resources_of(&execution, "logs:PutLogEvents").len(), 3, "the three services' log groups");
    let instance = c.policy_document("sentry-ecs-instance-dev").await;
    assert_eq!(
        resources_of(&instance, "ecs:RegisterContainerInstance"),
        ["arn:aws:ecs:us-east-1:123456789012:cluster/sentry-gateway-dev", "arn:aws:ecs:us-east-1:123456789012:cluster/sentry-oms-dev"]
    );
    let trust = c.iam.get_role().role_name("sentry-ecs-instance-dev").send().await.expect("role");
    assert!(trust.role().map(|r| r.assume_role_policy_document().unwrap_or_default()).unwrap_or_default().contains("ec2.amazonaws.com"));
    let profile = c.iam.get_instance_profile().instance_profile_name("sentry-ecs-instance-dev").send().await.expect("profile");
    let profile = profile.instance_profile().expect("profile");
    assert_eq!(profile.roles().iter().map(|r| r.role_name()).collect::<Vec<_>>(), ["sentry-ecs-instance-dev"]);

    // Task definitions name the roles by ARN, resolved from their logical ids.
    let td = c.ecs.describe_task_definition().task_definition("sentry-oms-dev").send().await.expect("task definition");
    let td = td.task_definition().expect("td");
    assert_eq!(td.execution_role_arn(), Some("arn:aws:iam::123456789012:role/sentry-task-execution-dev"));
    assert_eq!(td.task_role_arn(), Some("arn:aws:iam::123456789012:role/sentry-oms-task-dev"));

    // Launch templates: the ECS-optimized ARM64 AMI, t4g.small, IMDSv2, encrypted root, joining the cluster.
    let ami = c.ssm.get_parameter().name("/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id").send().await.expect("AMI");
    let ami = ami.parameter().and_then(|p| p.value()).expect("AMI id").to_string();
    let (version, data) = c.template("sentry-oms-dev").await;
    assert_eq!(version, 1);
    assert_eq!(data.image_id(), Some(ami.as_str()));
    assert_eq!(data.instance_type().map(|t| t.as_str()), Some("t4g.small"));
    assert_eq!(data.metadata_options().and_then(|m| m.http_tokens()).map(|t| t.as_str()), Some("required"));
    assert_eq!(data.iam_instance_profile().and_then(|p| p.arn()), profile.arn().into());
    let root = data.block_device_mappings().first().and_then(|m| m.ebs()).expect("root volume");
    assert_eq!(root.encrypted(), Some(true));
    let user_data = base64::engine::general_purpose::STANDARD.decode(data.user_data().unwrap_or_default()).expect("base64");
    assert!(String::from_utf8_lossy(&user_data).contains("ECS_CLUSTER=sentry-oms-dev"));
    assert_eq!(data.security_group_ids().len(), 1, "the cluster's security group");

    // Groups: 1/2/1 in the private subnets, tagged, following the template's default version.
    for name in ["sentry-oms-dev", "sentry-gateway-dev"] {
        let g = c.group(name).await;
        assert_eq!((g.min_size(), g.max_size(), g.desired_capacity()), (Some(1), Some(2), Some(1)), "{name}");
        assert_eq!(g.launch_template().and_then(|t| t.version()), Some("$Default"));
        assert_eq!(g.vpc_zone_identifier().unwrap_or_default().split(',').count(), 2, "two private subnets");
        assert!(g.tags().iter().any(|t| t.key() == Some("sentry:env") && t.propagate_at_launch() == Some(true)), "tags propagated");
    }

    // Capacity providers: managed scaling off in dev; each the default of its cluster.
    let provider = c.provider("sentry-oms-ec2-dev").await;
    let scaling = provider.auto_scaling_group_provider().and_then(|g| g.managed_scaling()).expect("managed scaling");
    assert_eq!(scaling.status().map(|s| s.as_str()), Some("DISABLED"));
    let cluster = c.ecs.describe_clusters().clusters("sentry-oms-dev").send().await.expect("cluster");
    let cluster = &cluster.clusters()[0];
    assert_eq!(cluster.capacity_providers(), ["sentry-oms-ec2-dev"]);
    assert_eq!(cluster.default_capacity_provider_strategy().first().map(|s| s.capacity_provider()), Some("sentry-oms-ec2-dev"));

    assert!(c.targets().await.is_empty(), "service auto scaling is off in dev");
    moto.assert_converged(&specs, "dev");
}

#[tokio::test]
async fn prod_capacity_and_service_scaling_converge_with_the_seed_numbers() {
    let (moto, specs) = Moto::built("prod");
    let c = clients(&moto).await;
    let oms = c.group("sentry-oms-prod").await;
    assert_eq!((oms.min_size(), oms.max_size(), oms.desired_capacity()), (Some(2), Some(8), Some(2)));
    assert_eq!(c.template("sentry-oms-prod").await.1.instance_type().map(|t| t.as_str()), Some("c7g.large"));
    let gateway = c.group("sentry-gateway-prod").await;
    assert_eq!((gateway.min_size(), gateway.max_size(), gateway.desired_capacity()), (Some(2), Some(4), Some(2)));
    assert_eq!(c.template("sentry-gateway-prod").await.1.instance_type().map(|t| t.as_str()), Some("t4g.medium"));

    let provider = c.provider("sentry-oms-ec2-prod").await;
    let scaling = provider.auto_scaling_group_provider().and_then(|g| g.managed_scaling()).expect("managed scaling");
    assert_eq!(scaling.status().map(|s| s.as_str()), Some("ENABLED"));
    assert_eq!((scaling.target_capacity(), scaling.minimum_scaling_step_size(), scaling.maximum_scaling_step_size()), (Some(70), Some(1), Some(2)));

    let mut targets: Vec<(String, i32, i32)> = c.targets().await.iter().map(|t| (t.resource_id().to_string(), t.min_capacity(), t.max_capacity())).collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            ("service/sentry-gateway-prod/sentry-websocket-service-prod".to_string(), 2, 8),
            ("service/sentry-oms-prod/sentry-oms-service-prod".to_string(), 2, 8)
        ],
        "OMS and WebSocket scale 2..8; the admin frontend does not"
    );
    let policies = c.policies().await;
    assert_eq!(policies.len(), 2);
    for p in &policies {
        let tracking = p.target_tracking_scaling_policy_configuration().expect("target tracking");
        assert_eq!(tracking.target_value(), 70.0);
        assert_eq!((tracking.scale_out_cooldown(), tracking.scale_in_cooldown()), (Some(60), Some(300)));
        let metric = tracking.predefined_metric_specification().map(|m| m.predefined_metric_type().as_str());
        assert_eq!(metric, Some("ECSServiceAverageCPUUtilization"));
    }
    moto.assert_converged(&specs, "prod");
}

#[tokio::test]
async fn capacity_drift_is_repaired_and_the_autoscalers_counts_are_left_alone() {
    let (moto, specs) = Moto::built("prod");
    let c = clients(&moto).await;

    // Drift the operator owns.
    c.autoscaling.update_auto_scaling_group().auto_scaling_group_name("sentry-oms-prod").max_size(5).send().await.expect("max size");
    let template = c.ec2.describe_launch_templates().launch_template_names("sentry-oms-prod").send().await.expect("templates");
    let template_id = template.launch_templates()[0].launch_template_id().expect("id").to_string();
    let bigger = RequestLaunchTemplateData::builder().instance_type(aws_sdk_ec2::types::InstanceType::C7gXlarge).build();
    c.ec2.create_launch_template_version().launch_template_id(&template_id).source_version("1").launch_template_data(bigger).send().await.expect("version");
    c.ec2.modify_launch_template().launch_template_id(&template_id).default_version("2").send().await.expect("default");
    let websocket_policy = c.policies().await.into_iter().find(|p| p.policy_name() == "sentry-websocket-cpu-prod").expect("policy");
    let delete = c
        .scaling
        .delete_scaling_policy()
        .policy_name("sentry-websocket-cpu-prod")
        .service_namespace(ServiceNamespace::Ecs)
        .scalable_dimension(websocket_policy.scalable_dimension().clone())
        .resource_id(websocket_policy.resource_id());
    delete.send().await.expect("delete policy");
    let widened = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sqs:*","Resource":"*"}]}"#;
    c.iam.put_role_policy().role_name("sentry-oms-task-prod").policy_name("sentry-operator").policy_document(widened).send().await.expect("widen");
    c.iam.put_role_policy().role_name("sentry-oms-task-prod").policy_name("by-hand").policy_document(widened).send().await.expect("extra policy");

    // Counts the autoscalers own.
    c.autoscaling.set_desired_capacity().auto_scaling_group_name("sentry-gateway-prod").desired_capacity(3).send().await.expect("desired capacity");
    c.ecs.update_service().cluster("sentry-oms-prod").service("sentry-oms-service-prod").desired_count(5).send().await.expect("desired count");

    let plan = operator(&moto.endpoint, &json_args(&specs, &["plan", "--env", "prod"]));
    let service = plan.resource("ecs.service", "oms");
    assert_eq!(service["action"], "noop", "{service}");
    assert!(service["note"].as_str().unwrap_or_default().contains("owned by the autoscaler (Application Auto Scaling): 5 left alone"), "{service}");
    let group = plan.resource("autoscaling.group", "gateway");
    assert!(group["note"].as_str().unwrap_or_default().contains("DesiredCapacity owned by the autoscaler"), "{group}");

    let run = moto.reconcile(&specs, "prod");
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert_eq!(run.json()["summary"]["failed"], 0, "{}", run.stdout);
    assert_eq!(c.group("sentry-oms-prod").await.max_size(), Some(8), "max size repaired");
    let (version, data) = c.template("sentry-oms-prod").await;
    assert_eq!((version, data.instance_type().map(|t| t.as_str())), (3, Some("c7g.large")), "a new version, made the default");
    let versions = c.ec2.describe_launch_template_versions().launch_template_id(&template_id).send().await.expect("versions");
    assert_eq!(versions.launch_template_versions().len(), 3, "old versions kept");
    assert!(c.policies().await.iter().any(|p| p.policy_name() == "sentry-websocket-cpu-prod"), "policy recreated");
    let policy = c.policy_document("sentry-oms-task-prod").await;
    assert_eq!(resources_of(&policy, "sqs:SendMessage").len(), 2, "narrowed back to its two queues: {policy}");
    assert!(!policy.to_string().contains("sqs:*"), "{policy}");
    let inline = c.iam.list_role_policies().role_name("sentry-oms-task-prod").send().await.expect("inline policies");
    assert_eq!(inline.policy_names(), ["sentry-operator"], "the hand-made policy is removed");

    assert_eq!(c.group("sentry-gateway-prod").await.desired_capacity(), Some(3), "ECS managed scaling's capacity left alone");
    let oms = c.ecs.describe_services().cluster("sentry-oms-prod").services("sentry-oms-service-prod").send().await.expect("service");
    assert_eq!(oms.services()[0].desired_count(), 5, "the autoscaler's count is never reverted");
    moto.assert_converged(&specs, "prod");
}

#[tokio::test]
async fn turning_service_scaling_off_hands_the_count_back_to_the_spec() {
    let (moto, specs) = Moto::built("dev");
    let c = clients(&moto).await;
    let dev = std::fs::read_to_string(specs.join("dev.yaml")).expect("dev");
    let scaled =
        specs_with(&[("dev.yaml", &format!("{dev}compute:\n  services:\n    oms: {{ autoScaling: {{ enabled: true, minTasks: 1, maxTasks: 3 }} }}\n"))]);
    let run = moto.reconcile(scaled.path(), "dev");
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert_eq!(c.targets().await.len(), 1, "auto scaling turned on");
    assert_eq!(c.policies().await.len(), 1);
    let run = moto.reconcile(&specs, "dev");
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(c.targets().await.is_empty(), "turned off: the target is deregistered, the count is the spec's again");
    assert!(c.policies().await.is_empty(), "and its policy deleted");
    moto.assert_converged(&specs, "dev");
}

#[tokio::test]
async fn a_role_removed_from_the_spec_is_retained_unless_opted_in() {
    let (moto, _specs) = Moto::built("dev");
    let dev = std::fs::read_to_string(repo_specs().join("dev.yaml")).expect("dev");
    let without = format!("{dev}iam:\n  roles:\n    frontend-admin-task: null\ncompute:\n  taskDefinitions:\n    frontend-admin: {{ taskRole: null }}\n");
    let dir = specs_with(&[("dev.yaml", &without)]);
    let run = moto.reconcile(dir.path(), "dev");
    assert_eq!(run.json()["summary"]["failed"], 0, "{}", run.stdout);
    let step = run.resource("iam.role", "frontend-admin-task");
    assert_eq!(step["action"], "orphan", "{step}");
    let c = clients(&moto).await;
    assert!(c.iam.get_role().role_name("sentry-frontend-admin-task-dev").send().await.is_ok(), "the role is retained");
}

#[tokio::test]
async fn capacity_removed_from_a_cluster_is_deleted_provider_first() {
    let (moto, _specs) = Moto::built("dev");
    let dev = std::fs::read_to_string(repo_specs().join("dev.yaml")).expect("dev");
    let none = "{ instanceType: null, minSize: null, maxSize: null, desiredCapacity: null, instanceRole: null, securityGroups: null, managedScaling: null }";
    let dir = specs_with(&[("dev.yaml", &format!("{dev}compute:\n  clusters:\n    gateway: {none}\n"))]);
    let run = moto.reconcile(dir.path(), "dev");
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert_eq!(run.json()["summary"]["failed"], 0, "{}", run.stdout);
    for kind in ["ec2.launch-template", "autoscaling.group", "ecs.capacity-provider"] {
        assert_eq!(run.resource(kind, "gateway")["action"], "delete", "{kind}: {}", run.stdout);
    }
    let c = clients(&moto).await;
    let cluster = c.ecs.describe_clusters().clusters("sentry-gateway-dev").send().await.expect("cluster");
    assert!(cluster.clusters()[0].capacity_providers().is_empty(), "detached from the cluster");
    let groups = c.autoscaling.describe_auto_scaling_groups().auto_scaling_group_names("sentry-gateway-dev").send().await.expect("groups");
    assert!(groups.auto_scaling_groups().is_empty(), "the group is gone");
    assert_eq!(c.group("sentry-oms-dev").await.max_size(), Some(2), "the other cluster keeps its capacity");
    moto.assert_converged(dir.path(), "dev");
}
