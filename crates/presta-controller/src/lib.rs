//! presta-controller: the daemon's reconcile loop (scheduling here; the status the API serves
//! in [`status`], metrics in [`metrics`], orphans in `orphans`): keeps every configured stack converged, periodically and on
//! demand, and keeps the status the HTTP API serves.
//!
//! Scheduling, like kube-runtime's controller:
//! - every stack has a due time; the scheduler gathers the stacks that are due and not
//!   running into one batch, so a periodic sweep observes each region once for all its
//!   stacks (the engine's batched observation);
//! - a stack is never reconciled twice at once; a trigger during a run queues exactly one
//!   follow-up run, however many triggers arrive;
//! - each stack's result is taken as soon as that stack finishes, so a slow or failing stack
//!   never holds back the others; the engine bounds the stacks reconciled at once;
//! - after a success the next run is due one interval later (with jitter); a failure backs
//!   off exponentially (capped) and a success resets it; a stack still waiting for AWS (an
//!   RDS instance being created) is looked at again soon, without blocking a worker;
//! - on shutdown no new run starts and the runs in flight get a bounded time to finish.
//!
//! HTTP handlers never reconcile themselves: they call [`Controller::trigger`] and, to wait,
//! [`Controller::wait_for`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

use presta_spec::Stack;
use tokio::sync::{Notify, watch};

use presta_engine::Engine;
use presta_engine::report::StackReport;

mod commands;
pub mod events;
pub mod lease;
#[cfg(test)]
mod lease_tests;
#[cfg(test)]
mod loop_tests;
pub mod metrics;
mod orphans;
pub mod port;
mod reload;
mod scheduler;
mod settings;
mod status;
mod time;

use metrics::{Metrics, RunResult};
pub use orphans::OrphanStatus;
pub use port::Reconciler;
pub use settings::{ControllerSettings, ExecError, TriggerError};
pub use status::{ConfigStatus, DriftStatus, Overview, ResourceStatus, StackState, StackStatus};
pub use time::rfc3339;

struct Entry {
    stack: Arc<Stack>,
    due: Instant,
    running: bool,
    follow_up: bool,
    runs_started: u64,
    runs_done: u64,
    failures: u32,
    last_result: Option<RunResult>,
    last_error: Option<String>,
    last_run: Option<Arc<StackReport>>,
    last_run_at: Option<SystemTime>,
    last_success_at: Option<SystemTime>,
    /// The freshest observation (plan or apply), and when it started.
    observation: Option<(Instant, SystemTime, Arc<StackReport>)>,
    /// The last run failed only because AWS refused its requests.
    refused: bool,
    /// The hash of a held plan a person approved, for the next run.
    approved: Option<String>,
    /// Who approved it.
    approved_by: Option<String>,
    /// Why the stack counts as existing although nothing of it is where it points now (it
    /// moved region, or appeared as another stack left the configuration).
    presumed_existing: Option<String>,
    /// The last maintenance command run on the stack's instances, and when it ended.
    last_command: Option<(SystemTime, Arc<presta_aws::commands::CommandRun>)>,
    /// The earliest change event not yet healed (for `presta_event_heal_seconds`).
    event_at: Option<SystemTime>,
    /// The next resync is spread across the resync interval (first one in events mode).
    spread_resync: bool,
    /// When the current or last run started.
    started_at: Option<Instant>,
    /// The follow-up run was asked by change events: it waits for the debounce window.
    follow_up_by_event: bool,
    /// The next run was asked by a change event or a person: it goes ahead of resyncs (the
    /// API budget's urgent lane); `running_urgent` for the run in flight.
    urgent: bool,
    running_urgent: bool,
    /// The names and ids of what the last run changed, and when it ended: the services' own
    /// events about them (which carry no User-Agent) are the daemon's echo, not drift.
    wrote: Option<(Instant, std::collections::BTreeSet<String>)>,
}

impl Entry {
    fn new(stack: Arc<Stack>, due: Instant) -> Entry {
        Entry {
            stack,
            due,
            running: false,
            follow_up: false,
            runs_started: 0,
            runs_done: 0,
            failures: 0,
            last_result: None,
            last_error: None,
            last_run: None,
            last_run_at: None,
            last_success_at: None,
            observation: None,
            refused: false,
            approved: None,
            approved_by: None,
            presumed_existing: None,
            last_command: None,
            event_at: None,
            spread_resync: true,
            started_at: None,
            follow_up_by_event: false,
            urgent: false,
            running_urgent: false,
            wrote: None,
        }
    }
}

