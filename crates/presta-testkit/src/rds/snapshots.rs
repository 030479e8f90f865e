//! DB snapshots and restores from them.

use super::*;

pub(super) fn register(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "DescribeDBSnapshots",
        op::describe_db_snapshots::DescribeDbSnapshotsInput,
        describe_db_snapshots
    );
    handle!(h, W, "RestoreDBInstanceFromDBSnapshot", op::restore_db_instance_from_db_snapshot::RestoreDbInstanceFromDbSnapshotInput, |w: &mut World, i: &op::restore_db_instance_from_db_snapshot::RestoreDbInstanceFromDbSnapshotInput| {
        let id = i.db_instance_identifier().unwrap_or_default().to_string();
        if db_index(w, Some(&id)).is_ok() {
            return Err(Failure::new("DBInstanceAlreadyExists", format!("DB instance already exists: {id}")));
        }
        let snap = w
            .snapshots
            .iter()
            .find(|s| i.db_snapshot_identifier().is_some() && s.db_snapshot_identifier() == i.db_snapshot_identifier())
            .cloned()
            .ok_or_else(|| Failure::new("DBSnapshotNotFound", format!("DBSnapshot {} not found.", i.db_snapshot_identifier().unwrap_or_default())))?;
        let group = subnet_group(w, i.db_subnet_group_name())?;
        let db = DbInstance::builder()
            .set_engine(snap.engine().map(str::to_string))
            .set_engine_version(snap.engine_version().map(str::to_string))
            .set_db_instance_class(i.db_instance_class().map(str::to_string))
            .set_allocated_storage(snap.allocated_storage())
            .set_multi_az(i.multi_az().or(Some(false)))
            .backup_retention_period(1)
            .set_deletion_protection(i.deletion_protection().or(Some(false)))
            .db_name("prestashop")
            .master_username("prestashop")
            .db_subnet_group(group)
            .set_vpc_security_groups(Some(memberships(i.vpc_security_group_ids())))
            .storage_encrypted(false)
            .set_storage_type(i.storage_type().map(str::to_string))
            .set_publicly_accessible(i.publicly_accessible().or(Some(false)))
            .set_copy_tags_to_snapshot(i.copy_tags_to_snapshot())
            .set_tag_list(Some(i.tags().to_vec()));
        let db = launch(w, db, &id);
        Ok(op::restore_db_instance_from_db_snapshot::RestoreDbInstanceFromDbSnapshotOutput::builder().db_instance(db).build())
    });
}

/// `DescribeDBSnapshots`.
fn describe_db_snapshots(
    w: &mut World,
    i: &op::describe_db_snapshots::DescribeDbSnapshotsInput,
) -> Result<op::describe_db_snapshots::DescribeDbSnapshotsOutput, Failure> {
    let found: Vec<DbSnapshot> = w
        .snapshots
        .iter()
        .filter(|s| {
            i.db_instance_identifier()
                .is_none_or(|id| s.db_instance_identifier() == Some(id))
                && i.db_snapshot_identifier()
                    .is_none_or(|id| s.db_snapshot_identifier() == Some(id))
        })
        .cloned()
        .collect();
    if found.is_empty()
        && let Some(id) = i.db_snapshot_identifier()
    {
        return Err(Failure::new(
            "DBSnapshotNotFound",
            format!("DBSnapshot {id} not found."),
        ));
    }
    Ok(
        op::describe_db_snapshots::DescribeDbSnapshotsOutput::builder()
            .set_db_snapshots(Some(found))
            .build(),
    )
}
