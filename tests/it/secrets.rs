//! The KMS key and the Secrets Manager secrets against the emulator: built
//! from the spec (the tables and the secrets encrypted with the key), drift
//! repaired (rotation off, the key scheduled for deletion, a secret deleted
//! or redescribed), and a secret's value, once set by hand, never read,
//! written or shown by the operator: not in its requests, its output, its
//! logs or its EMF alerts.

use std::time::Duration;

use crate::daemon::Daemon;
use crate::harness::{sdk_config, Moto};

/// A value only a human could have set: it must never leave the secret.
const HAND_SET: &str = r#"{"api_key":"k-7f3a9c-hand-set","api_secret":"s-0b1e-hand-set","passphrase":"p-hand-set-42"}"#;

async fn key_of_alias(kms: &aws_sdk_kms::Client, alias: &str) -> Option<String> {
    let aliases = kms.list_aliases().send().await.expect("aliases");
    aliases.aliases().iter().find(|a| a.alias_name() == Some(alias)).and_then(|a| a.target_key_id().map(str::to_string))
}

#[tokio::test]
async fn the_key_and_secrets_converge_drift_is_repaired_and_a_secret_value_is_never_touched() {
    let (moto, specs) = Moto::built("dev");
    let config = sdk_config(&moto.endpoint).await;
    let kms = aws_sdk_kms::Client::new(&config);
    let secrets = aws_sdk_secretsmanager::Client::new(&config);

    let key = key_of_alias(&kms, "alias/sentry-data-dev").await.expect("the key's alias");
    let described = kms.describe_key().key_id(&key).send().await.expect("key");
    let arn = described.key_metadata().and_then(|m| m.arn()).expect("arn").to_string();
    assert!(kms.get_key_rotation_status().key_id(&key).send().await.expect("rotation").key_rotation_enabled(), "rotation on");
    let tables = aws_sdk_dynamodb::Client::new(&config);
    for table in ["sentry-config-dev", "sentry-trading-dev"] {
        let t = tables.describe_table().table_name(table).send().await.expect("table");
        let sse = t.table().and_then(|t| t.sse_description()).expect("encryption");
        assert_eq!(sse.kms_master_key_arn(), Some(arn.as_str()), "{table} is encrypted with the customer-managed key");
    }
    let secret = secrets.describe_secret().secret_id("sentry/dev/exchange-credentials").send().await.expect("secret");
    assert_eq!(secret.kms_key_id(), Some(arn.as_str()), "the secret is encrypted with the key");
    assert_eq!(secret.description(), Some("Credenciais da exchange para trading"));
    let placeholder = secrets.get_secret_value().secret_id("sentry/dev/exchange-credentials").send().await.expect("value");
    let placeholder: serde_json::Value = serde_json::from_str(placeholder.secret_string().unwrap_or_default()).expect("json placeholder");
    assert!(placeholder["passphrase"].as_str().unwrap_or_default().starts_with("PLACEHOLDER"), "created with a placeholder per key");
    let ecs = aws_sdk_ecs::Client::new(&config);
    let td = ecs.describe_task_definition().task_definition("sentry-oms-dev").send().await.expect("task definition");
    let value_from: Vec<String> = td
        .task_definition()
        .and_then(|t| t.container_definitions().first())
        .map_or(Vec::new(), |c| c.secrets().iter().map(|s| s.value_from().to_string()).collect());
    assert!(
        value_from.contains(&"arn:aws:secretsmanager:us-east-1:123456789012:secret:sentry/dev/exchange-credentials:api_key::".to_string()),
        "the task definition reads the secret by reference: {value_from:?}"
    );

    // Someone sets the real value by hand.
    secrets.put_secret_value().secret_id("sentry/dev/exchange-credentials").secret_string(HAND_SET).send().await.expect("set by hand");

    // Drift: rotation switched off, a secret redescribed, another deleted (recoverable).
    kms.disable_key_rotation().key_id(&key).send().await.expect("rotation off");
    secrets.update_secret().secret_id("sentry/dev/exchange-credentials").description("changed by hand").send().await.expect("redescribe");
    secrets.delete_secret().secret_id("sentry/dev/redis").recovery_window_in_days(7).send().await.expect("delete");
    moto.start_recording();
    let text = crate::harness::operator(&moto.endpoint, &["--specs", specs.to_str().expect("utf-8"), "reconcile", "--once", "--env", "dev"]);
    let requests = moto.stop_recording_requests();
    assert_eq!(text.code, 2, "{}\n{}", text.stdout, text.stderr);
    assert!(kms.get_key_rotation_status().key_id(&key).send().await.expect("rotation").key_rotation_enabled(), "rotation back on");
    let secret = secrets.describe_secret().secret_id("sentry/dev/exchange-credentials").send().await.expect("secret");
    assert_eq!(secret.description(), Some("Credenciais da exchange para trading"), "description put back");
    let redis = secrets.describe_secret().secret_id("sentry/dev/redis").send().await.expect("redis secret");
    assert!(redis.deleted_date().is_none(), "a secret scheduled for deletion by hand is restored");

    // The key scheduled for deletion by hand: cancelled, enabled again.
    kms.schedule_key_deletion().key_id(&key).pending_window_in_days(7).send().await.expect("schedule");
    let run = moto.reconcile(&specs, "dev");
    assert_eq!(run.code, 2, "{}", run.stdout);
    let state = kms.describe_key().key_id(&key).send().await.expect("key");
    assert_eq!(state.key_metadata().and_then(|m| m.key_state()).map(|s| s.as_str()), Some("Enabled"), "the deletion is cancelled");

    // A daemon pass sends its alerts (EMF) about a drifted secret.
    secrets.update_secret().secret_id("sentry/dev/exchange-credentials").description("changed again").send().await.expect("redescribe");
    moto.start_recording();
    let daemon = Daemon::start(&moto, &specs, &["--single-replica"]);
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let mut messages: Vec<String> = Vec::new();
    for _ in 0..150 {
        if let Ok(out) = logs.filter_log_events().log_group_name("/sentry-operator/dev").send().await {
            messages = out.events().iter().filter_map(|e| e.message().map(str::to_string)).collect();
        }
        if messages.iter().any(|m| m.contains("\"DriftRepaired\"") && m.contains("secretsmanager.secret")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let daemon_log = daemon.log();
    drop(daemon);
    let daemon_requests = moto.stop_recording_requests();
    let repaired = messages.iter().any(|m| m.contains("\"DriftRepaired\"") && m.contains("secretsmanager.secret"));
    assert!(repaired, "the drift was alerted and repaired: {messages:?}\n{daemon_log}");

    // Never read, never written, never shown.
    moto.start_recording();
    let json = moto.reconcile(&specs, "dev");
    let json_requests = moto.stop_recording_requests();
    assert_eq!(json.code, 0, "{}", json.stdout);
    let all_requests: Vec<&(String, String)> = requests.iter().chain(&daemon_requests).chain(&json_requests).collect();
    let value_calls: Vec<&String> =
        all_requests.iter().map(|(op, _)| op).filter(|op| ["GetSecretValue", "PutSecretValue", "BatchGetSecretValue"].contains(&op.as_str())).collect();
    assert!(value_calls.is_empty(), "the operator touched a value: {value_calls:?}");
    for piece in ["k-7f3a9c-hand-set", "s-0b1e-hand-set", "p-hand-set-42"] {
        assert!(!all_requests.iter().any(|(_, text)| text.contains(piece)), "a request carried the value");
        for (what, out) in [("text", &text.stdout), ("text log", &text.stderr), ("json", &json.stdout), ("json log", &json.stderr), ("daemon log", &daemon_log)]
        {
            assert!(!out.contains(piece), "the value appeared in the {what} output");
        }
        assert!(!messages.iter().any(|m| m.contains(piece)), "the value appeared in an EMF event");
    }
    let value = secrets.get_secret_value().secret_id("sentry/dev/exchange-credentials").send().await.expect("value");
    assert_eq!(value.secret_string(), Some(HAND_SET), "the value survives every pass byte for byte");
    moto.assert_converged(&specs, "dev");
}
