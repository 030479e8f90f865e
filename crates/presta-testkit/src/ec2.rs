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
        |w: &mut World, i: &op::describe_vpcs::DescribeVpcsInput| {
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
    );
    handle!(
        h,
        W,
        "DescribeSubnets",
        op::describe_subnets::DescribeSubnetsInput,
        |w: &mut World, i: &op::describe_subnets::DescribeSubnetsInput| {
            let subnets = w
                .subnets
                .iter()
                .filter(|s| {
                    (i.subnet_ids().is_empty()
                        || i.subnet_ids().iter().any(|id| s.subnet_id() == Some(id)))
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
    );
    security_groups(h);
    launch_templates(h);
    handle!(
        h,
        W,
        "CreateTags",
        op::create_tags::CreateTagsInput,
        |w: &mut World, i: &op::create_tags::CreateTagsInput| {
            for id in i.resources() {
                let id = Some(id.as_str());
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
                        format!("The ID '{}' is not valid", id.unwrap_or_default()),
                    ));
                }
            }
            Ok(op::create_tags::CreateTagsOutput::builder().build())
        }
    );
    handle!(
        h,
        W,
        "DescribeNetworkInterfaces",
        op::describe_network_interfaces::DescribeNetworkInterfacesInput,
        |w: &mut World, i: &op::describe_network_interfaces::DescribeNetworkInterfacesInput| {
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
    );
}

/// One rule per source, as the fake keeps them.
fn split(perms: &[IpPermission]) -> Vec<IpPermission> {
    let mut out = Vec::new();
    for p in perms {
        let base = || {
            IpPermission::builder()
                .set_ip_protocol(p.ip_protocol().map(str::to_string))
                .set_from_port(p.from_port())
                .set_to_port(p.to_port())
        };
        for r in p.ip_ranges() {
            out.push(
                base()
                    .ip_ranges(
                        IpRange::builder()
                            .set_cidr_ip(r.cidr_ip().map(str::to_string))
                            .build(),
                    )
                    .build(),
            );
        }
        for r in p.ipv6_ranges() {
            out.push(
                base()
                    .ipv6_ranges(
                        Ipv6Range::builder()
                            .set_cidr_ipv6(r.cidr_ipv6().map(str::to_string))
                            .build(),
                    )
                    .build(),
            );
        }
        for g in p.user_id_group_pairs() {
            out.push(
                base()
                    .user_id_group_pairs(
                        UserIdGroupPair::builder()
                            .set_group_id(g.group_id().map(str::to_string))
                            .build(),
                    )
                    .build(),
            );
        }
    }
    out
}

fn same_rule(a: &IpPermission, b: &IpPermission) -> bool {
    let ports = |p: &IpPermission| {
        if p.ip_protocol() == Some("-1") {
            (None, None)
        } else {
            (p.from_port(), p.to_port())
        }
    };
    a.ip_protocol() == b.ip_protocol()
        && ports(a) == ports(b)
        && a.ip_ranges().first().and_then(|r| r.cidr_ip())
            == b.ip_ranges().first().and_then(|r| r.cidr_ip())
        && a.ipv6_ranges().first().and_then(|r| r.cidr_ipv6())
            == b.ipv6_ranges().first().and_then(|r| r.cidr_ipv6())
        && a.user_id_group_pairs().first().and_then(|g| g.group_id())
            == b.user_id_group_pairs().first().and_then(|g| g.group_id())
}

fn group<'a>(w: &'a mut World, id: Option<&str>) -> Result<&'a mut SecurityGroup, Failure> {
    w.security_groups
        .iter_mut()
        .find(|g| g.group_id() == id && id.is_some())
        .ok_or_else(|| {
            Failure::new(
                "InvalidGroup.NotFound",
                format!(
                    "The security group '{}' does not exist",
                    id.unwrap_or_default()
                ),
            )
        })
}

