//! A fleet held by one daemon, on the in-memory fake of AWS under paused time: the real
//! controller, engine and drivers; AWS's rate limit on every service's reads (a read over it
//! is refused with the service's throttling code); the client's API budget at that same rate;
//! change events flowing through an in-memory queue, so that converged stacks are only
//! resynced every `--resync-interval`.
//!
//! What it shows: the fleet is built and held without a single throttled read, every stack is
//! observed again within its resync interval, and a change made by hand while the resyncs run
//! is healed within seconds of its event. `fleet::a_fleet_*` runs it in CI at 100 stacks
//! with time compressed tenfold (a 60 s resync: the reads the resyncs need against the
//! budget are those of 1,000 stacks at 10 minutes); the benchmark
//! (`tests/bench/bench.py`, section 7) runs `fleet::thousand_stacks` at full size and time.

use crate::fake;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use presta_aws::calls::{CallRecorder, CallStats};
use presta_aws::commands::CommandRun;
use presta_aws::orphans::Orphan;
use presta_aws::ratelimit::{ApiBudget, Rate};
use presta_aws::{AwsError, Mode};
use presta_controller::events::memory::MemoryBus;
use presta_controller::events::{EventSettings, EventSource, SyncMode};
use presta_controller::metrics::Metrics;
use presta_controller::port::Reconciler;
use presta_controller::{Controller, ControllerSettings};
use presta_engine::budget::Guards;
use presta_engine::report::{RunReport, StackReport};
use presta_engine::{Engine, Settings};
use presta_spec::Stack;
use presta_testkit::FakeAws;
use tokio::time::Instant;

/// The services the stacks' observation reads, by signing name.
const SERVICES: [&str; 6] = [
    "ec2",
    "elasticloadbalancing",
    "autoscaling",
    "rds",
    "elasticfilesystem",
    "ssm",
];

/// How the fleet runs.
pub struct Fleet {
    pub stacks: usize,
    /// AWS's read limit and the client's budget, requests a second per service.
    pub rate: f64,
    pub resync: Duration,
    /// The short interval (polling, and stacks not converged).
    pub interval: Duration,
    /// How long the converged fleet is watched (at least two resync intervals).
    pub watch: Duration,
    /// Changes made by hand while the resyncs run, one every `watch / changes`.
    pub changes: usize,
}

/// What the run measured (virtual time unless said).
#[derive(Debug, serde::Serialize)]
pub struct Figures {
    pub stacks: usize,
    pub rate_per_service: f64,
    pub resync_s: f64,
    /// How long the converged fleet was watched.
    pub watch_s: f64,
    /// From nothing to every stack converged.
    pub build_s: f64,
    /// Then until the runs in flight then (resyncs queued behind the build) had reported.
    pub settle_s: f64,
    /// Reads AWS refused for the rate, by service (build included).
    pub throttled: BTreeMap<String, usize>,
    /// The longest time between the starts of two runs of one stack while watched, and the
    /// stacks whose gap was over the resync interval.
    pub longest_gap_s: f64,
    pub late: Vec<String>,
    /// Seconds from each change to its heal (the event delivered 1 s after the change).
    pub heal_s: Vec<f64>,
    /// Reads a second while watched, by service, and the budget's use of the rate.
    pub reads_per_s: BTreeMap<String, f64>,
    /// Time requests waited for the API budget while watched (summed over requests).
    pub budget_wait_s: f64,
    /// The longest run while watched, from its start to its report.
    pub longest_run_s: f64,
    /// Stacks' runs while watched.
    pub runs: usize,
    pub mode: String,
    pub wall_s: f64,
    pub peak_rss_mib: f64,
}

/// The engine, with the start and the end of each stack's run noted.
struct Noting {
    engine: Engine,
    starts: Mutex<BTreeMap<String, Vec<Instant>>>,
    /// Runs started and not reported yet, by stack.
    in_flight: Mutex<BTreeMap<String, Instant>>,
    /// The longest run (from its start to its report), budget waits included.
    longest_run: Mutex<Duration>,
}

