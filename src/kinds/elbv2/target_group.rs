//! Target groups of `ip` targets: the awsvpc tasks ECS registers. The health
//! check is changed in place (ModifyTargetGroup), stickiness and the
//! deregistration delay are attributes (ModifyTargetGroupAttributes). Port,
//! protocol, target type and VPC are fixed at creation, and a target group
//! in use by a listener or a service cannot be deleted, so a change to them
//! is BLOCKED rather than replaced.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use crate::kinds::each;
use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{Matcher, ProtocolEnum, TargetGroup, TargetGroupAttribute, TargetTypeEnum};
use aws_sdk_elasticloadbalancingv2::Client;

use super::{add_tags, load_balancing, tag_list, tags_of, CONCURRENCY};
use crate::aws::{found, gone_is_ok, required, AwsError, AwsResult};
use crate::engine::{ownership_tags, user_tags, Delta, Desired, FieldReader, Importing, Kind, Layer, Live, ReadCache, Rendering, Rules};
use crate::kinds::ec2::vpc;
use crate::kinds::read::describe_each;
use crate::spec::model::{self, DeletionPolicy, Spec, Stickiness, TargetHealthCheck};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "elbv2.target-group";

fields! {
    PORT = "Port", PROTOCOL = "Protocol", TARGET_TYPE = "TargetType", VPC = "VpcId", HC_PATH = "HealthCheckPath",
    HC_INTERVAL = "HealthCheckIntervalSeconds", HC_TIMEOUT = "HealthCheckTimeoutSeconds", HC_HEALTHY = "HealthyThresholdCount",
    HC_UNHEALTHY = "UnhealthyThresholdCount", HC_MATCHER = "Matcher", STICKINESS = "Stickiness", DEREGISTRATION = "DeregistrationDelaySeconds",
}
/// The fields ModifyTargetGroup sets.
const HEALTH_CHECK: &[&str] = &[HC_PATH, HC_INTERVAL, HC_TIMEOUT, HC_HEALTHY, HC_UNHEALTHY, HC_MATCHER];

/// `$request` (CreateTargetGroup or ModifyTargetGroup, whose builders share
/// these setters but no type) with the health check `$desired` asks for.
macro_rules! with_health_check {
    ($request:expr, $desired:expr, $op:expr) => {
        $request
            .health_check_path($desired.field(HC_PATH))
            .health_check_interval_seconds($desired.number(HC_INTERVAL, $op)?)
            .health_check_timeout_seconds($desired.number(HC_TIMEOUT, $op)?)
            .healthy_threshold_count($desired.number(HC_HEALTHY, $op)?)
            .unhealthy_threshold_count($desired.number(HC_UNHEALTHY, $op)?)
            .matcher(Matcher::builder().http_code($desired.field(HC_MATCHER)).build())
    };
}

/// The attribute keys behind [`STICKINESS`] and [`DEREGISTRATION`].
const STICKY_ENABLED: &str = "stickiness.enabled";
fields! { STICKY_TYPE = "stickiness.type", STICKY_DURATION = "stickiness.lb_cookie.duration_seconds", DELAY = "deregistration_delay.timeout_seconds" }

