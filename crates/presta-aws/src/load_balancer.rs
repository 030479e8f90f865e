//! The Application Load Balancer: scheme, public subnets, security group, and the attributes
//! the spec manages (idle timeout, dropping invalid header fields, deletion protection).
//!
//! Observation: one paginated `DescribeLoadBalancers`, matched by name; then `DescribeTags`
//! (20 a call) and one `DescribeLoadBalancerAttributes` per stack's load balancer, concurrently.
//! A change of scheme would need a new load balancer with a new DNS name (the shop's domain):
//! it is reported as blocked rather than done behind the owner's back.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::types::{
    IpAddressType, LoadBalancerAttribute, LoadBalancerSchemeEnum, LoadBalancerTypeEnum,
};

use crate::clients::Aws;
use crate::diff::{Delta, Diffs, FieldDiff, Kind};
use crate::driver::{Driver, Scope, absent_is_success};
use crate::error::{AwsError, AwsResultExt};
use crate::network::Network;
use crate::registry::{Deletion, Iam, Observed, Targets, Teardown};
use crate::tags::{self, Tags};
use crate::target_group::elb_tags;
use fields::*;
use presta_spec::Stack;
use presta_spec::naming::Component;

const ATTR_IDLE_TIMEOUT: &str = "idle_timeout.timeout_seconds";
const ATTR_DROP_INVALID_HEADERS: &str = "routing.http.drop_invalid_header_fields.enabled";
const ATTR_DELETION_PROTECTION: &str = "deletion_protection.enabled";

/// The load balancer attributes the spec manages, with AWS's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    pub idle_timeout_seconds: u32,
    /// Drop HTTP headers with invalid names (AWS security best practice: on).
    pub drop_invalid_header_fields: bool,
    pub deletion_protection: bool,
}

impl Default for Attributes {
    /// What a new load balancer has.
    fn default() -> Self {
        Attributes {
            idle_timeout_seconds: 60,
            drop_invalid_header_fields: false,
            deletion_protection: false,
        }
    }
}

impl Attributes {
    fn from_aws(attrs: &[LoadBalancerAttribute]) -> Self {
        let get = |k: &str| {
            attrs
                .iter()
                .find(|a| a.key() == Some(k))
                .and_then(|a| a.value())
        };
        let flag = |k: &str| get(k) == Some("true");
        Attributes {
            idle_timeout_seconds: get(ATTR_IDLE_TIMEOUT)
                .and_then(|v| v.parse().ok())
                .unwrap_or(60),
            drop_invalid_header_fields: flag(ATTR_DROP_INVALID_HEADERS),
            deletion_protection: flag(ATTR_DELETION_PROTECTION),
        }
    }

    /// The attributes of `self` that differ from `live`, as AWS wants them.
    fn changes(&self, live: &Attributes) -> Vec<LoadBalancerAttribute> {
        let attr = |k: &str, v: String| LoadBalancerAttribute::builder().key(k).value(v).build();
        let mut out = Vec::new();
        if self.idle_timeout_seconds != live.idle_timeout_seconds {
            out.push(attr(
                ATTR_IDLE_TIMEOUT,
                self.idle_timeout_seconds.to_string(),
            ));
        }
        if self.drop_invalid_header_fields != live.drop_invalid_header_fields {
            out.push(attr(
                ATTR_DROP_INVALID_HEADERS,
                self.drop_invalid_header_fields.to_string(),
            ));
        }
        if self.deletion_protection != live.deletion_protection {
            out.push(attr(
                ATTR_DELETION_PROTECTION,
                self.deletion_protection.to_string(),
            ));
        }
        out
    }
}

/// The fields this kind manages, as its diff reports them and its update reads them.
pub mod fields {
    use crate::diff::Field;

    pub const SCHEME: Field = Field("scheme");
    pub const SUBNETS: Field = Field("subnets");
    pub const SECURITY_GROUPS: Field = Field("securityGroups");
    pub const IDLE_TIMEOUT_SECONDS: Field = Field("idleTimeoutSeconds");
    pub const DROP_INVALID_HEADER_FIELDS: Field = Field("dropInvalidHeaderFields");
    pub const DELETION_PROTECTION: Field = Field("deletionProtection");
}

