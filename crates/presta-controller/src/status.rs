//! What `GET /stacks` and `GET /stacks/{stack}` answer: per stack, every resource's state,
//! the drift (field, desired, live), the last run and error, outputs, times.

use std::sync::Arc;
use std::time::SystemTime;
use tokio::time::Instant;

use presta_aws::Action;
use presta_engine::report::{Outputs, ResourceState, StackReport};
use presta_spec::model::Enforcement;
use serde::Serialize;

use crate::metrics::RunResult;
use crate::time::rfc3339;
use crate::{Controller, Entry, State};

/// A stack's state in the status: the last run's result, or unknown before the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackState {
    Ran(RunResult),
    /// A plan newer than the last run saw drift that run did not (the page's badge follows
    /// the latest observation, not the last run).
    Drifted,
    Unknown,
}

impl Serialize for StackState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            StackState::Ran(r) => r.serialize(s),
            StackState::Drifted => s.serialize_str("drifted"),
            StackState::Unknown => s.serialize_str("unknown"),
        }
    }
}

/// One resource as last seen.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceStatus {
    pub kind: &'static str,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// At the last observation, after the corrections of that run.
    pub state: ResourceState,
    /// What the last reconcile run did to it (`none`, `create`, `update`, `delete`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_action: Option<Action>,
    /// When the last run failed on it: the class of the AWS error (`transient`, `refused`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<presta_aws::ErrorClass>,
    /// When the last run failed on it through an AWS call: the typed error (class, operation,
    /// resource, code, message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<presta_aws::error::StepError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One field that differs at the last observation.
#[derive(Debug, Clone, Serialize)]
pub struct DriftStatus {
    pub kind: &'static str,
    pub name: String,
    pub field: String,
    pub desired: serde_json::Value,
    pub live: serde_json::Value,
    /// Set when the reconciler refuses to correct it, with the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
}

/// What the daemon knows of one stack; `GET /stacks/{stack}`.
#[derive(Debug, Clone, Serialize)]
pub struct StackStatus {
    pub stack: String,
    pub region: String,
    /// `enforce` or `observe`.
    pub policy: Enforcement,
    /// How drift of this stack is found (`serve --events`): `events` (change events trigger
    /// runs; resynced at --resync-interval when converged) or `polling` (every --interval);
    /// absent with events off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<crate::events::SyncMode>,
    /// How the last run ended: `converged`, `blocked`, `pending`, `error`, `held`, `gated`;
    /// `drifted` when a plan made since saw drift; `unknown` before the first run.
    pub state: StackState,
    /// Is the shop serving? `healthy`, `degraded`, `down` or `unknown`, with the reasons (from
    /// the freshest observation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<presta_engine::health::Health>,
    /// The last maintenance command run on the instances (`exec`, `POST .../commands/...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_command: Option<LastCommand>,
    /// The plan waiting for approval (over the change budget), with its hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<presta_engine::budget::Held>,
    /// The release that waits for the stack this one follows (`spec.promotion`), with why
    /// and the hash that promotes it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gated: Option<presta_engine::promotion::Gated>,
    /// Why the stack is not retried soon: AWS refused the last run's requests (access
    /// denied, invalid request) and retrying would only repeat the refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    pub running: bool,
    pub runs: u64,
    pub consecutive_failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_observed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run_duration_ms: Option<f64>,
    /// Seconds until the next scheduled run (0 when due or running).
    pub next_run_in_seconds: f64,
    pub outputs: Outputs,
    /// The Auto Scaling group's latest instance refresh (rolling onto a new template version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_refresh: Option<presta_engine::report::RefreshStatus>,
    /// The shop's domain change seen at the last observation, and how it is carried out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain_change: Option<presta_engine::report::DomainChange>,
    /// Fields that differ at the last observation (corrected drift is gone from here; see
    /// `last_run` for what the last run changed).
    pub drift: Vec<DriftStatus>,
    pub resources: Vec<ResourceStatus>,
    /// The last reconcile run's report: every change it made, field by field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<Arc<StackReport>>,
}

/// A maintenance command's result, as the status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LastCommand {
    pub finished_at: String,
    #[serde(flatten)]
    pub run: Arc<presta_aws::commands::CommandRun>,
}

/// The daemon-wide figures of `GET /stacks`.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// This replica: `single` (no lease), `leader` or `standby` (with the leader's id).
    pub replica: crate::lease::Role,
    pub stacks: Vec<StackStatus>,
    pub config: ConfigStatus,
    /// The event path of each region (`serve --events`): mode, why, queue, trail, heartbeat.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<crate::events::RegionEvents>,
}

/// Which configuration runs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConfigStatus {
    /// Where the configuration was read from.
    pub sources: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_at: Option<String>,
    /// The last reload that was refused (the previous configuration kept running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reload_error: Option<String>,
}

impl Controller {
    /// The status of every stack and of the configuration.
    pub fn overview(&self) -> Overview {
        let st = self.state();
        Overview {
            replica: self.role(),
            stacks: st.stacks.values().map(|e| status_of(e, &st)).collect(),
            config: st.config.clone(),
            events: st.events.values().cloned().collect(),
        }
    }

    /// The status of one stack.
    pub fn status(&self, stack: &str) -> Option<StackStatus> {
        let st = self.state();
        st.stacks.get(stack).map(|e| status_of(e, &st))
    }
}

