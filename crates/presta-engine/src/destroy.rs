//! `destroy`: the runbook's `terraform destroy`, without losing the shop.
//!
//! Deletes one stack's resources in reverse dependency order, each through the generic
//! [`presta_aws::remove`] (ownership tags checked, absent is success), so a run killed at any
//! point is finished by running it again. The order and what happens to each resource are the
//! kinds' own declarations ([`presta_aws::registry::Teardown`]), iterated from the registry;
//! nothing here names a kind but the two that hold data. Data follows
//! `spec.policy.deletion`:
//!
//! | resource      | default                                        | other                          |
//! |---------------|------------------------------------------------|--------------------------------|
//! | database      | final snapshot `<stack>-db-final-<UTC>`, tagged | `retain`; `delete` (+`--delete-data`) |
//! | file system   | kept, tagged `presta-reconciler/retained-at`   | `delete` (+`--delete-data`)    |
//! | SSM passwords | kept while a snapshot or a kept file system needs them | deleted only with both data deleted |
//!
//! A database with deletion protection on is refused before anything is touched.

use std::collections::BTreeSet;
use std::time::{Instant, SystemTime};

use presta_aws::db_instance::{DbInstanceLive, DbInstances};
use presta_aws::db_snapshot;
use presta_aws::file_system::FileSystems;
use presta_aws::registry::{self, KINDS, KindEntry};
use presta_aws::{Aws, AwsError, ErrorClass, Kind, Owner};
use presta_spec::model::{DatabaseDeletion, Deletion, FileSystemDeletion};
use presta_spec::naming::{self, Component};
use serde::Serialize;

use crate::Settings;
use crate::snapshot::{Snapshot, Targets};

/// What to destroy.
#[derive(Debug, Clone)]
pub struct Request {
    pub stack: String,
    /// How the stack's resources and parameters are named (from its file, else the
    /// deterministic names).
    pub names: naming::StackNames,
    pub deletion: Deletion,
    /// `--delete-data`: required for `delete` in either deletion policy.
    pub delete_data: bool,
    /// The configuration file to name in the restore command, if any.
    pub config: Option<String>,
}

/// One resource destroy acted on or kept.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub kind: Kind,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Why it was kept, or what it costs to keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What destroy did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DestroyReport {
    pub stack: String,
    pub region: String,
    pub deleted: Vec<Item>,
    pub kept: Vec<Item>,
    /// The final snapshot of the database, if one was taken (or found from an earlier run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_snapshot: Option<String>,
    /// What keeping the data costs, roughly.
    pub cost_note: String,
    /// The one command that brings the shop back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_command: Option<String>,
    /// Why destroy stopped before the end (re-run it to finish).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Nothing was changed because destroy refused (deletion protection, missing flag).
    pub refused: bool,
    pub duration_ms: u128,
}

/// Why destroy refuses before touching anything.
pub fn refusal(req: &Request, db: Option<&DbInstanceLive>, region: &str) -> Option<String> {
    let db_name = req.names.name(Component::DbInstance);
    let wants_delete = req.deletion.database == DatabaseDeletion::Delete
        || req.deletion.file_system == FileSystemDeletion::Delete;
    if wants_delete && !req.delete_data {
        return Some(
            "spec.policy.deletion asks to delete the shop's data (database `delete` or file system `delete`): add --delete-data to confirm, or keep the defaults (final snapshot, file system retained)"
                .into(),
        );
    }
    if let Some(db) = db
        && db.deletion_protection
        && req.deletion.database != DatabaseDeletion::Retain
    {
        return Some(format!(
            "the database `{db_name}` has deletion protection on; destroy never turns it off. If you mean it: aws rds modify-db-instance --db-instance-identifier {db_name} --no-deletion-protection --apply-immediately --region {region}"
        ));
    }
    None
}

/// Runs destroy for one stack in `aws`'s region.
pub async fn destroy(aws: &Aws, req: &Request, settings: &Settings) -> DestroyReport {
    let started = Instant::now();
    let mut report = DestroyReport {
        stack: req.stack.clone(),
        region: aws.region.clone(),
        ..DestroyReport::default()
    };
    if let Err(e) = run(aws, req, settings, &mut report).await {
        report.error = Some(format!(
            "{e}; nothing that should be kept was deleted: run destroy again to finish"
        ));
    }
    report.duration_ms = started.elapsed().as_millis();
    report
}

async fn observe(aws: &Aws, req: &Request) -> Result<Snapshot, AwsError> {
    Snapshot::observe_targets(aws, &Targets::one(req.names.clone())).await
}