fn security_groups(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "DescribeSecurityGroups",
        op::describe_security_groups::DescribeSecurityGroupsInput,
        |w: &mut World, i: &op::describe_security_groups::DescribeSecurityGroupsInput| {
            let found = w
                .security_groups
                .iter()
                .filter(|g| {
                    (i.group_ids().is_empty()
                        || i.group_ids().iter().any(|id| g.group_id() == Some(id)))
                        && world::passes(filters(i.filters()), |n| match n {
                            "group-name" => vec![g.group_name().unwrap_or_default().to_string()],
                            "group-id" => vec![g.group_id().unwrap_or_default().to_string()],
                            "vpc-id" => vec![g.vpc_id().unwrap_or_default().to_string()],
                            n => tag_values(g.tags(), n).unwrap_or_default(),
                        })
                })
                .cloned()
                .collect();
            Ok(
                op::describe_security_groups::DescribeSecurityGroupsOutput::builder()
                    .set_security_groups(Some(found))
                    .build(),
            )
        }
    );
    handle!(
        h,
        W,
        "CreateSecurityGroup",
        op::create_security_group::CreateSecurityGroupInput,
        |w: &mut World, i: &op::create_security_group::CreateSecurityGroupInput| {
            if w.security_groups
                .iter()
                .any(|g| g.group_name() == i.group_name() && g.vpc_id() == i.vpc_id())
            {
                return Err(Failure::new(
                    "InvalidGroup.Duplicate",
                    format!(
                        "The security group '{}' already exists",
                        i.group_name().unwrap_or_default()
                    ),
                ));
            }
            let id = w.id("sg");
            let owner = w.account.clone();
            w.security_groups.push(
                SecurityGroup::builder()
                    .group_id(&id)
                    .set_group_name(i.group_name().map(str::to_string))
                    .set_description(i.description().map(str::to_string))
                    .set_vpc_id(i.vpc_id().map(str::to_string))
                    .owner_id(owner)
                    .set_tags(Some(tags_of(i.tag_specifications())))
                    .build(),
            );
            Ok(
                op::create_security_group::CreateSecurityGroupOutput::builder()
                    .group_id(id)
                    .build(),
            )
        }
    );
    handle!(
        h,
        W,
        "AuthorizeSecurityGroupIngress",
        op::authorize_security_group_ingress::AuthorizeSecurityGroupIngressInput,
        |w: &mut World,
         i: &op::authorize_security_group_ingress::AuthorizeSecurityGroupIngressInput| {
            let g = group(w, i.group_id())?;
            let rules = split(i.ip_permissions());
            let perms = g.ip_permissions.get_or_insert_with(Vec::new);
            if rules.iter().any(|r| perms.iter().any(|p| same_rule(p, r))) {
                return Err(Failure::new(
                    "InvalidPermission.Duplicate",
                    "the specified rule already exists",
                ));
            }
            perms.extend(rules);
            Ok(
                op::authorize_security_group_ingress::AuthorizeSecurityGroupIngressOutput::builder(
                )
                .r#return(true)
                .build(),
            )
        }
    );
    handle!(
        h,
        W,
        "RevokeSecurityGroupIngress",
        op::revoke_security_group_ingress::RevokeSecurityGroupIngressInput,
        |w: &mut World, i: &op::revoke_security_group_ingress::RevokeSecurityGroupIngressInput| {
            let g = group(w, i.group_id())?;
            let rules = split(i.ip_permissions());
            let perms = g.ip_permissions.get_or_insert_with(Vec::new);
            if let Some(r) = rules
                .iter()
                .find(|r| !perms.iter().any(|p| same_rule(p, r)))
            {
                return Err(Failure::new(
                    "InvalidPermission.NotFound",
                    format!("The specified rule does not exist in this security group: {r:?}"),
                ));
            }
            perms.retain(|p| !rules.iter().any(|r| same_rule(p, r)));
            Ok(
                op::revoke_security_group_ingress::RevokeSecurityGroupIngressOutput::builder()
                    .r#return(true)
                    .build(),
            )
        }
    );
    handle!(
        h,
        W,
        "DeleteSecurityGroup",
        op::delete_security_group::DeleteSecurityGroupInput,
        |w: &mut World, i: &op::delete_security_group::DeleteSecurityGroupInput| {
            let id = group(w, i.group_id())?
                .group_id()
                .unwrap_or_default()
                .to_string();
            if let Some(why) = w.group_in_use(&id) {
                return Err(Failure::new(
                    "DependencyViolation",
                    format!("resource {id} has a dependent object ({why})"),
                ));
            }
            w.security_groups
                .retain(|g| g.group_id() != Some(id.as_str()));
            Ok(
                op::delete_security_group::DeleteSecurityGroupOutput::builder()
                    .r#return(true)
                    .group_id(id)
                    .build(),
            )
        }
    );
}

