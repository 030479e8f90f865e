//! `spec.database`, `spec.fileSystem` and `spec.secrets`: the shop's data.

use crate::model::{Stack, ThroughputMode};

use super::{Findings, help};

pub(super) fn database(f: &mut Findings, stack: &Stack) {
    let db = &stack.spec.database;
    let base = "spec.database";
    let v = &db.engine_version;
    let major_ok = v == "8.0"
        || v == "8.4"
        || v.strip_prefix("8.0.")
            .or_else(|| v.strip_prefix("8.4."))
            .is_some_and(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()));
    if !major_ok {
        f.add(
            &format!("{base}.engineVersion"),
            format!("MySQL `{v}` is not supported"),
            help(
                "use `8.4` (recommended) or `8.0`, optionally with a minor version such as `8.4.3`",
            ),
        );
    }
    let class_ok = db.instance_class.strip_prefix("db.").is_some_and(|rest| {
        rest.split_once('.')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
            && rest
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.')
    });
    if !class_ok {
        f.add(
            &format!("{base}.instanceClass"),
            format!("`{}` is not an RDS instance class", db.instance_class),
            help("e.g. `db.t4g.micro`, `db.m7g.large`"),
        );
    }
    f.range(
        &format!("{base}.allocatedStorageGiB"),
        db.allocated_storage_gib.into(),
        20,
        65_536,
        " GiB (gp3)",
    );
    if let Some(max) = db.max_allocated_storage_gib
        && (max <= db.allocated_storage_gib || max > 65_536)
    {
        f.add(
            &format!("{base}.maxAllocatedStorageGiB"),
            format!(
                "{max} GiB must be above allocatedStorageGiB ({}) and at most 65536",
                db.allocated_storage_gib
            ),
            help("raise it, or set it to null to turn storage autoscaling off"),
        );
    }
    f.range(
        &format!("{base}.backupRetentionDays"),
        db.backup_retention_days.into(),
        0,
        35,
        " days",
    );
    let ident_ok = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if !ident_ok(&db.name, 64) {
        f.add(
            &format!("{base}.name"),
            format!("`{}` is not a MySQL database name RDS accepts", db.name),
            help("1 to 64 letters, digits and `_`, starting with a letter"),
        );
    }
    if !ident_ok(&db.username, 16)
        || ["rdsadmin", "root", "mysql"].contains(&db.username.to_ascii_lowercase().as_str())
    {
        f.add(
            &format!("{base}.username"),
            format!("`{}` is not a master user name RDS accepts", db.username),
            help("1 to 16 letters, digits and `_`, starting with a letter, not `rdsadmin`, `root` or `mysql`"),
        );
    }
    if let Some(from) = &db.restore_from
        && from != "none"
        && !snapshot_id_ok(from)
    {
        f.add(
            &format!("{base}.restoreFrom"),
            format!("`{from}` is not a DB snapshot identifier"),
            help("a snapshot identifier (letters, digits and single hyphens, starting with a letter, e.g. `shop-db-final-20261126175752`), an automated backup (`rds:shop-db-2026-11-26-03-10`), or `none` to start with an empty database on purpose"),
        );
    }
}

/// RDS snapshot identifiers: 1-255 letters, digits, hyphens (not two in a row, not last),
/// starting with a letter; automated backups are `rds:<identifier>-<time>`.
pub(super) fn snapshot_id_ok(id: &str) -> bool {
    let body = id.strip_prefix("rds:").unwrap_or(id);
    !body.is_empty()
        && body.len() <= 255
        && body.starts_with(|c: char| c.is_ascii_alphabetic())
        && body.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !body.contains("--")
        && !body.ends_with('-')
}

pub(super) fn file_system(f: &mut Findings, stack: &Stack) {
    let fs = &stack.spec.file_system;
    let base = "spec.fileSystem";
    match (fs.throughput_mode, fs.provisioned_throughput_mibps) {
        (ThroughputMode::Provisioned, None) => f.add(
            &format!("{base}.provisionedThroughputMibps"),
            "provisioned throughput needs a figure",
            help("set `provisionedThroughputMibps`, e.g. 64, or use `throughputMode: elastic`"),
        ),
        (ThroughputMode::Provisioned, Some(v)) if !(1.0..=3414.0).contains(&v) => f.add(
            &format!("{base}.provisionedThroughputMibps"),
            format!("{v} MiB/s is out of range"),
            help("allowed: 1 to 3414 MiB/s"),
        ),
        (mode, Some(_)) if mode != ThroughputMode::Provisioned => f.add(
            &format!("{base}.provisionedThroughputMibps"),
            format!(
                "only used with `throughputMode: provisioned`, not `{}`",
                mode.as_aws()
            ),
            help("remove it, or set `throughputMode: provisioned`"),
        ),
        _ => {}
    }
    const IA_DAYS: [u32; 9] = [1, 7, 14, 30, 60, 90, 180, 270, 365];
    if let Some(days) = fs.transition_to_ia_days
        && !IA_DAYS.contains(&days)
    {
        f.add(
            &format!("{base}.transitionToIaDays"),
            format!("EFS has no {days}-day transition"),
            help("allowed: 1, 7, 14, 30, 60, 90, 180, 270 or 365 days, or null for none"),
        );
    }
}

pub(super) fn secrets(f: &mut Findings, stack: &Stack) {
    let Some(prefix) = &stack.spec.secrets.parameter_prefix else {
        return;
    };
    let path = "spec.secrets.parameterPrefix";
    let chars_ok = prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c));
    let lower = prefix.to_ascii_lowercase();
    if !prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains("//") || !chars_ok {
        f.add(
            path,
            format!("`{prefix}` is not an SSM parameter path prefix"),
            help("start with `/`, no trailing `/`, letters, digits and `_ . - /`, e.g. `/presta-reconciler/shop`"),
        );
    } else if lower.starts_with("/aws") || lower.starts_with("/ssm") {
        f.add(
            path,
            format!("`{prefix}` is in a namespace reserved by AWS"),
            help("paths may not start with `/aws` or `/ssm`"),
        );
    } else if prefix.matches('/').count() > 13 {
        f.add(
            path,
            "too deep",
            help("SSM allows 15 levels; the reconciler adds one"),
        );
    }
}
