//! Load balancers: `provisioning` for a while, attributes, subnets and security groups.

use super::*;

pub(super) fn register(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "DescribeLoadBalancers",
        op::describe_load_balancers::DescribeLoadBalancersInput,
        describe_load_balancers
    );
    handle!(
        h,
        W,
        "CreateLoadBalancer",
        op::create_load_balancer::CreateLoadBalancerInput,
        create_load_balancer
    );
    handle!(
        h,
        W,
        "DescribeLoadBalancerAttributes",
        op::describe_load_balancer_attributes::DescribeLoadBalancerAttributesInput,
        |w: &mut World,
         i: &op::describe_load_balancer_attributes::DescribeLoadBalancerAttributesInput| {
            let n = lb_index(w, i.load_balancer_arn())?;
            Ok(op::describe_load_balancer_attributes::DescribeLoadBalancerAttributesOutput::builder()
            .set_attributes(Some(w.load_balancers[n].attributes.clone()))
            .build())
        }
    );
    handle!(
        h,
        W,
        "ModifyLoadBalancerAttributes",
        op::modify_load_balancer_attributes::ModifyLoadBalancerAttributesInput,
        |w: &mut World,
         i: &op::modify_load_balancer_attributes::ModifyLoadBalancerAttributesInput| {
            let n = lb_index(w, i.load_balancer_arn())?;
            let attrs = &mut w.load_balancers[n].attributes;
            for a in i.attributes() {
                attrs.retain(|have| have.key() != a.key());
                attrs.push(a.clone());
            }
            Ok(
                op::modify_load_balancer_attributes::ModifyLoadBalancerAttributesOutput::builder()
                    .set_attributes(Some(attrs.clone()))
                    .build(),
            )
        }
    );
    handle!(
        h,
        W,
        "SetSecurityGroups",
        op::set_security_groups::SetSecurityGroupsInput,
        set_security_groups
    );
    handle!(
        h,
        W,
        "SetSubnets",
        op::set_subnets::SetSubnetsInput,
        set_subnets
    );
    handle!(
        h,
        W,
        "DeleteLoadBalancer",
        op::delete_load_balancer::DeleteLoadBalancerInput,
        delete_load_balancer
    );
}

fn zones(w: &World, subnets: &[String]) -> Result<Vec<AvailabilityZone>, Failure> {
    subnets
        .iter()
        .map(|id| {
            let s = w
                .subnets
                .iter()
                .find(|s| s.subnet_id() == Some(id))
                .ok_or_else(|| {
                    Failure::new(
                        "SubnetNotFound",
                        format!("The subnet ID '{id}' is not valid"),
                    )
                })?;
            Ok(AvailabilityZone::builder()
                .subnet_id(id)
                .set_zone_name(s.availability_zone().map(str::to_string))
                .build())
        })
        .collect()
}

/// `DescribeLoadBalancers`.
fn describe_load_balancers(
    w: &mut World,
    i: &op::describe_load_balancers::DescribeLoadBalancersInput,
) -> Result<op::describe_load_balancers::DescribeLoadBalancersOutput, Failure> {
    let found: Vec<LoadBalancer> = w
        .load_balancers
        .iter()
        .map(|l| &l.lb)
        .filter(|l| {
            (i.names().is_empty() || i.names().iter().any(|n| l.load_balancer_name() == Some(n)))
                && (i.load_balancer_arns().is_empty()
                    || i.load_balancer_arns()
                        .iter()
                        .any(|a| l.load_balancer_arn() == Some(a)))
        })
        .cloned()
        .collect();
    if found.is_empty() && !i.names().is_empty() {
        return Err(Failure::new(
            "LoadBalancerNotFound",
            "One or more load balancers not found",
        ));
    }
    Ok(
        op::describe_load_balancers::DescribeLoadBalancersOutput::builder()
            .set_load_balancers(Some(found))
            .build(),
    )
}

