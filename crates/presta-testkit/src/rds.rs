//! RDS: database instances (`creating`/`modifying` for [`crate::Delays::database`]), their
//! final snapshots and restores, subnet groups and tags.

use aws_sdk_rds::operation as op;
use aws_sdk_rds::types::{
    DbInstance, DbSnapshot, DbSubnetGroup, Endpoint, Subnet, Tag, VpcSecurityGroupMembership,
};
use aws_smithy_types::DateTime;
use tokio::time::Instant;

use crate::wire::{Failure, Wire};
use crate::world::{Database, World};
use crate::{Handler, handle};

mod snapshots;
mod subnet_groups;

const W: Wire = Wire::Query;

fn db_index(w: &World, id: Option<&str>) -> Result<usize, Failure> {
    w.databases
        .iter()
        .position(|d| id.is_some() && d.db.db_instance_identifier() == id)
        .ok_or_else(|| {
            Failure::new(
                "DBInstanceNotFound",
                format!("DBInstance {} not found.", id.unwrap_or_default()),
            )
        })
}

fn subnet_group(w: &World, name: Option<&str>) -> Result<DbSubnetGroup, Failure> {
    w.subnet_groups
        .iter()
        .find(|(g, _)| name.is_some() && g.db_subnet_group_name() == name)
        .map(|(g, _)| g.clone())
        .ok_or_else(|| {
            Failure::new(
                "DBSubnetGroupNotFoundFault",
                format!("DB subnet group {} not found.", name.unwrap_or_default()),
            )
        })
}

fn memberships(ids: &[String]) -> Vec<VpcSecurityGroupMembership> {
    ids.iter()
        .map(|id| {
            VpcSecurityGroupMembership::builder()
                .vpc_security_group_id(id)
                .status("active")
                .build()
        })
        .collect()
}

fn merge(into: &mut Vec<Tag>, tags: &[Tag]) {
    for t in tags {
        into.retain(|have| have.key() != t.key());
        into.push(t.clone());
    }
}

/// The tags of the resource `arn`, to read or change.
fn tags_of<'a>(w: &'a mut World, arn: &str) -> Result<&'a mut Vec<Tag>, Failure> {
    if let Some(d) = w
        .databases
        .iter_mut()
        .find(|d| d.db.db_instance_arn() == Some(arn))
    {
        return Ok(d.db.tag_list.get_or_insert_with(Vec::new));
    }
    if let Some(s) = w
        .snapshots
        .iter_mut()
        .find(|s| s.db_snapshot_arn() == Some(arn))
    {
        return Ok(s.tag_list.get_or_insert_with(Vec::new));
    }
    if let Some((_, tags)) = w
        .subnet_groups
        .iter_mut()
        .find(|(g, _)| g.db_subnet_group_arn() == Some(arn))
    {
        return Ok(tags);
    }
    let code = if arn.contains(":subgrp:") {
        "DBSubnetGroupNotFoundFault"
    } else if arn.contains(":snapshot:") {
        "DBSnapshotNotFound"
    } else {
        "DBInstanceNotFound"
    };
    Err(Failure::new(code, format!("{arn} not found.")))
}

/// A new instance, `creating` until its delay has passed.
fn launch(
    w: &mut World,
    db: aws_sdk_rds::types::builders::DbInstanceBuilder,
    id: &str,
) -> DbInstance {
    let db = db
        .db_instance_identifier(id)
        .db_instance_arn(w.arn("rds", &format!("db:{id}")))
        .db_instance_status("creating")
        .endpoint(
            Endpoint::builder()
                .address(format!("{id}.fake.{}.rds.amazonaws.com", w.region))
                .port(3306)
                .build(),
        )
        .instance_create_time(DateTime::from(std::time::SystemTime::now()))
        .build();
    let ready_at = Instant::now() + w.delays.database;
    w.databases.push(Database {
        db: db.clone(),
        ready_at,
    });
    db
}

pub(crate) fn register(h: &mut Vec<Handler>) {
    instances(h);
    snapshots::register(h);
    subnet_groups::register(h);
    handle!(
        h,
        W,
        "ListTagsForResource",
        op::list_tags_for_resource::ListTagsForResourceInput,
        list_tags_for_resource
    );
    handle!(
        h,
        W,
        "AddTagsToResource",
        op::add_tags_to_resource::AddTagsToResourceInput,
        add_tags_to_resource
    );
    handle!(
        h,
        W,
        "RemoveTagsFromResource",
        op::remove_tags_from_resource::RemoveTagsFromResourceInput,
        remove_tags_from_resource
    );
}

