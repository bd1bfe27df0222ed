//! IAM roles: a trust policy naming one AWS service, one inline policy
//! generated from the spec (`sentry-operator`), and the managed policies the
//! spec lists. Inline policies added by hand are removed; a widened policy is
//! put back as generated.
//!
//! The generated policy grants, by statement:
//! - `Queues`, `Tables`: the role's `access`, naming exactly those queues' and
//!   tables' ARNs (a table's indexes included);
//! - `PullImages`, `WriteLogs`, `ReadSecrets`: for the task definitions
//!   naming the role as `executionRole`, their ECR repositories, log groups
//!   and secrets; plus `EcrAuthorization`: `ecr:GetAuthorizationToken` on
//!   `*`, which AWS requires (the action has no resource-level permissions);
//! - `RegisterInstances`, `ContainerInstances`: for the clusters naming the
//!   role as `instanceRole`, what the ECS agent does on those clusters and
//!   their container instances; plus `DiscoverPollEndpoint` on `*`, which AWS
//!   requires (no resource-level permissions);
//! - `FlowLogs`: for flow logs naming the role, writing to their log group;
//!   plus `logs:DescribeLogGroups` on the account's log groups, the narrowest
//!   resource that action takes.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use crate::kinds::each;
use std::collections::BTreeSet;

use async_trait::async_trait;
use aws_sdk_iam::Client;
use serde_json::{json, Value};

use super::{decode_document, named, roles, tag_list, tag_map};
use crate::aws::{gone_is_ok, required, AwsError, AwsResult};
use crate::engine::{Delta, Desired, FieldReader, Kind, Layer, Live, ReadCache, Rules, Value as FieldValue};
use crate::kinds::secretsmanager;
use crate::spec::model::Role;
use crate::spec::{physical_name, EnvSpec};

/// Kind name.
pub const KIND: &str = "iam.role";

/// The one inline policy the operator writes on each role.
pub const POLICY_NAME: &str = "sentry-operator";

fields! { TRUST = "TrustedService", POLICY = "Policy", INLINE = "InlinePolicies", MANAGED = "ManagedPolicies" }
/// Meta key: the instance profiles that hold the role, one per line.
const PROFILES: &str = "profiles";

/// The role kind.
pub struct Roles {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

/// The trust policy letting `service` assume a role.
fn trust_document(services: &[String]) -> String {
    let service = match services {
        [one] => json!(one),
        many => json!(many),
    };
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}).to_string()
}

/// What a live trust policy trusts: the service principals when it is the
/// plain form [`trust_document`] writes, else the whole (canonical) document,
/// which then differs from any desired value and is rewritten.
fn trusted_services(document: &str) -> FieldValue {
    let canonical = canonical(document);
    let Ok(Value::Object(doc)) = serde_json::from_str::<Value>(&canonical) else { return FieldValue::Text(canonical) };
    let statements = doc.get("Statement").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut services = Vec::new();
    for s in &statements {
        let plain = s.as_object().is_some_and(|o| o.keys().all(|k| ["Effect", "Principal", "Action"].contains(&k.as_str())))
            && s["Effect"] == "Allow"
            && s["Action"] == json!(["sts:AssumeRole"]);
        let principal = s["Principal"].as_object().filter(|p| p.len() == 1).and_then(|p| p.get("Service"));
        match (plain, principal) {
            (true, Some(Value::String(one))) => services.push(one.clone()),
            (true, Some(Value::Array(many))) => services.extend(many.iter().filter_map(|v| v.as_str().map(str::to_string))),
            _ => return FieldValue::Text(canonical),
        }
    }
    FieldValue::set(services)
}

/// A policy document in one canonical form, so that the order AWS (or a
/// person) wrote it in never shows as drift: statements without their Sid,
/// each action and resource list sorted, single values as lists, statements
/// sorted. Text that is not JSON is kept as it is (and so differs).
pub fn canonical(document: &str) -> String {
    let text = decode_document(document);
    let Ok(Value::Object(mut doc)) = serde_json::from_str::<Value>(&text) else { return text };
    let statements = match doc.remove("Statement") {
        Some(Value::Array(list)) => list,
        Some(one) => vec![one],
        None => Vec::new(),
    };
    let statements: Vec<Value> = statements
        .into_iter()
        .map(|mut s| {
            if let Value::Object(o) = &mut s {
                o.remove("Sid");
                for key in ["Action", "NotAction", "Resource", "NotResource"] {
                    if let Some(v) = o.get_mut(key) {
                        let mut items: Vec<String> = match &*v {
                            Value::Array(a) => a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string)).collect(),
                            Value::String(one) => vec![one.clone()],
                            other => vec![other.to_string()],
                        };
                        items.sort();
                        items.dedup();
                        *v = json!(items);
                    }
                }
            }
            s
        })
        .collect();
    let mut statements: Vec<Value> = statements.into_iter().map(keys_sorted).collect();
    statements.sort_by_key(Value::to_string);
    doc.insert("Statement".into(), Value::Array(statements));
    keys_sorted(Value::Object(doc)).to_string()
}

