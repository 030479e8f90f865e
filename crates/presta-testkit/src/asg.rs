//! Auto Scaling: groups (whose instances come into service at once, healthy behind their
//! target groups), scaling policies, tags, scaling activities and instance refreshes.

use aws_sdk_autoscaling::operation as op;
use aws_sdk_autoscaling::types::{
    Activity, AutoScalingGroup, Instance, InstanceRefresh, InstanceRefreshStatus, LifecycleState,
    ScalingActivityStatusCode, ScalingPolicy, TagDescription,
};
use aws_smithy_types::DateTime;

use crate::wire::{Failure, Wire};
use crate::world::{self, World};
use crate::{Handler, handle};

const W: Wire = Wire::Query;

fn index(w: &World, name: Option<&str>) -> Result<usize, Failure> {
    w.groups
        .iter()
        .position(|g| name.is_some() && g.auto_scaling_group_name() == name)
        .ok_or_else(|| {
            Failure::new(
                "ValidationError",
                format!(
                    "AutoScalingGroup name not found - no such group: {}",
                    name.unwrap_or_default()
                ),
            )
        })
}

/// `n` instances in service, launched from the group's template.
fn instances(w: &mut World, group: &AutoScalingGroup, n: i32) -> Vec<Instance> {
    (0..n.max(0))
        .map(|_| {
            let id = w.id("i");
            Instance::builder()
                .instance_id(id)
                .availability_zone(format!("{}a", w.region))
                .lifecycle_state(LifecycleState::InService)
                .health_status("Healthy")
                .protected_from_scale_in(false)
                .set_launch_template(group.launch_template().cloned())
                .build()
        })
        .collect()
}

fn now() -> DateTime {
    DateTime::from(std::time::SystemTime::now())
}

/// The group's instances brought to its desired capacity.
fn rescale(w: &mut World, n: usize) {
    let group = w.groups[n].clone();
    let want = group.desired_capacity().unwrap_or(0).max(0) as usize;
    let mut have = group.instances().to_vec();
    have.truncate(want);
    let missing = (want - have.len()) as i32;
    have.extend(instances(w, &group, missing));
    w.groups[n].instances = Some(have);
}

fn tag_of(t: &aws_sdk_autoscaling::types::Tag) -> TagDescription {
    TagDescription::builder()
        .set_resource_id(t.resource_id().map(str::to_string))
        .resource_type("auto-scaling-group")
        .set_key(t.key().map(str::to_string))
        .set_value(t.value().map(str::to_string))
        .set_propagate_at_launch(t.propagate_at_launch())
        .build()
}

pub(crate) fn register(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "DescribeAutoScalingGroups",
        op::describe_auto_scaling_groups::DescribeAutoScalingGroupsInput,
        describe_auto_scaling_groups
    );
    handle!(
        h,
        W,
        "CreateAutoScalingGroup",
        op::create_auto_scaling_group::CreateAutoScalingGroupInput,
        create_auto_scaling_group
    );
    handle!(
        h,
        W,
        "UpdateAutoScalingGroup",
        op::update_auto_scaling_group::UpdateAutoScalingGroupInput,
        update_auto_scaling_group
    );
    handle!(
        h,
        W,
        "DeleteAutoScalingGroup",
        op::delete_auto_scaling_group::DeleteAutoScalingGroupInput,
        delete_auto_scaling_group
    );
    handle!(
        h,
        W,
        "AttachLoadBalancerTargetGroups",
        op::attach_load_balancer_target_groups::AttachLoadBalancerTargetGroupsInput,
        |w: &mut World,
         i: &op::attach_load_balancer_target_groups::AttachLoadBalancerTargetGroupsInput| {
            let n = index(w, i.auto_scaling_group_name())?;
            let tgs = w.groups[n].target_group_arns.get_or_insert_with(Vec::new);
            for a in i.target_group_arns() {
                if !tgs.contains(a) {
                    tgs.push(a.clone());
                }
            }
            Ok(op::attach_load_balancer_target_groups::AttachLoadBalancerTargetGroupsOutput::builder().build())
        }
    );
    handle!(
        h,
        W,
        "DetachLoadBalancerTargetGroups",
        op::detach_load_balancer_target_groups::DetachLoadBalancerTargetGroupsInput,
        |w: &mut World,
         i: &op::detach_load_balancer_target_groups::DetachLoadBalancerTargetGroupsInput| {
            let n = index(w, i.auto_scaling_group_name())?;
            if let Some(tgs) = &mut w.groups[n].target_group_arns {
                tgs.retain(|a| !i.target_group_arns().contains(a));
            }
            Ok(op::detach_load_balancer_target_groups::DetachLoadBalancerTargetGroupsOutput::builder().build())
        }
    );
    handle!(
        h,
        W,
        "CreateOrUpdateTags",
        op::create_or_update_tags::CreateOrUpdateTagsInput,
        create_or_update_tags
    );
    handle!(
        h,
        W,
        "DeleteTags",
        op::delete_tags::DeleteTagsInput,
        delete_tags
    );
    policies_and_activities(h);
}

