//! Every kind's `delete`, through the generic `remove` and against the emulator: a resource
//! tagged for another stack is refused and stays; the stack's own is deleted; deleting it
//! again (absent) succeeds. Kinds are taken in reverse dependency order, as destroy does.

mod common;

use common::Env;

use presta_aws::{Action, Aws, Driver, Mode, Owner, remove};
use presta_engine::snapshot::{Snapshot, Targets};

const OWNER: Owner<'static> = Owner {
    stack: "demo",
    adopt_existing: false,
};

async fn connect(env: &Env) -> Aws {
    env.aws().await
}

async fn observe(aws: &Aws) -> Snapshot {
    Snapshot::observe_targets(
        aws,
        &Targets {
            stacks: vec![("demo".into(), "/presta-reconciler/demo".into())],
            ami_params: Vec::new(),
        },
    )
    .await
    .unwrap()
}

/// Puts `presta-reconciler/stack=value` on the resource the way a person would (the SDK).
async fn retag(env: &Env, kind: presta_aws::Kind, id: &str, value: &str) {
    use presta_aws::Kind::*;
    let sdk = env.sdk().await;
    let key = "presta-reconciler/stack";
    match kind {
        SecurityGroup | LaunchTemplate => {
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
        LoadBalancer | TargetGroup => {
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
        DbInstance | DbSubnetGroup => {
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
        FileSystem => {
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
        AutoScalingGroup => {
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
        Parameter => {
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
        Listener | MountTarget => unreachable!("owned through their parent"),
    }
}

/// The refusal, the delete and the repeated delete of one live resource, each decided on a
/// fresh observation (as destroy does). `tag_id` is the resource that carries the ownership
/// tags (the parent for listeners and mount targets); `get` finds the resource in an
/// observation.
#[allow(clippy::too_many_arguments)]
async fn check<D: Driver>(
    env: &Env,
    aws: &Aws,
    driver: &D,
    name: &str,
    tag_kind: presta_aws::Kind,
    tag_id: &str,
    get: impl Fn(&Snapshot) -> Option<D::Live>,
) {
    retag(env, tag_kind, tag_id, "other").await;
    let live = get(&observe(aws).await).expect("the resource exists");
    let refused = remove(driver, aws, name, &live, Mode::Apply, OWNER, "test")
        .await
        .unwrap();
    assert_eq!(refused.action, Action::Blocked, "{} {name}", D::KIND);
    assert!(
        refused
            .reason
            .as_deref()
            .unwrap()
            .contains("belongs to stack `other`"),
        "{refused:?}"
    );
    assert!(
        get(&observe(aws).await).is_some(),
        "{} {name} was deleted although another stack owns it",
        D::KIND
    );
    retag(env, tag_kind, tag_id, "demo").await;
    let live = get(&observe(aws).await).expect("the resource exists");
    let planned = remove(driver, aws, name, &live, Mode::Plan, OWNER, "test")
        .await
        .unwrap();
    assert_eq!(planned.action, Action::Delete);
    assert!(get(&observe(aws).await).is_some(), "a plan deletes nothing");
    let deleted = remove(driver, aws, name, &live, Mode::Apply, OWNER, "test")
        .await
        .unwrap();
    assert_eq!(deleted.action, Action::Delete, "{deleted:?}");
    assert!(
        get(&observe(aws).await).is_none(),
        "{} {name} is still there after its delete",
        D::KIND
    );
    // Absent is success.
    driver.delete(aws, &live).await.unwrap_or_else(|e| {
        panic!("deleting {} {name} again: {e}", D::KIND);
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_deletes_what_it_owns_and_refuses_what_it_does_not() {
    use presta_aws::Kind;
    use presta_aws::auto_scaling_group::AutoScalingGroups;
    use presta_aws::db_instance::DbInstances;
    use presta_aws::db_subnet_group::DbSubnetGroups;
    use presta_aws::file_system::FileSystems;
    use presta_aws::launch_template::LaunchTemplates;
    use presta_aws::listener::Listeners;
    use presta_aws::load_balancer::LoadBalancers;
    use presta_aws::mount_target::MountTargets;
    use presta_aws::parameter::Parameters;
    use presta_aws::security_group::SecurityGroups;
    use presta_aws::target_group::TargetGroups;

    let env = Env::start();
    env.apply(&env.demo());
    let aws = connect(&env).await;
    let snap = observe(&aws).await;

    check(
        &env,
        &aws,
        &AutoScalingGroups,
        "demo-app",
        Kind::AutoScalingGroup,
        "demo-app",
        |s: &Snapshot| s.auto_scaling_groups.get("demo-app").cloned(),
    )
    .await;

    let lt = snap.launch_templates["demo-app"].clone();
    check(
        &env,
        &aws,
        &LaunchTemplates,
        "demo-app",
        Kind::LaunchTemplate,
        &lt.id,
        |s: &Snapshot| s.launch_templates.get("demo-app").cloned(),
    )
    .await;

    let lb = snap.load_balancers["demo-alb"].clone();
    for l in snap.listeners.values() {
        let key = l.key.clone();
        check(
            &env,
            &aws,
            &Listeners,
            &key,
            Kind::LoadBalancer,
            &lb.arn,
            |s: &Snapshot| s.listeners.get(&key).cloned(),
        )
        .await;
    }
    check(
        &env,
        &aws,
        &LoadBalancers,
        "demo-alb",
        Kind::LoadBalancer,
        &lb.arn,
        |s: &Snapshot| s.load_balancers.get("demo-alb").cloned(),
    )
    .await;

    let tg = snap.target_groups["demo-tg"].clone();
    check(
        &env,
        &aws,
        &TargetGroups,
        "demo-tg",
        Kind::TargetGroup,
        &tg.arn,
        |s: &Snapshot| s.target_groups.get("demo-tg").cloned(),
    )
    .await;

    let db = snap.db_instances["demo-db"].clone();
    check(
        &env,
        &aws,
        &DbInstances,
        "demo-db",
        Kind::DbInstance,
        &db.arn,
        |s: &Snapshot| s.db_instances.get("demo-db").cloned(),
    )
    .await;
    // The database's delete keeps a final snapshot with the stack's tags.
    let kept = presta_aws::db_snapshot::newest_owned(&aws, "demo-db", "demo")
        .await
        .unwrap()
        .expect("a final snapshot with the stack's tags");
    assert!(kept.id.starts_with("demo-db-final-"), "{kept:?}");

    let fs = snap.file_systems["presta-reconciler-demo-efs"].clone();
    for m in snap.mount_targets.values() {
        let key = presta_aws::mount_target::key(&m.file_system_id, &m.subnet_id);
        check(
            &env,
            &aws,
            &MountTargets,
            &key,
            Kind::FileSystem,
            &fs.id,
            |s: &Snapshot| s.mount_targets.get(&key).cloned(),
        )
        .await;
    }
    check(
        &env,
        &aws,
        &FileSystems,
        "demo-efs",
        Kind::FileSystem,
        &fs.id,
        |s: &Snapshot| s.file_systems.get("presta-reconciler-demo-efs").cloned(),
    )
    .await;

    let group = snap.db_subnet_groups["demo-db-subnets"].clone();
    check(
        &env,
        &aws,
        &DbSubnetGroups,
        "demo-db-subnets",
        Kind::DbSubnetGroup,
        &group.arn,
        |s: &Snapshot| s.db_subnet_groups.get("demo-db-subnets").cloned(),
    )
    .await;

    for name in ["demo-db-sg", "demo-efs-sg", "demo-app-sg", "demo-alb-sg"] {
        let sg = snap.security_groups[name].clone();
        check(
            &env,
            &aws,
            &SecurityGroups,
            name,
            Kind::SecurityGroup,
            &sg.id,
            |s: &Snapshot| s.security_groups.get(name).cloned(),
        )
        .await;
    }

    for p in snap.parameters.values() {
        let name = p.name.clone();
        check(
            &env,
            &aws,
            &Parameters,
            &name,
            Kind::Parameter,
            &name,
            |s: &Snapshot| s.parameters.get(&name).cloned(),
        )
        .await;
    }
    let left = observe(&aws).await;
    assert!(
        left.security_groups.is_empty()
            && left.parameters.is_empty()
            && left.file_systems.is_empty()
    );
}
