//! What a person asks of one stack through the API: approve a held plan, run a maintenance
//! command on its instances, a fresh plan. The AWS calls are the engine's; the controller
//! keeps what they answer for the status.

use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

use presta_aws::Mode;
use presta_engine::budget::{Guard, Guards};
use presta_engine::report::StackReport;

use crate::status::{note_observation, set_observation};
use crate::time::unix;
use crate::{Controller, ExecError, TriggerError};

impl Controller {
    /// Approves the held plan of `stack` whose hash is `plan_hash`: the next run (started at
    /// once) applies it if the plan is still the same. Returns the run to wait for.
    pub fn approve(&self, stack: &str, plan_hash: &str) -> Result<(String, u64), TriggerError> {
        self.approve_as(stack, plan_hash, "the API")
    }

    /// [`Controller::approve`], recording who approved (the log line and the run's report).
    /// A gated rolling change (`spec.promotion`) is approved the same way: by its plan hash.
    pub fn approve_as(
        &self,
        stack: &str,
        plan_hash: &str,
        by: &str,
    ) -> Result<(String, u64), TriggerError> {
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
                .and_then(|(_, _, r)| pending_approval(r))
                .or_else(|| e.last_run.as_ref().and_then(|r| pending_approval(r)));
            match held {
                None => {
                    return Err(TriggerError::NotHeld {
                        stack: stack.to_string(),
                    });
                }
                Some(h) if h != plan_hash => {
                    return Err(TriggerError::PlanChanged {
                        stack: stack.to_string(),
                        given: plan_hash.to_string(),
                        current: h,
                    });
                }
                Some(_) => {
                    tracing::info!(
                        stack,
                        plan_hash,
                        approved_by = by,
                        "held or gated plan approved: applying it"
                    );
                    e.approved = Some(plan_hash.to_string());
                    e.approved_by = Some(by.to_string());
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
        let (region, group) = {
            let st = self.state();
            if !st.accepting {
                return Err(TriggerError::ShuttingDown.into());
            }
            self.standby()?;
            match st.stacks.get(stack) {
                Some(e) => (
                    e.stack.spec.region.clone(),
                    e.stack
                        .resource_name(presta_spec::naming::Component::AutoScalingGroup),
                ),
                None => {
                    return Err(TriggerError::UnknownStack {
                        stack: stack.to_string(),
                        known: st.stacks.keys().cloned().collect::<Vec<_>>().join(", "),
                    }
                    .into());
                }
            }
        };
        tracing::info!(stack, command = %line, group = %group, "running a maintenance command through SSM Run Command");
        let run = self
            .inner
            .engine
            .run_command(&region, &group, command.as_str(), &line, wait)
            .await?;
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
                        approved_by: None,
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
}

/// The hash a person may approve in this report: a held plan's, or a gated release's.
fn pending_approval(r: &presta_engine::StackReport) -> Option<String> {
    r.held
        .as_ref()
        .map(|h| h.plan_hash.clone())
        .or_else(|| r.gated.as_ref().map(|g| g.plan_hash.clone()))
}
