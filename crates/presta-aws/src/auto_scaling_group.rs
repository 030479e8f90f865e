//! The Auto Scaling group (launch template's default version, private subnets, target group,
//! ELB health checks), its CPU target-tracking policy, and instance refreshes.
//!
//! Desired capacity is an initial value: it is set when the group is created and never
//! compared afterwards (scaling changes it). Observation: one `DescribeAutoScalingGroups` by
//! name and one `DescribePolicies` for the region.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_autoscaling::types::{
    LaunchTemplateSpecification, MetricType, PredefinedMetricSpecification, Tag as AsgTag,
    TargetTrackingConfiguration,
};

use crate::clients::Aws;
use crate::diff::{Delta, Diffs, FieldDiff, Kind, TAGS};
use crate::driver::{Driver, Scope};
use crate::error::{AwsError, AwsResultExt};
use crate::iam::allow;
use crate::network::Network;
use crate::registry::{Deletion, Iam, Observed, OrphanSearch, Owned, Targets, Teardown};
use crate::tags::Tags;
use fields::*;
use presta_spec::Stack;
use presta_spec::naming::{self, Component};
use serde_json::json;

/// The launch-template version an Auto Scaling group follows.
pub const DEFAULT_VERSION: &str = "$Default";

/// The fields this kind manages, as its diff reports them and its update reads them.
pub mod fields {
    use crate::diff::Field;

    /// The template and its version (`launchTemplate.id`, `launchTemplate.version`).
    pub const LAUNCH_TEMPLATE: Field = Field("launchTemplate");
    pub const LAUNCH_TEMPLATE_ID: Field = Field("launchTemplate.id");
    pub const LAUNCH_TEMPLATE_VERSION: Field = Field("launchTemplate.version");
    pub const SUBNETS: Field = Field("subnets");
    pub const MIN_SIZE: Field = Field("minSize");
    pub const MAX_SIZE: Field = Field("maxSize");
    pub const TARGET_GROUPS: Field = Field("targetGroups");
    pub const HEALTH_CHECK_TYPE: Field = Field("healthCheckType");
    pub const HEALTH_CHECK_GRACE_PERIOD_SECONDS: Field = Field("healthCheckGracePeriodSeconds");
    pub const TARGET_CPU_UTILIZATION: Field = Field("targetCpuUtilization");
}

#[derive(Debug, Clone)]
pub struct AutoScalingGroupDesired {
    pub name: String,
    pub launch_template_id: String,
    pub subnets: BTreeSet<String>,
    pub min_size: i32,
    pub max_size: i32,
    /// Used at creation only.
    pub initial_capacity: i32,
    pub target_groups: BTreeSet<String>,
    pub health_check_grace_seconds: i32,
    pub policy_name: String,
    pub target_cpu: f64,
    pub tags: Tags,
}

