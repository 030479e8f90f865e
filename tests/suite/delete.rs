//! Every kind's `delete`, through the generic `remove` and against the emulator: a resource
//! tagged for another stack is refused and stays; the stack's own is deleted; deleting it
//! again (absent) succeeds. Every registered kind is taken, in destroy's order: a new kind
//! without a case here fails this test.

use crate::common;

use common::Env;

use std::collections::BTreeSet;

use presta_aws::listener::Listeners;
use presta_aws::mount_target::MountTargets;
use presta_aws::registry::{self, KINDS, KindEntry};
use presta_aws::{Action, Aws, Kind, Mode, Owner};
use presta_engine::snapshot::{Snapshot, Targets};

const OWNER: Owner<'static> = Owner {
    stack: "demo",
    adopt_existing: false,
};

async fn connect(env: &Env) -> Aws {
    env.aws().await
}

/// The demo stack with its names in DNS (`spec.dns`: a certificate and records of its own).
fn with_dns(env: &Env) -> std::path::PathBuf {
    env.config("dns.yaml", |t| {
        t.replace(
            "  prestashop:\n",
            "  dns:\n    hostedZone: demo.example.com\n    extraNames: [www.shop.demo.example.com]\n  prestashop:\n    domain: shop.demo.example.com\n",
        )
    })
}

async fn observe(aws: &Aws) -> Snapshot {
    let mut names =
        presta_spec::naming::StackNames::deterministic("demo", "/presta-reconciler/demo");
    names.front = Some(presta_spec::naming::FrontNames {
        hosted_zone: "demo.example.com".into(),
        names: vec![
            "shop.demo.example.com".into(),
            "www.shop.demo.example.com".into(),
        ],
        own_certificate: true,
    });
    Snapshot::observe_targets(aws, &Targets::one(names))
        .await
        .unwrap()
}

