//! Orphans: resources that carry this product's ownership tags, in the regions of the
//! configured stacks, whose stack is no longer in the configuration (renamed, removed from
//! the file). They are reported — by `plan`, `GET /orphans` and the
//! `presta_orphaned_resources` gauge — and never deleted, except by `destroy --stack NAME`.
//!
//! One light list call per region in steady state (the target groups: every stack has one,
//! named `<stack>-tg`; only those named for an unknown stack have their tags read). Only when a
//! forgotten stack shows up are the security groups, launch templates, Auto Scaling groups,
//! databases and file systems listed too. The daemon's periodic search is thorough: it lists
//! the ownership-tagged security groups and the file systems, where one kept by `destroy`
//! outlives the rest.

use std::collections::BTreeSet;

use crate::clients::Aws;
use crate::diff::Kind;
use crate::error::{AwsError, AwsResultExt};
use presta_spec::naming::{Component, MANAGED_BY_VALUE, TAG_MANAGED_BY, TAG_STACK};
use serde::Serialize;

/// One resource of a stack that is not in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Orphan {
    pub stack: String,
    pub region: String,
    pub kind: Kind,
    pub name: String,
    pub id: String,
    /// Kept on purpose by `destroy` (a file system tagged `retained-at`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retained: bool,
}

fn owned<'a>(tags: impl Iterator<Item = (&'a str, &'a str)>) -> Option<String> {
    let mut managed = false;
    let mut stack = None;
    for (k, v) in tags {
        if k == TAG_MANAGED_BY && v == MANAGED_BY_VALUE {
            managed = true;
        }
        if k == TAG_STACK {
            stack = Some(v.to_string());
        }
    }
    stack.filter(|_| managed)
}

