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
use crate::aws::AwsResult;

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
    for b in balancers.iter().filter(|b| b.vpc_id() == Some(vpc)) {
        add("AWS::ElasticLoadBalancingV2::LoadBalancer", b.load_balancer_arn(), &[], b.load_balancer_name());
        let Some(arn) = b.load_balancer_arn() else { continue };
        let listeners = elb.describe_listeners().load_balancer_arn(arn).into_paginator().items().send().try_collect().await.aws("ELBv2.DescribeListeners")?;
        for l in &listeners {
            let name = format!("{}-{}", b.load_balancer_name().unwrap_or_default(), l.port().unwrap_or_default());
            add("AWS::ElasticLoadBalancingV2::Listener", l.listener_arn(), &[], Some(&name));
        }
    }
    Ok((source, resources))
}
