//! Elastic Load Balancing (v2): target groups, Application Load Balancers,
//! their listeners and listener rules, one module each, and what they share:
//! tags (read with DescribeTags, at most 20 ARNs a call), actions as field
//! values, and the logical ids of listeners and rules.
//!
//! Every resource is tagged in its create call. Load balancers and target
//! groups have names unique in the account and are matched by name;
//! listeners and rules have none and are matched by their `sentry:id` tag
//! (`<load balancer>/<listener>`, `<load balancer>/<listener>/<route>`).

pub mod listener;
pub mod listener_rule;
pub mod load_balancer;
pub mod target_group;

use std::collections::HashMap;

use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, RedirectActionConfig, RedirectActionStatusCodeEnum, Tag};
use aws_sdk_elasticloadbalancingv2::Client;
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::aws::{found, AwsError, AwsResult};
use crate::engine::{reference, ResourceKey, Value};
use crate::spec::model::{DefaultAction, LoadBalancing, Tags};
use crate::spec::EnvSpec;

/// DescribeTags takes at most this many ARNs per call.
const TAGS_BATCH: usize = 20;
/// Describe calls in flight at once, per kind.
const CONCURRENCY: usize = 4;

/// A redirect's host, path and query when it keeps the request's own.
const KEEP_HOST: &str = "#{host}";
fields! { KEEP_PATH = "/#{path}", KEEP_QUERY = "#{query}" }

/// The `loadBalancing` section, when the spec has one.
pub fn load_balancing(env: &EnvSpec) -> Option<&LoadBalancing> {
    env.spec.load_balancing.as_ref()
}

/// The logical id of listener `listener` of load balancer `lb`.
pub fn listener_id(lb: &str, listener: &str) -> String {
    format!("{lb}/{listener}")
}

/// The logical id of route `route` as a rule of listener `listener` of load balancer `lb`.
pub fn rule_id(lb: &str, listener: &str, route: &str) -> String {
    format!("{lb}/{listener}/{route}")
}

/// The listeners (whose default action) and listener rules that forward to
/// target group `target_group`: what an ECS service registering in it waits
/// for (ECS refuses a target group no load balancer uses).
pub fn forwarders(env: &EnvSpec, target_group: &str) -> Vec<ResourceKey> {
    let Some(lbs) = load_balancing(env) else { return Vec::new() };
    let mut keys = Vec::new();
    for (id, b) in &lbs.load_balancers {
        for (lid, l) in &b.listeners {
            if b.default_action(l) == DefaultAction::Forward(target_group) {
                keys.push(ResourceKey::new(listener::KIND, &listener_id(id, lid)));
            }
        }
        for lid in b.route_listeners() {
            for rid in b.routes.iter().filter(|(_, r)| r.target_group == target_group).map(|(rid, _)| rid) {
                keys.push(ResourceKey::new(listener_rule::KIND, &rule_id(id, lid, rid)));
            }
        }
    }
    keys
}

/// Tags as ELB tags.
pub fn tag_list(tags: &Tags) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

fn tag_map(tags: &[Tag]) -> Tags {
    tags.iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect()
}

/// The tags of every resource in `arns`, 20 ARNs a call. A batch naming a
/// resource deleted since it was listed fails whole: its ARNs are then read
/// one by one, and the vanished one is left out.
pub async fn tags_of(client: &Client, arns: Vec<String>) -> Result<HashMap<String, Tags>, AwsError> {
    let mut tags = HashMap::new();
    for batch in arns.chunks(TAGS_BATCH) {
        let read = |arns: Vec<String>| async move { found(client.describe_tags().set_resource_arns(Some(arns)).send().await.aws("ELBv2.DescribeTags")) };
        let described = match read(batch.to_vec()).await? {
            Some(out) => vec![out],
            None => {
                let one_by_one = stream::iter(batch.to_vec()).map(|arn| read(vec![arn])).buffer_unordered(CONCURRENCY).try_collect::<Vec<_>>().await?;
                one_by_one.into_iter().flatten().collect()
            }
        };
        for d in described.iter().flat_map(|out| out.tag_descriptions()) {
            if let Some(arn) = d.resource_arn() {
                tags.insert(arn.to_string(), tag_map(d.tags()));
            }
        }
    }
    Ok(tags)
}

