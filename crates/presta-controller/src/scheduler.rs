//! The keyed scheduler: which stacks are due, one run per stack at a time, a trigger during a
//! run queues exactly one follow-up, and the requeue decision after each run ([`requeue`], a
//! pure function of the result, like kube-rs' `error_policy`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

use presta_aws::Mode;
use presta_aws::calls::CallStats;
use presta_engine::budget::{Guard, Guards};
use presta_engine::report::StackReport;
use presta_spec::Stack;

use crate::metrics::RunResult;
use crate::status::{first_error, note_observation, set_observation};
use crate::time::unix;
use crate::{Controller, ControllerSettings, Entry, TriggerError};

/// When a stack runs next after a run, and its count of failures in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Requeue {
    pub delay: Duration,
    pub failures: u32,
    /// The run counts as a success (converged, or only blocked by the data rule).
    pub success: bool,
}

/// The requeue decision, from a run's result alone: a refusal by AWS waits the long
/// refused-retry delay (retrying soon would only repeat it; a configuration change or a
/// trigger runs it earlier), another failure backs off exponentially, a stack still waiting
/// for AWS is looked at again soon, anything else one (jittered) interval later.
///
/// With events flowing in the stack's region (`resync`: the resync interval), a converged
/// stack waits the resync interval instead (`spread`: a random part of it, the first time);
/// a stack pending, blocked, held, gated or failing keeps the short delays.
pub(crate) fn requeue(
    result: RunResult,
    refused: bool,
    failures: u32,
    settings: &ControllerSettings,
    resync: Option<(Duration, bool)>,
) -> Requeue {
    let ok = |delay, success| Requeue {
        delay,
        failures: 0,
        success,
    };
    match result {
        RunResult::Error if refused => Requeue {
            delay: settings.refused_retry,
            failures: failures + 1,
            success: false,
        },
        RunResult::Error => Requeue {
            delay: settings.backoff(failures + 1),
            failures: failures + 1,
            success: false,
        },
        RunResult::Held => ok(settings.jittered_interval(), false),
        RunResult::Gated => ok(settings.jittered_interval(), true),
        RunResult::Pending => ok(settings.pending_requeue, false),
        RunResult::Converged => match resync {
            Some((every, spread)) => ok(settings.resync_delay(every, spread), true),
            None => ok(settings.jittered_interval(), true),
        },
        RunResult::Blocked => ok(settings.jittered_interval(), true),
    }
}

impl Controller {
    /// The stacks due now (marked running), and when the next one is due.
    pub(crate) fn take_due(&self) -> (Vec<Arc<Stack>>, Option<Instant>) {
        self.take_due_at(Instant::now())
    }

    /// [`Controller::take_due`] as if it were `now`.
    pub(crate) fn take_due_at(&self, now: Instant) -> (Vec<Arc<Stack>>, Option<Instant>) {
        let mut st = self.state();
        let mut batch = Vec::new();
        let mut next: Option<Instant> = None;
        for e in st.stacks.values_mut() {
            if e.running {
                continue;
            }
            if e.due <= now {
                e.running = true;
                e.started_at = Some(now);
                e.follow_up_by_event = false;
                e.follow_up = false;
                e.running_urgent = std::mem::take(&mut e.urgent);
                e.runs_started += 1;
                batch.push(e.stack.clone());
            } else {
                next = Some(next.map_or(e.due, |n| n.min(e.due)));
            }
        }
        (batch, next)
    }

    /// The stacks of `batch` whose run was asked by an event or a person, and the others.
    pub(crate) fn split_urgent(
        &self,
        batch: Vec<Arc<Stack>>,
    ) -> (Vec<Arc<Stack>>, Vec<Arc<Stack>>) {
        let st = self.state();
        batch
            .into_iter()
            .partition(|s| st.stacks.get(s.name()).is_some_and(|e| e.running_urgent))
    }