fn instances(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "DescribeDBInstances",
        op::describe_db_instances::DescribeDbInstancesInput,
        describe_db_instances
    );
    handle!(
        h,
        W,
        "CreateDBInstance",
        op::create_db_instance::CreateDbInstanceInput,
        create_db_instance
    );
    handle!(
        h,
        W,
        "ModifyDBInstance",
        op::modify_db_instance::ModifyDbInstanceInput,
        modify_db_instance
    );
    handle!(
        h,
        W,
        "DeleteDBInstance",
        op::delete_db_instance::DeleteDbInstanceInput,
        delete_db_instance
    );
}

/// `ListTagsForResource`.
fn list_tags_for_resource(
    w: &mut World,
    i: &op::list_tags_for_resource::ListTagsForResourceInput,
) -> Result<op::list_tags_for_resource::ListTagsForResourceOutput, Failure> {
    let tags = tags_of(w, i.resource_name().unwrap_or_default())?.clone();
    Ok(
        op::list_tags_for_resource::ListTagsForResourceOutput::builder()
            .set_tag_list(Some(tags))
            .build(),
    )
}

/// `AddTagsToResource`.
fn add_tags_to_resource(
    w: &mut World,
    i: &op::add_tags_to_resource::AddTagsToResourceInput,
) -> Result<op::add_tags_to_resource::AddTagsToResourceOutput, Failure> {
    merge(tags_of(w, i.resource_name().unwrap_or_default())?, i.tags());
    Ok(op::add_tags_to_resource::AddTagsToResourceOutput::builder().build())
}

/// `RemoveTagsFromResource`.
fn remove_tags_from_resource(
    w: &mut World,
    i: &op::remove_tags_from_resource::RemoveTagsFromResourceInput,
) -> Result<op::remove_tags_from_resource::RemoveTagsFromResourceOutput, Failure> {
    tags_of(w, i.resource_name().unwrap_or_default())?
        .retain(|t| !i.tag_keys().iter().any(|k| t.key() == Some(k)));
    Ok(op::remove_tags_from_resource::RemoveTagsFromResourceOutput::builder().build())
}

/// `DescribeDBInstances`.
fn describe_db_instances(
    w: &mut World,
    i: &op::describe_db_instances::DescribeDbInstancesInput,
) -> Result<op::describe_db_instances::DescribeDbInstancesOutput, Failure> {
    if let Some(id) = i.db_instance_identifier() {
        let n = db_index(w, Some(id))?;
        return Ok(
            op::describe_db_instances::DescribeDbInstancesOutput::builder()
                .db_instances(w.databases[n].db.clone())
                .build(),
        );
    }
    let ids: Vec<&String> = i
        .filters()
        .iter()
        .filter(|f| f.name() == Some("db-instance-id"))
        .flat_map(|f| f.values())
        .collect();
    let found = w
        .databases
        .iter()
        .map(|d| &d.db)
        .filter(|d| {
            ids.is_empty()
                || ids.iter().any(|id| {
                    d.db_instance_identifier() == Some(id.as_str())
                        || d.db_instance_arn() == Some(id.as_str())
                })
        })
        .cloned()
        .collect();
    Ok(
        op::describe_db_instances::DescribeDbInstancesOutput::builder()
            .set_db_instances(Some(found))
            .build(),
    )
}

/// `CreateDBInstance`.
fn create_db_instance(
    w: &mut World,
    i: &op::create_db_instance::CreateDbInstanceInput,
) -> Result<op::create_db_instance::CreateDbInstanceOutput, Failure> {
    let id = i.db_instance_identifier().unwrap_or_default().to_string();
    if db_index(w, Some(&id)).is_ok() {
        return Err(Failure::new(
            "DBInstanceAlreadyExists",
            format!("DB instance already exists: {id}"),
        ));
    }
    let group = subnet_group(w, i.db_subnet_group_name())?;
    if i.master_user_password().is_none_or(|p| p.len() < 8) {
        return Err(Failure::new(
            "InvalidParameterValue",
            "The parameter MasterUserPassword is not a valid password.",
        ));
    }
    let db = DbInstance::builder()
        .set_engine(i.engine().map(str::to_string))
        .set_engine_version(i.engine_version().map(str::to_string))
        .set_db_instance_class(i.db_instance_class().map(str::to_string))
        .set_allocated_storage(i.allocated_storage())
        .set_max_allocated_storage(i.max_allocated_storage())
        .set_multi_az(i.multi_az().or(Some(false)))
        .set_backup_retention_period(i.backup_retention_period().or(Some(1)))
        .set_deletion_protection(i.deletion_protection().or(Some(false)))
        .set_db_name(i.db_name().map(str::to_string))
        .set_master_username(i.master_username().map(str::to_string))
        .db_subnet_group(group)
        .set_vpc_security_groups(Some(memberships(i.vpc_security_group_ids())))
        .set_storage_encrypted(i.storage_encrypted().or(Some(false)))
        .set_storage_type(i.storage_type().map(str::to_string))
        .set_publicly_accessible(i.publicly_accessible().or(Some(false)))
        .set_auto_minor_version_upgrade(i.auto_minor_version_upgrade())
        .set_copy_tags_to_snapshot(i.copy_tags_to_snapshot())
        .set_tag_list(Some(i.tags().to_vec()));
    let db = launch(w, db, &id);
    Ok(op::create_db_instance::CreateDbInstanceOutput::builder()
        .db_instance(db)
        .build())
}

