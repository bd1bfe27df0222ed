//! `import --vpc ID`: the resources of an estate made by hand, found in its
//! VPC and listed as the stack resources the rest of `import` reads — the
//! VPC, its subnets, its internet gateway, its NAT gateways and their
//! addresses, its route tables (the main one aside: a subnet on it stays
//! unassociated), its security groups (the default one aside), its network
//! ACLs (the default one aside), gateway endpoints, flow logs, target
//! groups, load balancers and their listeners. Each is named by its Name tag (else its group name or its id);
//! the name-keyed kinds are found by name afterwards, as for stacks.

use aws_sdk_ec2::types::{Filter, Tag};

use super::{ImportError, StackResource};
use crate::aws::{required, AwsError, AwsResult};

/// The resources of VPC `vpc`, and the source they are listed under
/// (`env` names them: a Name tag's environment suffix is dropped from the id).
pub async fn vpc_resources(
    ec2: &aws_sdk_ec2::Client,
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    vpc: &str,
    env: &str,
) -> Result<(String, Vec<StackResource>), ImportError> {
    let source = format!("vpc {vpc}");
    let in_vpc = || Filter::builder().name("vpc-id").values(vpc).build();
    let vpcs = ec2.describe_vpcs().vpc_ids(vpc).send().await.aws("EC2.DescribeVpcs").map_err(|e| match e.code.as_deref() {
        Some("InvalidVpcID.NotFound") => ImportError::Input(format!("VPC {vpc} does not exist in this account and region")),
        _ => ImportError::Aws(e),
    })?;
    let Some(found) = vpcs.vpcs().first() else { return Err(ImportError::Input(format!("VPC {vpc} does not exist in this account and region"))) };
    let mut resources = Vec::new();
    let mut add = |resource_type: &str, id: Option<&str>, tags: &[Tag], fallback: Option<&str>| {
        let Some(id) = id else { return };
        let name =
            tags.iter().find(|t| t.key() == Some("Name")).and_then(|t| t.value()).or(fallback).map_or_else(|| id.to_string(), |n| super::name_stem(n, env));
        resources.push(StackResource { stack: source.clone(), logical_id: name, physical_id: id.to_string(), resource_type: resource_type.into() });
    };
    add("AWS::EC2::VPC", found.vpc_id(), found.tags(), None);
    let subnets = ec2.describe_subnets().filters(in_vpc()).send().await.aws("EC2.DescribeSubnets")?;
    for s in subnets.subnets() {
        add("AWS::EC2::Subnet", s.subnet_id(), s.tags(), None);
    }
    let attached = Filter::builder().name("attachment.vpc-id").values(vpc).build();
    let gateways = ec2.describe_internet_gateways().filters(attached).send().await.aws("EC2.DescribeInternetGateways")?;
    for g in gateways.internet_gateways() {
        add("AWS::EC2::InternetGateway", g.internet_gateway_id(), g.tags(), None);
    }
    let nats = ec2.describe_nat_gateways().filter(in_vpc()).send().await.aws("EC2.DescribeNatGateways")?;
    let live_nats: Vec<_> = nats.nat_gateways().iter().filter(|n| n.vpc_id() == Some(vpc) && n.state().is_some_and(|s| s.as_str() == "available")).collect();
    let allocations: Vec<&str> = live_nats.iter().flat_map(|n| n.nat_gateway_addresses()).filter_map(|a| a.allocation_id()).collect();
    for n in &live_nats {
        add("AWS::EC2::NatGateway", n.nat_gateway_id(), n.tags(), None);
    }
    if !allocations.is_empty() {
        let addresses = ec2.describe_addresses().set_allocation_ids(Some(allocations.iter().map(|a| a.to_string()).collect())).send().await;
        for a in addresses.aws("EC2.DescribeAddresses")?.addresses() {
            add("AWS::EC2::EIP", a.allocation_id(), a.tags(), None);
        }
    }
    let tables = ec2.describe_route_tables().filters(in_vpc()).send().await.aws("EC2.DescribeRouteTables")?;
    for t in tables.route_tables().iter().filter(|t| !t.associations().iter().any(|a| a.main() == Some(true))) {
        add("AWS::EC2::RouteTable", t.route_table_id(), t.tags(), None);
    }
    let groups = ec2.describe_security_groups().filters(in_vpc()).send().await.aws("EC2.DescribeSecurityGroups")?;
    for g in groups.security_groups().iter().filter(|g| g.group_name() != Some("default")) {
        add("AWS::EC2::SecurityGroup", g.group_id(), g.tags(), g.group_name());
    }
    let acls = ec2.describe_network_acls().filters(in_vpc()).send().await.aws("EC2.DescribeNetworkAcls")?;
    for a in acls.network_acls().iter().filter(|a| a.is_default() != Some(true)) {
        add("AWS::EC2::NetworkAcl", a.network_acl_id(), a.tags(), None);
    }
    let endpoints = ec2.describe_vpc_endpoints().filters(in_vpc()).send().await.aws("EC2.DescribeVpcEndpoints")?;
    for e in endpoints.vpc_endpoints().iter().filter(|e| !matches!(e.state().map(|s| s.as_str()), Some("deleted" | "deleting"))) {
        add("AWS::EC2::VPCEndpoint", e.vpc_endpoint_id(), e.tags(), None);
    }
    let of_vpc = Filter::builder().name("resource-id").values(vpc).build();
    let logs = ec2.describe_flow_logs().filter(of_vpc).send().await.aws("EC2.DescribeFlowLogs")?;
    for f in logs.flow_logs() {
        add("AWS::EC2::FlowLog", f.flow_log_id(), f.tags(), None);
    }
    let groups = elb.describe_target_groups().into_paginator().items().send().try_collect().await.aws("ELBv2.DescribeTargetGroups")?;
    for g in groups.iter().filter(|g| g.vpc_id() == Some(vpc)) {
        add("AWS::ElasticLoadBalancingV2::TargetGroup", g.target_group_arn(), &[], g.target_group_name());
    }
    let balancers = elb.describe_load_balancers().into_paginator().items().send().try_collect().await.aws("ELBv2.DescribeLoadBalancers")?;
    let in_vpc: Vec<(String, String)> = balancers
        .iter()
        .filter(|b| b.vpc_id() == Some(vpc))
        .filter_map(|b| Some((b.load_balancer_arn()?.to_string(), b.load_balancer_name()?.to_string())))
        .collect();
    for (arn, name) in &in_vpc {
        add("AWS::ElasticLoadBalancingV2::LoadBalancer", Some(arn), &[], Some(name));
    }
    for (arn, name) in in_vpc {
        listeners_and_rules(elb, (&arn, &name), &source, &mut resources).await?;
    }
    Ok((source, resources))
}

