//! The reconcile engine. [`Engine::run`] observes each region once for all its stacks
//! ([`snapshot`]), then converges (or plans) every stack in dependency order ([`stack`]),
//! several stacks at a time; a failing stack never stops the others. Drivers in `presta-aws`
//! know AWS; this crate knows the order and wiring.

pub mod bootstrap;
pub mod budget;
pub mod data;
pub mod destroy;
pub mod health;
pub mod promotion;
pub mod report;
pub mod rotate;
pub mod snapshot;
pub mod stack;
pub mod wait;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use presta_aws::calls::{CallRecorder, CallStats, Recorders};
use presta_aws::{Aws, ClientSettings, Mode};
use presta_spec::Stack;
use tracing::Instrument;

pub use report::{Outputs, RunReport, StackReport};

/// Where wait progress goes (a line per pending resource and poll).
pub trait Progress: Send + Sync {
    fn report(&self, line: &str);
}

/// Progress as log lines.
pub struct LogProgress;

impl Progress for LogProgress {
    fn report(&self, line: &str) {
        tracing::info!("{line}");
    }
}

/// How the engine runs.
pub struct Settings {
    pub client: ClientSettings,
    /// How long `apply` waits for a resource to become usable.
    pub wait_timeout: Duration,
    /// How often it looks while waiting.
    pub poll_interval: Duration,
    /// Stacks reconciled at once.
    pub concurrency: usize,
    /// Also judge each stack's health (two more reads per stack: target health, scaling
    /// activities).
    pub health: bool,
    pub progress: Arc<dyn Progress>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            client: ClientSettings::default(),
            wait_timeout: stack::DEFAULT_WAIT,
            poll_interval: Duration::from_secs(15),
            concurrency: 8,
            health: true,
            progress: Arc::new(LogProgress),
        }
    }
}

/// Runs plans and applies.
pub struct Engine {
    pub settings: Settings,
    /// Extra receivers of AWS call records (the daemon's metrics).
    pub recorders: Vec<Arc<dyn CallRecorder>>,
    /// Bounds the stacks reconciled at once across every concurrent run of this engine (the
    /// daemon's periodic sweep and a forced run of one stack share it).
    limit: Arc<tokio::sync::Semaphore>,
    /// The same for urgent runs (inside [`presta_aws::ratelimit::urgent`]: asked by a change
    /// event or a person), so that they never queue behind a fleet's resyncs.
    urgent_limit: Arc<tokio::sync::Semaphore>,
}

impl Engine {
    pub fn new(settings: Settings) -> Self {
        let limit = Arc::new(tokio::sync::Semaphore::new(settings.concurrency.max(1)));
        let urgent_limit = Arc::new(tokio::sync::Semaphore::new(
            settings.concurrency.div_ceil(2).max(1),
        ));
        Engine {
            settings,
            recorders: Vec::new(),
            limit,
            urgent_limit,
        }
    }

    /// Plans or applies every stack; reports come back in the order of `stacks`.
    pub async fn run(&self, stacks: &[Stack], mode: Mode) -> RunReport {
        self.run_guarded(stacks, mode, &budget::Guards::new()).await
    }

    /// [`Engine::run`] with what the caller knows of each stack (approved plans).
    pub async fn run_guarded(
        &self,
        stacks: &[Stack],
        mode: Mode,
        guards: &budget::Guards,
    ) -> RunReport {
        let started = Instant::now();
        let stats = CallStats::default();
        let collected = std::sync::Mutex::new(Vec::new());
        self.run_each(stacks, mode, &stats, guards, &|r| {
            collected.lock().unwrap_or_else(|e| e.into_inner()).push(r)
        })
        .await;
        self.collect(stacks, collected, &stats, started)
    }

