//! The RDS MySQL instance: the shop's data. Never deleted or replaced by the reconciler.
//!
//! Changes RDS can make in place (class, storage growth, Multi-AZ, backups, deletion
//! protection, security groups, minor versions) are applied; changes that would need a new
//! instance or lose data (engine, encryption, database name, master user, subnet group,
//! shrinking storage, major-version moves) are reported as blocked with the reason.
//!
//! Observation: one paginated `DescribeDBInstances` for the region (tags included).

use std::collections::{BTreeMap, BTreeSet};

use std::time::SystemTime;

use crate::clients::Aws;
pub use crate::db_password::{password_change_state, set_master_password};
use crate::db_snapshot;
pub use crate::db_status::{DbState, DbStatus};
use crate::db_subnet_group::{from_rds, rds_tags};
use crate::diff::{Delta, Diffs, Field, FieldDiff, Kind};
use crate::driver::{Driver, Readiness, Scope};
use crate::error::{AwsError, AwsResultExt};
use crate::iam::allow;
use crate::parameter::read_secret;
use crate::registry::{Deletion, Iam, Observed, OrphanSearch, Owned, Targets, Teardown};
use crate::tags::{self, Tags};
use fields::*;
use presta_spec::Stack;
use presta_spec::naming::Component;
use serde_json::json;

/// The fields this kind manages, as its diff reports them and its update reads them.
pub mod fields {
    use crate::diff::Field;

    pub const ENGINE: Field = Field("engine");
    pub const ENGINE_VERSION: Field = Field("engineVersion");
    pub const INSTANCE_CLASS: Field = Field("instanceClass");
    pub const ALLOCATED_STORAGE_GIB: Field = Field("allocatedStorageGiB");
    pub const MAX_ALLOCATED_STORAGE_GIB: Field = Field("maxAllocatedStorageGiB");
    pub const MULTI_AZ: Field = Field("multiAz");
    pub const BACKUP_RETENTION_DAYS: Field = Field("backupRetentionDays");
    pub const DELETION_PROTECTION: Field = Field("deletionProtection");
    pub const NAME: Field = Field("name");
    pub const USERNAME: Field = Field("username");
    pub const STORAGE_ENCRYPTED: Field = Field("storageEncrypted");
    pub const SUBNET_GROUP: Field = Field("subnetGroup");
    pub const SECURITY_GROUPS: Field = Field("securityGroups");
    pub const PUBLICLY_ACCESSIBLE: Field = Field("publiclyAccessible");
}

#[derive(Debug, Clone)]
pub struct DbInstanceDesired {
    pub identifier: String,
    /// As written in the spec: `8.4` or `8.4.3`.
    pub engine_version: String,
    pub instance_class: String,
    pub allocated_storage_gib: i32,
    pub max_allocated_storage_gib: Option<i32>,
    pub multi_az: bool,
    pub backup_retention_days: i32,
    pub deletion_protection: bool,
    pub db_name: String,
    pub username: String,
    pub subnet_group: String,
    pub security_groups: BTreeSet<String>,
    /// SSM parameter holding the master password (read at creation only).
    pub password_parameter: String,
    pub tags: Tags,
}