#[derive(Debug, Clone)]
pub struct LoadBalancerDesired {
    pub name: String,
    /// `internet-facing` or `internal`.
    pub scheme: String,
    pub subnets: BTreeSet<String>,
    pub security_groups: BTreeSet<String>,
    pub attributes: Attributes,
    pub tags: Tags,
}

impl LoadBalancerDesired {
    /// The stack's Application Load Balancer in the public subnets, with its group.
    pub fn for_stack(stack: &Stack, net: &Network, alb_group: &str) -> Self {
        let lb = &stack.spec.load_balancer;
        LoadBalancerDesired {
            name: stack.resource_name(Component::LoadBalancer),
            scheme: lb.scheme.as_aws().to_string(),
            subnets: net.public_ids().into_iter().collect(),
            security_groups: [alb_group.to_string()].into(),
            attributes: Attributes {
                idle_timeout_seconds: lb.idle_timeout_seconds,
                drop_invalid_header_fields: lb.drop_invalid_header_fields,
                deletion_protection: lb.deletion_protection,
            },
            tags: stack
                .names()
                .tags(Component::LoadBalancer, &stack.metadata.labels),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoadBalancerLive {
    pub arn: String,
    pub name: String,
    pub dns_name: String,
    /// The hosted zone of its DNS name, for alias records.
    pub zone_id: String,
    pub scheme: String,
    /// `provisioning`, `active`, `failed`...
    pub state: crate::status::LbState,
    pub subnets: BTreeSet<String>,
    pub security_groups: BTreeSet<String>,
    pub attributes: Attributes,
    pub tags: Tags,
}

pub struct LoadBalancers;

impl Kind {
    pub const LOAD_BALANCER: Kind = Kind::new("load_balancer");
}

impl Driver for LoadBalancers {
    const KIND: Kind = Kind::LOAD_BALANCER;
    const IAM: Iam = Iam {
        read: &[
            "elasticloadbalancing:DescribeLoadBalancers",
            "elasticloadbalancing:DescribeLoadBalancerAttributes",
            "elasticloadbalancing:DescribeTags",
        ],
        create: &["elasticloadbalancing:CreateLoadBalancer"],
        change: &[
            "elasticloadbalancing:ModifyLoadBalancerAttributes",
            "elasticloadbalancing:SetSecurityGroups",
            "elasticloadbalancing:SetSubnets",
            "elasticloadbalancing:AddTags",
            "elasticloadbalancing:DeleteLoadBalancer",
        ],
        statements: || {
            vec![crate::iam::tag_while_creating(
                "TagLoadBalancersOnlyWhileCreatingThem",
                "elasticloadbalancing",
                "elasticloadbalancing:AddTags",
                &["CreateLoadBalancer"],
            )]
        },
    };
    const TEARDOWN: Teardown = Teardown::new(21, Deletion::Plain);

    fn scope(targets: &Targets, _: &Observed) -> Scope {
        Scope::named(targets.names(Component::LoadBalancer))
    }

    /// Its deletion protection guards against a delete by mistake; `destroy` was confirmed
    /// with the stack's name and the load balancer holds no data: lifted, and said so.
    async fn before_delete(
        &self,
        aws: &Aws,
        live: &LoadBalancerLive,
    ) -> Result<Option<String>, AwsError> {
        if !live.attributes.deletion_protection {
            return Ok(None);
        }
        self.lift_deletion_protection(aws, live).await?;
        Ok(Some(format!(
            "deletion protection of load balancer {} lifted (it holds no data)",
            live.name
        )))
    }

    type Desired = LoadBalancerDesired;
    type Live = LoadBalancerLive;

    fn name(desired: &LoadBalancerDesired) -> String {
        desired.name.clone()
    }

    fn id(live: &LoadBalancerLive) -> String {
        live.arn.clone()
    }

    async fn delete(&self, aws: &Aws, live: &LoadBalancerLive) -> Result<(), AwsError> {
        absent_is_success(
            aws.elbv2
                .delete_load_balancer()
                .load_balancer_arn(&live.arn)
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
    ) -> Result<BTreeMap<String, LoadBalancerLive>, AwsError> {
        if scope.names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let all = aws
            .elbv2
            .describe_load_balancers()
            // AWS's largest page (moto's default is 50).
            .page_size(400)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .aws()?;
        let ours: Vec<_> = all
            .iter()
            .filter(|lb| {
                lb.load_balancer_name()
                    .is_some_and(|n| scope.names.iter().any(|w| w == n))
            })
            .collect();
        let arns: Vec<String> = ours
            .iter()
            .filter_map(|lb| lb.load_balancer_arn().map(String::from))
            .collect();
        let tag_map = elb_tags(aws, &arns).await?;
        let attributes = crate::calls::bounded(arns.iter().map(|arn| async move {
            let out = aws
                .elbv2
                .describe_load_balancer_attributes()
                .load_balancer_arn(arn)
                .send()
                .await
                .aws()?;
            Ok::<_, AwsError>((arn.clone(), Attributes::from_aws(out.attributes())))
        }))
        .await?;
        let attributes: BTreeMap<String, Attributes> = attributes.into_iter().collect();
        Ok(ours
            .iter()
            .map(|lb| {
                let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
                let live = LoadBalancerLive {
                    name: lb.load_balancer_name().unwrap_or_default().to_string(),
                    dns_name: lb.dns_name().unwrap_or_default().to_string(),
                    zone_id: lb
                        .canonical_hosted_zone_id()
                        .unwrap_or_default()
                        .to_string(),
                    scheme: lb
                        .scheme()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    state: lb
                        .state()
                        .and_then(|s| s.code())
                        .map(|c| c.as_str().into())
                        .unwrap_or_default(),
                    subnets: lb
                        .availability_zones()
                        .iter()
                        .filter_map(|z| z.subnet_id().map(String::from))
                        .collect(),
                    security_groups: lb.security_groups().iter().cloned().collect(),
                    attributes: attributes.get(&arn).copied().unwrap_or_default(),
                    tags: tag_map.get(&arn).cloned().unwrap_or_default(),
                    arn,
                };
                (live.name.clone(), live)
            })
            .collect())
    }

    fn diff(&self, desired: &LoadBalancerDesired, live: &LoadBalancerLive) -> Vec<FieldDiff> {
        let mut d = Diffs::new();
        d.blocked(SCHEME,
            &desired.scheme,
            &live.scheme,
            "the scheme is fixed at creation; a new load balancer would get a new DNS name: delete it by hand to have it re-created",
        )
        .set(SUBNETS, &desired.subnets, &live.subnets)
        .set(SECURITY_GROUPS, &desired.security_groups, &live.security_groups)
        .field(IDLE_TIMEOUT_SECONDS, &desired.attributes.idle_timeout_seconds, &live.attributes.idle_timeout_seconds)
        .field(
            DROP_INVALID_HEADER_FIELDS,
            &desired.attributes.drop_invalid_header_fields,
            &live.attributes.drop_invalid_header_fields,
        )
        .field(
            DELETION_PROTECTION,
            &desired.attributes.deletion_protection,
            &live.attributes.deletion_protection,
        )
        .tags(&desired.tags, &live.tags);
        d.finish()
    }

    /// `CreateLoadBalancer` returns the existing one for the same name and settings.
    async fn create(
        &self,
        aws: &Aws,
        desired: &LoadBalancerDesired,
    ) -> Result<LoadBalancerLive, AwsError> {
        let scheme = if desired.scheme == "internal" {
            LoadBalancerSchemeEnum::Internal
        } else {
            LoadBalancerSchemeEnum::InternetFacing
        };
        let out = aws
            .elbv2
            .create_load_balancer()
            .name(&desired.name)
            .r#type(LoadBalancerTypeEnum::Application)
            .scheme(scheme)
            .ip_address_type(IpAddressType::Ipv4)
            .set_subnets(Some(desired.subnets.iter().cloned().collect()))
            .set_security_groups(Some(desired.security_groups.iter().cloned().collect()))
            .set_tags(Some(tags::elbv2(&desired.tags)))
            .send()
            .await
            .aws()?;
        let lb = out.load_balancers().first().ok_or_else(|| {
            AwsError::unexpected("CreateLoadBalancer", "no load balancer in the answer")
        })?;
        let live = LoadBalancerLive {
            arn: lb.load_balancer_arn().unwrap_or_default().to_string(),
            name: desired.name.clone(),
            dns_name: lb.dns_name().unwrap_or_default().to_string(),
            zone_id: lb
                .canonical_hosted_zone_id()
                .unwrap_or_default()
                .to_string(),
            scheme: desired.scheme.clone(),
            state: lb
                .state()
                .and_then(|s| s.code())
                .map(|c| c.as_str().into())
                .unwrap_or_default(),
            subnets: desired.subnets.clone(),
            security_groups: desired.security_groups.clone(),
            attributes: Attributes::default(),
            tags: desired.tags.clone(),
        };
        set_attributes(aws, &live.arn, desired.attributes.changes(&live.attributes)).await?;
        Ok(LoadBalancerLive {
            attributes: desired.attributes,
            ..live
        })
    }

    async fn update(
        &self,
        aws: &Aws,
        desired: &LoadBalancerDesired,
        live: &LoadBalancerLive,
        diffs: &[FieldDiff],
    ) -> Result<LoadBalancerLive, AwsError> {
        let delta = Delta(diffs);
        if delta.touches(SUBNETS) {
            aws.elbv2
                .set_subnets()
                .load_balancer_arn(&live.arn)
                .set_subnets(Some(desired.subnets.iter().cloned().collect()))
                .send()
                .await
                .aws()?;
        }
        if delta.touches(SECURITY_GROUPS) {
            aws.elbv2
                .set_security_groups()
                .load_balancer_arn(&live.arn)
                .set_security_groups(Some(desired.security_groups.iter().cloned().collect()))
                .send()
                .await
                .aws()?;
        }
        if delta.touches_any(&[
            IDLE_TIMEOUT_SECONDS,
            DROP_INVALID_HEADER_FIELDS,
            DELETION_PROTECTION,
        ]) {
            set_attributes(aws, &live.arn, desired.attributes.changes(&live.attributes)).await?;
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
        Ok(LoadBalancerLive {
            subnets: desired.subnets.clone(),
            security_groups: desired.security_groups.clone(),
            attributes: desired.attributes,
            tags: live.tags.clone().into_iter().chain(add).collect(),
            ..live.clone()
        })
    }
}

/// One `ModifyLoadBalancerAttributes` with the attributes that change (none: no call).
async fn set_attributes(
    aws: &Aws,
    arn: &str,
    changes: Vec<LoadBalancerAttribute>,
) -> Result<(), AwsError> {
    if changes.is_empty() {
        return Ok(());
    }
    aws.elbv2
        .modify_load_balancer_attributes()
        .load_balancer_arn(arn)
        .set_attributes(Some(changes))
        .send()
        .await
        .aws()?;
    Ok(())
}

impl LoadBalancers {
    /// Lifts the load balancer's deletion protection (destroy: it holds no data, and the
    /// person confirmed the stack's name).
    pub async fn lift_deletion_protection(
        &self,
        aws: &Aws,
        live: &LoadBalancerLive,
    ) -> Result<(), AwsError> {
        let want = Attributes {
            deletion_protection: false,
            ..live.attributes
        };
        set_attributes(aws, &live.arn, want.changes(&live.attributes)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_change_is_blocked_and_subnets_compare_as_sets() {
        let desired = LoadBalancerDesired {
            name: "shop-alb".into(),
            scheme: "internet-facing".into(),
            subnets: ["subnet-a".to_string(), "subnet-b".to_string()].into(),
            security_groups: ["sg-1".to_string()].into(),
            attributes: Attributes::default(),
            tags: Tags::new(),
        };
        let live = LoadBalancerLive {
            arn: "arn".into(),
            name: "shop-alb".into(),
            dns_name: "x".into(),
            zone_id: "Z".into(),
            scheme: "internal".into(),
            state: "active".into(),
            subnets: ["subnet-b".to_string(), "subnet-a".to_string()].into(),
            security_groups: ["sg-1".to_string()].into(),
            attributes: Attributes::default(),
            tags: Tags::new(),
        };
        let diffs = LoadBalancers.diff(&desired, &live);
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].field, "scheme");
        assert!(
            diffs[0]
                .blocked
                .as_deref()
                .unwrap()
                .contains("new DNS name")
        );
    }
}
