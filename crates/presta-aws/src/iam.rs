//! The daemon's IAM policy, generated from the registry: each kind's declared actions
//! ([`crate::registry::Iam`]: reads on every resource, creations only with the ownership tag
//! in the request, changes only on resources that carry it, and the kind's own statements for
//! what tags cannot bound), plus the few statements that belong to no kind (the network
//! inventory, maintenance commands, the instance profile, service-linked roles, the lease).
//! `deploy/iam/policy.json` is this policy, printed by `presta-reconciler iam-policy
//! --reference`; a test keeps the two equal.

use serde_json::{Value, json};

use crate::registry::{DAEMON_KINDS, KINDS};
use presta_spec::naming::{MANAGED_BY_VALUE, TAG_MANAGED_BY};

/// The stacks' parameters (narrowed to each stack's prefix by `iam-policy -f`).
pub const SSM_ANY: &str = "arn:aws:ssm:*:*:parameter/presta-reconciler/*";
/// The roles the stacks' instance profiles may carry (narrowed by `iam-policy -f`).
pub const PASS_ROLE_ANY: &str = "arn:aws:iam::*:role/presta-*";
/// The default lease table (narrowed to `--lease-table` by `iam-policy`).
pub const LEASE_TABLE: &str = "arn:aws:dynamodb:*:*:table/presta-reconciler-lease";

/// Reads that belong to no kind: the network inventory and maintenance command results.
const OTHER_READS: &[&str] = &[
    "ec2:DescribeVpcs",
    "ec2:DescribeSubnets",
    "ssm:ListCommands",
    "ssm:ListCommandInvocations",
];

/// `"Condition"` that a request carries the ownership tag.
pub fn request_tagged() -> Value {
    json!({ "StringEquals": { format!("aws:RequestTag/{TAG_MANAGED_BY}"): MANAGED_BY_VALUE } })
}

/// `"Condition"` that the resource carries the ownership tag.
pub fn resource_tagged() -> Value {
    json!({ "StringEquals": { format!("aws:ResourceTag/{TAG_MANAGED_BY}"): MANAGED_BY_VALUE } })
}

/// Tagging allowed only in the call that creates the resource (`<service>:CreateAction`),
/// and only with the ownership tag.
pub fn tag_while_creating(sid: &str, service: &str, action: &str, creates: &[&str]) -> Value {
    let mut cond = request_tagged();
    cond["StringEquals"][format!("{service}:CreateAction")] = json!(creates);
    allow(sid, &[action], json!("*"), Some(cond))
}

/// One statement.
pub fn allow(sid: &str, actions: &[&str], resource: Value, condition: Option<Value>) -> Value {
    let mut st = json!({
        "Sid": sid,
        "Effect": "Allow",
        "Action": actions,
        "Resource": resource,
    });
    if let Some(c) = condition {
        st["Condition"] = c;
    }
    st
}

fn union(lists: impl Iterator<Item = &'static [&'static str]>) -> Vec<&'static str> {
    let mut all: Vec<&'static str> = lists.flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// The reference policy: every action the kinds declare, bounded as they declare.