pub(crate) fn note_observation(st: &mut State, report: &StackReport, started: Instant) {
    if report.observation_failed {
        st.last_observation_error = Some((
            started,
            report.error.clone().unwrap_or_else(|| "unknown".into()),
        ));
    } else if st.last_observation_ok.is_none_or(|t| t < started) {
        st.last_observation_ok = Some(started);
    }
}

pub(crate) fn set_observation(
    e: &mut Entry,
    started: (Instant, SystemTime),
    report: Arc<StackReport>,
) {
    if e.observation
        .as_ref()
        .is_none_or(|(t, _, _)| *t <= started.0)
    {
        e.observation = Some((started.0, started.1, report));
    }
}

pub(crate) fn first_error(report: &StackReport) -> Option<String> {
    report.error.clone().or_else(|| {
        report
            .changes
            .iter()
            .find(|c| c.action == Action::Failed)
            .map(|c| {
                format!(
                    "{} {}: {}",
                    c.kind,
                    c.name,
                    c.reason.as_deref().unwrap_or("failed")
                )
            })
    })
}

/// The last run's result, unless a plan made since (`GET /stacks/{stack}/plan`) saw drift.
fn state_of(e: &Entry) -> StackState {
    let observation = e.observation.as_ref().map(|(_, _, r)| r);
    match (observation, &e.last_run) {
        (Some(seen), Some(run))
            if !Arc::ptr_eq(seen, run)
                && seen.mode == presta_aws::Mode::Plan
                && !seen.observation_failed
                && seen.pending() > 0 =>
        {
            StackState::Drifted
        }
        _ => e.last_result.map_or(StackState::Unknown, StackState::Ran),
    }
}

fn status_of(e: &Entry, st: &State) -> StackStatus {
    let stack = &e.stack;
    let observation = e.observation.as_ref().map(|(_, _, r)| r);
    let mut drift = Vec::new();
    let mut resources = Vec::new();
    if let Some(r) = observation {
        for c in &r.changes {
            let corrected = r.applied() && c.is_pending();
            for d in &c.diffs {
                if corrected && d.blocked.is_none() {
                    continue;
                }
                drift.push(DriftStatus {
                    kind: c.kind.as_str(),
                    name: c.name.clone(),
                    field: d.field.clone(),
                    desired: d.desired.clone(),
                    live: d.live.clone(),
                    blocked: d.blocked.clone(),
                });
            }
            let state = r.state_of(c);
            let last = e.last_run.as_ref().and_then(|run| {
                run.changes
                    .iter()
                    .find(|x| x.kind == c.kind && x.name == c.name)
            });
            resources.push(ResourceStatus {
                kind: c.kind.as_str(),
                name: c.name.clone(),
                id: c.id.clone(),
                state,
                last_action: last.map(|x| x.action),
                error_class: last.and_then(|x| x.error_class).or(c.error_class),
                error: last
                    .and_then(|x| x.error.clone())
                    .or_else(|| c.error.clone()),
                reason: c.reason.clone(),
            });
        }
    }
    StackStatus {
        stack: stack.name().to_string(),
        region: stack.spec.region.clone(),
        policy: stack.spec.policy.mode,
        sync: st.events.get(&stack.spec.region).map(|r| r.mode),
        state: state_of(e),
        health: observation
            .and_then(|r| r.health.clone())
            .or_else(|| e.last_run.as_ref().and_then(|r| r.health.clone())),
        last_command: e.last_command.as_ref().map(|(at, run)| LastCommand {
            finished_at: rfc3339(*at),
            run: run.clone(),
        }),
        held: observation
            .and_then(|r| r.held.clone())
            .or_else(|| e.last_run.as_ref().and_then(|r| r.held.clone())),
        gated: observation
            .map(|r| r.gated.clone())
            .unwrap_or_else(|| e.last_run.as_ref().and_then(|r| r.gated.clone())),
        waiting_for: e.refused.then(|| {
            format!(
                "AWS refused the last run's requests: fix the permission or the request, then change the configuration or POST /reconcile/{}; retried on its own in {} s",
                stack.name(),
                e.due.saturating_duration_since(Instant::now()).as_secs()
            )
        }),
        running: e.running,
        runs: e.runs_done,
        consecutive_failures: e.failures,
        last_error: e.last_error.clone(),
        last_observed_at: e.observation.as_ref().map(|(_, t, _)| rfc3339(*t)),
        last_run_at: e.last_run_at.map(rfc3339),
        last_success_at: e.last_success_at.map(rfc3339),
        last_run_duration_ms: e
            .last_run
            .as_ref()
            .map(|r| (r.duration.as_secs_f64() * 10_000.0).round() / 10.0),
        next_run_in_seconds: if e.running {
            0.0
        } else {
            (e.due
                .saturating_duration_since(Instant::now())
                .as_secs_f64()
                * 10.0)
                .round()
                / 10.0
        },
        outputs: observation
            .map(|r| r.outputs.clone())
            .or_else(|| e.last_run.as_ref().map(|r| r.outputs.clone()))
            .unwrap_or_default(),
        instance_refresh: observation.and_then(|r| r.instance_refresh.clone()),
        domain_change: observation.and_then(|r| r.domain_change.clone()),
        drift,
        resources,
        last_run: e.last_run.clone(),
    }
}
