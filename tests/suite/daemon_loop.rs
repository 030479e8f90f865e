//! The daemon's loop (the real controller over the real engine) on the in-memory fake of AWS,
//! under paused time: minutes of scheduling in milliseconds.

use crate::fake;

use std::time::Duration;

use fake::*;
use presta_controller::metrics::Metrics;
use presta_controller::{Controller, ControllerSettings};
use presta_spec::Stack;
use presta_testkit::FakeAws;

fn controller(fake: &FakeAws, stacks: Vec<Stack>) -> Controller {
    Controller::new(
        engine(fake),
        Metrics::new(),
        ControllerSettings {
            interval: Duration::from_secs(30),
            jitter: 0.0,
            ..ControllerSettings::default()
        },
        stacks.into_iter().map(Stack::with_defaults).collect(),
        vec!["stacks.yaml".into()],
    )
}

/// Waits (on the paused clock) until `stack` is in `want`, for at most ten minutes.
async fn until(c: &Controller, stack: &str, want: &str) {
    let t0 = tokio::time::Instant::now();
    while state(c, stack) != want {
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "{stack} still {} instead of {want}: {:?}",
            state(c, stack),
            c.status(stack)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn start(c: &Controller) -> tokio::task::JoinHandle<bool> {
    let c = c.clone();
    tokio::spawn(async move { c.run(Duration::from_secs(30)).await })
}

/// The state as `/stacks/{stack}` shows it (`converged`, `held`...).
fn state(c: &Controller, stack: &str) -> String {
    let status = c.status(stack).expect("a known stack");
    serde_json::to_value(status.state)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(start_paused = true)]
async fn the_loop_heals_drift_within_an_interval_of_it_happening() {
    let fake = FakeAws::new();
    fake.seed("demo");
    let c = controller(&fake, demo(|t| t));
    let runner = start(&c);
    until(&c, "demo", "converged").await;

    // A person opens the database's group to the world.
    let t0 = tokio::time::Instant::now();
    open_db(&fake, "demo");
    fake.reset_calls();
    while db_open(&fake, "demo") {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            t0.elapsed() <= Duration::from_secs(31),
            "not healed within an interval"
        );
    }
    assert_eq!(fake.mutating_calls(), ["RevokeSecurityGroupIngress"]);
    c.shutdown();
    assert!(runner.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn an_over_budget_change_is_held_over_runs_until_its_plan_is_approved() {
    let fake = FakeAws::new();
    fake.seed("demo");
    let c = controller(&fake, demo(|t| budget(t, 1)));
    let runner = start(&c);
    until(&c, "demo", "converged").await;

    fake.reset_calls();
    let edited = demo(|t| {
        budget(t, 1)
            .replace("minSize: 1", "minSize: 2")
            .replace("    backupRetentionDays: 1", "    backupRetentionDays: 3")
            .replace("maxSize: 2", "maxSize: 3")
    });
    c.set_stacks(
        edited.into_iter().map(Stack::with_defaults).collect(),
        vec!["stacks.yaml".into()],
    );
    c.trigger(Some("demo")).unwrap();
    until(&c, "demo", "held").await;
    let hash = c.status("demo").unwrap().held.unwrap().plan_hash;
    assert!(
        c.metrics()
            .render()
            .contains("presta_stack_held{stack=\"demo\"} 1")
    );
    // Held over several runs: nothing changed.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(fake.mutating_calls(), Vec::<String>::new());

    // A stale hash is refused and names the current plan; the right one applies it.
    let err = c
        .approve("demo", "0000000000000000")
        .unwrap_err()
        .to_string();
    assert!(err.contains(&hash), "{err}");
    let run = c.approve("demo", &hash).unwrap();
    let reports = c
        .wait_for(&[run], Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    assert!(reports[0].held.is_none(), "{}", reports[0].render());
    assert_eq!(state(&c, "demo"), "converged");
    let calls = fake.mutating_calls();
    assert!(calls.contains(&"ModifyDBInstance".to_string()), "{calls:?}");
    assert!(
        calls.contains(&"UpdateAutoScalingGroup".to_string()),
        "{calls:?}"
    );
    c.shutdown();
    assert!(runner.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_renamed_stack_is_held_instead_of_getting_a_second_database() {
    let fake = FakeAws::new();
    fake.seed("demo");
    let c = controller(&fake, demo(|t| t));
    let runner = start(&c);
    until(&c, "demo", "converged").await;

    fake.reset_calls();
    c.set_stacks(
        demo(|t| t.replace("  name: demo\n", "  name: demo2\n"))
            .into_iter()
            .map(Stack::with_defaults)
            .collect(),
        vec!["stacks.yaml".into()],
    );
    c.trigger(Some("demo2")).unwrap();
    until(&c, "demo2", "held").await;
    let status = c.status("demo2").expect("demo2");
    assert_eq!(state(&c, "demo2"), "held");
    let reason = status.held.unwrap().reason;
    assert!(reason.contains("renamed"), "{reason}");
    assert!(reason.contains("db_instance demo2-db"), "{reason}");
    assert_eq!(fake.mutating_calls(), Vec::<String>::new());
    c.shutdown();
    assert!(runner.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn the_loop_converges_and_heals_through_failing_calls_and_counts_the_errors() {
    let fake = FakeAws::new();
    fake.seed("demo");
    fake.chaos(0.3, 11, &[]);
    let c = controller(&fake, demo(|t| t));
    let runner = start(&c);
    until(&c, "demo", "converged").await;

    // A heal, still with faults: port 22 opened on the instances' group.
    {
        let mut world = fake.world();
        let app = world
            .security_groups
            .iter_mut()
            .find(|g| g.group_name() == Some("demo-app-sg"))
            .unwrap();
        app.ip_permissions.get_or_insert_with(Vec::new).push(
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
    }
    let t0 = tokio::time::Instant::now();
    loop {
        let healed = c.metrics().render().lines().any(|l| {
            l.starts_with("presta_drift_corrected_total{")
                && l.contains("field=\"ingress\"")
                && l.contains("kind=\"security_group\"")
                && !l.ends_with(" 0")
        });
        if healed && state(&c, "demo") == "converged" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "not healed in ten minutes"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Every failed attempt is counted by class, including those the SDK retried.
    let metrics = c.metrics().render();
    let by_class = |class: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("presta_aws_api_errors_total{")
                    && l.contains(&format!("class=\"{class}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        by_class("throttled") >= 3.0,
        "throttling counted:\n{metrics}"
    );
    assert!(by_class("transient") >= 3.0, "5xx counted:\n{metrics}");
    c.shutdown();
    assert!(runner.await.unwrap());
    fake.calm();
    assert_eq!(inventory(&fake), expected(), "nothing created twice");
    let deletes: Vec<String> = fake
        .mutating_calls()
        .into_iter()
        .filter(|c| c == "DeleteDBInstance" || c == "DeleteFileSystem")
        .collect();
    assert!(deletes.is_empty(), "{deletes:?}");
}