/// What `DescribeLaunchTemplateVersions` answers for the data a version was created with.
fn response_data(d: &RequestLaunchTemplateData) -> ResponseLaunchTemplateData {
    ResponseLaunchTemplateData::builder()
        .set_image_id(d.image_id().map(str::to_string))
        .set_instance_type(d.instance_type().cloned())
        .set_user_data(d.user_data().map(str::to_string))
        .set_security_group_ids(Some(d.security_group_ids().to_vec()))
        .set_iam_instance_profile(d.iam_instance_profile().map(|p| {
            LaunchTemplateIamInstanceProfileSpecification::builder()
                .set_name(p.name().map(str::to_string))
                .set_arn(p.arn().map(str::to_string))
                .build()
        }))
        .set_metadata_options(d.metadata_options().map(|m| {
            LaunchTemplateInstanceMetadataOptions::builder()
                .set_http_tokens(m.http_tokens().cloned())
                .set_http_put_response_hop_limit(m.http_put_response_hop_limit())
                .set_http_endpoint(m.http_endpoint().cloned())
                .build()
        }))
        .set_block_device_mappings(Some(
            d.block_device_mappings()
                .iter()
                .map(|b| {
                    LaunchTemplateBlockDeviceMapping::builder()
                        .set_device_name(b.device_name().map(str::to_string))
                        .set_ebs(b.ebs().map(|e| {
                            LaunchTemplateEbsBlockDevice::builder()
                                .set_volume_size(e.volume_size())
                                .set_volume_type(e.volume_type().cloned())
                                .set_encrypted(e.encrypted())
                                .set_delete_on_termination(e.delete_on_termination())
                                .build()
                        }))
                        .build()
                })
                .collect(),
        ))
        .build()
}

fn template<'a>(
    w: &'a mut World,
    id: Option<&str>,
    name: Option<&str>,
) -> Result<&'a mut crate::world::LaunchTemplate, Failure> {
    w.launch_templates
        .iter_mut()
        .find(|t| {
            (id.is_some() && t.template.launch_template_id() == id)
                || (name.is_some() && t.template.launch_template_name() == name)
        })
        .ok_or_else(|| {
            Failure::new(
                "InvalidLaunchTemplateId.NotFound",
                format!(
                    "The specified launch template, with template ID {}, does not exist.",
                    id.or(name).unwrap_or_default()
                ),
            )
        })
}

