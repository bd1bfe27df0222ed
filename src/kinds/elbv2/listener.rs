//! Listeners of the load balancers: port, protocol (HTTPS with a certificate
//! and a TLS policy, else HTTP) and the default action: forward to the load
//! balancer's default target group, or, on an HTTP listener of a load
//! balancer that has an HTTPS one, a 301 redirect to HTTPS. Changed in place
//! (ModifyListener); one on another load balancer is replaced. A listener is
//! routing configuration: removed from the spec, it is deleted.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{Certificate, Listener, ProtocolEnum};
use aws_sdk_elasticloadbalancingv2::Client;

use super::CONCURRENCY;
use super::{actions_of, actions_text, add_tags, forward_to, listener_id, load_balancer, load_balancing, redirect_to_https, tag_list, tags_of, target_group};
use crate::aws::{found, gone_is_ok, required, AwsError, AwsResult};
use crate::engine::{
    ownership_tags, Delta, Desired, FieldReader, Importing, Kind, Layer, Live, Matching, OnImmutableChange, ReadCache, Rendering, Rules, Value,
};
use crate::kinds::read::describe_each;
use crate::spec::model::{self, DefaultAction, DeletionPolicy, Spec, Tags, DEFAULT_SSL_POLICY};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "elbv2.listener";

fields! {
    LOAD_BALANCER = "LoadBalancer", PORT = "Port", PROTOCOL = "Protocol", CERTIFICATE = "Certificate", SSL_POLICY = "SslPolicy",
    DEFAULT_ACTION = "DefaultAction",
}

