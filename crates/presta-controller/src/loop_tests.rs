//! The controller's loop over a fake engine ([`crate::Reconciler`]), under
//! `tokio::time::pause()`: what happens over minutes and hours of scheduling (intervals,
//! backoff, the long wait after a refusal, triggers, readiness, leadership, the drain) is
//! checked in milliseconds, deterministically, without AWS.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use presta_aws::calls::CallStats;
use presta_aws::commands::CommandRun;
use presta_aws::orphans::Orphan;
use presta_aws::{AwsError, ErrorClass, Mode};
use presta_engine::budget::Guards;
use presta_engine::report::{RunReport, StackReport};
use presta_spec::Stack;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::{Controller, ControllerSettings, Reconciler, lease};

/// What a fake run of a stack reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Converged,
    /// AWS did not answer (transport): backoff.
    Failed,
    /// AWS refused a change (access denied): the long wait.
    Refused,
    /// A resource still being created: looked at again soon.
    Pending,
    /// A rule opened by hand: an update pending (corrected by an apply).
    Drift,
}

#[derive(Default)]
pub(crate) struct Fake {
    /// Per stack, the outcomes of its next runs (then `Converged`).
    script: Mutex<BTreeMap<String, VecDeque<Outcome>>>,
    /// How long a run takes.
    run_time: Duration,
    /// (stack, when the run started), in order.
    pub(crate) runs: Mutex<Vec<(String, Instant)>>,
    /// The stacks whose run went in the API budget's urgent lane, in order.
    pub(crate) urgent: Mutex<Vec<String>>,
}

impl Fake {
    pub(crate) fn new(run_time: Duration) -> Arc<Fake> {
        Arc::new(Fake {
            run_time,
            ..Fake::default()
        })
    }

    fn script(&self, stack: &str, outcomes: &[Outcome]) {
        self.script
            .lock()
            .unwrap()
            .entry(stack.to_string())
            .or_default()
            .extend(outcomes);
    }

    /// Seconds after `t0` at which `stack`'s runs started.
    pub(crate) fn starts(&self, stack: &str, t0: Instant) -> Vec<u64> {
        self.runs
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| s == stack)
            .map(|(_, at)| at.duration_since(t0).as_secs())
            .collect()
    }

    fn report(&self, stack: &Stack, mode: Mode) -> StackReport {
        let outcome = self
            .script
            .lock()
            .unwrap()
            .get_mut(stack.name())
            .and_then(|q| q.pop_front())
            .unwrap_or(Outcome::Converged);
        let mut r = StackReport::new(stack, mode, false);
        match outcome {
            Outcome::Converged => {}
            Outcome::Failed => {
                r.error = Some("observing eu-west-3 failed: no answer from AWS".into());
                r.error_class = Some(ErrorClass::Transport);
                r.observation_failed = true;
            }
            Outcome::Refused => r.changes.push(
                presta_aws::Change::new(
                    presta_aws::Kind::SECURITY_GROUP,
                    format!("{}-app-sg", stack.name()),
                    presta_aws::Action::Failed,
                )
                .with_reason(
                    "AuthorizeSecurityGroupIngress failed: UnauthorizedOperation".to_string(),
                )
                .with_error_class(ErrorClass::Refused),
            ),
            Outcome::Drift => r.changes.push(presta_aws::Change::new(
                presta_aws::Kind::SECURITY_GROUP,
                format!("{}-app-sg", stack.name()),
                presta_aws::Action::Update,
            )),
            Outcome::Pending => r.changes.push(presta_aws::Change::new(
                presta_aws::Kind::DB_INSTANCE,
                format!("{}-db", stack.name()),
                presta_aws::Action::Waiting,
            )),
        }
        r
    }
}

impl Reconciler for Fake {
    fn run_each<'a>(
        &'a self,
        stacks: &'a [Stack],
        mode: Mode,
        _stats: &'a CallStats,
        _guards: &'a Guards,
        done: &'a (dyn Fn(StackReport) + Sync),
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for s in stacks {
                self.runs
                    .lock()
                    .unwrap()
                    .push((s.name().to_string(), Instant::now()));
                if presta_aws::ratelimit::is_urgent() {
                    self.urgent.lock().unwrap().push(s.name().to_string());
                }
            }
            tokio::time::sleep(self.run_time).await;
            for s in stacks {
                done(self.report(s, mode));
            }
        })
    }

    fn run_guarded<'a>(
        &'a self,
        stacks: &'a [Stack],
        mode: Mode,
        _guards: &'a Guards,
    ) -> BoxFuture<'a, RunReport> {
        Box::pin(async move {
            RunReport {
                stacks: stacks.iter().map(|s| self.report(s, mode)).collect(),
                aws_calls: 0,
                mutating_calls: 0,
                duration: Duration::ZERO,
                orphans: Vec::new(),
                orphans_error: None,
            }
        })
    }

    fn orphans<'a>(
        &'a self,
        _regions: &'a BTreeSet<String>,
        _known: &'a BTreeSet<String>,
        _thorough: bool,
        _stats: &'a CallStats,
    ) -> BoxFuture<'a, (Vec<Orphan>, Option<String>)> {
        Box::pin(async { (Vec::new(), None) })
    }

    fn run_command<'a>(
        &'a self,
        _region: &'a str,
        _group: &'a str,
        _command: &'a str,
        _line: &'a str,
        _wait: Duration,
    ) -> BoxFuture<'a, Result<CommandRun, AwsError>> {
        Box::pin(async { Err(AwsError::unexpected("SendCommand", "not in this fake")) })
    }
}