fn launch_templates(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "DescribeLaunchTemplates",
        op::describe_launch_templates::DescribeLaunchTemplatesInput,
        |w: &mut World, i: &op::describe_launch_templates::DescribeLaunchTemplatesInput| {
            let found: Vec<LaunchTemplate> = w
                .launch_templates
                .iter()
                .map(|t| &t.template)
                .filter(|t| {
                    (i.launch_template_ids().is_empty()
                        || i.launch_template_ids()
                            .iter()
                            .any(|id| t.launch_template_id() == Some(id)))
                        && (i.launch_template_names().is_empty()
                            || i.launch_template_names()
                                .iter()
                                .any(|n| t.launch_template_name() == Some(n)))
                        && world::passes(filters(i.filters()), |n| match n {
                            "launch-template-name" => {
                                vec![t.launch_template_name().unwrap_or_default().to_string()]
                            }
                            n => tag_values(t.tags(), n).unwrap_or_default(),
                        })
                })
                .cloned()
                .collect();
            Ok(
                op::describe_launch_templates::DescribeLaunchTemplatesOutput::builder()
                    .set_launch_templates(Some(found))
                    .build(),
            )
        }
    );
    handle!(
        h,
        W,
        "DescribeLaunchTemplateVersions",
        op::describe_launch_template_versions::DescribeLaunchTemplateVersionsInput,
        |w: &mut World,
         i: &op::describe_launch_template_versions::DescribeLaunchTemplateVersionsInput| {
            let wanted = |t: &crate::world::LaunchTemplate, v: &LaunchTemplateVersion| {
                i.versions().is_empty()
                    || i.versions().iter().any(|want| match want.as_str() {
                        "$Default" => v.default_version() == Some(true),
                        "$Latest" => v.version_number() == t.template.latest_version_number(),
                        n => n.parse::<i64>().ok() == v.version_number(),
                    })
            };
            let mut found = Vec::new();
            let by_id = i.launch_template_id().is_some() || i.launch_template_name().is_some();
            if by_id {
                let t = template(w, i.launch_template_id(), i.launch_template_name())?;
                found.extend(t.versions.iter().filter(|v| wanted(t, v)).cloned());
            } else {
                for t in &w.launch_templates {
                    let keep = world::passes(filters(i.filters()), |n| match n {
                        "launch-template-name" => vec![
                            t.template
                                .launch_template_name()
                                .unwrap_or_default()
                                .to_string(),
                        ],
                        n => tag_values(t.template.tags(), n).unwrap_or_default(),
                    });
                    if keep {
                        found.extend(t.versions.iter().filter(|v| wanted(t, v)).cloned());
                    }
                }
            }
            Ok(op::describe_launch_template_versions::DescribeLaunchTemplateVersionsOutput::builder()
            .set_launch_template_versions(Some(found))
            .build())
        }
    );
    handle!(
        h,
        W,
        "CreateLaunchTemplate",
        op::create_launch_template::CreateLaunchTemplateInput,
        |w: &mut World, i: &op::create_launch_template::CreateLaunchTemplateInput| {
            if w.launch_templates
                .iter()
                .any(|t| t.template.launch_template_name() == i.launch_template_name())
            {
                return Err(Failure::new(
                    "InvalidLaunchTemplateName.AlreadyExistsException",
                    format!(
                        "Launch template name already in use: {}",
                        i.launch_template_name().unwrap_or_default()
                    ),
                ));
            }
            let id = w.id("lt");
            let name = i.launch_template_name().unwrap_or_default().to_string();
            let template = LaunchTemplate::builder()
                .launch_template_id(&id)
                .launch_template_name(&name)
                .default_version_number(1)
                .latest_version_number(1)
                .set_tags(Some(tags_of(i.tag_specifications())))
                .build();
            let version = LaunchTemplateVersion::builder()
                .launch_template_id(&id)
                .launch_template_name(&name)
                .version_number(1)
                .default_version(true)
                .set_version_description(i.version_description().map(str::to_string))
                .set_launch_template_data(i.launch_template_data().map(response_data))
                .build();
            w.launch_templates.push(crate::world::LaunchTemplate {
                template: template.clone(),
                versions: vec![version],
            });
            Ok(
                op::create_launch_template::CreateLaunchTemplateOutput::builder()
                    .launch_template(template)
                    .build(),
            )
        }
    );
    handle!(
        h,
        W,
        "CreateLaunchTemplateVersion",
        op::create_launch_template_version::CreateLaunchTemplateVersionInput,
        |w: &mut World,
         i: &op::create_launch_template_version::CreateLaunchTemplateVersionInput| {
            let t = template(w, i.launch_template_id(), i.launch_template_name())?;
            let number = t.template.latest_version_number().unwrap_or(0) + 1;
            t.template.latest_version_number = Some(number);
            let version = LaunchTemplateVersion::builder()
                .set_launch_template_id(t.template.launch_template_id().map(str::to_string))
                .set_launch_template_name(t.template.launch_template_name().map(str::to_string))
                .version_number(number)
                .default_version(false)
                .set_version_description(i.version_description().map(str::to_string))
                .set_launch_template_data(i.launch_template_data().map(response_data))
                .build();
            t.versions.push(version.clone());
            Ok(
                op::create_launch_template_version::CreateLaunchTemplateVersionOutput::builder()
                    .launch_template_version(version)
                    .build(),
            )
        }
    );
    handle!(
        h,
        W,
        "ModifyLaunchTemplate",
        op::modify_launch_template::ModifyLaunchTemplateInput,
        |w: &mut World, i: &op::modify_launch_template::ModifyLaunchTemplateInput| {
            let t = template(w, i.launch_template_id(), i.launch_template_name())?;
            if let Some(n) = i.default_version().and_then(|v| v.parse::<i64>().ok()) {
                if !t.versions.iter().any(|v| v.version_number() == Some(n)) {
                    return Err(Failure::new(
                        "InvalidLaunchTemplateVersion.NotFound",
                        format!("version {n} does not exist"),
                    ));
                }
                t.template.default_version_number = Some(n);
                for v in &mut t.versions {
                    v.default_version = Some(v.version_number == Some(n));
                }
            }
            Ok(
                op::modify_launch_template::ModifyLaunchTemplateOutput::builder()
                    .launch_template(t.template.clone())
                    .build(),
            )
        }
    );
    handle!(
        h,
        W,
        "DeleteLaunchTemplate",
        op::delete_launch_template::DeleteLaunchTemplateInput,
        |w: &mut World, i: &op::delete_launch_template::DeleteLaunchTemplateInput| {
            let gone = template(w, i.launch_template_id(), i.launch_template_name())?
                .template
                .clone();
            w.launch_templates
                .retain(|t| t.template.launch_template_id() != gone.launch_template_id());
            Ok(
                op::delete_launch_template::DeleteLaunchTemplateOutput::builder()
                    .launch_template(gone)
                    .build(),
            )
        }
    );
}
