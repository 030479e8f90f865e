//! What the controller asks of the engine, as one small trait: the port the engine implements
//! for the daemon and a fake implements in tests, so that scheduling, backoff, the waits after
//! a refusal, readiness and the drain run under `tokio::time::pause()` in milliseconds,
//! without AWS (like kube-rs' controller tests over a mocked API).

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::BoxFuture;
use presta_aws::calls::CallStats;
use presta_aws::commands::CommandRun;
use presta_aws::orphans::Orphan;
use presta_aws::{AwsError, Mode};
use presta_engine::Engine;
use presta_engine::budget::Guards;
use presta_engine::report::{RunReport, StackReport};
use presta_spec::Stack;

/// The engine as the controller uses it.
pub trait Reconciler: Send + Sync + 'static {
    /// Plans or applies `stacks`, handing each stack's report to `done` as soon as it is
    /// finished.
    fn run_each<'a>(
        &'a self,
        stacks: &'a [Stack],
        mode: Mode,
        stats: &'a CallStats,
        guards: &'a Guards,
        done: &'a (dyn Fn(StackReport) + Sync),
    ) -> BoxFuture<'a, ()>;

    /// Plans or applies `stacks`, all reports at the end.
    fn run_guarded<'a>(
        &'a self,
        stacks: &'a [Stack],
        mode: Mode,
        guards: &'a Guards,
    ) -> BoxFuture<'a, RunReport>;

    /// The resources of stacks not in `known`, in `regions`; errors per region.
    fn orphans<'a>(
        &'a self,
        regions: &'a BTreeSet<String>,
        known: &'a BTreeSet<String>,
        thorough: bool,
        stats: &'a CallStats,
    ) -> BoxFuture<'a, (Vec<Orphan>, Option<String>)>;

    /// Runs a maintenance command on the instances of `group` in `region`.
    fn run_command<'a>(
        &'a self,
        region: &'a str,
        group: &'a str,
        command: &'a str,
        line: &'a str,
        wait: Duration,
    ) -> BoxFuture<'a, Result<CommandRun, AwsError>>;
}

impl Reconciler for Engine {
    fn run_each<'a>(
        &'a self,
        stacks: &'a [Stack],
        mode: Mode,
        stats: &'a CallStats,
        guards: &'a Guards,
        done: &'a (dyn Fn(StackReport) + Sync),
    ) -> BoxFuture<'a, ()> {
        Box::pin(Engine::run_each(self, stacks, mode, stats, guards, done))
    }

    fn run_guarded<'a>(
        &'a self,
        stacks: &'a [Stack],
        mode: Mode,
        guards: &'a Guards,
    ) -> BoxFuture<'a, RunReport> {
        Box::pin(Engine::run_guarded(self, stacks, mode, guards))
    }

    fn orphans<'a>(
        &'a self,
        regions: &'a BTreeSet<String>,
        known: &'a BTreeSet<String>,
        thorough: bool,
        stats: &'a CallStats,
    ) -> BoxFuture<'a, (Vec<Orphan>, Option<String>)> {
        Box::pin(Engine::orphans(self, regions, known, thorough, stats))
    }

    fn run_command<'a>(
        &'a self,
        region: &'a str,
        group: &'a str,
        command: &'a str,
        line: &'a str,
        wait: Duration,
    ) -> BoxFuture<'a, Result<CommandRun, AwsError>> {
        Box::pin(Engine::run_command(
            self, region, group, command, line, wait,
        ))
    }
}
