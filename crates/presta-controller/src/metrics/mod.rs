//! The daemon's Prometheus metrics, owned by a registry of their own (no global): every
//! figure the controller and the AWS call interceptor update, and the text format
//! `GET /metrics` serves. Names follow Prometheus conventions (prefix `presta_`, base units,
//! `_total` for counters); labels never carry ids, ARNs or error messages. The reference is
//! `docs/metrics.md` (a test keeps the two in step).

use std::time::Duration;

use presta_aws::calls::{CallRecorder, Outcome};
use presta_aws::{Action, Kind, Mode};
use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use presta_engine::report::{ResourceState, StackReport};

/// How a stack run ended, as the `result` label of `presta_reconcile_runs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    /// Live matches desired at the end of the run (corrections included).
    Converged,
    /// Converged except for drift the reconciler refuses to correct (data at risk, not owned).
    Blocked,
    /// Something is still being created or waits for a dependency; runs again soon.
    Pending,
    /// A step or the observation failed.
    Error,
    /// The plan exceeds the change budget: nothing changed until a person approves it.
    Held,
    /// A change that rolls the instances waits for the stack this one follows
    /// (`spec.promotion`); everything else converged.
    Gated,
}

impl RunResult {
    pub fn of(report: &StackReport) -> RunResult {
        if report.held.is_some() {
            RunResult::Held
        } else if report.failed() > 0 {
            RunResult::Error
        } else if report.gated.is_some() {
            RunResult::Gated
        } else if report
            .changes
            .iter()
            .any(|c| c.action == Action::Waiting || (report.mode == Mode::Plan && c.is_pending()))
        {
            RunResult::Pending
        } else if report.blocked() > 0 {
            RunResult::Blocked
        } else {
            RunResult::Converged
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Converged => "converged",
            RunResult::Blocked => "blocked",
            RunResult::Pending => "pending",
            RunResult::Error => "error",
            RunResult::Held => "held",
            RunResult::Gated => "gated",
        }
    }
}

/// Every metric of the daemon.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub reconcile_runs: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    pub drifted_resources: IntGaugeVec,
    pub drift_detected: IntCounterVec,
    pub drift_corrected: IntCounterVec,
    pub blocked_drifts: IntGaugeVec,
    pub resources_ready: IntGaugeVec,
    pub resources_managed: IntGaugeVec,
    pub last_success: GaugeVec,
    pub aws_calls: IntCounterVec,
    pub aws_call_duration: HistogramVec,
    pub config_reloads: IntCounterVec,
    pub stacks_configured: Gauge,
    pub orphaned_resources: IntGaugeVec,
    pub held: IntGaugeVec,
    pub gated: IntGaugeVec,
    pub refresh_percent: IntGaugeVec,
    pub gated_waiting: GaugeVec,
    /// Since when (Unix seconds) each gated stack has been gated, in this process.
    gated_since: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>,
    pub leader: IntGauge,
    pub health: IntGaugeVec,
    pub targets_healthy: IntGaugeVec,
    pub certificate_expiry: IntGaugeVec,
    pub reconcile_errors: IntCounterVec,
    pub aws_errors: IntCounterVec,
    pub budget_wait: prometheus::CounterVec,
    pub events_mode: IntGaugeVec,
    pub events_received: IntCounterVec,
    pub events_ignored: IntCounterVec,
    pub event_heal: HistogramVec,
    pub events_queue: IntGaugeVec,
    pub events_oldest_age: GaugeVec,
    pub events_heartbeat_age: GaugeVec,
    pub build_info: IntGaugeVec,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Only reachable with a malformed name or duplicate registration: a programming error
    // that every test run would show.
    r.unwrap_or_else(|e| panic!("metric definition: {e}"))
}

mod defs;
use defs::{DEFINITIONS, Def};

/// Creates the metrics of [`DEFINITIONS`] by name and registers each.
struct Define<'a>(&'a Registry);