impl Reconciler for Noting {
    fn run_each<'a>(
        &'a self,
        stacks: &'a [Stack],
        mode: Mode,
        stats: &'a CallStats,
        guards: &'a Guards,
        done: &'a (dyn Fn(StackReport) + Sync),
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let start = Instant::now();
            {
                let mut starts = self.starts.lock().unwrap();
                let mut in_flight = self.in_flight.lock().unwrap();
                for s in stacks {
                    starts.entry(s.name().to_string()).or_default().push(start);
                    in_flight.insert(s.name().to_string(), start);
                }
            }
            let note = |r: StackReport| {
                self.in_flight.lock().unwrap().remove(&r.stack);
                let mut longest = self.longest_run.lock().unwrap();
                *longest = (*longest).max(start.elapsed());
                done(r)
            };
            self.engine
                .run_each(stacks, mode, stats, guards, &note)
                .await
        })
    }

    fn run_guarded<'a>(
        &'a self,
        stacks: &'a [Stack],
        mode: Mode,
        guards: &'a Guards,
    ) -> BoxFuture<'a, RunReport> {
        Reconciler::run_guarded(&self.engine, stacks, mode, guards)
    }

    fn orphans<'a>(
        &'a self,
        regions: &'a BTreeSet<String>,
        known: &'a BTreeSet<String>,
        thorough: bool,
        stats: &'a CallStats,
    ) -> BoxFuture<'a, (Vec<Orphan>, Option<String>)> {
        Reconciler::orphans(&self.engine, regions, known, thorough, stats)
    }

    fn run_command<'a>(
        &'a self,
        region: &'a str,
        group: &'a str,
        command: &'a str,
        line: &'a str,
        wait: Duration,
    ) -> BoxFuture<'a, Result<CommandRun, AwsError>> {
        Reconciler::run_command(&self.engine, region, group, command, line, wait)
    }
}

fn name(i: usize) -> String {
    format!("shop-{i:04}")
}

/// `n` copies of the demo stack, `shop-0000`, `shop-0001`...
fn fleet_stacks(n: usize) -> Vec<Stack> {
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.yaml"),
    )
    .unwrap();
    (0..n)
        .flat_map(|i| {
            let text = template.replace("  name: demo\n", &format!("  name: {}\n", name(i)));
            presta_spec::parse_file(&text, std::path::Path::new("fleet.yaml"))
                .unwrap_or_else(|p| panic!("{p:?}"))
                .into_iter()
                .map(|l| Stack::with_defaults(l.stack))
        })
        .collect()
}

