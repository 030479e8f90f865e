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
use std::time::{Duration, Instant, SystemTime};

use presta_aws::Mode;
use presta_aws::calls::CallStats;
use presta_spec::Stack;
use tokio::sync::{Notify, watch};

use presta_engine::Engine;
use presta_engine::budget::{Guard, Guards};
use presta_engine::report::StackReport;

pub mod lease;
pub mod metrics;
mod orphans;
mod settings;
mod status;
mod time;

use metrics::{Metrics, RunResult};
pub use orphans::OrphanStatus;
pub use settings::{ControllerSettings, ExecError, TriggerError};
pub use status::{ConfigStatus, DriftStatus, Overview, ResourceStatus, StackState, StackStatus};
use status::{first_error, note_observation, set_observation};
pub use time::rfc3339;
use time::unix;

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
    /// Why the stack counts as existing although nothing of it is where it points now (it
    /// moved region, or appeared as another stack left the configuration).
    presumed_existing: Option<String>,
    /// The last maintenance command run on the stack's instances, and when it ended.
    last_command: Option<(SystemTime, Arc<presta_aws::commands::CommandRun>)>,
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
            presumed_existing: None,
            last_command: None,
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
}

struct Inner {
    engine: Engine,
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
            if !batch.is_empty() {
                let me = self.clone();
                tasks.spawn(async move { me.run_batch(batch).await });
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
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(
                next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            ));
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

    /// The stacks due now (marked running), and when the next one is due.
    fn take_due(&self) -> (Vec<Arc<Stack>>, Option<Instant>) {
        self.take_due_at(Instant::now())
    }

    /// [`Controller::take_due`] as if it were `now`.
    fn take_due_at(&self, now: Instant) -> (Vec<Arc<Stack>>, Option<Instant>) {
        let mut st = self.state();
        let mut batch = Vec::new();
        let mut next: Option<Instant> = None;
        for e in st.stacks.values_mut() {
            if e.running {
                continue;
            }
            if e.due <= now {
                e.running = true;
                e.follow_up = false;
                e.runs_started += 1;
                batch.push(e.stack.clone());
            } else {
                next = Some(next.map_or(e.due, |n| n.min(e.due)));
            }
        }
        (batch, next)
    }

    async fn run_batch(&self, batch: Vec<Arc<Stack>>) {
        let stacks: Vec<Stack> = batch.iter().map(|s| (**s).clone()).collect();
        let stats = CallStats::default();
        let started = (Instant::now(), SystemTime::now());
        let guards: Guards = {
            let mut st = self.state();
            st.observing.insert(started.0);
            stacks
                .iter()
                .filter_map(|s| st.stacks.get(s.name()).map(|e| (s.name(), e)))
                .map(|(name, e)| {
                    (
                        name.to_string(),
                        Guard {
                            approved: e.approved.iter().cloned().collect(),
                            presumed_existing: e.presumed_existing.clone(),
                        },
                    )
                })
                .collect()
        };
        self.inner
            .engine
            .run_each(&stacks, Mode::Apply, &stats, &guards, &|report| {
                self.finish(report, started)
            })
            .await;
        self.state().observing.remove(&started.0);
        tracing::debug!(
            stacks = stacks.len(),
            aws_calls = stats.total(),
            "batch finished"
        );
    }