impl Define<'_> {
    fn def(name: &str) -> &'static Def {
        DEFINITIONS
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("metric {name} is not in DEFINITIONS"))
    }

    fn register<M: prometheus::core::Collector + Clone + 'static>(&self, m: M) -> M {
        must(self.0.register(Box::new(m.clone())));
        m
    }

    fn counter(&self, name: &str) -> IntCounterVec {
        let d = Self::def(name);
        self.register(must(IntCounterVec::new(
            Opts::new(d.name, d.help),
            d.labels,
        )))
    }

    fn gauge(&self, name: &str) -> IntGaugeVec {
        let d = Self::def(name);
        self.register(must(IntGaugeVec::new(Opts::new(d.name, d.help), d.labels)))
    }

    fn float_counter(&self, name: &str) -> prometheus::CounterVec {
        let d = Self::def(name);
        self.register(must(prometheus::CounterVec::new(
            Opts::new(d.name, d.help),
            d.labels,
        )))
    }

    fn float_gauge(&self, name: &str) -> GaugeVec {
        let d = Self::def(name);
        self.register(must(GaugeVec::new(Opts::new(d.name, d.help), d.labels)))
    }

    fn histogram(&self, name: &str, buckets: &[f64]) -> HistogramVec {
        let d = Self::def(name);
        let opts = HistogramOpts::new(d.name, d.help).buckets(buckets.to_vec());
        self.register(must(HistogramVec::new(opts, d.labels)))
    }

    fn int_gauge(&self, name: &str) -> IntGauge {
        let d = Self::def(name);
        self.register(must(IntGauge::new(d.name, d.help)))
    }

    fn plain_gauge(&self, name: &str) -> Gauge {
        let d = Self::def(name);
        self.register(must(Gauge::new(d.name, d.help)))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let d = Define(&registry);
        let m = Metrics {
            reconcile_runs: d.counter("presta_reconcile_runs_total"),
            reconcile_duration: d.histogram(
                "presta_reconcile_duration_seconds",
                &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0],
            ),
            drifted_resources: d.gauge("presta_drifted_resources"),
            drift_detected: d.counter("presta_drift_detected_total"),
            drift_corrected: d.counter("presta_drift_corrected_total"),
            blocked_drifts: d.gauge("presta_blocked_drifts"),
            resources_ready: d.gauge("presta_resources_ready"),
            resources_managed: d.gauge("presta_resources_managed"),
            last_success: d.float_gauge("presta_last_successful_reconcile_timestamp_seconds"),
            aws_calls: d.counter("presta_aws_api_calls_total"),
            aws_call_duration: d.histogram(
                "presta_aws_api_call_duration_seconds",
                &[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
            config_reloads: d.counter("presta_config_reloads_total"),
            stacks_configured: d.plain_gauge("presta_stacks_configured"),
            leader: d.int_gauge("presta_lease_leader"),
            aws_errors: d.counter("presta_aws_api_errors_total"),
            budget_wait: d.float_counter("presta_aws_budget_wait_seconds_total"),
            reconcile_errors: d.counter("presta_reconcile_errors_total"),
            orphaned_resources: d.gauge("presta_orphaned_resources"),
            held: d.gauge("presta_stack_held"),
            gated: d.gauge("presta_stack_gated"),
            refresh_percent: d.gauge("presta_instance_refresh_percent"),
            gated_waiting: d.float_gauge("presta_stack_gated_soak_ratio"),
            gated_since: Default::default(),
            health: d.gauge("presta_stack_health"),
            targets_healthy: d.gauge("presta_targets_healthy"),
            certificate_expiry: d.gauge("presta_certificate_expiry_seconds"),
            events_mode: d.gauge("presta_events_mode"),
            events_received: d.counter("presta_events_received_total"),
            events_ignored: d.counter("presta_events_ignored_total"),
            event_heal: d.histogram(
                "presta_event_heal_seconds",
                &[0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0],
            ),
            events_queue: d.gauge("presta_events_queue_messages"),
            events_oldest_age: d.float_gauge("presta_events_oldest_message_age_seconds"),
            events_heartbeat_age: d.float_gauge("presta_events_heartbeat_age_seconds"),
            build_info: d.gauge("presta_build_info"),
            registry,
        };
        m.leader.set(1);
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for result in ["success", "error"] {
            m.config_reloads.with_label_values(&[result]);
        }
        m
    }

    /// Replaces the orphan figures with the last search's.
    pub fn set_orphans(&self, orphans: &[presta_aws::orphans::Orphan]) {
        self.orphaned_resources.reset();
        for o in orphans {
            self.orphaned_resources
                .with_label_values(&[o.stack.as_str(), o.kind.as_str()])
                .inc();
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding metrics failed: {e}\n"))
    }

    /// Updates the figures of one stack from a run's report. `applied` tells whether the run
    /// was allowed to change things (an apply on an `enforce` stack) or only looked (a plan).
    pub fn observe_report(&self, report: &StackReport, unix_now: f64) {
        let stack = report.stack.as_str();
        if report.mode == Mode::Apply {
            let result = RunResult::of(report);
            self.reconcile_runs
                .with_label_values(&[stack, result.as_str()])
                .inc();
            self.reconcile_duration
                .with_label_values(&[stack])
                .observe(report.duration.as_secs_f64());
            if matches!(result, RunResult::Converged | RunResult::Blocked) {
                self.last_success.with_label_values(&[stack]).set(unix_now);
            }
        }
        if !report.observation_failed {
            self.held
                .with_label_values(&[stack])
                .set(i64::from(report.held.is_some()));
            self.gated
                .with_label_values(&[stack])
                .set(i64::from(report.gated.is_some()));
            self.observe_gate(stack, report.gated.as_ref(), unix_now as u64);
            self.observe_refresh(stack, report.instance_refresh.as_ref());
        }
        self.observe_health(report);
        if report.observation_failed {
            // Nothing was seen: keep the last observed figures rather than claiming zero drift.
            return;
        }
        let applied = report.applied();
        let mut drifted: std::collections::BTreeMap<Kind, i64> = Default::default();
        let mut blocked: std::collections::BTreeMap<Kind, i64> = Default::default();
        let mut ready = 0;
        for c in &report.changes {
            self.count_change(stack, c, applied);
            match report.state_of(c) {
                ResourceState::InSync => ready += 1,
                ResourceState::Blocked => {
                    *blocked.entry(c.kind).or_default() += 1;
                    *drifted.entry(c.kind).or_default() += 1;
                }
                ResourceState::Drifted | ResourceState::Absent | ResourceState::Undeclared => {
                    *drifted.entry(c.kind).or_default() += 1
                }
                ResourceState::Waiting | ResourceState::Failed => {}
            }
        }
        for kind in presta_aws::registry::kinds() {
            self.drifted_resources
                .with_label_values(&[stack, kind.as_str()])
                .set(drifted.get(&kind).copied().unwrap_or(0));
            self.blocked_drifts
                .with_label_values(&[stack, kind.as_str()])
                .set(blocked.get(&kind).copied().unwrap_or(0));
        }
        self.resources_ready.with_label_values(&[stack]).set(ready);
        self.resources_managed
            .with_label_values(&[stack])
            .set(report.changes.len() as i64);
    }

    /// The health verdict (a state set) and the healthy targets.
    fn observe_health(&self, report: &StackReport) {
        let stack = report.stack.as_str();
        let verdict = match (&report.health, report.observation_failed) {
            (Some(h), false) => Some(h.verdict),
            (_, true) => Some(presta_engine::health::Verdict::Unknown),
            (None, false) => None,
        };
        if let Some(v) = verdict {
            for s in presta_engine::health::Verdict::ALL {
                self.health
                    .with_label_values(&[stack, s.as_str()])
                    .set(i64::from(s == v));
            }
        }
        if let Some(n) = report.health.as_ref().and_then(|h| h.targets_healthy) {
            self.targets_healthy
                .with_label_values(&[stack])
                .set(i64::from(n));
        }
        match report.health.as_ref().map(|h| h.certificate_not_after) {
            Some(Some(t)) => self.certificate_expiry.with_label_values(&[stack]).set(t),
            Some(None) => {
                let _ = self.certificate_expiry.remove_label_values(&[stack]);
            }
            None => {}
        }
    }

    /// One resource's errors, drift seen and drift corrected.
    fn count_change(&self, stack: &str, c: &presta_aws::Change, applied: bool) {
        let kind = c.kind.as_str();
        if c.action == Action::Failed {
            let class = c.error_class.map_or("other", |e| e.as_str());
            let operation = c.error.as_ref().map_or("", |e| e.operation.as_str());
            self.reconcile_errors
                .with_label_values(&[stack, kind, class, operation])
                .inc();
        }
        let fields: Vec<&str> = match c.action {
            Action::Create | Action::Restore => vec!["(absent)"],
            Action::Delete => vec!["(undeclared)"],
            // A lost resource the reconciler refuses to rebuild empty.
            Action::Blocked if c.diffs.is_empty() && c.id.is_none() => vec!["(absent)"],
            Action::Update | Action::Replace | Action::Blocked => {
                c.diffs.iter().map(|d| d.field.as_str()).collect()
            }
            Action::None | Action::Waiting | Action::Failed => Vec::new(),
        };
        for f in &fields {
            self.drift_detected
                .with_label_values(&[stack, kind, f])
                .inc();
        }
        if applied && c.is_pending() {
            for d in c.applicable() {
                self.drift_corrected
                    .with_label_values(&[stack, kind, &d.field])
                    .inc();
            }
            if matches!(c.action, Action::Create | Action::Restore | Action::Delete) {
                self.drift_corrected
                    .with_label_values(&[stack, kind, fields[0]])
                    .inc();
            }
        }
    }

    /// Drops the series of a stack that left the configuration.
    pub fn forget_stack(&self, stack: &str) {
        for kind in presta_aws::registry::kinds() {
            let _ = self
                .drifted_resources
                .remove_label_values(&[stack, kind.as_str()]);
            let _ = self
                .blocked_drifts
                .remove_label_values(&[stack, kind.as_str()]);
        }
        let _ = self.resources_ready.remove_label_values(&[stack]);
        let _ = self.resources_managed.remove_label_values(&[stack]);
        let _ = self.last_success.remove_label_values(&[stack]);
        let _ = self.held.remove_label_values(&[stack]);
        let _ = self.gated.remove_label_values(&[stack]);
        for status in REFRESH_STATUSES {
            let _ = self.refresh_percent.remove_label_values(&[stack, status]);
        }
        let _ = self.gated_waiting.remove_label_values(&[stack]);
        self.gated_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(stack);
        let _ = self.targets_healthy.remove_label_values(&[stack]);
        let _ = self.certificate_expiry.remove_label_values(&[stack]);
        for v in presta_engine::health::Verdict::ALL {
            let _ = self.health.remove_label_values(&[stack, v.as_str()]);
        }
    }
}

/// The statuses AWS gives an instance refresh.
const REFRESH_STATUSES: &[&str] = &[
    "Pending",
    "InProgress",
    "Successful",
    "Failed",
    "Cancelling",
    "Cancelled",
    "RollbackInProgress",
    "RollbackFailed",
    "RollbackSuccessful",
    "Baking",
];

impl Metrics {
    /// Keeps `presta_instance_refresh_percent`: one series, labelled with the refresh's
    /// current status.
    fn observe_refresh(&self, stack: &str, refresh: Option<&presta_engine::report::RefreshStatus>) {
        let Some(r) = refresh else {
            return; // a refresh out of view (ended and unmarked) keeps its last figure
        };
        for status in REFRESH_STATUSES {
            if *status != r.status {
                let _ = self.refresh_percent.remove_label_values(&[stack, status]);
            }
        }
        self.refresh_percent
            .with_label_values(&[stack, &r.status])
            .set(i64::from(r.percentage_complete));
    }

    /// Keeps `presta_stack_gated_soak_ratio`: time gated (since this process first saw the
    /// gate) over the soak asked.
    fn observe_gate(&self, stack: &str, gated: Option<&presta_engine::promotion::Gated>, now: u64) {
        let mut since = self.gated_since.lock().unwrap_or_else(|e| e.into_inner());
        let ratio = match gated {
            None => {
                since.remove(stack);
                0.0
            }
            Some(g) => {
                let start = *since.entry(stack.to_string()).or_insert(now);
                now.saturating_sub(start) as f64 / g.soak_seconds.max(1) as f64
            }
        };
        self.gated_waiting.with_label_values(&[stack]).set(ratio);
    }
}

impl CallRecorder for Metrics {
    fn record(&self, service: &str, operation: &str, outcome: Outcome, elapsed: Duration) {
        self.aws_calls
            .with_label_values(&[service, operation, outcome.as_str()])
            .inc();
        self.aws_call_duration
            .with_label_values(&[service, operation])
            .observe(elapsed.as_secs_f64());
    }

    fn record_attempt_error(&self, service: &str, operation: &str, class: &str) {
        self.aws_errors
            .with_label_values(&[service, operation, class])
            .inc();
    }

    fn record_budget_wait(&self, service: &str, waited: Duration) {
        self.budget_wait
            .with_label_values(&[service])
            .inc_by(waited.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use presta_aws::{Change, FieldDiff};
    use serde_json::json;

    use super::*;

    fn report(mode: Mode, changes: Vec<Change>) -> StackReport {
        let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/demo.yaml");
        let mut stack = presta_spec::load_path(std::path::Path::new(demo))
            .unwrap()
            .remove(0)
            .stack;
        stack.metadata.name = "shop".into();
        let mut r = StackReport::new(&stack, mode, false);
        r.changes = changes;
        r.duration = Duration::from_millis(120);
        r
    }

    fn change(kind: Kind, action: Action, field: &str, blocked: Option<&str>) -> Change {
        Change::new(kind, "x", action).with_diffs(vec![FieldDiff {
            field: field.into(),
            desired: json!(1),
            live: json!(2),
            blocked: blocked.map(str::to_string),
        }])
    }

    fn ok(kind: Kind) -> Change {
        Change::new(kind, "y", Action::None)
    }

    #[test]
    fn a_plan_shows_drift_and_an_apply_corrects_it() {
        let m = Metrics::new();
        let drift = change(Kind::SECURITY_GROUP, Action::Update, "ingress", None);
        m.observe_report(
            &report(Mode::Plan, vec![drift.clone(), ok(Kind::TARGET_GROUP)]),
            1.0,
        );
        let text = m.render();
        assert!(
            text.contains(r#"presta_drifted_resources{kind="security_group",stack="shop"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"presta_drift_detected_total{field="ingress",kind="security_group",stack="shop"} 1"#), "{text}");
        assert!(
            !text.contains("presta_drift_corrected_total{"),
            "a plan corrects nothing:\n{text}"
        );
        assert!(
            !text.contains("presta_reconcile_runs_total{"),
            "a plan is not a run:\n{text}"
        );

        m.observe_report(
            &report(Mode::Apply, vec![drift, ok(Kind::TARGET_GROUP)]),
            1700000000.0,
        );
        let text = m.render();
        assert!(
            text.contains(r#"presta_drifted_resources{kind="security_group",stack="shop"} 0"#),
            "{text}"
        );
        assert!(text.contains(r#"presta_drift_corrected_total{field="ingress",kind="security_group",stack="shop"} 1"#), "{text}");
        assert!(
            text.contains(r#"presta_reconcile_runs_total{result="converged",stack="shop"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"presta_resources_ready{stack="shop"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"presta_last_successful_reconcile_timestamp_seconds{stack="shop"} 1700000000"#
            ),
            "{text}"
        );
    }

    #[test]
    fn blocked_drift_stays_counted_and_is_never_corrected() {
        let m = Metrics::new();
        let blocked = change(
            Kind::FILE_SYSTEM,
            Action::Blocked,
            "encrypted",
            Some("fixed at creation"),
        );
        let r = report(Mode::Apply, vec![blocked]);
        assert_eq!(RunResult::of(&r), RunResult::Blocked);
        m.observe_report(&r, 5.0);
        let text = m.render();
        assert!(
            text.contains(r#"presta_blocked_drifts{kind="file_system",stack="shop"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"presta_drifted_resources{kind="file_system",stack="shop"} 1"#),
            "{text}"
        );
        assert!(!text.contains("presta_drift_corrected_total{"), "{text}");
        assert!(
            text.contains(r#"presta_reconcile_runs_total{result="blocked",stack="shop"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn failures_and_waits_are_results_not_successes() {
        let mut failed = report(Mode::Apply, vec![]);
        failed.error = Some("observing eu-west-3 failed".into());
        assert_eq!(RunResult::of(&failed), RunResult::Error);
        let mut waiting = ok(Kind::DB_INSTANCE);
        waiting.action = Action::Waiting;
        assert_eq!(
            RunResult::of(&report(Mode::Apply, vec![waiting])),
            RunResult::Pending
        );
        let m = Metrics::new();
        m.observe_report(&failed, 9.0);
        let text = m.render();
        assert!(
            text.contains(r#"presta_reconcile_runs_total{result="error",stack="shop"} 1"#),
            "{text}"
        );
        assert!(
            !text.contains("presta_last_successful_reconcile_timestamp_seconds{"),
            "{text}"
        );
    }

    #[test]
    fn aws_calls_are_counted_by_service_operation_and_outcome() {
        let m = Metrics::new();
        m.record(
            "EC2",
            "DescribeSecurityGroups",
            Outcome::Success,
            Duration::from_millis(8),
        );
        m.record(
            "EC2",
            "DescribeSecurityGroups",
            Outcome::ClientError,
            Duration::from_millis(8),
        );
        let text = m.render();
        assert!(text.contains(r#"presta_aws_api_calls_total{operation="DescribeSecurityGroups",outcome="success",service="EC2"} 1"#), "{text}");
        assert!(text.contains(r#"presta_aws_api_calls_total{operation="DescribeSecurityGroups",outcome="client_error",service="EC2"} 1"#), "{text}");
        assert!(text.contains(r#"presta_aws_api_call_duration_seconds_count{operation="DescribeSecurityGroups",service="EC2"} 2"#), "{text}");
        assert!(text.contains("presta_build_info{version="), "{text}");
    }
}
