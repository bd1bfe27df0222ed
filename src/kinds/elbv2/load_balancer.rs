//! Application Load Balancers: internet-facing, IPv4, in the spec's public
//! subnets with its security groups (SetSubnets / SetSecurityGroups repair
//! drift), and their attributes: deletion protection, idle timeout, access
//! logs. Scheme and type are fixed at creation: a change is BLOCKED (a new
//! load balancer has a new DNS name). An opted-in delete switches deletion
//! protection off first, as the table kind does.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use crate::kinds::each;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{IpAddressType, LoadBalancerAttribute, LoadBalancerSchemeEnum, LoadBalancerTypeEnum};
use aws_sdk_elasticloadbalancingv2::Client;

use super::{add_tags, load_balancing, tag_list, tags_of, CONCURRENCY};
use crate::aws::{found, gone_is_ok, required, AwsError, AwsResult};
use crate::engine::{ownership_tags, user_tags, Delta, Desired, FieldReader, Importing, Kind, Layer, Live, ReadCache, Rendering, Rules, Value};
use crate::kinds::ec2::{internet_gateway, security_group, subnet};
use crate::kinds::read::describe_each;
use crate::spec::model::{self, AccessLogs, DeletionPolicy, Spec};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "elbv2.load-balancer";

fields! {
    SCHEME = "Scheme", TYPE = "Type", IP_TYPE = "IpAddressType", SUBNETS = "Subnets", GROUPS = "SecurityGroups",
    PROTECTION = "DeletionProtection", IDLE = "IdleTimeoutSeconds", ACCESS_LOGS = "AccessLogs",
}
/// The fields that are load balancer attributes.
const ATTRIBUTES: &[&str] = &[PROTECTION, IDLE, ACCESS_LOGS];

fields! {
    PROTECTION_KEY = "deletion_protection.enabled", IDLE_KEY = "idle_timeout.timeout_seconds", LOGS_ENABLED = "access_logs.s3.enabled",
    LOGS_BUCKET = "access_logs.s3.bucket", LOGS_PREFIX = "access_logs.s3.prefix",
}