/// Adds or overwrites `tags` on the resource `arn`.
pub async fn add_tags(client: &Client, arn: &str, tags: &Tags) -> Result<(), AwsError> {
    if tags.is_empty() {
        return Ok(());
    }
    client.add_tags().resource_arns(arn).set_tags(Some(tag_list(tags))).send().await.aws("ELBv2.AddTags")?;
    Ok(())
}

/// The forward action to target group `target_group` (logical id), as a
/// field value: the words `forward @elbv2.target-group/<id>`.
pub fn forward_to(target_group: &str) -> Value {
    Value::Phrase(vec![Value::text("forward"), Value::Ref(reference(target_group::KIND, target_group))])
}

/// The redirect of plain HTTP to HTTPS on `port`, as a field value.
pub fn redirect_to_https(port: u32) -> Value {
    words(&format!("redirect HTTPS {port} HTTP_301"))
}

/// Text of the kind's own making (no reference in it) as words.
fn words(text: &str) -> Value {
    Value::Phrase(text.split_whitespace().map(Value::text).collect())
}

/// Actions as one field value, in their order: `forward <target group ARN>`,
/// `redirect HTTPS 443 HTTP_301` (a host, path or query other than the
/// request's own is appended, so it shows as drift), or the action's type
/// for anything else; several are joined with the word `+`. Target groups are handles.
pub fn actions_text(actions: &[Action]) -> Value {
    let mut ordered: Vec<&Action> = actions.iter().collect();
    ordered.sort_by_key(|a| a.order().unwrap_or(i32::MAX));
    let text = |a: &Action| match a.r#type() {
        Some(ActionTypeEnum::Forward) => {
            let mut groups: Vec<&str> = match a.target_group_arn() {
                Some(arn) => vec![arn],
                None => a.forward_config().map(|f| f.target_groups().iter().filter_map(|t| t.target_group_arn()).collect()).unwrap_or_default(),
            };
            groups.sort_unstable();
            [Value::text("forward")].into_iter().chain(groups.into_iter().map(Value::handle)).collect()
        }
        Some(ActionTypeEnum::Redirect) => {
            let Some(r) = a.redirect_config() else { return vec![Value::text("redirect")] };
            let mut text =
                format!("redirect {} {} {}", r.protocol().unwrap_or("#{protocol}"), r.port().unwrap_or("#{port}"), r.status_code().map_or("", |s| s.as_str()));
            for (what, value, keep) in [("host", r.host(), KEEP_HOST), ("path", r.path(), KEEP_PATH), ("query", r.query(), KEEP_QUERY)] {
                if let Some(v) = value.filter(|v| *v != keep) {
                    text.push_str(&format!(" {what}={v}"));
                }
            }
            words(&text).items().into_iter().cloned().collect()
        }
        Some(other) => vec![Value::text(other.as_str())],
        None => vec![Value::text("unknown")],
    };
    let actions: Vec<Vec<Value>> = ordered.into_iter().map(text).collect();
    Value::Phrase(actions.join(&Value::text("+")))
}