fn policies_and_activities(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "DescribePolicies",
        op::describe_policies::DescribePoliciesInput,
        describe_policies
    );
    handle!(
        h,
        W,
        "PutScalingPolicy",
        op::put_scaling_policy::PutScalingPolicyInput,
        put_scaling_policy
    );
    handle!(
        h,
        W,
        "DescribeScalingActivities",
        op::describe_scaling_activities::DescribeScalingActivitiesInput,
        describe_scaling_activities
    );
    handle!(
        h,
        W,
        "StartInstanceRefresh",
        op::start_instance_refresh::StartInstanceRefreshInput,
        start_instance_refresh
    );
    handle!(
        h,
        W,
        "DescribeInstanceRefreshes",
        op::describe_instance_refreshes::DescribeInstanceRefreshesInput,
        describe_instance_refreshes
    );
}

/// `DescribeAutoScalingGroups`.
fn describe_auto_scaling_groups(
    w: &mut World,
    i: &op::describe_auto_scaling_groups::DescribeAutoScalingGroupsInput,
) -> Result<op::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput, Failure> {
    let filters: Vec<(&str, &[String])> = i
        .filters()
        .iter()
        .map(|f| (f.name().unwrap_or_default(), f.values()))
        .collect();
    let found = w
        .groups
        .iter()
        .filter(|g| {
            (i.auto_scaling_group_names().is_empty()
                || i.auto_scaling_group_names()
                    .iter()
                    .any(|n| g.auto_scaling_group_name() == Some(n)))
                && world::passes(filters.iter().copied(), |n| {
                    let tags = g.tags();
                    match n.strip_prefix("tag:") {
                        Some(key) => tags
                            .iter()
                            .filter(|t| t.key() == Some(key))
                            .filter_map(|t| t.value().map(str::to_string))
                            .collect(),
                        None if n == "tag-key" => tags
                            .iter()
                            .filter_map(|t| t.key().map(str::to_string))
                            .collect(),
                        None => Vec::new(),
                    }
                })
        })
        .cloned()
        .collect();
    Ok(
        op::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput::builder()
            .set_auto_scaling_groups(Some(found))
            .build(),
    )
}

/// `CreateAutoScalingGroup`.
fn create_auto_scaling_group(
    w: &mut World,
    i: &op::create_auto_scaling_group::CreateAutoScalingGroupInput,
) -> Result<op::create_auto_scaling_group::CreateAutoScalingGroupOutput, Failure> {
    let name = i.auto_scaling_group_name().unwrap_or_default().to_string();
    if w.groups
        .iter()
        .any(|g| g.auto_scaling_group_name() == Some(&name))
    {
        return Err(Failure::new(
            "AlreadyExists",
            format!(
                "AutoScalingGroup by this name already exists - A group with the name {name} already exists"
            ),
        ));
    }
    if let Some(lt) = i.launch_template().and_then(|l| l.launch_template_id())
        && !w
            .launch_templates
            .iter()
            .any(|t| t.template.launch_template_id() == Some(lt))
    {
        return Err(Failure::new(
            "ValidationError",
            format!("The launch template {lt} does not exist"),
        ));
    }
    let id = w.id("asg");
    let arn = w.arn(
        "autoscaling",
        &format!("autoScalingGroup:{}:autoScalingGroupName/{name}", &id[4..]),
    );
    let tags = i.tags().iter().map(tag_of).collect();
    let group = AutoScalingGroup::builder()
        .auto_scaling_group_name(&name)
        .auto_scaling_group_arn(arn)
        .set_launch_template(i.launch_template().cloned())
        .set_min_size(i.min_size())
        .set_max_size(i.max_size())
        .set_desired_capacity(i.desired_capacity().or(i.min_size()))
        .default_cooldown(300)
        .availability_zones(format!("{}a", w.region))
        .set_vpc_zone_identifier(i.vpc_zone_identifier().map(str::to_string))
        .set_target_group_arns(Some(i.target_group_arns().to_vec()))
        .set_health_check_type(i.health_check_type().map(str::to_string))
        .set_health_check_grace_period(i.health_check_grace_period())
        .set_tags(Some(tags))
        .created_time(now())
        .build();
    w.groups.push(group);
    let n = w.groups.len() - 1;
    rescale(w, n);
    Ok(op::create_auto_scaling_group::CreateAutoScalingGroupOutput::builder().build())
}

