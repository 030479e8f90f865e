//! `destroy`: the runbook's `terraform destroy`, without losing the shop.
//!
//! Deletes one stack's resources in reverse dependency order, each through the generic
//! [`presta_aws::remove`] (ownership tags checked, absent is success), observing again before
//! every step, so a run killed at any point is finished by running it again. Data follows
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

use presta_aws::auto_scaling_group::AutoScalingGroups;
use presta_aws::db_instance::{DbInstanceLive, DbInstances};
use presta_aws::db_snapshot;
use presta_aws::db_subnet_group::DbSubnetGroups;
use presta_aws::file_system::FileSystems;
use presta_aws::launch_template::LaunchTemplates;
use presta_aws::listener::Listeners;
use presta_aws::load_balancer::LoadBalancers;
use presta_aws::mount_target::{self, MountTargets};
use presta_aws::parameter::Parameters;
use presta_aws::security_group::{SecurityGroupDesired, SecurityGroups};
use presta_aws::target_group::TargetGroups;
use presta_aws::{Aws, AwsError, Driver, ErrorClass, Kind, Mode, Owner, remove};
use presta_spec::model::{DatabaseDeletion, Deletion, FileSystemDeletion};
use presta_spec::naming::{self, Component};
use serde::Serialize;

use crate::Settings;
use crate::snapshot::{Snapshot, Targets};

/// What to destroy.
#[derive(Debug, Clone)]
pub struct Request {
    pub stack: String,
    pub parameter_prefix: String,
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
    let db_name = Component::DbInstance.name(&req.stack);
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
    Snapshot::observe_targets(
        aws,
        &Targets {
            stacks: vec![(req.stack.clone(), req.parameter_prefix.clone())],
            ami_params: Vec::new(),
        },
    )
    .await
}

struct Ctx<'a> {
    aws: &'a Aws,
    req: &'a Request,
    settings: &'a Settings,
}

impl Ctx<'_> {
    fn owner(&self) -> Owner<'_> {
        Owner {
            stack: &self.req.stack,
            adopt_existing: false,
        }
    }

    /// Deletes one resource through the ownership check; a refusal is kept and reported.
    async fn delete<D: Driver>(
        &self,
        report: &mut DestroyReport,
        driver: &D,
        name: &str,
        live: &D::Live,
    ) -> Result<bool, AwsError> {
        let change = remove(
            driver,
            self.aws,
            name,
            live,
            Mode::Apply,
            self.owner(),
            "destroy",
        )
        .await?;
        let item = Item {
            kind: D::KIND,
            name: name.to_string(),
            id: change.id.clone(),
            note: None,
        };
        if change.action == presta_aws::Action::Blocked {
            report.kept.push(Item {
                note: change.reason,
                ..item
            });
            return Ok(false);
        }
        self.settings.progress.report(&format!(
            "destroy {}: deleted {} {name}",
            self.req.stack,
            D::KIND
        ));
        report.deleted.push(item);
        Ok(true)
    }

    /// Polls until `gone` says the resources are gone, within the wait timeout, saying what
    /// it waits for.
    async fn wait_until<F, Fut>(&self, what: &str, mut gone: F) -> Result<(), AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool, AwsError>>,
    {
        let started = Instant::now();
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
            self.settings.progress.report(&format!(
                "destroy {}: waiting for {what} ({}s)",
                self.req.stack,
                started.elapsed().as_secs()
            ));
            tokio::time::sleep(self.settings.poll_interval).await;
        }
    }

    /// Retries a delete that fails while a dependency is still going away.
    async fn delete_retrying<D: Driver>(
        &self,
        report: &mut DestroyReport,
        driver: &D,
        name: &str,
        live: &D::Live,
    ) -> Result<bool, AwsError> {
        let started = Instant::now();
        loop {
            match self.delete(report, driver, name, live).await {
                Err(e)
                    if e.class == ErrorClass::Transient
                        && started.elapsed() < self.settings.wait_timeout =>
                {
                    self.settings.progress.report(&format!(
                        "destroy {}: {} {name} not deletable yet ({}), retrying",
                        self.req.stack,
                        D::KIND,
                        e.code.as_deref().unwrap_or("busy")
                    ));
                    tokio::time::sleep(self.settings.poll_interval).await;
                }
                other => return other,
            }
        }
    }
}

