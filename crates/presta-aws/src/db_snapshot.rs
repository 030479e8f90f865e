//! The database's snapshots: the final snapshot a delete leaves, and the stack's snapshots a
//! lost or destroyed database is restored from. Snapshots are data: the reconciler makes them
//! and reads them, and never deletes one.
//!
//! A final snapshot is named `<db identifier>-final-<UTC yyyymmddhhmmss>` and carries the
//! stack's ownership tags (put by `CopyTagsToSnapshot`, and added after the delete where the
//! service did not copy them), so that a later `apply` finds it by tag, not by a state file.

use std::time::SystemTime;

use aws_smithy_types::date_time::Format;

use crate::clients::Aws;
use crate::db_instance::{DbInstanceDesired, DbInstanceLive, DbInstances};
use crate::db_subnet_group::{from_rds, rds_tags};
use crate::driver::{Driver, Scope};
use crate::error::{AwsError, AwsResultExt};
use crate::tags::{self, Tags};

/// A snapshot of the stack's database (manual, final or automated).
#[derive(Debug, Clone, PartialEq)]
pub struct DbSnapshot {
    pub id: String,
    pub arn: String,
    /// The instance it was taken from.
    pub instance: String,
    /// `manual` or `automated`.
    pub snapshot_type: String,
    /// `creating`, `available`...
    pub status: String,
    /// RFC 3339, when it was taken.
    pub created: Option<String>,
    pub created_epoch: f64,
    pub allocated_storage_gib: i32,
    pub tags: Tags,
}

/// The current time, RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    aws_smithy_types::DateTime::from(SystemTime::now())
        .fmt(Format::DateTime)
        .unwrap_or_default()
}

fn from_sdk(s: &aws_sdk_rds::types::DbSnapshot) -> DbSnapshot {
    DbSnapshot {
        id: s.db_snapshot_identifier().unwrap_or_default().to_string(),
        arn: s.db_snapshot_arn().unwrap_or_default().to_string(),
        instance: s.db_instance_identifier().unwrap_or_default().to_string(),
        snapshot_type: s.snapshot_type().unwrap_or_default().to_string(),
        status: s.status().unwrap_or_default().to_string(),
        created: s
            .snapshot_create_time()
            .and_then(|t| t.fmt(Format::DateTime).ok()),
        created_epoch: s
            .snapshot_create_time()
            .map(|t| t.as_secs_f64())
            .unwrap_or(0.0),
        allocated_storage_gib: s.allocated_storage().unwrap_or(0),
        tags: from_rds(s.tag_list()),
    }
}

/// The final snapshot's name for a database deleted at `now`.
pub fn final_snapshot_id(instance: &str, now: SystemTime) -> String {
    let stamp: String = aws_smithy_types::DateTime::from(now)
        .fmt(Format::DateTime)
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect();
    format!("{instance}-final-{stamp}")
}

/// The snapshots of `instance` (the database's identifier), newest first, with their tags.
/// Automated snapshots count: AWS keeps them after a delete that retains backups.
pub async fn list(aws: &Aws, instance: &str) -> Result<Vec<DbSnapshot>, AwsError> {
    let all = aws
        .rds
        .describe_db_snapshots()
        .db_instance_identifier(instance)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .aws()?;
    let mut out: Vec<DbSnapshot> = all.iter().map(from_sdk).collect();
    out.sort_by(|a, b| b.created_epoch.total_cmp(&a.created_epoch));
    Ok(out)
}

/// The newest usable snapshot of `instance` that carries `stack`'s ownership tags. Snapshots
/// without them (someone else's, made by hand) are never picked on their own: name one in
/// `spec.database.restoreFrom` to use it.
pub async fn newest_owned(
    aws: &Aws,
    instance: &str,
    stack: &str,
) -> Result<Option<DbSnapshot>, AwsError> {
    Ok(list(aws, instance)
        .await?
        .into_iter()
        .find(|s| s.status == "available" && tags::owned_by(&s.tags, stack)))
}

