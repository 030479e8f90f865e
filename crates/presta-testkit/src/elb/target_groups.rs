//! Target groups, their attributes, and the health of the targets the Auto Scaling groups register.

use super::*;

pub(super) fn register(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "DescribeTargetGroups",
        op::describe_target_groups::DescribeTargetGroupsInput,
        describe_target_groups
    );
    handle!(
        h,
        W,
        "CreateTargetGroup",
        op::create_target_group::CreateTargetGroupInput,
        create_target_group
    );
    handle!(
        h,
        W,
        "ModifyTargetGroup",
        op::modify_target_group::ModifyTargetGroupInput,
        modify_target_group
    );
    handle!(
        h,
        W,
        "DescribeTargetGroupAttributes",
        op::describe_target_group_attributes::DescribeTargetGroupAttributesInput,
        |w: &mut World,
         i: &op::describe_target_group_attributes::DescribeTargetGroupAttributesInput| {
            let n = tg_index(w, i.target_group_arn())?;
            Ok(
                op::describe_target_group_attributes::DescribeTargetGroupAttributesOutput::builder(
                )
                .set_attributes(Some(w.target_groups[n].attributes.clone()))
                .build(),
            )
        }
    );
    handle!(
        h,
        W,
        "ModifyTargetGroupAttributes",
        op::modify_target_group_attributes::ModifyTargetGroupAttributesInput,
        |w: &mut World,
         i: &op::modify_target_group_attributes::ModifyTargetGroupAttributesInput| {
            let n = tg_index(w, i.target_group_arn())?;
            let attrs = &mut w.target_groups[n].attributes;
            for a in i.attributes() {
                attrs.retain(|have| have.key() != a.key());
                attrs.push(a.clone());
            }
            Ok(
                op::modify_target_group_attributes::ModifyTargetGroupAttributesOutput::builder()
                    .set_attributes(Some(attrs.clone()))
                    .build(),
            )
        }
    );
    handle!(
        h,
        W,
        "DeleteTargetGroup",
        op::delete_target_group::DeleteTargetGroupInput,
        delete_target_group
    );
    handle!(
        h,
        W,
        "DescribeTargetHealth",
        op::describe_target_health::DescribeTargetHealthInput,
        describe_target_health
    );
}

/// `DescribeTargetGroups`.
fn describe_target_groups(
    w: &mut World,
    i: &op::describe_target_groups::DescribeTargetGroupsInput,
) -> Result<op::describe_target_groups::DescribeTargetGroupsOutput, Failure> {
    let found: Vec<TargetGroup> = w
        .target_groups
        .iter()
        .map(|t| &t.tg)
        .filter(|t| {
            (i.names().is_empty() || i.names().iter().any(|n| t.target_group_name() == Some(n)))
                && (i.target_group_arns().is_empty()
                    || i.target_group_arns()
                        .iter()
                        .any(|a| t.target_group_arn() == Some(a)))
                && i.load_balancer_arn()
                    .is_none_or(|lb| t.load_balancer_arns().iter().any(|a| a == lb))
        })
        .cloned()
        .collect();
    if found.is_empty() && !i.names().is_empty() {
        return Err(Failure::new(
            "TargetGroupNotFound",
            "One or more target groups not found",
        ));
    }
    Ok(
        op::describe_target_groups::DescribeTargetGroupsOutput::builder()
            .set_target_groups(Some(found))
            .build(),
    )
}

