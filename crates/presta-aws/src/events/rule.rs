//! The event rule: the EventBridge rule, on the region's default bus, that sends AWS's change
//! events for the services the stacks use (and the daemon's heartbeat) to the event queue.
//! Observation: `DescribeRule` by name, its targets and its tags.

use std::collections::BTreeMap;

use aws_sdk_eventbridge::types::{RuleState, Target};
use serde_json::json;

use super::DAEMON_OWNER;
use crate::clients::Aws;
use crate::diff::{Delta, Diffs, Field, FieldDiff, Kind};
use crate::driver::{Driver, Scope, absent_is_success};
use crate::error::{AwsError, AwsResultExt};
use crate::iam::allow;
use crate::registry::{Deletion, Iam, Observed, Targets, Teardown};
use crate::tags::Tags;

pub const PATTERN: Field = Field("eventPattern");
pub const STATE: Field = Field("state");
pub const TARGET: Field = Field("target");

/// The id of the rule's one target, the queue.
pub const TARGET_ID: &str = "presta-reconciler-queue";

/// The rule as the daemon wants it.
#[derive(Debug, Clone)]
pub struct RuleDesired {
    pub name: String,
    pub pattern: serde_json::Value,
    /// The queue's ARN.
    pub queue_arn: String,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleLive {
    pub name: String,
    pub arn: String,
    pub pattern: serde_json::Value,
    pub state: String,
    /// Target ARNs by target id.
    pub targets: BTreeMap<String, String>,
    pub tags: Tags,
}

pub struct EventRules;

impl Kind {
    pub const EVENT_RULE: Kind = Kind::new("event_rule");
}

impl Driver for EventRules {
    const KIND: Kind = Kind::EVENT_RULE;
    /// EventBridge's actions bounded by the rule's name, the heartbeat bounded to the default
    /// bus, and the reads that check a trail records the events.
    const IAM: Iam = Iam {
        read: &[
            "cloudtrail:DescribeTrails",
            "cloudtrail:GetTrailStatus",
            "cloudtrail:GetEventSelectors",
            "sts:GetCallerIdentity",
        ],
        create: &[],
        change: &[],
        statements: || {
            vec![
                allow(
                    "KeepTheDaemonsEventRule",
                    &[
                        "events:DescribeRule",
                        "events:ListTargetsByRule",
                        "events:ListTagsForResource",
                        "events:PutRule",
                        "events:TagResource",
                        "events:PutTargets",
                        "events:RemoveTargets",
                        "events:DeleteRule",
                    ],
                    json!(super::RULE_ARN_ANY),
                    None,
                ),
                allow(
                    "PutTheDaemonsHeartbeatOnTheDefaultBus",
                    &["events:PutEvents"],
                    json!("arn:aws:events:*:*:event-bus/default"),
                    None,
                ),
            ]
        },
    };
    const TEARDOWN: Teardown = Teardown::new(80, Deletion::Plain);

    type Desired = RuleDesired;
    type Live = RuleLive;

    fn scope(_: &Targets, _: &Observed) -> Scope {
        Scope::default()
    }

    fn name(desired: &RuleDesired) -> String {
        desired.name.clone()
    }

    fn id(live: &RuleLive) -> String {
        live.arn.clone()
    }

    fn tags(live: &RuleLive) -> Option<&Tags> {
        Some(&live.tags)
    }