/// The orphans of `aws`'s region: owned resources whose stack is not in `known`.
pub async fn find(
    aws: &Aws,
    known: &BTreeSet<String>,
    thorough: bool,
) -> Result<Vec<Orphan>, AwsError> {
    let region = aws.region.clone();
    let tag_filter = || {
        aws_sdk_ec2::types::Filter::builder()
            .name(format!("tag:{TAG_MANAGED_BY}"))
            .values(MANAGED_BY_VALUE)
            .build()
    };
    // The probe: every stack has a target group named `<stack>-tg`, and listing the region's
    // target groups is one light call; only the ones named for a stack that is not known
    // have their tags read, and the stacks found are then looked up by their deterministic
    // names. A thorough search (the daemon's) lists the ownership-tagged security groups and
    // file systems instead, which also finds what a `destroy` kept (or a killed one left)
    // after the target group went.
    let stack_of = |tags: Vec<(&str, &str)>| owned(tags.into_iter());
    // Stacks the probe found (named lookups follow), or a thorough search (tag-filtered
    // listings).
    let probed: BTreeSet<String> = if thorough {
        BTreeSet::new()
    } else {
        // The listing the run's observation made in this region, else one of its own.
        let tgs: Vec<(String, String)> = match aws.listings.take_target_groups() {
            Some(listed) => listed,
            None => crate::target_group::names_and_arns(&crate::target_group::list_all(aws).await?),
        };
        let suffix = Component::TargetGroup.name("");
        let candidates: Vec<String> = tgs
            .into_iter()
            .filter(|(name, _)| {
                name.strip_suffix(suffix.as_str())
                    .is_some_and(|stack| !known.contains(stack))
            })
            .map(|(_, arn)| arn)
            .collect();
        let tags = crate::target_group::elb_tags(aws, &candidates).await?;
        tags.values()
            .filter_map(|t| stack_of(t.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()))
            .filter(|s| !known.contains(s))
            .collect()
    };
    if !thorough && probed.is_empty() {
        return Ok(Vec::new());
    }
    let named = |c: Component| -> Vec<String> { probed.iter().map(|s| c.name(s)).collect() };
    let ec2_filter = |name: &str, values: Vec<String>| {
        aws_sdk_ec2::types::Filter::builder()
            .name(name)
            .set_values(Some(values))
            .build()
    };
    let sgs = if thorough {
        tag_filter()
    } else {
        ec2_filter(
            "group-name",
            [
                Component::AlbSecurityGroup,
                Component::AppSecurityGroup,
                Component::DbSecurityGroup,
                Component::EfsSecurityGroup,
            ]
            .into_iter()
            .flat_map(named)
            .collect(),
        )
    };
    let sgs = aws
        .ec2
        .describe_security_groups()
        .filters(sgs)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .aws("DescribeSecurityGroups")?;
    let fss = if thorough {
        aws.efs
            .describe_file_systems()
            .max_items(crate::file_system::EFS_PAGE)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .aws("DescribeFileSystems")?
    } else {
        let mut all = Vec::new();
        for token in named(Component::FileSystem) {
            all.extend(
                aws.efs
                    .describe_file_systems()
                    .creation_token(token)
                    .send()
                    .await
                    .aws("DescribeFileSystems")?
                    .file_systems()
                    .iter()
                    .cloned(),
            );
        }
        all
    };
    let any_orphan =
        !probed.is_empty()
            || sgs
                .iter()
                .filter_map(|g| {
                    stack_of(
                        g.tags()
                            .iter()
                            .filter_map(|t| Some((t.key()?, t.value()?)))
                            .collect(),
                    )
                })
                .chain(fss.iter().filter_map(|f| {
                    stack_of(f.tags().iter().map(|t| (t.key(), t.value())).collect())
                }))
                .any(|s| !known.contains(&s));
    let (lts, asgs, dbs) = if any_orphan {
        tokio::try_join!(
            async {
                aws.ec2
                    .describe_launch_templates()
                    .filters(if thorough {
                        tag_filter()
                    } else {
                        ec2_filter("launch-template-name", named(Component::LaunchTemplate))
                    })
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>()
                    .await
                    .aws("DescribeLaunchTemplates")
            },
            async {
                let q = aws.autoscaling.describe_auto_scaling_groups();
                let q = if thorough {
                    q.filters(
                        aws_sdk_autoscaling::types::Filter::builder()
                            .name(format!("tag:{TAG_MANAGED_BY}"))
                            .values(MANAGED_BY_VALUE)
                            .build(),
                    )
                } else {
                    q.set_auto_scaling_group_names(Some(named(Component::AutoScalingGroup)))
                };
                q.into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>()
                    .await
                    .aws("DescribeAutoScalingGroups")
            },
            async {
                let q = aws.rds.describe_db_instances();
                let q = if thorough {
                    q
                } else {
                    q.filters(
                        aws_sdk_rds::types::Filter::builder()
                            .name("db-instance-id")
                            .set_values(Some(named(Component::DbInstance)))
                            .build(),
                    )
                };
                q.into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>()
                    .await
                    .aws("DescribeDBInstances")
            },
        )?
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    let mut out = Vec::new();
    let mut push = |stack: Option<String>, kind: Kind, name: &str, id: &str, retained: bool| {
        if let Some(stack) = stack.filter(|s| !known.contains(s)) {
            out.push(Orphan {
                stack,
                region: region.clone(),
                kind,
                name: name.to_string(),
                id: id.to_string(),
                retained,
            });
        }
    };
    for g in &sgs {
        let tags = g.tags().iter().filter_map(|t| Some((t.key()?, t.value()?)));
        push(
            owned(tags),
            Kind::SecurityGroup,
            g.group_name().unwrap_or_default(),
            g.group_id().unwrap_or_default(),
            false,
        );
    }
    for t in &lts {
        let tags = t.tags().iter().filter_map(|t| Some((t.key()?, t.value()?)));
        push(
            owned(tags),
            Kind::LaunchTemplate,
            t.launch_template_name().unwrap_or_default(),
            t.launch_template_id().unwrap_or_default(),
            false,
        );
    }
    for g in &asgs {
        let tags = g.tags().iter().filter_map(|t| Some((t.key()?, t.value()?)));
        push(
            owned(tags),
            Kind::AutoScalingGroup,
            g.auto_scaling_group_name().unwrap_or_default(),
            g.auto_scaling_group_name().unwrap_or_default(),
            false,
        );
    }
    for d in &dbs {
        let tags = d
            .tag_list()
            .iter()
            .filter_map(|t| Some((t.key()?, t.value()?)));
        push(
            owned(tags),
            Kind::DbInstance,
            d.db_instance_identifier().unwrap_or_default(),
            d.db_instance_arn().unwrap_or_default(),
            false,
        );
    }
    for f in &fss {
        let retained = f
            .tags()
            .iter()
            .any(|t| t.key() == crate::file_system::TAG_RETAINED_AT);
        let tags = f.tags().iter().map(|t| (t.key(), t.value()));
        push(
            owned(tags),
            Kind::FileSystem,
            f.creation_token(),
            f.file_system_id(),
            retained,
        );
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ownership_tags_make_a_resource_ours() {
        let stack = owned(
            [
                ("managed-by", "presta-reconciler"),
                ("presta-reconciler/stack", "old"),
            ]
            .into_iter(),
        );
        assert_eq!(stack.as_deref(), Some("old"));
        assert_eq!(
            owned([("presta-reconciler/stack", "old")].into_iter()),
            None
        );
        assert_eq!(
            owned([("managed-by", "presta-reconciler")].into_iter()),
            None
        );
    }
}