    pub(crate) async fn run_batch(&self, batch: Vec<Arc<Stack>>) {
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
                            approved_by: e.approved_by.clone(),
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
    pub(crate) fn finish(&self, report: StackReport, started: (Instant, SystemTime)) {
        let now = SystemTime::now();
        self.inner.metrics.observe_report(&report, unix(now));
        let result = RunResult::of(&report);
        let settings = &self.inner.settings;
        {
            let mut st = self.state();
            // The batch's observation is over once one of its stacks reports.
            st.observing.remove(&started.0);
            note_observation(&mut st, &report, started.0);
            let events_flow = st.stacks.get(&report.stack).is_some_and(|e| {
                st.events
                    .get(&e.stack.spec.region)
                    .is_some_and(|r| r.mode == crate::events::SyncMode::Events)
            });
            if let Some(e) = st.stacks.get_mut(&report.stack) {
                e.running = false;
                e.runs_done += 1;
                e.last_result = Some(result);
                e.last_run_at = Some(now);
                let refused = result == RunResult::Error && refused_only(&report);
                e.refused = refused;
                let resync = settings
                    .resync_interval
                    .filter(|_| events_flow)
                    .map(|every| (every, e.spread_resync));
                // A resync promises a look at least once per resync interval: it counts from
                // when this run started, not from when it ended (however long the API budget
                // made the run wait). A run that overran its interval (it queued behind a
                // fleet's build) is spread again instead, so that the runs that queued
                // together do not stay together.
                let late = matches!(
                    (resync, e.started_at),
                    (Some((every, false)), Some(start))
                        if result == RunResult::Converged && start + every <= Instant::now()
                );
                let resync = resync.map(|(every, spread)| (every, spread || late));
                let next = requeue(result, refused, e.failures, settings, resync);
                let resync_from = match resync {
                    Some((_, false)) if result == RunResult::Converged => e.started_at,
                    _ => None,
                };
                if resync.is_some() && result == RunResult::Converged {
                    e.spread_resync = false;
                }
                if result == RunResult::Converged
                    && !e.follow_up
                    && let Some(at) = e.event_at.take()
                {
                    self.inner
                        .metrics
                        .event_heal
                        .with_label_values::<&str>(&[])
                        .observe(now.duration_since(at).unwrap_or_default().as_secs_f64());
                }
                e.failures = next.failures;
                if next.success {
                    e.last_success_at = Some(now);
                }
                let delay = next.delay;
                e.last_error = first_error(&report);
                // An approval is for one run: used, or void because the plan changed.
                if e.approved.take().is_some() && result != RunResult::Held {
                    e.presumed_existing = None;
                }
                e.approved_by = None;
                if let Some(h) = &report.held {
                    tracing::warn!(stack = %e.stack.name(), plan_hash = %h.plan_hash, changes = h.changes, max_changes_per_run = h.max_changes_per_run, reason = %h.reason, "stack held: the plan waits for approval (POST /stacks/{{stack}}/approve)");
                }
                e.due = if e.follow_up && e.follow_up_by_event {
                    // At most one run per debounce window for events.
                    let window = e.started_at.map(|t| t + settings.events_debounce);
                    window.map_or_else(Instant::now, |w| w.max(Instant::now()))
                } else if e.follow_up {
                    Instant::now()
                } else {
                    resync_from.unwrap_or_else(Instant::now) + delay
                };
                if report.applied() {
                    let wrote: std::collections::BTreeSet<String> = report
                        .changes
                        .iter()
                        .filter(|c| c.is_pending())
                        .flat_map(|c| std::iter::once(c.name.clone()).chain(c.id.clone()))
                        .collect();
                    if !wrote.is_empty() {
                        e.wrote = Some((Instant::now(), wrote));
                    }
                }
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
            e.urgent = true;
            if e.running {
                e.follow_up = true;
                // Asked by a person: at once, whatever events asked before.
                e.follow_up_by_event = false;
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
}

/// Whether the stack's last run saw any of its resources in AWS.
pub(crate) fn seen_with_resources(e: &Entry) -> bool {
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

    fn settings() -> ControllerSettings {
        ControllerSettings::default()
    }

    #[test]
    fn failures_back_off_and_count_a_refusal_waits_long_success_resets() {
        let s = settings();
        let first = requeue(RunResult::Error, false, 0, &s, None);
        assert_eq!((first.failures, first.success), (1, false));
        assert_eq!(first.delay, s.backoff(1));
        let third = requeue(RunResult::Error, false, 2, &s, None);
        assert_eq!(third.failures, 3);
        assert!(third.delay >= first.delay, "{third:?} {first:?}");
        let refused = requeue(RunResult::Error, true, 0, &s, None);
        assert_eq!(refused.delay, s.refused_retry);
        assert_eq!(refused.failures, 1);
        assert!(refused.delay > third.delay);
        let ok = requeue(RunResult::Converged, false, 5, &s, None);
        assert_eq!((ok.failures, ok.success), (0, true));
        assert!(ok.delay <= s.interval + s.interval / 2, "{ok:?}");
        let pending = requeue(RunResult::Pending, false, 5, &s, None);
        assert_eq!(pending.delay, s.pending_requeue);
        assert!(!pending.success && pending.failures == 0);
        let held = requeue(RunResult::Held, false, 1, &s, None);
        assert!(!held.success && held.failures == 0);
        assert!(requeue(RunResult::Blocked, false, 1, &s, None).success);
    }

    #[test]
    fn with_events_flowing_a_converged_stack_waits_the_resync_interval_the_others_do_not() {
        let s = settings();
        let every = Duration::from_secs(600);
        let ok = requeue(RunResult::Converged, false, 0, &s, Some((every, false)));
        assert_eq!(ok.delay, every);
        let spread: Vec<Duration> = (0..50)
            .map(|_| requeue(RunResult::Converged, false, 0, &s, Some((every, true))).delay)
            .collect();
        assert!(
            spread.iter().all(|d| *d >= every / 10 && *d <= every),
            "{spread:?}"
        );
        assert!(
            spread
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 40,
            "spread, not fixed"
        );
        for short in [RunResult::Blocked, RunResult::Held, RunResult::Gated] {
            let r = requeue(short, false, 0, &s, Some((every, false)));
            assert!(r.delay <= s.interval + s.interval / 2, "{short:?}: {r:?}");
        }
        let pending = requeue(RunResult::Pending, false, 0, &s, Some((every, false)));
        assert_eq!(pending.delay, s.pending_requeue);
        let failed = requeue(RunResult::Error, false, 0, &s, Some((every, false)));
        assert_eq!(failed.delay, s.backoff(1));
    }
}