/// One snapshot by id (for `restoreFrom`), whoever made it.
pub async fn find(aws: &Aws, id: &str) -> Result<Option<DbSnapshot>, AwsError> {
    let resp = aws
        .rds
        .describe_db_snapshots()
        .db_snapshot_identifier(id)
        .send()
        .await
        .aws();
    let resp = match resp {
        Err(e) if e.is_not_found() => return Ok(None),
        other => other?,
    };
    Ok(resp.db_snapshots().first().map(from_sdk))
}

/// Adds the ownership tags a snapshot lacks (final snapshots whose tags were not copied).
pub async fn ensure_tags(aws: &Aws, snapshot: &DbSnapshot, want: &Tags) -> Result<(), AwsError> {
    let add = tags::missing(want, &snapshot.tags);
    if add.is_empty() {
        return Ok(());
    }
    aws.rds
        .add_tags_to_resource()
        .resource_name(&snapshot.arn)
        .set_tags(Some(rds_tags(&add)))
        .send()
        .await
        .aws()?;
    Ok(())
}

impl DbInstances {
    /// Lets go of a database `destroy` retains: the ownership tags are removed, so no stack
    /// manages it any more (a later `apply` reports it and adopts it only with `adoptExisting`).
    pub async fn release(&self, aws: &Aws, live: &DbInstanceLive) -> Result<(), AwsError> {
        let keys: Vec<String> = [
            presta_spec::naming::TAG_MANAGED_BY,
            presta_spec::naming::TAG_STACK,
            presta_spec::naming::TAG_COMPONENT,
        ]
        .into_iter()
        .filter(|k| live.tags.contains_key(*k))
        .map(String::from)
        .collect();
        if keys.is_empty() {
            return Ok(());
        }
        aws.rds
            .remove_tags_from_resource()
            .resource_name(&live.arn)
            .set_tag_keys(Some(keys))
            .send()
            .await
            .aws()?;
        Ok(())
    }
}

/// Restores the stack's database from `snapshot` under the desired identifier, with the
/// desired network, class, protection and tags (the rest is brought to the spec by the next
/// diff). The master password is the snapshot's: the one in SSM when the snapshot is the
/// stack's. An instance of that identifier that exists already (a restore that crashed after
/// sending) is observed instead.
pub async fn restore(
    aws: &Aws,
    desired: &DbInstanceDesired,
    snapshot: &str,
) -> Result<DbInstanceLive, AwsError> {
    let res = aws
        .rds
        .restore_db_instance_from_db_snapshot()
        .db_instance_identifier(&desired.identifier)
        .db_snapshot_identifier(snapshot)
        .db_instance_class(&desired.instance_class)
        .db_subnet_group_name(&desired.subnet_group)
        .set_vpc_security_group_ids(Some(desired.security_groups.iter().cloned().collect()))
        .multi_az(desired.multi_az)
        .deletion_protection(desired.deletion_protection)
        .publicly_accessible(false)
        .auto_minor_version_upgrade(true)
        .copy_tags_to_snapshot(true)
        .storage_type("gp3")
        .set_tags(Some(rds_tags(&desired.tags)))
        .send()
        .await
        .aws();
    match res {
        Ok(_) => {}
        Err(e) if e.has_code("DBInstanceAlreadyExists") => {}
        Err(e) => return Err(e),
    }
    let scope = Scope {
        names: vec![desired.identifier.clone()],
        ..Scope::default()
    };
    DbInstances
        .observe(aws, &scope)
        .await?
        .remove(&desired.identifier)
        .ok_or_else(|| {
            AwsError::unexpected(
                "DescribeDBInstances",
                format!(
                    "{} is not visible after RestoreDBInstanceFromDBSnapshot",
                    desired.identifier
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn final_snapshot_names_carry_the_utc_time() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_715_872); // 2026-11-26T17:57:52Z
        assert_eq!(
            final_snapshot_id("demo-db", t),
            "demo-db-final-20261126175752"
        );
    }
}