/// `UpdateAutoScalingGroup`.
fn update_auto_scaling_group(
    w: &mut World,
    i: &op::update_auto_scaling_group::UpdateAutoScalingGroupInput,
) -> Result<op::update_auto_scaling_group::UpdateAutoScalingGroupOutput, Failure> {
    let n = index(w, i.auto_scaling_group_name())?;
    let g = &mut w.groups[n];
    if let Some(lt) = i.launch_template() {
        g.launch_template = Some(lt.clone());
    }
    if let Some(v) = i.min_size() {
        g.min_size = Some(v);
    }
    if let Some(v) = i.max_size() {
        g.max_size = Some(v);
    }
    if let Some(v) = i.desired_capacity() {
        g.desired_capacity = Some(v);
    }
    let (min, max) = (g.min_size.unwrap_or(0), g.max_size.unwrap_or(0));
    g.desired_capacity = Some(g.desired_capacity.unwrap_or(min).clamp(min, max.max(min)));
    if let Some(v) = i.vpc_zone_identifier() {
        g.vpc_zone_identifier = Some(v.to_string());
    }
    if let Some(v) = i.health_check_type() {
        g.health_check_type = Some(v.to_string());
    }
    if let Some(v) = i.health_check_grace_period() {
        g.health_check_grace_period = Some(v);
    }
    rescale(w, n);
    Ok(op::update_auto_scaling_group::UpdateAutoScalingGroupOutput::builder().build())
}

/// `DeleteAutoScalingGroup`.
fn delete_auto_scaling_group(
    w: &mut World,
    i: &op::delete_auto_scaling_group::DeleteAutoScalingGroupInput,
) -> Result<op::delete_auto_scaling_group::DeleteAutoScalingGroupOutput, Failure> {
    let n = index(w, i.auto_scaling_group_name())?;
    if !w.groups[n].instances().is_empty() && i.force_delete() != Some(true) {
        return Err(Failure::new(
            "ResourceInUse",
            "You cannot delete an AutoScalingGroup while there are instances still in the group.",
        ));
    }
    let name = w.groups.remove(n).auto_scaling_group_name;
    w.policies.retain(|p| p.auto_scaling_group_name != name);
    Ok(op::delete_auto_scaling_group::DeleteAutoScalingGroupOutput::builder().build())
}

/// `CreateOrUpdateTags`.
fn create_or_update_tags(
    w: &mut World,
    i: &op::create_or_update_tags::CreateOrUpdateTagsInput,
) -> Result<op::create_or_update_tags::CreateOrUpdateTagsOutput, Failure> {
    for t in i.tags() {
        let n = index(w, t.resource_id())?;
        let tags = w.groups[n].tags.get_or_insert_with(Vec::new);
        tags.retain(|have| have.key() != t.key());
        tags.push(tag_of(t));
    }
    Ok(op::create_or_update_tags::CreateOrUpdateTagsOutput::builder().build())
}

/// `DeleteTags`.
fn delete_tags(
    w: &mut World,
    i: &op::delete_tags::DeleteTagsInput,
) -> Result<op::delete_tags::DeleteTagsOutput, Failure> {
    for t in i.tags() {
        let n = index(w, t.resource_id())?;
        if let Some(tags) = &mut w.groups[n].tags {
            tags.retain(|have| have.key() != t.key());
        }
    }
    Ok(op::delete_tags::DeleteTagsOutput::builder().build())
}

/// `DescribePolicies`.
fn describe_policies(
    w: &mut World,
    i: &op::describe_policies::DescribePoliciesInput,
) -> Result<op::describe_policies::DescribePoliciesOutput, Failure> {
    let found = w
        .policies
        .iter()
        .filter(|p| {
            i.auto_scaling_group_name()
                .is_none_or(|n| p.auto_scaling_group_name() == Some(n))
        })
        .cloned()
        .collect();
    Ok(op::describe_policies::DescribePoliciesOutput::builder()
        .set_scaling_policies(Some(found))
        .build())
}