/// Adds to `resources` (listed under `source`) the listeners of load
/// balancer `lb` (its ARN and name) and their rules that are not there yet
/// (named after the load balancer and the port, the rules after their
/// priority).
async fn listeners_and_rules(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    (lb, name): (&str, &str),
    source: &str,
    resources: &mut Vec<StackResource>,
) -> Result<(), ImportError> {
    let listeners = elb.describe_listeners().load_balancer_arn(lb).into_paginator().items().send().try_collect().await.aws("ELBv2.DescribeListeners")?;
    let mut found = Vec::new();
    for l in &listeners {
        let listener = required("ELBv2.DescribeListeners", "listener ARN", l.listener_arn())?;
        let port = l.port().ok_or_else(|| AwsError::unexpected("ELBv2.DescribeListeners", format!("listener {listener} has no port")))?;
        found.push(("AWS::ElasticLoadBalancingV2::Listener", format!("{name}-{port}"), listener.clone()));
        let rules = elb.describe_rules().listener_arn(&listener).into_paginator().items().send().try_collect().await.aws("ELBv2.DescribeRules")?;
        for r in rules.iter().filter(|r| r.is_default() != Some(true)) {
            let rule = required("ELBv2.DescribeRules", "rule ARN", r.rule_arn())?;
            let priority = required("ELBv2.DescribeRules", "rule priority", r.priority())?;
            found.push(("AWS::ElasticLoadBalancingV2::ListenerRule", format!("priority-{priority}"), rule));
        }
    }
    for (resource_type, logical_id, physical_id) in found {
        if !resources.iter().any(|r| r.physical_id == physical_id) {
            resources.push(StackResource { stack: source.to_string(), logical_id, physical_id, resource_type: resource_type.into() });
        }
    }
    Ok(())
}

