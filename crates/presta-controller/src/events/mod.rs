//! Drift healed seconds after it happens (`serve --events`): per region, a loop long-polls the
//! event queue, maps each AWS change event to the stack that owns the resource it names
//! ([`message`]), and asks for that stack's run after a short debounce (a burst makes one
//! run). The daemon's own calls (told by their User-Agent), events naming nothing it manages,
//! and events of another region or account trigger nothing and are counted. Messages are
//! deleted once the runs they asked for are scheduled; a malformed one is dropped at once.
//!
//! Polling stays as the safety net: while a region's events flow, its converged stacks are
//! observed every `--resync-interval` instead of `--interval`. The path is proven end to end
//! by a heartbeat the daemon puts on the bus every `--heartbeat-interval`; when it stops
//! coming back (the queue or rule deleted, permissions lost), the region falls back to the
//! short interval at once, says so (`/stacks`, the page, `presta_events_mode`), sets the
//! queue and rule up again, and returns to events once a heartbeat comes back.

#[cfg(test)]
mod loop_tests;
pub mod memory;
pub mod message;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use presta_aws::calls::CallRecorder;
use presta_aws::events::{self as plumbing, Message};
use presta_aws::{Action, Aws, AwsError, ClientSettings, Mode};
use presta_spec::naming::Component;
use serde::Serialize;
use tokio::time::Instant;

use crate::Controller;
use crate::time::rfc3339;
use message::{Ignored, Index, Parsed};

/// How long after a run the services' own events about what it changed are its echo.
const ECHO_WINDOW: Duration = Duration::from_secs(60);

/// Where the events come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSource {
    /// The daemon keeps its own queue and rule, named `name`, in each region it manages.
    Auto { name: String },
    /// A queue (and rule) set up by someone else; the rule's pattern is
    /// `presta-reconciler events pattern`.
    Queue { url: String },
}

/// How the event loop runs.
#[derive(Debug, Clone)]
pub struct EventSettings {
    pub source: EventSource,
    /// Time between two heartbeats; two missed ones make the region fall back to polling.
    pub heartbeat: Duration,
    /// This daemon's id (its heartbeats carry it).
    pub daemon: String,
}

/// The longest a long poll waits for a message before SQS answers.
pub const LONGEST_POLL: Duration = Duration::from_secs(10);

impl EventSettings {
    /// The longest wait of one long poll.
    fn poll_wait(&self) -> Duration {
        self.heartbeat.min(LONGEST_POLL).max(Duration::from_secs(1))
    }

    /// How long without a heartbeat before the region falls back to polling: two heartbeats,
    /// and the poll that would have brought the second.
    fn stale_after(&self) -> Duration {
        self.heartbeat * 2 + self.poll_wait()
    }
}

/// What setting a region up found.
#[derive(Debug, Clone)]
pub struct Setup {
    pub queue_url: String,
    pub account: String,
    /// What was created or corrected (the queue recreated...).
    pub notes: Vec<String>,
}

/// The event path as the loop uses it: AWS ([`AwsEventBus`]) or a fake in tests.
pub trait EventBus: Send + Sync + 'static {
    /// Creates or heals the queue and rule (auto), or checks the given queue's account.
    fn setup<'a>(&'a self, region: &'a str) -> BoxFuture<'a, Result<Setup, AwsError>>;
    /// `Ok(Ok(trail))` when a trail records management events; `Ok(Err(why))` otherwise.
    fn trail<'a>(
        &'a self,
        region: &'a str,
    ) -> BoxFuture<'a, Result<Result<String, String>, AwsError>>;
    fn heartbeat<'a>(
        &'a self,
        region: &'a str,
        daemon: &'a str,
    ) -> BoxFuture<'a, Result<(), AwsError>>;
    fn receive<'a>(
        &'a self,
        region: &'a str,
        url: &'a str,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Message>, AwsError>>;
    fn delete<'a>(
        &'a self,
        region: &'a str,
        url: &'a str,
        receipts: Vec<String>,
    ) -> BoxFuture<'a, Result<(), AwsError>>;
    fn depth<'a>(&'a self, region: &'a str, url: &'a str) -> BoxFuture<'a, Result<u64, AwsError>>;
}