/// `CreateLoadBalancer`.
fn create_load_balancer(
    w: &mut World,
    i: &op::create_load_balancer::CreateLoadBalancerInput,
) -> Result<op::create_load_balancer::CreateLoadBalancerOutput, Failure> {
    let name = i.name().unwrap_or_default().to_string();
    if let Some(l) = w
        .load_balancers
        .iter()
        .find(|l| l.lb.load_balancer_name() == Some(&name))
    {
        return Err(Failure::new(
            "DuplicateLoadBalancerName",
            format!(
                "A load balancer with the same name '{name}' exists: {}",
                l.lb.load_balancer_arn().unwrap_or_default()
            ),
        ));
    }
    let zones = zones(w, i.subnets())?;
    let vpc = w
        .subnets
        .iter()
        .find(|s| i.subnets().first().map(String::as_str) == s.subnet_id())
        .and_then(|s| s.vpc_id().map(str::to_string));
    let suffix = w.id("app");
    let arn = w.arn(
        "elasticloadbalancing",
        &format!("loadbalancer/app/{name}/{}", &suffix[4..]),
    );
    let lb = LoadBalancer::builder()
        .load_balancer_arn(&arn)
        .load_balancer_name(&name)
        .dns_name(format!(
            "{name}-{}.{}.elb.amazonaws.com",
            &suffix[10..],
            w.region
        ))
        .scheme(
            i.scheme()
                .cloned()
                .unwrap_or(LoadBalancerSchemeEnum::InternetFacing),
        )
        .set_vpc_id(vpc)
        .r#type(aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum::Application)
        .set_ip_address_type(i.ip_address_type().cloned())
        .state(
            LoadBalancerState::builder()
                .code(LoadBalancerStateEnum::Provisioning)
                .build(),
        )
        .set_availability_zones(Some(zones))
        .set_security_groups(Some(i.security_groups().to_vec()))
        .build();
    let attributes = [
        ("deletion_protection.enabled", "false"),
        ("idle_timeout.timeout_seconds", "60"),
        ("routing.http.drop_invalid_header_fields.enabled", "false"),
        ("access_logs.s3.enabled", "false"),
    ]
    .into_iter()
    .map(|(k, v)| LoadBalancerAttribute::builder().key(k).value(v).build())
    .collect();
    let ready_at = Instant::now() + w.delays.load_balancer;
    w.load_balancers.push(crate::world::LoadBalancer {
        lb: lb.clone(),
        attributes,
        ready_at,
    });
    tag(w, &arn, i.tags());
    Ok(
        op::create_load_balancer::CreateLoadBalancerOutput::builder()
            .load_balancers(lb)
            .build(),
    )
}

/// `SetSecurityGroups`.
fn set_security_groups(
    w: &mut World,
    i: &op::set_security_groups::SetSecurityGroupsInput,
) -> Result<op::set_security_groups::SetSecurityGroupsOutput, Failure> {
    let n = lb_index(w, i.load_balancer_arn())?;
    w.load_balancers[n].lb.security_groups = Some(i.security_groups().to_vec());
    Ok(op::set_security_groups::SetSecurityGroupsOutput::builder()
        .set_security_group_ids(Some(i.security_groups().to_vec()))
        .build())
}

/// `SetSubnets`.
fn set_subnets(
    w: &mut World,
    i: &op::set_subnets::SetSubnetsInput,
) -> Result<op::set_subnets::SetSubnetsOutput, Failure> {
    let n = lb_index(w, i.load_balancer_arn())?;
    let zones = zones(w, i.subnets())?;
    w.load_balancers[n].lb.availability_zones = Some(zones.clone());
    Ok(op::set_subnets::SetSubnetsOutput::builder()
        .set_availability_zones(Some(zones))
        .build())
}

/// `DeleteLoadBalancer`.
fn delete_load_balancer(
    w: &mut World,
    i: &op::delete_load_balancer::DeleteLoadBalancerInput,
) -> Result<op::delete_load_balancer::DeleteLoadBalancerOutput, Failure> {
    let Ok(n) = lb_index(w, i.load_balancer_arn()) else {
        // Deleting a load balancer that does not exist succeeds.
        return Ok(op::delete_load_balancer::DeleteLoadBalancerOutput::builder().build());
    };
    let protected = w.load_balancers[n]
        .attributes
        .iter()
        .any(|a| a.key() == Some("deletion_protection.enabled") && a.value() == Some("true"));
    if protected {
        return Err(Failure::new(
            "OperationNotPermitted",
            "Load balancer has deletion protection enabled",
        ));
    }
    let arn = w
        .load_balancers
        .remove(n)
        .lb
        .load_balancer_arn
        .unwrap_or_default();
    w.listeners.retain(|l| l.load_balancer_arn() != Some(&arn));
    w.elb_tags.remove(&arn);
    Ok(op::delete_load_balancer::DeleteLoadBalancerOutput::builder().build())
}