/// The CloudFormation type and the physical id a resource ARN stands for
/// (`arn:aws:ec2:…:subnet/subnet-1`: `AWS::EC2::Subnet`, `subnet-1`); `None`
/// for a type no kind stands for.
fn of_arn(arn: &str) -> Option<(&'static str, String)> {
    let mut parts = arn.splitn(6, ':');
    let (service, resource) = (parts.nth(2)?, parts.nth(2)?);
    let (kind, rest) = resource.split_once(['/', ':']).unwrap_or((resource, ""));
    let by_id = |t: &'static str| Some((t, rest.to_string()));
    match (service, kind) {
        ("ec2", "vpc") => by_id("AWS::EC2::VPC"),
        ("ec2", "subnet") => by_id("AWS::EC2::Subnet"),
        ("ec2", "internet-gateway") => by_id("AWS::EC2::InternetGateway"),
        ("ec2", "elastic-ip") => by_id("AWS::EC2::EIP"),
        ("ec2", "natgateway") => by_id("AWS::EC2::NatGateway"),
        ("ec2", "route-table") => by_id("AWS::EC2::RouteTable"),
        ("ec2", "network-acl") => by_id("AWS::EC2::NetworkAcl"),
        ("ec2", "security-group") => by_id("AWS::EC2::SecurityGroup"),
        ("ec2", "vpc-endpoint") => by_id("AWS::EC2::VPCEndpoint"),
        ("ec2", "vpc-flow-log") => by_id("AWS::EC2::FlowLog"),
        ("sqs", name) => Some(("AWS::SQS::Queue", name.to_string())),
        ("dynamodb", "table") => by_id("AWS::DynamoDB::Table"),
        ("logs", "log-group") => Some(("AWS::Logs::LogGroup", rest.trim_end_matches(":*").to_string())),
        ("ecs", "cluster") => Some(("AWS::ECS::Cluster", arn.to_string())),
        ("elasticloadbalancing", "targetgroup") => Some(("AWS::ElasticLoadBalancingV2::TargetGroup", arn.to_string())),
        ("elasticloadbalancing", "loadbalancer") => Some(("AWS::ElasticLoadBalancingV2::LoadBalancer", arn.to_string())),
        ("elasticloadbalancing", "listener") => Some(("AWS::ElasticLoadBalancingV2::Listener", arn.to_string())),
        ("elasticloadbalancing", "listener-rule") => Some(("AWS::ElasticLoadBalancingV2::ListenerRule", arn.to_string())),
        ("ecr", "repository") => by_id("AWS::ECR::Repository"),
        ("elasticache", "replicationgroup") => by_id("AWS::ElastiCache::ReplicationGroup"),
        ("cognito-idp", "userpool") => by_id("AWS::Cognito::UserPool"),
        _ => None,
    }
}

