//! The daemon's event plumbing (`serve --events auto`): in each region it manages, an SQS
//! queue ([`queue`]) and an EventBridge rule on the default bus ([`rule`]) that sends AWS's
//! change events for the services the stacks use to it, plus the calls the daemon's event
//! loop makes: long-poll, delete, heartbeat, and the check that a CloudTrail trail records
//! management events (never created here). The two kinds are the daemon's own, not a
//! stack's: tagged `presta-reconciler/stack=_daemon`, observed and healed by [`ensure`],
//! removed by [`remove`] (`presta-reconciler events remove`); they are listed in
//! [`crate::registry::DAEMON_KINDS`]. docs/events.md explains the whole path.

pub mod queue;
pub mod rule;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use serde_json::{Value, json};

use crate::clients::Aws;
use crate::diff::{Action, Change};
use crate::driver::{Driver, Mode, Owner, Scope, remove as remove_one, sync};
use crate::error::{AwsError, AwsResultExt};
pub use queue::{EventQueues, QueueLive};
pub use rule::{EventRules, RuleLive};

/// The owner the plumbing's tags name (`presta-reconciler/stack`): no stack can carry this
/// name (stack names are DNS labels, without `_`).
pub const DAEMON_OWNER: &str = "_daemon";
/// The default name of the queue and of the rule (`serve --events-name`).
pub const DEFAULT_NAME: &str = "presta-reconciler-events";
/// The IAM resources of the daemon's queues and rules (names starting with the default).
pub const QUEUE_ARN_ANY: &str = "arn:aws:sqs:*:*:presta-reconciler-events*";
pub const RULE_ARN_ANY: &str = "arn:aws:events:*:*:rule/presta-reconciler-events*";
/// How long an undelivered event is kept: after an hour the periodic resync has looked.
pub const RETENTION_SECONDS: u32 = 3600;

/// The heartbeat the daemon puts on the bus to prove the path end to end.
pub const HEARTBEAT_SOURCE: &str = "presta-reconciler";
pub const HEARTBEAT_DETAIL_TYPE: &str = "presta-reconciler heartbeat";
/// CloudTrail's events, as EventBridge names them.
pub const CLOUDTRAIL_DETAIL_TYPE: &str = "AWS API Call via CloudTrail";

/// The services whose changes can be drift of a stack.
pub const SOURCES: &[&str] = &[
    "aws.ec2",
    "aws.elasticloadbalancing",
    "aws.autoscaling",
    "aws.rds",
    "aws.elasticfilesystem",
    "aws.ssm",
    "aws.acm",
    "aws.route53",
];

/// The events taken: CloudTrail's record of every mutating call, and the services' own
/// change events.
pub const DETAIL_TYPES: &[&str] = &[
    CLOUDTRAIL_DETAIL_TYPE,
    "EC2 Instance State-change Notification",
    "EC2 Instance Launch Successful",
    "EC2 Instance Launch Unsuccessful",
    "EC2 Instance Terminate Successful",
    "EC2 Instance Terminate Unsuccessful",
    "RDS DB Instance Event",
    "Parameter Store Change",
];

/// The rule's event pattern: the sources and detail types above, and the heartbeat.
/// `presta-reconciler events pattern` prints it, for a rule made with other tools.
pub fn pattern() -> Value {
    let mut sources: Vec<&str> = SOURCES.to_vec();
    sources.push(HEARTBEAT_SOURCE);
    let mut types: Vec<&str> = DETAIL_TYPES.to_vec();
    types.push(HEARTBEAT_DETAIL_TYPE);
    json!({ "source": sources, "detail-type": types })
}

/// The plumbing of one region, as [`ensure`] left it.
#[derive(Debug, Clone)]
pub struct Plumbing {
    pub region: String,
    pub account: String,
    pub queue_url: String,
    pub queue_arn: String,
    pub rule_arn: String,
    /// What [`ensure`] found and did, one change per kind (`none` when all was in place).
    pub changes: Vec<Change>,
}

fn owner() -> Owner<'static> {
    Owner {
        stack: DAEMON_OWNER,
        adopt_existing: false,
    }
}

/// The account the clients act in (STS `GetCallerIdentity`).
pub async fn account(aws: &Aws) -> Result<String, AwsError> {
    Ok(aws
        .sts
        .get_caller_identity()
        .send()
        .await
        .aws()?
        .account()
        .unwrap_or_default()
        .to_string())
}

