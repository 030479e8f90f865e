//! The target group: where the load balancer sends traffic, how it checks the instances, and
//! its attributes (deregistration delay, stickiness).
//!
//! Observation: one paginated `DescribeTargetGroups` for the region, matched by name; then, for
//! the stacks' groups only, `DescribeTags` (20 ARNs a call) and one
//! `DescribeTargetGroupAttributes` per group (ELBv2 has no batch form), run concurrently.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{
    Matcher, ProtocolEnum, TargetGroupAttribute, TargetTypeEnum,
};

use crate::clients::Aws;
use crate::diff::{Delta, Diffs, FieldDiff, Kind};
use crate::driver::{Driver, Scope, absent_is_success};
use crate::error::{AwsError, AwsResultExt};
use crate::registry::{Deletion, Iam, Observed, Targets, Teardown};
use crate::tags::{self, Tags};
use fields::*;
use presta_spec::Stack;
use presta_spec::naming::Component;

/// The fields this kind manages, as its diff reports them and its update reads them.
pub mod fields {
    use crate::diff::Field;

    /// The health check's settings (`healthCheck.path`, ...).
    pub const HEALTH_CHECK: Field = Field("healthCheck");
    /// `stickiness.enabled`, `stickiness.durationSeconds`.
    pub const STICKINESS: Field = Field("stickiness");
    pub const VPC: Field = Field("vpc");
    pub const PORT: Field = Field("port");
    pub const HEALTH_CHECK_PATH: Field = Field("healthCheck.path");
    pub const HEALTH_CHECK_MATCHER: Field = Field("healthCheck.matcher");
    pub const HEALTH_CHECK_INTERVAL_SECONDS: Field = Field("healthCheck.intervalSeconds");
    pub const HEALTH_CHECK_TIMEOUT_SECONDS: Field = Field("healthCheck.timeoutSeconds");
    pub const HEALTH_CHECK_HEALTHY_THRESHOLD: Field = Field("healthCheck.healthyThreshold");
    pub const HEALTH_CHECK_UNHEALTHY_THRESHOLD: Field = Field("healthCheck.unhealthyThreshold");
    pub const DEREGISTRATION_DELAY_SECONDS: Field = Field("deregistrationDelaySeconds");
    pub const STICKINESS_ENABLED: Field = Field("stickiness.enabled");
    pub const STICKINESS_DURATION_SECONDS: Field = Field("stickiness.durationSeconds");
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    pub matcher: String,
    pub interval_seconds: i32,
    pub timeout_seconds: i32,
    pub healthy_threshold: i32,
    pub unhealthy_threshold: i32,
}

#[derive(Debug, Clone)]
pub struct TargetGroupDesired {
    pub name: String,
    pub vpc_id: String,
    pub port: i32,
    pub health: HealthCheck,
    pub deregistration_delay_seconds: u32,
    /// Cookie duration when stickiness is on.
    pub stickiness_seconds: Option<u32>,
    pub tags: Tags,
}