/// The event path on AWS: one set of clients per region, made on first use.
pub struct AwsEventBus {
    settings: ClientSettings,
    recorder: Arc<dyn CallRecorder>,
    source: EventSource,
    clients: tokio::sync::Mutex<BTreeMap<String, Aws>>,
}

impl AwsEventBus {
    pub fn new(
        settings: ClientSettings,
        recorder: Arc<dyn CallRecorder>,
        source: EventSource,
    ) -> AwsEventBus {
        AwsEventBus {
            settings,
            recorder,
            source,
            clients: Default::default(),
        }
    }

    async fn aws(&self, region: &str) -> Aws {
        let mut clients = self.clients.lock().await;
        if let Some(aws) = clients.get(region) {
            return aws.clone();
        }
        let aws = Aws::connect(region, &self.settings, self.recorder.clone()).await;
        clients.insert(region.to_string(), aws.clone());
        aws
    }
}

impl EventBus for AwsEventBus {
    fn setup<'a>(&'a self, region: &'a str) -> BoxFuture<'a, Result<Setup, AwsError>> {
        Box::pin(async move {
            let aws = self.aws(region).await;
            match &self.source {
                EventSource::Auto { name } => {
                    let p = plumbing::ensure(&aws, name, Mode::Apply).await?;
                    let notes = p
                        .changes
                        .iter()
                        .filter(|c| c.action != Action::None)
                        .map(|c| {
                            let fields: Vec<&str> =
                                c.diffs.iter().map(|d| d.field.as_str()).collect();
                            format!(
                                "{} {} {}{}",
                                c.kind,
                                c.name,
                                match c.action {
                                    Action::Create => "created",
                                    Action::Update => "corrected",
                                    _ => c.action.symbol(),
                                },
                                if fields.is_empty() {
                                    String::new()
                                } else {
                                    format!(" ({})", fields.join(", "))
                                }
                            )
                        })
                        .collect();
                    Ok(Setup {
                        queue_url: p.queue_url,
                        account: p.account,
                        notes,
                    })
                }
                EventSource::Queue { url } => Ok(Setup {
                    queue_url: url.clone(),
                    account: plumbing::account(&aws).await?,
                    notes: Vec::new(),
                }),
            }
        })
    }

    fn trail<'a>(
        &'a self,
        region: &'a str,
    ) -> BoxFuture<'a, Result<Result<String, String>, AwsError>> {
        Box::pin(async move { plumbing::trail_check(&self.aws(region).await).await })
    }

    fn heartbeat<'a>(
        &'a self,
        region: &'a str,
        daemon: &'a str,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move { plumbing::heartbeat(&self.aws(region).await, daemon).await })
    }

    fn receive<'a>(
        &'a self,
        region: &'a str,
        url: &'a str,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Message>, AwsError>> {
        Box::pin(async move { plumbing::receive(&self.aws(region).await, url, wait).await })
    }

    fn delete<'a>(
        &'a self,
        region: &'a str,
        url: &'a str,
        receipts: Vec<String>,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move { plumbing::delete(&self.aws(region).await, url, &receipts).await })
    }

    fn depth<'a>(&'a self, region: &'a str, url: &'a str) -> BoxFuture<'a, Result<u64, AwsError>> {
        Box::pin(async move { plumbing::depth(&self.aws(region).await, url).await })
    }
}

/// How a region's drift is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Events flow: converged stacks are resynced at `--resync-interval`.
    Events,
    /// Every stack is observed at `--interval`.
    Polling,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Events => "events",
            SyncMode::Polling => "polling",
        }
    }
}

/// One region's event path, as `GET /stacks` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RegionEvents {
    pub region: String,
    pub mode: SyncMode,
    /// Since when the region is in this mode.
    pub since: String,
    /// Why the region polls (the path is not proven yet, or broke).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_url: Option<String>,
    /// The CloudTrail trail that records the region's management events, or what is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trail: Option<String>,
    pub trail_ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_at: Option<String>,
    /// Messages taken from the queue, and of those, ignored.
    pub received: u64,
    pub ignored: u64,
    #[serde(skip)]
    pub(crate) heartbeat_seen: Option<Instant>,
}