/// `ModifyDBInstance`.
fn modify_db_instance(
    w: &mut World,
    i: &op::modify_db_instance::ModifyDbInstanceInput,
) -> Result<op::modify_db_instance::ModifyDbInstanceOutput, Failure> {
    let n = db_index(w, i.db_instance_identifier())?;
    let delay = w.delays.database;
    let d = &mut w.databases[n];
    let status = d.db.db_instance_status().unwrap_or_default();
    if status != "available" {
        return Err(Failure::new(
            "InvalidDBInstanceState",
            format!("Database instance is not in available state ({status})."),
        ));
    }
    let db = &mut d.db;
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = i.$field.clone() { db.$field = Some(v); } )* };
    }
    set!(
        allocated_storage,
        max_allocated_storage,
        backup_retention_period,
        db_instance_class,
        deletion_protection,
        engine_version,
        multi_az,
        publicly_accessible
    );
    if !i.vpc_security_group_ids().is_empty() {
        db.vpc_security_groups = Some(memberships(i.vpc_security_group_ids()));
    }
    db.db_instance_status = Some("modifying".into());
    d.ready_at = Instant::now() + delay;
    Ok(op::modify_db_instance::ModifyDbInstanceOutput::builder()
        .db_instance(d.db.clone())
        .build())
}

/// `DeleteDBInstance`.
fn delete_db_instance(
    w: &mut World,
    i: &op::delete_db_instance::DeleteDbInstanceInput,
) -> Result<op::delete_db_instance::DeleteDbInstanceOutput, Failure> {
    let n = db_index(w, i.db_instance_identifier())?;
    if w.databases[n].db.deletion_protection() == Some(true) {
        return Err(Failure::new(
            "InvalidParameterCombination",
            "Cannot delete protected DB Instance, please disable deletion protection and try again.",
        ));
    }
    let db = w.databases[n].db.clone();
    match (i.skip_final_snapshot(), i.final_db_snapshot_identifier()) {
        (Some(true), _) => {}
        (_, Some(snap)) => {
            if w.snapshots
                .iter()
                .any(|s| s.db_snapshot_identifier() == Some(snap))
            {
                return Err(Failure::new(
                    "DBSnapshotAlreadyExists",
                    format!(
                        "Cannot create the snapshot because a snapshot with the identifier {snap} already exists."
                    ),
                ));
            }
            let arn = w.arn("rds", &format!("snapshot:{snap}"));
            w.snapshots.push(
                DbSnapshot::builder()
                    .db_snapshot_identifier(snap)
                    .db_snapshot_arn(arn)
                    .set_db_instance_identifier(db.db_instance_identifier().map(str::to_string))
                    .snapshot_type("manual")
                    .status("available")
                    .set_engine(db.engine().map(str::to_string))
                    .set_engine_version(db.engine_version().map(str::to_string))
                    .set_allocated_storage(db.allocated_storage())
                    .snapshot_create_time(DateTime::from(std::time::SystemTime::now()))
                    .set_tag_list(if db.copy_tags_to_snapshot() == Some(true) {
                        Some(db.tag_list().to_vec())
                    } else {
                        None
                    })
                    .build(),
            );
        }
        (_, None) => {
            return Err(Failure::new(
                "InvalidParameterCombination",
                "FinalDBSnapshotIdentifier is required unless SkipFinalSnapshot is specified.",
            ));
        }
    }
    w.databases.remove(n);
    let mut gone = db;
    gone.db_instance_status = Some("deleting".into());
    Ok(op::delete_db_instance::DeleteDbInstanceOutput::builder()
        .db_instance(gone)
        .build())
}