impl TargetGroupDesired {
    /// The stack's target group: port 80, the spec's health check, stickiness, delay.
    pub fn for_stack(stack: &Stack, vpc: &str) -> Self {
        let lb = &stack.spec.load_balancer;
        let hc = &lb.health_check;
        TargetGroupDesired {
            name: stack.resource_name(Component::TargetGroup),
            vpc_id: vpc.to_string(),
            port: 80,
            health: HealthCheck {
                path: hc.path.clone(),
                matcher: hc.matcher.clone(),
                interval_seconds: hc.interval_seconds as i32,
                timeout_seconds: hc.timeout_seconds as i32,
                healthy_threshold: hc.healthy_threshold as i32,
                unhealthy_threshold: hc.unhealthy_threshold as i32,
            },
            deregistration_delay_seconds: lb.deregistration_delay_seconds,
            stickiness_seconds: lb
                .stickiness
                .enabled
                .then_some(lb.stickiness.duration_seconds),
            tags: stack
                .names()
                .tags(Component::TargetGroup, &stack.metadata.labels),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetGroupLive {
    pub arn: String,
    pub name: String,
    pub vpc_id: String,
    pub port: i32,
    pub health: HealthCheck,
    pub deregistration_delay_seconds: u32,
    pub stickiness_seconds: Option<u32>,
    pub tags: Tags,
}

const DEREGISTRATION: &str = "deregistration_delay.timeout_seconds";
const STICKY: &str = "stickiness.enabled";
const STICKY_TYPE: &str = "stickiness.type";
const STICKY_SECONDS: &str = "stickiness.lb_cookie.duration_seconds";

/// Every target group of the region (AWS's largest page: 400 a call). `DescribeTargetGroups`
/// by name fails as a whole when one name is missing, so the region is listed.
pub async fn list_all(
    aws: &Aws,
) -> Result<Vec<aws_sdk_elasticloadbalancingv2::types::TargetGroup>, AwsError> {
    aws.elbv2
        .describe_target_groups()
        .page_size(400)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .aws()
}

/// `(name, arn)` of each target group.
pub fn names_and_arns(
    groups: &[aws_sdk_elasticloadbalancingv2::types::TargetGroup],
) -> Vec<(String, String)> {
    groups
        .iter()
        .filter_map(|tg| {
            Some((
                tg.target_group_name()?.to_string(),
                tg.target_group_arn()?.to_string(),
            ))
        })
        .collect()
}

pub struct TargetGroups;

impl Kind {
    pub const TARGET_GROUP: Kind = Kind::new("target_group");
}

impl Driver for TargetGroups {
    const KIND: Kind = Kind::TARGET_GROUP;
    const IAM: Iam = Iam {
        read: &[
            "elasticloadbalancing:DescribeTargetGroups",
            "elasticloadbalancing:DescribeTargetGroupAttributes",
            "elasticloadbalancing:DescribeTags",
            "elasticloadbalancing:DescribeTargetHealth",
        ],
        create: &["elasticloadbalancing:CreateTargetGroup"],
        change: &[
            "elasticloadbalancing:ModifyTargetGroup",
            "elasticloadbalancing:ModifyTargetGroupAttributes",
            "elasticloadbalancing:AddTags",
            "elasticloadbalancing:DeleteTargetGroup",
        ],
        statements: || {
            vec![crate::iam::tag_while_creating(
                "TagTargetGroupsOnlyWhileCreatingThem",
                "elasticloadbalancing",
                "elasticloadbalancing:AddTags",
                &["CreateTargetGroup"],
            )]
        },
    };
    /// After the load balancer, whose deletion AWS finishes a little later.
    const TEARDOWN: Teardown = Teardown::new(22, Deletion::Retried);

    fn scope(targets: &Targets, _: &Observed) -> Scope {
        Scope::named(targets.names(Component::TargetGroup))
    }

    type Desired = TargetGroupDesired;
    type Live = TargetGroupLive;

    fn name(desired: &TargetGroupDesired) -> String {
        desired.name.clone()
    }

    fn id(live: &TargetGroupLive) -> String {
        live.arn.clone()
    }

    async fn delete(&self, aws: &Aws, live: &TargetGroupLive) -> Result<(), AwsError> {
        absent_is_success(
            aws.elbv2
                .delete_target_group()
                .target_group_arn(&live.arn)
                .send()
                .await
                .map(|_| ())
                .aws(),
        )
    }

    fn tags(live: &Self::Live) -> Option<&Tags> {
        Some(&live.tags)
    }

    async fn observe(
        &self,
        aws: &Aws,
        scope: &Scope,
    ) -> Result<BTreeMap<String, TargetGroupLive>, AwsError> {
        if scope.names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let all = list_all(aws).await?;
        aws.listings.put_target_groups(names_and_arns(&all));
        let ours: Vec<_> = all
            .iter()
            .filter(|tg| {
                tg.target_group_name()
                    .is_some_and(|n| scope.names.iter().any(|w| w == n))
            })
            .collect();
        let arns: Vec<String> = ours
            .iter()
            .filter_map(|tg| tg.target_group_arn().map(String::from))
            .collect();
        let tag_map = elb_tags(aws, &arns).await?;
        let attrs = crate::calls::bounded(arns.iter().map(|arn| async move {
            let out = aws
                .elbv2
                .describe_target_group_attributes()
                .target_group_arn(arn)
                .send()
                .await
                .aws()?;
            let map: BTreeMap<String, String> = out
                .attributes()
                .iter()
                .filter_map(|a| {
                    Some((
                        a.key()?.to_string(),
                        a.value().unwrap_or_default().to_string(),
                    ))
                })
                .collect();
            Ok::<_, AwsError>((arn.clone(), map))
        }))
        .await?;
        let attrs: BTreeMap<String, BTreeMap<String, String>> = attrs.into_iter().collect();
        Ok(ours
            .iter()
            .map(|tg| {
                let arn = tg.target_group_arn().unwrap_or_default().to_string();
                let a = attrs.get(&arn).cloned().unwrap_or_default();
                let num = |k: &str| a.get(k).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
                let live = TargetGroupLive {
                    name: tg.target_group_name().unwrap_or_default().to_string(),
                    vpc_id: tg.vpc_id().unwrap_or_default().to_string(),
                    port: tg.port().unwrap_or(0),
                    health: HealthCheck {
                        path: tg.health_check_path().unwrap_or_default().to_string(),
                        matcher: tg
                            .matcher()
                            .and_then(|m| m.http_code())
                            .unwrap_or_default()
                            .to_string(),
                        interval_seconds: tg.health_check_interval_seconds().unwrap_or(0),
                        timeout_seconds: tg.health_check_timeout_seconds().unwrap_or(0),
                        healthy_threshold: tg.healthy_threshold_count().unwrap_or(0),
                        unhealthy_threshold: tg.unhealthy_threshold_count().unwrap_or(0),
                    },
                    deregistration_delay_seconds: num(DEREGISTRATION),
                    stickiness_seconds: (a.get(STICKY).map(String::as_str) == Some("true"))
                        .then(|| num(STICKY_SECONDS)),
                    tags: tag_map.get(&arn).cloned().unwrap_or_default(),
                    arn,
                };
                (live.name.clone(), live)
            })
            .collect())
    }

    fn diff(&self, desired: &TargetGroupDesired, live: &TargetGroupLive) -> Vec<FieldDiff> {
        let (h, l) = (&desired.health, &live.health);
        let mut d = Diffs::new();
        d.blocked(VPC, &desired.vpc_id, &live.vpc_id, "a target group cannot move to another VPC: moving a stack between VPCs is not supported")
            .blocked(PORT, &desired.port, &live.port, "the port of a target group is fixed at creation")
            .field(HEALTH_CHECK_PATH, &h.path, &l.path)
            .field(HEALTH_CHECK_MATCHER, &h.matcher, &l.matcher)
            .field(HEALTH_CHECK_INTERVAL_SECONDS, &h.interval_seconds, &l.interval_seconds)
            .field(HEALTH_CHECK_TIMEOUT_SECONDS, &h.timeout_seconds, &l.timeout_seconds)
            .field(HEALTH_CHECK_HEALTHY_THRESHOLD, &h.healthy_threshold, &l.healthy_threshold)
            .field(HEALTH_CHECK_UNHEALTHY_THRESHOLD, &h.unhealthy_threshold, &l.unhealthy_threshold)
            .field(DEREGISTRATION_DELAY_SECONDS, &desired.deregistration_delay_seconds, &live.deregistration_delay_seconds)
            .field(STICKINESS_ENABLED, &desired.stickiness_seconds.is_some(), &live.stickiness_seconds.is_some());
        if let (Some(want), Some(have)) = (desired.stickiness_seconds, live.stickiness_seconds) {
            d.field(STICKINESS_DURATION_SECONDS, &want, &have);
        }
        d.tags(&desired.tags, &live.tags);
        d.finish()
    }

    /// `CreateTargetGroup` is idempotent for a name with the same settings; tags go with it.
    async fn create(
        &self,
        aws: &Aws,
        desired: &TargetGroupDesired,
    ) -> Result<TargetGroupLive, AwsError> {
        let h = &desired.health;
        let out = aws
            .elbv2
            .create_target_group()
            .name(&desired.name)
            .protocol(ProtocolEnum::Http)
            .port(desired.port)
            .vpc_id(&desired.vpc_id)
            .target_type(TargetTypeEnum::Instance)
            .health_check_enabled(true)
            .health_check_protocol(ProtocolEnum::Http)
            .health_check_path(&h.path)
            .health_check_interval_seconds(h.interval_seconds)
            .health_check_timeout_seconds(h.timeout_seconds)
            .healthy_threshold_count(h.healthy_threshold)
            .unhealthy_threshold_count(h.unhealthy_threshold)
            .matcher(Matcher::builder().http_code(&h.matcher).build())
            .set_tags(Some(tags::elbv2(&desired.tags)))
            .send()
            .await
            .aws()?;
        let arn = out
            .target_groups()
            .first()
            .and_then(|t| t.target_group_arn())
            .unwrap_or_default()
            .to_string();
        set_attributes(aws, &arn, desired).await?;
        Ok(TargetGroupLive {
            arn,
            name: desired.name.clone(),
            vpc_id: desired.vpc_id.clone(),
            port: desired.port,
            health: desired.health.clone(),
            deregistration_delay_seconds: desired.deregistration_delay_seconds,
            stickiness_seconds: desired.stickiness_seconds,
            tags: desired.tags.clone(),
        })
    }

    async fn update(
        &self,
        aws: &Aws,
        desired: &TargetGroupDesired,
        live: &TargetGroupLive,
        diffs: &[FieldDiff],
    ) -> Result<TargetGroupLive, AwsError> {
        let delta = Delta(diffs);
        if delta.touches(HEALTH_CHECK) {
            let h = &desired.health;
            aws.elbv2
                .modify_target_group()
                .target_group_arn(&live.arn)
                .health_check_path(&h.path)
                .health_check_interval_seconds(h.interval_seconds)
                .health_check_timeout_seconds(h.timeout_seconds)
                .healthy_threshold_count(h.healthy_threshold)
                .unhealthy_threshold_count(h.unhealthy_threshold)
                .matcher(Matcher::builder().http_code(&h.matcher).build())
                .send()
                .await
                .aws()?;
        }
        if delta.touches_any(&[DEREGISTRATION_DELAY_SECONDS, STICKINESS]) {
            set_attributes(aws, &live.arn, desired).await?;
        }
        let add = tags::missing(&desired.tags, &live.tags);
        if !add.is_empty() {
            aws.elbv2
                .add_tags()
                .resource_arns(&live.arn)
                .set_tags(Some(tags::elbv2(&add)))
                .send()
                .await
                .aws()?;
        }
        Ok(TargetGroupLive {
            health: desired.health.clone(),
            deregistration_delay_seconds: desired.deregistration_delay_seconds,
            stickiness_seconds: desired.stickiness_seconds,
            tags: live.tags.clone().into_iter().chain(add).collect(),
            ..live.clone()
        })
    }
}

async fn set_attributes(
    aws: &Aws,
    arn: &str,
    desired: &TargetGroupDesired,
) -> Result<(), AwsError> {
    let attr = |k: &str, v: String| TargetGroupAttribute::builder().key(k).value(v).build();
    let mut attrs = vec![
        attr(
            DEREGISTRATION,
            desired.deregistration_delay_seconds.to_string(),
        ),
        attr(STICKY, desired.stickiness_seconds.is_some().to_string()),
    ];
    if let Some(secs) = desired.stickiness_seconds {
        attrs.push(attr(STICKY_TYPE, "lb_cookie".into()));
        attrs.push(attr(STICKY_SECONDS, secs.to_string()));
    }
    aws.elbv2
        .modify_target_group_attributes()
        .target_group_arn(arn)
        .set_attributes(Some(attrs))
        .send()
        .await
        .aws()?;
    Ok(())
}

/// Tags of ELBv2 resources, 20 ARNs a call (the API's limit).
pub(crate) async fn elb_tags(
    aws: &Aws,
    arns: &[String],
) -> Result<BTreeMap<String, Tags>, AwsError> {
    let mut out = BTreeMap::new();
    for chunk in arns.chunks(20) {
        let resp = aws
            .elbv2
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .aws()?;
        for d in resp.tag_descriptions() {
            if let Some(arn) = d.resource_arn() {
                out.insert(arn.to_string(), tags::from_elbv2(d.tags()));
            }
        }
    }
    Ok(out)
}

/// The targets of a target group and their health (one call), for the health verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetHealth {
    pub healthy: u32,
    pub total: u32,
    /// `i-0abc: unhealthy (Target.FailedHealthChecks)` for each target not healthy.
    pub others: Vec<String>,
}

pub async fn target_health(aws: &Aws, arn: &str) -> Result<TargetHealth, AwsError> {
    let out = aws
        .elbv2
        .describe_target_health()
        .target_group_arn(arn)
        .send()
        .await
        .aws()?;
    let mut health = TargetHealth::default();
    for d in out.target_health_descriptions() {
        let state = d
            .target_health()
            .and_then(|h| h.state())
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "unknown".into());
        if state == "unused" {
            continue;
        }
        health.total += 1;
        if state == "healthy" {
            health.healthy += 1;
        } else {
            let id = d.target().and_then(|t| t.id()).unwrap_or("?");
            let reason = d
                .target_health()
                .and_then(|h| h.reason())
                .map(|r| format!(" ({})", r.as_str()))
                .unwrap_or_default();
            health.others.push(format!("{id}: {state}{reason}"));
        }
    }
    Ok(health)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> TargetGroupDesired {
        TargetGroupDesired {
            name: "shop-tg".into(),
            vpc_id: "vpc-1".into(),
            port: 80,
            health: HealthCheck {
                path: "/presta-health.txt".into(),
                matcher: "200".into(),
                interval_seconds: 15,
                timeout_seconds: 5,
                healthy_threshold: 2,
                unhealthy_threshold: 3,
            },
            deregistration_delay_seconds: 30,
            stickiness_seconds: Some(86_400),
            tags: Tags::new(),
        }
    }

    fn live_of(d: &TargetGroupDesired) -> TargetGroupLive {
        TargetGroupLive {
            arn: "arn:tg".into(),
            name: d.name.clone(),
            vpc_id: d.vpc_id.clone(),
            port: d.port,
            health: d.health.clone(),
            deregistration_delay_seconds: d.deregistration_delay_seconds,
            stickiness_seconds: d.stickiness_seconds,
            tags: d.tags.clone(),
        }
    }

    #[test]
    fn a_changed_health_check_path_is_named() {
        let d = desired();
        let mut live = live_of(&d);
        assert!(TargetGroups.diff(&d, &live).is_empty());
        live.health.path = "/".into();
        let diffs = TargetGroups.diff(&d, &live);
        assert_eq!(diffs.len(), 1);
        assert_eq!(
            (
                diffs[0].field.as_str(),
                diffs[0].desired.as_str(),
                diffs[0].live.as_str()
            ),
            ("healthCheck.path", Some("/presta-health.txt"), Some("/"))
        );
    }

    #[test]
    fn stickiness_duration_only_matters_when_enabled() {
        let mut d = desired();
        d.stickiness_seconds = None;
        let mut live = live_of(&d);
        assert!(TargetGroups.diff(&d, &live).is_empty());
        live.stickiness_seconds = Some(10);
        let diffs = TargetGroups.diff(&d, &live);
        assert_eq!(
            diffs.iter().map(|x| x.field.as_str()).collect::<Vec<_>>(),
            ["stickiness.enabled"]
        );
    }

    #[test]
    fn moving_vpc_is_blocked() {
        let d = desired();
        let live = TargetGroupLive {
            vpc_id: "vpc-2".into(),
            ..live_of(&d)
        };
        let diffs = TargetGroups.diff(&d, &live);
        assert!(diffs[0].blocked.is_some());
    }
}
