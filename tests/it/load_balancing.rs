//! The load balancer, its target groups, listener and route against the
//! emulator: built from the spec with the services registered in the target
//! groups, drift repaired, a route removed from the spec deleted with the
//! service's registration updated in place, and foreign ones under the dev
//! names left alone.

use aws_sdk_elasticloadbalancingv2::types::{Listener, LoadBalancer, Rule, TargetGroup};
use aws_sdk_elasticloadbalancingv2::Client;

use crate::harness::{foreign_network, is_write, json_args, operator, repo_specs, sdk_config, specs_with, Moto};

async fn elb(moto: &Moto) -> Client {
    Client::new(&sdk_config(&moto.endpoint).await)
}

async fn target_group(elb: &Client, name: &str) -> TargetGroup {
    let out = elb.describe_target_groups().names(name).send().await.unwrap_or_else(|e| panic!("target group {name}: {e:?}"));
    out.target_groups().first().cloned().unwrap_or_else(|| panic!("target group {name}"))
}

async fn target_group_attribute(elb: &Client, arn: &str, key: &str) -> Option<String> {
    let out = elb.describe_target_group_attributes().target_group_arn(arn).send().await.expect("attributes");
    out.attributes().iter().find(|a| a.key() == Some(key)).and_then(|a| a.value()).map(str::to_string)
}

async fn load_balancer(elb: &Client, name: &str) -> LoadBalancer {
    let out = elb.describe_load_balancers().names(name).send().await.unwrap_or_else(|e| panic!("load balancer {name}: {e:?}"));
    out.load_balancers().first().cloned().unwrap_or_else(|| panic!("load balancer {name}"))
}

async fn listeners(elb: &Client, balancer: &str) -> Vec<Listener> {
    elb.describe_listeners().load_balancer_arn(balancer).send().await.expect("listeners").listeners().to_vec()
}

/// The listener's rules, its default rule left out.
async fn rules(elb: &Client, listener: &str) -> Vec<Rule> {
    let out = elb.describe_rules().listener_arn(listener).send().await.expect("rules");
    out.rules().iter().filter(|r| r.is_default() != Some(true)).cloned().collect()
}

/// The path patterns of a rule, sorted (from its config, else its values).
fn paths(rule: &Rule) -> Vec<String> {
    let mut found: Vec<String> = rule
        .conditions()
        .iter()
        .filter(|c| c.field() == Some("path-pattern"))
        .flat_map(|c| c.path_pattern_config().map(|p| p.values().to_vec()).filter(|v| !v.is_empty()).unwrap_or_else(|| c.values().to_vec()))
        .collect();
    found.sort();
    found
}

/// The target group a (single forward) action sends to.
fn forwarded_to(actions: &[aws_sdk_elasticloadbalancingv2::types::Action]) -> Option<String> {
    let a = actions.first()?;
    a.target_group_arn().map(str::to_string).or_else(|| a.forward_config()?.target_groups().first()?.target_group_arn().map(str::to_string))
}

/// `(target group ARN, container, port)` of each registration of an ECS service.
async fn registrations(ecs: &aws_sdk_ecs::Client, service: &str) -> Vec<(String, String, i32)> {
    let out = ecs.describe_services().cluster("sentry-gateway-dev").services(service).send().await.expect("services");
    let s = out.services().first().cloned().unwrap_or_else(|| panic!("service {service}"));
    s.load_balancers()
        .iter()
        .map(|l| {
            (l.target_group_arn().unwrap_or_default().to_string(), l.container_name().unwrap_or_default().to_string(), l.container_port().unwrap_or_default())
        })
        .collect()
}

/// The ids of dev's subnets and security groups with these logical ids.
async fn ec2_ids(moto: &Moto, subnets: &[&str], group: &str) -> (Vec<String>, String) {
    use aws_sdk_ec2::types::Filter;
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(&moto.endpoint).await);
    let dev = Filter::builder().name("tag:sentry:env").values("dev").build();
    let ids = Filter::builder().name("tag:sentry:id").set_values(Some(subnets.iter().map(|s| s.to_string()).collect())).build();
    let out = ec2.describe_subnets().filters(dev.clone()).filters(ids).send().await.expect("subnets");
    let mut subnet_ids: Vec<String> = out.subnets().iter().filter_map(|s| s.subnet_id().map(str::to_string)).collect();
    subnet_ids.sort();
    let out = ec2.describe_security_groups().filters(dev).filters(Filter::builder().name("tag:sentry:id").values(group).build()).send().await.expect("groups");
    let group_id = out.security_groups().first().and_then(|g| g.group_id()).expect("the group").to_string();
    (subnet_ids, group_id)
}

