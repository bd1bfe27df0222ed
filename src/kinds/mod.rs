//! The AWS resource kinds, one module each. Adding a kind is one new module
//! plus one line in [`registry`].

/// Declares a kind's field names, each a `&str` constant named after what
/// it holds: `fields! { VPC = "VpcId", CIDR = "CidrBlock" }`.
macro_rules! fields {
    ($($name:ident = $value:literal),+ $(,)?) => {
        $(const $name: &str = $value;)+
    };
}

pub mod application_autoscaling;
pub mod cloudwatch;
pub mod cognito;
pub mod dynamodb;
pub mod ec2;
pub mod ecr;
pub mod ecs;
pub mod elasticache;
pub mod elbv2;
pub mod events;
pub mod iam;
pub mod kms;
pub mod logs;
pub mod read;
pub mod secretsmanager;
pub mod sns;
pub mod sqs;

use aws_config::SdkConfig;

use crate::aws::CallCounter;
use crate::engine::permissions::Grant;
use crate::engine::{Desired, Kind, Rules};
use crate::sdk_client;
use read::{TagIndex, TagReads};

/// Every reconciled kind, in dependency order (creates run in this order,
/// deletes in reverse), over one client per service.
pub fn registry(config: &SdkConfig, counter: &CallCounter, tag_reads: TagReads) -> Vec<Box<dyn Kind>> {
    let tags = TagIndex::new(sdk_client!(aws_sdk_resourcegroupstagging, config, counter), tag_reads);
    let ec2 = sdk_client!(aws_sdk_ec2, config, counter);
    let elasticache = sdk_client!(aws_sdk_elasticache, config, counter);
    let cognito = sdk_client!(aws_sdk_cognitoidentityprovider, config, counter);
    let ecs = sdk_client!(aws_sdk_ecs, config, counter);
    let iam = sdk_client!(aws_sdk_iam, config, counter);
    let app_autoscaling = sdk_client!(aws_sdk_applicationautoscaling, config, counter);
    let elbv2 = sdk_client!(aws_sdk_elasticloadbalancingv2, config, counter);
    vec![
        Box::new(iam::role::Roles { client: iam.clone() }),
        Box::new(iam::instance_profile::InstanceProfiles { client: iam }),
        Box::new(kms::Keys { client: sdk_client!(aws_sdk_kms, config, counter) }),
        Box::new(secretsmanager::Secrets { client: sdk_client!(aws_sdk_secretsmanager, config, counter) }),
        Box::new(ec2::vpc::Vpcs { client: ec2.clone() }),
        Box::new(ec2::subnet::Subnets { client: ec2.clone() }),
        Box::new(ec2::internet_gateway::InternetGateways { client: ec2.clone() }),
        Box::new(ec2::elastic_ip::ElasticIps { client: ec2.clone() }),
        Box::new(ec2::nat_gateway::NatGateways { client: ec2.clone() }),
        Box::new(ec2::route_table::RouteTables { client: ec2.clone() }),
        Box::new(ec2::network_acl::NetworkAcls { client: ec2.clone() }),
        Box::new(ec2::security_group::SecurityGroups { client: ec2.clone() }),
        Box::new(ec2::security_group_rules::SecurityGroupRules { client: ec2.clone() }),
        Box::new(ec2::vpc_endpoint::VpcEndpoints { client: ec2.clone() }),
        Box::new(ec2::flow_log::FlowLogs { client: ec2.clone() }),
        Box::new(elbv2::target_group::TargetGroups { client: elbv2.clone() }),
        Box::new(elbv2::load_balancer::LoadBalancers { client: elbv2.clone() }),
        Box::new(elbv2::listener::Listeners { client: elbv2.clone() }),
        Box::new(elbv2::listener_rule::ListenerRules { client: elbv2 }),
        Box::new(sqs::Queues { client: sdk_client!(aws_sdk_sqs, config, counter), tags: tags.clone() }),
        Box::new(dynamodb::Tables { client: sdk_client!(aws_sdk_dynamodb, config, counter), tags: tags.clone() }),
        Box::new(elasticache::subnet_group::SubnetGroups { client: elasticache.clone(), tags: tags.clone() }),
        Box::new(elasticache::replication_group::ReplicationGroups { client: elasticache, tags: tags.clone() }),
        Box::new(cognito::user_pool::UserPools { client: cognito.clone() }),
        Box::new(cognito::group::Groups { client: cognito.clone() }),
        Box::new(cognito::app_client::AppClients { client: cognito }),
        Box::new(logs::LogGroups { client: sdk_client!(aws_sdk_cloudwatchlogs, config, counter), tags: tags.clone() }),
        Box::new(ecr::Repositories { client: sdk_client!(aws_sdk_ecr, config, counter) }),
        Box::new(ecs::cluster::Clusters { client: ecs.clone() }),
        Box::new(ecs::launch_template::LaunchTemplates { client: ec2 }),
        Box::new(ecs::auto_scaling_group::Groups { client: sdk_client!(aws_sdk_autoscaling, config, counter) }),
        Box::new(ecs::capacity_provider::CapacityProviders { client: ecs.clone() }),
        Box::new(ecs::cluster_capacity::ClusterCapacityProviders { client: ecs.clone() }),
        Box::new(ecs::task_definition::TaskDefinitions { client: ecs.clone() }),
        Box::new(ecs::service::Services { client: ecs.clone() }),
        Box::new(application_autoscaling::scalable_target::ScalableTargets { client: app_autoscaling.clone(), ecs: ecs.clone() }),
        Box::new(application_autoscaling::scaling_policy::ScalingPolicies { client: app_autoscaling, ecs }),
        Box::new(sns::Topics { client: sdk_client!(aws_sdk_sns, config, counter), tags: tags.clone() }),
        Box::new(cloudwatch::Alarms { client: sdk_client!(aws_sdk_cloudwatch, config, counter), tags }),
        Box::new(events::EventRules { client: sdk_client!(aws_sdk_eventbridge, config, counter) }),
    ]
}

