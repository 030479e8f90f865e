//! The database, the file system and the password's parameter.

use presta_spec::naming::Component;
use serde_json::{Value, json};

use super::{Core, Ctx, str_of};
use crate::ImportError;
use crate::report::{Handle, LeftAlone};
use crate::state::Resource;

/// The `spec.database` section.
pub(super) fn database(cx: &mut Ctx<'_>, core: &Core<'_>) -> Value {
    let (db, subnet_group) = (core.db, core.subnet_group);
    Core::named(cx, "database", db.str("identifier").unwrap_or_default());
    cx.take(db, "database");
    cx.tag(
        db,
        Component::DbInstance,
        Handle::Rds(db.str("arn").unwrap_or_default().into()),
    );
    Core::named(
        cx,
        "dbSubnetGroup",
        subnet_group.str("name").unwrap_or_default(),
    );
    cx.take(subnet_group, "DB subnet group");
    cx.tag(
        subnet_group,
        Component::DbSubnetGroup,
        Handle::Rds(subnet_group.str("arn").unwrap_or_default().into()),
    );
    database_checks(cx, db);
    json!({
        "engineVersion": db.str("engine_version").unwrap_or("8.0"),
        "instanceClass": db.str("instance_class").unwrap_or_default(),
        "allocatedStorageGiB": db.int("allocated_storage").unwrap_or(20),
        "maxAllocatedStorageGiB": db.int("max_allocated_storage").filter(|m| *m > 0),
        "multiAz": db.bool("multi_az").unwrap_or(false),
        "backupRetentionDays": db.int("backup_retention_period").unwrap_or(0),
        "deletionProtection": db.bool("deletion_protection").unwrap_or(false),
        "name": db.str("db_name").unwrap_or("prestashop"),
        "username": db.str("username").unwrap_or_default(),
    })
}

/// The `spec.fileSystem` section (with its mount targets and backup policy).
pub(super) fn file_system(cx: &mut Ctx<'_>, core: &Core<'_>) -> Value {
    let fs = core.fs;
    Core::named(
        cx,
        "fileSystem",
        fs.str("creation_token").unwrap_or_default(),
    );
    cx.take(fs, "file system");
    cx.tag(
        fs,
        Component::FileSystem,
        Handle::Efs(fs.str("id").unwrap_or_default().into()),
    );
    for m in &core.mount_targets {
        cx.take(m, "file system mount target");
    }
    let mut backups = false;
    for b in cx.of_type("aws_efs_backup_policy") {
        backups = b.block("backup_policy").and_then(|p| str_of(p, "status")) == Some("ENABLED");
        cx.take(b, "file system backup policy");
    }
    if fs.str("performance_mode").unwrap_or("generalPurpose") != "generalPurpose" {
        cx.unmapped(fs, "performance_mode", "the product's file system is generalPurpose; the mode is fixed at creation, so this one keeps its own");
    }
    let mut to_ia: Value = Value::Null;
    let mut to_primary = false;
    for p in fs.blocks("lifecycle_policy") {
        if let Some(t) = str_of(p, "transition_to_ia") {
            to_ia = json!(
                t.trim_start_matches("AFTER_")
                    .trim_end_matches("_DAYS")
                    .parse::<u32>()
                    .ok()
            );
        }
        if str_of(p, "transition_to_primary_storage_class") == Some("AFTER_1_ACCESS") {
            to_primary = true;
        }
        if str_of(p, "transition_to_archive").is_some() {
            cx.unmapped(fs, "lifecycle_policy.transition_to_archive", "the product does not manage the Archive storage class: the transition is removed with the lifecycle configuration the reconciler writes");
        }
    }
    let throughput = fs.str("throughput_mode").unwrap_or("bursting").to_string();
    let provisioned = fs
        .float("provisioned_throughput_in_mibps")
        .filter(|v| *v > 0.0);
    json!({
        "encrypted": fs.bool("encrypted").unwrap_or(false),
        "throughputMode": throughput,
        "provisionedThroughputMibps": provisioned,
        "transitionToIaDays": to_ia,
        "transitionToPrimaryOnAccess": to_primary,
        "automaticBackups": backups,
    })
}