/// The daemon's event loop as `serve --events auto` runs it (heartbeat at its default).
fn event_settings() -> EventSettings {
    EventSettings {
        source: EventSource::Auto {
            name: "presta-reconciler-events".into(),
        },
        heartbeat: Duration::from_secs(60),
        daemon: "fleet".into(),
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| (kib / 1024.0 * 10.0).round() / 10.0)
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Builds the fleet, watches it converged for `watch`, and measures.
pub async fn run(f: Fleet) -> Figures {
    let wall = std::time::Instant::now();
    let fake = FakeAws::new();
    fake.seed("demo");
    let rate = Rate {
        per_second: f.rate,
        burst: f.rate * 2.0,
    };
    for s in SERVICES {
        // AWS's bucket holds more than the client's burst (EC2: 100 at 20 a second).
        fake.limit_reads(s, f.rate, f.rate * 5.0);
    }
    let budget = ApiBudget::new(SERVICES.iter().map(|s| (s.to_string(), rate)).collect());
    let mut client = fake.settings();
    client.budget = Some(Arc::new(budget));
    let metrics = Metrics::new();
    let mut engine = Engine::new(Settings {
        client,
        poll_interval: Duration::from_secs(5),
        progress: Arc::new(fake::Quiet),
        ..Settings::default()
    });
    engine
        .recorders
        .push(Arc::new(metrics.clone()) as Arc<dyn CallRecorder>);
    let noting = Arc::new(Noting {
        engine,
        starts: Mutex::default(),
        in_flight: Mutex::default(),
        longest_run: Mutex::default(),
    });
    let stacks = fleet_stacks(f.stacks);
    let c = Controller::with_reconciler(
        noting.clone(),
        metrics,
        ControllerSettings {
            interval: f.interval,
            resync_interval: Some(f.resync),
            ..ControllerSettings::default()
        },
        stacks,
        vec!["fleet.yaml".into()],
    );
    let bus = Arc::new(MemoryBus::default());
    let tasks = {
        let (a, b, bus) = (c.clone(), c.clone(), bus.clone());
        vec![
            tokio::spawn(async move {
                a.run(Duration::from_secs(30)).await;
            }),
            tokio::spawn(async move { b.run_events(bus, event_settings()).await }),
        ]
    };

    // The build: every stack from nothing.
    let t0 = Instant::now();
    let names: Vec<String> = (0..f.stacks).map(name).collect();
    loop {
        let converged = names
            .iter()
            .filter(|n| c.status(n).is_some_and(|s| s.state == converged_state()))
            .count();
        if converged == f.stacks {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(6 * 3600),
            "{converged} of {} stacks converged after 6 hours",
            f.stacks
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    let build = t0.elapsed();
    eprintln!(
        "fleet: {} stacks converged after {:.0} s (virtual), {:.0} s of wall time",
        f.stacks,
        build.as_secs_f64(),
        wall.elapsed().as_secs_f64()
    );

    // While the fleet is built, the resyncs of the stacks built first queue behind the builds
    // of the others (eight runs at once): the watch starts once every run in flight when the
    // last stack converged has reported.
    let converged_at = Instant::now();
    while noting
        .in_flight
        .lock()
        .unwrap()
        .values()
        .any(|t| *t < converged_at)
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let settled = converged_at.elapsed();

    // The converged fleet, watched; changes by hand at even times.
    let watch_from = Instant::now();
    let reads_before = fake.reads();
    let runs_before: usize = noting.starts.lock().unwrap().values().map(Vec::len).sum();
    *noting.longest_run.lock().unwrap() = Duration::ZERO;
    let wait_before = budget_wait(&c);
    fake.reset_calls();
    let mut heal = Vec::new();
    let every = f.watch / (f.changes as u32 + 1);
    for k in 0..f.changes {
        tokio::time::sleep(every).await;
        let stack = name((k * 7919 + 13) % f.stacks);
        let changed = Instant::now();
        let id = fake::open_db(&fake, &stack);
        // CloudTrail's delivery: the event arrives a second after the change.
        tokio::time::sleep(Duration::from_secs(1)).await;
        bus.api_call(
            "aws.ec2",
            "eu-west-3",
            "AuthorizeSecurityGroupIngress",
            serde_json::json!({"groupId": id}),
        );
        while fake::db_open(&fake, &stack) {
            assert!(
                changed.elapsed() < Duration::from_secs(120),
                "{stack}: the change was not healed within 120 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        heal.push(round(changed.elapsed().as_secs_f64()));
        fake.reset_calls();
    }
    let rest = f.watch.saturating_sub(watch_from.elapsed());
    tokio::time::sleep(rest).await;
    let watched = watch_from.elapsed();
    let watch_end = Instant::now();

    // Gaps between the starts of two runs of each stack while watched (from the start of the
    // watch, when every stack has converged); a resync is due one resync interval after the
    // start of the run before.
    let ends = noting.starts.lock().unwrap().clone();
    let mut longest = Duration::ZERO;
    let mut late = Vec::new();
    let mut runs = 0;
    for n in &names {
        let times = ends.get(n).cloned().unwrap_or_default();
        let during: Vec<Instant> = times
            .iter()
            .filter(|t| **t >= watch_from)
            .copied()
            .collect();
        runs += during.len();
        let mut points: Vec<Instant> = std::iter::once(watch_from).chain(during).collect();
        points.push(watch_end);
        let gap = points
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(watched);
        longest = longest.max(gap);
        if gap > f.resync + Duration::from_millis(1) {
            late.push(format!("{n} ({:.0} s)", gap.as_secs_f64()));
        }
    }
    let runs_after: usize = ends.values().map(Vec::len).sum();
    assert_eq!(runs_after - runs_before, runs, "runs counted twice or lost");
    let reads_after = fake.reads();
    let reads_per_s = SERVICES
        .iter()
        .map(|s| {
            let n = reads_after.get(*s).copied().unwrap_or(0)
                - reads_before.get(*s).copied().unwrap_or(0);
            (s.to_string(), round(n as f64 / watched.as_secs_f64()))
        })
        .collect();
    let budget_wait_s = budget_wait(&c) - wait_before;
    let longest_run = *noting.longest_run.lock().unwrap();
    let mode = match c.events_status().first().map(|r| r.mode) {
        Some(SyncMode::Events) => "events",
        Some(SyncMode::Polling) => "polling",
        None => "none",
    }
    .to_string();
    c.shutdown();
    for t in tasks {
        let _ = t.await;
    }
    Figures {
        stacks: f.stacks,
        rate_per_service: f.rate,
        resync_s: f.resync.as_secs_f64(),
        watch_s: watched.as_secs_f64(),
        build_s: round(build.as_secs_f64()),
        settle_s: round(settled.as_secs_f64()),
        throttled: fake.throttled(),
        longest_gap_s: round(longest.as_secs_f64()),
        late,
        heal_s: heal,
        reads_per_s,
        budget_wait_s: round(budget_wait_s),
        longest_run_s: round(longest_run.as_secs_f64()),
        runs,
        mode,
        wall_s: round(wall.elapsed().as_secs_f64()),
        peak_rss_mib: peak_rss_mib(),
    }
}

fn budget_wait(c: &Controller) -> f64 {
    SERVICES
        .iter()
        .map(|s| c.metrics().budget_wait.with_label_values(&[*s]).get())
        .sum()
}

fn converged_state() -> presta_controller::StackState {
    presta_controller::StackState::Ran(presta_controller::metrics::RunResult::Converged)
}

/// The figures' verdict: what the issue asks of a fleet.
fn check(fig: &Figures) {
    assert!(fig.throttled.is_empty(), "reads throttled: {fig:?}");
    assert!(fig.late.is_empty(), "stacks not resynced in time: {fig:?}");
    assert!(
        fig.heal_s.iter().all(|h| *h <= 5.0),
        "a change not healed within 5 s: {fig:?}"
    );
    assert_eq!(fig.mode, "events", "{fig:?}");
    for (s, r) in &fig.reads_per_s {
        assert!(*r <= fig.rate_per_service, "{s}: {r} reads/s: {fig:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_fleet_is_resynced_within_its_interval_under_the_api_budget_and_changes_heal_in_seconds()
{
    // 100 stacks at a 60 s resync need the reads of 1,000 at 10 minutes.
    let fig = run(Fleet {
        stacks: 100,
        rate: 20.0,
        resync: Duration::from_secs(60),
        interval: Duration::from_secs(6),
        watch: Duration::from_secs(180),
        changes: 5,
    })
    .await;
    eprintln!("{}", serde_json::to_string(&fig).unwrap());
    check(&fig);
    // Every stack was looked at at least twice in three resync intervals, and not much more.
    assert!(fig.runs >= 200 && fig.runs <= 420, "{fig:?}");
}

/// The benchmark's fleet: `PRESTA_FLEET_STACKS` (1,000) stacks, a 10-minute resync, 20 reads a
/// second per service; prints its figures as one JSON line (`FLEET {...}`).
#[tokio::test(start_paused = true)]
#[ignore = "a benchmark: tests/bench/bench.py runs it"]
async fn thousand_stacks() {
    let stacks = std::env::var("PRESTA_FLEET_STACKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let fig = run(Fleet {
        stacks,
        rate: 20.0,
        resync: Duration::from_secs(600),
        interval: Duration::from_secs(60),
        watch: Duration::from_secs(1800),
        changes: 10,
    })
    .await;
    println!("FLEET {}", serde_json::to_string(&fig).unwrap());
    check(&fig);
}

/// AWS reads per stack-hour of an idle fleet of `stacks` (every stack converged, nothing
/// changed), over `window` after a warm-up of one resync interval: polling every 60 s
/// (`events: false`), or events flowing with the default 10-minute resync.
pub async fn idle_reads_per_stack_hour(stacks: usize, events: bool, window: Duration) -> f64 {
    let fake = FakeAws::new();
    fake.seed("demo");
    let list = fleet_stacks(stacks);
    let c = Controller::new(
        fake::engine(&fake),
        Metrics::new(),
        ControllerSettings {
            interval: Duration::from_secs(60),
            resync_interval: events.then_some(Duration::from_secs(600)),
            ..ControllerSettings::default()
        },
        list,
        vec!["fleet.yaml".into()],
    );
    let mut tasks = vec![{
        let c = c.clone();
        tokio::spawn(async move {
            c.run(Duration::from_secs(30)).await;
        })
    }];
    if events {
        let (c, bus) = (c.clone(), Arc::new(MemoryBus::default()));
        tasks.push(tokio::spawn(async move {
            c.run_events(bus, event_settings()).await
        }));
    }
    let names: Vec<String> = (0..stacks).map(name).collect();
    while !names
        .iter()
        .all(|n| c.status(n).is_some_and(|s| s.state == converged_state()))
    {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(600)).await;
    let before: usize = fake.reads().values().sum();
    tokio::time::sleep(window).await;
    let reads: usize = fake.reads().values().sum::<usize>() - before;
    c.shutdown();
    for t in tasks {
        let _ = t.await;
    }
    reads as f64 / stacks as f64 / (window.as_secs_f64() / 3600.0)
}

#[tokio::test(start_paused = true)]
async fn an_idle_fleet_with_events_reads_a_tenth_of_what_polling_reads() {
    let hour = Duration::from_secs(3600);
    let polling = idle_reads_per_stack_hour(4, false, hour).await;
    let events = idle_reads_per_stack_hour(4, true, hour).await;
    eprintln!("idle reads per stack-hour: polling {polling:.1}, events {events:.1}");
    // A resync reads what a poll reads, ten times less often; the polling interval's ±10 %
    // jitter makes the hour's count vary by about half a percent.
    assert!(polling > 1000.0, "{polling}");
    assert!(events / polling <= 0.105, "{events} / {polling}");
}

/// The benchmark's idle figures: `PRESTA_FLEET_STACKS` (20) stacks over three hours of each
/// mode; prints them as one JSON line (`IDLE {...}`).
#[tokio::test(start_paused = true)]
#[ignore = "a benchmark: tests/bench/bench.py runs it"]
async fn idle_reads() {
    let stacks = std::env::var("PRESTA_FLEET_STACKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let window = Duration::from_secs(3 * 3600);
    let polling = idle_reads_per_stack_hour(stacks, false, window).await;
    let events = idle_reads_per_stack_hour(stacks, true, window).await;
    println!(
        "IDLE {}",
        serde_json::json!({
            "stacks": stacks, "window_h": 3,
            "polling_reads_per_stack_hour": round(polling),
            "events_reads_per_stack_hour": round(events),
            "ratio": (events / polling * 10000.0).round() / 10000.0,
        })
    );
}

/// The fake's rate limit bites: without the client's budget, a plan's burst of reads on a
/// service limited to one a second (bucket of two) is throttled, and the SDK's retries then
/// get through. (So that the fleet's "nothing throttled" means the budget did its work.)
#[tokio::test(start_paused = true)]
async fn without_the_budget_a_burst_of_reads_over_the_limit_is_throttled() {
    let fake = FakeAws::new();
    fake.seed("demo");
    fake.limit_reads("ec2", 1.0, 2.0);
    let report = fake::engine(&fake)
        .run(&fake::demo(|t| t), Mode::Plan)
        .await;
    assert!(
        fake.throttled().get("ec2").copied().unwrap_or(0) > 0,
        "{:?}",
        fake.throttled()
    );
    assert_eq!(fake.throttled().get("elasticloadbalancing"), None);
    assert!(!report.stacks.is_empty());
}
