//! The event queue: the SQS queue EventBridge delivers AWS's change events to, which the
//! daemon long-polls (`serve --events auto`). One per region and daemon, named by
//! `--events-name`; its policy lets EventBridge send to it, from the daemon's rule only.
//! Observation: `GetQueueUrl` by name, then its attributes and tags.

use std::collections::BTreeMap;

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;

use super::{DAEMON_OWNER, RETENTION_SECONDS};
use crate::clients::Aws;
use crate::diff::{Delta, Diffs, Field, FieldDiff, Kind};
use crate::driver::{Driver, Scope, absent_is_success};
use crate::error::{AwsError, AwsResultExt};
use crate::iam::allow;
use crate::registry::{Deletion, Iam, Observed, Targets, Teardown};
use crate::tags::Tags;

pub const POLICY: Field = Field("policy");
pub const RETENTION: Field = Field("messageRetentionPeriod");

/// The queue as the daemon wants it.
#[derive(Debug, Clone)]
pub struct QueueDesired {
    pub name: String,
    /// The rule allowed to send to it (its ARN, known before the rule exists: it is named).
    pub rule_arn: String,
    /// The queue's own ARN (for the policy's `Resource`).
    pub arn: String,
    pub tags: Tags,
}

impl QueueDesired {
    /// The queue policy: EventBridge may send messages, from the daemon's rule only.
    pub fn policy(&self) -> serde_json::Value {
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "EventBridgeDeliversTheDaemonsRule",
                "Effect": "Allow",
                "Principal": { "Service": "events.amazonaws.com" },
                "Action": "sqs:SendMessage",
                "Resource": self.arn,
                "Condition": { "ArnEquals": { "aws:SourceArn": self.rule_arn } }
            }]
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueLive {
    pub name: String,
    pub url: String,
    pub arn: String,
    /// The policy as JSON (`Null` when the queue has none).
    pub policy: serde_json::Value,
    pub retention: Option<u32>,
    /// Messages waiting (approximate, as SQS counts them).
    pub visible: u64,
    /// Messages received and not yet deleted.
    pub in_flight: u64,
    pub tags: Tags,
}

pub struct EventQueues;

impl Kind {
    pub const EVENT_QUEUE: Kind = Kind::new("event_queue");
}

impl Driver for EventQueues {
    const KIND: Kind = Kind::EVENT_QUEUE;
    /// SQS's actions bounded by the queue's name (the daemon's queues only).
    const IAM: Iam = Iam {
        read: &[],
        create: &[],
        change: &[],
        statements: || {
            vec![allow(
                "KeepAndReadTheDaemonsEventQueue",
                &[
                    "sqs:GetQueueUrl",
                    "sqs:GetQueueAttributes",
                    "sqs:ListQueueTags",
                    "sqs:CreateQueue",
                    "sqs:TagQueue",
                    "sqs:SetQueueAttributes",
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:DeleteQueue",
                ],
                json!(super::QUEUE_ARN_ANY),
                None,
            )]
        },
    };
    const TEARDOWN: Teardown = Teardown::new(90, Deletion::Plain);

    type Desired = QueueDesired;
    type Live = QueueLive;

    fn scope(_: &Targets, _: &Observed) -> Scope {
        Scope::default()
    }

    fn name(desired: &QueueDesired) -> String {
        desired.name.clone()
    }

    fn id(live: &QueueLive) -> String {
        live.url.clone()
    }

    fn tags(live: &QueueLive) -> Option<&Tags> {
        Some(&live.tags)
    }

    async fn observe(
        &self,
        aws: &Aws,
        scope: &Scope,
    ) -> Result<BTreeMap<String, QueueLive>, AwsError> {
        let mut found = BTreeMap::new();
        for name in &scope.names {
            let url = match aws.sqs.get_queue_url().queue_name(name).send().await.aws() {
                Ok(out) => out.queue_url().unwrap_or_default().to_string(),
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            match observe_url(aws, name, &url).await {
                Ok(live) => {
                    found.insert(name.clone(), live);
                }
                // Deleted between the two calls.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    fn diff(&self, desired: &QueueDesired, live: &QueueLive) -> Vec<FieldDiff> {
        let mut d = Diffs::new();
        d.field(POLICY, &desired.policy(), &live.policy);
        d.field(RETENTION, &Some(RETENTION_SECONDS), &live.retention);
        d.tags(&desired.tags, &live.tags);
        d.finish()
    }

    async fn create(&self, aws: &Aws, desired: &QueueDesired) -> Result<QueueLive, AwsError> {
        let out = aws
            .sqs
            .create_queue()
            .queue_name(&desired.name)
            .attributes(QueueAttributeName::Policy, desired.policy().to_string())
            .attributes(
                QueueAttributeName::MessageRetentionPeriod,
                RETENTION_SECONDS.to_string(),
            )
            .set_tags(Some(desired.tags.clone().into_iter().collect()))
            .send()
            .await
            .aws()?;
        let url = out.queue_url().unwrap_or_default().to_string();
        observe_url(aws, &desired.name, &url).await
    }

    async fn update(
        &self,
        aws: &Aws,
        desired: &QueueDesired,
        live: &QueueLive,
        diffs: &[FieldDiff],
    ) -> Result<QueueLive, AwsError> {
        if Delta(diffs).touches_any(&[POLICY, RETENTION]) {
            aws.sqs
                .set_queue_attributes()
                .queue_url(&live.url)
                .attributes(QueueAttributeName::Policy, desired.policy().to_string())
                .attributes(
                    QueueAttributeName::MessageRetentionPeriod,
                    RETENTION_SECONDS.to_string(),
                )
                .send()
                .await
                .aws()?;
        }
        let missing = crate::tags::missing(&desired.tags, &live.tags);
        if !missing.is_empty() {
            aws.sqs
                .tag_queue()
                .queue_url(&live.url)
                .set_tags(Some(missing.into_iter().collect()))
                .send()
                .await
                .aws()?;
        }
        observe_url(aws, &desired.name, &live.url).await
    }

    async fn delete(&self, aws: &Aws, live: &QueueLive) -> Result<(), AwsError> {
        absent_is_success(
            aws.sqs
                .delete_queue()
                .queue_url(&live.url)
                .send()
                .await
                .map(|_| ())
                .aws(),
        )
    }
}

/// The queue at `url`: its attributes and tags.
pub async fn observe_url(aws: &Aws, name: &str, url: &str) -> Result<QueueLive, AwsError> {
    let attrs = aws
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .aws()?;
    let attrs = attrs.attributes().cloned().unwrap_or_default();
    let get = |k: QueueAttributeName| attrs.get(&k).cloned();
    let count = |k: QueueAttributeName| get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    let tags = aws
        .sqs
        .list_queue_tags()
        .queue_url(url)
        .send()
        .await
        .aws()?
        .tags()
        .cloned()
        .unwrap_or_default();
    Ok(QueueLive {
        name: name.to_string(),
        url: url.to_string(),
        arn: get(QueueAttributeName::QueueArn).unwrap_or_default(),
        policy: get(QueueAttributeName::Policy)
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or(serde_json::Value::Null),
        retention: get(QueueAttributeName::MessageRetentionPeriod).and_then(|v| v.parse().ok()),
        visible: count(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        tags: tags.into_iter().collect(),
    })
}

/// The ownership tags of the daemon's event plumbing named `name`.
pub fn daemon_tags(name: &str) -> Tags {
    presta_spec::naming::role_tags(DAEMON_OWNER, "events", name, &BTreeMap::new())
}