/// The `spec.secrets` section: the parameter that holds the database password (the one the
/// user data reads), by name; no admin password for a shop that is installed.
pub(super) fn secrets(
    cx: &mut Ctx<'_>,
    core: &Core<'_>,
    user_data: &str,
) -> Result<Value, ImportError> {
    let db = core.db;
    let params = cx.of_type("aws_ssm_parameter");
    // The parameters the user data reads; of several (the admin password's too), the one
    // named for the database.
    let read: Vec<&Resource> = params
        .iter()
        .copied()
        .filter(|p| p.str("name").is_some_and(|n| user_data.contains(n)))
        .collect();
    let for_db = |p: &&Resource| {
        let n = p.str("name").unwrap_or_default().to_ascii_lowercase();
        ["db", "database", "mysql", "rds"]
            .iter()
            .any(|w| n.contains(w))
            && !n.contains("admin")
    };
    let db_param = read
        .iter()
        .copied()
        .find(for_db)
        .or_else(|| (read.len() == 1).then(|| read[0]))
        .or_else(|| {
            let secure: Vec<&Resource> = params
                .iter()
                .copied()
                .filter(|p| p.str("type") == Some("SecureString"))
                .collect();
            (secure.len() == 1).then(|| secure[0])
        })
        .ok_or_else(|| ImportError::Unsupported {
            address: db.address.clone(),
            message: "no SSM parameter of the state holds the database password (none is named in the user data, and there is not exactly one SecureString): put the current password in a SecureString (`aws ssm put-parameter --type SecureString --name /shop/db-password --value ...`), import it into Terraform (`terraform import aws_ssm_parameter.db_password /shop/db-password`) and import again".into(),
        })?;
    if db_param.str("type") != Some("SecureString") {
        cx.unmapped(db_param, "type", "the product keeps passwords in SecureStrings only and never overwrites one: its plan blocks on this parameter until it is re-created as a SecureString by hand");
    }
    cx.take(
        db_param,
        "database password (SecureString; its value is never read)",
    );
    cx.tag(
        db_param,
        Component::DbInstance,
        Handle::Ssm(db_param.str("name").unwrap_or_default().into()),
    );
    for p in params.iter().filter(|p| **p != db_param) {
        cx.report.left_alone.push(LeftAlone {
            address: p.address.clone(),
            ty: p.ty.clone(),
            why: "a parameter the product's stack does not use: it stays in Terraform's state"
                .into(),
        });
    }
    Ok(json!({
        "dbPasswordParameter": db_param.str("name").unwrap_or_default(),
        "adminPasswordParameter": presta_spec::model::NO_ADMIN_PASSWORD,
    }))
}

fn database_checks(cx: &mut Ctx<'_>, db: &Resource) {
    if db.bool("storage_encrypted") != Some(true) {
        cx.unmapped(db, "storage_encrypted", "the database is not encrypted; encryption can only be added by restoring an encrypted snapshot into a new instance, which the reconciler never does: its plan shows this as blocked");
    }
    if db.str("storage_type").is_some_and(|t| t != "gp3") {
        cx.unmapped(
            db,
            "storage_type",
            "the product creates gp3 storage; an existing instance keeps its own (not compared)",
        );
    }
    if db.bool("publicly_accessible") == Some(true) {
        cx.change(format!("{}: no longer publicly accessible", db.address));
    }
    if db.bool("manage_master_user_password") == Some(true) {
        cx.unmapped(db, "manage_master_user_password", "the master password lives in Secrets Manager; the product keeps it in an SSM SecureString and would set a new one");
    }
    for (attr, default) in [
        ("parameter_group_name", "default."),
        ("option_group_name", "default:"),
    ] {
        if db.str(attr).is_some_and(|v| !v.starts_with(default)) {
            cx.unmapped(db, attr, "a custom group: kept as it is (the product does not manage it); a database the reconciler restores gets the default one");
        }
    }
    if db.int("port").is_some_and(|p| p != 3306) {
        cx.unmapped(db, "port", "the product's security groups open 3306: the database's group rule is set to 3306 while it listens elsewhere");
    }
}