impl AutoScalingGroupDesired {
    /// The stack's group in the private subnets, from `spec.compute`.
    pub fn for_stack(
        stack: &Stack,
        net: &Network,
        launch_template: &str,
        target_group: &str,
    ) -> Self {
        let compute = &stack.spec.compute;
        AutoScalingGroupDesired {
            name: stack.resource_name(Component::AutoScalingGroup),
            launch_template_id: launch_template.to_string(),
            subnets: net.private_ids().into_iter().collect(),
            min_size: compute.min_size as i32,
            max_size: compute.max_size as i32,
            initial_capacity: compute.desired_capacity.unwrap_or(compute.min_size) as i32,
            target_groups: [target_group.to_string()].into(),
            health_check_grace_seconds: compute.health_check_grace_period_seconds as i32,
            policy_name: stack.resource_name(Component::ScalingPolicy),
            target_cpu: f64::from(compute.target_cpu_utilization),
            tags: stack
                .names()
                .tags(Component::AutoScalingGroup, &stack.metadata.labels),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AutoScalingGroupLive {
    pub name: String,
    pub arn: String,
    pub launch_template_id: String,
    pub launch_template_version: String,
    pub subnets: BTreeSet<String>,
    pub min_size: i32,
    pub max_size: i32,
    pub desired_capacity: i32,
    pub target_groups: BTreeSet<String>,
    pub health_check_type: String,
    pub health_check_grace_seconds: i32,
    /// Target of the group's CPU target-tracking policy, if it has one.
    pub target_cpu: Option<f64>,
    pub tags: Tags,
    /// Instances `InService` (for the health verdict; not a managed field).
    pub in_service: i32,
}

pub struct AutoScalingGroups;

pub use crate::instances::{RefreshInfo, TAG_REFRESH, failed_launches, in_service_instances};

impl Kind {
    pub const AUTO_SCALING_GROUP: Kind = Kind::new("auto_scaling_group");
}

impl Driver for AutoScalingGroups {
    const KIND: Kind = Kind::AUTO_SCALING_GROUP;
    const IAM: Iam = Iam {
        read: &[
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:DescribePolicies",
            "autoscaling:DescribeInstanceRefreshes",
            "autoscaling:DescribeScalingActivities",
        ],
        create: &["autoscaling:CreateAutoScalingGroup"],
        change: &[
            "autoscaling:UpdateAutoScalingGroup",
            "autoscaling:AttachLoadBalancerTargetGroups",
            "autoscaling:DetachLoadBalancerTargetGroups",
            "autoscaling:PutScalingPolicy",
            "autoscaling:StartInstanceRefresh",
            "autoscaling:CreateOrUpdateTags",
            "autoscaling:DeleteTags",
            "autoscaling:DeleteAutoScalingGroup",
        ],
        statements: || {
            vec![allow(
                "TagOnCreateOfTheStacksAutoScalingGroupsByTheirNames",
                &["autoscaling:CreateOrUpdateTags"],
                json!("arn:aws:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/*-app"),
                Some(crate::iam::request_tagged()),
            )]
        },
    };
    /// First: its instances use everything else; waited for until they are gone.
    const TEARDOWN: Teardown = Teardown::new(10, Deletion::Awaited);
    const ORPHANS: OrphanSearch = OrphanSearch::Secondary;

    fn scope(targets: &Targets, _: &Observed) -> Scope {
        Scope::named(targets.names(Component::AutoScalingGroup))
    }

    /// Tag-filtered, or by name.
    async fn list_owned(
        &self,
        aws: &Aws,
        names: Option<&[String]>,
    ) -> Result<Vec<Owned>, AwsError> {
        let q = aws.autoscaling.describe_auto_scaling_groups();
        let q = match names {
            None => q.filters(
                aws_sdk_autoscaling::types::Filter::builder()
                    .name(format!("tag:{}", naming::TAG_MANAGED_BY))
                    .values(naming::MANAGED_BY_VALUE)
                    .build(),
            ),
            Some(names) => q.set_auto_scaling_group_names(Some(names.to_vec())),
        };
        let groups = q
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .aws()?;
        Ok(groups
            .iter()
            .map(|g| {
                let name = g.auto_scaling_group_name().unwrap_or_default();
                Owned::from_tags(
                    name,
                    name,
                    g.tags().iter().filter_map(|t| Some((t.key()?, t.value()?))),
                )
            })
            .collect())
    }

    type Desired = AutoScalingGroupDesired;
    type Live = AutoScalingGroupLive;

    fn name(desired: &AutoScalingGroupDesired) -> String {
        desired.name.clone()
    }

    fn id(live: &AutoScalingGroupLive) -> String {
        live.arn.clone()
    }

    /// `DeleteAutoScalingGroup` with `ForceDelete`: its instances are terminated (they hold
    /// no data: the shop's files are on EFS, its data in RDS) and its policies go with it.
    async fn delete(&self, aws: &Aws, live: &AutoScalingGroupLive) -> Result<(), AwsError> {
        match aws
            .autoscaling
            .delete_auto_scaling_group()
            .auto_scaling_group_name(&live.name)
            .force_delete(true)
            .send()
            .await
            .aws()
        {
            Ok(_) => Ok(()),
            // Auto Scaling answers a missing group with a ValidationError.
            Err(e) if e.is_not_found() || e.message.contains("not found") => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn tags(live: &Self::Live) -> Option<&Tags> {
        Some(&live.tags)
    }

    async fn observe(
        &self,
        aws: &Aws,
        scope: &Scope,
    ) -> Result<BTreeMap<String, AutoScalingGroupLive>, AwsError> {
        read_groups(aws, &scope.names, true).await
    }

    fn diff(
        &self,
        desired: &AutoScalingGroupDesired,
        live: &AutoScalingGroupLive,
    ) -> Vec<FieldDiff> {
        let mut d = Diffs::new();
        d.field(
            LAUNCH_TEMPLATE_ID,
            &desired.launch_template_id,
            &live.launch_template_id,
        )
        .field(
            LAUNCH_TEMPLATE_VERSION,
            DEFAULT_VERSION,
            live.launch_template_version.as_str(),
        )
        .set(SUBNETS, &desired.subnets, &live.subnets)
        .field(MIN_SIZE, &desired.min_size, &live.min_size)
        .field(MAX_SIZE, &desired.max_size, &live.max_size)
        .set(TARGET_GROUPS, &desired.target_groups, &live.target_groups)
        .field(HEALTH_CHECK_TYPE, "ELB", live.health_check_type.as_str())
        .field(
            HEALTH_CHECK_GRACE_PERIOD_SECONDS,
            &desired.health_check_grace_seconds,
            &live.health_check_grace_seconds,
        )
        .field(
            TARGET_CPU_UTILIZATION,
            &Some(desired.target_cpu),
            &live.target_cpu,
        )
        .tags(&desired.tags, &live.tags);
        d.finish()
    }

    async fn create(
        &self,
        aws: &Aws,
        desired: &AutoScalingGroupDesired,
    ) -> Result<AutoScalingGroupLive, AwsError> {
        let res = aws
            .autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(&desired.name)
            .launch_template(template_spec(&desired.launch_template_id))
            .min_size(desired.min_size)
            .max_size(desired.max_size)
            .desired_capacity(desired.initial_capacity)
            .vpc_zone_identifier(
                desired
                    .subnets
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .set_target_group_arns(Some(desired.target_groups.iter().cloned().collect()))
            .health_check_type("ELB")
            .health_check_grace_period(desired.health_check_grace_seconds)
            .set_tags(Some(asg_tags(&desired.name, &desired.tags)))
            .send()
            .await
            .aws();
        match res {
            Ok(_) => {}
            Err(e) if e.has_code("AlreadyExists") => {}
            Err(e) => return Err(e),
        }
        put_policy(aws, desired).await?;
        // The group is read back for its ARN; its policy is the one just put.
        read_groups(aws, std::slice::from_ref(&desired.name), false)
            .await?
            .remove(&desired.name)
            .map(|mut live| {
                live.target_cpu = Some(desired.target_cpu);
                live
            })
            .ok_or_else(|| {
                AwsError::unexpected(
                    "DescribeAutoScalingGroups",
                    format!(
                        "{} is not visible after CreateAutoScalingGroup",
                        desired.name
                    ),
                )
            })
    }

    async fn update(
        &self,
        aws: &Aws,
        desired: &AutoScalingGroupDesired,
        live: &AutoScalingGroupLive,
        diffs: &[FieldDiff],
    ) -> Result<AutoScalingGroupLive, AwsError> {
        let delta = Delta(diffs);
        if delta.touches_any(&[
            LAUNCH_TEMPLATE,
            SUBNETS,
            MIN_SIZE,
            MAX_SIZE,
            HEALTH_CHECK_TYPE,
            HEALTH_CHECK_GRACE_PERIOD_SECONDS,
        ]) {
            aws.autoscaling
                .update_auto_scaling_group()
                .auto_scaling_group_name(&desired.name)
                .launch_template(template_spec(&desired.launch_template_id))
                .min_size(desired.min_size)
                .max_size(desired.max_size)
                .vpc_zone_identifier(
                    desired
                        .subnets
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(","),
                )
                .health_check_type("ELB")
                .health_check_grace_period(desired.health_check_grace_seconds)
                .send()
                .await
                .aws()?;
        }
        if delta.touches(TARGET_GROUPS) {
            let extra: Vec<String> = live
                .target_groups
                .difference(&desired.target_groups)
                .cloned()
                .collect();
            let missing: Vec<String> = desired
                .target_groups
                .difference(&live.target_groups)
                .cloned()
                .collect();
            if !missing.is_empty() {
                aws.autoscaling
                    .attach_load_balancer_target_groups()
                    .auto_scaling_group_name(&desired.name)
                    .set_target_group_arns(Some(missing))
                    .send()
                    .await
                    .aws()?;
            }
            if !extra.is_empty() {
                aws.autoscaling
                    .detach_load_balancer_target_groups()
                    .auto_scaling_group_name(&desired.name)
                    .set_target_group_arns(Some(extra))
                    .send()
                    .await
                    .aws()?;
            }
        }
        if delta.touches(TARGET_CPU_UTILIZATION) {
            put_policy(aws, desired).await?;
        }
        if delta.touches(TAGS) {
            aws.autoscaling
                .create_or_update_tags()
                .set_tags(Some(asg_tags(&desired.name, &desired.tags)))
                .send()
                .await
                .aws()?;
        }
        let scope = Scope {
            names: vec![desired.name.clone()],
            ..Scope::default()
        };
        Ok(self
            .observe(aws, &scope)
            .await?
            .remove(&desired.name)
            .unwrap_or_else(|| live.clone()))
    }
}

fn template_spec(id: &str) -> LaunchTemplateSpecification {
    LaunchTemplateSpecification::builder()
        .launch_template_id(id)
        .version(DEFAULT_VERSION)
        .build()
}

/// The groups named `names`, with their CPU policy's target when `policies` (one more call,
/// for every policy of the region).
async fn read_groups(
    aws: &Aws,
    names: &[String],
    policies: bool,
) -> Result<BTreeMap<String, AutoScalingGroupLive>, AwsError> {
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let groups = aws
        .autoscaling
        .describe_auto_scaling_groups()
        .set_auto_scaling_group_names(Some(names.to_vec()))
        // The largest page AWS gives (its default and moto's are 50).
        .max_records(100)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .aws()?;
    let policies = if policies {
        aws.autoscaling
            .describe_policies()
            .max_records(100)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .aws()?
    } else {
        Vec::new()
    };
    Ok(groups
        .iter()
        .map(|g| {
            let name = g.auto_scaling_group_name().unwrap_or_default().to_string();
            let cpu = policies
                .iter()
                .filter(|p| p.auto_scaling_group_name() == Some(name.as_str()))
                .filter_map(|p| p.target_tracking_configuration())
                .find(|t| {
                    t.predefined_metric_specification()
                        .and_then(|m| m.predefined_metric_type())
                        == Some(&MetricType::AsgAverageCpuUtilization)
                })
                .and_then(|t| t.target_value());
            let lt = g.launch_template();
            let live = AutoScalingGroupLive {
                arn: g.auto_scaling_group_arn().unwrap_or_default().to_string(),
                launch_template_id: lt
                    .and_then(|l| l.launch_template_id())
                    .unwrap_or_default()
                    .to_string(),
                launch_template_version: lt
                    .and_then(|l| l.version())
                    .unwrap_or_default()
                    .to_string(),
                subnets: g
                    .vpc_zone_identifier()
                    .unwrap_or_default()
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
                min_size: g.min_size().unwrap_or(0),
                max_size: g.max_size().unwrap_or(0),
                desired_capacity: g.desired_capacity().unwrap_or(0),
                target_groups: g.target_group_arns().iter().cloned().collect(),
                health_check_type: g.health_check_type().unwrap_or_default().to_string(),
                health_check_grace_seconds: g.health_check_grace_period().unwrap_or(0),
                target_cpu: cpu,
                in_service: g
                    .instances()
                    .iter()
                    .filter(|i| {
                        i.lifecycle_state()
                            == Some(&aws_sdk_autoscaling::types::LifecycleState::InService)
                    })
                    .count() as i32,
                tags: g
                    .tags()
                    .iter()
                    .filter_map(|t| {
                        Some((
                            t.key()?.to_string(),
                            t.value().unwrap_or_default().to_string(),
                        ))
                    })
                    .collect(),
                name,
            };
            (live.name.clone(), live)
        })
        .collect())
}

async fn put_policy(aws: &Aws, desired: &AutoScalingGroupDesired) -> Result<(), AwsError> {
    aws.autoscaling
        .put_scaling_policy()
        .auto_scaling_group_name(&desired.name)
        .policy_name(&desired.policy_name)
        .policy_type("TargetTrackingScaling")
        .target_tracking_configuration(
            TargetTrackingConfiguration::builder()
                .predefined_metric_specification(
                    PredefinedMetricSpecification::builder()
                        .predefined_metric_type(MetricType::AsgAverageCpuUtilization)
                        .build(),
                )
                .target_value(desired.target_cpu)
                .build(),
        )
        .send()
        .await
        .aws()?;
    Ok(())
}

/// Removes the takeover mark ([`crate::adopt::TAG_ADOPTED`]) from a group: its first plan
/// after `import terraform --adopt` is applied.
pub async fn clear_adopted(aws: &Aws, group: &str) -> Result<(), AwsError> {
    let tag = AsgTag::builder()
        .resource_id(group)
        .resource_type("auto-scaling-group")
        .key(crate::adopt::TAG_ADOPTED)
        .build();
    aws.autoscaling
        .delete_tags()
        .tags(tag)
        .send()
        .await
        .map(|_| ())
        .aws()
}

pub(crate) fn asg_tags(group: &str, tags: &Tags) -> Vec<AsgTag> {
    tags.iter()
        .map(|(k, v)| {
            AsgTag::builder()
                .resource_id(group)
                .resource_type("auto-scaling-group")
                .key(k)
                .value(v)
                .propagate_at_launch(false)
                .build()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> AutoScalingGroupDesired {
        AutoScalingGroupDesired {
            name: "shop-app".into(),
            launch_template_id: "lt-1".into(),
            subnets: ["subnet-a".to_string(), "subnet-b".to_string()].into(),
            min_size: 1,
            max_size: 3,
            initial_capacity: 2,
            target_groups: ["arn:tg".to_string()].into(),
            health_check_grace_seconds: 300,
            policy_name: "shop-cpu-target".into(),
            target_cpu: 60.0,
            tags: Tags::new(),
        }
    }

    fn live() -> AutoScalingGroupLive {
        let d = desired();
        AutoScalingGroupLive {
            name: d.name,
            arn: "arn:asg".into(),
            launch_template_id: d.launch_template_id,
            launch_template_version: DEFAULT_VERSION.into(),
            subnets: d.subnets,
            min_size: 1,
            max_size: 3,
            desired_capacity: 2,
            target_groups: d.target_groups,
            health_check_type: "ELB".into(),
            health_check_grace_seconds: 300,
            target_cpu: Some(60.0),
            tags: Tags::new(),
            in_service: 2,
        }
    }

    #[test]
    fn desired_capacity_is_never_drift_but_min_and_max_are() {
        let mut l = live();
        l.desired_capacity = 3;
        assert!(AutoScalingGroups.diff(&desired(), &l).is_empty());
        l.min_size = 0;
        l.max_size = 10;
        let fields: Vec<String> = AutoScalingGroups
            .diff(&desired(), &l)
            .into_iter()
            .map(|d| d.field)
            .collect();
        assert_eq!(fields, ["minSize", "maxSize"]);
    }

    #[test]
    fn a_pinned_template_version_is_drift() {
        let mut l = live();
        l.launch_template_version = "3".into();
        let diffs = AutoScalingGroups.diff(&desired(), &l);
        assert_eq!(diffs[0].field, "launchTemplate.version");
    }
}