/// `value` with every object's keys in sorted order (serde_json may keep
/// insertion order, depending on the features other crates turn on).
fn keys_sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, keys_sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(keys_sorted).collect()),
        other => other,
    }
}

/// The generated policy of role `id`: one statement per grant (see the
/// module documentation), or `None` when the role grants nothing.
fn policy(env: &EnvSpec, id: &str, role: &Role) -> Option<String> {
    let mut statements = Vec::new();
    let mut grant = |sid: &str, actions: &[&str], resources: BTreeSet<String>| {
        if !resources.is_empty() {
            statements.push(json!({"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}));
        }
    };
    let queues = env.spec.messaging.as_ref().map(|m| &m.queues);
    let queue_arns = role.access.queues.iter().filter_map(|q| Some(env.arn("sqs", true, &queues?.get(q)?.physical_name(q, &env.env))));
    let queue_actions =
        ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:SendMessage"];
    grant("Queues", &queue_actions, queue_arns.collect());
    let tables = env.spec.data.as_ref().map(|d| &d.tables);
    let table_arns: BTreeSet<String> = role
        .access
        .tables
        .iter()
        .filter_map(|t| Some(env.arn("dynamodb", true, &format!("table/{}", physical_name(tables?.get(t)?.name.as_deref(), t, &env.env)))))
        .flat_map(|arn| [format!("{arn}/index/*"), arn])
        .collect();
    let table_actions = [
        "dynamodb:BatchGetItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:DeleteItem",
        "dynamodb:DescribeTable",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "dynamodb:UpdateItem",
    ];
    grant("Tables", &table_actions, table_arns);

    let compute = env.spec.compute.as_ref();
    let executed: Vec<_> = compute.into_iter().flat_map(|c| c.task_definitions.values()).filter(|td| td.execution_role.as_deref() == Some(id)).collect();
    let repositories = executed.iter().filter_map(|td| ecr_repository_arn(&crate::kinds::ecr::repository_uri(env, &td.repository)));
    grant("PullImages", &["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], repositories.collect());
    if !executed.is_empty() {
        grant("EcrAuthorization", &["ecr:GetAuthorizationToken"], BTreeSet::from(["*".to_string()]));
    }
    let log_groups = env.spec.observability.as_ref().map(|o| &o.log_groups);
    let task_logs = executed.iter().filter_map(|td| Some(log_streams_arn(env, &env.substitute(&log_groups?.get(&td.log_group)?.name))));
    grant("WriteLogs", &["logs:CreateLogStream", "logs:PutLogEvents"], task_logs.collect());
    let secrets: Vec<String> = executed.iter().flat_map(|td| td.secrets.values()).map(|s| secretsmanager::value_from(env, s)).collect();
    grant("ReadSecrets", &["secretsmanager:GetSecretValue"], secrets.iter().flat_map(|s| secret_arns(s)).collect());
    grant("ReadParameters", &["ssm:GetParameters"], secrets.iter().filter(|s| s.starts_with("arn:aws:ssm:")).cloned().collect());

    let clusters: Vec<String> = compute
        .into_iter()
        .flat_map(|c| &c.clusters)
        .filter(|(_, c)| c.instance_role.as_deref() == Some(id))
        .map(|(cid, c)| physical_name(c.name.as_deref(), cid, &env.env))
        .collect();
    let cluster_actions = [
        "ecs:DeregisterContainerInstance",
        "ecs:RegisterContainerInstance",
        "ecs:SubmitAttachmentStateChanges",
        "ecs:SubmitContainerStateChange",
        "ecs:SubmitTaskStateChange",
    ];
    grant("RegisterInstances", &cluster_actions, clusters.iter().map(|c| env.arn("ecs", true, &format!("cluster/{c}"))).collect());
    let instances = clusters.iter().map(|c| env.arn("ecs", true, &format!("container-instance/{c}/*")));
    grant("ContainerInstances", &["ecs:Poll", "ecs:StartTelemetrySession", "ecs:UpdateContainerInstancesState"], instances.collect());
    if !clusters.is_empty() {
        grant("DiscoverPollEndpoint", &["ecs:DiscoverPollEndpoint"], BTreeSet::from(["*".to_string()]));
    }

    let flow_logs = env.spec.network.as_ref().map(|n| &n.vpc.flow_logs).filter(|f| f.enabled && f.role.as_deref() == Some(id));
    let flow_group = flow_logs.map(|f| f.log_group_name(&env.env));
    let flow_arns = flow_group.iter().flat_map(|g| [env.arn("logs", true, &format!("log-group:{g}")), log_streams_arn(env, g)]);
    let flow_actions = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"];
    grant("FlowLogs", &flow_actions, flow_arns.collect());
    // Listing log groups has no resource-level permission narrower than the account's groups.
    let listing = flow_group.iter().map(|_| env.arn("logs", true, "log-group:*"));
    grant("FlowLogsListGroups", &["logs:DescribeLogGroups"], listing.collect());

    // Reading a secret encrypted with a key of the spec takes kms:Decrypt on
    // that key, named by its alias (its id is known only once it exists).
    let security = env.spec.security.as_ref();
    let key_of = |reference: &String| {
        let secret = security?.secrets.get(reference.split(':').next()?)?;
        let key = secret.kms_key.as_deref()?;
        Some(security?.keys.get(key)?.alias_name(key, &env.env))
    };
    let aliases: BTreeSet<String> = executed.iter().flat_map(|td| td.secrets.values()).filter_map(key_of).collect();
    if !aliases.is_empty() {
        statements.push(json!({
            "Sid": "DecryptSecrets", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [env.arn("kms", true, "key/*")],
            "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": aliases}}
        }));
    }

    (!statements.is_empty()).then(|| canonical(&json!({"Version": "2012-10-17", "Statement": statements}).to_string()))
}

/// The ARN covering the log streams of group `name`.
fn log_streams_arn(env: &EnvSpec, name: &str) -> String {
    env.arn("logs", true, &format!("log-group:{name}:*"))
}

/// The ARN of the ECR repository of an image URI
/// (`<account>.dkr.ecr.<region>.amazonaws.com/<name>`); `None` for other registries.
fn ecr_repository_arn(uri: &str) -> Option<String> {
    let (host, name) = uri.split_once('/')?;
    let mut labels = host.split('.');
    let (account, _, _, region) = (labels.next()?, labels.next().filter(|l| *l == "dkr")?, labels.next().filter(|l| *l == "ecr")?, labels.next()?);
    Some(format!("arn:aws:ecr:{region}:{account}:repository/{name}"))
}

/// The secret a Secrets Manager `valueFrom` names (without its JSON key,
/// stage and version): as written (a complete ARN), and with the six random
/// characters AWS appends to a secret's ARN matched by `?` each (a partial
/// one); empty for anything else.
fn secret_arns(value_from: &str) -> Vec<String> {
    let parts: Vec<&str> = value_from.splitn(8, ':').collect();
    if parts.len() < 7 || parts[2] != "secretsmanager" || parts[5] != "secret" {
        return Vec::new();
    }
    let secret = parts[..7].join(":");
    vec![format!("{secret}-??????"), secret]
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["iam:GetAccountAuthorizationDetails"],
    grants: &[
        Grant::allow("RoleWrites", &["iam:CreateRole", "iam:DeleteRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:DetachRolePolicy", "iam:UpdateAssumeRolePolicy", "iam:TagRole"], &["arn:aws:iam::*:role/sentry-*"]),
        Grant::allow("AttachOnlyServiceRoleOrSentryPolicies", &["iam:AttachRolePolicy"], &["arn:aws:iam::*:role/sentry-*"]).when(r#"{"ArnLike": {"iam:PolicyARN": ["arn:aws:iam::aws:policy/service-role/*", "arn:aws:iam::*:policy/sentry-*"]}}"#),
        Grant::allow("InstanceProfileWrites", &["iam:RemoveRoleFromInstanceProfile"], &["arn:aws:iam::*:instance-profile/sentry-*"]),
        Grant::allow("PassTheRolesItManages", &["iam:PassRole"], &["arn:aws:iam::*:role/sentry-*"]).when(r#"{"StringEquals": {"iam:PassedToService": ["ecs-tasks.amazonaws.com", "ec2.amazonaws.com", "vpc-flow-logs.amazonaws.com"]}}"#),
        Grant::deny("NeverTheOperatorsOwnRole", &["iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy", "iam:UpdateAssumeRolePolicy", "iam:DeleteRole", "iam:TagRole", "iam:PassRole"], &["arn:aws:iam::*:role/sentry-operator*"]),
    ],
};

#[async_trait]
impl Kind for Roles {
    fn rules(&self) -> Rules {
        Rules {
            events: EventMatch::of("iam.amazonaws.com", &["Role"], &["roleName", "RoleName"]).marked("role/"),
            ..Rules::new(KIND, Layer::SecurityMonitoring)
                .stands_for(&["AWS::IAM::Role", "aws_iam_role"])
                .with_parts(&[("AWS::IAM::Policy", "an inline policy of its role"), ("aws_iam_role_policy", "an inline policy of its role")])
                .needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        each(env.spec.iam.as_ref().map(|iam| &iam.roles), |(id, role)| {
            let policy = policy(env, id, role);
            named(env, KIND, id, role)
                .with(TRUST, FieldValue::set([&role.service]))
                .with(INLINE, FieldValue::set(policy.is_some().then_some(POLICY_NAME)))
                .with(POLICY, policy.unwrap_or_default())
                .with(MANAGED, FieldValue::set(&role.managed_policies))
        })
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let all = roles(&self.client, reads).await?;
        let mut found = Vec::new();
        for r in all.iter() {
            let name = required("IAM.GetAccountAuthorizationDetails", "role name", r.role_name())?;
            let mut live = Live { name, tags: tag_map(r.tags()), ..Live::default() };
            if !live.is_named_or_owned(&env.env, desired) {
                continue;
            }
            live.handle = required("IAM.GetAccountAuthorizationDetails", "role ARN", r.arn())?;
            let inline = r.role_policy_list();
            let ours = inline.iter().find(|p| p.policy_name() == Some(POLICY_NAME)).and_then(|p| p.policy_document()).map(canonical);
            let mut live = live
                .with(TRUST, trusted_services(r.assume_role_policy_document().unwrap_or_default()))
                .with(INLINE, FieldValue::set(inline.iter().filter_map(|p| p.policy_name())))
                .with(POLICY, ours.unwrap_or_default())
                .with(MANAGED, FieldValue::set(r.attached_managed_policies().iter().filter_map(|p| p.policy_arn())));
            let profiles: Vec<&str> = r.instance_profile_list().iter().map(|p| p.instance_profile_name()).collect();
            live.meta.insert(PROFILES.into(), profiles.join("\n"));
            found.push(live);
        }
        Ok(found)
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let request = self.client.create_role().role_name(&desired.name).assume_role_policy_document(trust_document(&desired.items(TRUST)));
        let out = request.set_tags(Some(tag_list(&desired.tags)?)).send().await.aws("IAM.CreateRole")?;
        let arn = required("IAM.CreateRole", "role ARN", out.role().map(|r| r.arn()))?;
        if !desired.field(POLICY).is_empty() {
            self.put_policy(&desired.name, desired.field(POLICY)).await?;
        }
        for arn in desired.items(MANAGED) {
            self.client.attach_role_policy().role_name(&desired.name).policy_arn(arn).send().await.aws("IAM.AttachRolePolicy")?;
        }
        Ok(arn)
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        let role = desired.name.as_str();
        for change in &delta.fields {
            let wanted = change.desired_text().unwrap_or_default();
            match change.field.as_str() {
                TRUST => {
                    let request = self.client.update_assume_role_policy().role_name(role).policy_document(trust_document(&desired.items(TRUST)));
                    request.send().await.aws("IAM.UpdateAssumeRolePolicy")?;
                }
                POLICY if !wanted.is_empty() => self.put_policy(role, wanted).await?,
                INLINE => {
                    let keep = desired.items(INLINE);
                    for name in live.items(INLINE).into_iter().filter(|n| !keep.contains(n)) {
                        let deleted = self.client.delete_role_policy().role_name(role).policy_name(name).send().await;
                        gone_is_ok(deleted.map(|_| ()).aws("IAM.DeleteRolePolicy"))?;
                    }
                }
                MANAGED => {
                    let (want, have) = (desired.items(MANAGED), live.items(MANAGED));
                    for arn in want.iter().filter(|a| !have.contains(a)) {
                        self.client.attach_role_policy().role_name(role).policy_arn(arn).send().await.aws("IAM.AttachRolePolicy")?;
                    }
                    for arn in have.iter().filter(|a| !want.contains(a)) {
                        let detached = self.client.detach_role_policy().role_name(role).policy_arn(arn).send().await;
                        gone_is_ok(detached.map(|_| ()).aws("IAM.DetachRolePolicy"))?;
                    }
                }
                _ => {}
            }
        }
        if !delta.tags.is_empty() {
            self.client.tag_role().role_name(role).set_tags(Some(tag_list(&delta.tags)?)).send().await.aws("IAM.TagRole")?;
        }
        Ok(())
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        let role = live.name.as_str();
        for profile in live.meta.get(PROFILES).iter().flat_map(|p| p.lines()) {
            let removed = self.client.remove_role_from_instance_profile().instance_profile_name(profile).role_name(role).send().await;
            gone_is_ok(removed.map(|_| ()).aws("IAM.RemoveRoleFromInstanceProfile"))?;
        }
        for name in live.items(INLINE) {
            gone_is_ok(self.client.delete_role_policy().role_name(role).policy_name(name).send().await.map(|_| ()).aws("IAM.DeleteRolePolicy"))?;
        }
        for arn in live.items(MANAGED) {
            gone_is_ok(self.client.detach_role_policy().role_name(role).policy_arn(arn).send().await.map(|_| ()).aws("IAM.DetachRolePolicy"))?;
        }
        gone_is_ok(self.client.delete_role().role_name(role).send().await.map(|_| ()).aws("IAM.DeleteRole"))
    }
}

impl Roles {
    async fn put_policy(&self, role: &str, document: &str) -> Result<(), AwsError> {
        let request = self.client.put_role_policy().role_name(role).policy_name(POLICY_NAME).policy_document(document);
        request.send().await.aws("IAM.PutRolePolicy")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_documents_ignore_order_sids_and_single_values() {
        let a = r#"{"Version":"2012-10-17","Statement":[{"Sid":"B","Effect":"Allow","Action":["sqs:b","sqs:a"],"Resource":"arn:q"},{"Effect":"Allow","Action":"x:y","Resource":["*"]}]}"#;
        let b = r#"{"Statement":[{"Effect":"Allow","Action":["x:y"],"Resource":"*"},{"Effect":"Allow","Resource":["arn:q"],"Action":["sqs:a","sqs:b"]}],"Version":"2012-10-17"}"#;
        assert_eq!(canonical(a), canonical(b));
        let widened = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sqs:a","sqs:b"],"Resource":"*"}]}"#;
        assert_ne!(canonical(widened), canonical(b));
        assert_eq!(canonical("not json"), "not json");
    }

    #[test]
    fn a_plain_trust_policy_reads_as_its_service_and_anything_else_as_itself() {
        assert_eq!(trusted_services(&trust_document(&["ecs-tasks.amazonaws.com".into()])), FieldValue::set(["ecs-tasks.amazonaws.com"]));
        let with_condition = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"aws:SourceAccount":"1"}}}]}"#;
        assert!(trusted_services(with_condition).to_string().starts_with('{'));
        let anyone = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}"#;
        assert!(trusted_services(anyone).to_string().contains("\"AWS\""), "a widened trust is drift");
    }

    #[test]
    fn resource_arns_of_images_and_secrets() {
        assert_eq!(
            ecr_repository_arn("111122223333.dkr.ecr.us-east-1.amazonaws.com/sentry-oms").as_deref(),
            Some("arn:aws:ecr:us-east-1:111122223333:repository/sentry-oms")
        );
        assert_eq!(ecr_repository_arn("docker.io/library/nginx"), None);
        let partial = "arn:aws:secretsmanager:us-east-1:1:secret:sentry/exchange-credentials";
        assert_eq!(secret_arns(&format!("{partial}:api_key::")), [format!("{partial}-??????"), partial.to_string()]);
        let complete = "arn:aws:secretsmanager:us-east-1:1:secret:sentry/db-AbCdEf";
        assert!(secret_arns(complete).contains(&complete.to_string()), "a complete ARN is granted as it is");
        assert!(secret_arns("arn:aws:ssm:us-east-1:1:parameter/x").is_empty());
    }
}