/// The listener kind.
pub struct Listeners {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

/// The live form of listener `x` of load balancer `lb` (its name and ARN), tagged `tags`.
fn listener_live(lb: &(String, String), x: &Listener, tags: &mut HashMap<String, Tags>) -> Result<Live, AwsError> {
    let (lb_name, lb_arn) = lb;
    let arn = required("ELBv2.DescribeListeners", "listener ARN", x.listener_arn())?;
    let port = x.port().map(|p| p.to_string()).unwrap_or_default();
    let protocol = x.protocol().map_or("", |p| p.as_str());
    // The emulator reports a TLS policy on HTTP listeners too; AWS only on HTTPS ones.
    let https = protocol == "HTTPS";
    let certificate = if https { x.certificates().first().and_then(|c| c.certificate_arn()).unwrap_or_default() } else { "" };
    let policy = if https { x.ssl_policy().unwrap_or_default() } else { "" };
    Ok(Live { name: format!("{lb_name}:{port}"), tags: tags.remove(&arn).unwrap_or_default(), handle: arn, ..Live::default() }
        .with_handle(LOAD_BALANCER, x.load_balancer_arn().unwrap_or(lb_arn))
        .with(PORT, port)
        .with(PROTOCOL, protocol)
        .with(CERTIFICATE, certificate)
        .with(SSL_POLICY, policy)
        .with(DEFAULT_ACTION, actions_text(x.default_actions())))
}

/// Every listener of the load balancers this environment owns, with its
/// tags (named `<load balancer>:<port>`): one DescribeListeners per load
/// balancer and DescribeTags 20 at a time a pass, shared by the listener
/// kind and the rule kind (which reads the rules of the owned ones).
pub async fn live_listeners(client: &Client, env: &EnvSpec, reads: &ReadCache) -> Result<Arc<Vec<Live>>, AwsError> {
    reads
        .get("ELBv2.DescribeListeners(owned load balancers)", || async {
            // Boxed: nested shared reads make a future too deep for the compiler's layout queries.
            let balancers = Box::pin(load_balancer::live_load_balancers(client, env, reads)).await?;
            // Owned values: the futures must not borrow from the closure's argument.
            let ours = |b: &&Live| b.is_owned_by(&env.env) || reads.adopts(&b.handle) || reads.adopts(&b.name);
            let owned: Vec<(String, String)> = balancers.iter().filter(ours).map(|b| (b.name.clone(), b.handle.clone())).collect();
            let per_balancer = describe_each(owned, CONCURRENCY, |lb| async move {
                let listed = client.describe_listeners().load_balancer_arn(&lb.1).into_paginator().items().send().try_collect().await;
                // None when the load balancer was deleted since it was listed.
                let listeners: Vec<Listener> = found(listed.aws("ELBv2.DescribeListeners"))?.unwrap_or_default();
                Ok::<_, AwsError>(Some(listeners.into_iter().map(|x| (lb.clone(), x)).collect::<Vec<_>>()))
            })
            .await?;
            let listeners: Vec<((String, String), Listener)> = per_balancer.into_iter().flatten().collect();
            let mut tags = tags_of(client, listeners.iter().filter_map(|(_, x)| x.listener_arn().map(str::to_string)).collect()).await?;
            listeners.iter().map(|(lb, x)| listener_live(lb, x, &mut tags)).collect::<Result<Vec<Live>, AwsError>>()
        })
        .await
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeTags"],
    grants: &[Grant::allow("LoadBalancingWrites", &["elasticloadbalancing:CreateListener", "elasticloadbalancing:ModifyListener", "elasticloadbalancing:DeleteListener", "elasticloadbalancing:AddTags"], &["arn:aws:elasticloadbalancing:*:*:targetgroup/sentry-*/*", "arn:aws:elasticloadbalancing:*:*:loadbalancer/app/sentry-*/*", "arn:aws:elasticloadbalancing:*:*:listener/app/sentry-*/*/*", "arn:aws:elasticloadbalancing:*:*:listener-rule/app/sentry-*/*/*/*"])],
};

#[async_trait]
impl Kind for Listeners {
    fn rules(&self) -> Rules {
        Rules {
            matching: Matching::OwnershipTag,
            immutable: &[LOAD_BALANCER],
            on_immutable_change: OnImmutableChange::Replace,
            events: EventMatch::of("elasticloadbalancing.amazonaws.com", &["Listener"], &["listenerArn", "ListenerArn"]).marked("listener/"),
            ..Rules::new(KIND, Layer::Compute)
                .stands_for(&["AWS::ElasticLoadBalancingV2::Listener", "aws_lb_listener", "aws_alb_listener"])
                .needs(PERMISSIONS)
                .imported()
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(lbs) = load_balancing(env) else { return Vec::new() };
        let mut desired = Vec::new();
        for (id, b) in &lbs.load_balancers {
            let lb_name = b.physical_name(id, &env.env);
            for (lid, l) in &b.listeners {
                let key = listener_id(id, lid);
                let d = Desired::new(KIND, &key, format!("{lb_name}:{}", l.port), ownership_tags(env, &key, DeletionPolicy::Delete, &b.tags))
                    .with_reference(LOAD_BALANCER, load_balancer::KIND, id)
                    .with(PORT, l.port.to_string())
                    .with(PROTOCOL, l.protocol())
                    .with(CERTIFICATE, l.certificate_arn.as_deref().map(|c| env.substitute(c)).unwrap_or_default())
                    .with(SSL_POLICY, l.tls_policy().unwrap_or_default());
                desired.push(match b.default_action(l) {
                    DefaultAction::Forward(tg) => d.with(DEFAULT_ACTION, forward_to(tg)).after(target_group::KIND, tg),
                    DefaultAction::RedirectToHttps(port) => d.with(DEFAULT_ACTION, redirect_to_https(port)),
                });
            }
        }
        desired
    }

    /// Under its load balancer's id: `http` on port 80, `https` on 443, else
    /// `<protocol>-<port>`.
    fn import_id(&self, live: &Live, proposed: &str, _importing: &Importing) -> String {
        let lb = live.fields.get(LOAD_BALANCER).and_then(|v| v.id_of(load_balancer::KIND)).unwrap_or(proposed);
        let protocol = live.field(PROTOCOL).to_ascii_lowercase();
        match (protocol.as_str(), live.field(PORT)) {
            ("http", "80") | ("https", "443") => listener_id(lb, &protocol),
            (_, port) => listener_id(lb, &format!("{protocol}-{port}")),
        }
    }

    /// Its entry among its load balancer's listeners; a default action
    /// forwarding to a target group names the load balancer's default target
    /// group (one for all its listeners), a redirect to HTTPS is what the spec
    /// writes on an HTTP listener next to an HTTPS one.
    fn to_spec(&self, id: &str, live: &Live, spec: &mut Spec, _importing: &Importing) -> Result<Rendering, String> {
        let lb = live.fields.get(LOAD_BALANCER).and_then(|v| v.id_of(load_balancer::KIND)).ok_or("its load balancer is not imported")?;
        let lid = id.strip_prefix(&format!("{lb}/")).ok_or("its id does not name its load balancer")?;
        let balancer = spec.load_balancing.as_mut().and_then(|l| l.load_balancers.get_mut(lb)).ok_or("its load balancer is not imported")?;
        let https = match live.field(PROTOCOL) {
            "HTTPS" => true,
            "HTTP" => false,
            other => return Err(format!("its protocol {other} is not HTTP or HTTPS")),
        };
        let policy = live.field(SSL_POLICY);
        let listener = model::Listener {
            port: live.field(PORT).parse().map_err(|_| format!("its port {:?} is not a number", live.field(PORT)))?,
            certificate_arn: https.then(|| live.field(CERTIFICATE).to_string()),
            ssl_policy: (https && policy != DEFAULT_SSL_POLICY).then(|| policy.to_string()),
        };
        let action = live.fields.get(DEFAULT_ACTION).map(Value::items).unwrap_or_default();
        match action.as_slice() {
            [forward, group] if forward.as_text() == Some("forward") => {
                let group = group.id_of(target_group::KIND).ok_or_else(|| format!("it forwards to {group}, a target group not imported"))?;
                if !balancer.default_target_group.is_empty() && balancer.default_target_group != group {
                    return Err(format!(
                        "it forwards to {group}, another listener to {}: the spec has one default target group",
                        balancer.default_target_group
                    ));
                }
                balancer.default_target_group = group.to_string();
            }
            [redirect, https_word, _, code]
                if !https && redirect.as_text() == Some("redirect") && https_word.as_text() == Some("HTTPS") && code.as_text() == Some("HTTP_301") => {}
            _ => {
                return Err(format!(
                    "its default action ({}) is not in the spec language",
                    live.fields.get(DEFAULT_ACTION).map(Value::to_string).unwrap_or_default()
                ))
            }
        }
        balancer.listeners.insert(lid.to_string(), listener);
        Ok(Rendering::whole())
    }

    async fn observe(&self, env: &EnvSpec, _desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let listeners = Box::pin(live_listeners(&self.client, env, reads)).await?;
        Ok(listeners.iter().filter(|l| l.is_owned_by(&env.env) || reads.adopts(&l.handle)).cloned().collect())
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        const OP: &str = "ELBv2.CreateListener";
        desired.resolved(&[LOAD_BALANCER], OP)?;
        let balancer = desired.field(LOAD_BALANCER);
        let mut request = self
            .client
            .create_listener()
            .load_balancer_arn(balancer)
            .protocol(ProtocolEnum::from(desired.field(PROTOCOL)))
            .port(desired.number(PORT, OP)?)
            .set_default_actions(Some(actions_of(desired.fields.get(DEFAULT_ACTION), OP)?))
            .set_tags(Some(tag_list(&desired.tags)));
        if !desired.field(CERTIFICATE).is_empty() {
            request = request.certificates(Certificate::builder().certificate_arn(desired.field(CERTIFICATE)).build()).ssl_policy(desired.field(SSL_POLICY));
        }
        let out = request.send().await.aws("ELBv2.CreateListener")?;
        required(OP, "listener ARN", out.listeners().first().and_then(|l| l.listener_arn()))
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        const OP: &str = "ELBv2.ModifyListener";
        if !delta.fields.is_empty() {
            // Every setting at once: the default action is always sent (the emulator requires it).
            let mut request = self
                .client
                .modify_listener()
                .listener_arn(&live.handle)
                .port(desired.number(PORT, OP)?)
                .protocol(ProtocolEnum::from(desired.field(PROTOCOL)))
                .set_default_actions(Some(actions_of(desired.fields.get(DEFAULT_ACTION), OP)?));
            if !desired.field(CERTIFICATE).is_empty() {
                request =
                    request.certificates(Certificate::builder().certificate_arn(desired.field(CERTIFICATE)).build()).ssl_policy(desired.field(SSL_POLICY));
            }
            request.send().await.aws("ELBv2.ModifyListener")?;
        }
        add_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        // AWS deletes the listener's rules with it.
        gone_is_ok(self.client.delete_listener().listener_arn(&live.handle).send().await.map(|_| ()).aws("ELBv2.DeleteListener"))
    }
}
