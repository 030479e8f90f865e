//! The engine's orchestration on the in-memory fake of AWS (`presta-testkit`), under paused
//! time: what the engine decides (order, waiting, the change budget, the data rule, destroy's
//! order, refused calls), tested in milliseconds. The drivers' requests and AWS's answers are
//! proven against the emulator in the other files.

use crate::fake;

use std::sync::Arc;
use std::time::Duration;

use fake::*;
use presta_aws::{Action, Mode};
use presta_engine::{Engine, Settings};
use presta_testkit::FakeAws;

#[tokio::test(start_paused = true)]
async fn apply_builds_the_demo_stack_and_a_second_run_changes_nothing() {
    let fake = FakeAws::new();
    fake.seed("demo");
    let stacks = demo(|t| t);
    let engine = engine(&fake);
    let report = engine.run(&stacks, Mode::Apply).await;
    let stack = &report.stacks[0];
    assert_eq!(stack.failed(), 0, "{}", report.render());
    assert_eq!(stack.changes.len(), 16, "{}", report.render());
    assert!(
        stack.changes.iter().all(|c| c.action == Action::Create),
        "{}",
        report.render()
    );
    assert!(
        fake.mutating_calls()
            .contains(&"CreateDBInstance".to_string())
    );

    fake.reset_calls();
    let again = engine.run(&stacks, Mode::Apply).await;
    assert!(again.stacks[0].converged(), "{}", again.render());
    assert_eq!(
        fake.mutating_calls(),
        Vec::<String>::new(),
        "{}",
        again.render()
    );
}

