//! The reconcile engine. [`Engine::run`] observes each region once for all its stacks
//! ([`snapshot`]), then converges (or plans) every stack in dependency order ([`stack`]),
//! several stacks at a time; a failing stack never stops the others. Drivers in `presta-aws`
//! know AWS; this crate knows the order and wiring.

pub mod bootstrap;
pub mod report;
pub mod snapshot;
pub mod stack;
pub mod wait;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use presta_aws::calls::{CallRecorder, CallStats, Recorders};
use presta_aws::{Aws, ClientSettings, Mode};
use presta_spec::Stack;

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
    pub progress: Arc<dyn Progress>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            client: ClientSettings::default(),
            wait_timeout: stack::DEFAULT_WAIT,
            poll_interval: Duration::from_secs(15),
            concurrency: 8,
            progress: Arc::new(LogProgress),
        }
    }
}

/// Runs plans and applies.
pub struct Engine {
    pub settings: Settings,
    /// Extra receivers of AWS call records (the daemon's metrics).
    pub recorders: Vec<Arc<dyn CallRecorder>>,
}

impl Engine {
    pub fn new(settings: Settings) -> Self {
        Engine {
            settings,
            recorders: Vec::new(),
        }
    }

    /// Plans or applies every stack; reports come back in the order of `stacks`.
    pub async fn run(&self, stacks: &[Stack], mode: Mode) -> RunReport {
        let started = Instant::now();
        let stats = CallStats::default();
        let mut all: Vec<Arc<dyn CallRecorder>> = vec![Arc::new(stats.clone())];
        all.extend(self.recorders.iter().cloned());
        let recorder: Arc<dyn CallRecorder> = Arc::new(Recorders(all));

        let mut by_region: BTreeMap<&str, Vec<&Stack>> = BTreeMap::new();
        for s in stacks {
            by_region.entry(s.spec.region.as_str()).or_default().push(s);
        }
        let regions = futures::future::join_all(by_region.into_iter().map(|(region, stacks)| {
            let recorder = recorder.clone();
            async move { self.run_region(region, &stacks, mode, recorder).await }
        }))
        .await;
        let mut reports: Vec<StackReport> = regions.into_iter().flatten().collect();
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
        }
    }

    async fn run_region(
        &self,
        region: &str,
        stacks: &[&Stack],
        mode: Mode,
        recorder: Arc<dyn CallRecorder>,
    ) -> Vec<StackReport> {
        let aws = Aws::connect(region, &self.settings.client, recorder).await;
        let snap = match snapshot::Snapshot::observe(&aws, stacks).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(region, code = e.code.as_deref().unwrap_or(""), error = %e, "observing the region failed");
                return stacks
                    .iter()
                    .map(|s| {
                        let mut r = StackReport::new(s, mode, false);
                        r.error = Some(format!("observing {region} failed: {e}"));
                        r
                    })
                    .collect();
            }
        };
        futures::stream::iter(stacks.iter().map(|s| {
            let (aws, snap) = (&aws, &snap);
            async move {
                let span = tracing::info_span!("reconcile", stack = %s.name());
                let _enter = span.enter();
                stack::reconcile(aws, s, snap, mode, &self.settings).await
            }
        }))
        .buffer_unordered(self.settings.concurrency.max(1))
        .collect()
        .await
    }
}
