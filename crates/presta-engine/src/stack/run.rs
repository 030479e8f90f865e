//! One run over one stack: the steps every kind goes through (sync and wait, guarded by
//! the data rule, restore, prune), recording each resource's change.

use presta_aws::db_instance::{DbInstanceDesired, DbInstanceLive, DbInstances};
use presta_aws::db_snapshot::DbSnapshot;
use presta_aws::diff::UNKNOWN;
use presta_aws::{Action, Aws, Change, Driver, Kind, Mode, sync};
use presta_spec::Stack;

use crate::Settings;
use crate::data::DataPlan;
use crate::snapshot::Snapshot;

pub(super) struct Run<'a> {
    pub(super) aws: &'a Aws,
    pub(super) stack: &'a Stack,
    pub(super) snap: &'a Snapshot,
    pub(super) mode: Mode,
    pub(super) settings: &'a Settings,
    pub(super) data: DataPlan,
    pub(super) changes: std::sync::Mutex<Vec<Change>>,
    /// Approvals and what the caller knows beyond the observation.
    pub(super) guard: &'a crate::budget::Guard,
    /// The rolling change that waits for the followed stack, if any.
    pub(super) gated: std::sync::Mutex<Option<crate::promotion::Gated>>,
    /// Why a rolling change was let through (soaked, or approved).
    pub(super) promoted: std::sync::Mutex<Option<String>>,
}

/// The outcome of one step: the live resource afterwards, if any.
pub(super) type Live<T> = Option<T>;