#[tokio::test(start_paused = true)]
async fn a_stack_pointed_at_another_vpc_is_held_until_that_exact_plan_is_approved() {
    let (fake, engine) = built(&["other"]).await;
    let moved = demo(other_vpc);

    let plan = engine.run(&moved, Mode::Plan).await;
    let held = plan.stacks[0].held.clone().expect("held");
    assert!(held.changes > 5, "{held:?}");
    assert!(held.reason.contains("maxChangesPerRun = 5"), "{held:?}");
    assert!(held.reason.contains("cannot move between VPCs"), "{held:?}");

    let apply = engine.run(&moved, Mode::Apply).await;
    assert_eq!(
        apply.stacks[0].held.as_ref().map(|h| &h.plan_hash),
        Some(&held.plan_hash)
    );
    let wrong = engine
        .run_guarded(&moved, Mode::Apply, &approving("demo", "0123456789abcdef"))
        .await;
    assert!(wrong.stacks[0].held.is_some());
    assert_eq!(fake.mutating_calls(), Vec::<String>::new());

    // The same move under a large budget is held all the same, for the move alone.
    let roomy = demo(|t| budget(other_vpc(t), 100));
    let plan = engine.run(&roomy, Mode::Plan).await;
    let reason = plan.stacks[0].held.as_ref().expect("held").reason.clone();
    assert!(reason.contains("cannot move between VPCs"), "{reason}");
    assert!(!reason.contains("maxChangesPerRun"), "{reason}");

    // The approved hash applies exactly that plan; nothing holding data is deleted.
    let approved = engine
        .run_guarded(&moved, Mode::Apply, &approving("demo", &held.plan_hash))
        .await;
    assert!(approved.stacks[0].held.is_none(), "{}", approved.render());
    let calls = fake.mutating_calls();
    assert!(
        calls.contains(&"ModifyDBSubnetGroup".to_string()),
        "{calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c == "DeleteDBInstance" || c == "DeleteFileSystem"),
        "{calls:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_stack_is_not_limited_and_an_existing_one_only_as_far_as_its_budget() {
    let fake = FakeAws::new();
    fake.seed("demo");
    let engine = engine(&fake);
    // Creating the whole stack (16 resources) is not limited by a budget of 1.
    let created = engine.run(&demo(|t| budget(t, 1)), Mode::Apply).await;
    assert!(created.stacks[0].held.is_none(), "{}", created.render());
    assert_eq!(created.stacks[0].changes.len(), 16);
    // One change fits a budget of one...
    let one = demo(|t| budget(t, 1).replace("minSize: 1", "minSize: 2"));
    let applied = engine.run(&one, Mode::Apply).await;
    assert!(applied.stacks[0].held.is_none(), "{}", applied.render());
    assert_eq!(
        actions(&applied.stacks[0]),
        ["auto_scaling_group demo-app Update"]
    );
    // ...two do not, and nothing is changed.
    fake.reset_calls();
    let two = demo(|t| {
        budget(t, 1)
            .replace("minSize: 1", "minSize: 2")
            .replace("    backupRetentionDays: 1", "    backupRetentionDays: 3")
            .replace("maxSize: 2", "maxSize: 3")
    });
    let held = engine.run(&two, Mode::Apply).await;
    let h = held.stacks[0].held.as_ref().expect("held");
    assert_eq!(h.changes, 2, "{h:?}");
    assert_eq!(fake.mutating_calls(), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn a_stack_whose_data_lives_elsewhere_is_held_rather_than_given_a_second_database() {
    let (fake, engine) = built(&[]).await;
    let renamed = demo(|t| t.replace("  name: demo\n", "  name: demo2\n"));
    let mut guards = presta_engine::budget::Guards::new();
    guards.entry("demo2".into()).or_default().presumed_existing = Some("renamed from demo".into());
    let report = engine.run_guarded(&renamed, Mode::Apply, &guards).await;
    let held = report.stacks[0].held.as_ref().expect("held");
    assert!(held.reason.contains("db_instance demo2-db"), "{held:?}");
    assert!(held.reason.contains("renamed from demo"), "{held:?}");
    assert_eq!(fake.mutating_calls(), Vec::<String>::new());
    // Without the presumption, a new stack is simply created.
    let fresh = engine.run(&renamed, Mode::Apply).await;
    assert!(fresh.stacks[0].held.is_none());
    assert!(
        fake.mutating_calls()
            .contains(&"CreateDBInstance".to_string())
    );
}

#[tokio::test(start_paused = true)]
async fn apply_waits_for_the_database_before_the_launch_template_that_needs_its_address() {
    let fake = FakeAws::new();
    fake.seed("demo");
    fake.set_delays(presta_testkit::Delays {
        database: Duration::from_secs(12 * 60),
        ..presta_testkit::Delays::default()
    });
    let engine = engine(&fake);
    let started = tokio::time::Instant::now();
    let report = engine.run(&demo(|t| t), Mode::Apply).await;
    assert_eq!(report.stacks[0].failed(), 0, "{}", report.render());
    assert!(
        started.elapsed() >= Duration::from_secs(12 * 60),
        "{:?}",
        started.elapsed()
    );
    let calls = fake.calls();
    let db = calls.iter().position(|c| c == "CreateDBInstance").unwrap();
    let lt = calls
        .iter()
        .position(|c| c == "CreateLaunchTemplate")
        .unwrap();
    assert!(db < lt, "{calls:?}");
    // It polled in between, not in a tight loop: about one look per poll interval.
    let polls = calls[db..lt]
        .iter()
        .filter(|c| *c == "DescribeDBInstances")
        .count();
    assert!(
        (100..=160).contains(&polls),
        "{polls} polls in 12 minutes every 5 s"
    );
}

#[tokio::test(start_paused = true)]
async fn a_database_slower_than_the_wait_leaves_its_dependents_waiting_for_the_next_run() {
    let fake = FakeAws::new();
    fake.seed("demo");
    fake.set_delays(presta_testkit::Delays {
        database: Duration::from_secs(40 * 60),
        ..presta_testkit::Delays::default()
    });
    let engine = Engine::new(Settings {
        wait_timeout: Duration::from_secs(10 * 60),
        ..Settings {
            client: fake.settings(),
            poll_interval: Duration::from_secs(15),
            progress: Arc::new(Quiet),
            ..Settings::default()
        }
    });
    let first = engine.run(&demo(|t| t), Mode::Apply).await;
    let text = first.render();
    let waiting: Vec<String> = actions(&first.stacks[0])
        .into_iter()
        .filter(|a| a.ends_with("Waiting"))
        .collect();
    assert!(!waiting.is_empty(), "{text}");
    assert!(
        !fake.calls().contains(&"CreateLaunchTemplate".to_string()),
        "{text}"
    );
    assert_eq!(
        first.stacks[0].failed(),
        0,
        "waiting is not failing: {text}"
    );

    tokio::time::advance(Duration::from_secs(40 * 60)).await;
    let second = engine.run(&demo(|t| t), Mode::Apply).await;
    assert!(
        fake.calls().contains(&"CreateLaunchTemplate".to_string()),
        "{}",
        second.render()
    );
    let third = engine.run(&demo(|t| t), Mode::Apply).await;
    assert!(third.stacks[0].converged(), "{}", third.render());
}

#[tokio::test(start_paused = true)]
async fn a_refused_call_fails_its_resource_with_its_class_and_the_next_run_finishes() {
    let fake = FakeAws::new();
    fake.seed("demo");
    fake.fail("CreateTargetGroup", "AccessDenied", None);
    let engine = engine(&fake);
    let report = engine.run(&demo(|t| t), Mode::Apply).await;
    let stack = &report.stacks[0];
    let tg = stack
        .changes
        .iter()
        .find(|c| c.kind.as_str() == "target_group")
        .expect("the target group");
    assert_eq!(tg.action, Action::Failed, "{}", report.render());
    assert_eq!(tg.error_class, Some(presta_aws::ErrorClass::Refused));
    assert!(
        tg.reason
            .as_deref()
            .unwrap_or_default()
            .contains("AccessDenied"),
        "{tg:?}"
    );
    // What does not need the target group is built all the same.
    let calls = fake.mutating_calls();
    for op in ["CreateDBInstance", "CreateFileSystem", "CreateLoadBalancer"] {
        assert!(calls.contains(&op.to_string()), "{op}: {calls:?}");
    }
    assert!(
        !calls.contains(&"CreateAutoScalingGroup".to_string()),
        "{calls:?}"
    );

    fake.heal("CreateTargetGroup");
    let again = engine.run(&demo(|t| t), Mode::Apply).await;
    assert_eq!(again.stacks[0].failed(), 0, "{}", again.render());
    assert!(
        fake.mutating_calls()
            .contains(&"CreateAutoScalingGroup".to_string())
    );
}

#[tokio::test(start_paused = true)]
async fn a_throttled_observation_changes_nothing_and_says_so() {
    let (fake, engine) = built(&[]).await;
    fake.fail("DescribeLoadBalancers", "Throttling", None);
    let report = engine.run(&demo(|t| t), Mode::Apply).await;
    let stack = &report.stacks[0];
    assert_eq!(
        stack.error_class,
        Some(presta_aws::ErrorClass::Transient),
        "{}",
        report.render()
    );
    assert!(
        stack
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("Throttling")
    );
    assert_eq!(fake.mutating_calls(), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn drift_made_by_hand_is_named_field_by_field_and_healed() {
    let (fake, engine) = built(&[]).await;
    {
        let mut world = fake.world();
        let alb = world
            .security_groups
            .iter_mut()
            .find(|g| g.group_name() == Some("demo-alb-sg"))
            .unwrap();
        // Someone opens SSH to the world and closes HTTP.
        let perms = alb.ip_permissions.get_or_insert_with(Vec::new);
        perms.retain(|p| p.from_port() != Some(80));
        perms.push(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(
                    aws_sdk_ec2::types::IpRange::builder()
                        .cidr_ip("0.0.0.0/0")
                        .build(),
                )
                .build(),
        );
        let tg = &mut world.target_groups[0].tg;
        tg.health_check_path = Some("/drifted".into());
    }
    let plan = engine.run(&demo(|t| t), Mode::Plan).await;
    let text = plan.render();
    assert_eq!(
        actions(&plan.stacks[0]),
        [
            "security_group demo-alb-sg Update",
            "target_group demo-tg Update"
        ],
        "{text}"
    );
    assert!(text.contains("tcp/22 from 0.0.0.0/0"), "{text}");
    assert!(text.contains("/drifted"), "{text}");
    assert_eq!(fake.mutating_calls(), Vec::<String>::new());

    engine.run(&demo(|t| t), Mode::Apply).await;
    let healed = engine.run(&demo(|t| t), Mode::Plan).await;
    assert!(healed.stacks[0].converged(), "{}", healed.render());
    let calls = fake.mutating_calls();
    assert!(
        calls.contains(&"RevokeSecurityGroupIngress".to_string()),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"ModifyTargetGroup".to_string()),
        "{calls:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn destroy_takes_the_stack_down_in_dependency_order_and_keeps_every_byte() {
    let (fake, engine) = built(&[]).await;
    let stack = demo(|t| t).remove(0).with_defaults();
    let req = presta_engine::destroy::Request {
        stack: "demo".into(),
        names: stack.names(),
        deletion: stack.spec.policy.deletion,
        delete_data: false,
        config: None,
    };
    let recorder: Arc<dyn presta_aws::calls::CallRecorder> =
        Arc::new(presta_aws::calls::CallStats::default());
    let aws = presta_aws::Aws::connect("eu-west-3", &fake.settings(), recorder).await;
    let report = presta_engine::destroy::destroy(&aws, &req, &engine.settings).await;
    assert_eq!(report.error, None, "{report:?}");
    let calls = fake.mutating_calls();
    let at = |op: &str| {
        calls
            .iter()
            .position(|c| c == op)
            .unwrap_or_else(|| panic!("{op} not called: {calls:?}"))
    };
    assert!(
        at("DeleteAutoScalingGroup") < at("DeleteLaunchTemplate"),
        "{calls:?}"
    );
    assert!(at("DeleteListener") < at("DeleteTargetGroup"), "{calls:?}");
    assert!(
        at("DeleteLoadBalancer") < at("DeleteSecurityGroup"),
        "{calls:?}"
    );
    assert!(
        at("DeleteDBInstance") < at("DeleteDBSubnetGroup"),
        "{calls:?}"
    );
    assert!(
        !calls.contains(&"DeleteFileSystem".to_string()),
        "{calls:?}"
    );
    // The data stays: a final snapshot of the database, the file system.
    let world = fake.world();
    assert_eq!(world.snapshots.len(), 1, "{report:?}");
    assert_eq!(
        report.final_snapshot.as_deref(),
        world.snapshots[0].db_snapshot_identifier()
    );
    assert_eq!(world.file_systems.len(), 1);
    assert!(world.load_balancers.is_empty() && world.groups.is_empty());
    assert!(
        world.security_groups.is_empty(),
        "{:?}",
        world.security_groups
    );
    let kept: Vec<&str> = report.kept.iter().map(|i| i.kind.as_str()).collect();
    assert!(kept.contains(&"file_system"), "{kept:?}");
}

/// Counts the budget's waits, per service.
#[derive(Debug, Default)]
struct Waits(std::sync::Mutex<std::collections::BTreeMap<String, Duration>>);

impl presta_aws::calls::CallRecorder for Waits {
    fn record(&self, _: &str, _: &str, _: presta_aws::calls::Outcome, _: Duration) {}

    fn record_budget_wait(&self, service: &str, waited: Duration) {
        *self
            .0
            .lock()
            .unwrap()
            .entry(service.to_string())
            .or_default() += waited;
    }
}

#[tokio::test(start_paused = true)]
async fn the_api_budget_spreads_a_fleets_reads_at_the_rate_asked() {
    use presta_aws::ratelimit::{ApiBudget, Rate};
    let (fake, _) = built(&[]).await;
    let stacks: Vec<_> = demo(|t| t);
    // 2 EC2 requests a second after a burst of 2: the plan's EC2 reads wait their turn.
    let budget = Arc::new(ApiBudget::new(std::collections::BTreeMap::from([(
        "ec2".to_string(),
        Rate {
            per_second: 2.0,
            burst: 2.0,
        },
    )])));
    let waits = Arc::new(Waits::default());
    let mut engine = engine(&fake);
    engine.settings.client.budget = Some(budget);
    engine.recorders.push(waits.clone());
    fake.reset_calls();
    let started = tokio::time::Instant::now();
    let report = engine.run(&stacks, Mode::Plan).await;
    assert!(report.stacks[0].converged(), "{}", report.render());
    const EC2: &[&str] = &[
        "DescribeVpcs",
        "DescribeSubnets",
        "DescribeSecurityGroups",
        "DescribeLaunchTemplates",
        "DescribeLaunchTemplateVersions",
        "DescribeNetworkInterfaces",
    ];
    let ec2_calls = fake
        .calls()
        .iter()
        .filter(|c| EC2.contains(&c.as_str()))
        .count();
    assert!(ec2_calls >= 5, "{:?}", fake.calls());
    // (n - burst) / rate seconds at least, on tokio's clock.
    let floor = Duration::from_secs_f64((ec2_calls as f64 - 2.0) / 2.0);
    assert!(
        started.elapsed() >= floor,
        "{:?} < {floor:?}",
        started.elapsed()
    );
    let waited = waits.0.lock().unwrap().clone();
    assert!(
        waited.get("ec2").is_some_and(|w| !w.is_zero()),
        "{waited:?}"
    );
    assert!(
        !waited.contains_key("rds"),
        "the other services keep their own, larger budget: {waited:?}"
    );
}
