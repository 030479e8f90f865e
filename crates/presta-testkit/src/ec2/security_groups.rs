//! EC2 security groups and their ingress rules (one rule per source, as the fake keeps them).

use super::*;

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

pub(super) fn register(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "DescribeSecurityGroups",
        op::describe_security_groups::DescribeSecurityGroupsInput,
        describe_security_groups
    );
    handle!(
        h,
        W,
        "CreateSecurityGroup",
        op::create_security_group::CreateSecurityGroupInput,
        create_security_group
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
        revoke_security_group_ingress
    );
    handle!(
        h,
        W,
        "DeleteSecurityGroup",
        op::delete_security_group::DeleteSecurityGroupInput,
        delete_security_group
    );
}

/// `DescribeSecurityGroups`.
fn describe_security_groups(
    w: &mut World,
    i: &op::describe_security_groups::DescribeSecurityGroupsInput,
) -> Result<op::describe_security_groups::DescribeSecurityGroupsOutput, Failure> {
    let found = w
        .security_groups
        .iter()
        .filter(|g| {
            (i.group_ids().is_empty() || i.group_ids().iter().any(|id| g.group_id() == Some(id)))
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

/// `CreateSecurityGroup`.
fn create_security_group(
    w: &mut World,
    i: &op::create_security_group::CreateSecurityGroupInput,
) -> Result<op::create_security_group::CreateSecurityGroupOutput, Failure> {
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

/// `RevokeSecurityGroupIngress`.
fn revoke_security_group_ingress(
    w: &mut World,
    i: &op::revoke_security_group_ingress::RevokeSecurityGroupIngressInput,
) -> Result<op::revoke_security_group_ingress::RevokeSecurityGroupIngressOutput, Failure> {
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

/// `DeleteSecurityGroup`.
fn delete_security_group(
    w: &mut World,
    i: &op::delete_security_group::DeleteSecurityGroupInput,
) -> Result<op::delete_security_group::DeleteSecurityGroupOutput, Failure> {
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