pub(crate) fn stack(name: &str) -> Stack {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/demo.yaml");
    let mut s = presta_spec::load_paths(&[path])
        .unwrap()
        .remove(0)
        .stack
        .with_defaults();
    s.metadata.name = name.to_string();
    s
}

pub(crate) fn settings() -> ControllerSettings {
    ControllerSettings {
        jitter: 0.0,
        ..ControllerSettings::default()
    }
}

pub(crate) fn controller(
    fake: &Arc<Fake>,
    settings: ControllerSettings,
    names: &[&str],
) -> Controller {
    Controller::with_reconciler(
        fake.clone(),
        Metrics::new(),
        settings,
        names.iter().map(|n| stack(n)).collect(),
        vec!["test.yaml".into()],
    )
}

/// Runs the controller's loop for `span` of (paused) time, then shuts it down.
async fn run_for(c: &Controller, span: Duration) -> bool {
    let runner = {
        let c = c.clone();
        tokio::spawn(async move { c.run(Duration::from_secs(30)).await })
    };
    tokio::time::sleep(span).await;
    c.shutdown();
    runner.await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn converged_stacks_run_once_an_interval_together() {
    let fake = Fake::new(Duration::from_secs(2));
    let c = controller(&fake, settings(), &["a", "b"]);
    let t0 = Instant::now();
    run_for(&c, Duration::from_secs(200)).await;
    // Due at start, then one interval (60 s) after each run ended (2 s runs).
    assert_eq!(fake.starts("a", t0), [0, 62, 124, 186]);
    assert_eq!(fake.starts("b", t0), fake.starts("a", t0), "one batch");
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_exponentially_and_a_success_resets_the_interval() {
    let fake = Fake::new(Duration::from_secs(1));
    fake.script("a", &[Outcome::Failed; 4]);
    let c = controller(&fake, settings(), &["a"]);
    let t0 = Instant::now();
    run_for(&c, Duration::from_secs(120)).await;
    // Backoff 5, 10, 20, 40 s after each failed 1 s run; then the interval.
    assert_eq!(fake.starts("a", t0), [0, 6, 17, 38, 79]);
    let status = c.status("a").unwrap();
    assert_eq!(status.runs, 5);
}

#[tokio::test(start_paused = true)]
async fn a_refused_run_waits_the_refused_delay_and_a_trigger_runs_it_at_once() {
    let fake = Fake::new(Duration::from_secs(1));
    fake.script("a", &[Outcome::Refused, Outcome::Refused]);
    let c = controller(&fake, settings(), &["a"]);
    let t0 = Instant::now();
    let runner = {
        let c = c.clone();
        tokio::spawn(async move { c.run(Duration::from_secs(5)).await })
    };
    // 29 minutes: the refusal is not retried in a loop.
    tokio::time::sleep(Duration::from_secs(29 * 60)).await;
    assert_eq!(fake.starts("a", t0), [0], "one attempt in 29 minutes");
    assert!(
        c.readiness().is_ok(),
        "a daemon whose stacks wait after a refusal is not stale: {:?}",
        c.readiness()
    );
    // A person fixed the permission and asks for a run: it starts at once.
    c.trigger(Some("a")).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(fake.starts("a", t0), [0, 29 * 60]);
    // Refused again: the next attempt is the refused delay (30 min) after that run.
    tokio::time::sleep(Duration::from_secs(31 * 60)).await;
    assert_eq!(fake.starts("a", t0), [0, 29 * 60, 29 * 60 + 1 + 30 * 60]);
    c.shutdown();
    assert!(runner.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_stack_waiting_for_aws_is_looked_at_again_soon() {
    let fake = Fake::new(Duration::from_secs(1));
    fake.script("a", &[Outcome::Pending, Outcome::Pending]);
    let c = controller(&fake, settings(), &["a"]);
    let t0 = Instant::now();
    run_for(&c, Duration::from_secs(100)).await;
    // Pending requeues after 15 s, twice; then converged: the interval.
    assert_eq!(fake.starts("a", t0), [0, 16, 32, 93]);
}

#[tokio::test(start_paused = true)]
async fn a_slow_stack_never_runs_twice_at_once_and_a_trigger_during_it_queues_one_follow_up() {
    let fake = Fake::new(Duration::from_secs(40));
    let c = controller(&fake, settings(), &["a"]);
    let t0 = Instant::now();
    let runner = {
        let c = c.clone();
        tokio::spawn(async move { c.run(Duration::from_secs(5)).await })
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    for _ in 0..5 {
        c.trigger(Some("a")).unwrap();
    }
    tokio::time::sleep(Duration::from_secs(75)).await;
    // The first run ends at 40 s; the five triggers make one follow-up, at once.
    assert_eq!(fake.starts("a", t0), [0, 40]);
    c.shutdown();
    runner.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_a_run_finish_within_the_drain_and_stops_one_that_would_not() {
    let fake = Fake::new(Duration::from_secs(20));
    let c = controller(&fake, settings(), &["a"]);
    let runner = {
        let c = c.clone();
        tokio::spawn(async move { c.run(Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    c.shutdown();
    assert!(c.trigger(Some("a")).is_err(), "no new run after shutdown");
    assert!(runner.await.unwrap(), "a 20 s run ends within a 30 s drain");
    assert_eq!(c.status("a").unwrap().runs, 1, "and its result was taken");

    let slow = Fake::new(Duration::from_secs(600));
    let c = controller(&slow, settings(), &["a"]);
    let runner = {
        let c = c.clone();
        tokio::spawn(async move { c.run(Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stopped = Instant::now();
    c.shutdown();
    assert!(
        !runner.await.unwrap(),
        "a 10 min run is stopped after the drain"
    );
    assert_eq!(stopped.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn readiness_follows_the_observations() {
    let fake = Fake::new(Duration::from_secs(1));
    let c = controller(&fake, settings(), &["a"]);
    assert!(c.readiness().is_err(), "nothing observed yet");
    fake.script("a", &[Outcome::Converged, Outcome::Failed]);
    let runner = {
        let c = c.clone();
        tokio::spawn(async move { c.run(Duration::from_secs(5)).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(c.readiness().is_ok(), "{:?}", c.readiness());
    // The second run (at 61 s) fails to observe: not ready, saying why.
    tokio::time::sleep(Duration::from_secs(61)).await;
    let why = c.readiness().unwrap_err();
    assert!(why.contains("failed"), "{why}");
    // The next (backoff 5 s) succeeds: ready again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(c.readiness().is_ok(), "{:?}", c.readiness());
    c.shutdown();
    runner.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_standby_runs_nothing_and_a_new_leader_runs_every_stack_at_once() {
    let fake = Fake::new(Duration::from_secs(1));
    let (role_tx, role_rx) = tokio::sync::watch::channel(lease::Role::Standby {
        id: "replica-2".into(),
        leader: Some("replica-1".into()),
        reason: None,
    });
    let c = controller(
        &fake,
        ControllerSettings {
            role: Some(role_rx),
            ..settings()
        },
        &["a", "b"],
    );
    let t0 = Instant::now();
    let runner = {
        let c = c.clone();
        tokio::spawn(async move { c.run(Duration::from_secs(5)).await })
    };
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert!(
        fake.starts("a", t0).is_empty(),
        "a standby reconciles nothing"
    );
    assert!(c.trigger(Some("a")).is_err(), "nor takes triggers");
    assert!(c.readiness().unwrap_err().contains("standby"));
    role_tx.send_replace(lease::Role::Leader {
        id: "replica-2".into(),
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(fake.starts("a", t0), [300]);
    assert_eq!(fake.starts("b", t0), [300]);
    c.shutdown();
    runner.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_state_follows_a_plan_that_saw_drift_after_the_last_run() {
    let fake = Fake::new(Duration::from_secs(1));
    let c = controller(&fake, settings(), &["a"]);
    let runner = {
        let c = c.clone();
        tokio::spawn(async move { c.run(Duration::from_secs(30)).await })
    };
    let state = |c: &Controller| serde_json::to_value(c.status("a").unwrap().state).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(state(&c), "converged");
    // A plan asked through the API sees a rule opened by hand since.
    fake.script("a", &[Outcome::Drift]);
    let plan = c.plan("a").await.unwrap();
    assert_eq!(plan.pending(), 1);
    assert_eq!(state(&c), "drifted");
    // The next run, an interval later (it corrects it), is the latest observation again.
    tokio::time::sleep(Duration::from_secs(70)).await;
    assert_eq!(state(&c), "converged");
    c.shutdown();
    assert!(runner.await.unwrap());
}
