//! ECS clusters, task definitions, services and their log groups against the emulator.

use aws_sdk_ecs::types::{ClusterField, ClusterSettingName};

use crate::harness::{repo_specs, sdk_config, specs_with, Moto};

async fn ecs(moto: &Moto) -> aws_sdk_ecs::Client {
    aws_sdk_ecs::Client::new(&sdk_config(&moto.endpoint).await)
}

async fn logs(moto: &Moto) -> aws_sdk_cloudwatchlogs::Client {
    aws_sdk_cloudwatchlogs::Client::new(&sdk_config(&moto.endpoint).await)
}

async fn service(ecs: &aws_sdk_ecs::Client, cluster: &str, name: &str) -> aws_sdk_ecs::types::Service {
    let out = ecs.describe_services().cluster(cluster).services(name).send().await.expect("services");
    out.services().first().cloned().expect("service")
}

async fn retention(logs: &aws_sdk_cloudwatchlogs::Client, name: &str) -> Option<i32> {
    let out = logs.describe_log_groups().log_group_name_prefix(name).send().await.expect("log groups");
    out.log_groups().iter().find(|g| g.log_group_name() == Some(name)).and_then(|g| g.retention_in_days())
}

#[tokio::test]
async fn dev_compute_converges_and_a_second_pass_registers_nothing() {
    let (moto, specs) = Moto::built("dev");
    let ecs = ecs(&moto).await;

    let clusters =
        ecs.describe_clusters().clusters("sentry-oms-dev").clusters("sentry-gateway-dev").include(ClusterField::Settings).send().await.expect("clusters");
    assert_eq!(clusters.clusters().len(), 2);
    let insights = clusters.clusters()[0].settings().iter().find(|s| s.name() == Some(&ClusterSettingName::ContainerInsights)).and_then(|s| s.value());
    assert_eq!(insights, Some("disabled"), "container insights off in dev");

    let td = ecs.describe_task_definition().task_definition("sentry-oms-dev").send().await.expect("task definition");
    let td = td.task_definition().expect("td");
    assert_eq!(td.revision(), 1);
    assert_eq!(td.runtime_platform().and_then(|r| r.cpu_architecture()).map(|a| a.as_str()), Some("ARM64"));
    assert_eq!(td.network_mode().map(|n| n.as_str()), Some("awsvpc"));
    let container = &td.container_definitions()[0];
    assert_eq!(container.image(), Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/sentry/oms-dev:latest"));
    let mut secrets: Vec<&str> = container.secrets().iter().map(|s| s.name()).collect();
    secrets.sort_unstable();
    assert_eq!(secrets, ["EXCHANGE_API_KEY", "EXCHANGE_API_SECRET", "EXCHANGE_PASSPHRASE", "REDIS_URL"]);
    let log_options = container.log_configuration().and_then(|l| l.options()).expect("awslogs");
    assert_eq!(log_options.get("awslogs-group").map(String::as_str), Some("/ecs/sentry-oms-dev"));

    let oms = service(&ecs, "sentry-oms-dev", "sentry-oms-service-dev").await;
    assert_eq!(oms.desired_count(), 1);
    assert_eq!(oms.task_definition(), td.task_definition_arn());
    let subnets = oms.network_configuration().and_then(|n| n.awsvpc_configuration()).map(|v| v.subnets().len());
    assert_eq!(subnets, Some(2), "the private subnets");
    let websocket = service(&ecs, "sentry-gateway-dev", "sentry-websocket-service-dev").await;
    assert_eq!(websocket.desired_count(), 1);

    let logs = logs(&moto).await;
    assert_eq!(retention(&logs, "/ecs/sentry-oms-dev").await, Some(7), "7 days in dev");

    moto.assert_converged(&specs, "dev");
}

#[tokio::test]
async fn prod_compute_uses_prod_sizes_and_retention() {
    let (moto, specs) = Moto::built("prod");
    let ecs = ecs(&moto).await;
    let clusters = ecs.describe_clusters().clusters("sentry-oms-prod").include(ClusterField::Settings).send().await.expect("clusters");
    let insights = clusters.clusters()[0].settings().iter().find(|s| s.name() == Some(&ClusterSettingName::ContainerInsights)).and_then(|s| s.value());
    assert_eq!(insights, Some("enabled"));
    assert_eq!(service(&ecs, "sentry-oms-prod", "sentry-oms-service-prod").await.desired_count(), 2);
    assert_eq!(retention(&logs(&moto).await, "/ecs/sentry-websocket-prod").await, Some(30));
    moto.assert_converged(&specs, "prod");
}

/// dev.yaml with the OMS image at `tag`.
fn dev_with_oms_tag(tag: &str) -> tempfile::TempDir {
    let dev = format!("{}compute:\n  taskDefinitions:\n    oms: {{ imageTag: {tag} }}\n", std::fs::read_to_string(repo_specs().join("dev.yaml")).expect("dev"));
    specs_with(&[("dev.yaml", &dev)])
}

#[tokio::test]
async fn an_image_tag_change_registers_exactly_one_revision_and_rolls_the_service() {
    let (moto, _) = Moto::built("dev");
    let dir = dev_with_oms_tag("v2");
    let (run, writes) = moto.writes_of(|| moto.reconcile(dir.path(), "dev"));
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(writes.iter().filter(|w| *w == "RegisterTaskDefinition").count(), 1, "{writes:?}");
    assert!(writes.contains(&"UpdateService".to_string()), "the service rolls: {writes:?}");
    assert!(!writes.contains(&"DeregisterTaskDefinition".to_string()), "old revisions stay for rollback");
    let ecs = ecs(&moto).await;
    let latest = ecs.describe_task_definition().task_definition("sentry-oms-dev").send().await.expect("td");
    let latest = latest.task_definition().expect("td");
    assert_eq!(latest.revision(), 2);
    assert!(latest.container_definitions()[0].image().unwrap_or_default().ends_with(":v2"));
    assert_eq!(service(&ecs, "sentry-oms-dev", "sentry-oms-service-dev").await.task_definition(), latest.task_definition_arn());
    let (again, writes) = moto.writes_of(|| moto.reconcile(dir.path(), "dev"));
    assert_eq!(again.code, 0, "{}", again.stdout);
    assert!(writes.is_empty(), "{writes:?}");
}

#[tokio::test]
async fn compute_drift_is_repaired() {
    let moto = Moto::start();
    let dir = dev_with_oms_tag("v2");
    assert_eq!(moto.reconcile(&repo_specs(), "dev").code, 2);
    assert_eq!(moto.reconcile(dir.path(), "dev").code, 2, "revision 2");
    let ecs = ecs(&moto).await;
    let logs = logs(&moto).await;

    // Out of band: scaled up, pointed back at revision 1, log retention changed.
    ecs.update_service()
        .cluster("sentry-oms-dev")
        .service("sentry-oms-service-dev")
        .desired_count(5)
        .task_definition("sentry-oms-dev:1")
        .send()
        .await
        .expect("drift");
    logs.put_retention_policy().log_group_name("/ecs/sentry-oms-dev").retention_in_days(365).send().await.expect("retention");
    let run = moto.reconcile(dir.path(), "dev");
    assert_eq!(run.code, 2, "{}", run.stdout);
    let step = run.resource("ecs.service", "oms");
    assert_eq!(step["action"], "update");
    let oms = service(&ecs, "sentry-oms-dev", "sentry-oms-service-dev").await;
    assert_eq!(oms.desired_count(), 1);
    assert!(oms.task_definition().unwrap_or_default().ends_with("sentry-oms-dev:2"), "{:?}", oms.task_definition());
    assert_eq!(retention(&logs, "/ecs/sentry-oms-dev").await, Some(7));
    assert_eq!(moto.reconcile(dir.path(), "dev").code, 0);
}
