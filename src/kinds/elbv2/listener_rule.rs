//! Listener rules: the load balancers' routes (path and host patterns to a
//! target group), one rule per route on each listener the routes attach to
//! (the HTTPS ones when there are any, else the HTTP ones). Priority is
//! changed with SetRulePriorities, conditions and action with ModifyRule; a
//! rule on another listener is replaced. Removed from the spec, a rule is
//! deleted. Rules someone added by hand (untagged) are left alone.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{HostHeaderConditionConfig, PathPatternConditionConfig, Rule, RuleCondition, RulePriorityPair};
use aws_sdk_elasticloadbalancingv2::Client;

use super::{actions_of, actions_text, add_tags, forward_to, listener, listener_id, load_balancing, rule_id, tag_list, tags_of, target_group, CONCURRENCY};
use crate::aws::{found, gone_is_ok, required, AwsError, AwsResult};
use crate::engine::{
    ownership_tags, Delta, Desired, FieldReader, Importing, Kind, Layer, Live, Matching, OnImmutableChange, ReadCache, Rendering, Rules, Value,
};
use crate::kinds::read::describe_each;
use crate::spec::model::{DeletionPolicy, Route, Spec, Tags};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "elbv2.listener-rule";

fields! { LISTENER = "Listener", PRIORITY = "Priority", CONDITIONS = "Conditions", ACTION = "Action" }

fields! { HOST = "host-header", PATH = "path-pattern" }