struct State {
    stacks: BTreeMap<String, Entry>,
    accepting: bool,
    config: ConfigStatus,
    last_observation_ok: Option<Instant>,
    last_observation_error: Option<(Instant, String)>,
    orphans: orphans::OrphanStatus,
    /// When to look for orphans next.
    orphans_due: Instant,
    /// Start times of the batches whose observation has not finished.
    observing: std::collections::BTreeSet<Instant>,
    /// The event path of each region (`serve --events`); empty with events off.
    events: BTreeMap<String, events::RegionEvents>,
}

struct Inner {
    engine: Arc<dyn Reconciler>,
    metrics: Metrics,
    settings: ControllerSettings,
    state: Mutex<State>,
    wake: Notify,
    /// Bumped after every finished run, for waiters.
    finished: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
}

/// The daemon's controller; cheap to clone (shared).
#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller for `stacks` (with defaults applied). The engine's AWS calls are counted in
    /// `metrics`. Nothing runs until [`Controller::run`] is polled.
    pub fn new(
        mut engine: Engine,
        metrics: Metrics,
        settings: ControllerSettings,
        stacks: Vec<Stack>,
        sources: Vec<String>,
    ) -> Controller {
        engine.recorders.push(Arc::new(metrics.clone()));
        Controller::with_reconciler(Arc::new(engine), metrics, settings, stacks, sources)
    }

    /// A controller over any [`Reconciler`] (a fake in tests); the engine's AWS calls are
    /// counted by whoever built it.
    pub fn with_reconciler(
        engine: Arc<dyn Reconciler>,
        metrics: Metrics,
        settings: ControllerSettings,
        stacks: Vec<Stack>,
        sources: Vec<String>,
    ) -> Controller {
        let now = Instant::now();
        let entries = stacks
            .into_iter()
            .map(|s| (s.name().to_string(), Entry::new(Arc::new(s), now)))
            .collect::<BTreeMap<_, _>>();
        metrics.stacks_configured.set(entries.len() as f64);
        Controller {
            inner: Arc::new(Inner {
                engine,
                metrics,
                settings,
                state: Mutex::new(State {
                    stacks: entries,
                    accepting: true,
                    config: ConfigStatus {
                        sources,
                        loaded_at: Some(rfc3339(SystemTime::now())),
                        last_reload_error: None,
                    },
                    last_observation_ok: None,
                    last_observation_error: None,
                    orphans: Default::default(),
                    orphans_due: now,
                    observing: Default::default(),
                    events: BTreeMap::new(),
                }),
                wake: Notify::new(),
                finished: watch::channel(0).0,
                shutdown: watch::channel(false).0,
            }),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Who writes, as this replica sees it.
    pub fn role(&self) -> lease::Role {
        match &self.inner.settings.role {
            Some(rx) => rx.borrow().clone(),
            None => lease::Role::Single,
        }
    }

    fn standby(&self) -> Result<(), TriggerError> {
        match self.role() {
            lease::Role::Standby { leader, .. } => Err(TriggerError::Standby { leader }),
            _ => Ok(()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the loop until [`Controller::shutdown`]; then lets the runs in flight finish for
    /// at most `drain`, and returns whether they all did.
    pub async fn run(&self, drain: Duration) -> bool {
        let mut tasks = tokio::task::JoinSet::new();
        let mut shutdown = self.inner.shutdown.subscribe();
        // Without a lease the role never changes: the sender is kept for the whole loop, so
        // that `changed()` waits forever instead of failing at once (which would spin).
        let (_single, single) = watch::channel(lease::Role::Single);
        let mut role = self.inner.settings.role.clone().unwrap_or(single);
        let mut leading = true;
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            let now_leading = role.borrow_and_update().may_reconcile();
            if now_leading && !leading {
                // A new leader looks at every stack at once: what it knew is stale, and the
                // failures of fenced writes before the handover are not the stacks' fault.
                self.all_due_now();
            }
            leading = now_leading;
            if !leading {
                // A standby replica reconciles nothing; it wakes when the lease changes hands.
                while tasks.try_join_next().is_some() {}
                tokio::select! {
                    r = role.changed() => if r.is_err() { break },
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let (batch, next) = self.take_due();
            let (urgent, background) = self.split_urgent(batch);
            if !urgent.is_empty() {
                let me = self.clone();
                tasks.spawn(presta_aws::ratelimit::urgent(async move {
                    me.run_batch(urgent).await
                }));
            }
            if !background.is_empty() {
                let me = self.clone();
                tasks.spawn(async move { me.run_batch(background).await });
            }
            if self.orphans_due() {
                let me = self.clone();
                tasks.spawn(async move { me.check_orphans().await });
            }
            let next = {
                let st = self.state();
                if st.stacks.is_empty() {
                    next
                } else {
                    Some(next.map_or(st.orphans_due, |n| n.min(st.orphans_due)))
                }
            };
            while tasks.try_join_next().is_some() {}
            let sleep = tokio::time::sleep_until(
                next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                _ = sleep => {}
                _ = self.inner.wake.notified() => {}
                _ = shutdown.changed() => {}
                // A closed channel (the lease keeper gone) is no news: wait for the rest.
                Ok(()) = role.changed() => {}
            }
        }
        let in_flight = tasks.len();
        if in_flight > 0 {
            tracing::info!(
                runs = in_flight,
                drain_seconds = drain.as_secs(),
                "shutting down: letting the runs in flight finish"
            );
        }
        let drained =
            tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} })
                .await
                .is_ok();
        if !drained {
            tracing::warn!("shutdown: runs still in flight after the drain time; stopping them");
            tasks.abort_all();
        }
        drained
    }

    fn all_due_now(&self) {
        let now = Instant::now();
        let mut st = self.state();
        for e in st.stacks.values_mut() {
            e.due = now;
            e.failures = 0;
            e.refused = false;
        }
        st.orphans_due = now;
    }

    /// Stops taking triggers and ends [`Controller::run`]'s loop.
    pub fn shutdown(&self) {
        self.state().accepting = false;
        self.inner.shutdown.send_replace(true);
    }

    /// Names of the configured stacks.
    pub fn stack_names(&self) -> Vec<String> {
        self.state().stacks.keys().cloned().collect()
    }

    /// `Ok` when the daemon is ready: it has a configuration and its last AWS observation
    /// succeeded recently. Otherwise the reason.
    pub fn readiness(&self) -> Result<(), String> {
        let st = self.state();
        if !st.accepting {
            return Err("shutting down".into());
        }
        if let lease::Role::Standby { leader, reason, .. } = self.role() {
            return Err(format!(
                "standby: {} holds the lease and reconciles{}",
                leader.as_deref().unwrap_or("another replica"),
                reason.map(|r| format!(" ({r})")).unwrap_or_default()
            ));
        }
        if st.stacks.is_empty() {
            return Ok(());
        }
        if let Some(oldest) = st.observing.first()
            && oldest.elapsed() > self.inner.settings.stuck_after
        {
            return Err(format!(
                "AWS has not answered the observation started {}s ago (limit {}s): the endpoint is slow, frozen or unreachable",
                oldest.elapsed().as_secs(),
                self.inner.settings.stuck_after.as_secs()
            ));
        }
        let max_age = self.inner.settings.ready_max_age;
        // Stacks waiting after AWS refused them are not observed until a configuration change,
        // a trigger or the refused-retry delay: that silence is on purpose, not staleness (the
        // stacks' state, `waiting_for` and the alerts say what a person must do).
        let all_waiting = st.stacks.values().all(|e| e.refused && !e.running);
        match (st.last_observation_ok, &st.last_observation_error) {
            (_, Some((at, err))) if st.last_observation_ok.is_none_or(|ok| *at > ok) => {
                Err(format!("the last AWS observation failed: {err}"))
            }
            (None, _) => Err("no AWS observation has completed yet".into()),
            (Some(ok), _) if ok.elapsed() > max_age && !all_waiting => Err(format!(
                "the last successful AWS observation is {}s old (limit {}s)",
                ok.elapsed().as_secs(),
                max_age.as_secs()
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use presta_aws::Mode;

    fn demo() -> Stack {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/demo.yaml");
        presta_spec::load_path(&path)
            .unwrap()
            .remove(0)
            .stack
            .with_defaults()
    }

    /// A controller whose loop is not running: the scheduling state is driven by hand.
    fn controller() -> Controller {
        let engine = Engine::new(presta_engine::Settings {
            client: presta_aws::ClientSettings {
                endpoint_url: Some("http://127.0.0.1:9".into()),
                static_credentials: Some(("k".into(), "s".into())),
                ..presta_aws::ClientSettings::default()
            },
            ..presta_engine::Settings::default()
        });
        Controller::new(
            engine,
            Metrics::new(),
            ControllerSettings::default(),
            vec![demo()],
            vec!["demo.yaml".into()],
        )
    }

    fn names(batch: &[Arc<Stack>]) -> Vec<&str> {
        batch.iter().map(|s| s.name()).collect()
    }

    #[test]
    fn triggers_coalesce_and_a_trigger_during_a_run_queues_exactly_one_follow_up() {
        let c = controller();
        let (batch, _) = c.take_due();
        assert_eq!(names(&batch), ["demo"], "due at start");
        let started = (Instant::now(), SystemTime::now());
        // During the run: any number of triggers wait for one follow-up run, the second.
        let first = c.trigger(Some("demo")).unwrap();
        let again = c.trigger(Some("demo")).unwrap();
        let all = c.trigger(None).unwrap();
        assert_eq!(first, [("demo".to_string(), 2)]);
        assert_eq!(again, first);
        assert_eq!(all, first);
        assert!(c.take_due().0.is_empty(), "never twice at once");
        c.finish(StackReport::new(&demo(), Mode::Apply, false), started);
        // The follow-up is due at once, and only one.
        let (batch, _) = c.take_due();
        assert_eq!(names(&batch), ["demo"]);
        c.finish(StackReport::new(&demo(), Mode::Apply, false), started);
        let (batch, next) = c.take_due();
        assert!(batch.is_empty(), "no second follow-up");
        let wait = next.unwrap().saturating_duration_since(Instant::now());
        assert!(
            wait > Duration::from_secs(50) && wait <= Duration::from_secs(66),
            "a converged stack is due an interval (60 s ± 10 %) later: {wait:?}"
        );
        assert_eq!(c.status("demo").unwrap().runs, 2);
    }

    #[test]
    fn a_failed_run_backs_off_and_a_trigger_overrides_the_backoff() {
        let c = controller();
        let started = (Instant::now(), SystemTime::now());
        for (failures, expected) in [(1u32, 5u64), (2, 10), (3, 20)] {
            let (batch, _) = c.take_due_at(Instant::now() + Duration::from_secs(3600));
            assert_eq!(names(&batch), ["demo"], "failure {failures}");
            let mut failed = StackReport::new(&demo(), Mode::Apply, false);
            failed.error = Some("observing eu-west-3 failed: no answer".into());
            c.finish(failed, started);
            let st = c.state();
            let e = &st.stacks["demo"];
            assert_eq!(e.failures, failures);
            let wait = e.due.saturating_duration_since(Instant::now());
            assert!(
                wait <= Duration::from_secs(expected) && wait > Duration::from_secs(expected - 1),
                "after {failures} failures the next run is {wait:?} away"
            );
        }
        c.trigger(Some("demo")).unwrap();
        assert_eq!(
            names(&c.take_due().0),
            ["demo"],
            "a forced run ignores the backoff"
        );
        c.shutdown();
        assert_eq!(c.trigger(Some("demo")), Err(TriggerError::ShuttingDown));
    }
    use std::time::Duration;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let s = ControllerSettings {
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(60),
            ..ControllerSettings::default()
        };
        let got: Vec<u64> = (1..=6).map(|n| s.backoff(n).as_secs()).collect();
        assert_eq!(got, [5, 10, 20, 40, 60, 60]);
        assert_eq!(s.backoff(1000), Duration::from_secs(60));
    }

    #[test]
    fn jitter_stays_within_its_spread() {
        let s = ControllerSettings {
            interval: Duration::from_secs(100),
            jitter: 0.1,
            ..ControllerSettings::default()
        };
        let samples: Vec<Duration> = (0..200).map(|_| s.jittered_interval()).collect();
        assert!(
            samples
                .iter()
                .all(|d| *d >= Duration::from_secs(90) && *d <= Duration::from_secs(110))
        );
        let distinct: std::collections::BTreeSet<_> = samples.iter().collect();
        assert!(distinct.len() > 100, "the interval is spread, not fixed");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        use std::time::UNIX_EPOCH;
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_545_660)),
            "2026-11-24T18:41:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }
}