impl RegionEvents {
    fn new(region: &str) -> RegionEvents {
        RegionEvents {
            region: region.to_string(),
            mode: SyncMode::Polling,
            since: rfc3339(SystemTime::now()),
            reason: Some(
                "waiting for the first heartbeat to come back through the rule and queue".into(),
            ),
            queue_url: None,
            trail: None,
            trail_ok: false,
            last_heartbeat_at: None,
            received: 0,
            ignored: 0,
            heartbeat_seen: None,
        }
    }
}

impl Controller {
    /// Runs the event loops, one per region of the configured stacks (regions added by a
    /// reload start within a heartbeat), until shutdown.
    pub async fn run_events(&self, bus: Arc<dyn EventBus>, settings: EventSettings) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut loops: BTreeMap<String, tokio::task::JoinHandle<()>> = BTreeMap::new();
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            let regions = self.event_regions(&settings.source);
            for region in &regions {
                if loops.get(region).is_none_or(|h| h.is_finished()) {
                    let (me, bus, settings, region2) =
                        (self.clone(), bus.clone(), settings.clone(), region.clone());
                    self.state()
                        .events
                        .entry(region.clone())
                        .or_insert_with(|| RegionEvents::new(region));
                    self.mode_metric(region, SyncMode::Polling);
                    loops.insert(
                        region.clone(),
                        tokio::spawn(async move { me.region_loop(bus, settings, region2).await }),
                    );
                }
            }
            loops.retain(|region, h| {
                let keep = regions.contains(region);
                if !keep {
                    h.abort();
                    self.state().events.remove(region);
                    self.inner
                        .metrics
                        .events_mode
                        .remove_label_values(&[region.as_str(), "events"])
                        .ok();
                    self.inner
                        .metrics
                        .events_mode
                        .remove_label_values(&[region.as_str(), "polling"])
                        .ok();
                }
                keep
            });
            tokio::select! {
                _ = tokio::time::sleep(settings.heartbeat) => {}
                _ = shutdown.changed() => {}
            }
        }
        for h in loops.values() {
            h.abort();
        }
    }

    fn event_regions(&self, source: &EventSource) -> BTreeSet<String> {
        let st = self.state();
        let regions: BTreeSet<String> = st
            .stacks
            .values()
            .map(|e| e.stack.spec.region.clone())
            .collect();
        match source {
            EventSource::Auto { .. } => regions,
            EventSource::Queue { url } => match plumbing::queue_url_region(url) {
                Some(r) => BTreeSet::from([r]),
                None if regions.len() == 1 => regions,
                None => {
                    tracing::error!(queue = %url, regions = ?regions, "--events sqs:URL: the queue URL names no region and the stacks are in several: use the queue's https://sqs.<region>.amazonaws.com/... URL");
                    BTreeSet::new()
                }
            },
        }
    }

    async fn region_loop(&self, bus: Arc<dyn EventBus>, settings: EventSettings, region: String) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let pause = settings.heartbeat.min(Duration::from_secs(5));
        loop {
            if *shutdown.borrow_and_update() {
                return;
            }
            if !self.role().may_reconcile() {
                // A standby replica leaves the queue to the leader.
                tokio::select! {
                    _ = tokio::time::sleep(settings.heartbeat) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let setup = match bus.setup(&region).await {
                Ok(s) => s,
                Err(e) => {
                    self.set_mode(
                        &region,
                        SyncMode::Polling,
                        Some(format!("the event queue and rule could not be set up ({e}): polling at --interval; retried every heartbeat")),
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(settings.heartbeat) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            };
            for note in &setup.notes {
                tracing::warn!(region = %region, change = %note, "event plumbing healed");
            }
            self.check_trail(&*bus, &region).await;
            self.with_region(&region, |r| r.queue_url = Some(setup.queue_url.clone()));
            self.poll_region(&*bus, &settings, &region, &setup, &mut shutdown)
                .await;
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn check_trail(&self, bus: &dyn EventBus, region: &str) {
        let (text, ok) = match bus.trail(region).await {
            Ok(Ok(name)) => (
                format!("trail `{name}` records the management events"),
                true,
            ),
            Ok(Err(problem)) => {
                tracing::warn!(region = %region, problem = %problem, "no CloudTrail trail feeds the event path");
                (problem, false)
            }
            Err(e) => {
                tracing::warn!(region = %region, error = %e, "could not check the region's CloudTrail trails");
                (format!("could not check the trails: {e}"), false)
            }
        };
        self.with_region(region, |r| {
            r.trail = Some(text);
            r.trail_ok = ok;
        });
    }

    /// Heartbeats and long polls until the path looks broken (then returns, to set it up
    /// again) or shutdown.
    async fn poll_region(
        &self,
        bus: &dyn EventBus,
        settings: &EventSettings,
        region: &str,
        setup: &Setup,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) {
        let set_up_at = Instant::now();
        let mut last_sent: Option<Instant> = None;
        loop {
            if *shutdown.borrow_and_update() || !self.role().may_reconcile() {
                return;
            }
            if last_sent.is_none_or(|t| t.elapsed() >= settings.heartbeat) {
                last_sent = Some(Instant::now());
                if let Err(e) = bus.heartbeat(region, &settings.daemon).await {
                    tracing::warn!(region = %region, error = %e, "the heartbeat could not be put on the bus");
                }
                if let Ok(n) = bus.depth(region, &setup.queue_url).await {
                    self.inner
                        .metrics
                        .events_queue
                        .with_label_values(&[region])
                        .set(n as i64);
                }
            }
            let seen = self
                .state()
                .events
                .get(region)
                .and_then(|r| r.heartbeat_seen)
                .filter(|t| *t >= set_up_at)
                .unwrap_or(set_up_at);
            self.inner
                .metrics
                .events_heartbeat_age
                .with_label_values(&[region])
                .set(self.heartbeat_age(region));
            if seen.elapsed() > settings.stale_after() {
                self.set_mode(
                    region,
                    SyncMode::Polling,
                    Some(format!(
                        "no heartbeat came back for {} s (the queue or rule deleted or changed, permissions lost?): polling at --interval while the queue and rule are set up again",
                        seen.elapsed().as_secs()
                    )),
                );
                return;
            }
            let received = tokio::select! {
                r = bus.receive(region, &setup.queue_url, settings.poll_wait()) => r,
                _ = shutdown.changed() => return,
            };
            match received {
                Ok(messages) if !messages.is_empty() => {
                    self.take_messages(bus, settings, region, setup, messages)
                        .await
                }
                Ok(_) => {}
                Err(e) if e.is_not_found() => {
                    self.set_mode(
                        region,
                        SyncMode::Polling,
                        Some(format!(
                            "the event queue is gone ({e}): polling at --interval while it is set up again"
                        )),
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(region = %region, error = %e, "receiving events failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn heartbeat_age(&self, region: &str) -> f64 {
        self.state()
            .events
            .get(region)
            .and_then(|r| r.heartbeat_seen)
            .map_or(-1.0, |t| t.elapsed().as_secs_f64())
    }

    /// Maps a batch of messages to runs, schedules them, then deletes the messages.
    async fn take_messages(
        &self,
        bus: &dyn EventBus,
        settings: &EventSettings,
        region: &str,
        setup: &Setup,
        messages: Vec<Message>,
    ) {
        let index = self.index(region);
        let m = &self.inner.metrics;
        let mut triggers: BTreeMap<String, Option<SystemTime>> = BTreeMap::new();
        let mut ignored = 0u64;
        let mut heartbeat = false;
        let now = SystemTime::now();
        let oldest = messages.iter().filter_map(|x| x.sent_at).min();
        for msg in &messages {
            let mut ignore = |why: Ignored| {
                m.events_ignored.with_label_values(&[why.as_str()]).inc();
                ignored += 1;
            };
            match message::parse(&msg.body) {
                Err(why) => {
                    m.events_received.with_label_values(&["unknown"]).inc();
                    ignore(Ignored::Malformed);
                    tracing::warn!(region = %region, problem = %why, "malformed event message dropped");
                }
                Ok(Parsed::Heartbeat { daemon }) => {
                    m.events_received.with_label_values(&["heartbeat"]).inc();
                    if daemon == settings.daemon {
                        heartbeat = true;
                    } else {
                        ignore(Ignored::OtherDaemon);
                    }
                }
                Ok(Parsed::Change(c)) => {
                    m.events_received
                        .with_label_values(&[c.source.as_str()])
                        .inc();
                    let decided = message::decide(&c, region, &setup.account, &index)
                        .and_then(|stacks| self.not_an_echo(&c, stacks));
                    match decided {
                        Ok(stacks) => {
                            tracing::debug!(region = %region, event = %c.name, stacks = ?stacks, "change event");
                            for s in stacks {
                                let at = triggers.entry(s).or_insert(c.time);
                                *at = match (*at, c.time) {
                                    (Some(a), Some(b)) => Some(a.min(b)),
                                    (a, b) => a.or(b),
                                };
                            }
                        }
                        Err(why) => {
                            tracing::debug!(region = %region, event = %c.name, reason = why.as_str(), "event ignored");
                            ignore(why)
                        }
                    }
                }
            }
        }
        if let Some(sent) = oldest {
            m.events_oldest_age
                .with_label_values(&[region])
                .set(now.duration_since(sent).unwrap_or_default().as_secs_f64());
        }
        let triggered: Vec<&String> = triggers.keys().collect();
        if !triggered.is_empty() {
            tracing::info!(region = %region, stacks = ?triggered, "change events: runs scheduled");
        }
        self.event_trigger(&triggers);
        self.with_region(region, |r| {
            r.received += messages.len() as u64;
            r.ignored += ignored;
            if heartbeat {
                r.heartbeat_seen = Some(Instant::now());
                r.last_heartbeat_at = Some(rfc3339(now));
            }
        });
        if heartbeat {
            self.set_mode(region, SyncMode::Events, None);
        }
        // Only now that the runs are scheduled: a crash before leaves the messages in the
        // queue, to be taken again.
        let receipts = messages.into_iter().map(|x| x.receipt).collect();
        if let Err(e) = bus.delete(region, &setup.queue_url, receipts).await {
            tracing::warn!(region = %region, error = %e, "taken messages could not be deleted; they come back and are taken again");
        }
    }

    /// A service's own event (no User-Agent to tell who called) about a resource the stack's
    /// last run changed, within a minute of that run, is the echo of the daemon's own write.
    fn not_an_echo(
        &self,
        c: &message::ChangeEvent,
        stacks: BTreeSet<String>,
    ) -> Result<BTreeSet<String>, Ignored> {
        if c.cloudtrail {
            return Ok(stacks);
        }
        let st = self.state();
        let left: BTreeSet<String> =
            stacks
                .into_iter()
                .filter(|s| {
                    let echo = st.stacks.get(s).and_then(|e| e.wrote.as_ref()).is_some_and(
                        |(at, wrote)| {
                            at.elapsed() < ECHO_WINDOW && c.tokens.iter().any(|t| wrote.contains(t))
                        },
                    );
                    !echo
                })
                .collect();
        if left.is_empty() {
            Err(Ignored::OwnWrite)
        } else {
            Ok(left)
        }
    }

    /// What each stack of `region` owns: its deterministic and explicit names, its
    /// parameters' path, its DNS names, and the ids and names of its last observation.
    pub(crate) fn index(&self, region: &str) -> Index {
        let st = self.state();
        let mut index = Index::default();
        for (name, e) in &st.stacks {
            if e.stack.spec.region != region {
                continue;
            }
            let names = e.stack.names();
            for c in Component::ALL {
                index.add(name, &names.name(c));
            }
            index.add_prefix(name, &format!("{}/", names.prefix.trim_end_matches('/')));
            index.add(name, &names.db_password);
            if let Some(p) = &names.admin_password {
                index.add(name, p);
            }
            if let Some(front) = &names.front {
                for host in &front.names {
                    index.add(name, host);
                    index.add(name, &format!("{host}."));
                }
            }
            let reports = [
                e.last_run.as_ref(),
                e.observation.as_ref().map(|(_, _, r)| r),
            ];
            for r in reports.into_iter().flatten() {
                for c in &r.changes {
                    index.add(name, &c.name);
                    if let Some(id) = &c.id {
                        index.add(name, id);
                    }
                }
            }
        }
        index
    }

    /// Asks for a run of each stack after the debounce (a stack already due sooner keeps its
    /// time; a running stack gets one follow-up), remembering the earliest event time.
    fn event_trigger(&self, triggers: &BTreeMap<String, Option<SystemTime>>) {
        if triggers.is_empty() {
            return;
        }
        let debounce = self.inner.settings.events_debounce;
        let now = Instant::now();
        let mut st = self.state();
        for (name, at) in triggers {
            let Some(e) = st.stacks.get_mut(name) else {
                continue;
            };
            let at = at.unwrap_or_else(SystemTime::now);
            e.event_at = Some(e.event_at.map_or(at, |x| x.min(at)));
            e.urgent = true;
            if e.running {
                if !e.follow_up {
                    e.follow_up_by_event = true;
                }
                e.follow_up = true;
            } else if e.due > now + debounce {
                e.due = now + debounce;
            }
        }
        drop(st);
        self.inner.wake.notify_one();
    }

    fn with_region(&self, region: &str, f: impl FnOnce(&mut RegionEvents)) {
        let mut st = self.state();
        let r = st
            .events
            .entry(region.to_string())
            .or_insert_with(|| RegionEvents::new(region));
        f(r);
    }

    fn mode_metric(&self, region: &str, mode: SyncMode) {
        for m in [SyncMode::Events, SyncMode::Polling] {
            self.inner
                .metrics
                .events_mode
                .with_label_values(&[region, m.as_str()])
                .set(i64::from(m == mode));
        }
    }

    /// Moves `region` to `mode`. Falling back to polling brings every stack of the region
    /// due within one `--interval`; entering events mode spreads their next resyncs.
    fn set_mode(&self, region: &str, mode: SyncMode, reason: Option<String>) {
        let mut st = self.state();
        let r = st
            .events
            .entry(region.to_string())
            .or_insert_with(|| RegionEvents::new(region));
        let changed = r.mode != mode;
        if !changed && r.reason == reason {
            return;
        }
        r.mode = mode;
        r.reason = reason.clone();
        if changed {
            r.since = rfc3339(SystemTime::now());
        }
        let interval = self.inner.settings.interval;
        let now = Instant::now();
        for e in st.stacks.values_mut() {
            if e.stack.spec.region != region {
                continue;
            }
            match mode {
                SyncMode::Polling if !e.running && e.due > now + interval => {
                    e.due = now + interval.mul_f64(crate::settings::unit_random().max(0.1));
                }
                // A converged stack waits for its resync from now on, at a random point
                // of the interval (a fleet's resyncs spread out); the others on their next
                // converged run.
                SyncMode::Events if changed => match self.inner.settings.resync_interval {
                    Some(resync)
                        if !e.running
                            && e.last_result == Some(crate::metrics::RunResult::Converged) =>
                    {
                        e.due = now + self.inner.settings.resync_delay(resync, true);
                        e.spread_resync = false;
                    }
                    _ => e.spread_resync = true,
                },
                _ => {}
            }
        }
        drop(st);
        self.mode_metric(region, mode);
        if changed {
            self.inner.wake.notify_one();
            match mode {
                SyncMode::Events => {
                    tracing::info!(region = %region, "events flow: converged stacks are resynced at --resync-interval")
                }
                SyncMode::Polling => {
                    tracing::warn!(region = %region, reason = reason.as_deref().unwrap_or(""), "falling back to polling")
                }
            }
        } else if let Some(reason) = reason {
            tracing::warn!(region = %region, reason = %reason, "still polling");
        }
    }

    /// The event path of every region, for `GET /stacks`.
    pub fn events_status(&self) -> Vec<RegionEvents> {
        self.state().events.values().cloned().collect()
    }
}