impl Run<'_> {
    pub(super) fn owner(&self) -> presta_aws::Owner<'_> {
        presta_aws::Owner {
            stack: self.stack.name(),
            adopt_existing: self.stack.spec.policy.adopt_existing,
        }
    }

    pub(super) fn note_promoted(&self, note: String) {
        *self.promoted.lock().unwrap_or_else(|e| e.into_inner()) = Some(note);
    }

    pub(super) fn record(&self, change: Change) {
        self.changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(change);
    }

    /// A follow-up call on a resource already stepped failed: its change becomes a failure
    /// (the run is not converged, the next one finishes it).
    pub(super) fn failed_after(
        &self,
        kind: Kind,
        name: &str,
        what: &str,
        err: &presta_aws::AwsError,
    ) {
        let mut changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let reason = format!("{what}: {err}");
        match changes
            .iter_mut()
            .find(|c| c.kind == kind && c.name == name)
        {
            Some(c) => {
                c.action = Action::Failed;
                c.reason = Some(reason);
                c.error_class = Some(err.class);
                c.error = Some(presta_aws::error::StepError::new(
                    err,
                    c.id.clone().unwrap_or_else(|| c.name.clone()),
                ));
            }
            None => changes.push(
                Change::new(kind, name, Action::Failed)
                    .with_reason(Some(reason))
                    .with_failure(err),
            ),
        }
    }

    pub(super) fn waiting(&self, kind: Kind, name: String, on: &[String]) {
        self.record(
            Change::new(kind, name, Action::Waiting)
                .with_reason(Some(format!("waits for {}", on.join(", ")))),
        );
    }

    /// A dependency's value: known, or `(known after apply)` in a plan. In an apply a missing
    /// value is collected in `missing` and the step waits.
    pub(super) fn need(
        &self,
        value: Option<String>,
        what: &str,
        missing: &mut Vec<String>,
    ) -> String {
        value.unwrap_or_else(|| {
            missing.push(what.to_string());
            UNKNOWN.to_string()
        })
    }

    pub(super) fn blocked_by_missing(&self, missing: &[String]) -> bool {
        self.mode == Mode::Apply && !missing.is_empty()
    }

    /// A resource stepped a second time in the same run (the listeners once the certificate
    /// is issued): its change replaces the first, unless nothing more happened.
    pub(super) fn record_again(&self, change: Change) {
        let mut changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        match changes
            .iter_mut()
            .find(|c| c.kind == change.kind && c.name == change.name)
        {
            Some(prev) if change.action == Action::None => {
                if prev.action == Action::Waiting {
                    *prev = change;
                }
            }
            Some(prev) if prev.action == Action::Create && change.action == Action::Update => {
                prev.diffs = change.diffs;
            }
            Some(prev) => *prev = change,
            None => changes.push(change),
        }
    }

    /// Syncs one resource, waits for it to be ready in an apply, records its change.
    pub(super) async fn step<D: Driver>(
        &self,
        driver: &D,
        desired: &D::Desired,
        live: Option<&D::Live>,
    ) -> Live<D::Live>
    where
        D::Live: 'static,
    {
        self.step_with(driver, desired, live, true, false).await
    }

    /// Syncs one resource without waiting for it (a certificate: validation takes minutes,
    /// nothing before the listeners needs it).
    pub(super) async fn step_unwaited<D: Driver>(
        &self,
        driver: &D,
        desired: &D::Desired,
        live: Option<&D::Live>,
    ) -> Live<D::Live>
    where
        D::Live: 'static,
    {
        self.step_with(driver, desired, live, false, false).await
    }

    /// [`Run::step`] of a resource already stepped in this run ([`Run::record_again`]).
    pub(super) async fn step_again<D: Driver>(
        &self,
        driver: &D,
        desired: &D::Desired,
        live: Option<&D::Live>,
    ) -> Live<D::Live>
    where
        D::Live: 'static,
    {
        self.step_with(driver, desired, live, true, true).await
    }

    async fn step_with<D: Driver>(
        &self,
        driver: &D,
        desired: &D::Desired,
        live: Option<&D::Live>,
        wait: bool,
        again: bool,
    ) -> Live<D::Live>
    where
        D::Live: 'static,
    {
        let record = |c: Change| {
            if again {
                self.record_again(c)
            } else {
                self.record(c)
            }
        };
        let name = D::name(desired);
        match sync(driver, self.aws, desired, live, self.mode, self.owner()).await {
            Ok(mut synced) => {
                if self.mode == Mode::Apply
                    && wait
                    && let Some(l) = &synced.live
                {
                    match crate::wait::wait_ready(
                        driver,
                        self.aws,
                        &name,
                        l.clone(),
                        self.settings,
                        self.stack.name(),
                    )
                    .await
                    {
                        Ok(ready) => synced.live = Some(ready),
                        Err(reason) => {
                            synced.change.reason = Some(reason.to_string());
                            synced.change.action = if synced.change.action == Action::None {
                                Action::Waiting
                            } else {
                                synced.change.action
                            };
                            record(synced.change);
                            return None;
                        }
                    }
                }
                record(synced.change);
                synced.live
            }
            Err(err) => {
                tracing::warn!(stack = %self.stack.name(), kind = %D::KIND, name = %name, code = err.code.as_deref().unwrap_or(""), error = %err, "step failed");
                record(
                    Change::new(D::KIND, name, Action::Failed)
                        .with_id(live.map(D::id))
                        .with_reason(Some(err.to_string()))
                        .with_failure(&err),
                );
                // A resource that exists still serves its dependents.
                live.cloned()
            }
        }
    }

    /// A missing resource the data rule forbids creating: blocked, with the reason.
    pub(super) fn refuse(&self, kind: Kind, name: String, reason: &str) {
        self.record(Change::new(kind, name, Action::Blocked).with_reason(Some(reason.to_string())));
    }

    /// Syncs a data-bearing resource, unless it is missing and the data rule blocks it.
    pub(super) async fn guarded_step<D: Driver>(
        &self,
        driver: &D,
        desired: &D::Desired,
        live: Option<&D::Live>,
        blocked: Option<&String>,
    ) -> Live<D::Live>
    where
        D::Live: 'static,
    {
        match (live, blocked) {
            (None, Some(reason)) => {
                self.refuse(D::KIND, D::name(desired), reason);
                None
            }
            _ => self.step(driver, desired, live).await,
        }
    }

    /// Brings the missing database back from `snapshot`, then to the spec.
    pub(super) async fn restore_db(
        &self,
        desired: &DbInstanceDesired,
        snapshot: &DbSnapshot,
    ) -> Live<DbInstanceLive> {
        let from = format!(
            "restored from snapshot `{}` (taken {})",
            snapshot.id,
            snapshot.created.as_deref().unwrap_or("at an unknown time")
        );
        let mut change = Change::new(
            Kind::DB_INSTANCE,
            desired.identifier.clone(),
            Action::Restore,
        )
        .with_reason(Some(from.clone()));
        if self.mode == Mode::Plan {
            self.record(change);
            return None;
        }
        let restored = match presta_aws::db_snapshot::restore(self.aws, desired, &snapshot.id).await
        {
            Ok(l) => l,
            Err(e) => {
                change.action = Action::Failed;
                change = change.with_failure(&e);
                change.reason = Some(format!("restoring from snapshot `{}`: {e}", snapshot.id));
                self.record(change);
                return None;
            }
        };
        change.id = Some(DbInstances::id(&restored));
        let ready = match crate::wait::wait_ready(
            &DbInstances,
            self.aws,
            &desired.identifier,
            restored,
            self.settings,
            self.stack.name(),
        )
        .await
        {
            Ok(l) => l,
            Err(reason) => {
                change.reason = Some(format!("{from}; {reason}"));
                self.record(change);
                return None;
            }
        };
        // The snapshot's settings (backups, storage ceiling, version) brought to the spec.
        let diffs: Vec<_> = DbInstances
            .diff(desired, &ready)
            .into_iter()
            .filter(|d| d.blocked.is_none())
            .collect();
        let after = if diffs.is_empty() {
            ready
        } else {
            match DbInstances.update(self.aws, desired, &ready, &diffs).await {
                Ok(l) => {
                    change.diffs = diffs;
                    l
                }
                Err(e) => {
                    change.reason = Some(format!("{from}; bringing it to the spec failed: {e}"));
                    ready
                }
            }
        };
        self.record(change);
        Some(after)
    }

    /// Deletes a live resource the stack no longer declares, through the ownership check.
    pub(super) async fn prune<D: Driver>(&self, driver: &D, name: &str, live: &D::Live, why: &str) {
        let change =
            match presta_aws::remove(driver, self.aws, name, live, self.mode, self.owner(), why)
                .await
            {
                Ok(change) => change,
                Err(e) => Change::new(D::KIND, name.to_string(), Action::Failed)
                    .with_id(Some(D::id(live)))
                    .with_reason(Some(e.to_string()))
                    .with_failure(&e),
            };
        self.record(change);
    }
}