    /// Takes one stack's result: status, metrics, next due time, waiters.
    fn finish(&self, report: StackReport, started: (Instant, SystemTime)) {
        let now = SystemTime::now();
        self.inner.metrics.observe_report(&report, unix(now));
        let result = RunResult::of(&report);
        let settings = &self.inner.settings;
        {
            let mut st = self.state();
            // The batch's observation is over once one of its stacks reports.
            st.observing.remove(&started.0);
            note_observation(&mut st, &report, started.0);
            if let Some(e) = st.stacks.get_mut(&report.stack) {
                e.running = false;
                e.runs_done += 1;
                e.last_result = Some(result);
                e.last_run_at = Some(now);
                let refused = result == RunResult::Error && refused_only(&report);
                e.refused = refused;
                let delay = match result {
                    // AWS said no (access denied, an invalid request): retrying soon would
                    // only repeat the refusal; the stack waits for a configuration change,
                    // a manual trigger, or the long refused-retry delay.
                    RunResult::Error if refused => {
                        e.failures += 1;
                        settings.refused_retry
                    }
                    RunResult::Error => {
                        e.failures += 1;
                        settings.backoff(e.failures)
                    }
                    RunResult::Held => {
                        e.failures = 0;
                        settings.jittered_interval()
                    }
                    RunResult::Pending => {
                        e.failures = 0;
                        settings.pending_requeue
                    }
                    RunResult::Converged | RunResult::Blocked => {
                        e.failures = 0;
                        e.last_success_at = Some(now);
                        settings.jittered_interval()
                    }
                };
                e.last_error = first_error(&report);
                // An approval is for one run: used, or void because the plan changed.
                if e.approved.take().is_some() && result != RunResult::Held {
                    e.presumed_existing = None;
                }
                if let Some(h) = &report.held {
                    tracing::warn!(stack = %e.stack.name(), plan_hash = %h.plan_hash, changes = h.changes, max_changes_per_run = h.max_changes_per_run, reason = %h.reason, "stack held: the plan waits for approval (POST /stacks/{{stack}}/approve)");
                }
                e.due = if e.follow_up {
                    Instant::now()
                } else {
                    Instant::now() + delay
                };
                let changed = report.changes.iter().filter(|c| c.is_pending()).count();
                let blocked = report.blocked();
                let duration_ms = report.duration.as_millis() as u64;
                let report = Arc::new(report);
                e.last_run = Some(report.clone());
                if !report.observation_failed {
                    set_observation(e, started, report);
                }
                match result {
                    RunResult::Error if refused => {
                        tracing::error!(stack = %e.stack.name(), failures = e.failures, retry_in_seconds = delay.as_secs(), error = e.last_error.as_deref().unwrap_or(""), "AWS refused the reconciler's request: the stack waits for a configuration change or a manual trigger (POST /reconcile/{{stack}})")
                    }
                    RunResult::Error => {
                        tracing::warn!(stack = %e.stack.name(), failures = e.failures, retry_in_seconds = delay.as_secs(), error = e.last_error.as_deref().unwrap_or(""), "reconcile failed")
                    }
                    _ => {
                        tracing::info!(stack = %e.stack.name(), result = result.as_str(), changed, blocked, duration_ms, next_in_seconds = delay.as_secs(), "reconciled")
                    }
                }
            }
        }
        self.inner.finished.send_modify(|n| *n += 1);
        self.inner.wake.notify_one();
    }