/// The resources tagged `key` = `value` (the Resource Groups Tagging API),
/// with the listeners of the load balancers among them (a load balancer's
/// tags do not reach its listeners) and the addresses of the NAT gateways
/// among them, and the source they are listed under;
/// an ARN of a type no kind stands for is listed under its ARN's type, which
/// the caller reports.
pub async fn tagged_resources(
    tagging: &aws_sdk_resourcegroupstagging::Client,
    ec2: &aws_sdk_ec2::Client,
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    (key, value): (&str, &str),
    env: &str,
) -> Result<(String, Vec<StackResource>), ImportError> {
    let source = format!("tag {key}={value}");
    let filter = aws_sdk_resourcegroupstagging::types::TagFilter::builder().key(key).values(value).build();
    let pages = tagging.get_resources().tag_filters(filter).resources_per_page(100).into_paginator().send().try_collect().await.aws("Tagging.GetResources")?;
    let mut resources = Vec::new();
    for r in pages.iter().flat_map(|p| p.resource_tag_mapping_list()) {
        let Some(arn) = r.resource_arn() else { continue };
        let name = r.tags().iter().find(|t| t.key() == "Name").map(|t| t.value().to_string());
        let (resource_type, physical_id) = of_arn(arn).map_or_else(|| (format!("ARN {arn}"), arn.to_string()), |(t, id)| (t.to_string(), id));
        let logical_id = super::name_stem(name.as_deref().unwrap_or_else(|| super::physical_name_of(&physical_id)), env);
        resources.push(StackResource { stack: source.clone(), logical_id, physical_id, resource_type });
    }
    let nats: Vec<String> = resources.iter().filter(|r| r.resource_type == "AWS::EC2::NatGateway").map(|r| r.physical_id.clone()).collect();
    if !nats.is_empty() {
        let described = ec2.describe_nat_gateways().set_nat_gateway_ids(Some(nats)).send().await.aws("EC2.DescribeNatGateways")?;
        let available = described.nat_gateways().iter().filter(|n| n.state().is_some_and(|s| s.as_str() == "available"));
        let allocations: Vec<String> = available.flat_map(|n| n.nat_gateway_addresses()).filter_map(|a| a.allocation_id().map(str::to_string)).collect();
        // An empty list would not narrow DescribeAddresses at all (every address of the region).
        let addresses = match allocations.is_empty() {
            true => aws_sdk_ec2::operation::describe_addresses::DescribeAddressesOutput::builder().build(),
            false => ec2.describe_addresses().set_allocation_ids(Some(allocations)).send().await.aws("EC2.DescribeAddresses")?,
        };
        for a in addresses.addresses() {
            let Some(allocation) = a.allocation_id().filter(|id| !resources.iter().any(|r| r.physical_id == *id)) else { continue };
            let name = a.tags().iter().find(|t| t.key() == Some("Name")).and_then(|t| t.value()).unwrap_or(allocation);
            let logical_id = super::name_stem(name, env);
            resources.push(StackResource { stack: source.clone(), logical_id, physical_id: allocation.to_string(), resource_type: "AWS::EC2::EIP".into() });
        }
    }
    let balancers: Vec<(String, String)> = resources
        .iter()
        .filter(|r| r.resource_type == "AWS::ElasticLoadBalancingV2::LoadBalancer")
        .map(|r| (r.physical_id.clone(), r.logical_id.clone()))
        .collect();
    for (arn, name) in balancers {
        listeners_and_rules(elb, (&arn, &name), &source, &mut resources).await?;
    }
    Ok((source, resources))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arn_names_its_type_and_physical_id() {
        assert_eq!(of_arn("arn:aws:ec2:us-east-1:1:subnet/subnet-1"), Some(("AWS::EC2::Subnet", "subnet-1".into())));
        assert_eq!(of_arn("arn:aws:ec2:us-east-1:1:elastic-ip/eipalloc-1"), Some(("AWS::EC2::EIP", "eipalloc-1".into())));
        assert_eq!(of_arn("arn:aws:sqs:us-east-1:1:orders-dev.fifo"), Some(("AWS::SQS::Queue", "orders-dev.fifo".into())));
        assert_eq!(of_arn("arn:aws:logs:us-east-1:1:log-group:/ecs/oms-dev:*"), Some(("AWS::Logs::LogGroup", "/ecs/oms-dev".into())));
        assert_eq!(of_arn("arn:aws:dynamodb:us-east-1:1:table/oms_config_dev"), Some(("AWS::DynamoDB::Table", "oms_config_dev".into())));
        let group = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/web/0123";
        assert_eq!(of_arn(group), Some(("AWS::ElasticLoadBalancingV2::TargetGroup", group.into())));
        assert_eq!(of_arn("arn:aws:elasticache:us-east-1:1:replicationgroup:redis-dev"), Some(("AWS::ElastiCache::ReplicationGroup", "redis-dev".into())));
        assert_eq!(of_arn("arn:aws:s3:::a-bucket"), None);
    }
}