#[tokio::test]
async fn dev_converges_drift_is_repaired_and_a_removed_route_is_deleted() {
    let (moto, specs) = Moto::built("dev");
    let elb = elb(&moto).await;

    // The load balancer: internet-facing, in the public subnets, behind the alb group.
    let lb = load_balancer(&elb, "sentry-public-dev").await;
    assert_eq!(lb.scheme().map(|s| s.as_str()), Some("internet-facing"));
    assert_eq!(lb.r#type().map(|t| t.as_str()), Some("application"));
    let (public, alb) = ec2_ids(&moto, &["public-a", "public-b"], "alb").await;
    let mut subnets: Vec<String> = lb.availability_zones().iter().filter_map(|z| z.subnet_id().map(str::to_string)).collect();
    subnets.sort();
    assert_eq!(subnets, public, "the public subnets");
    assert_eq!(lb.security_groups(), [alb], "the alb group");
    let lb_arn = lb.load_balancer_arn().expect("arn").to_string();
    let attributes = elb.describe_load_balancer_attributes().load_balancer_arn(&lb_arn).send().await.expect("attributes");
    let attribute = |key: &str| attributes.attributes().iter().find(|a| a.key() == Some(key)).and_then(|a| a.value()).map(str::to_string);
    assert_eq!((attribute("deletion_protection.enabled").as_deref(), attribute("idle_timeout.timeout_seconds").as_deref()), (Some("false"), Some("60")));

    // The target groups and their health checks.
    let admin = target_group(&elb, "sentry-frontend-admin-dev").await;
    assert_eq!((admin.port(), admin.target_type().map(|t| t.as_str())), (Some(3000), Some("ip")));
    assert_eq!(admin.health_check_path(), Some("/"));
    assert_eq!((admin.health_check_interval_seconds(), admin.health_check_timeout_seconds()), (Some(30), Some(5)));
    assert_eq!((admin.healthy_threshold_count(), admin.unhealthy_threshold_count()), (Some(2), Some(3)));
    assert_eq!(admin.matcher().and_then(|m| m.http_code()), Some("200-399"));
    let admin_arn = admin.target_group_arn().expect("arn").to_string();
    assert_eq!(target_group_attribute(&elb, &admin_arn, "deregistration_delay.timeout_seconds").await.as_deref(), Some("30"));
    assert_eq!(target_group_attribute(&elb, &admin_arn, "stickiness.enabled").await.as_deref(), Some("false"));
    let websocket = target_group(&elb, "sentry-websocket-dev").await;
    assert_eq!((websocket.port(), websocket.health_check_path()), (Some(8080), Some("/health")));
    let ws_arn = websocket.target_group_arn().expect("arn").to_string();
    assert_eq!(target_group_attribute(&elb, &ws_arn, "stickiness.enabled").await.as_deref(), Some("true"));
    assert_eq!(target_group_attribute(&elb, &ws_arn, "stickiness.lb_cookie.duration_seconds").await.as_deref(), Some("3600"));

    // One HTTP listener forwarding to frontend-admin, one rule sending /ws to websocket.
    let found = listeners(&elb, &lb_arn).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let http = &found[0];
    assert_eq!((http.port(), http.protocol().map(|p| p.as_str())), (Some(80), Some("HTTP")));
    assert_eq!(forwarded_to(http.default_actions()).as_deref(), Some(admin_arn.as_str()));
    let http_arn = http.listener_arn().expect("arn").to_string();
    let routed = rules(&elb, &http_arn).await;
    assert_eq!(routed.len(), 1, "{routed:?}");
    assert_eq!((routed[0].priority(), paths(&routed[0])), (Some("10"), vec!["/ws".to_string(), "/ws/*".to_string()]));
    assert_eq!(forwarded_to(routed[0].actions()).as_deref(), Some(ws_arn.as_str()));

    // The services register their tasks in the target groups.
    let ecs = aws_sdk_ecs::Client::new(&sdk_config(&moto.endpoint).await);
    assert_eq!(registrations(&ecs, "sentry-frontend-admin-service-dev").await, [(admin_arn.clone(), "frontend-admin".to_string(), 3000)]);
    assert_eq!(registrations(&ecs, "sentry-websocket-service-dev").await, [(ws_arn.clone(), "websocket".to_string(), 8080)]);

    // Drift: a health check path changed and the route deleted by hand.
    elb.modify_target_group().target_group_arn(&ws_arn).health_check_path("/changed").send().await.expect("changed by hand");
    let rule_arn = routed[0].rule_arn().expect("arn").to_string();
    elb.delete_rule().rule_arn(&rule_arn).send().await.expect("deleted by hand");
    let run = moto.reconcile(&specs, "dev");
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.resource("elbv2.target-group", "websocket")["action"], "update", "{}", run.stdout);
    assert_eq!(run.resource("elbv2.listener-rule", "public/http/websocket")["action"], "create", "{}", run.stdout);
    assert_eq!(target_group(&elb, "sentry-websocket-dev").await.health_check_path(), Some("/health"), "health check put back");
    let routed = rules(&elb, &http_arn).await;
    assert_eq!((routed.len(), routed.first().and_then(|r| r.priority())), (1, Some("10")), "the route is back: {routed:?}");
    moto.assert_converged(&specs, "dev");

    // The route removed from the spec (and the websocket service's registration with it):
    // the rule is deleted, the service updated in place, the target group kept.
    let dev = std::fs::read_to_string(repo_specs().join("dev.yaml")).expect("dev");
    let removed = format!(
        "{dev}loadBalancing:\n  loadBalancers:\n    public:\n      routes:\n        websocket: null\ncompute:\n  services:\n    websocket:\n      loadBalancer: null\n"
    );
    let dir = specs_with(&[("dev.yaml", &removed)]);
    let run = moto.reconcile(dir.path(), "dev");
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.resource("elbv2.listener-rule", "public/http/websocket")["action"], "delete", "{}", run.stdout);
    assert_eq!(run.resource("ecs.service", "websocket")["action"], "update", "{}", run.stdout);
    assert!(rules(&elb, &http_arn).await.is_empty(), "the rule is gone");
    assert!(registrations(&ecs, "sentry-websocket-service-dev").await.is_empty(), "the service no longer registers in the target group");
    assert_eq!(target_group(&elb, "sentry-websocket-dev").await.target_group_arn(), Some(ws_arn.as_str()), "the target group stays");
    moto.assert_converged(dir.path(), "dev");
}