/// The rules of every registered kind, in registry order. The registry is
/// built over an empty configuration: nothing is ever sent through it.
pub fn rules() -> Vec<Rules> {
    registry(&SdkConfig::builder().build(), &CallCounter::default(), TagReads::default()).iter().map(|k| k.rules()).collect()
}

/// The service-linked roles that Auto Scaling, ECS, Application Auto Scaling
/// and Elastic Load Balancing create on their first use in an account: every
/// kind whose create may be that first use needs the grant.
#[rustfmt::skip]
pub const SERVICE_LINKED_ROLES: Grant = Grant::allow("TheServiceLinkedRolesOfAutoScalingEcsAndElb", &["iam:CreateServiceLinkedRole"], &["*"]).when(r#"{"StringEquals": {"iam:AWSServiceName": ["autoscaling.amazonaws.com", "ecs.amazonaws.com", "ecs.application-autoscaling.amazonaws.com", "elasticloadbalancing.amazonaws.com"]}}"#);

/// One desired resource per entry of a spec section's map, made by
/// `desired` of the entry's id and spec; none when the section is absent.
pub fn each<'a, T: 'a>(entries: Option<&'a std::collections::BTreeMap<String, T>>, desired: impl FnMut((&'a String, &'a T)) -> Desired) -> Vec<Desired> {
    entries.into_iter().flatten().map(desired).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::engine::{Importing, Live};
    use crate::spec::model::Spec;
    use crate::spec::EnvSpec;

    /// What the spec cannot say is refused or listed, never written wrong: an
    /// address on a NAT gateway outside the stacks, a NAT gateway whose subnet
    /// is not imported, a second flow log or one not delivered to CloudWatch
    /// Logs, a table with a route the spec has no words for or a subnet not
    /// imported (adopting it would remove them), a load balancer that is
    /// not internet-facing.
    #[test]
    fn import_refuses_or_lists_what_the_spec_cannot_say() {
        use super::ec2::{elastic_ip, flow_log, nat_gateway, route_table, vpc};
        use crate::engine::Value;
        let kinds = super::registry(&aws_config::SdkConfig::builder().build(), &Default::default(), Default::default());
        let kind = |name: &str| kinds.iter().find(|k| k.name() == name).expect("registered");
        let named = BTreeMap::new();
        let importing = Importing { env: "dev", named: &named };
        let mut spec = Spec::default();
        let vpc_live = Live { name: "v".into(), handle: "vpc-1".into(), ..Live::default() }.with("CidrBlock", "10.0.0.0/16");
        kind(vpc::KIND).to_spec(vpc::ID, &vpc_live, &mut spec, &importing).expect("the VPC opens the network");
        let refused = |kind_name: &str, id: &str, live: Live, spec: &mut Spec| kind(kind_name).to_spec(id, &live, spec, &importing).expect_err("refused");
        let address = Live { name: "203.0.113.9".into(), handle: "eipalloc-1".into(), ..Live::default() }.with("AttachedTo", Value::text("nat-outside"));
        assert!(refused(elastic_ip::KIND, "w1", address, &mut spec).contains("NAT gateway of the stacks"));
        let nat = Live { handle: "nat-1".into(), ..Live::default() }.with("SubnetId", Value::Ref("@ec2.subnet/elsewhere".into()));
        assert!(refused(nat_gateway::KIND, "nat-a", nat, &mut spec).contains("not in the stacks"));
        let to_s3 = Live { handle: "fl-1".into(), ..Live::default() }.with("ResourceId", Value::Ref("@ec2.vpc/vpc".into()));
        assert!(refused(flow_log::KIND, vpc::ID, to_s3, &mut spec).contains("CloudWatch Logs"));
        let table = Live { handle: "rtb-1".into(), ..Live::default() }
            .with("VpcId", Value::Ref("@ec2.vpc/vpc".into()))
            .with_entry("route ", "0.0.0.0/0", Value::Ref("@ec2.internet-gateway/igw".into()))
            .with_entry("route ", "10.1.0.0/16", Value::text("pcx-1"))
            .with_entry("association ", Value::Ref("@ec2.subnet/public-a".into()), "associated");
        // Adopting a table would remove what the spec cannot say of it: such a table is refused.
        let blackhole = table.clone().with_entry("route ", "10.2.0.0/16", Value::text("blackhole"));
        assert!(refused(route_table::KIND, "other", blackhole, &mut spec).contains("route to 10.2.0.0/16 (through blackhole) is not in the spec language"));
        let elsewhere = table.clone().with_entry("association ", Value::text("subnet-elsewhere"), "associated");
        assert!(refused(route_table::KIND, "other", elsewhere, &mut spec).contains("its subnet subnet-elsewhere is not imported"));
        let rendering = kind(route_table::KIND).to_spec(route_table::PUBLIC, &table, &mut spec, &importing).expect("the public table");
        assert!(rendering.unsaid.is_empty());
        let internal = Live { name: "lb".into(), ..Live::default() }.with("Scheme", "internal").with("Type", "application").with("IpAddressType", "ipv4");
        assert!(refused(super::elbv2::load_balancer::KIND, "web", internal, &mut spec).contains("internet-facing IPv4 Application Load Balancers"));
        let listener = Live::default()
            .with("LoadBalancer", Value::Ref("@elbv2.load-balancer/web".into()))
            .with("Protocol", "HTTP")
            .with("Port", "80")
            .with("DefaultAction", Value::Phrase(vec!["forward".into(), Value::text("arn:elsewhere")]));
        assert_eq!(kind(super::elbv2::listener::KIND).import_id(&listener, "x", &importing), "web/http");
        assert!(refused(super::elbv2::listener::KIND, "web/http", listener, &mut spec).contains("load balancer is not imported"));
        let written = &spec.network.as_ref().and_then(|n| n.route_tables.as_ref()).expect("route tables")[route_table::PUBLIC];
        assert_eq!(
            (written.internet_gateway, &written.subnets, written.routes.get("10.1.0.0/16").map(String::as_str)),
            (true, &vec!["public-a".to_string()], Some("pcx-1")),
            "a peering route is written as it is"
        );
    }

    /// Every kind `import` renders gives back its own resources: what the
    /// kinds want, observed as it is and rendered as spec entries (in the
    /// registry's order, as `import` does), is wanted again field for field
    /// (an imported estate plans no change). The whitelist is the exception
    /// by design: `import` pins every address, which the spec may not.
    #[test]
    fn what_a_kind_renders_it_wants_again() {
        let kinds = super::registry(&aws_config::SdkConfig::builder().build(), &Default::default(), Default::default());
        let imported: Vec<_> = kinds.iter().filter(|k| k.rules().imported).collect();
        let specs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
        for env in ["dev", "staging", "prod"] {
            let env = crate::spec::load(&specs, env).expect("a valid spec");
            let desired: Vec<_> = imported.iter().map(|k| (k, k.desired(&env))).collect();
            let named: BTreeMap<(&'static str, String), String> =
                desired.iter().flat_map(|(k, ds)| ds.iter().map(|d| ((k.name(), d.name.clone()), d.key.id.clone()))).collect();
            let importing = Importing { env: &env.env, named: &named };
            let mut spec = Spec::default();
            for (kind, ds) in &desired {
                for d in ds {
                    let live = Live { name: d.name.clone(), handle: d.name.clone(), fields: d.fields.clone(), tags: d.tags.clone(), ..Live::default() };
                    let rendering = kind.to_spec(&d.key.id, &live, &mut spec, &importing).unwrap_or_else(|e| panic!("{} {}: {e}", kind.name(), d.key.id));
                    assert!(rendering.unsaid.is_empty(), "{} {} renders whole: {:?}", kind.name(), d.key.id, rendering.unsaid);
                }
            }
            let again = EnvSpec::new(&env.env, spec);
            for (kind, ds) in desired.iter().filter(|(k, _)| k.name() != super::ec2::elastic_ip::KIND) {
                let back = kind.desired(&again);
                for d in ds {
                    let b = back.iter().find(|b| b.key == d.key).unwrap_or_else(|| panic!("{} {} is not wanted again", kind.name(), d.key.id));
                    assert_eq!((&b.name, &b.fields), (&d.name, &d.fields), "{} {} in {}", kind.name(), d.key.id, env.env);
                }
            }
        }
    }

    /// A physical id the spec writes (an ARN) of a resource the spec also
    /// holds compares with what AWS reports: both sides read as the same
    /// reference once its handle is known (written as text, the desired side
    /// stayed an ARN while the live one became a reference: drift forever).
    #[test]
    fn a_physical_id_written_in_the_spec_compares_with_the_live_one() {
        use crate::engine::references::ReferenceMap;
        use crate::engine::{ResourceKey, Value};
        let specs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
        let mut env = crate::spec::load(&specs, "prod").expect("a valid spec");
        let (role, key) = ("arn:aws:iam::123456789012:role/sentry-task-execution-prod", "arn:aws:kms:us-east-1:123456789012:key/1");
        let spec = &mut env.spec;
        let flow_logs = &mut spec.network.as_mut().expect("network").vpc.flow_logs;
        (flow_logs.role, flow_logs.role_arn) = (None, Some(role.into()));
        spec.data.as_mut().expect("data").tables.values_mut().for_each(|t| t.kms_key = Some(key.into()));
        spec.security.as_mut().expect("security").secrets.values_mut().for_each(|s| s.kms_key = Some(key.into()));
        spec.compute
            .as_mut()
            .expect("compute")
            .task_definitions
            .values_mut()
            .for_each(|t| (t.execution_role, t.execution_role_arn) = (None, Some(role.into())));
        let mut handles = ReferenceMap::default();
        handles.learn(&ResourceKey::new(super::iam::role::KIND, "task-execution"), role);
        handles.learn(&ResourceKey::new(super::kms::KIND, "data"), key);
        let kinds = super::registry(&aws_config::SdkConfig::builder().build(), &Default::default(), Default::default());
        let mut compared = 0;
        for kind in &kinds {
            for d in kind.desired(&env) {
                for (field, value) in d.fields.iter().filter(|(_, v)| [role, key].contains(&v.to_string().as_str())) {
                    let live = Value::handle(value.to_string());
                    assert_eq!(handles.to_references(value), handles.to_references(&live), "{} {} {field}", kind.name(), d.key.id);
                    compared += 1;
                }
            }
        }
        assert!(compared >= 4, "flow log, tables, secrets and task definitions each compared ({compared})");
    }

    /// A load balancer whose forwarding listener was not found is taken out
    /// of an imported spec with its listeners' and rules' adoptions (it
    /// would not load).
    #[test]
    fn a_load_balancer_without_a_forwarding_listener_is_taken_out_of_an_import() {
        let kinds = super::registry(&aws_config::SdkConfig::builder().build(), &Default::default(), Default::default());
        let balancers = kinds.iter().find(|k| k.name() == super::elbv2::load_balancer::KIND).expect("registered");
        let specs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
        let mut spec = crate::spec::load(&specs, "dev").expect("a valid spec").spec;
        assert!(balancers.unfinished(&mut spec).is_empty(), "dev's load balancers forward");
        let lbs = spec.load_balancing.as_mut().expect("load balancing");
        let (id, balancer) = lbs.load_balancers.iter_mut().next().expect("a load balancer");
        let (id, listeners, rules) = (id.clone(), balancer.listeners.len(), balancer.listeners.len() * balancer.routes.len());
        assert!(rules > 0, "dev's load balancer routes");
        balancer.default_target_group.clear();
        let taken = balancers.unfinished(&mut spec);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].0.len(), 1 + listeners + rules, "the load balancer, each of its listeners and their rules: {taken:?}");
        assert!(!spec.load_balancing.expect("load balancing").load_balancers.contains_key(&id));
    }

    /// `routeTables: {}` (what an import of an estate without tables of its
    /// own writes) keeps every subnet on the main table; only a spec without
    /// the section gets the tables the tiers imply.
    #[test]
    fn an_empty_route_table_section_is_no_table_and_an_absent_one_the_tiers() {
        let specs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
        let mut network = crate::spec::load(&specs, "dev").expect("a valid spec").spec.network.expect("network");
        assert!(network.route_tables.is_none());
        assert_eq!(network.route_table_layout("dev").len(), 3, "public and one per private subnet");
        network.route_tables = Some(BTreeMap::new());
        assert!(network.route_table_layout("dev").is_empty());
    }
}