/// `PutScalingPolicy`.
fn put_scaling_policy(
    w: &mut World,
    i: &op::put_scaling_policy::PutScalingPolicyInput,
) -> Result<op::put_scaling_policy::PutScalingPolicyOutput, Failure> {
    index(w, i.auto_scaling_group_name())?;
    let name = i.policy_name().unwrap_or_default().to_string();
    let arn = w.arn(
        "autoscaling",
        &format!(
            "scalingPolicy:fake:autoScalingGroupName/{}:policyName/{name}",
            i.auto_scaling_group_name().unwrap_or_default()
        ),
    );
    w.policies.retain(|p| {
        !(p.policy_name() == Some(&name)
            && p.auto_scaling_group_name() == i.auto_scaling_group_name())
    });
    w.policies.push(
        ScalingPolicy::builder()
            .set_auto_scaling_group_name(i.auto_scaling_group_name().map(str::to_string))
            .policy_name(name)
            .policy_arn(&arn)
            .set_policy_type(i.policy_type().map(str::to_string))
            .set_target_tracking_configuration(i.target_tracking_configuration().cloned())
            .build(),
    );
    Ok(op::put_scaling_policy::PutScalingPolicyOutput::builder()
        .policy_arn(arn)
        .build())
}

/// `DescribeScalingActivities`.
fn describe_scaling_activities(
    w: &mut World,
    i: &op::describe_scaling_activities::DescribeScalingActivitiesInput,
) -> Result<op::describe_scaling_activities::DescribeScalingActivitiesOutput, Failure> {
    let n = index(w, i.auto_scaling_group_name())?;
    let group = w.groups[n]
        .auto_scaling_group_name()
        .unwrap_or_default()
        .to_string();
    let activities = w.groups[n]
        .instances()
        .iter()
        .map(|inst| {
            Activity::builder()
                .activity_id(format!("act-{}", inst.instance_id().unwrap_or_default()))
                .auto_scaling_group_name(&group)
                .cause("a user request created an AutoScalingGroup")
                .description(format!(
                    "Launching a new EC2 instance: {}",
                    inst.instance_id().unwrap_or_default()
                ))
                .start_time(now())
                .status_code(ScalingActivityStatusCode::Successful)
                .build()
        })
        .collect();
    Ok(
        op::describe_scaling_activities::DescribeScalingActivitiesOutput::builder()
            .set_activities(Some(activities))
            .build(),
    )
}

/// `StartInstanceRefresh`.
fn start_instance_refresh(
    w: &mut World,
    i: &op::start_instance_refresh::StartInstanceRefreshInput,
) -> Result<op::start_instance_refresh::StartInstanceRefreshOutput, Failure> {
    let n = index(w, i.auto_scaling_group_name())?;
    let group = w.groups[n].clone();
    if w.refreshes.iter().any(|r| {
        r.auto_scaling_group_name() == group.auto_scaling_group_name()
            && r.status() == Some(&InstanceRefreshStatus::InProgress)
    }) {
        return Err(Failure::new(
            "InstanceRefreshInProgress",
            "An Instance Refresh is already in progress and blocks the execution of this Instance Refresh.",
        ));
    }
    // The new instances replace the old ones at once.
    let count = group.instances().len() as i32;
    let fresh = instances(w, &group, count);
    w.groups[n].instances = Some(fresh);
    let id = w.id("refresh");
    w.refreshes.push(
        InstanceRefresh::builder()
            .instance_refresh_id(&id)
            .set_auto_scaling_group_name(group.auto_scaling_group_name().map(str::to_string))
            .status(InstanceRefreshStatus::Successful)
            .percentage_complete(100)
            .start_time(now())
            .end_time(now())
            .build(),
    );
    Ok(
        op::start_instance_refresh::StartInstanceRefreshOutput::builder()
            .instance_refresh_id(id)
            .build(),
    )
}

/// `DescribeInstanceRefreshes`.
fn describe_instance_refreshes(
    w: &mut World,
    i: &op::describe_instance_refreshes::DescribeInstanceRefreshesInput,
) -> Result<op::describe_instance_refreshes::DescribeInstanceRefreshesOutput, Failure> {
    let found = w
        .refreshes
        .iter()
        .rev()
        .filter(|r| r.auto_scaling_group_name() == i.auto_scaling_group_name())
        .cloned()
        .collect();
    Ok(
        op::describe_instance_refreshes::DescribeInstanceRefreshesOutput::builder()
            .set_instance_refreshes(Some(found))
            .build(),
    )
}
