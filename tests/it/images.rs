//! ECR repositories against the emulator: built from the spec, drift
//! repaired, images' repositories retained, and foreign ones left alone.

use aws_sdk_ecr::types::ImageTagMutability;

use crate::harness::{repo_specs, sdk_config, specs_with, Moto};

async fn ecr(moto: &Moto) -> aws_sdk_ecr::Client {
    aws_sdk_ecr::Client::new(&sdk_config(&moto.endpoint).await)
}

async fn repository(ecr: &aws_sdk_ecr::Client, name: &str) -> aws_sdk_ecr::types::Repository {
    let out = ecr.describe_repositories().repository_names(name).send().await.expect("repositories");
    out.repositories().first().cloned().unwrap_or_else(|| panic!("repository {name}"))
}

async fn kept(ecr: &aws_sdk_ecr::Client, name: &str) -> Option<u64> {
    let policy = ecr.get_lifecycle_policy().repository_name(name).send().await.ok()?;
    let doc: serde_json::Value = serde_json::from_str(policy.lifecycle_policy_text()?).ok()?;
    doc["rules"][0]["selection"]["countNumber"].as_u64()
}

#[tokio::test]
async fn repositories_converge_drift_is_repaired_and_task_definitions_point_at_them() {
    let (moto, specs) = Moto::built("dev");
    let ecr = ecr(&moto).await;
    for name in ["sentry/oms-dev", "sentry/admin-front-end-dev", "sentry/websocket-dev"] {
        let r = repository(&ecr, name).await;
        assert_eq!(r.image_scanning_configuration().map(|s| s.scan_on_push()), Some(true), "{name}");
        assert_eq!(kept(&ecr, name).await, Some(30), "{name}: the newest 30 images kept");
    }
    let ecs = aws_sdk_ecs::Client::new(&sdk_config(&moto.endpoint).await);
    let td = ecs.describe_task_definition().task_definition("sentry-oms-dev").send().await.expect("task definition");
    let image = td.task_definition().and_then(|t| t.container_definitions().first()).and_then(|c| c.image()).unwrap_or_default().to_string();
    assert_eq!(image, "123456789012.dkr.ecr.us-east-1.amazonaws.com/sentry/oms-dev:latest", "the image is the repository's, by reference");

    // Drift: the lifecycle policy deleted, scanning switched off.
    ecr.delete_lifecycle_policy().repository_name("sentry/oms-dev").send().await.expect("delete policy");
    let off = aws_sdk_ecr::types::ImageScanningConfiguration::builder().scan_on_push(false).build();
    ecr.put_image_scanning_configuration().repository_name("sentry/websocket-dev").image_scanning_configuration(off).send().await.expect("scan off");
    let run = moto.reconcile(&specs, "dev");
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert_eq!(kept(&ecr, "sentry/oms-dev").await, Some(30), "lifecycle policy put back");
    let websocket = repository(&ecr, "sentry/websocket-dev").await;
    assert_eq!(websocket.image_scanning_configuration().map(|s| s.scan_on_push()), Some(true), "scanning back on");
    moto.assert_converged(&specs, "dev");

    // Removed from the spec: retained (images are state).
    let dev = std::fs::read_to_string(repo_specs().join("dev.yaml")).expect("dev");
    let dir = specs_with(&[("dev.yaml", &format!("{dev}images:\n  repositories:\n    websocket: null\ncompute:\n  taskDefinitions:\n    websocket: {{ repository: \"123456789012.dkr.ecr.us-east-1.amazonaws.com/sentry/websocket-dev\" }}\n"))]);
    let run = moto.reconcile(dir.path(), "dev");
    assert_eq!(run.resource("ecr.repository", "websocket")["action"], "orphan", "{}", run.stdout);
    assert_eq!(repository(&ecr, "sentry/websocket-dev").await.image_tag_mutability(), Some(&ImageTagMutability::Mutable));
}

#[tokio::test]
async fn a_foreign_repository_under_a_dev_name_is_untouched() {
    let moto = Moto::start();
    let ecr = ecr(&moto).await;
    ecr.create_repository().repository_name("sentry/oms-dev").send().await.expect("foreign repository");
    let run = moto.reconcile(&repo_specs(), "dev");
    assert_eq!(run.code, 2, "{}", run.stdout);
    let step = run.resource("ecr.repository", "oms");
    assert_eq!(step["action"], "skip", "{step}");
    assert_eq!(kept(&ecr, "sentry/oms-dev").await, None, "no lifecycle policy put on the foreign repository");
    let tags = ecr.list_tags_for_resource().resource_arn(repository(&ecr, "sentry/oms-dev").await.repository_arn().expect("arn")).send().await.expect("tags");
    assert!(tags.tags().is_empty(), "no tag added");
}