/// Observes the queue and the rule named `name` in `aws`'s region and, in [`Mode::Apply`],
/// creates what is missing and corrects what drifted (a deleted queue or rule, a changed
/// pattern, a removed target, a rewritten queue policy). A queue or rule of that name that
/// the daemon does not own is left alone and reported as an error.
pub async fn ensure(aws: &Aws, name: &str, mode: Mode) -> Result<Plumbing, AwsError> {
    let account = account(aws).await?;
    let region = &aws.region;
    let queue_arn = format!("arn:aws:sqs:{region}:{account}:{name}");
    let rule_arn = format!("arn:aws:events:{region}:{account}:rule/{name}");
    let scope = Scope::named(vec![name.to_string()]);
    let tags = queue::daemon_tags(name);

    let live_queue = EventQueues.observe(aws, &scope).await?.remove(name);
    let want_queue = queue::QueueDesired {
        name: name.to_string(),
        rule_arn: rule_arn.clone(),
        arn: queue_arn.clone(),
        tags: tags.clone(),
    };
    let q = sync(
        &EventQueues,
        aws,
        &want_queue,
        live_queue.as_ref(),
        mode,
        owner(),
    )
    .await?;
    refuse_foreign(&q.change)?;
    let queue_url = q.live.as_ref().map(|l| l.url.clone()).unwrap_or_default();

    let live_rule = EventRules.observe(aws, &scope).await?.remove(name);
    let want_rule = rule::RuleDesired {
        name: name.to_string(),
        pattern: pattern(),
        queue_arn: queue_arn.clone(),
        tags,
    };
    let r = sync(
        &EventRules,
        aws,
        &want_rule,
        live_rule.as_ref(),
        mode,
        owner(),
    )
    .await?;
    refuse_foreign(&r.change)?;
    Ok(Plumbing {
        region: region.clone(),
        account,
        queue_url,
        queue_arn,
        rule_arn,
        changes: vec![q.change, r.change],
    })
}

fn refuse_foreign(change: &Change) -> Result<(), AwsError> {
    if change.action == Action::Blocked && change.diffs.is_empty() {
        return Err(AwsError::unexpected(
            "events",
            format!(
                "the {} `{}` exists and is not the daemon's ({}): give another name with `--events-name`, or use it as it is with `--events sqs:QUEUE_URL`",
                change.kind,
                change.name,
                change.reason.as_deref().unwrap_or("no ownership tags")
            ),
        ));
    }
    Ok(())
}

/// Deletes the rule, then the queue, named `name` in `aws`'s region: only if they carry the
/// daemon's ownership tags (`presta-reconciler events remove`).
pub async fn remove(aws: &Aws, name: &str, mode: Mode) -> Result<Vec<Change>, AwsError> {
    let scope = Scope::named(vec![name.to_string()]);
    let mut changes = Vec::new();
    let why = "the daemon's event plumbing, removed by `presta-reconciler events remove`";
    if let Some(live) = EventRules.observe(aws, &scope).await?.remove(name) {
        changes.push(remove_one(&EventRules, aws, name, &live, mode, owner(), why).await?);
    }
    if let Some(live) = EventQueues.observe(aws, &scope).await?.remove(name) {
        changes.push(remove_one(&EventQueues, aws, name, &live, mode, owner(), why).await?);
    }
    Ok(changes)
}

/// Whether a CloudTrail trail records the region's management write events (the source of
/// the "AWS API Call via CloudTrail" events): `Ok(trail name)`, or `Err(what is missing)`.
pub async fn trail_check(aws: &Aws) -> Result<Result<String, String>, AwsError> {
    let trails = aws
        .cloudtrail
        .describe_trails()
        .include_shadow_trails(true)
        .send()
        .await
        .aws()?;
    let list = trails.trail_list();
    if list.is_empty() {
        return Ok(Err(format!(
            "no CloudTrail trail in {}: AWS sends no \"AWS API Call via CloudTrail\" event without one, so only the services' own events and the periodic resync find drift; create a trail that logs management events (the daemon never creates one)",
            aws.region
        )));
    }
    let mut why = Vec::new();
    for t in list {
        let name = t.name().unwrap_or_default();
        let Some(arn) = t.trail_arn() else { continue };
        let logging = aws
            .cloudtrail
            .get_trail_status()
            .name(arn)
            .send()
            .await
            .aws()?
            .is_logging()
            .unwrap_or(false);
        if !logging {
            why.push(format!("trail `{name}` is not logging"));
            continue;
        }
        let sel = aws
            .cloudtrail
            .get_event_selectors()
            .trail_name(arn)
            .send()
            .await
            .aws()?;
        let classic = sel.event_selectors().iter().any(|s| {
            s.include_management_events().unwrap_or(true)
                && s.read_write_type()
                    .is_none_or(|rw| rw.as_str() != "ReadOnly")
        });
        let advanced = sel.advanced_event_selectors().iter().any(|s| {
            s.field_selectors().iter().any(|f| {
                f.field() == "eventCategory" && f.equals().iter().any(|v| v == "Management")
            })
        });
        let none_given =
            sel.event_selectors().is_empty() && sel.advanced_event_selectors().is_empty();
        if classic || advanced || none_given {
            return Ok(Ok(name.to_string()));
        }
        why.push(format!(
            "trail `{name}` does not record management write events"
        ));
    }
    Ok(Err(format!(
        "no CloudTrail trail in {} records management write events ({}): only the services' own events and the periodic resync find drift",
        aws.region,
        why.join("; ")
    )))
}