/// The listener rule kind.
pub struct ListenerRules {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

/// One condition as text: `<field>=<value>|<value>`, values sorted (they
/// are alternatives). Path and host patterns hold no `|`, space or comma.
fn condition_text(field: &str, values: &[String]) -> String {
    let mut values: Vec<&str> = values.iter().map(String::as_str).collect();
    values.sort_unstable();
    format!("{field}={}", values.join("|"))
}

/// A route's conditions as one field value: the host condition, then the
/// path condition, each present when the route has values for it.
fn conditions_text(hosts: &[String], paths: &[String]) -> String {
    let mut parts = Vec::new();
    if !hosts.is_empty() {
        parts.push(condition_text(HOST, hosts));
    }
    if !paths.is_empty() {
        parts.push(condition_text(PATH, paths));
    }
    parts.join(" ")
}

/// A rule's live conditions as one field value, like [`conditions_text`]:
/// the values of a host or path condition from its config (AWS also repeats
/// them in `Values`, the emulator may give only those); any other kind of
/// condition by its field alone (so it differs from any route, and is
/// replaced). Conditions are sorted.
fn live_conditions(conditions: &[RuleCondition]) -> String {
    let mut parts: Vec<String> = conditions
        .iter()
        .map(|c| {
            let field = c.field().unwrap_or_default();
            let configured = match field {
                HOST => c.host_header_config().map(|h| h.values()),
                PATH => c.path_pattern_config().map(|p| p.values()),
                _ => return format!("{field}=?"),
            };
            let values = configured.filter(|v| !v.is_empty()).unwrap_or(c.values());
            condition_text(field, values)
        })
        .collect();
    parts.sort();
    parts.join(" ")
}

/// The conditions a field value written by [`conditions_text`] stands for.
fn conditions_of(text: &str) -> Vec<RuleCondition> {
    text.split_whitespace()
        .filter_map(|part| part.split_once('='))
        .map(|(field, values)| {
            let values: Vec<String> = values.split('|').map(str::to_string).collect();
            let condition = RuleCondition::builder().field(field);
            match field {
                HOST => condition.host_header_config(HostHeaderConditionConfig::builder().set_values(Some(values)).build()),
                _ => condition.path_pattern_config(PathPatternConditionConfig::builder().set_values(Some(values)).build()),
            }
            .build()
        })
        .collect()
}

/// The live form of rule `r` of listener `on` (a live listener), tagged `tags`;
/// `None` for the listener's default rule (its default action, not a rule).
fn rule_live(on: &Live, r: &Rule, tags: &mut HashMap<String, Tags>) -> Result<Option<Live>, AwsError> {
    if r.is_default() == Some(true) || r.priority() == Some("default") {
        return Ok(None);
    }
    let arn = required("ELBv2.DescribeRules", "rule ARN", r.rule_arn())?;
    let priority = r.priority().unwrap_or_default();
    let live = Live { name: format!("{}/{priority}", on.name), tags: tags.remove(&arn).unwrap_or_default(), handle: arn, ..Live::default() }
        .with_handle(LISTENER, &on.handle)
        .with(PRIORITY, priority)
        .with(CONDITIONS, live_conditions(r.conditions()))
        .with(ACTION, actions_text(r.actions()));
    Ok(Some(live))
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["elasticloadbalancing:DescribeRules", "elasticloadbalancing:DescribeTags"],
    grants: &[Grant::allow("LoadBalancingWrites", &["elasticloadbalancing:CreateRule", "elasticloadbalancing:ModifyRule", "elasticloadbalancing:SetRulePriorities", "elasticloadbalancing:DeleteRule", "elasticloadbalancing:AddTags"], &["arn:aws:elasticloadbalancing:*:*:targetgroup/sentry-*/*", "arn:aws:elasticloadbalancing:*:*:loadbalancer/app/sentry-*/*", "arn:aws:elasticloadbalancing:*:*:listener/app/sentry-*/*/*", "arn:aws:elasticloadbalancing:*:*:listener-rule/app/sentry-*/*/*/*"])],
};

#[async_trait]
impl Kind for ListenerRules {
    fn rules(&self) -> Rules {
        Rules {
            matching: Matching::OwnershipTag,
            immutable: &[LISTENER],
            on_immutable_change: OnImmutableChange::Replace,
            events: EventMatch::of("elasticloadbalancing.amazonaws.com", &["Rule"], &["ruleArn", "RuleArn"]).marked("listener-rule/"),
            ..Rules::new(KIND, Layer::Compute)
                .stands_for(&["AWS::ElasticLoadBalancingV2::ListenerRule", "aws_lb_listener_rule", "aws_alb_listener_rule"])
                .imported()
                .needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(lbs) = load_balancing(env) else { return Vec::new() };
        let mut desired = Vec::new();
        for (id, b) in &lbs.load_balancers {
            let lb_name = b.physical_name(id, &env.env);
            for lid in b.route_listeners() {
                let port = b.listeners.get(lid).map_or(0, |l| l.port);
                for (rid, r) in &b.routes {
                    let key = rule_id(id, lid, rid);
                    let d = Desired::new(KIND, &key, format!("{lb_name}:{port}/{}", r.priority), ownership_tags(env, &key, DeletionPolicy::Delete, &b.tags))
                        .with_reference(LISTENER, listener::KIND, &listener_id(id, lid))
                        .with(PRIORITY, r.priority.to_string())
                        .with(CONDITIONS, conditions_text(&r.hosts, &r.paths))
                        .with(ACTION, forward_to(&r.target_group))
                        .after(target_group::KIND, &r.target_group);
                    desired.push(d);
                }
            }
        }
        desired
    }

    /// Under its listener's id (`<load balancer>/<listener>/<route>`).
    fn import_id(&self, live: &Live, proposed: &str, _importing: &Importing) -> String {
        match live.fields.get(LISTENER).and_then(|v| v.id_of(listener::KIND)) {
            Some(on) => format!("{on}/{proposed}"),
            None => proposed.to_string(),
        }
    }

    /// A route of its load balancer (host and path conditions forwarding to
    /// a target group), on a listener the spec routes on (the HTTPS ones
    /// when there are any).
    fn to_spec(&self, id: &str, live: &Live, spec: &mut Spec, _importing: &Importing) -> Result<Rendering, String> {
        let on = live.fields.get(LISTENER).and_then(|v| v.id_of(listener::KIND)).ok_or("its listener is not imported")?;
        let ((lb, lid), rid) = (on.split_once('/').ok_or("its listener's id names no load balancer")?, id.rsplit('/').next().unwrap_or(id));
        let balancer = spec.load_balancing.as_mut().and_then(|l| l.load_balancers.get_mut(lb)).ok_or("its load balancer is not imported")?;
        if !balancer.route_listeners().contains(&lid) {
            return Err(format!("it is a rule of listener {lid}; the spec routes on the HTTPS listeners of a load balancer that has one"));
        }
        let action = live.fields.get(ACTION).map(Value::items).unwrap_or_default();
        let target_group = match action.as_slice() {
            [forward, group] if forward.as_text() == Some("forward") => {
                group.id_of(target_group::KIND).ok_or_else(|| format!("it forwards to {group}, a target group not imported"))?
            }
            _ => return Err("its action is not a forward to one target group".into()),
        };
        let mut route = Route {
            priority: live.field(PRIORITY).parse().map_err(|_| format!("its priority {:?}", live.field(PRIORITY)))?,
            paths: Vec::new(),
            hosts: Vec::new(),
            target_group: target_group.to_string(),
        };
        for condition in live.field(CONDITIONS).split_whitespace() {
            match condition.split_once('=') {
                Some((HOST, values)) => route.hosts = values.split('|').map(str::to_string).collect(),
                Some((PATH, values)) => route.paths = values.split('|').map(str::to_string).collect(),
                _ => return Err(format!("its condition {condition} is not a host or path condition")),
            }
        }
        match balancer.routes.get(rid) {
            Some(same) if *same == route => {}
            Some(_) => return Err(format!("route {rid} differs on another listener of the load balancer")),
            None => _ = balancer.routes.insert(rid.to_string(), route),
        }
        Ok(Rendering::whole())
    }

    async fn observe(&self, env: &EnvSpec, _desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        // The rules of this environment's listeners: one DescribeRules per listener, tags 20 at a time.
        let listeners = Box::pin(listener::live_listeners(&self.client, env, reads)).await?;
        // Owned values: the futures must not borrow from the closure's argument.
        let owned: Vec<Live> = listeners.iter().filter(|l| l.is_owned_by(&env.env) || reads.adopts(&l.handle)).cloned().collect();
        let per_listener = describe_each(owned, CONCURRENCY, |on| async move {
            let listed = self.client.describe_rules().listener_arn(&on.handle).into_paginator().items().send().try_collect().await;
            // None when the listener was deleted since it was listed.
            let rules: Vec<Rule> = found(listed.aws("ELBv2.DescribeRules"))?.unwrap_or_default();
            Ok::<_, AwsError>(Some(rules.into_iter().map(|r| (on.clone(), r)).collect::<Vec<_>>()))
        })
        .await?;
        let rules: Vec<(Live, Rule)> = per_listener.into_iter().flatten().filter(|(_, r)| r.is_default() != Some(true)).collect();
        let mut tags = tags_of(&self.client, rules.iter().filter_map(|(_, r)| r.rule_arn().map(str::to_string)).collect()).await?;
        let mut found = Vec::new();
        for (on, r) in &rules {
            if let Some(l) = rule_live(on, r, &mut tags)?.filter(|l| l.is_owned_by(&env.env) || reads.adopts(&l.handle)) {
                found.push(l);
            }
        }
        Ok(found)
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        const OP: &str = "ELBv2.CreateRule";
        desired.resolved(&[LISTENER], OP)?;
        let on = desired.field(LISTENER);
        let request = self
            .client
            .create_rule()
            .listener_arn(on)
            .priority(desired.number(PRIORITY, OP)?)
            .set_conditions(Some(conditions_of(desired.field(CONDITIONS))))
            .set_actions(Some(actions_of(desired.fields.get(ACTION), OP)?))
            .set_tags(Some(tag_list(&desired.tags)));
        let out = request.send().await.aws("ELBv2.CreateRule")?;
        required(OP, "rule ARN", out.rules().first().and_then(|r| r.rule_arn()))
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        let changed = |f: &str| delta.fields.iter().any(|c| c.field == f);
        if changed(PRIORITY) {
            let pair = RulePriorityPair::builder().rule_arn(&live.handle).priority(desired.number(PRIORITY, "ELBv2.SetRulePriorities")?).build();
            self.client.set_rule_priorities().rule_priorities(pair).send().await.aws("ELBv2.SetRulePriorities")?;
        }
        if changed(CONDITIONS) || changed(ACTION) {
            const OP: &str = "ELBv2.ModifyRule";
            let request = self
                .client
                .modify_rule()
                .rule_arn(&live.handle)
                .set_conditions(Some(conditions_of(desired.field(CONDITIONS))))
                .set_actions(Some(actions_of(desired.fields.get(ACTION), OP)?));
            request.send().await.aws("ELBv2.ModifyRule")?;
        }
        add_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        gone_is_ok(self.client.delete_rule().rule_arn(&live.handle).send().await.map(|_| ()).aws("ELBv2.DeleteRule"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{MANAGED_BY, TAG_ENV, TAG_ID, TAG_MANAGED_BY};
    use aws_sdk_elasticloadbalancingv2::operation::describe_listeners::DescribeListenersOutput;
    use aws_sdk_elasticloadbalancingv2::operation::describe_load_balancers::DescribeLoadBalancersOutput;
    use aws_sdk_elasticloadbalancingv2::operation::describe_rules::DescribeRulesOutput;
    use aws_sdk_elasticloadbalancingv2::operation::describe_tags::DescribeTagsOutput;
    use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, Listener, LoadBalancer, ProtocolEnum, Tag, TagDescription};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    const LB: &str = "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/sentry-public-dev/50dc6c495c0c9188";
    const LISTENER_ARN: &str = "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/sentry-public-dev/50dc6c495c0c9188/f2f7dc8efc522ab2";
    const OURS: &str = "arn:aws:elasticloadbalancing:us-east-1:1:listener-rule/app/sentry-public-dev/50dc6c495c0c9188/f2f7dc8efc522ab2/1";
    const BY_HAND: &str = "arn:aws:elasticloadbalancing:us-east-1:1:listener-rule/app/sentry-public-dev/50dc6c495c0c9188/f2f7dc8efc522ab2/2";
    const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/sentry-websocket-dev/73e2d6bc24d8a067";

    fn owned(arn: &str, id: &str) -> TagDescription {
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        TagDescription::builder().resource_arn(arn).tags(tag(TAG_MANAGED_BY, MANAGED_BY)).tags(tag(TAG_ENV, "dev")).tags(tag(TAG_ID, id)).build()
    }

    /// The chain of shared reads: the environment's load balancer, its
    /// listener, that listener's rules; the default rule and a rule added by
    /// hand (untagged) are not the kind's.
    #[tokio::test]
    async fn the_rules_of_the_environments_listeners_are_read_through_the_shared_reads() {
        let tags_of = |fragment: &'static str, descriptions: Vec<TagDescription>| {
            mock!(Client::describe_tags)
                .match_requests(move |r| r.resource_arns().iter().any(|a| a.contains(fragment)))
                .then_output(move || DescribeTagsOutput::builder().set_tag_descriptions(Some(descriptions.clone())).build())
        };
        let balancers = mock!(Client::describe_load_balancers).then_output(|| {
            DescribeLoadBalancersOutput::builder()
                .load_balancers(LoadBalancer::builder().load_balancer_name("sentry-public-dev").load_balancer_arn(LB).build())
                .build()
        });
        let listeners = mock!(Client::describe_listeners).match_requests(|r| r.load_balancer_arn() == Some(LB)).then_output(|| {
            let forward = Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(TG).build();
            let l = Listener::builder().listener_arn(LISTENER_ARN).load_balancer_arn(LB).port(80).protocol(ProtocolEnum::Http).default_actions(forward).build();
            DescribeListenersOutput::builder().listeners(l).build()
        });
        let rules = mock!(Client::describe_rules).match_requests(|r| r.listener_arn() == Some(LISTENER_ARN)).then_output(|| {
            let forward = Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(TG).build();
            let paths = RuleCondition::builder().field(PATH).values("/ws/*").values("/ws").build();
            let ours = Rule::builder().rule_arn(OURS).priority("10").conditions(paths).actions(forward.clone()).is_default(false).build();
            let by_hand = Rule::builder().rule_arn(BY_HAND).priority("20").actions(forward.clone()).is_default(false).build();
            let default = Rule::builder().rule_arn(format!("{LISTENER_ARN}/default")).priority("default").actions(forward).is_default(true).build();
            DescribeRulesOutput::builder().rules(ours).rules(by_hand).rules(default).build()
        });
        let lb_tags = tags_of(":loadbalancer/", vec![owned(LB, "public")]);
        let listener_tags = tags_of(":listener/", vec![owned(LISTENER_ARN, "public/http")]);
        let rule_tags = tags_of(":listener-rule/", vec![owned(OURS, "public/http/websocket"), TagDescription::builder().resource_arn(BY_HAND).build()]);
        let client = mock_client!(aws_sdk_elasticloadbalancingv2, RuleMode::MatchAny, [&balancers, &listeners, &rules, &lb_tags, &listener_tags, &rule_tags]);
        let env = EnvSpec::new("dev", Default::default());
        let live = ListenerRules { client }.observe(&env, &[], &ReadCache::default()).await.expect("observed");
        assert_eq!(live.len(), 1, "{live:?}");
        let rule = &live[0];
        assert_eq!((rule.name.as_str(), rule.handle.as_str()), ("sentry-public-dev:80/10", OURS));
        let action = rule.fields.get(ACTION).map(ToString::to_string).unwrap_or_default();
        assert_eq!(
            [rule.field(LISTENER), rule.field(PRIORITY), rule.field(CONDITIONS), &action],
            [LISTENER_ARN, "10", "path-pattern=/ws|/ws/*", &format!("forward {TG}")]
        );
        assert_eq!((balancers.num_calls(), listeners.num_calls(), rules.num_calls()), (1, 1, 1));
        assert_eq!((lb_tags.num_calls(), listener_tags.num_calls(), rule_tags.num_calls()), (1, 1, 1), "one DescribeTags per level");
    }

    #[test]
    fn conditions_are_normalized_and_round_trip() {
        let text = conditions_text(&strings(&["b.example.com", "a.example.com"]), &strings(&["/ws/*", "/ws"]));
        assert_eq!(text, "host-header=a.example.com|b.example.com path-pattern=/ws|/ws/*", "sorted values, hosts first");
        assert_eq!(live_conditions(&conditions_of(&text)), text);
        assert_eq!(conditions_text(&[], &strings(&["/ws"])), "path-pattern=/ws");
        assert!(!conditions_text(&[], &strings(&["/ws", "/ws/*"])).contains([',', ' ']), "a list value the engine would re-sort is never written");
    }

    #[test]
    fn live_conditions_read_values_from_either_place_and_show_foreign_kinds() {
        // AWS reports a path condition both in Values and in its config; the emulator may send only Values.
        let legacy = RuleCondition::builder().field(PATH).values("/ws").build();
        let both = RuleCondition::builder().field(PATH).values("/ws").path_pattern_config(PathPatternConditionConfig::builder().values("/ws").build()).build();
        assert_eq!(live_conditions(&[legacy]), "path-pattern=/ws");
        assert_eq!(live_conditions(&[both]), "path-pattern=/ws");
        // Two path conditions must both match (AND): not the same as one with two values (OR).
        let two = [RuleCondition::builder().field(PATH).values("/a").build(), RuleCondition::builder().field(PATH).values("/b").build()];
        assert_ne!(live_conditions(&two), conditions_text(&[], &strings(&["/a", "/b"])));
        let method = RuleCondition::builder().field("http-request-method").build();
        assert_eq!(live_conditions(&[method]), "http-request-method=?");
    }
}