/// Puts `presta-reconciler/stack=value` on the resource the way a person would (the SDK).
async fn retag(env: &Env, kind: Kind, id: &str, value: &str) {
    let sdk = env.sdk().await;
    let key = "presta-reconciler/stack";
    match kind {
        Kind::SECURITY_GROUP | Kind::LAUNCH_TEMPLATE => {
            aws_sdk_ec2::Client::new(&sdk)
                .create_tags()
                .resources(id)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key(key)
                        .value(value)
                        .build(),
                )
                .send()
                .await
                .unwrap();
        }
        Kind::LOAD_BALANCER | Kind::TARGET_GROUP | Kind::LISTENER_RULE => {
            aws_sdk_elasticloadbalancingv2::Client::new(&sdk)
                .add_tags()
                .resource_arns(id)
                .tags(
                    aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                        .key(key)
                        .value(value)
                        .build(),
                )
                .send()
                .await
                .unwrap();
        }
        Kind::DB_INSTANCE | Kind::DB_SUBNET_GROUP => {
            aws_sdk_rds::Client::new(&sdk)
                .add_tags_to_resource()
                .resource_name(id)
                .tags(
                    aws_sdk_rds::types::Tag::builder()
                        .key(key)
                        .value(value)
                        .build(),
                )
                .send()
                .await
                .unwrap();
        }
        Kind::FILE_SYSTEM => {
            aws_sdk_efs::Client::new(&sdk)
                .tag_resource()
                .resource_id(id)
                .tags(
                    aws_sdk_efs::types::Tag::builder()
                        .key(key)
                        .value(value)
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
        }
        Kind::AUTO_SCALING_GROUP => {
            aws_sdk_autoscaling::Client::new(&sdk)
                .create_or_update_tags()
                .tags(
                    aws_sdk_autoscaling::types::Tag::builder()
                        .resource_id(id)
                        .resource_type("auto-scaling-group")
                        .key(key)
                        .value(value)
                        .propagate_at_launch(true)
                        .build(),
                )
                .send()
                .await
                .unwrap();
        }
        Kind::PARAMETER => {
            aws_sdk_ssm::Client::new(&sdk)
                .add_tags_to_resource()
                .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
                .resource_id(id)
                .tags(
                    aws_sdk_ssm::types::Tag::builder()
                        .key(key)
                        .value(value)
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
        }
        Kind::CERTIFICATE => {
            aws_sdk_acm::Client::new(&sdk)
                .add_tags_to_certificate()
                .certificate_arn(id)
                .tags(
                    aws_sdk_acm::types::Tag::builder()
                        .key(key)
                        .value(value)
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
        }
        Kind::DNS_RECORD => {
            // Route 53 records have no tags: their ownership is the TXT record beside them.
            use aws_sdk_route53::types::{
                Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
            };
            let (name, rtype) = id.split_once(' ').unwrap();
            let zone = env.emu.network("demo").unwrap().hosted_zone_id.clone();
            let txt = ResourceRecordSet::builder()
                .name(presta_aws::dns_record::owner_name(name, rtype))
                .r#type(RrType::Txt)
                .ttl(300)
                .resource_records(
                    ResourceRecord::builder()
                        .value(presta_aws::dns_record::owner_value(value))
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap();
            aws_sdk_route53::Client::new(&sdk)
                .change_resource_record_sets()
                .hosted_zone_id(zone)
                .change_batch(
                    ChangeBatch::builder()
                        .changes(
                            Change::builder()
                                .action(ChangeAction::Upsert)
                                .resource_record_set(txt)
                                .build()
                                .unwrap(),
                        )
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
        }
        other => panic!(
            "no way to retag a {other}: a new kind needs its tagging call here (the test iterates the registry)"
        ),
    }
}

/// The resource that carries `item`'s ownership tags: itself, or for kinds observed
/// through a parent (listeners, mount targets) that parent.
fn carrier(snap: &Snapshot, item: &registry::Item) -> (Kind, String) {
    match item.kind {
        Kind::LISTENER => {
            let l = snap.get::<Listeners>(&item.name).unwrap();
            (Kind::LOAD_BALANCER, l.load_balancer_arn.clone())
        }
        Kind::MOUNT_TARGET => {
            let m = snap.get::<MountTargets>(&item.name).unwrap();
            (Kind::FILE_SYSTEM, m.file_system_id.clone())
        }
        Kind::DB_INSTANCE | Kind::DB_SUBNET_GROUP | Kind::LOAD_BALANCER | Kind::TARGET_GROUP => {
            // Tagged by ARN.
            (item.kind, arn_of(snap, item))
        }
        // Tagged by name.
        Kind::AUTO_SCALING_GROUP | Kind::PARAMETER => (item.kind, item.name.clone()),
        _ => (item.kind, item.id.clone()),
    }
}

fn arn_of(snap: &Snapshot, item: &registry::Item) -> String {
    match item.kind {
        Kind::DB_SUBNET_GROUP => snap
            .get::<presta_aws::db_subnet_group::DbSubnetGroups>(&item.name)
            .unwrap()
            .arn
            .clone(),
        Kind::DB_INSTANCE => snap
            .get::<presta_aws::db_instance::DbInstances>(&item.name)
            .unwrap()
            .arn
            .clone(),
        _ => item.id.clone(),
    }
}

fn exists(snap: &Snapshot, entry: &dyn KindEntry, name: &str) -> bool {
    entry.observed_items(snap).iter().any(|i| i.name == name)
}

/// The refusal, the plan, the delete and the repeated delete of one live resource, each
/// decided on a fresh observation (as destroy does).
async fn check(env: &Env, aws: &Aws, entry: &dyn KindEntry, item: &registry::Item) {
    let name = item.name.as_str();
    let kind = item.kind;
    let (tag_kind, tag_id) = carrier(&observe(aws).await, item);
    retag(env, tag_kind, &tag_id, "other").await;
    let snap = observe(aws).await;
    let refused = entry
        .remove_observed(aws, &snap, name, Mode::Apply, OWNER, "test")
        .await
        .unwrap()
        .expect("the resource exists");
    assert_eq!(refused.action, Action::Blocked, "{kind} {name}");
    assert!(
        refused
            .reason
            .as_deref()
            .unwrap()
            .contains("belongs to stack `other`"),
        "{refused:?}"
    );
    assert!(
        exists(&observe(aws).await, entry, name),
        "{kind} {name} was deleted although another stack owns it"
    );
    retag(env, tag_kind, &tag_id, "demo").await;
    let snap = observe(aws).await;
    let planned = entry
        .remove_observed(aws, &snap, name, Mode::Plan, OWNER, "test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(planned.action, Action::Delete);
    assert!(
        exists(&observe(aws).await, entry, name),
        "a plan deletes nothing"
    );
    let deleted = entry
        .remove_observed(aws, &snap, name, Mode::Apply, OWNER, "test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deleted.action, Action::Delete, "{deleted:?}");
    assert!(
        !exists(&observe(aws).await, entry, name),
        "{kind} {name} is still there after its delete"
    );
    // Absent is success: the same delete again, from the same (now stale) observation.
    let again = entry
        .remove_observed(aws, &snap, name, Mode::Apply, OWNER, "test")
        .await
        .unwrap_or_else(|e| panic!("deleting {kind} {name} again: {e}"))
        .unwrap();
    assert_eq!(again.action, Action::Delete, "{again:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_deletes_what_it_owns_and_refuses_what_it_does_not() {
    let env = Env::start();
    env.apply(&with_dns(&env));
    let aws = connect(&env).await;
    let snap = observe(&aws).await;
    // Every resource of every registered kind, in destroy's order.
    let mut items: Vec<(&dyn KindEntry, registry::Item)> = KINDS
        .iter()
        .flat_map(|e| e.observed_items(&snap).into_iter().map(move |i| (*e, i)))
        .collect();
    items.sort_by_key(|(_, i)| i.teardown.order);
    let mut seen = BTreeSet::new();
    for (entry, item) in &items {
        check(&env, &aws, *entry, item).await;
        seen.insert(item.kind);
        if item.kind == Kind::DB_INSTANCE {
            // The database's delete keeps a final snapshot with the stack's tags.
            let kept = presta_aws::db_snapshot::newest_owned(&aws, "demo-db", "demo")
                .await
                .unwrap()
                .expect("a final snapshot with the stack's tags");
            assert!(kept.id.starts_with("demo-db-final-"), "{kept:?}");
        }
    }
    assert_eq!(
        seen,
        registry::kinds().collect::<BTreeSet<_>>(),
        "the demo stack has a resource of every registered kind, each deleted here"
    );
    let left = observe(&aws).await;
    for e in KINDS {
        assert!(
            e.observed_items(&left).is_empty(),
            "{} left: {:?}",
            e.kind(),
            e.observed_items(&left)
        );
    }
}