/// The target group kind.
pub struct TargetGroups {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

/// Stickiness as a field value: `off`, or the cookie type and its duration (`lb_cookie 3600`).
fn stickiness_text(s: &Stickiness) -> String {
    if s.enabled {
        format!("lb_cookie {}", s.duration_seconds)
    } else {
        "off".into()
    }
}

/// The stickiness attributes a field value written by [`stickiness_text`] stands for.
fn stickiness_attributes(text: &str) -> Vec<TargetGroupAttribute> {
    let attribute = |k: &str, v: &str| TargetGroupAttribute::builder().key(k).value(v).build();
    match text.split_once(' ') {
        Some((kind, duration)) => vec![attribute(STICKY_ENABLED, "true"), attribute(STICKY_TYPE, kind), attribute(STICKY_DURATION, duration)],
        None => vec![attribute(STICKY_ENABLED, "false")],
    }
}

/// The stickiness field of a target group's attributes (AWS's defaults when one is missing).
fn live_stickiness(attribute: impl Fn(&str) -> Option<String>) -> String {
    if attribute(STICKY_ENABLED).as_deref() != Some("true") {
        return "off".into();
    }
    let kind = attribute(STICKY_TYPE).unwrap_or_else(|| "lb_cookie".into());
    format!("{kind} {}", attribute(STICKY_DURATION).unwrap_or_else(|| "86400".into()))
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetGroupAttributes", "elasticloadbalancing:DescribeTags"],
    grants: &[Grant::allow("LoadBalancingWrites", &["elasticloadbalancing:CreateTargetGroup", "elasticloadbalancing:ModifyTargetGroup", "elasticloadbalancing:ModifyTargetGroupAttributes", "elasticloadbalancing:DeleteTargetGroup", "elasticloadbalancing:AddTags"], &["arn:aws:elasticloadbalancing:*:*:targetgroup/sentry-*/*", "arn:aws:elasticloadbalancing:*:*:loadbalancer/app/sentry-*/*", "arn:aws:elasticloadbalancing:*:*:listener/app/sentry-*/*/*", "arn:aws:elasticloadbalancing:*:*:listener-rule/app/sentry-*/*/*/*"])],
};

#[async_trait]
impl Kind for TargetGroups {
    fn rules(&self) -> Rules {
        Rules {
            immutable: &[PORT, PROTOCOL, TARGET_TYPE, VPC],
            events: EventMatch::of("elasticloadbalancing.amazonaws.com", &["TargetGroup", "Targets"], &["targetGroupArn", "TargetGroupArn", "name"])
                .marked("targetgroup/"),
            ..Rules::new(KIND, Layer::Compute)
                .stands_for(&["AWS::ElasticLoadBalancingV2::TargetGroup", "aws_lb_target_group", "aws_alb_target_group"])
                .needs(PERMISSIONS)
                .imported()
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        each(load_balancing(env).map(|lbs| &lbs.target_groups), |(id, tg)| {
            let h = &tg.health_check;
            Desired::new(KIND, id, tg.physical_name(id, &env.env), ownership_tags(env, id, tg.deletion_policy, &tg.tags))
                .with(PORT, tg.port.to_string())
                .with(PROTOCOL, &tg.protocol)
                .with(TARGET_TYPE, &tg.target_type)
                .with_reference(VPC, vpc::KIND, vpc::ID)
                .with(HC_PATH, &h.path)
                .with(HC_INTERVAL, h.interval_seconds.to_string())
                .with(HC_TIMEOUT, h.timeout_seconds.to_string())
                .with(HC_HEALTHY, h.healthy_threshold.to_string())
                .with(HC_UNHEALTHY, h.unhealthy_threshold.to_string())
                .with(HC_MATCHER, &h.matcher)
                .with(STICKINESS, stickiness_text(&tg.stickiness))
                .with(DEREGISTRATION, tg.deregistration_delay_seconds.to_string())
        })
    }

    /// Its entry in `loadBalancing.targetGroups`, as it is (in the environment's VPC only).
    fn to_spec(&self, id: &str, live: &Live, spec: &mut Spec, importing: &Importing) -> Result<Rendering, String> {
        if live.fields.get(VPC).and_then(|v| v.id_of(vpc::KIND)) != Some(vpc::ID) {
            return Err("it lies in another VPC than the environment's (or no VPC was imported)".into());
        }
        let (protocol, target_type) = (live.field(PROTOCOL), live.field(TARGET_TYPE));
        if !["HTTP", "HTTPS"].contains(&protocol) || !["ip", "instance"].contains(&target_type) || live.field(HC_PATH).is_empty() {
            return Err(format!(
                "it is a {protocol} group of {target_type} targets; the spec describes HTTP(S) groups of ip or instance targets with an HTTP health check"
            ));
        }
        let number = |f: &str| live.field(f).parse::<u32>().map_err(|_| format!("its {f} {:?} is not a number", live.field(f)));
        let stickiness = match live.field(STICKINESS).split_once(' ') {
            Some(("lb_cookie", duration)) => Stickiness { enabled: true, duration_seconds: duration.parse().map_err(|_| format!("stickiness {duration:?}"))? },
            Some((kind, _)) => return Err(format!("its stickiness is {kind}; the spec has load-balancer cookies only")),
            None => Stickiness::default(),
        };
        let group = model::TargetGroup {
            name: importing.explicit_name(id, &live.name),
            port: number(PORT)?,
            protocol: live.field(PROTOCOL).to_string(),
            target_type: live.field(TARGET_TYPE).to_string(),
            health_check: TargetHealthCheck {
                path: live.field(HC_PATH).to_string(),
                interval_seconds: number(HC_INTERVAL)?,
                timeout_seconds: number(HC_TIMEOUT)?,
                healthy_threshold: number(HC_HEALTHY)?,
                unhealthy_threshold: number(HC_UNHEALTHY)?,
                matcher: live.field(HC_MATCHER).to_string(),
            },
            stickiness,
            deregistration_delay_seconds: number(DEREGISTRATION)?,
            tags: user_tags(live.tags.clone()),
            deletion_policy: DeletionPolicy::default(),
        };
        spec.load_balancing.get_or_insert_with(Default::default).target_groups.insert(id.to_string(), group);
        Ok(Rendering::whole())
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        // Every target group of the account in one paginated read (naming a
        // missing one fails the whole call); tags 20 at a time; then the
        // attributes of the ones named by the spec or owned by the environment.
        let all = self.client.describe_target_groups().into_paginator().items().send().try_collect().await.aws("ELBv2.DescribeTargetGroups")?;
        let ours = |n: &str| n.starts_with("sentry") || desired.iter().any(|d| d.name == n);
        let ours = |t: &TargetGroup| {
            t.target_group_name().is_some_and(ours) || desired.iter().any(|d| d.adopted_id().is_some() && d.adopted_id() == t.target_group_arn())
        };
        let candidates: Vec<TargetGroup> = all.into_iter().filter(ours).collect();
        let mut tags = tags_of(&self.client, candidates.iter().filter_map(|t| t.target_group_arn().map(str::to_string)).collect()).await?;
        let mut listed = Vec::new();
        for t in candidates {
            let name = required("ELBv2.DescribeTargetGroups", "target group name", t.target_group_name())?;
            let arn = required("ELBv2.DescribeTargetGroups", "target group ARN", t.target_group_arn())?;
            let l = Live { name, tags: tags.remove(&arn).unwrap_or_default(), handle: arn, ..Live::default() };
            if l.is_named_or_owned(&env.env, desired) {
                listed.push((l, t));
            }
        }
        describe_each(listed, CONCURRENCY, |(l, t)| async move { self.describe(l, &t).await }).await
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        const OP: &str = "ELBv2.CreateTargetGroup";
        desired.resolved(&[VPC], OP)?;
        let protocol = ProtocolEnum::from(desired.field(PROTOCOL));
        let request = self
            .client
            .create_target_group()
            .name(&desired.name)
            .protocol(protocol.clone())
            .port(desired.number(PORT, OP)?)
            .vpc_id(desired.field(VPC))
            .target_type(TargetTypeEnum::from(desired.field(TARGET_TYPE)))
            .health_check_enabled(true)
            .health_check_protocol(protocol)
            .set_tags(Some(tag_list(&desired.tags)));
        let out = with_health_check!(request, desired, OP).send().await.aws("ELBv2.CreateTargetGroup")?;
        let arn = required(OP, "target group ARN", out.target_groups().first().and_then(|t| t.target_group_arn()))?;
        self.put_attributes(&arn, desired, &[STICKINESS, DEREGISTRATION]).await?;
        Ok(arn)
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        const OP: &str = "ELBv2.ModifyTargetGroup";
        let changed = |f: &str| delta.fields.iter().any(|c| c.field == f);
        if HEALTH_CHECK.iter().any(|f| changed(f)) {
            let request = self.client.modify_target_group().target_group_arn(&live.handle);
            with_health_check!(request, desired, OP).send().await.aws("ELBv2.ModifyTargetGroup")?;
        }
        let attributes: Vec<&str> = [STICKINESS, DEREGISTRATION].into_iter().filter(|f| changed(f)).collect();
        self.put_attributes(&live.handle, desired, &attributes).await?;
        add_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        // Refused (ResourceInUse) while a listener, a rule or a service still uses it.
        gone_is_ok(self.client.delete_target_group().target_group_arn(&live.handle).send().await.map(|_| ()).aws("ELBv2.DeleteTargetGroup"))
    }
}

impl TargetGroups {
    /// The live form of target group `t` (`l` holds its name, ARN and tags):
    /// its attributes read too; `None` when it vanished since it was listed.
    async fn describe(&self, l: Live, t: &TargetGroup) -> Result<Option<Live>, AwsError> {
        let read = self.client.describe_target_group_attributes().target_group_arn(&l.handle).send().await;
        let Some(out) = found(read.aws("ELBv2.DescribeTargetGroupAttributes"))? else { return Ok(None) };
        let attribute = |key: &str| out.attributes().iter().find(|a| a.key() == Some(key)).and_then(|a| a.value()).map(str::to_string);
        let number = |n: Option<i32>| n.map(|n| n.to_string()).unwrap_or_default();
        Ok(Some(
            l.with(PORT, number(t.port()))
                .with(PROTOCOL, t.protocol().map_or("", |p| p.as_str()))
                .with(TARGET_TYPE, t.target_type().map_or("", |p| p.as_str()))
                .with_handle(VPC, t.vpc_id().unwrap_or_default())
                .with(HC_PATH, t.health_check_path().unwrap_or_default())
                .with(HC_INTERVAL, number(t.health_check_interval_seconds()))
                .with(HC_TIMEOUT, number(t.health_check_timeout_seconds()))
                .with(HC_HEALTHY, number(t.healthy_threshold_count()))
                .with(HC_UNHEALTHY, number(t.unhealthy_threshold_count()))
                .with(HC_MATCHER, t.matcher().and_then(|m| m.http_code()).unwrap_or_default())
                .with(STICKINESS, live_stickiness(attribute))
                .with(DEREGISTRATION, attribute(DELAY).unwrap_or_else(|| "300".into())),
        ))
    }

