//! EC2: the network (read only), security groups and their rules, launch templates and their
//! versions, tags, network interfaces.

use aws_sdk_ec2::operation as op;
use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, LaunchTemplate, LaunchTemplateBlockDeviceMapping,
    LaunchTemplateEbsBlockDevice, LaunchTemplateIamInstanceProfileSpecification,
    LaunchTemplateInstanceMetadataOptions, LaunchTemplateVersion, RequestLaunchTemplateData,
    ResponseLaunchTemplateData, SecurityGroup, Tag, TagSpecification, UserIdGroupPair,
};

use crate::wire::{Failure, Wire};
use crate::world::{self, World};
use crate::{Handler, handle};

mod launch_templates;
mod security_groups;

const W: Wire = Wire::Ec2;

fn filters(f: &[Filter]) -> Vec<(&str, &[String])> {
    f.iter()
        .map(|f| (f.name().unwrap_or_default(), f.values()))
        .collect()
}

/// The values of `tag:Key`, `tag-key` and `tag-value` filters.
fn tag_values(tags: &[Tag], name: &str) -> Option<Vec<String>> {
    if let Some(key) = name.strip_prefix("tag:") {
        return Some(
            tags.iter()
                .filter(|t| t.key() == Some(key))
                .filter_map(|t| t.value().map(str::to_string))
                .collect(),
        );
    }
    match name {
        "tag-key" => Some(
            tags.iter()
                .filter_map(|t| t.key().map(str::to_string))
                .collect(),
        ),
        "tag-value" => Some(
            tags.iter()
                .filter_map(|t| t.value().map(str::to_string))
                .collect(),
        ),
        _ => None,
    }
}

fn tags_of(specs: &[TagSpecification]) -> Vec<Tag> {
    specs
        .iter()
        .flat_map(|s| s.tags().iter().cloned())
        .collect()
}

fn merge_tags(into: &mut Vec<Tag>, tags: &[Tag]) {
    for t in tags {
        into.retain(|have| have.key() != t.key());
        into.push(t.clone());
    }
}

pub(crate) fn register(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "DescribeVpcs",
        op::describe_vpcs::DescribeVpcsInput,
        describe_vpcs
    );
    handle!(
        h,
        W,
        "DescribeSubnets",
        op::describe_subnets::DescribeSubnetsInput,
        describe_subnets
    );
    security_groups::register(h);
    launch_templates::register(h);
    handle!(
        h,
        W,
        "CreateTags",
        op::create_tags::CreateTagsInput,
        create_tags
    );
    handle!(
        h,
        W,
        "DescribeNetworkInterfaces",
        op::describe_network_interfaces::DescribeNetworkInterfacesInput,
        describe_network_interfaces
    );
}

/// `DescribeVpcs`.
fn describe_vpcs(
    w: &mut World,
    i: &op::describe_vpcs::DescribeVpcsInput,
) -> Result<op::describe_vpcs::DescribeVpcsOutput, Failure> {
    let vpcs = w
        .vpcs
        .iter()
        .filter(|v| {
            world::passes(filters(i.filters()), |n| match n {
                "vpc-id" => vec![v.vpc_id().unwrap_or_default().to_string()],
                n => tag_values(v.tags(), n).unwrap_or_default(),
            })
        })
        .cloned()
        .collect();
    Ok(op::describe_vpcs::DescribeVpcsOutput::builder()
        .set_vpcs(Some(vpcs))
        .build())
}

/// `DescribeSubnets`.
fn describe_subnets(
    w: &mut World,
    i: &op::describe_subnets::DescribeSubnetsInput,
) -> Result<op::describe_subnets::DescribeSubnetsOutput, Failure> {
    let subnets = w
        .subnets
        .iter()
        .filter(|s| {
            (i.subnet_ids().is_empty() || i.subnet_ids().iter().any(|id| s.subnet_id() == Some(id)))
                && world::passes(filters(i.filters()), |n| match n {
                    "vpc-id" => vec![s.vpc_id().unwrap_or_default().to_string()],
                    "subnet-id" => vec![s.subnet_id().unwrap_or_default().to_string()],
                    n => tag_values(s.tags(), n).unwrap_or_default(),
                })
        })
        .cloned()
        .collect();
    Ok(op::describe_subnets::DescribeSubnetsOutput::builder()
        .set_subnets(Some(subnets))
        .build())
}

/// `CreateTags`.
fn create_tags(
    w: &mut World,
    i: &op::create_tags::CreateTagsInput,
) -> Result<op::create_tags::CreateTagsOutput, Failure> {
    for raw in i.resources() {
        let id = Some(raw.as_str());
        if let Some(g) = w
            .security_groups
            .iter_mut()
            .find(|g| g.group_id.as_deref() == id)
        {
            merge_tags(g.tags.get_or_insert_with(Vec::new), i.tags());
        } else if let Some(t) = w
            .launch_templates
            .iter_mut()
            .find(|t| t.template.launch_template_id.as_deref() == id)
        {
            merge_tags(t.template.tags.get_or_insert_with(Vec::new), i.tags());
        } else {
            return Err(Failure::new(
                "InvalidID",
                format!("The ID '{raw}' is not valid"),
            ));
        }
    }
    Ok(op::create_tags::CreateTagsOutput::builder().build())
}

/// `DescribeNetworkInterfaces`.
fn describe_network_interfaces(
    w: &mut World,
    i: &op::describe_network_interfaces::DescribeNetworkInterfacesInput,
) -> Result<op::describe_network_interfaces::DescribeNetworkInterfacesOutput, Failure> {
    let found = w
        .network_interfaces
        .iter()
        .filter(|n| {
            i.network_interface_ids().is_empty()
                || i.network_interface_ids()
                    .iter()
                    .any(|id| n.network_interface_id() == Some(id))
        })
        .cloned()
        .collect();
    Ok(
        op::describe_network_interfaces::DescribeNetworkInterfacesOutput::builder()
            .set_network_interfaces(Some(found))
            .build(),
    )
}