    async fn observe(
        &self,
        aws: &Aws,
        scope: &Scope,
    ) -> Result<BTreeMap<String, RuleLive>, AwsError> {
        let mut found = BTreeMap::new();
        for name in &scope.names {
            let rule = match aws.events.describe_rule().name(name).send().await.aws() {
                Ok(r) => r,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            let arn = rule.arn().unwrap_or_default().to_string();
            let targets = match aws
                .events
                .list_targets_by_rule()
                .rule(name)
                .send()
                .await
                .aws()
            {
                Ok(t) => t
                    .targets()
                    .iter()
                    .map(|t| (t.id().to_string(), t.arn().to_string()))
                    .collect(),
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            let tags = aws
                .events
                .list_tags_for_resource()
                .resource_arn(&arn)
                .send()
                .await
                .aws()?
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect();
            found.insert(
                name.clone(),
                RuleLive {
                    name: name.clone(),
                    arn,
                    pattern: rule
                        .event_pattern()
                        .and_then(|p| serde_json::from_str(p).ok())
                        .unwrap_or(serde_json::Value::Null),
                    state: rule
                        .state()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    targets,
                    tags,
                },
            );
        }
        Ok(found)
    }

    fn diff(&self, desired: &RuleDesired, live: &RuleLive) -> Vec<FieldDiff> {
        let mut d = Diffs::new();
        d.field(PATTERN, &desired.pattern, &live.pattern);
        d.field(STATE, "ENABLED", live.state.as_str());
        let target = BTreeMap::from([(TARGET_ID.to_string(), desired.queue_arn.clone())]);
        d.field(TARGET, &target, &live.targets);
        d.tags(&desired.tags, &live.tags);
        d.finish()
    }

    async fn create(&self, aws: &Aws, desired: &RuleDesired) -> Result<RuleLive, AwsError> {
        let arn = put_rule(aws, desired, true).await?;
        put_target(aws, desired).await?;
        Ok(RuleLive {
            name: desired.name.clone(),
            arn,
            pattern: desired.pattern.clone(),
            state: "ENABLED".into(),
            targets: BTreeMap::from([(TARGET_ID.to_string(), desired.queue_arn.clone())]),
            tags: desired.tags.clone(),
        })
    }

    async fn update(
        &self,
        aws: &Aws,
        desired: &RuleDesired,
        live: &RuleLive,
        diffs: &[FieldDiff],
    ) -> Result<RuleLive, AwsError> {
        if Delta(diffs).touches_any(&[PATTERN, STATE]) {
            put_rule(aws, desired, false).await?;
        }
        if Delta(diffs).touches(TARGET) {
            let stray: Vec<String> = live
                .targets
                .keys()
                .filter(|id| id.as_str() != TARGET_ID)
                .cloned()
                .collect();
            if !stray.is_empty() {
                aws.events
                    .remove_targets()
                    .rule(&desired.name)
                    .set_ids(Some(stray))
                    .send()
                    .await
                    .aws()?;
            }
            put_target(aws, desired).await?;
        }
        let missing = crate::tags::missing(&desired.tags, &live.tags);
        if !missing.is_empty() {
            aws.events
                .tag_resource()
                .resource_arn(&live.arn)
                .set_tags(Some(eb_tags(&missing)))
                .send()
                .await
                .aws()?;
        }
        Ok(RuleLive {
            pattern: desired.pattern.clone(),
            state: "ENABLED".into(),
            targets: BTreeMap::from([(TARGET_ID.to_string(), desired.queue_arn.clone())]),
            tags: live
                .tags
                .clone()
                .into_iter()
                .chain(desired.tags.clone())
                .collect(),
            ..live.clone()
        })
    }

    async fn delete(&self, aws: &Aws, live: &RuleLive) -> Result<(), AwsError> {
        if !live.targets.is_empty() {
            absent_is_success(
                aws.events
                    .remove_targets()
                    .rule(&live.name)
                    .set_ids(Some(live.targets.keys().cloned().collect()))
                    .send()
                    .await
                    .map(|_| ())
                    .aws(),
            )?;
        }
        absent_is_success(
            aws.events
                .delete_rule()
                .name(&live.name)
                .send()
                .await
                .map(|_| ())
                .aws(),
        )
    }
}

async fn put_rule(aws: &Aws, desired: &RuleDesired, with_tags: bool) -> Result<String, AwsError> {
    let mut req = aws
        .events
        .put_rule()
        .name(&desired.name)
        .description(format!(
            "presta-reconciler: AWS change events of the stacks' resources, to the queue {} ({DAEMON_OWNER})",
            desired.name
        ))
        .event_pattern(desired.pattern.to_string())
        .state(RuleState::Enabled);
    if with_tags {
        req = req.set_tags(Some(eb_tags(&desired.tags)));
    }
    Ok(req
        .send()
        .await
        .aws()?
        .rule_arn()
        .unwrap_or_default()
        .to_string())
}

async fn put_target(aws: &Aws, desired: &RuleDesired) -> Result<(), AwsError> {
    let target = Target::builder()
        .id(TARGET_ID)
        .arn(&desired.queue_arn)
        .build()
        .map_err(|e| AwsError::unexpected("PutTargets", e.to_string()))?;
    let out = aws
        .events
        .put_targets()
        .rule(&desired.name)
        .targets(target)
        .send()
        .await
        .aws()?;
    if out.failed_entry_count() > 0 {
        let why = out
            .failed_entries()
            .iter()
            .filter_map(|e| e.error_message())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(AwsError::unexpected("PutTargets", why));
    }
    Ok(())
}

fn eb_tags(tags: &Tags) -> Vec<aws_sdk_eventbridge::types::Tag> {
    tags.iter()
        .filter_map(|(k, v)| {
            aws_sdk_eventbridge::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .ok()
        })
        .collect()
}