/// Puts the daemon's heartbeat on the region's default bus.
pub async fn heartbeat(aws: &Aws, daemon: &str) -> Result<(), AwsError> {
    let detail = json!({ "daemon": daemon, "sentAtMs": unix_ms(SystemTime::now()) });
    let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .source(HEARTBEAT_SOURCE)
        .detail_type(HEARTBEAT_DETAIL_TYPE)
        .detail(detail.to_string())
        .build();
    let out = aws.events.put_events().entries(entry).send().await.aws()?;
    if out.failed_entry_count() > 0 {
        let why = out
            .entries()
            .iter()
            .filter_map(|e| e.error_message())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(AwsError::unexpected("PutEvents", why));
    }
    Ok(())
}

/// One message taken from the queue.
#[derive(Debug, Clone)]
pub struct Message {
    pub receipt: String,
    pub body: String,
    /// When SQS received it.
    pub sent_at: Option<SystemTime>,
}

/// Long-polls the queue for up to `wait` (at most 20 s) and 10 messages.
pub async fn receive(aws: &Aws, url: &str, wait: Duration) -> Result<Vec<Message>, AwsError> {
    let out = aws
        .sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait.as_secs().min(20) as i32)
        .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
        .send()
        .await
        .aws()?;
    Ok(out
        .messages()
        .iter()
        .filter_map(|m| {
            let sent_at = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                .and_then(|v| v.parse::<u64>().ok())
                .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
            Some(Message {
                receipt: m.receipt_handle()?.to_string(),
                body: m.body().unwrap_or_default().to_string(),
                sent_at,
            })
        })
        .collect())
}

/// Deletes the messages of `receipts` (in batches of 10).
pub async fn delete(aws: &Aws, url: &str, receipts: &[String]) -> Result<(), AwsError> {
    for chunk in receipts.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .receipt_handle(r)
                    .build()
                    .ok()
            })
            .collect();
        aws.sqs
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .aws()?;
    }
    Ok(())
}

/// Messages waiting in the queue at `url` (approximate).
pub async fn depth(aws: &Aws, url: &str) -> Result<u64, AwsError> {
    let out = aws
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .aws()?;
    Ok(out
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// The region of an SQS queue URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`).
pub fn queue_url_region(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split('/').next()?;
    let mut parts = host.split('.');
    match (parts.next(), parts.next()) {
        (Some("sqs"), Some(region)) if region.contains('-') => Some(region.to_string()),
        (Some(region), Some("queue")) if region.contains('-') => Some(region.to_string()),
        _ => None,
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_takes_every_source_and_the_heartbeat() {
        let p = pattern();
        let sources: Vec<&str> = p["source"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        for s in SOURCES {
            assert!(sources.contains(s), "{s}");
        }
        assert!(sources.contains(&HEARTBEAT_SOURCE));
        let types = p["detail-type"].as_array().unwrap();
        assert!(types.iter().any(|t| t == CLOUDTRAIL_DETAIL_TYPE));
        assert!(types.iter().any(|t| t == HEARTBEAT_DETAIL_TYPE));
    }

    #[test]
    fn a_queue_urls_region() {
        assert_eq!(
            queue_url_region("https://sqs.eu-west-3.amazonaws.com/123456789012/q").as_deref(),
            Some("eu-west-3")
        );
        assert_eq!(
            queue_url_region("https://eu-west-1.queue.amazonaws.com/123456789012/q").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            queue_url_region("http://127.0.0.1:5000/123456789012/q"),
            None
        );
    }

    #[test]
    fn the_queue_policy_lets_only_the_rule_send() {
        let q = queue::QueueDesired {
            name: DEFAULT_NAME.into(),
            rule_arn: "arn:aws:events:eu-west-3:1:rule/presta-reconciler-events".into(),
            arn: "arn:aws:sqs:eu-west-3:1:presta-reconciler-events".into(),
            tags: queue::daemon_tags(DEFAULT_NAME),
        };
        let p = q.policy();
        let st = &p["Statement"][0];
        assert_eq!(st["Principal"]["Service"], "events.amazonaws.com");
        assert_eq!(st["Action"], "sqs:SendMessage");
        assert_eq!(
            st["Condition"]["ArnEquals"]["aws:SourceArn"],
            q.rule_arn.as_str()
        );
        assert_eq!(q.tags["presta-reconciler/stack"], DAEMON_OWNER);
    }
}
