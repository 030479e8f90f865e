//! The event loop over a fake queue and bus, with the fake engine of the loop's tests, under
//! `tokio::time::pause()`: bursts, debounce, resync and the fallback to polling are checked
//! over minutes of scheduling in milliseconds.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::memory::MemoryBus;
use super::{EventBus, EventSettings, EventSource, SyncMode};
use crate::loop_tests::{Fake, controller, settings};
use crate::{Controller, ControllerSettings};

const DAEMON: &str = "test-daemon";

/// A CloudTrail record of a hand-made change to `stack`'s instances' group.
fn change(bus: &MemoryBus, stack: &str) {
    bus.api_call(
        "aws.ec2",
        "eu-west-3",
        "AuthorizeSecurityGroupIngress",
        serde_json::json!({"groupName": format!("{stack}-app-sg")}),
    );
}

fn event_settings() -> EventSettings {
    EventSettings {
        source: EventSource::Auto {
            name: "presta-reconciler-events".into(),
        },
        heartbeat: Duration::from_secs(2),
        daemon: DAEMON.into(),
    }
}

fn with_events(debounce: Duration) -> ControllerSettings {
    ControllerSettings {
        interval: Duration::from_secs(60),
        resync_interval: Some(Duration::from_secs(600)),
        events_debounce: debounce,
        ..settings()
    }
}

/// Starts the loop and the event loop; returns their handles.
fn start(c: &Controller, bus: &Arc<MemoryBus>) -> Vec<tokio::task::JoinHandle<()>> {
    let (a, b) = (c.clone(), c.clone());
    let bus: Arc<dyn EventBus> = bus.clone();
    vec![
        tokio::spawn(async move {
            a.run(Duration::from_secs(30)).await;
        }),
        tokio::spawn(async move { b.run_events(bus, event_settings()).await }),
    ]
}