    /// The run's report from the stacks' reports, in the order of `stacks`.
    fn collect(
        &self,
        stacks: &[Stack],
        collected: std::sync::Mutex<Vec<StackReport>>,
        stats: &CallStats,
        started: Instant,
    ) -> RunReport {
        let mut reports = collected.into_inner().unwrap_or_else(|e| e.into_inner());
        let order: BTreeMap<&str, usize> = stacks
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name(), i))
            .collect();
        reports.sort_by_key(|r| order.get(r.stack.as_str()).copied().unwrap_or(usize::MAX));
        RunReport {
            stacks: reports,
            aws_calls: stats.total(),
            mutating_calls: stats.mutating(),
            duration: started.elapsed(),
            orphans: Vec::new(),
            orphans_error: None,
        }
    }

    /// [`Engine::run_guarded`] and the orphan search of `regions` (stacks not in `known`): in
    /// the regions the run observes the search uses the run's connection and reuses its
    /// listing of the target groups; other regions are searched apart.
    pub async fn run_guarded_with_orphans(
        &self,
        stacks: &[Stack],
        mode: Mode,
        guards: &budget::Guards,
        regions: &BTreeSet<String>,
        known: &BTreeSet<String>,
    ) -> RunReport {
        let started = Instant::now();
        let stats = CallStats::default();
        let search = OrphanSearch {
            known,
            found: Default::default(),
        };
        let collected = std::sync::Mutex::new(Vec::new());
        let observed: BTreeSet<String> = stacks.iter().map(|s| s.spec.region.clone()).collect();
        let others: BTreeSet<String> = regions.difference(&observed).cloned().collect();
        let (_, (mut other_orphans, other_error)) = futures::future::join(
            self.run_each_with(stacks, mode, &stats, guards, Some(&search), &|r| {
                collected.lock().unwrap_or_else(|e| e.into_inner()).push(r)
            }),
            async {
                if others.is_empty() {
                    (Vec::new(), None)
                } else {
                    self.orphans(&others, known, false, &stats).await
                }
            },
        )
        .await;
        let mut report = self.collect(stacks, collected, &stats, started);
        let (mut orphans, mut errors) =
            search.found.into_inner().unwrap_or_else(|e| e.into_inner());
        orphans.append(&mut other_orphans);
        orphans.sort();
        errors.extend(other_error);
        report.orphans = orphans;
        report.orphans_error = (!errors.is_empty()).then(|| errors.join("; "));
        report
    }

    /// The resources of stacks not in `known`, in the regions of `regions` (one call per
    /// region in steady state; `thorough` also lists the file systems). Errors are collected
    /// per region, not fatal.
    pub async fn orphans(
        &self,
        regions: &BTreeSet<String>,
        known: &BTreeSet<String>,
        thorough: bool,
        stats: &CallStats,
    ) -> (Vec<presta_aws::orphans::Orphan>, Option<String>) {
        let mut all: Vec<Arc<dyn CallRecorder>> = vec![Arc::new(stats.clone())];
        all.extend(self.recorders.iter().cloned());
        let recorder: Arc<dyn CallRecorder> = Arc::new(Recorders(all));
        let found = futures::future::join_all(regions.iter().map(|region| {
            let recorder = recorder.clone();
            async move {
                let aws = Aws::connect(region, &self.settings.client, recorder).await;
                presta_aws::orphans::find(&aws, known, thorough)
                    .await
                    .map_err(|e| format!("{region}: {e}"))
            }
        }))
        .await;
        let mut orphans = Vec::new();
        let mut errors = Vec::new();
        for r in found {
            match r {
                Ok(mut o) => orphans.append(&mut o),
                Err(e) => errors.push(e),
            }
        }
        (orphans, (!errors.is_empty()).then(|| errors.join("; ")))
    }

    /// Runs a maintenance command (`presta-ctl …` as `line`) on the instances of the Auto
    /// Scaling group `group` in `region` through SSM Run Command, waiting at most `wait`.
    pub async fn run_command(
        &self,
        region: &str,
        group: &str,
        command: &str,
        line: &str,
        wait: std::time::Duration,
    ) -> Result<presta_aws::commands::CommandRun, presta_aws::AwsError> {
        let recorder: Arc<dyn CallRecorder> = Arc::new(Recorders(self.recorders.clone()));
        let aws = Aws::connect(region, &self.settings.client, recorder).await;
        presta_aws::commands::run(&aws, group, command, line, wait).await
    }

    /// Plans or applies every stack, handing each stack's report to `done` as soon as that
    /// stack is finished (a slow stack does not hold back the others' results). Each region is
    /// observed once for all its stacks; `stats` counts the calls of this run.
    pub async fn run_each(
        &self,
        stacks: &[Stack],
        mode: Mode,
        stats: &CallStats,
        guards: &budget::Guards,
        done: &(dyn Fn(StackReport) + Sync),
    ) {
        self.run_each_with(stacks, mode, stats, guards, None, done)
            .await
    }

    /// [`Engine::run_each`], and the orphan search of `orphans` in each region it observes,
    /// with the same connection (so it reuses the observation's listings).
    async fn run_each_with(
        &self,
        stacks: &[Stack],
        mode: Mode,
        stats: &CallStats,
        guards: &budget::Guards,
        orphans: Option<&OrphanSearch<'_>>,
        done: &(dyn Fn(StackReport) + Sync),
    ) {
        let mut all: Vec<Arc<dyn CallRecorder>> = vec![Arc::new(stats.clone())];
        all.extend(self.recorders.iter().cloned());
        let recorder: Arc<dyn CallRecorder> = Arc::new(Recorders(all));
        let mut by_region: BTreeMap<&str, Vec<&Stack>> = BTreeMap::new();
        for s in stacks {
            by_region.entry(s.spec.region.as_str()).or_default().push(s);
        }
        futures::future::join_all(by_region.into_iter().map(|(region, stacks)| {
            let recorder = recorder.clone();
            async move {
                let with = RunWith {
                    mode,
                    guards,
                    orphans,
                };
                self.run_region(region, &stacks, recorder, with, done).await
            }
        }))
        .await;
    }

    async fn run_region(
        &self,
        region: &str,
        stacks: &[&Stack],
        recorder: Arc<dyn CallRecorder>,
        with: RunWith<'_>,
        done: &(dyn Fn(StackReport) + Sync),
    ) {
        let RunWith {
            mode,
            guards,
            orphans,
        } = with;
        // A stack's run lasts from the start of the region's observation to its last change:
        // the duration in its report (and the histogram) is that wall time.
        let started = Instant::now();
        let aws = Aws::connect(region, &self.settings.client, recorder).await;
        let search = async {
            if let Some(o) = orphans {
                o.add(
                    presta_aws::orphans::find(&aws, o.known, false).await,
                    region,
                );
            }
        };
        let snap = match snapshot::Snapshot::observe(&aws, stacks).await {
            Ok(s) => s,
            Err(e) => {
                search.await;
                tracing::error!(region, code = e.code.as_deref().unwrap_or(""), error = %e, "observing the region failed");
                for s in stacks {
                    let mut r = StackReport::new(s, mode, false);
                    r.error = Some(format!("observing {region} failed: {e}"));
                    r.observation_failed = true;
                    r.error_class = Some(e.class);
                    r.failure = Some(presta_aws::error::StepError::new(&e, region));
                    r.duration = started.elapsed();
                    done(r);
                }
                return;
            }
        };
        let (aws, snap) = (&aws, &snap);
        let runs: Vec<_> = stacks
            .iter()
            .map(|s| async move {
                let limit = if presta_aws::ratelimit::is_urgent() {
                    &self.urgent_limit
                } else {
                    &self.limit
                };
                let _permit = limit.acquire().await.ok();
                let span = tracing::info_span!("reconcile", stack = %s.name());
                let guard = guards.get(s.name()).cloned().unwrap_or_default();
                let mut report = stack::reconcile(aws, s, snap, mode, &guard, &self.settings)
                    .instrument(span)
                    .await;
                report.duration = started.elapsed();
                done(report);
            })
            .collect();
        // After the observation: the search reuses its listing of the target groups.
        futures::future::join(futures::future::join_all(runs), search).await;
    }
}

/// How a region's stacks are run: the mode, what the caller knows of each stack, and the
/// orphan search to make alongside, if any.
#[derive(Clone, Copy)]
struct RunWith<'a> {
    mode: Mode,
    guards: &'a budget::Guards,
    orphans: Option<&'a OrphanSearch<'a>>,
}

/// An orphan search made alongside a run (plan's): the stacks not in `known`, in the regions
/// the run observes, found with the run's own connections.
struct OrphanSearch<'a> {
    known: &'a BTreeSet<String>,
    found: std::sync::Mutex<(Vec<presta_aws::orphans::Orphan>, Vec<String>)>,
}

impl OrphanSearch<'_> {
    fn add(
        &self,
        result: Result<Vec<presta_aws::orphans::Orphan>, presta_aws::AwsError>,
        region: &str,
    ) {
        let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(mut o) => found.0.append(&mut o),
            Err(e) => found.1.push(format!("{region}: {e}")),
        }
    }
}