    /// Sets the attributes behind `fields` (of [`STICKINESS`], [`DEREGISTRATION`]) to their desired values.
    async fn put_attributes(&self, arn: &str, desired: &Desired, fields: &[&str]) -> Result<(), AwsError> {
        let mut attributes = Vec::new();
        if fields.contains(&STICKINESS) {
            attributes.extend(stickiness_attributes(desired.field(STICKINESS)));
        }
        if fields.contains(&DEREGISTRATION) {
            attributes.push(TargetGroupAttribute::builder().key(DELAY).value(desired.field(DEREGISTRATION)).build());
        }
        if attributes.is_empty() {
            return Ok(());
        }
        let request = self.client.modify_target_group_attributes().target_group_arn(arn).set_attributes(Some(attributes));
        request.send().await.aws("ELBv2.ModifyTargetGroupAttributes")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{MANAGED_BY, TAG_ENV, TAG_ID, TAG_MANAGED_BY};
    use crate::spec::model::Tags;
    use aws_sdk_elasticloadbalancingv2::operation::describe_tags::DescribeTagsOutput;
    use aws_sdk_elasticloadbalancingv2::operation::describe_target_group_attributes::DescribeTargetGroupAttributesOutput;
    use aws_sdk_elasticloadbalancingv2::operation::describe_target_groups::DescribeTargetGroupsOutput;
    use aws_sdk_elasticloadbalancingv2::types::{Tag, TagDescription};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn arn(i: usize) -> String {
        format!("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/sentry-tg{i}-dev/{i:016}")
    }

    /// Tags of target groups `range`: every fifth one is dev's, the others carry a team tag only.
    fn descriptions(range: std::ops::Range<usize>) -> Vec<TagDescription> {
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        range
            .map(|i| {
                let tags = if i % 5 == 0 {
                    vec![tag(TAG_MANAGED_BY, MANAGED_BY), tag(TAG_ENV, "dev"), tag(TAG_ID, &format!("tg{i}"))]
                } else {
                    vec![tag("team", "web")]
                };
                TagDescription::builder().resource_arn(arn(i)).set_tags(Some(tags)).build()
            })
            .collect()
    }

    /// 25 target groups: one list, tags in two calls (20 + 5), attributes of only
    /// the ones the environment owns or the spec names; the rest are never read further.
    #[tokio::test]
    async fn observation_reads_tags_twenty_at_a_time_and_keeps_what_is_named_or_owned() {
        let groups: Vec<TargetGroup> =
            (0..25).map(|i| TargetGroup::builder().target_group_name(format!("sentry-tg{i}-dev")).target_group_arn(arn(i)).port(80).build()).collect();
        let list =
            mock!(Client::describe_target_groups).then_output(move || DescribeTargetGroupsOutput::builder().set_target_groups(Some(groups.clone())).build());
        let first = mock!(Client::describe_tags)
            .match_requests(|r| r.resource_arns().len() == 20)
            .then_output(|| DescribeTagsOutput::builder().set_tag_descriptions(Some(descriptions(0..20))).build());
        let rest = mock!(Client::describe_tags)
            .match_requests(|r| r.resource_arns().len() == 5)
            .then_output(|| DescribeTagsOutput::builder().set_tag_descriptions(Some(descriptions(20..25))).build());
        let attributes = mock!(Client::describe_target_group_attributes).then_output(|| DescribeTargetGroupAttributesOutput::builder().build());
        let kind = TargetGroups { client: mock_client!(aws_sdk_elasticloadbalancingv2, RuleMode::MatchAny, [&list, &first, &rest, &attributes]) };
        let named = Desired::new(KIND, "tg3", "sentry-tg3-dev", Tags::new());
        let env = EnvSpec::new("dev", Default::default());
        let live = kind.observe(&env, &[named], &ReadCache::default()).await.expect("observed");
        let mut names: Vec<&str> = live.iter().map(|l| l.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["sentry-tg0-dev", "sentry-tg10-dev", "sentry-tg15-dev", "sentry-tg20-dev", "sentry-tg3-dev", "sentry-tg5-dev"]);
        assert_eq!((list.num_calls(), first.num_calls(), rest.num_calls(), attributes.num_calls()), (1, 1, 1, 6));
        let tg0 = live.iter().find(|l| l.name == "sentry-tg0-dev").expect("tg0");
        assert_eq!((tg0.field(STICKINESS), tg0.field(DEREGISTRATION), tg0.field(PORT)), ("off", "300", "80"), "AWS's defaults for unreported attributes");
    }

    #[test]
    fn stickiness_reads_back_as_written_with_aws_defaults_for_missing_attributes() {
        let on = Stickiness { enabled: true, duration_seconds: 3600 };
        let off = Stickiness { enabled: false, duration_seconds: 86_400 };
        assert_eq!(stickiness_text(&on), "lb_cookie 3600");
        assert_eq!(stickiness_text(&off), "off", "the duration of a disabled cookie is not compared");
        let as_map = |attributes: Vec<TargetGroupAttribute>| {
            move |key: &str| attributes.iter().find(|a| a.key() == Some(key)).and_then(|a| a.value()).map(str::to_string)
        };
        assert_eq!(live_stickiness(as_map(stickiness_attributes("lb_cookie 3600"))), "lb_cookie 3600");
        assert_eq!(live_stickiness(as_map(stickiness_attributes("off"))), "off");
        // The emulator reports no duration until one is set; AWS's default is one day.
        let enabled_only = vec![TargetGroupAttribute::builder().key(STICKY_ENABLED).value("true").build()];
        assert_eq!(live_stickiness(as_map(enabled_only)), "lb_cookie 86400");
    }
}
