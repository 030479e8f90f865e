//! Drift healed seconds after it happens (`serve --events auto`): the emulator publishes a
//! CloudTrail-shaped event for every mutating call (1 s after it, as `--event-delay`
//! defaults), EventBridge delivers it to the daemon's queue, the daemon runs the stack that
//! owns the resource. Polling cannot explain the heals here: `--interval` and
//! `--resync-interval` are 10 minutes.

use crate::common;

use std::time::{Duration, Instant};

use common::{Daemon, Env};

const QUEUE: &str = "presta-reconciler-events";

fn region_mode(d: &Daemon) -> String {
    let v = d.json("GET", "/stacks");
    v["events"][0]["mode"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

fn state_of(d: &Daemon, stack: &str) -> serde_json::Value {
    d.json("GET", &format!("/stacks/{stack}"))
}

fn runs_of(d: &Daemon, stack: &str) -> u64 {
    state_of(d, stack)["runs"].as_u64().unwrap()
}

/// Polls `healed` every 50 ms for up to 20 s; the time it took.
async fn time_to_heal<F, Fut>(healed: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    time_to_heal_within(Duration::from_secs(20), healed).await
}

/// Polls `healed` every 50 ms for up to `limit`; the time it took (999 s: never).
async fn time_to_heal_within<F, Fut>(limit: Duration, mut healed: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if healed().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Duration::from_secs(999)
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_hand_made_changes_across_five_kinds_are_healed_within_seconds_by_their_events() {
    let env = Env::start();
    let d = env.serve_with_events(&env.demo(), &[]);
    d.eventually(60, "converged, with events flowing", |d| {
        state_of(d, "demo")["state"] == "converged" && region_mode(d) == "events"
    });
    let overview = d.json("GET", "/stacks");
    assert_eq!(overview["stacks"][0]["sync"], "events", "{overview:#}");
    let trail = overview["events"][0]["trail"].as_str().unwrap();
    assert!(trail.contains("presta-demo-trail"), "{trail}");
    assert_eq!(
        d.metric("presta_events_mode{mode=\"events\",region=\"eu-west-3\"}"),
        Some(1.0)
    );
    // Let the creation's own events pass (they trigger nothing: the daemon's User-Agent).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let own_before = d
        .metric("presta_events_ignored_total{reason=\"own_write\"}")
        .unwrap_or(0.0);
    let runs_before = runs_of(&d, "demo");

    let sdk = env.sdk().await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let rds = aws_sdk_rds::Client::new(&sdk);
    let asg = aws_sdk_autoscaling::Client::new(&sdk);
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let (password, _) = env.secret("/presta-reconciler/demo/db-password").await;
    let tg_arn = state_of(&d, "demo")["outputs"]["tg_arn"]
        .as_str()
        .unwrap()
        .to_string();

    let mut times: Vec<(String, Duration)> = Vec::new();
    for round in 0..4 {
        // A security-group rule opened.
        env.open_ssh().await;
        let t = time_to_heal(|| async { env.app_group().await.1 == 1 }).await;
        times.push((format!("{round}: ssh opened"), t));

        // The database made publicly accessible.
        rds.modify_db_instance()
            .db_instance_identifier("demo-db")
            .publicly_accessible(true)
            .apply_immediately(true)
            .send()
            .await
            .unwrap();
        let t = time_to_heal(|| async {
            let db = rds
                .describe_db_instances()
                .db_instance_identifier("demo-db")
                .send()
                .await
                .unwrap();
            db.db_instances()[0].publicly_accessible() == Some(false)
        })
        .await;
        times.push((format!("{round}: database public"), t));

        // The Auto Scaling group detached from its target group.
        asg.detach_load_balancer_target_groups()
            .auto_scaling_group_name("demo-app")
            .target_group_arns(&tg_arn)
            .send()
            .await
            .unwrap();
        let t = time_to_heal(|| async {
            let g = asg
                .describe_auto_scaling_groups()
                .auto_scaling_group_names("demo-app")
                .send()
                .await
                .unwrap();
            g.auto_scaling_groups()[0]
                .target_group_arns()
                .contains(&tg_arn)
        })
        .await;
        times.push((format!("{round}: group detached"), t));

        // The launch template deleted.
        ec2.delete_launch_template()
            .launch_template_name("demo-app")
            .send()
            .await
            .unwrap();
        let t = time_to_heal(|| async {
            ec2.describe_launch_templates()
                .launch_template_names("demo-app")
                .send()
                .await
                .is_ok_and(|o| !o.launch_templates().is_empty())
        })
        .await;
        times.push((format!("{round}: template deleted"), t));

        // The database password overwritten.
        ssm.put_parameter()
            .name("/presta-reconciler/demo/db-password")
            .value(format!("typed-by-hand-{round}"))
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .overwrite(true)
            .send()
            .await
            .unwrap();
        let t = time_to_heal(|| async {
            env.secret("/presta-reconciler/demo/db-password").await.0 == password
        })
        .await;
        times.push((format!("{round}: password overwritten"), t));
        // The heal's run ends before the next change.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut sorted: Vec<Duration> = times.iter().map(|(_, t)| *t).collect();
    sorted.sort();
    let p95 = sorted[(sorted.len() * 95).div_ceil(100) - 1];
    assert!(
        p95 <= Duration::from_secs(5),
        "p95 {p95:?} over 5 s: {times:?}\nlog:\n{}",
        d.log_text()
    );
    assert!(
        times.iter().all(|(_, t)| *t < Duration::from_secs(20)),
        "{times:?}"
    );
    eprintln!("change → healed: p95 {p95:?}, all {times:?}");

    // One run per change: the daemon's own corrections (and their echoes) trigger nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = runs_of(&d, "demo") - runs_before;
    assert_eq!(runs, 20, "runs for 20 changes; log:\n{}", d.log_text());
    let own = d
        .metric("presta_events_ignored_total{reason=\"own_write\"}")
        .unwrap_or(0.0)
        - own_before;
    assert!(
        own >= 20.0,
        "the corrections came back as the daemon's own writes: {own}"
    );
    let healed = d.metric("presta_event_heal_seconds_count").unwrap_or(0.0);
    assert!(healed >= 20.0, "heal latencies recorded: {healed}");
    assert!(
        d.metric("presta_events_received_total{source=\"aws.ec2\"}")
            .unwrap_or(0.0)
            >= 8.0
    );
}

/// 20 stacks of the demo under other names, in one file.
fn fleet(env: &Env, n: usize) -> std::path::PathBuf {
    let text = std::fs::read_to_string(common::root().join("config/demo.yaml")).unwrap();
    let docs: Vec<String> = (1..=n)
        .map(|i| text.replace("name: demo\n", &format!("name: shop-{i:02}\n")))
        .collect();
    let path = env.dir.path().join("fleet.yaml");
    std::fs::write(&path, docs.join("\n---\n")).unwrap();
    path
}

/// 500 events in about 6 s over 20 stacks, end to end through EventBridge and SQS (the same
/// burst runs on a fake queue in paused time in `presta-controller`'s `events::loop_tests`,
/// where every run's start is known).
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_events_makes_one_run_per_stack_and_debounce_window_and_empties_the_queue() {
    let env = Env::start();
    let n = 20;
    let file = fleet(&env, n);
    let d = env.serve_with_events(&file, &["--events-debounce-ms", "3000"]);
    let stacks: Vec<String> = (1..=n).map(|i| format!("shop-{i:02}")).collect();
    let started = Instant::now();
    d.eventually(240, "the stacks converged, events flowing", |d| {
        region_mode(d) == "events"
            && d.json("GET", "/stacks")["stacks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["state"] == "converged")
    });
    eprintln!("{n} stacks converged in {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before: Vec<u64> = stacks.iter().map(|s| runs_of(&d, s)).collect();
    // The security group of each stack, as a hand-made change would name it.
    let sdk = env.sdk().await;
    let mut groups = Vec::new();
    for s in &stacks {
        groups.push(env.app_group_of(s).await.0);
    }
    let bus = aws_sdk_eventbridge::Client::new(&sdk);
    // 500 events: 50 PutEvents of 10, ten at a time, a wave a second.
    let start = Instant::now();
    let put = |batch: usize| {
        let bus = bus.clone();
        let entries: Vec<_> = (0..10)
            .map(|i| {
                let n = batch * 10 + i;
                let detail = serde_json::json!({
                    "eventName": "AuthorizeSecurityGroupIngress",
                    "eventTime": "2026-12-07T00:00:00Z",
                    "userAgent": "Boto3/1.43 test",
                    "requestParameters": {"groupId": groups[n % groups.len()]},
                    "responseElements": null,
                    "readOnly": false,
                });
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source("aws.ec2")
                    .detail_type("AWS API Call via CloudTrail")
                    .detail(detail.to_string())
                    .build()
            })
            .collect();
        async move {
            let out = bus
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
                .unwrap();
            assert_eq!(out.failed_entry_count(), 0);
        }
    };
    for wave in 0..5 {
        futures::future::join_all((0..10).map(|i| put(wave * 10 + i))).await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let burst = start.elapsed();
    // About 6 s; more on a loaded machine (the runs' bound below follows the burst's length).
    assert!(burst <= Duration::from_secs(30), "the burst took {burst:?}");
    eprintln!("500 events put in {burst:?}");
    d.eventually(60, "every stack ran and converged after the burst", |d| {
        stacks.iter().zip(&before).all(|(s, b)| {
            let st = state_of(d, s);
            st["runs"].as_u64().unwrap() > *b
                && st["state"] == "converged"
                && st["running"] == false
        })
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    // At most one run per stack per 3 s window of the burst (and the one after it).
    let windows = burst.as_secs_f64() / 3.0;
    let max_runs = windows.ceil() as u64 + 1;
    for (s, b) in stacks.iter().zip(&before) {
        let runs = runs_of(&d, s) - b;
        assert!(
            (1..=max_runs).contains(&runs),
            "{s}: {runs} runs for 25 events over {burst:?} (at most {max_runs})"
        );
    }
    // Nothing left in the queue.
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = sqs
        .get_queue_url()
        .queue_name(QUEUE)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attrs = attrs.attributes().unwrap();
    for a in [
        aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
        aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    ] {
        assert_eq!(attrs.get(&a).map(String::as_str), Some("0"), "{a:?}");
    }
    let received = d
        .metric("presta_events_received_total{source=\"aws.ec2\"}")
        .unwrap_or(0.0);
    assert!(received >= 500.0, "received {received}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_queue_or_rule_falls_back_to_polling_is_set_up_again_and_bad_messages_are_dropped()
 {
    let env = Env::start();
    let d = env.serve_with_events(&env.demo(), &[]);
    d.eventually(60, "events flowing", |d| {
        state_of(d, "demo")["state"] == "converged" && region_mode(d) == "events"
    });
    let sdk = env.sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let bus = aws_sdk_eventbridge::Client::new(&sdk);
    let url = || async {
        sqs.get_queue_url()
            .queue_name(QUEUE)
            .send()
            .await
            .ok()
            .and_then(|o| o.queue_url().map(String::from))
    };

    // A malformed message and an event about a resource no stack owns: dropped, counted.
    let first_url = url().await.unwrap();
    sqs.send_message()
        .queue_url(&first_url)
        .message_body("this is not an event")
        .send()
        .await
        .unwrap();
    let foreign = serde_json::json!({
        "eventName": "AuthorizeSecurityGroupIngress", "userAgent": "Boto3",
        "requestParameters": {"groupId": "sg-0000000000000000f"}, "readOnly": false
    });
    bus.put_events()
        .entries(
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .source("aws.ec2")
                .detail_type("AWS API Call via CloudTrail")
                .detail(foreign.to_string())
                .build(),
        )
        .send()
        .await
        .unwrap();
    d.eventually(15, "both dropped and counted", |d| {
        d.metric("presta_events_ignored_total{reason=\"malformed\"}") == Some(1.0)
            && d.metric("presta_events_ignored_total{reason=\"no_managed_resource\"}") >= Some(1.0)
    });

    // The queue deleted by hand: within two heartbeats (2 s each) the region polls, the
    // stack is due within --interval, the queue comes back, events flow again.
    sqs.delete_queue()
        .queue_url(&first_url)
        .send()
        .await
        .unwrap();
    let deleted = Instant::now();
    d.eventually(10, "fallen back to polling", |d| {
        region_mode(d) == "polling"
    });
    let noticed = deleted.elapsed();
    assert!(
        noticed <= Duration::from_secs(8),
        "noticed after {noticed:?}"
    );
    let overview = d.json("GET", "/stacks");
    assert_eq!(overview["stacks"][0]["sync"], "polling");
    assert!(
        overview["events"][0]["reason"].as_str().is_some(),
        "{overview:#}"
    );
    assert!(
        overview["stacks"][0]["next_run_in_seconds"]
            .as_f64()
            .unwrap()
            <= 600.0,
        "{overview:#}"
    );
    assert_eq!(
        d.metric("presta_events_mode{mode=\"polling\",region=\"eu-west-3\"}"),
        Some(1.0)
    );
    d.eventually(20, "the queue set up again, events flowing", |d| {
        region_mode(d) == "events"
    });
    assert!(
        d.log_text().contains("event_queue"),
        "the log says what was healed"
    );

    // The rule deleted by hand: the same.
    bus.remove_targets()
        .rule(QUEUE)
        .ids(presta_aws::events::rule::TARGET_ID)
        .send()
        .await
        .unwrap();
    bus.delete_rule().name(QUEUE).send().await.unwrap();
    d.eventually(12, "fallen back to polling again", |d| {
        region_mode(d) == "polling"
    });
    d.eventually(20, "the rule set up again, events flowing", |d| {
        region_mode(d) == "events"
    });
    let rule = bus.describe_rule().name(QUEUE).send().await.unwrap();
    assert_eq!(rule.state().unwrap().as_str(), "ENABLED");

    // And it still heals by events.
    env.open_ssh().await;
    let t = time_to_heal(|| async { env.app_group().await.1 == 1 }).await;
    assert!(t <= Duration::from_secs(6), "healed after {t:?}");

    // `events remove` deletes both (the daemon stopped first).
    drop(d);
    let out = env.cli(&["events", "remove", "--region", "eu-west-3"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("deleted event_rule") && text.contains("deleted event_queue"),
        "{text}"
    );
    assert!(url().await.is_none(), "the queue is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_keep_healing_while_30_percent_of_aws_calls_fail() {
    let env = Env::start();
    // The heartbeat at 10 s (60 s by default): two heartbeats lost in a row make the region
    // fall back to polling, which is what a 2 s heartbeat under 30 % of failing calls on a
    // loaded machine did (see `the_queue_or_rule_deleted_...` for the fallback itself).
    let d = env.serve_with_events(&env.demo(), &["--heartbeat-interval", "10"]);
    d.eventually(90, "events flowing", |d| {
        state_of(d, "demo")["state"] == "converged" && region_mode(d) == "events"
    });
    let (group, _) = env.app_group().await;
    env.open_ssh().await;
    // From the change on, 30 % of every AWS call fails (throttled, 500 or 503): the event
    // path's (SQS, EventBridge) and the run's. The test's own reads below retry until the
    // group is healed.
    env.emu
        .set_faults_on(0.3, 5, &[], &[], &["throttle", "unavailable", "internal"])
        .unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&env.sdk().await);
    let t = time_to_heal_within(Duration::from_secs(60), || async {
        ec2.describe_security_groups()
            .group_ids(&group)
            .send()
            .await
            .is_ok_and(|o| o.security_groups()[0].ip_permissions().len() == 1)
    })
    .await;
    env.emu.set_faults(0.0, 0, &[]).unwrap();
    eprintln!("healed under 30 % faults after {t:?}");
    assert!(
        t < Duration::from_secs(60),
        "not healed under faults; log:\n{}",
        d.log_text()
    );
    d.eventually(30, "converged", |d| {
        state_of(d, "demo")["state"] == "converged"
    });
    d.eventually(30, "events flowing again", |d| region_mode(d) == "events");
}

/// `events pattern` prints what an operator's own rule must match.
#[test]
fn events_pattern_prints_the_sources_detail_types_and_heartbeat() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_presta-reconciler"))
        .args(["events", "pattern"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sources = p["source"].as_array().unwrap();
    for s in [
        "aws.ec2",
        "aws.rds",
        "aws.ssm",
        "aws.autoscaling",
        "presta-reconciler",
    ] {
        assert!(sources.iter().any(|x| x == s), "{s} in {p}");
    }
    assert!(
        p["detail-type"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "AWS API Call via CloudTrail")
    );
}