fn mode(c: &Controller) -> Option<SyncMode> {
    c.events_status().first().map(|r| r.mode)
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_500_events_over_20_stacks_makes_one_run_per_stack_and_debounce_window() {
    let fake = Fake::new(Duration::from_millis(800));
    let names: Vec<String> = (1..=20).map(|i| format!("shop-{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let c = controller(&fake, with_events(Duration::from_secs(3)), &refs);
    let bus = Arc::new(MemoryBus::default());
    let tasks = start(&c, &bus);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(mode(&c), Some(SyncMode::Events));
    let t0 = Instant::now();
    // 500 events in 10 s: 25 per stack, 50 a second.
    for tick in 0..50 {
        for i in 0..10 {
            change(&bus, &names[(tick * 10 + i) % 20]);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(20)).await;
    for name in &names {
        let starts: Vec<Instant> = fake
            .runs
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, at)| s == name && *at >= t0)
            .map(|(_, at)| *at)
            .collect();
        assert!(!starts.is_empty(), "{name} ran for its events");
        assert!(
            starts.len() <= 5,
            "{name}: {} runs for 25 events in 10 s",
            starts.len()
        );
        for w in starts.windows(2) {
            assert!(
                w[1] - w[0] >= Duration::from_secs(3),
                "{name}: two runs in one debounce window ({:?} apart)",
                w[1] - w[0]
            );
        }
        let st = c.status(name).unwrap();
        assert_eq!(
            st.state,
            crate::StackState::Ran(crate::metrics::RunResult::Converged)
        );
    }
    assert_eq!(bus.left(), 0, "every message deleted");
    assert!(bus.deleted() >= 500);
    let received = c
        .metrics()
        .events_received
        .with_label_values(&["aws.ec2"])
        .get();
    assert_eq!(received, 500);
    c.shutdown();
    for t in tasks {
        let _ = t.await;
    }
}

#[tokio::test(start_paused = true)]
async fn converged_stacks_resync_slowly_while_events_flow_and_fall_back_when_heartbeats_stop() {
    let fake = Fake::new(Duration::from_millis(500));
    let c = controller(&fake, with_events(Duration::from_secs(1)), &["a", "b"]);
    let bus = Arc::new(MemoryBus::default());
    let tasks = start(&c, &bus);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(1800)).await;
    assert_eq!(mode(&c), Some(SyncMode::Events));
    for s in ["a", "b"] {
        let runs = fake.starts(s, t0).len();
        // Polling at 60 s would be 30 runs; the resync every 600 s makes 3 to 5.
        assert!((2..=5).contains(&runs), "{s}: {runs} runs in 30 min");
    }
    // The rule deleted: heartbeats stop coming back. Within two heartbeats and a poll, the
    // region polls and the stacks are due within the interval; the setup is done again
    // (the fake's setup restores the rule) and events flow again.
    let setups = bus.setups();
    bus.break_rule();
    let broke = Instant::now();
    let mut fell_back = None;
    while broke.elapsed() < Duration::from_secs(30) {
        if mode(&c) == Some(SyncMode::Polling) {
            fell_back = Some(broke.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fell_back = fell_back.expect("fell back to polling");
    assert!(fell_back <= Duration::from_secs(7), "after {fell_back:?}");
    for s in ["a", "b"] {
        let st = c.status(s).unwrap();
        assert!(
            st.next_run_in_seconds <= 60.0,
            "{s}: {}",
            st.next_run_in_seconds
        );
        assert_eq!(st.sync, Some(SyncMode::Polling));
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(bus.setups() > setups, "set up again");
    assert_eq!(mode(&c), Some(SyncMode::Events));
    // A malformed message is dropped at once and counted.
    bus.push("{not json".into());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(bus.left(), 0);
    assert_eq!(
        c.metrics()
            .events_ignored
            .with_label_values(&["malformed"])
            .get(),
        1
    );
    c.shutdown();
    for t in tasks {
        let _ = t.await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_resync_is_due_one_interval_after_its_run_started_and_an_overrun_is_spread_again() {
    // Runs of 50 s (the API budget's waits, a slow region): the resyncs still start exactly
    // 600 s apart, not 650.
    let fake = Fake::new(Duration::from_secs(50));
    let c = controller(&fake, with_events(Duration::from_secs(1)), &["a"]);
    let bus = Arc::new(MemoryBus::default());
    let tasks = start(&c, &bus);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
    let starts = fake.starts("a", t0);
    assert!(starts.len() >= 10, "{starts:?}");
    // Between the starts from the second on (the first run is the build; the second, the
    // first resync, is at a random point of the interval).
    for w in starts[1..].windows(2) {
        assert_eq!(w[1] - w[0], 600, "{starts:?}");
    }
    c.shutdown();
    for t in tasks {
        let _ = t.await;
    }

    // Runs longer than the interval: each next resync is at a random point of the interval
    // after the run, not at once (which would keep a fleet's late runs together).
    let fake = Fake::new(Duration::from_secs(700));
    let c = controller(&fake, with_events(Duration::from_secs(1)), &["a"]);
    let bus = Arc::new(MemoryBus::default());
    let tasks = start(&c, &bus);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(4 * 3600)).await;
    let starts = fake.starts("a", t0);
    assert!(starts.len() >= 5, "{starts:?}");
    for w in starts[1..].windows(2) {
        let gap = w[1] - w[0];
        assert!((700 + 60..=700 + 600).contains(&gap), "{starts:?}");
    }
    c.shutdown();
    for t in tasks {
        let _ = t.await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_service_event_about_what_the_last_run_wrote_is_its_echo_for_a_minute_only() {
    let fake = Fake::new(Duration::from_millis(100));
    let c = controller(&fake, with_events(Duration::from_secs(1)), &["a"]);
    let param = "/presta-reconciler/a/db-password".to_string();
    c.state().stacks.get_mut("a").unwrap().wrote = Some((
        Instant::now(),
        std::collections::BTreeSet::from([param.clone()]),
    ));
    let event = |cloudtrail: bool| super::message::ChangeEvent {
        source: "aws.ssm".into(),
        name: "Parameter Store Change".into(),
        region: "eu-west-3".into(),
        account: "123456789012".into(),
        time: None,
        user_agent: String::new(),
        read_only: false,
        cloudtrail,
        tokens: vec![param.clone(), "Update".into()],
    };
    let stacks = || std::collections::BTreeSet::from(["a".to_string()]);
    // The parameter's own event, seconds after the run wrote it: the run's echo.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        c.not_an_echo(&event(false), stacks()),
        Err(super::message::Ignored::OwnWrite)
    );
    // A person's call about the same parameter is never an echo (CloudTrail names them).
    assert_eq!(c.not_an_echo(&event(true), stacks()), Ok(stacks()));
    // An event about something else of the stack is not the echo either.
    let mut other = event(false);
    other.tokens = vec!["/presta-reconciler/a/admin-password".into()];
    assert_eq!(c.not_an_echo(&other, stacks()), Ok(stacks()));
    // A minute later, the same service event is a change (somebody else's).
    tokio::time::sleep(Duration::from_secs(56)).await;
    assert_eq!(c.not_an_echo(&event(false), stacks()), Ok(stacks()));
}

#[tokio::test(start_paused = true)]
async fn runs_asked_by_an_event_or_a_person_go_in_the_urgent_lane_resyncs_do_not() {
    let fake = Fake::new(Duration::from_millis(200));
    let c = controller(&fake, with_events(Duration::from_secs(1)), &["a", "b"]);
    let bus = Arc::new(MemoryBus::default());
    let tasks = start(&c, &bus);
    // The first runs and the resyncs of an hour: none urgent.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(
        fake.starts("a", Instant::now() - Duration::from_secs(3600))
            .len()
            >= 2
    );
    assert!(fake.urgent.lock().unwrap().is_empty());
    // An event about `a`: its run is urgent; `b`'s next resync is not.
    change(&bus, "a");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(*fake.urgent.lock().unwrap(), ["a"]);
    // A person's `POST /reconcile/b`: urgent too.
    c.trigger(Some("b")).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(*fake.urgent.lock().unwrap(), ["a", "b"]);
    // The resyncs after them are not.
    tokio::time::sleep(Duration::from_secs(1800)).await;
    assert_eq!(*fake.urgent.lock().unwrap(), ["a", "b"]);
    c.shutdown();
    for t in tasks {
        let _ = t.await;
    }
}