/// A target group and a load balancer made by hand under dev's names
/// (untagged): skipped, never written to, and nothing is built on them
/// (no listener on the foreign load balancer, no service registered in the
/// foreign target group); the rest of the estate is built.
#[tokio::test]
async fn a_foreign_target_group_and_load_balancer_under_dev_names_are_untouched() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let (vpc, theirs) = foreign_network(&ec2, &["us-east-1a", "us-east-1b"]).await;
    let elb = Client::new(&config);
    let group = elb
        .create_target_group()
        .name("sentry-websocket-dev")
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(9000)
        .vpc_id(&vpc)
        .target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Ip)
        .health_check_path("/theirs")
        .send()
        .await
        .expect("foreign target group");
    let group_arn = group.target_groups().first().and_then(|t| t.target_group_arn()).expect("arn").to_string();
    let balancer = elb.create_load_balancer().name("sentry-public-dev").set_subnets(Some(theirs)).send().await.expect("foreign load balancer");
    let balancer_arn = balancer.load_balancers().first().and_then(|b| b.load_balancer_arn()).expect("arn").to_string();

    let specs = repo_specs();
    moto.start_recording();
    let run = operator(&moto.endpoint, &json_args(&specs, &["reconcile", "--once", "--env", "dev"]));
    let writes: Vec<(String, String)> = moto.stop_recording_requests().into_iter().filter(|(op, _)| is_write(op)).collect();
    assert_eq!(run.code, 2, "the rest of the estate is built:\n{}\n{}", run.stdout, run.stderr);

    let skipped = |kind: &str, id: &str, why: &str| {
        let step = run.resource(kind, id);
        assert_eq!(step["action"], "skip", "{kind} {id}: {step}");
        assert!(step["note"].as_str().unwrap_or("").contains(why), "{kind} {id}: {step}");
    };
    skipped("elbv2.target-group", "websocket", "unmanaged, skipped");
    skipped("elbv2.load-balancer", "public", "unmanaged, skipped");
    skipped("elbv2.listener", "public/http", "depends on elbv2.load-balancer public");
    skipped("elbv2.listener-rule", "public/http/websocket", "which is not the operator's");
    skipped("ecs.service", "websocket", "depends on elbv2.target-group websocket");
    skipped("ecs.service", "frontend-admin", "which is not the operator's");
    assert_eq!(run.resource("elbv2.target-group", "frontend-admin")["outcome"]["status"], "applied", "our own target group is built");

    // No ELB write (API version 2015-12-01) names the foreign resources.
    let elb_writes: Vec<&(String, String)> = writes.iter().filter(|(_, text)| text.contains("Version=2015-12-01")).collect();
    for needle in ["sentry-websocket-dev", "sentry-public-dev", group_arn.as_str(), balancer_arn.as_str()] {
        let touching: Vec<&String> = elb_writes
            .iter()
            .filter(|(_, text)| text.contains(needle) || text.contains(&needle.replace(':', "%3A").replace('/', "%2F")))
            .map(|(op, _)| op)
            .collect();
        assert!(touching.is_empty(), "writes naming foreign {needle}: {touching:?}");
    }
    let group = target_group(&elb, "sentry-websocket-dev").await;
    assert_eq!((group.port(), group.health_check_path()), (Some(9000), Some("/theirs")), "the foreign target group unchanged");
    assert!(listeners(&elb, &balancer_arn).await.is_empty(), "no listener added to the foreign load balancer");
    let tags = elb.describe_tags().resource_arns(&group_arn).resource_arns(&balancer_arn).send().await.expect("tags");
    assert!(tags.tag_descriptions().iter().all(|d| d.tags().is_empty()), "no tag added: {tags:?}");
    let balancers = elb.describe_load_balancers().send().await.expect("load balancers");
    assert_eq!(balancers.load_balancers().len(), 1, "no second load balancer under the same name");
}