/// The load balancer kind.
pub struct LoadBalancers {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

/// Access logs as a field value: `off`, `s3://<bucket>` or `s3://<bucket>/<prefix>`.
fn access_logs_text(logs: Option<&AccessLogs>) -> String {
    match logs {
        None => "off".into(),
        Some(AccessLogs { bucket, prefix: Some(prefix) }) if !prefix.is_empty() => format!("s3://{bucket}/{prefix}"),
        Some(AccessLogs { bucket, .. }) => format!("s3://{bucket}"),
    }
}

/// The access log attributes a field value written by [`access_logs_text`] stands for.
fn access_logs_attributes(text: &str) -> Vec<LoadBalancerAttribute> {
    let attribute = |k: &str, v: &str| LoadBalancerAttribute::builder().key(k).value(v).build();
    match text.strip_prefix("s3://") {
        None => vec![attribute(LOGS_ENABLED, "false")],
        Some(location) => {
            let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
            vec![attribute(LOGS_ENABLED, "true"), attribute(LOGS_BUCKET, bucket), attribute(LOGS_PREFIX, prefix)]
        }
    }
}

/// The access logs field of a load balancer's attributes.
fn live_access_logs(attribute: impl Fn(&str) -> Option<String>) -> String {
    if attribute(LOGS_ENABLED).as_deref() != Some("true") {
        return "off".into();
    }
    let bucket = attribute(LOGS_BUCKET).unwrap_or_default();
    match attribute(LOGS_PREFIX).filter(|p| !p.is_empty()) {
        Some(prefix) => format!("s3://{bucket}/{prefix}"),
        None => format!("s3://{bucket}"),
    }
}

/// The load balancers the spec names or this environment owns (their
/// attributes not read), with their tags: one paginated
/// DescribeLoadBalancers and DescribeTags 20 at a time a pass, shared by the
/// load balancer kind and the listener kind (which reads the listeners of
/// the owned ones). Like the other kinds with account-unique names, only
/// names beginning with `sentry` or named by the spec are considered.
pub async fn live_load_balancers(client: &Client, env: &EnvSpec, reads: &ReadCache) -> Result<Arc<Vec<Live>>, AwsError> {
    reads
        .get("ELBv2.DescribeLoadBalancers(named or owned)", || async {
            let names: Vec<String> =
                load_balancing(env).map(|lbs| lbs.load_balancers.iter().map(|(id, b)| b.physical_name(id, &env.env)).collect()).unwrap_or_default();
            let all = client.describe_load_balancers().into_paginator().items().send().try_collect().await.aws("ELBv2.DescribeLoadBalancers")?;
            let ours = |n: &str| n.starts_with("sentry") || names.iter().any(|x| x == n);
            let adopted = |b: &aws_sdk_elasticloadbalancingv2::types::LoadBalancer| b.load_balancer_arn().is_some_and(|arn| reads.adopts(arn));
            let candidates: Vec<_> = all.into_iter().filter(|b| b.load_balancer_name().is_some_and(ours) || adopted(b)).collect();
            let mut tags = tags_of(client, candidates.iter().filter_map(|b| b.load_balancer_arn().map(str::to_string)).collect()).await?;
            let mut found = Vec::new();
            for b in candidates {
                let name = required("ELBv2.DescribeLoadBalancers", "load balancer name", b.load_balancer_name())?;
                let arn = required("ELBv2.DescribeLoadBalancers", "load balancer ARN", b.load_balancer_arn())?;
                let subnets = b.availability_zones().iter().filter_map(|z| z.subnet_id());
                let l = Live { name, tags: tags.remove(&arn).unwrap_or_default(), handle: arn, ..Live::default() }
                    .with(SCHEME, b.scheme().map_or("", |s| s.as_str()))
                    .with(TYPE, b.r#type().map_or("", |t| t.as_str()))
                    .with(IP_TYPE, b.ip_address_type().map_or("", |t| t.as_str()))
                    .with(SUBNETS, Value::handles(subnets))
                    .with(GROUPS, Value::handles(b.security_groups()));
                if names.contains(&l.name) || l.is_owned_by(&env.env) || reads.adopts(&l.handle) {
                    found.push(l);
                }
            }
            Ok(found)
        })
        .await
}

/// The (resolved) references of list field `name`: an error naming the first
/// that was never created, for the call `operation`.
fn resolved_list(desired: &Desired, name: &str, operation: &'static str) -> Result<Vec<String>, AwsError> {
    desired.resolved(&[name], operation)?;
    Ok(desired.items(name))
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeLoadBalancerAttributes", "elasticloadbalancing:DescribeTags"],
    grants: &[
        crate::kinds::SERVICE_LINKED_ROLES,
        Grant::allow("LoadBalancingWrites", &["elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:SetSubnets", "elasticloadbalancing:SetSecurityGroups", "elasticloadbalancing:SetIpAddressType", "elasticloadbalancing:DeleteLoadBalancer", "elasticloadbalancing:AddTags"], &["arn:aws:elasticloadbalancing:*:*:targetgroup/sentry-*/*", "arn:aws:elasticloadbalancing:*:*:loadbalancer/app/sentry-*/*", "arn:aws:elasticloadbalancing:*:*:listener/app/sentry-*/*/*", "arn:aws:elasticloadbalancing:*:*:listener-rule/app/sentry-*/*/*/*"]),
    ],
};

#[async_trait]
impl Kind for LoadBalancers {
    fn rules(&self) -> Rules {
        Rules {
            immutable: &[SCHEME, TYPE],
            events: EventMatch::of(
                "elasticloadbalancing.amazonaws.com",
                &["LoadBalancer", "SecurityGroups", "Subnets"],
                &["loadBalancerArn", "LoadBalancerArn", "loadBalancerName", "name"],
            )
            .marked("loadbalancer/"),
            ..Rules::new(KIND, Layer::Compute).stands_for(&["AWS::ElasticLoadBalancingV2::LoadBalancer", "aws_lb", "aws_alb"]).needs(PERMISSIONS).imported()
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        each(load_balancing(env).map(|lbs| &lbs.load_balancers), |(id, b)| {
            Desired::new(KIND, id, b.physical_name(id, &env.env), ownership_tags(env, id, b.deletion_policy, &b.tags))
                .with(SCHEME, "internet-facing")
                .with(TYPE, "application")
                .with(IP_TYPE, "ipv4")
                .with_references(SUBNETS, subnet::KIND, b.subnets.iter().map(String::as_str))
                .with_references(GROUPS, security_group::KIND, b.security_groups.iter().map(String::as_str))
                .with(PROTECTION, b.deletion_protection.to_string())
                .with(IDLE, b.idle_timeout_seconds.to_string())
                .with(ACCESS_LOGS, access_logs_text(b.access_logs.as_ref()))
                // An internet-facing load balancer needs the VPC's internet gateway.
                .after(internet_gateway::KIND, internet_gateway::ID)
        })
    }

    /// Its entry in `loadBalancing.loadBalancers`, its listeners left to the
    /// listener kind (which also names its default target group): an
    /// internet-facing IPv4 Application Load Balancer in the environment's
    /// subnets and security groups only.
    fn to_spec(&self, id: &str, live: &Live, spec: &mut Spec, importing: &Importing) -> Result<Rendering, String> {
        let shape = (live.field(SCHEME), live.field(TYPE), live.field(IP_TYPE));
        if shape != ("internet-facing", "application", "ipv4") {
            return Err(format!("it is {} {} {}; the spec describes internet-facing IPv4 Application Load Balancers", shape.0, shape.1, shape.2));
        }
        let ids = |field: &str, kind: &'static str| -> Result<Vec<String>, String> {
            let items = live.fields.get(field).map(Value::items).unwrap_or_default();
            items.into_iter().map(|v| v.id_of(kind).map(str::to_string).ok_or_else(|| format!("its {field} {v} is not imported"))).collect()
        };
        let access_logs = match live.field(ACCESS_LOGS).strip_prefix("s3://") {
            None => None,
            Some(location) => {
                let (bucket, prefix) = location.split_once('/').map_or((location, None), |(b, p)| (b, Some(p.to_string())));
                Some(AccessLogs { bucket: bucket.to_string(), prefix })
            }
        };
        let balancer = model::LoadBalancer {
            name: importing.explicit_name(id, &live.name),
            subnets: ids(SUBNETS, subnet::KIND)?,
            security_groups: ids(GROUPS, security_group::KIND)?,
            deletion_protection: live.field(PROTECTION) == "true",
            idle_timeout_seconds: live.field(IDLE).parse().map_err(|_| format!("its idle timeout {:?} is not a number", live.field(IDLE)))?,
            access_logs,
            default_target_group: String::new(),
            routes: Default::default(),
            listeners: Default::default(),
            tags: user_tags(live.tags.clone()),
            deletion_policy: DeletionPolicy::default(),
        };
        spec.load_balancing.get_or_insert_with(Default::default).load_balancers.insert(id.to_string(), balancer);
        Ok(Rendering::whole())
    }

    /// A load balancer without a listener that forwards (its listeners not
    /// in the source, or only redirecting ones) is no spec entry: taken out
    /// with its listeners and their rules.
    fn unfinished(&self, spec: &mut Spec) -> Vec<(Vec<(&'static str, String)>, String)> {
        let Some(lbs) = spec.load_balancing.as_mut() else { return Vec::new() };
        let incomplete: Vec<String> = lbs.load_balancers.iter().filter(|(_, b)| b.default_target_group.is_empty()).map(|(id, _)| id.clone()).collect();
        incomplete
            .into_iter()
            .filter_map(|id| {
                let balancer = lbs.load_balancers.remove(&id)?;
                let listeners = balancer.listeners.keys().map(|l| (super::listener::KIND, super::listener_id(&id, l)));
                let rules = balancer.listeners.keys().flat_map(|l| balancer.routes.keys().map(|r| (super::listener_rule::KIND, super::rule_id(&id, l, r))));
                let taken = std::iter::once((KIND, id.clone())).chain(listeners).chain(rules).collect();
                Some((taken, "none of its listeners forwarding to a target group was found: import it with them".to_string()))
            })
            .collect()
    }

    async fn observe(&self, env: &EnvSpec, _desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let listed = live_load_balancers(&self.client, env, reads).await?.as_ref().clone();
        describe_each(listed, CONCURRENCY, |l| async move { self.describe(l).await }).await
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        const OP: &str = "ELBv2.CreateLoadBalancer";
        let request = self
            .client
            .create_load_balancer()
            .name(&desired.name)
            .set_subnets(Some(resolved_list(desired, SUBNETS, OP)?))
            .set_security_groups(Some(resolved_list(desired, GROUPS, OP)?))
            .scheme(LoadBalancerSchemeEnum::from(desired.field(SCHEME)))
            .r#type(LoadBalancerTypeEnum::from(desired.field(TYPE)))
            .ip_address_type(IpAddressType::from(desired.field(IP_TYPE)))
            .set_tags(Some(tag_list(&desired.tags)));
        let out = request.send().await.aws("ELBv2.CreateLoadBalancer")?;
        let arn = required(OP, "load balancer ARN", out.load_balancers().first().and_then(|b| b.load_balancer_arn()))?;
        self.put_attributes(&arn, desired, ATTRIBUTES).await?;
        Ok(arn)
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        let changed = |f: &str| delta.fields.iter().any(|c| c.field == f);
        if changed(SUBNETS) {
            let subnets = resolved_list(desired, SUBNETS, "ELBv2.SetSubnets")?;
            self.client.set_subnets().load_balancer_arn(&live.handle).set_subnets(Some(subnets)).send().await.aws("ELBv2.SetSubnets")?;
        }
        if changed(GROUPS) {
            let groups = resolved_list(desired, GROUPS, "ELBv2.SetSecurityGroups")?;
            let request = self.client.set_security_groups().load_balancer_arn(&live.handle).set_security_groups(Some(groups));
            request.send().await.aws("ELBv2.SetSecurityGroups")?;
        }
        if changed(IP_TYPE) {
            let request = self.client.set_ip_address_type().load_balancer_arn(&live.handle).ip_address_type(IpAddressType::from(desired.field(IP_TYPE)));
            request.send().await.aws("ELBv2.SetIpAddressType")?;
        }
        let attributes: Vec<&str> = ATTRIBUTES.iter().copied().filter(|f| changed(f)).collect();
        self.put_attributes(&live.handle, desired, &attributes).await?;
        add_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        // Only ever called once the spec opted in (deletionPolicy: delete, then removed).
        if live.field(PROTECTION) == "true" {
            let off = LoadBalancerAttribute::builder().key(PROTECTION_KEY).value("false").build();
            let request = self.client.modify_load_balancer_attributes().load_balancer_arn(&live.handle).attributes(off);
            if found(request.send().await.aws("ELBv2.ModifyLoadBalancerAttributes"))?.is_none() {
                return Ok(()); // already gone
            }
        }
        gone_is_ok(self.client.delete_load_balancer().load_balancer_arn(&live.handle).send().await.map(|_| ()).aws("ELBv2.DeleteLoadBalancer"))
    }
}

impl LoadBalancers {
    /// `l` with its attributes read; `None` when it vanished since it was listed.
    async fn describe(&self, l: Live) -> Result<Option<Live>, AwsError> {
        let read = self.client.describe_load_balancer_attributes().load_balancer_arn(&l.handle).send().await;
        let Some(out) = found(read.aws("ELBv2.DescribeLoadBalancerAttributes"))? else { return Ok(None) };
        let attribute = |key: &str| out.attributes().iter().find(|a| a.key() == Some(key)).and_then(|a| a.value()).map(str::to_string);
        // AWS reports every attribute; the emulator only those set, so the defaults fill in.
        Ok(Some(
            l.with(PROTECTION, attribute(PROTECTION_KEY).unwrap_or_else(|| "false".into()))
                .with(IDLE, attribute(IDLE_KEY).unwrap_or_else(|| "60".into()))
                .with(ACCESS_LOGS, live_access_logs(attribute)),
        ))
    }

    /// Sets the attributes behind `fields` (of [`ATTRIBUTES`]) to their desired values.
    async fn put_attributes(&self, arn: &str, desired: &Desired, fields: &[&str]) -> Result<(), AwsError> {
        let attribute = |k: &str, v: &str| LoadBalancerAttribute::builder().key(k).value(v).build();
        let mut attributes = Vec::new();
        if fields.contains(&PROTECTION) {
            attributes.push(attribute(PROTECTION_KEY, desired.field(PROTECTION)));
        }
        if fields.contains(&IDLE) {
            attributes.push(attribute(IDLE_KEY, desired.field(IDLE)));
        }
        if fields.contains(&ACCESS_LOGS) {
            attributes.extend(access_logs_attributes(desired.field(ACCESS_LOGS)));
        }
        if attributes.is_empty() {
            return Ok(());
        }
        let request = self.client.modify_load_balancer_attributes().load_balancer_arn(arn).set_attributes(Some(attributes));
        request.send().await.aws("ELBv2.ModifyLoadBalancerAttributes")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_logs_read_back_as_written() {
        let as_map = |attributes: Vec<LoadBalancerAttribute>| {
            move |key: &str| attributes.iter().find(|a| a.key() == Some(key)).and_then(|a| a.value()).map(str::to_string)
        };
        for logs in [None, Some(AccessLogs { bucket: "logs".into(), prefix: Some("alb".into()) }), Some(AccessLogs { bucket: "logs".into(), prefix: None })] {
            let text = access_logs_text(logs.as_ref());
            assert_eq!(live_access_logs(as_map(access_logs_attributes(&text))), text);
        }
        assert_eq!(access_logs_text(Some(&AccessLogs { bucket: "logs".into(), prefix: Some("alb".into()) })), "s3://logs/alb");
        // The emulator reports a bucket and no `enabled` flag until logs are switched on: off.
        let bucket_only = vec![LoadBalancerAttribute::builder().key(LOGS_BUCKET).value("").build()];
        assert_eq!(live_access_logs(as_map(bucket_only)), "off");
    }
}