/// The actions a field value written by [`forward_to`] or
/// [`redirect_to_https`] stands for (its references resolved), for the call
/// `operation`: an error when a target group was never created.
pub fn actions_of(value: Option<&Value>, operation: &'static str) -> Result<Vec<Action>, AwsError> {
    let value = value.ok_or_else(|| AwsError::unexpected(operation, "no action to write".to_string()))?;
    let words: Vec<&str> = value.resolved(operation)?.items().into_iter().filter_map(Value::as_text).collect();
    match words.as_slice() {
        ["forward", group] => Ok(vec![Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(*group).build()]),
        ["redirect", protocol, port, status] => {
            let redirect = RedirectActionConfig::builder()
                .protocol(*protocol)
                .port(*port)
                .host(KEEP_HOST)
                .path(KEEP_PATH)
                .query(KEEP_QUERY)
                .status_code(RedirectActionStatusCodeEnum::from(*status))
                .build();
            Ok(vec![Action::builder().r#type(ActionTypeEnum::Redirect).redirect_config(redirect).build()])
        }
        _ => Err(AwsError::unexpected(operation, format!("\"{value}\" is not an action the operator writes"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::FieldReader;
    use aws_sdk_elasticloadbalancingv2::types::{ForwardActionConfig, TargetGroupTuple};

    use crate::engine::{Desired, Kind};
    use crate::spec::model::Listener;

    const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/sentry-websocket-dev/0123";

    fn spec(env: &str) -> EnvSpec {
        crate::spec::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs"), env).expect("a valid spec")
    }

    fn client() -> Client {
        let config = aws_sdk_elasticloadbalancingv2::Config::builder().behavior_version(aws_sdk_elasticloadbalancingv2::config::BehaviorVersion::latest());
        Client::from_conf(config.build())
    }

    fn by_id<'a>(desired: &'a [Desired], id: &str) -> &'a Desired {
        desired.iter().find(|d| d.key.id == id).unwrap_or_else(|| panic!("{id} in {desired:?}"))
    }

    #[test]
    fn dev_forwards_on_http_and_its_services_wait_for_what_forwards_to_them() {
        let dev = spec("dev");
        assert_eq!(forwarders(&dev, "frontend-admin"), [ResourceKey::new(listener::KIND, "public/http")]);
        assert_eq!(forwarders(&dev, "websocket"), [ResourceKey::new(listener_rule::KIND, "public/http/websocket")]);
        let listeners = listener::Listeners { client: client() }.desired(&dev);
        let http = by_id(&listeners, "public/http");
        assert_eq!(
            (http.name.as_str(), http.shown("DefaultAction").as_str(), http.field("Protocol")),
            ("sentry-public-dev:80", "forward @elbv2.target-group/frontend-admin", "HTTP")
        );
        assert_eq!((http.field("Certificate"), http.field("SslPolicy")), ("", ""));
        let rules = listener_rule::ListenerRules { client: client() }.desired(&dev);
        let ws = by_id(&rules, "public/http/websocket");
        assert_eq!(
            [ws.field("Listener"), ws.field("Priority"), ws.field("Conditions"), ws.shown("Action").as_str()],
            ["@elbv2.listener/public/http", "10", "path-pattern=/ws|/ws/*", "forward @elbv2.target-group/websocket"]
        );

        let ecs = aws_sdk_ecs::Config::builder().behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest()).build();
        let services = crate::kinds::ecs::service::Services { client: aws_sdk_ecs::Client::from_conf(ecs) }.desired(&dev);
        let websocket = by_id(&services, "websocket");
        assert_eq!(websocket.shown("LoadBalancers").as_str(), "@elbv2.target-group/websocket websocket 8080");
        for dependency in [ResourceKey::new(target_group::KIND, "websocket"), ResourceKey::new(listener_rule::KIND, "public/http/websocket")] {
            assert!(websocket.depends_on.contains(&dependency), "{dependency} in {:?}", websocket.depends_on);
        }
        assert_eq!(by_id(&services, "oms").shown("LoadBalancers").as_str(), "", "no load balancer: an empty registration list");
    }

    #[test]
    fn with_https_http_redirects_and_the_routes_move_to_https() {
        let mut env = spec("dev");
        let public = env.spec.load_balancing.as_mut().and_then(|l| l.load_balancers.get_mut("public")).expect("public");
        let certificate = "arn:aws:acm:${region}:${account}:certificate/sentry";
        public.listeners.insert("https".into(), Listener { port: 443, certificate_arn: Some(certificate.into()), ssl_policy: None });
        let listeners = listener::Listeners { client: client() }.desired(&env);
        assert_eq!(by_id(&listeners, "public/http").shown("DefaultAction").as_str(), "redirect HTTPS 443 HTTP_301");
        let https = by_id(&listeners, "public/https");
        assert_eq!(
            [https.field("Protocol"), https.field("Certificate"), https.field("SslPolicy"), https.shown("DefaultAction").as_str()],
            ["HTTPS", certificate, "ELBSecurityPolicy-TLS13-1-2-2021-06", "forward @elbv2.target-group/frontend-admin"]
        );
        let rules = listener_rule::ListenerRules { client: client() }.desired(&env);
        assert_eq!(rules.iter().map(|r| r.key.id.as_str()).collect::<Vec<_>>(), ["public/https/websocket"], "routes on the HTTPS listener only");
        assert_eq!(forwarders(&env, "frontend-admin"), [ResourceKey::new(listener::KIND, "public/https")]);
    }

    #[test]
    fn prod_protects_its_load_balancer_in_three_zones() {
        let prod = spec("prod");
        let balancers = load_balancer::LoadBalancers { client: client() }.desired(&prod);
        let public = by_id(&balancers, "public");
        assert_eq!((public.name.as_str(), public.field("DeletionProtection")), ("sentry-public-prod", "true"));
        assert_eq!(public.shown("Subnets").as_str(), "@ec2.subnet/public-a,@ec2.subnet/public-b,@ec2.subnet/public-c");
        assert!(spec("staging").spec.load_balancing.is_some());
    }

    #[test]
    fn actions_round_trip_through_their_field_value() {
        for value in [Value::Phrase(vec![Value::text("forward"), Value::handle(TG)]), redirect_to_https(443)] {
            let actions = actions_of(Some(&value), "ELBv2.CreateListener").expect("an action");
            assert_eq!(actions_text(&actions), value);
        }
        assert_eq!(forward_to("websocket").to_string(), "forward @elbv2.target-group/websocket");
        assert_eq!(redirect_to_https(443).to_string(), "redirect HTTPS 443 HTTP_301");
        let unresolved = actions_of(Some(&forward_to("websocket")), "ELBv2.CreateRule").expect_err("never sent");
        assert!(unresolved.message.contains("does not exist"), "{unresolved}");
        assert!(actions_of(Some(&words("fixed-response 404")), "ELBv2.CreateRule").is_err());
    }

    #[test]
    fn what_aws_reports_reads_like_what_the_spec_writes() {
        // AWS answers a forward with both the ARN and a one-group ForwardConfig; the emulator with the ARN only.
        let tuple = TargetGroupTuple::builder().target_group_arn(TG).weight(1).build();
        let both = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(TG)
            .forward_config(ForwardActionConfig::builder().target_groups(tuple.clone()).build())
            .build();
        let config_only = Action::builder().r#type(ActionTypeEnum::Forward).forward_config(ForwardActionConfig::builder().target_groups(tuple).build()).build();
        assert_eq!(actions_text(&[both]).to_string(), format!("forward {TG}"));
        assert_eq!(actions_text(&[config_only]).to_string(), format!("forward {TG}"));
        // A redirect keeping the request's host, path and query, as AWS fills them in; one changed by hand shows.
        let redirect = |path: &str, order: i32| {
            let config = RedirectActionConfig::builder()
                .protocol("HTTPS")
                .port("443")
                .host(KEEP_HOST)
                .path(path)
                .query(KEEP_QUERY)
                .status_code(RedirectActionStatusCodeEnum::Http301)
                .build();
            Action::builder().r#type(ActionTypeEnum::Redirect).redirect_config(config).order(order).build()
        };
        assert_eq!(actions_text(&[redirect(KEEP_PATH, 1)]).to_string(), "redirect HTTPS 443 HTTP_301");
        assert_eq!(actions_text(&[redirect("/maintenance", 1)]).to_string(), "redirect HTTPS 443 HTTP_301 path=/maintenance");
        let fixed = Action::builder().r#type(ActionTypeEnum::FixedResponse).order(1).build();
        assert_eq!(actions_text(&[redirect(KEEP_PATH, 2), fixed]).to_string(), "fixed-response + redirect HTTPS 443 HTTP_301", "in their order");
    }
}