struct Ctx<'a> {
    aws: &'a Aws,
    req: &'a Request,
    settings: &'a Settings,
    snap: &'a Snapshot,
}

impl Ctx<'_> {
    fn owner(&self) -> Owner<'_> {
        Owner {
            stack: &self.req.stack,
            adopt_existing: false,
        }
    }

    fn progress(&self, what: &str) {
        self.settings
            .progress
            .report(&format!("destroy {}: {what}", self.req.stack));
    }

    /// Deletes one observed resource through the ownership check; a refusal is kept and
    /// reported. Whether it was deleted.
    async fn delete(
        &self,
        report: &mut DestroyReport,
        entry: &dyn KindEntry,
        item: &registry::Item,
    ) -> Result<bool, AwsError> {
        let mut kept = |note| {
            report.kept.push(Item {
                kind: item.kind,
                name: item.name.clone(),
                id: Some(item.id.clone()),
                note,
            })
        };
        // What the ownership check would refuse is not prepared for deletion either.
        if let Some(tags) = entry.observed_tags(self.snap, &item.name)
            && let Some(why) = self.owner().deletion_refusal(&tags)
        {
            kept(Some(format!("not deleted: {why}")));
            return Ok(false);
        }
        if let Some(note) = entry
            .before_delete_observed(self.aws, self.snap, &item.name)
            .await?
        {
            self.progress(&note);
        }
        let Some(change) = entry
            .remove_observed(
                self.aws,
                self.snap,
                &item.name,
                presta_aws::Mode::Apply,
                self.owner(),
                "destroy",
            )
            .await?
        else {
            return Ok(false);
        };
        if change.action == presta_aws::Action::Blocked {
            kept(change.reason);
            return Ok(false);
        }
        self.progress(&format!("deleted {} {}", item.kind, item.name));
        report.deleted.push(Item {
            kind: item.kind,
            name: item.name.clone(),
            id: change.id.clone(),
            note: None,
        });
        Ok(true)
    }

    /// Polls until `gone` says the resources are gone, within the wait timeout, saying what
    /// it waits for.
    async fn wait_until<F, Fut>(&self, what: &str, mut gone: F) -> Result<(), AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool, AwsError>>,
    {
        let started = tokio::time::Instant::now();
        loop {
            if gone().await? {
                return Ok(());
            }
            if started.elapsed() >= self.settings.wait_timeout {
                return Err(AwsError::unexpected(
                    "destroy",
                    format!("{what} still there after {:?}", self.settings.wait_timeout),
                ));
            }
            self.progress(&format!(
                "waiting for {what} ({}s)",
                started.elapsed().as_secs()
            ));
            tokio::time::sleep(self.settings.poll_interval).await;
        }
    }

    /// Retries a delete that fails while a dependency is still going away.
    async fn delete_retrying(
        &self,
        report: &mut DestroyReport,
        entry: &dyn KindEntry,
        item: &registry::Item,
    ) -> Result<bool, AwsError> {
        let started = tokio::time::Instant::now();
        loop {
            match self.delete(report, entry, item).await {
                Err(e)
                    if e.class == ErrorClass::Transient
                        && started.elapsed() < self.settings.wait_timeout =>
                {
                    self.progress(&format!(
                        "{} {} not deletable yet ({}), retrying",
                        item.kind,
                        item.name,
                        e.code.as_deref().unwrap_or("busy")
                    ));
                    tokio::time::sleep(self.settings.poll_interval).await;
                }
                other => return other,
            }
        }
    }
}

/// What `spec.policy.deletion` (and `--delete-data`) decided for the data.
struct DataPolicy {
    retain_db: bool,
    delete_fs: bool,
    /// A kept database, snapshot or file system still needs the passwords.
    data_kept: bool,
}

impl DataPolicy {
    fn of(req: &Request) -> DataPolicy {
        let retain_db = req.deletion.database == DatabaseDeletion::Retain;
        let delete_fs = req.deletion.file_system == FileSystemDeletion::Delete;
        DataPolicy {
            retain_db,
            delete_fs,
            data_kept: retain_db
                || req.deletion.database == DatabaseDeletion::Snapshot
                || !delete_fs,
        }
    }
}