async fn run(
    aws: &Aws,
    req: &Request,
    settings: &Settings,
    report: &mut DestroyReport,
) -> Result<(), AwsError> {
    let cx = Ctx { aws, req, settings };
    let stack = req.stack.as_str();
    let n = |c: Component| c.name(stack);
    let snap = observe(aws, req).await?;
    if let Some(why) = refusal(
        req,
        snap.db_instances.get(&n(Component::DbInstance)),
        &aws.region,
    ) {
        report.refused = true;
        report.error = Some(why);
        return Ok(());
    }
    let retain_db = req.deletion.database == DatabaseDeletion::Retain;
    let delete_fs = req.deletion.file_system == FileSystemDeletion::Delete;

    // 1. The instances (they hold no data) and their template.
    if let Some(asg) = snap
        .auto_scaling_groups
        .get(&n(Component::AutoScalingGroup))
    {
        cx.delete(report, &AutoScalingGroups, &asg.name, asg)
            .await?;
        let name = asg.name.clone();
        cx.wait_until("the Auto Scaling group's instances", || {
            let name = name.clone();
            async move {
                let scope = presta_aws::Scope {
                    names: vec![name.clone()],
                    ..Default::default()
                };
                Ok(!AutoScalingGroups
                    .observe(aws, &scope)
                    .await?
                    .contains_key(&name))
            }
        })
        .await?;
    }
    if let Some(lt) = snap.launch_templates.get(&n(Component::LaunchTemplate)) {
        cx.delete(report, &LaunchTemplates, &lt.name, lt).await?;
    }

    // 2. The load balancer, its listeners, the target group.
    for l in snap.listeners.values() {
        cx.delete(report, &Listeners, &l.key, l).await?;
    }
    if let Some(lb) = snap.load_balancers.get(&n(Component::LoadBalancer)) {
        // Its deletion protection guards against a delete by mistake; destroy was confirmed
        // with the stack's name and the load balancer holds no data: lifted, and said so.
        if lb.attributes.deletion_protection && cx.owner().deletion_refusal(&lb.tags).is_none() {
            LoadBalancers.lift_deletion_protection(aws, lb).await?;
            settings.progress.report(&format!(
                "destroy {stack}: deletion protection of load balancer {} lifted (it holds no data)",
                lb.name
            ));
        }
        cx.delete(report, &LoadBalancers, &lb.name, lb).await?;
    }
    if let Some(tg) = snap.target_groups.get(&n(Component::TargetGroup)) {
        cx.delete_retrying(report, &TargetGroups, &tg.name, tg)
            .await?;
    }

    // 3. The database, by policy.
    let db_name = n(Component::DbInstance);
    if let Some(db) = snap.db_instances.get(&db_name) {
        if retain_db {
            DbInstances.release(aws, db).await?;
            report.kept.push(Item {
                kind: Kind::DbInstance,
                name: db_name.clone(),
                id: Some(db.arn.clone()),
                note: Some("retained (policy.deletion.database: retain): still running and billed, no longer tagged as managed; its subnet group and security groups stay with it".into()),
            });
        } else {
            let snapshot = (req.deletion.database == DatabaseDeletion::Snapshot)
                .then(|| db_snapshot::final_snapshot_id(&db_name, SystemTime::now()));
            let tags = cx.owner().deletion_refusal(&db.tags);
            if let Some(why) = tags {
                report.kept.push(Item {
                    kind: Kind::DbInstance,
                    name: db_name.clone(),
                    id: Some(db.arn.clone()),
                    note: Some(format!("not deleted: {why}")),
                });
            } else {
                DbInstances
                    .delete_with(aws, db, snapshot.as_deref())
                    .await?;
                settings.progress.report(&format!(
                    "destroy {stack}: deleting database {db_name}{}",
                    snapshot
                        .as_deref()
                        .map(|s| format!(" (final snapshot {s})"))
                        .unwrap_or_default()
                ));
                report.deleted.push(Item {
                    kind: Kind::DbInstance,
                    name: db_name.clone(),
                    id: Some(db.arn.clone()),
                    note: snapshot.as_ref().map(|s| format!("final snapshot {s}")),
                });
            }
        }
    }
    if !retain_db {
        let db_name2 = db_name.clone();
        cx.wait_until("the database to be deleted", || {
            let name = db_name2.clone();
            async move {
                let scope = presta_aws::Scope {
                    names: vec![name.clone()],
                    ..Default::default()
                };
                Ok(!DbInstances.observe(aws, &scope).await?.contains_key(&name))
            }
        })
        .await?;
    }
    // The final snapshot (this run's or an earlier, interrupted one's) carries the stack's
    // tags, so that `apply` finds it.
    if req.deletion.database == DatabaseDeletion::Snapshot {
        let want = naming::tags(stack, Component::DbInstance, &Default::default());
        let prefix = format!("{db_name}-final-");
        for s in db_snapshot::list(aws, &db_name).await? {
            if s.id.starts_with(&prefix) {
                db_snapshot::ensure_tags(aws, &s, &want).await?;
                if report.final_snapshot.is_none() {
                    report.kept.push(Item {
                        kind: Kind::DbInstance,
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
    }

    // 4. The file system: mount targets always go (they hold no data), the data by policy.
    let fs_name = n(Component::FileSystem);
    let fs = snap.file_systems.get(&fs_name);
    for mt in snap.mount_targets.values() {
        if fs.is_some_and(|f| f.id == mt.file_system_id) {
            let key = mount_target::key(&mt.file_system_id, &mt.subnet_id);
            cx.delete(report, &MountTargets, &key, mt).await?;
        }
    }
    if let Some(fs) = fs {
        if delete_fs {
            cx.delete_retrying(report, &FileSystems, &fs_name, fs)
                .await?;
        } else if cx.owner().deletion_refusal(&fs.tags).is_none() {
            let at = presta_aws::db_snapshot::now_rfc3339();
            if !fs
                .tags
                .contains_key(presta_aws::file_system::TAG_RETAINED_AT)
            {
                FileSystems.mark_retained(aws, &fs.id, &at).await?;
            }
            report.kept.push(Item {
                kind: Kind::FileSystem,
                name: fs_name.clone(),
                id: Some(fs.id.clone()),
                note: Some("retained with the shop's files (tag presta-reconciler/retained-at); EFS storage is billed per GiB-month of files (about $0.30 Standard, $0.016 Infrequent Access)".into()),
            });
        }
        let id = fs.id.clone();
        cx.wait_until("the mount targets to be deleted", || {
            let id = id.clone();
            async move {
                let scope = presta_aws::Scope {
                    parents: vec![id],
                    ..Default::default()
                };
                Ok(MountTargets.observe(aws, &scope).await?.is_empty())
            }
        })
        .await?;
    }

    // 5. What the network pieces of the database need, then the security groups (those that
    //    others refer to last).
    if !retain_db && let Some(g) = snap.db_subnet_groups.get(&n(Component::DbSubnetGroup)) {
        cx.delete_retrying(report, &DbSubnetGroups, &g.name, g)
            .await?;
    }
    if retain_db && let Some(sg) = snap.security_groups.get(&n(Component::DbSecurityGroup)) {
        // The retained database keeps its group; its rule from the instances' group (about
        // to go) is removed so that group can be deleted.
        let closed = SecurityGroupDesired {
            name: sg.name.clone(),
            description: String::new(),
            vpc_id: sg.vpc_id.clone(),
            ingress: Default::default(),
            tags: Default::default(),
        };
        let diff = presta_aws::FieldDiff {
            field: "ingress".into(),
            desired: serde_json::Value::Null,
            live: serde_json::Value::Null,
            blocked: None,
        };
        SecurityGroups.update(aws, &closed, sg, &[diff]).await?;
    }
    let mut groups = vec![Component::EfsSecurityGroup];
    if !retain_db {
        groups.push(Component::DbSecurityGroup);
    }
    groups.extend([Component::AppSecurityGroup, Component::AlbSecurityGroup]);
    for c in groups {
        if let Some(sg) = snap.security_groups.get(&n(c)) {
            cx.delete_retrying(report, &SecurityGroups, &sg.name, sg)
                .await?;
        }
    }
    if retain_db {
        for c in [Component::DbSubnetGroup, Component::DbSecurityGroup] {
            report.kept.push(Item {
                kind: if c == Component::DbSubnetGroup {
                    Kind::DbSubnetGroup
                } else {
                    Kind::SecurityGroup
                },
                name: n(c),
                id: None,
                note: Some("the retained database uses it".into()),
            });
        }
    }

    // 6. The passwords: kept while kept data needs them.
    let data_kept = retain_db || req.deletion.database == DatabaseDeletion::Snapshot || !delete_fs;
    let params = [
        naming::db_password_parameter(&req.parameter_prefix),
        naming::admin_password_parameter(&req.parameter_prefix),
    ];
    for p in &params {
        if let Some(live) = snap.parameters.get(p) {
            if data_kept {
                report.kept.push(Item {
                    kind: Kind::Parameter,
                    name: p.clone(),
                    id: Some(format!("version {}", live.version)),
                    note: Some("the kept database snapshot and the shop's files use this password (SSM standard parameters cost nothing)".into()),
                });
            } else {
                cx.delete(report, &Parameters, p, live).await?;
            }
        }
    }

    // The cost and the way back.
    let kept_kinds: BTreeSet<Kind> = report.kept.iter().map(|i| i.kind).collect();
    report.cost_note = if kept_kinds.is_empty() {
        "nothing is kept: nothing is billed".into()
    } else {
        "kept data is billed until you delete it: the database snapshot per GiB-month of its size, the file system per GiB-month of its files; the load balancer, instances and database are no longer billed".into()
    };
    if !report.kept.is_empty() && report.error.is_none() {
        report.restore_command = Some(format!(
            "presta-reconciler apply -f {} --stack {stack}",
            req.config.as_deref().unwrap_or("<your stack file>")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(deletion: Deletion, delete_data: bool) -> Request {
        Request {
            stack: "shop".into(),
            parameter_prefix: "/presta-reconciler/shop".into(),
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