/// `CreateTargetGroup`.
fn create_target_group(
    w: &mut World,
    i: &op::create_target_group::CreateTargetGroupInput,
) -> Result<op::create_target_group::CreateTargetGroupOutput, Failure> {
    let name = i.name().unwrap_or_default().to_string();
    if let Some(t) = w
        .target_groups
        .iter()
        .find(|t| t.tg.target_group_name() == Some(&name))
    {
        // AWS answers an identical create with the existing group.
        let tg = t.tg.clone();
        return Ok(op::create_target_group::CreateTargetGroupOutput::builder()
            .target_groups(tg)
            .build());
    }
    let suffix = w.id("tg");
    let arn = w.arn(
        "elasticloadbalancing",
        &format!("targetgroup/{name}/{}", &suffix[3..]),
    );
    let tg = TargetGroup::builder()
        .target_group_arn(&arn)
        .target_group_name(&name)
        .set_protocol(i.protocol().cloned())
        .set_port(i.port())
        .set_vpc_id(i.vpc_id().map(str::to_string))
        .set_health_check_protocol(i.health_check_protocol().cloned())
        .set_health_check_path(i.health_check_path().map(str::to_string))
        .set_health_check_enabled(i.health_check_enabled())
        .set_health_check_interval_seconds(i.health_check_interval_seconds())
        .set_health_check_timeout_seconds(i.health_check_timeout_seconds())
        .set_healthy_threshold_count(i.healthy_threshold_count())
        .set_unhealthy_threshold_count(i.unhealthy_threshold_count())
        .set_matcher(
            i.matcher()
                .cloned()
                .or_else(|| Some(Matcher::builder().http_code("200").build())),
        )
        .set_target_type(i.target_type().cloned())
        .build();
    let attributes = [
        ("deregistration_delay.timeout_seconds", "300"),
        ("stickiness.enabled", "false"),
        ("stickiness.type", "lb_cookie"),
        ("stickiness.lb_cookie.duration_seconds", "86400"),
    ]
    .into_iter()
    .map(|(k, v)| TargetGroupAttribute::builder().key(k).value(v).build())
    .collect();
    w.target_groups.push(crate::world::TargetGroup {
        tg: tg.clone(),
        attributes,
    });
    tag(w, &arn, i.tags());
    Ok(op::create_target_group::CreateTargetGroupOutput::builder()
        .target_groups(tg)
        .build())
}

/// `ModifyTargetGroup`.
fn modify_target_group(
    w: &mut World,
    i: &op::modify_target_group::ModifyTargetGroupInput,
) -> Result<op::modify_target_group::ModifyTargetGroupOutput, Failure> {
    let n = tg_index(w, i.target_group_arn())?;
    let t = &mut w.target_groups[n].tg;
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = i.$field.clone() { t.$field = Some(v); } )* };
    }
    set!(
        health_check_path,
        health_check_interval_seconds,
        health_check_timeout_seconds,
        healthy_threshold_count,
        unhealthy_threshold_count,
        matcher,
        health_check_protocol,
        health_check_port,
        health_check_enabled
    );
    Ok(op::modify_target_group::ModifyTargetGroupOutput::builder()
        .target_groups(t.clone())
        .build())
}

/// `DeleteTargetGroup`.
fn delete_target_group(
    w: &mut World,
    i: &op::delete_target_group::DeleteTargetGroupInput,
) -> Result<op::delete_target_group::DeleteTargetGroupOutput, Failure> {
    let Ok(n) = tg_index(w, i.target_group_arn()) else {
        return Ok(op::delete_target_group::DeleteTargetGroupOutput::builder().build());
    };
    let arn = w.target_groups[n]
        .tg
        .target_group_arn()
        .unwrap_or_default()
        .to_string();
    let used = w.listeners.iter().any(|l| {
        l.default_actions()
            .iter()
            .any(|a| a.target_group_arn() == Some(&arn))
    });
    if used {
        return Err(Failure::new(
            "ResourceInUse",
            format!("Target group '{arn}' is currently in use by a listener or a rule"),
        ));
    }
    w.target_groups.remove(n);
    w.elb_tags.remove(&arn);
    Ok(op::delete_target_group::DeleteTargetGroupOutput::builder().build())
}

/// `DescribeTargetHealth`.
fn describe_target_health(
    w: &mut World,
    i: &op::describe_target_health::DescribeTargetHealthInput,
) -> Result<op::describe_target_health::DescribeTargetHealthOutput, Failure> {
    let n = tg_index(w, i.target_group_arn())?;
    let arn = w.target_groups[n]
        .tg
        .target_group_arn()
        .unwrap_or_default()
        .to_string();
    let targets = w
        .groups
        .iter()
        .filter(|g| g.target_group_arns().contains(&arn))
        .flat_map(|g| g.instances().iter())
        .map(|inst| {
            TargetHealthDescription::builder()
                .target(
                    TargetDescription::builder()
                        .set_id(inst.instance_id().map(str::to_string))
                        .port(80)
                        .build(),
                )
                .target_health(
                    TargetHealth::builder()
                        .state(TargetHealthStateEnum::Healthy)
                        .build(),
                )
                .build()
        })
        .collect();
    Ok(
        op::describe_target_health::DescribeTargetHealthOutput::builder()
            .set_target_health_descriptions(Some(targets))
            .build(),
    )
}