async fn run(
    aws: &Aws,
    req: &Request,
    settings: &Settings,
    report: &mut DestroyReport,
) -> Result<(), AwsError> {
    let snap = observe(aws, req).await?;
    if let Some(why) = refusal(
        req,
        snap.get::<DbInstances>(&req.names.name(Component::DbInstance)),
        &aws.region,
    ) {
        report.refused = true;
        report.error = Some(why);
        return Ok(());
    }
    let cx = Ctx {
        aws,
        req,
        settings,
        snap: &snap,
    };
    let policy = DataPolicy::of(req);
    // Every observed resource of the stack, in teardown order (the registry's order among
    // equals); resources of one order are deleted together, then waited for if they must be
    // gone before the next.
    let mut items: Vec<(&dyn KindEntry, registry::Item)> = KINDS
        .iter()
        .flat_map(|e| e.observed_items(&snap).into_iter().map(move |i| (*e, i)))
        .collect();
    items.sort_by_key(|(_, i)| i.teardown.order);
    let mut snapshots_tagged = false;
    for group in items.chunk_by(|a, b| a.1.teardown.order == b.1.teardown.order) {
        let mut awaited = Vec::new();
        for (entry, item) in group {
            let entry = *entry;
            match item.teardown.deletion {
                registry::Deletion::Plain => {
                    cx.delete(report, entry, item).await?;
                }
                registry::Deletion::Retried => {
                    cx.delete_retrying(report, entry, item).await?;
                }
                registry::Deletion::Awaited => {
                    if cx.delete(report, entry, item).await? {
                        awaited.push(item.name.clone());
                    }
                }
                registry::Deletion::Database => {
                    database(&cx, report, &policy, item).await?;
                    final_snapshots(&cx, report).await?;
                    snapshots_tagged = true;
                }
                registry::Deletion::Files => files(&cx, report, &policy, item).await?,
                registry::Deletion::DatabaseNetwork if policy.retain_db => {
                    // The retained database keeps it; its references to what is about to go
                    // (a rule from the instances' group) are dropped so that can be deleted.
                    entry.detach_observed(aws, &snap, &item.name).await?;
                    report.kept.push(Item {
                        kind: item.kind,
                        name: item.name.clone(),
                        id: Some(item.id.clone()),
                        note: Some("the retained database uses it".into()),
                    });
                }
                registry::Deletion::DatabaseNetwork => {
                    cx.delete_retrying(report, entry, item).await?;
                }
                registry::Deletion::Secret if policy.data_kept => report.kept.push(Item {
                    kind: item.kind,
                    name: item.name.clone(),
                    id: Some(item.id.clone()),
                    note: Some("the kept database snapshot and the shop's files use this password (SSM standard parameters cost nothing)".into()),
                }),
                registry::Deletion::Secret => {
                    cx.delete(report, entry, item).await?;
                }
            }
        }
        if let (false, Some((entry, item))) = (awaited.is_empty(), group.first()) {
            cx.wait_until(&format!("the {} {}", item.kind, awaited.join(", ")), || {
                let left = entry.any_left(aws, &snap, &awaited);
                async move { Ok(!left.await?) }
            })
            .await?;
        }
    }
    if !snapshots_tagged {
        // The database went in an earlier, interrupted run: its final snapshot is tagged now.
        final_snapshots(&cx, report).await?;
    }

    conclude(report, req);
    Ok(())
}

/// The cost of what is kept, and the command that brings the shop back.
fn conclude(report: &mut DestroyReport, req: &Request) {
    let kept_kinds: BTreeSet<Kind> = report.kept.iter().map(|i| i.kind).collect();
    report.cost_note = if kept_kinds.is_empty() {
        "nothing is kept: nothing is billed".into()
    } else {
        "kept data is billed until you delete it: the database snapshot per GiB-month of its size, the file system per GiB-month of its files; the load balancer, instances and database are no longer billed".into()
    };
    if !report.kept.is_empty() && report.error.is_none() {
        report.restore_command = Some(format!(
            "presta-reconciler apply -f {} --stack {}",
            req.config.as_deref().unwrap_or("<your stack file>"),
            req.stack
        ));
    }
}