impl DbInstanceDesired {
    /// The stack's database, from `spec.database`, in its subnet group and security group,
    /// with the password of `password_parameter`.
    pub fn for_stack(
        stack: &Stack,
        subnet_group: &str,
        security_group: &str,
        password_parameter: &str,
    ) -> Self {
        let db = &stack.spec.database;
        DbInstanceDesired {
            identifier: stack.resource_name(Component::DbInstance),
            engine_version: db.engine_version.clone(),
            instance_class: db.instance_class.clone(),
            allocated_storage_gib: db.allocated_storage_gib as i32,
            max_allocated_storage_gib: db.max_allocated_storage_gib.map(|v| v as i32),
            multi_az: db.multi_az,
            backup_retention_days: db.backup_retention_days as i32,
            deletion_protection: db.deletion_protection,
            db_name: db.name.clone(),
            username: db.username.clone(),
            subnet_group: subnet_group.to_string(),
            security_groups: [security_group.to_string()].into(),
            password_parameter: password_parameter.to_string(),
            tags: stack
                .names()
                .tags(Component::DbInstance, &stack.metadata.labels),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DbInstanceLive {
    pub identifier: String,
    pub arn: String,
    /// `creating`, `available`, `modifying`, `backing-up`, `failed`...
    pub status: DbStatus,
    pub endpoint: Option<String>,
    pub port: i32,
    pub engine: String,
    pub engine_version: String,
    pub instance_class: String,
    pub allocated_storage_gib: i32,
    pub max_allocated_storage_gib: Option<i32>,
    pub multi_az: bool,
    pub backup_retention_days: i32,
    pub deletion_protection: bool,
    pub db_name: String,
    pub username: String,
    pub subnet_group: String,
    pub security_groups: BTreeSet<String>,
    pub encrypted: bool,
    pub publicly_accessible: bool,
    pub tags: Tags,
}

pub struct DbInstances;

/// Whether the live version satisfies the version as written: `8.4` accepts any `8.4.x`.
pub fn version_matches(desired: &str, live: &str) -> bool {
    live == desired || live.starts_with(&format!("{desired}."))
}

fn major(v: &str) -> String {
    v.split('.').take(2).collect::<Vec<_>>().join(".")
}

impl Kind {
    pub const DB_INSTANCE: Kind = Kind::new("db_instance");
}

impl Driver for DbInstances {
    const KIND: Kind = Kind::DB_INSTANCE;
    const IAM: Iam = Iam {
        read: &["rds:DescribeDBInstances", "rds:DescribeDBSnapshots"],
        create: &[
            "rds:CreateDBInstance",
            "rds:RestoreDBInstanceFromDBSnapshot",
        ],
        change: &[
            "rds:ModifyDBInstance",
            "rds:AddTagsToResource",
            "rds:RemoveTagsFromResource",
            "rds:DeleteDBInstance",
            "rds:CreateDBSnapshot",
        ],
        statements: || {
            vec![allow(
                "TagOnCreateOfTheStacksDatabasesByTheirNames",
                &["rds:AddTagsToResource"],
                json!([
                    "arn:aws:rds:*:*:db:*-db",
                    "arn:aws:rds:*:*:snapshot:*-db-final-*"
                ]),
                Some(crate::iam::request_tagged()),
            )]
        },
    };
    const TEARDOWN: Teardown = Teardown::new(30, Deletion::Database);
    const ORPHANS: OrphanSearch = OrphanSearch::Secondary;

    fn scope(targets: &Targets, _: &Observed) -> Scope {
        Scope::named(targets.names(Component::DbInstance))
    }

    /// Every database of the region (RDS filters by identifier, not by tag), or by name.
    async fn list_owned(
        &self,
        aws: &Aws,
        names: Option<&[String]>,
    ) -> Result<Vec<Owned>, AwsError> {
        let q = aws.rds.describe_db_instances();
        let q = match names {
            None => q,
            Some(names) => q.filters(
                aws_sdk_rds::types::Filter::builder()
                    .name("db-instance-id")
                    .set_values(Some(names.to_vec()))
                    .build(),
            ),
        };
        let all = q
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .aws()?;
        Ok(all
            .iter()
            .map(|d| {
                Owned::from_tags(
                    d.db_instance_identifier().unwrap_or_default(),
                    d.db_instance_arn().unwrap_or_default(),
                    d.tag_list()
                        .iter()
                        .filter_map(|t| Some((t.key()?, t.value()?))),
                )
            })
            .collect())
    }

    type Desired = DbInstanceDesired;
    type Live = DbInstanceLive;

    fn name(desired: &DbInstanceDesired) -> String {
        desired.identifier.clone()
    }

    fn id(live: &DbInstanceLive) -> String {
        live.identifier.clone()
    }

    fn tags(live: &Self::Live) -> Option<&Tags> {
        Some(&live.tags)
    }

    /// Deletes the database the safe way: a final snapshot `<id>-final-<UTC time>` with the
    /// stack's tags, automated backups retained. See [`DbInstances::delete_with`].
    async fn delete(&self, aws: &Aws, live: &DbInstanceLive) -> Result<(), AwsError> {
        let snapshot = db_snapshot::final_snapshot_id(&live.identifier, SystemTime::now());
        self.delete_with(aws, live, Some(&snapshot)).await
    }

    fn readiness(live: &DbInstanceLive) -> Readiness {
        match live.status.state() {
            DbState::Available => Readiness::Ready,
            DbState::Failed => Readiness::Failed(format!(
                "the database is `{}`: see the RDS console and events",
                live.status
            )),
            _ => Readiness::Pending(live.status.to_string()),
        }
    }

    async fn observe(
        &self,
        aws: &Aws,
        scope: &Scope,
    ) -> Result<BTreeMap<String, DbInstanceLive>, AwsError> {
        if scope.names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let all = aws
            .rds
            .describe_db_instances()
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .aws()?;
        Ok(all
            .iter()
            .filter(|db| {
                db.db_instance_identifier()
                    .is_some_and(|n| scope.names.iter().any(|w| w == n))
            })
            .map(|db| {
                let live = DbInstanceLive {
                    identifier: db.db_instance_identifier().unwrap_or_default().to_string(),
                    arn: db.db_instance_arn().unwrap_or_default().to_string(),
                    status: DbStatus::new(db.db_instance_status().unwrap_or_default()),
                    endpoint: db.endpoint().and_then(|e| e.address()).map(String::from),
                    port: db.endpoint().and_then(|e| e.port()).unwrap_or(3306),
                    engine: db.engine().unwrap_or_default().to_string(),
                    engine_version: db.engine_version().unwrap_or_default().to_string(),
                    instance_class: db.db_instance_class().unwrap_or_default().to_string(),
                    allocated_storage_gib: db.allocated_storage().unwrap_or(0),
                    max_allocated_storage_gib: db.max_allocated_storage(),
                    multi_az: db.multi_az().unwrap_or(false),
                    backup_retention_days: db.backup_retention_period().unwrap_or(0),
                    deletion_protection: db.deletion_protection().unwrap_or(false),
                    db_name: db.db_name().unwrap_or_default().to_string(),
                    username: db.master_username().unwrap_or_default().to_string(),
                    subnet_group: db
                        .db_subnet_group()
                        .and_then(|g| g.db_subnet_group_name())
                        .unwrap_or_default()
                        .to_string(),
                    security_groups: db
                        .vpc_security_groups()
                        .iter()
                        .filter_map(|g| g.vpc_security_group_id().map(String::from))
                        .collect(),
                    encrypted: db.storage_encrypted().unwrap_or(false),
                    publicly_accessible: db.publicly_accessible().unwrap_or(false),
                    tags: from_rds(db.tag_list()),
                };
                (live.identifier.clone(), live)
            })
            .collect())
    }

    fn diff(&self, desired: &DbInstanceDesired, live: &DbInstanceLive) -> Vec<FieldDiff> {
        let mut d = Diffs::new();
        d.blocked(
            ENGINE,
            "mysql",
            live.engine.as_str(),
            "another engine needs a new database: migrate by hand",
        );
        if !version_matches(&desired.engine_version, &live.engine_version) {
            if major(&desired.engine_version) == major(&live.engine_version) {
                d.field(
                    ENGINE_VERSION,
                    &desired.engine_version,
                    &live.engine_version,
                );
            } else {
                d.blocked(ENGINE_VERSION,
                    &desired.engine_version,
                    &live.engine_version,
                    "a major-version change is not done automatically: take a snapshot and upgrade by hand (or with a blue/green deployment)",
                );
            }
        }
        d.field(
            INSTANCE_CLASS,
            &desired.instance_class,
            &live.instance_class,
        );
        // Storage autoscaling may have grown the volume: only a smaller volume is drift.
        if live.allocated_storage_gib < desired.allocated_storage_gib {
            d.field(
                ALLOCATED_STORAGE_GIB,
                &desired.allocated_storage_gib,
                &live.allocated_storage_gib,
            );
        }
        d.field(
            MAX_ALLOCATED_STORAGE_GIB,
            &desired.max_allocated_storage_gib,
            &live.max_allocated_storage_gib,
        )
        .field(MULTI_AZ, &desired.multi_az, &live.multi_az)
        .field(
            BACKUP_RETENTION_DAYS,
            &desired.backup_retention_days,
            &live.backup_retention_days,
        )
        .field(
            DELETION_PROTECTION,
            &desired.deletion_protection,
            &live.deletion_protection,
        )
        .blocked(
            NAME,
            &desired.db_name,
            &live.db_name,
            "the database name is fixed at creation",
        )
        .blocked(
            USERNAME,
            &desired.username,
            &live.username,
            "the master user name is fixed at creation",
        )
        .blocked(
            STORAGE_ENCRYPTED,
            &true,
            &live.encrypted,
            "encryption can only be added by restoring an encrypted snapshot into a new instance",
        )
        .blocked(
            SUBNET_GROUP,
            &desired.subnet_group,
            &live.subnet_group,
            "moving a database to another subnet group needs a new instance",
        )
        .set(
            SECURITY_GROUPS,
            &desired.security_groups,
            &live.security_groups,
        )
        .field(PUBLICLY_ACCESSIBLE, &false, &live.publicly_accessible)
        .tags(&desired.tags, &live.tags);
        d.finish()
    }

    /// Creates the instance with the password read from SSM (the value passes from one call
    /// to the other and nowhere else). An instance of that identifier that exists already
    /// (a create that crashed after sending) is observed instead.
    async fn create(
        &self,
        aws: &Aws,
        desired: &DbInstanceDesired,
    ) -> Result<DbInstanceLive, AwsError> {
        let password = read_secret(aws, &desired.password_parameter).await?;
        let res = aws
            .rds
            .create_db_instance()
            .db_instance_identifier(&desired.identifier)
            .engine("mysql")
            .engine_version(&desired.engine_version)
            .db_instance_class(&desired.instance_class)
            .allocated_storage(desired.allocated_storage_gib)
            .set_max_allocated_storage(desired.max_allocated_storage_gib)
            .storage_type("gp3")
            .storage_encrypted(true)
            .multi_az(desired.multi_az)
            .backup_retention_period(desired.backup_retention_days)
            .deletion_protection(desired.deletion_protection)
            .publicly_accessible(false)
            .auto_minor_version_upgrade(true)
            .copy_tags_to_snapshot(true)
            .db_name(&desired.db_name)
            .master_username(&desired.username)
            .master_user_password(password.expose())
            .db_subnet_group_name(&desired.subnet_group)
            .set_vpc_security_group_ids(Some(desired.security_groups.iter().cloned().collect()))
            .set_tags(Some(rds_tags(&desired.tags)))
            .send()
            .await
            .aws();
        drop(password);
        match res {
            Ok(_) => {}
            Err(e) if e.has_code("DBInstanceAlreadyExists") => {}
            Err(e) => return Err(e),
        }
        let scope = Scope {
            names: vec![desired.identifier.clone()],
            ..Scope::default()
        };
        self.observe(aws, &scope)
            .await?
            .remove(&desired.identifier)
            .ok_or_else(|| {
                AwsError::unexpected(
                    "DescribeDBInstances",
                    format!(
                        "{} is not visible after CreateDBInstance",
                        desired.identifier
                    ),
                )
            })
    }

    /// One `ModifyDBInstance` with only the changed settings, applied immediately; tags apart.
    async fn update(
        &self,
        aws: &Aws,
        desired: &DbInstanceDesired,
        live: &DbInstanceLive,
        diffs: &[FieldDiff],
    ) -> Result<DbInstanceLive, AwsError> {
        let delta = Delta(diffs);
        let touched = |f: Field| delta.touches(f);
        let mut req = aws
            .rds
            .modify_db_instance()
            .db_instance_identifier(&live.identifier)
            .apply_immediately(true);
        let mut any = false;
        if touched(ENGINE_VERSION) {
            req = req.engine_version(&desired.engine_version);
            any = true;
        }
        if touched(INSTANCE_CLASS) {
            req = req.db_instance_class(&desired.instance_class);
            any = true;
        }
        if touched(ALLOCATED_STORAGE_GIB) {
            req = req.allocated_storage(desired.allocated_storage_gib);
            any = true;
        }
        if touched(MAX_ALLOCATED_STORAGE_GIB) {
            // 0 turns storage autoscaling off.
            req = req.max_allocated_storage(desired.max_allocated_storage_gib.unwrap_or(0));
            any = true;
        }
        if touched(MULTI_AZ) {
            req = req.multi_az(desired.multi_az);
            any = true;
        }
        if touched(BACKUP_RETENTION_DAYS) {
            req = req.backup_retention_period(desired.backup_retention_days);
            any = true;
        }
        if touched(DELETION_PROTECTION) {
            req = req.deletion_protection(desired.deletion_protection);
            any = true;
        }
        if touched(SECURITY_GROUPS) {
            req = req.set_vpc_security_group_ids(Some(
                desired.security_groups.iter().cloned().collect(),
            ));
            any = true;
        }
        if touched(PUBLICLY_ACCESSIBLE) {
            req = req.publicly_accessible(false);
            any = true;
        }
        if any {
            req.send().await.aws()?;
        }
        let add = tags::missing(&desired.tags, &live.tags);
        if !add.is_empty() {
            aws.rds
                .add_tags_to_resource()
                .resource_name(&live.arn)
                .set_tags(Some(rds_tags(&add)))
                .send()
                .await
                .aws()?;
        }
        let scope = Scope {
            names: vec![live.identifier.clone()],
            ..Scope::default()
        };
        Ok(self
            .observe(aws, &scope)
            .await?
            .remove(&live.identifier)
            .unwrap_or_else(|| live.clone()))
    }
}

impl DbInstances {
    /// Deletes the database, with a final snapshot named `final_snapshot` (tagged like the
    /// instance) or, with `None`, without one (the data is gone: only `destroy --delete-data`).
    /// A database with deletion protection is refused with the command that lifts it: the
    /// reconciler never lifts it itself.
    pub async fn delete_with(
        &self,
        aws: &Aws,
        live: &DbInstanceLive,
        final_snapshot: Option<&str>,
    ) -> Result<(), AwsError> {
        if live.deletion_protection {
            return Err(AwsError {
                operation: "DeleteDBInstance",
                code: Some("DeletionProtection".into()),
                message: format!(
                    "{} has deletion protection on; turn it off yourself if you mean it: \
                     aws rds modify-db-instance --db-instance-identifier {} --no-deletion-protection --apply-immediately",
                    live.identifier, live.identifier
                ),
                class: crate::error::ErrorClass::Refused,
            });
        }
        if live.status.state() == DbState::Deleting {
            return Ok(());
        }
        let res = aws
            .rds
            .delete_db_instance()
            .db_instance_identifier(&live.identifier)
            .skip_final_snapshot(final_snapshot.is_none())
            .set_final_db_snapshot_identifier(final_snapshot.map(String::from))
            // Kept with a final snapshot; gone with the data otherwise (so that a later
            // apply starts a new, empty shop instead of restoring a backup of the old one).
            .delete_automated_backups(final_snapshot.is_none())
            .send()
            .await
            .aws();
        match res {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        }
        if let Some(id) = final_snapshot
            && let Some(snap) = db_snapshot::find(aws, id).await?
        {
            db_snapshot::ensure_tags(aws, &snap, &live.tags).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> DbInstanceDesired {
        DbInstanceDesired {
            identifier: "shop-db".into(),
            engine_version: "8.4".into(),
            instance_class: "db.t4g.micro".into(),
            allocated_storage_gib: 20,
            max_allocated_storage_gib: Some(100),
            multi_az: false,
            backup_retention_days: 7,
            deletion_protection: true,
            db_name: "prestashop".into(),
            username: "prestashop".into(),
            subnet_group: "shop-db-subnets".into(),
            security_groups: ["sg-db".to_string()].into(),
            password_parameter: "/p/db-password".into(),
            tags: Tags::new(),
        }
    }

    fn live() -> DbInstanceLive {
        let d = desired();
        DbInstanceLive {
            identifier: d.identifier,
            arn: "arn:db".into(),
            status: DbStatus::new("available"),
            endpoint: Some("shop-db.x.rds.amazonaws.com".into()),
            port: 3306,
            engine: "mysql".into(),
            engine_version: "8.4.3".into(),
            instance_class: d.instance_class,
            allocated_storage_gib: 20,
            max_allocated_storage_gib: Some(100),
            multi_az: false,
            backup_retention_days: 7,
            deletion_protection: true,
            db_name: d.db_name,
            username: d.username,
            subnet_group: d.subnet_group,
            security_groups: d.security_groups,
            encrypted: true,
            publicly_accessible: false,
            tags: Tags::new(),
        }
    }

    fn fields(diffs: &[FieldDiff]) -> Vec<(&str, bool)> {
        diffs
            .iter()
            .map(|d| (d.field.as_str(), d.blocked.is_some()))
            .collect()
    }

    #[test]
    fn minor_versions_and_grown_storage_are_not_drift() {
        let mut l = live();
        l.allocated_storage_gib = 35; // grown by storage autoscaling
        assert!(DbInstances.diff(&desired(), &l).is_empty());
        assert!(version_matches("8.4", "8.4.3"));
        assert!(!version_matches("8.4", "8.40.1"));
    }

    #[test]
    fn lowered_backups_and_protection_are_corrected() {
        let mut l = live();
        l.backup_retention_days = 1;
        l.deletion_protection = false;
        assert_eq!(
            fields(&DbInstances.diff(&desired(), &l)),
            [
                ("backupRetentionDays", false),
                ("deletionProtection", false)
            ]
        );
    }

    #[test]
    fn changes_that_need_a_new_instance_are_blocked() {
        let mut l = live();
        l.engine = "mariadb".into();
        l.encrypted = false;
        l.engine_version = "8.0.39".into();
        let diffs = DbInstances.diff(&desired(), &l);
        let got = fields(&diffs);
        assert_eq!(
            got,
            [
                ("engine", true),
                ("engineVersion", true),
                ("storageEncrypted", true)
            ]
        );
    }

    #[test]
    fn readiness_follows_the_status() {
        let mut l = live();
        assert_eq!(DbInstances::readiness(&l), Readiness::Ready);
        l.status = DbStatus::new("creating");
        assert_eq!(
            DbInstances::readiness(&l),
            Readiness::Pending("creating".into())
        );
        l.status = DbStatus::new("incompatible-parameters");
        assert!(matches!(DbInstances::readiness(&l), Readiness::Failed(_)));
    }
}