    /// Asks for a run of one stack (or of all with `None`) as soon as possible. Returns, per
    /// stack, the number of the run that will take the request into account (for
    /// [`Controller::wait_for`]). A stack that is running gets exactly one follow-up run.
    pub fn trigger(&self, stack: Option<&str>) -> Result<Vec<(String, u64)>, TriggerError> {
        let mut st = self.state();
        if !st.accepting {
            return Err(TriggerError::ShuttingDown);
        }
        self.standby()?;
        if let Some(name) = stack
            && !st.stacks.contains_key(name)
        {
            return Err(TriggerError::UnknownStack {
                stack: name.to_string(),
                known: st.stacks.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        let now = Instant::now();
        let mut targets = Vec::new();
        for (name, e) in st.stacks.iter_mut() {
            if stack.is_some_and(|s| s != name) {
                continue;
            }
            if e.running {
                e.follow_up = true;
            } else {
                e.due = now;
            }
            targets.push((name.clone(), e.runs_started + 1));
        }
        drop(st);
        self.inner.wake.notify_one();
        Ok(targets)
    }

    /// Waits until each `(stack, run)` is finished (or the stack left the configuration) and
    /// returns the reports of those runs, or `None` on timeout.
    pub async fn wait_for(
        &self,
        targets: &[(String, u64)],
        timeout: Duration,
    ) -> Result<Option<Vec<Arc<StackReport>>>, TriggerError> {
        let mut finished = self.inner.finished.subscribe();
        let mut shutdown = self.inner.shutdown.subscribe();
        let wait = async {
            loop {
                let done = {
                    let st = self.state();
                    targets
                        .iter()
                        .map(|(name, run)| match st.stacks.get(name) {
                            Some(e) if e.runs_done >= *run => Some(e.last_run.clone()),
                            Some(_) => None,
                            None => Some(None),
                        })
                        .collect::<Option<Vec<_>>>()
                };
                if let Some(reports) = done {
                    return reports.into_iter().flatten().collect();
                }
                if finished.changed().await.is_err() {
                    return Vec::new();
                }
            }
        };
        // A shutdown answers the waiters at once (503): they never hold the exit back.
        tokio::select! {
            r = tokio::time::timeout(timeout, wait) => Ok(r.ok()),
            _ = shutdown.wait_for(|s| *s) => Err(TriggerError::ShuttingDown),
        }
    }

    /// Approves the held plan of `stack` whose hash is `plan_hash`: the next run (started at
    /// once) applies it if the plan is still the same. Returns the run to wait for.
    pub fn approve(&self, stack: &str, plan_hash: &str) -> Result<(String, u64), TriggerError> {
        {
            let mut st = self.state();
            if !st.accepting {
                return Err(TriggerError::ShuttingDown);
            }
            self.standby()?;
            let known = st.stacks.keys().cloned().collect::<Vec<_>>().join(", ");
            let Some(e) = st.stacks.get_mut(stack) else {
                return Err(TriggerError::UnknownStack {
                    stack: stack.to_string(),
                    known,
                });
            };
            let held = e
                .observation
                .as_ref()
                .and_then(|(_, _, r)| r.held.clone())
                .or_else(|| e.last_run.as_ref().and_then(|r| r.held.clone()));
            match held {
                None => {
                    return Err(TriggerError::NotHeld {
                        stack: stack.to_string(),
                    });
                }
                Some(h) if h.plan_hash != plan_hash => {
                    return Err(TriggerError::PlanChanged {
                        stack: stack.to_string(),
                        given: plan_hash.to_string(),
                        current: h.plan_hash,
                    });
                }
                Some(_) => {
                    tracing::info!(stack, plan_hash, "held plan approved: applying it");
                    e.approved = Some(plan_hash.to_string());
                }
            }
        }
        let mut runs = self.trigger(Some(stack))?;
        runs.pop().ok_or(TriggerError::NotHeld {
            stack: stack.to_string(),
        })
    }

    /// Runs a maintenance command (`presta-ctl <command>`) on the instances of `stack`'s group
    /// through SSM Run Command, waits for every result (at most `wait`), and keeps the result
    /// for the status. The argument is checked before any AWS call.
    pub async fn exec(
        &self,
        stack: &str,
        command: presta_aws::commands::Maintenance,
        arg: Option<&str>,
        wait: Duration,
    ) -> Result<Arc<presta_aws::commands::CommandRun>, ExecError> {
        let line = command.shell_line(arg).map_err(ExecError::Invalid)?;
        let region = {
            let st = self.state();
            if !st.accepting {
                return Err(TriggerError::ShuttingDown.into());
            }
            self.standby()?;
            match st.stacks.get(stack) {
                Some(e) => e.stack.spec.region.clone(),
                None => {
                    return Err(TriggerError::UnknownStack {
                        stack: stack.to_string(),
                        known: st.stacks.keys().cloned().collect::<Vec<_>>().join(", "),
                    }
                    .into());
                }
            }
        };
        let recorder: Arc<dyn presta_aws::calls::CallRecorder> =
            Arc::new(self.inner.metrics.clone());
        let aws =
            presta_aws::Aws::connect(&region, &self.inner.engine.settings.client, recorder).await;
        let group = presta_spec::naming::Component::AutoScalingGroup.name(stack);
        tracing::info!(stack, command = %line, group = %group, "running a maintenance command through SSM Run Command");
        let run = presta_aws::commands::run(&aws, &group, command.as_str(), &line, wait)
            .await
            .map_err(|e| ExecError::Aws(e.to_string()))?;
        let run = Arc::new(run);
        tracing::info!(stack, command = %line, command_id = %run.command_id, instances = run.results.len(), succeeded = run.succeeded, complete = run.complete, "maintenance command finished");
        if let Some(e) = self.state().stacks.get_mut(stack) {
            e.last_command = Some((SystemTime::now(), run.clone()));
        }
        Ok(run)
    }

    /// A fresh dry run of one stack; its observation updates the status and drift figures.
    pub async fn plan(&self, stack: &str) -> Result<StackReport, TriggerError> {
        let (spec, guard) = {
            let st = self.state();
            match st.stacks.get(stack) {
                Some(e) => (
                    (*e.stack).clone(),
                    Guard {
                        approved: Vec::new(),
                        presumed_existing: e.presumed_existing.clone(),
                    },
                ),
                None => {
                    return Err(TriggerError::UnknownStack {
                        stack: stack.to_string(),
                        known: st.stacks.keys().cloned().collect::<Vec<_>>().join(", "),
                    });
                }
            }
        };
        let started = (Instant::now(), SystemTime::now());
        let mut run = self
            .inner
            .engine
            .run_guarded(
                std::slice::from_ref(&spec),
                Mode::Plan,
                &Guards::from([(stack.to_string(), guard)]),
            )
            .await;
        let report = run.stacks.pop().unwrap_or_else(|| {
            let mut r = StackReport::new(&spec, Mode::Plan, false);
            r.error = Some("the engine returned no report".into());
            r
        });
        self.inner
            .metrics
            .observe_report(&report, unix(SystemTime::now()));
        let mut st = self.state();
        note_observation(&mut st, &report, started.0);
        if !report.observation_failed
            && let Some(e) = st.stacks.get_mut(stack)
        {
            set_observation(e, started, Arc::new(report.clone()));
        }
        Ok(report)
    }

    /// Replaces the configuration: new stacks run at once, changed ones get a run (a
    /// follow-up if running), removed ones are no longer reconciled. Nothing in AWS is
    /// deleted because a stack left the file.
    pub fn set_stacks(&self, stacks: Vec<Stack>, sources: Vec<String>) {
        let now = Instant::now();
        let mut st = self.state();
        let mut seen = std::collections::BTreeSet::new();
        let incoming: std::collections::BTreeSet<String> =
            stacks.iter().map(|s| s.name().to_string()).collect();
        // Stacks about to leave the configuration that were seen with resources: a new stack
        // appearing in the same reload may be one of them renamed.
        let leaving: Vec<String> = st
            .stacks
            .iter()
            .filter(|(k, e)| !incoming.contains(*k) && seen_with_resources(e))
            .map(|(k, e)| format!("`{k}` in {}", e.stack.spec.region))
            .collect();
        for s in stacks {
            let name = s.name().to_string();
            seen.insert(name.clone());
            match st.stacks.get_mut(&name) {
                Some(e) if *e.stack == s => {}
                Some(e) => {
                    if e.stack.spec.region != s.spec.region && seen_with_resources(e) {
                        e.presumed_existing = Some(format!(
                            "the stack was seen in {} before this configuration moved it to {}",
                            e.stack.spec.region, s.spec.region
                        ));
                    }
                    e.stack = Arc::new(s);
                    if e.running {
                        e.follow_up = true;
                    } else {
                        e.due = now;
                    }
                }
                None => {
                    let mut e = Entry::new(Arc::new(s), now);
                    if !leaving.is_empty() {
                        e.presumed_existing = Some(format!(
                            "it appeared as {} left the configuration: a renamed stack?",
                            leaving.join(", ")
                        ));
                    }
                    st.stacks.insert(name, e);
                }
            }
        }
        let removed: Vec<String> = st
            .stacks
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for name in &removed {
            st.stacks.remove(name);
            self.inner.metrics.forget_stack(name);
        }
        if !removed.is_empty() {
            tracing::warn!(stacks = %removed.join(", "), "stacks dropped from the configuration: no longer reconciled; their AWS resources are kept and reported as orphaned (GET /orphans)");
            st.orphans_due = now;
        }
        self.inner
            .metrics
            .stacks_configured
            .set(st.stacks.len() as f64);
        st.config = ConfigStatus {
            sources,
            loaded_at: Some(rfc3339(SystemTime::now())),
            last_reload_error: None,
        };
        drop(st);
        self.inner.wake.notify_one();
    }

    /// Records a refused reload (the running configuration stays).
    pub fn reload_refused(&self, message: String) {
        self.state().config.last_reload_error = Some(message);
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

/// Whether the stack's last run saw any of its resources in AWS.
fn seen_with_resources(e: &Entry) -> bool {
    e.last_run
        .as_ref()
        .is_some_and(|r| r.changes.iter().any(|c| c.id.is_some()))
}

/// Whether every failure of a run is a refusal by AWS (access denied, invalid request).
fn refused_only(report: &StackReport) -> bool {
    use presta_aws::error::ErrorClass;
    let mut classes = report
        .changes
        .iter()
        .filter(|c| c.action == presta_aws::Action::Failed)
        .map(|c| c.error_class)
        .chain(report.error.as_ref().map(|_| report.error_class))
        .peekable();
    classes.peek().is_some() && classes.all(|c| c == Some(ErrorClass::Refused))
}

#[cfg(test)]
mod tests {
    use super::*;

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