/// The database, by `spec.policy.deletion.database`: retained (released from management),
/// deleted with a final snapshot (the default), or deleted; then waited for.
async fn database(
    cx: &Ctx<'_>,
    report: &mut DestroyReport,
    policy: &DataPolicy,
    item: &registry::Item,
) -> Result<(), AwsError> {
    let Some(db) = cx.snap.get::<DbInstances>(&item.name) else {
        return Ok(());
    };
    let db_name = &item.name;
    if policy.retain_db {
        DbInstances.release(cx.aws, db).await?;
        report.kept.push(Item {
            kind: Kind::DB_INSTANCE,
            name: db_name.clone(),
            id: Some(db.arn.clone()),
            note: Some("retained (policy.deletion.database: retain): still running and billed, no longer tagged as managed; its subnet group and security groups stay with it".into()),
        });
        return Ok(());
    }
    if let Some(why) = cx.owner().deletion_refusal(&db.tags) {
        report.kept.push(Item {
            kind: Kind::DB_INSTANCE,
            name: db_name.clone(),
            id: Some(db.arn.clone()),
            note: Some(format!("not deleted: {why}")),
        });
        return Ok(());
    }
    let snapshot = (cx.req.deletion.database == DatabaseDeletion::Snapshot)
        .then(|| db_snapshot::final_snapshot_id(db_name, SystemTime::now()));
    DbInstances
        .delete_with(cx.aws, db, snapshot.as_deref())
        .await?;
    cx.progress(&format!(
        "deleting database {db_name}{}",
        snapshot
            .as_deref()
            .map(|s| format!(" (final snapshot {s})"))
            .unwrap_or_default()
    ));
    report.deleted.push(Item {
        kind: Kind::DB_INSTANCE,
        name: db_name.clone(),
        id: Some(db.arn.clone()),
        note: snapshot.as_ref().map(|s| format!("final snapshot {s}")),
    });
    let names = [db_name.clone()];
    cx.wait_until("the database to be deleted", || async {
        Ok(!DbInstances.any_left(cx.aws, cx.snap, &names).await?)
    })
    .await
}

/// The final snapshot (this run's or an earlier, interrupted one's) carries the stack's tags,
/// so that `apply` finds it.
async fn final_snapshots(cx: &Ctx<'_>, report: &mut DestroyReport) -> Result<(), AwsError> {
    if cx.req.deletion.database != DatabaseDeletion::Snapshot {
        return Ok(());
    }
    let stack = cx.req.stack.as_str();
    let db_name = cx.req.names.name(Component::DbInstance);
    let want = naming::tags(stack, Component::DbInstance, &Default::default());
    let prefix = format!("{db_name}-final-");
    for s in db_snapshot::list(cx.aws, &db_name).await? {
        if s.id.starts_with(&prefix) {
            db_snapshot::ensure_tags(cx.aws, &s, &want).await?;
            if report.final_snapshot.is_none() {
                report.kept.push(Item {
                    kind: Kind::DB_INSTANCE,
                    name: s.id.clone(),
                    id: Some(s.arn.clone()),
                    note: Some(format!(
                        "final snapshot, {} GiB: snapshot storage is billed per GiB-month (about $0.095 in most regions)",
                        s.allocated_storage_gib
                    )),
                });
                report.final_snapshot = Some(s.id.clone());
            }
        }
    }
    Ok(())
}

/// The file system, by `spec.policy.deletion.fileSystem`: kept and marked retained (the
/// default), or deleted (its mount targets went before it).
async fn files(
    cx: &Ctx<'_>,
    report: &mut DestroyReport,
    policy: &DataPolicy,
    item: &registry::Item,
) -> Result<(), AwsError> {
    let Some(fs) = cx.snap.get::<FileSystems>(&item.name) else {
        return Ok(());
    };
    if policy.delete_fs {
        let entry: &dyn KindEntry = &FileSystems;
        cx.delete_retrying(report, entry, item).await?;
    } else if cx.owner().deletion_refusal(&fs.tags).is_none() {
        if !fs
            .tags
            .contains_key(presta_aws::file_system::TAG_RETAINED_AT)
        {
            let at = presta_aws::db_snapshot::now_rfc3339();
            FileSystems.mark_retained(cx.aws, &fs.id, &at).await?;
        }
        report.kept.push(Item {
            kind: Kind::FILE_SYSTEM,
            name: item.name.clone(),
            id: Some(fs.id.clone()),
            note: Some("retained with the shop's files (tag presta-reconciler/retained-at); EFS storage is billed per GiB-month of files (about $0.30 Standard, $0.016 Infrequent Access)".into()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(deletion: Deletion, delete_data: bool) -> Request {
        Request {
            stack: "shop".into(),
            names: naming::StackNames::deterministic("shop", "/presta-reconciler/shop"),
            deletion,
            delete_data,
            config: None,
        }
    }

    #[test]
    fn deleting_data_needs_the_flag_as_well_as_the_policy() {
        let del = Deletion {
            database: DatabaseDeletion::Delete,
            file_system: FileSystemDeletion::Retain,
        };
        assert!(
            refusal(&req(del, false), None, "eu-west-3")
                .unwrap()
                .contains("--delete-data")
        );
        assert_eq!(refusal(&req(del, true), None, "eu-west-3"), None);
        assert_eq!(
            refusal(&req(Deletion::default(), false), None, "eu-west-3"),
            None
        );
    }
}
