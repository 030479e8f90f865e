//! Elastic Load Balancing v2: load balancers (with their attributes and a `provisioning` time),
//! target groups, listeners, tags, and the health of the targets the Auto Scaling groups
//! register.

use aws_sdk_elasticloadbalancingv2::operation as op;
use aws_sdk_elasticloadbalancingv2::types::{
    AvailabilityZone, Listener, LoadBalancer, LoadBalancerAttribute, LoadBalancerSchemeEnum,
    LoadBalancerState, LoadBalancerStateEnum, Matcher, Tag, TagDescription, TargetDescription,
    TargetGroup, TargetGroupAttribute, TargetHealth, TargetHealthDescription,
    TargetHealthStateEnum,
};
use tokio::time::Instant;

use crate::wire::{Failure, Wire};
use crate::world::World;
use crate::{Handler, handle};

mod listeners;
mod load_balancers;
mod target_groups;

const W: Wire = Wire::Query;

fn lb_index(w: &World, arn: Option<&str>) -> Result<usize, Failure> {
    w.load_balancers
        .iter()
        .position(|l| arn.is_some() && l.lb.load_balancer_arn() == arn)
        .ok_or_else(|| {
            Failure::new(
                "LoadBalancerNotFound",
                format!("Load balancer '{}' not found", arn.unwrap_or_default()),
            )
        })
}

fn tg_index(w: &World, arn: Option<&str>) -> Result<usize, Failure> {
    w.target_groups
        .iter()
        .position(|t| arn.is_some() && t.tg.target_group_arn() == arn)
        .ok_or_else(|| {
            Failure::new(
                "TargetGroupNotFound",
                format!("Target groups '{}' not found", arn.unwrap_or_default()),
            )
        })
}

fn merge(into: &mut Vec<(String, String)>, tags: impl IntoIterator<Item = (String, String)>) {
    for (k, v) in tags {
        into.retain(|(have, _)| *have != k);
        into.push((k, v));
    }
}

fn pairs(tags: &[Tag]) -> Vec<(String, String)> {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn tag(w: &mut World, arn: &str, tags: &[Tag]) {
    let entry = w.elb_tags.entry(arn.to_string()).or_default();
    let mut have = pairs(entry);
    merge(&mut have, pairs(tags));
    *entry = have
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
}

pub(crate) fn register(h: &mut Vec<Handler>) {
    load_balancers::register(h);
    target_groups::register(h);
    listeners::register(h);
    handle!(h, W, "AddTags", op::add_tags::AddTagsInput, add_tags);
    handle!(
        h,
        W,
        "DescribeTags",
        op::describe_tags::DescribeTagsInput,
        describe_tags
    );
}

/// `AddTags`.
fn add_tags(
    w: &mut World,
    i: &op::add_tags::AddTagsInput,
) -> Result<op::add_tags::AddTagsOutput, Failure> {
    for arn in i.resource_arns() {
        let known = w
            .load_balancers
            .iter()
            .any(|l| l.lb.load_balancer_arn() == Some(arn))
            || w.target_groups
                .iter()
                .any(|t| t.tg.target_group_arn() == Some(arn));
        if !known {
            return Err(Failure::new(
                "LoadBalancerNotFound",
                format!("'{arn}' not found"),
            ));
        }
        tag(w, arn, i.tags());
    }
    Ok(op::add_tags::AddTagsOutput::builder().build())
}

/// `DescribeTags`.
fn describe_tags(
    w: &mut World,
    i: &op::describe_tags::DescribeTagsInput,
) -> Result<op::describe_tags::DescribeTagsOutput, Failure> {
    let found = i
        .resource_arns()
        .iter()
        .map(|arn| {
            TagDescription::builder()
                .resource_arn(arn)
                .set_tags(Some(w.elb_tags.get(arn).cloned().unwrap_or_default()))
                .build()
        })
        .collect();
    Ok(op::describe_tags::DescribeTagsOutput::builder()
        .set_tag_descriptions(Some(found))
        .build())
}