pub fn reference_policy() -> Value {
    let reads = union(
        KINDS
            .iter()
            .chain(DAEMON_KINDS)
            .map(|k| k.iam().read)
            .chain(std::iter::once(OTHER_READS)),
    );
    let creates = union(KINDS.iter().map(|k| k.iam().create));
    let changes = union(KINDS.iter().map(|k| k.iam().change));
    let mut statements = vec![allow(
        "ObserveEverythingTheStacksUse",
        &reads,
        json!("*"),
        None,
    )];
    statements.extend(
        KINDS
            .iter()
            .chain(DAEMON_KINDS)
            .flat_map(|k| (k.iam().statements)()),
    );
    statements.push(allow(
        "CreateOnlyWithTheOwnershipTag",
        &creates,
        json!("*"),
        Some(request_tagged()),
    ));
    statements.push(allow(
        "ChangeOnlyWhatTheStacksOwn",
        &changes,
        json!("*"),
        Some(resource_tagged()),
    ));
    statements.extend([
        allow(
            "HandTheInstanceProfileToTheInstances",
            &["iam:PassRole"],
            json!(PASS_ROLE_ANY),
            Some(json!({ "StringEquals": { "iam:PassedToService": "ec2.amazonaws.com" } })),
        ),
        allow(
            "FirstUseOfAServiceInTheAccount",
            &["iam:CreateServiceLinkedRole"],
            json!("*"),
            Some(json!({ "StringEquals": { "iam:AWSServiceName": [
                "autoscaling.amazonaws.com",
                "elasticloadbalancing.amazonaws.com",
                "rds.amazonaws.com",
                "elasticfilesystem.amazonaws.com"
            ] } })),
        ),
        allow(
            "RunTheRunbooksCommandsWithTheShellDocumentOnly",
            &["ssm:SendCommand"],
            json!("arn:aws:ssm:*::document/AWS-RunShellScript"),
            None,
        ),
        allow(
            "RunTheRunbooksCommandsOnTheStacksInstancesOnly",
            &["ssm:SendCommand"],
            json!("arn:aws:ec2:*:*:instance/*"),
            Some(json!({ "StringLike": { "ssm:resourceTag/aws:autoscaling:groupName": "*-app" } })),
        ),
        allow(
            "KeepTheLeaseAmongReplicas",
            &[
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:DeleteItem",
            ],
            json!(LEASE_TABLE),
            None,
        ),
    ]);
    json!({ "Version": "2012-10-17", "Statement": statements })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// `describe_db_instances` → `describedbinstances`; IAM names compare case-insensitively.
    fn squash(s: &str) -> String {
        s.replace('_', "").to_lowercase()
    }

    /// The SDK operations called in `file` (tests excluded), as `prefix:operation` squashed.
    fn calls_in(file: &str) -> BTreeSet<String> {
        let prefixes = [
            ("ec2", "ec2"),
            ("elbv2", "elasticloadbalancing"),
            ("autoscaling", "autoscaling"),
            ("rds", "rds"),
            ("efs", "elasticfilesystem"),
            ("ssm", "ssm"),
            ("acm", "acm"),
            ("route53", "route53"),
            ("sqs", "sqs"),
            ("events", "events"),
            ("cloudtrail", "cloudtrail"),
            ("sts", "sts"),
        ];
        let mut path = format!("{}/src/{file}", env!("CARGO_MANIFEST_DIR"));
        // A kind split into a folder: its `mod.rs`.
        if !std::path::Path::new(&path).exists() {
            path = path.replace(".rs", "/mod.rs");
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let code = text.split("#[cfg(test)]").next().unwrap();
        let flat: String = code.split_whitespace().collect();
        let mut ops = BTreeSet::new();
        for (client, prefix) in prefixes {
            let needle = format!("{client}.");
            let mut rest = flat.as_str();
            while let Some(i) = rest.find(&needle) {
                let before = rest[..i].chars().last();
                rest = &rest[i + needle.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let op: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !op.is_empty() && rest[op.len()..].starts_with("()") {
                    ops.insert(format!("{prefix}:{}", squash(&op)));
                }
            }
        }
        ops
    }

    /// Helper modules whose calls a kind makes (the database's snapshots).
    const HELPERS: &[(&str, &str)] = &[
        ("db_snapshot.rs", "db_instance"),
        ("db_password.rs", "db_instance"),
        ("instances.rs", "auto_scaling_group"),
        ("efs_policies.rs", "file_system"),
        ("dns_record/batch.rs", "dns_record"),
    ];

    #[test]
    fn every_call_of_a_kind_is_declared_by_that_kind() {
        for entry in KINDS {
            let label = entry.kind().as_str();
            let declared: BTreeSet<String> = entry
                .iam()
                .all()
                .into_iter()
                .map(|a| {
                    let (p, op) = a.split_once(':').unwrap();
                    format!("{p}:{}", squash(op))
                })
                .collect();
            let mut called = calls_in(&format!("{label}.rs"));
            assert!(!called.is_empty(), "{label}.rs calls nothing?");
            for (file, kind) in HELPERS {
                if *kind == label {
                    called.extend(calls_in(file));
                }
            }
            let missing: Vec<_> = called.difference(&declared).collect();
            assert!(
                missing.is_empty(),
                "{label}: calls {missing:?} without declaring them in its `IAM`"
            );
        }
    }

    #[test]
    fn every_call_of_the_event_plumbing_is_declared_by_its_kinds() {
        let declared: BTreeSet<String> = DAEMON_KINDS
            .iter()
            .flat_map(|k| k.iam().all())
            .map(|a| {
                let (p, op) = a.split_once(':').unwrap();
                format!("{p}:{}", squash(op))
            })
            .collect();
        let mut called = BTreeSet::new();
        for file in ["events/queue.rs", "events/rule.rs", "events/mod.rs"] {
            called.extend(calls_in(file));
        }
        assert!(called.contains("sqs:receivemessage"), "{called:?}");
        // `DeleteMessageBatch` is allowed by `sqs:DeleteMessage`.
        let called: BTreeSet<String> = called
            .into_iter()
            .map(|c| c.replace("deletemessagebatch", "deletemessage"))
            .collect();
        let missing: Vec<_> = called.difference(&declared).collect();
        assert!(
            missing.is_empty(),
            "the event plumbing calls {missing:?} undeclared"
        );
    }

    #[test]
    fn the_policy_holds_every_declared_action_bounded() {
        let policy = reference_policy();
        let text = policy.to_string();
        for entry in KINDS.iter().chain(DAEMON_KINDS) {
            for a in entry.iam().all() {
                assert!(text.contains(&format!("\"{a}\"")), "{a} not granted");
            }
        }
        let sids: Vec<&str> = policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Sid"].as_str().unwrap())
            .collect();
        let unique: BTreeSet<_> = sids.iter().collect();
        assert_eq!(
            unique.len(),
            sids.len(),
            "statement ids are unique: {sids:?}"
        );
    }
}
