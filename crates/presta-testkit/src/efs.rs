//! EFS: file systems (`creating` for [`crate::Delays::file_system`]) with their lifecycle and
//! backup policies and tags, and mount targets with the network interfaces that carry their
//! security groups.

use aws_sdk_ec2::types::{GroupIdentifier, NetworkInterface};
use aws_sdk_efs::operation as op;
use aws_sdk_efs::types::{
    BackupPolicy, FileSystemDescription, FileSystemSize, LifeCycleState, MountTargetDescription,
    PerformanceMode, Status, Tag, ThroughputMode,
};
use aws_smithy_types::DateTime;
use tokio::time::Instant;

use crate::wire::{Failure, Wire};
use crate::world::{FileSystem, MountTarget, World};
use crate::{Handler, handle};

const W: Wire = Wire::RestJson;

fn fs_index(w: &World, id: Option<&str>) -> Result<usize, Failure> {
    w.file_systems
        .iter()
        .position(|f| id.is_some() && Some(f.fs.file_system_id()) == id)
        .ok_or_else(|| {
            Failure::new(
                "FileSystemNotFound",
                format!("File system '{}' does not exist.", id.unwrap_or_default()),
            )
        })
}

fn mt_index(w: &World, id: Option<&str>) -> Result<usize, Failure> {
    w.mount_targets
        .iter()
        .position(|m| id.is_some() && Some(m.mt.mount_target_id()) == id)
        .ok_or_else(|| {
            Failure::new(
                "MountTargetNotFound",
                format!("Mount target '{}' does not exist.", id.unwrap_or_default()),
            )
        })
}

fn groups(ids: &[String]) -> Vec<GroupIdentifier> {
    ids.iter()
        .map(|id| GroupIdentifier::builder().group_id(id).build())
        .collect()
}

pub(crate) fn register(h: &mut Vec<Handler>) {
    file_systems(h);
    policies(h);
    mount_targets(h);
}

fn file_systems(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "DescribeFileSystems",
        op::describe_file_systems::DescribeFileSystemsInput,
        describe_file_systems
    );
    handle!(
        h,
        W,
        "CreateFileSystem",
        op::create_file_system::CreateFileSystemInput,
        create_file_system
    );
    handle!(
        h,
        W,
        "UpdateFileSystem",
        op::update_file_system::UpdateFileSystemInput,
        update_file_system
    );
    handle!(
        h,
        W,
        "DeleteFileSystem",
        op::delete_file_system::DeleteFileSystemInput,
        delete_file_system
    );
    handle!(
        h,
        W,
        "TagResource",
        op::tag_resource::TagResourceInput,
        tag_resource
    );
    handle!(
        h,
        W,
        "UntagResource",
        op::untag_resource::UntagResourceInput,
        untag_resource
    );
}

fn policies(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "DescribeLifecycleConfiguration",
        op::describe_lifecycle_configuration::DescribeLifecycleConfigurationInput,
        |w: &mut World,
         i: &op::describe_lifecycle_configuration::DescribeLifecycleConfigurationInput| {
            let n = fs_index(w, i.file_system_id())?;
            Ok(op::describe_lifecycle_configuration::DescribeLifecycleConfigurationOutput::builder()
            .set_lifecycle_policies(Some(w.file_systems[n].lifecycle.clone()))
            .build())
        }
    );
    handle!(
        h,
        W,
        "PutLifecycleConfiguration",
        op::put_lifecycle_configuration::PutLifecycleConfigurationInput,
        put_lifecycle_configuration
    );
    handle!(
        h,
        W,
        "DescribeBackupPolicy",
        op::describe_backup_policy::DescribeBackupPolicyInput,
        describe_backup_policy
    );
    handle!(
        h,
        W,
        "PutBackupPolicy",
        op::put_backup_policy::PutBackupPolicyInput,
        put_backup_policy
    );
}

fn mount_targets(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "DescribeMountTargets",
        op::describe_mount_targets::DescribeMountTargetsInput,
        describe_mount_targets
    );
    handle!(
        h,
        W,
        "CreateMountTarget",
        op::create_mount_target::CreateMountTargetInput,
        create_mount_target
    );
    handle!(h, W, "DescribeMountTargetSecurityGroups", op::describe_mount_target_security_groups::DescribeMountTargetSecurityGroupsInput, |w: &mut World, i: &op::describe_mount_target_security_groups::DescribeMountTargetSecurityGroupsInput| {
        let n = mt_index(w, i.mount_target_id())?;
        op::describe_mount_target_security_groups::DescribeMountTargetSecurityGroupsOutput::builder()
            .set_security_groups(Some(w.mount_targets[n].security_groups.clone()))
            .build()
            .map_err(|e| Failure::new("BadRequest", e.to_string()))
    });
    handle!(h, W, "ModifyMountTargetSecurityGroups", op::modify_mount_target_security_groups::ModifyMountTargetSecurityGroupsInput, |w: &mut World, i: &op::modify_mount_target_security_groups::ModifyMountTargetSecurityGroupsInput| {
        let n = mt_index(w, i.mount_target_id())?;
        let ids = i.security_groups().to_vec();
        w.mount_targets[n].security_groups = ids.clone();
        let eni = w.mount_targets[n].mt.network_interface_id().map(str::to_string);
        if let Some(e) = w.network_interfaces.iter_mut().find(|e| e.network_interface_id.is_some() && e.network_interface_id == eni) {
            e.groups = Some(groups(&ids));
        }
        Ok(op::modify_mount_target_security_groups::ModifyMountTargetSecurityGroupsOutput::builder().build())
    });
    handle!(
        h,
        W,
        "DeleteMountTarget",
        op::delete_mount_target::DeleteMountTargetInput,
        delete_mount_target
    );
}

/// `DescribeFileSystems`.
fn describe_file_systems(
    w: &mut World,
    i: &op::describe_file_systems::DescribeFileSystemsInput,
) -> Result<op::describe_file_systems::DescribeFileSystemsOutput, Failure> {
    if let Some(id) = i.file_system_id() {
        fs_index(w, Some(id))?;
    }
    let mut found: Vec<FileSystemDescription> = Vec::new();
    for f in &w.file_systems {
        let keep = i
            .file_system_id()
            .is_none_or(|id| f.fs.file_system_id() == id)
            && i.creation_token()
                .is_none_or(|t| f.fs.creation_token() == t);
        if keep {
            let mut fs = f.fs.clone();
            fs.number_of_mount_targets = w
                .mount_targets
                .iter()
                .filter(|m| m.mt.file_system_id() == f.fs.file_system_id())
                .count() as i32;
            found.push(fs);
        }
    }
    Ok(
        op::describe_file_systems::DescribeFileSystemsOutput::builder()
            .set_file_systems(Some(found))
            .build(),
    )
}

/// `CreateFileSystem`.
fn create_file_system(
    w: &mut World,
    i: &op::create_file_system::CreateFileSystemInput,
) -> Result<op::create_file_system::CreateFileSystemOutput, Failure> {
    let token = i.creation_token().unwrap_or_default().to_string();
    if let Some(f) = w
        .file_systems
        .iter()
        .find(|f| f.fs.creation_token() == token)
    {
        return Err(Failure::new(
            "FileSystemAlreadyExists",
            format!(
                "File system '{}' already exists with creation token '{token}'",
                f.fs.file_system_id()
            ),
        ));
    }
    let id = w.id("fs");
    let fs = FileSystemDescription::builder()
        .owner_id(&w.account)
        .creation_token(&token)
        .file_system_id(&id)
        .file_system_arn(w.arn("elasticfilesystem", &format!("file-system/{id}")))
        .creation_time(DateTime::from(std::time::SystemTime::now()))
        .life_cycle_state(LifeCycleState::Creating)
        .number_of_mount_targets(0)
        .size_in_bytes(FileSystemSize::builder().value(6144).build())
        .performance_mode(
            i.performance_mode()
                .cloned()
                .unwrap_or(PerformanceMode::GeneralPurpose),
        )
        .set_encrypted(i.encrypted().or(Some(false)))
        .set_throughput_mode(
            i.throughput_mode()
                .cloned()
                .or(Some(ThroughputMode::Bursting)),
        )
        .set_provisioned_throughput_in_mibps(i.provisioned_throughput_in_mibps())
        .set_tags(Some(i.tags().to_vec()))
        .build()
        .map_err(|e| Failure::new("BadRequest", e.to_string()))?;
    let ready_at = Instant::now() + w.delays.file_system;
    w.file_systems.push(FileSystem {
        fs: fs.clone(),
        backup: i.backup() == Some(true),
        lifecycle: Vec::new(),
        ready_at,
    });
    op::create_file_system::CreateFileSystemOutput::builder()
        .owner_id(fs.owner_id())
        .creation_token(fs.creation_token())
        .file_system_id(fs.file_system_id())
        .set_file_system_arn(fs.file_system_arn().map(str::to_string))
        .creation_time(*fs.creation_time())
        .life_cycle_state(fs.life_cycle_state().clone())
        .number_of_mount_targets(0)
        .set_size_in_bytes(fs.size_in_bytes().cloned())
        .performance_mode(fs.performance_mode().clone())
        .set_encrypted(fs.encrypted())
        .set_throughput_mode(fs.throughput_mode().cloned())
        .set_provisioned_throughput_in_mibps(fs.provisioned_throughput_in_mibps())
        .set_tags(Some(fs.tags().to_vec()))
        .build()
        .map_err(|e| Failure::new("BadRequest", e.to_string()))
}

/// `UpdateFileSystem`.
fn update_file_system(
    w: &mut World,
    i: &op::update_file_system::UpdateFileSystemInput,
) -> Result<op::update_file_system::UpdateFileSystemOutput, Failure> {
    let n = fs_index(w, i.file_system_id())?;
    let fs = &mut w.file_systems[n].fs;
    if let Some(m) = i.throughput_mode() {
        fs.throughput_mode = Some(m.clone());
    }
    if let Some(p) = i.provisioned_throughput_in_mibps() {
        fs.provisioned_throughput_in_mibps = Some(p);
    }
    let fs = fs.clone();
    op::update_file_system::UpdateFileSystemOutput::builder()
        .owner_id(fs.owner_id())
        .creation_token(fs.creation_token())
        .file_system_id(fs.file_system_id())
        .creation_time(*fs.creation_time())
        .life_cycle_state(fs.life_cycle_state().clone())
        .number_of_mount_targets(fs.number_of_mount_targets())
        .set_size_in_bytes(fs.size_in_bytes().cloned())
        .performance_mode(fs.performance_mode().clone())
        .set_throughput_mode(fs.throughput_mode().cloned())
        .set_provisioned_throughput_in_mibps(fs.provisioned_throughput_in_mibps())
        .set_tags(Some(fs.tags().to_vec()))
        .build()
        .map_err(|e| Failure::new("BadRequest", e.to_string()))
}

/// `DeleteFileSystem`.
fn delete_file_system(
    w: &mut World,
    i: &op::delete_file_system::DeleteFileSystemInput,
) -> Result<op::delete_file_system::DeleteFileSystemOutput, Failure> {
    let n = fs_index(w, i.file_system_id())?;
    let id = w.file_systems[n].fs.file_system_id().to_string();
    if w.mount_targets.iter().any(|m| m.mt.file_system_id() == id) {
        return Err(Failure::new(
            "FileSystemInUse",
            format!("File system '{id}' has mount targets"),
        ));
    }
    w.file_systems.remove(n);
    Ok(op::delete_file_system::DeleteFileSystemOutput::builder().build())
}

/// `TagResource`.
fn tag_resource(
    w: &mut World,
    i: &op::tag_resource::TagResourceInput,
) -> Result<op::tag_resource::TagResourceOutput, Failure> {
    let n = fs_index(w, i.resource_id())?;
    let tags = &mut w.file_systems[n].fs.tags;
    for t in i.tags() {
        tags.retain(|have: &Tag| have.key() != t.key());
        tags.push(t.clone());
    }
    Ok(op::tag_resource::TagResourceOutput::builder().build())
}

/// `UntagResource`.
fn untag_resource(
    w: &mut World,
    i: &op::untag_resource::UntagResourceInput,
) -> Result<op::untag_resource::UntagResourceOutput, Failure> {
    let n = fs_index(w, i.resource_id())?;
    w.file_systems[n]
        .fs
        .tags
        .retain(|t| !i.tag_keys().iter().any(|k| k == t.key()));
    Ok(op::untag_resource::UntagResourceOutput::builder().build())
}

/// `PutLifecycleConfiguration`.
fn put_lifecycle_configuration(
    w: &mut World,
    i: &op::put_lifecycle_configuration::PutLifecycleConfigurationInput,
) -> Result<op::put_lifecycle_configuration::PutLifecycleConfigurationOutput, Failure> {
    let n = fs_index(w, i.file_system_id())?;
    w.file_systems[n].lifecycle = i.lifecycle_policies().to_vec();
    Ok(
        op::put_lifecycle_configuration::PutLifecycleConfigurationOutput::builder()
            .set_lifecycle_policies(Some(i.lifecycle_policies().to_vec()))
            .build(),
    )
}

/// `DescribeBackupPolicy`.
fn describe_backup_policy(
    w: &mut World,
    i: &op::describe_backup_policy::DescribeBackupPolicyInput,
) -> Result<op::describe_backup_policy::DescribeBackupPolicyOutput, Failure> {
    let n = fs_index(w, i.file_system_id())?;
    let status = if w.file_systems[n].backup {
        Status::Enabled
    } else {
        Status::Disabled
    };
    Ok(
        op::describe_backup_policy::DescribeBackupPolicyOutput::builder()
            .backup_policy(
                BackupPolicy::builder()
                    .status(status)
                    .build()
                    .expect("a policy"),
            )
            .build(),
    )
}

/// `PutBackupPolicy`.
fn put_backup_policy(
    w: &mut World,
    i: &op::put_backup_policy::PutBackupPolicyInput,
) -> Result<op::put_backup_policy::PutBackupPolicyOutput, Failure> {
    let n = fs_index(w, i.file_system_id())?;
    let on = i
        .backup_policy()
        .is_some_and(|b| matches!(b.status(), Status::Enabled | Status::Enabling));
    w.file_systems[n].backup = on;
    Ok(op::put_backup_policy::PutBackupPolicyOutput::builder()
        .set_backup_policy(i.backup_policy().cloned())
        .build())
}

/// `DescribeMountTargets`.
fn describe_mount_targets(
    w: &mut World,
    i: &op::describe_mount_targets::DescribeMountTargetsInput,
) -> Result<op::describe_mount_targets::DescribeMountTargetsOutput, Failure> {
    if let Some(fs) = i.file_system_id() {
        fs_index(w, Some(fs))?;
    }
    let found = w
        .mount_targets
        .iter()
        .map(|m| &m.mt)
        .filter(|m| {
            i.file_system_id().is_none_or(|fs| m.file_system_id() == fs)
                && i.mount_target_id()
                    .is_none_or(|id| m.mount_target_id() == id)
        })
        .cloned()
        .collect();
    Ok(
        op::describe_mount_targets::DescribeMountTargetsOutput::builder()
            .set_mount_targets(Some(found))
            .build(),
    )
}

/// `CreateMountTarget`.
fn create_mount_target(
    w: &mut World,
    i: &op::create_mount_target::CreateMountTargetInput,
) -> Result<op::create_mount_target::CreateMountTargetOutput, Failure> {
    let n = fs_index(w, i.file_system_id())?;
    let fs_id = w.file_systems[n].fs.file_system_id().to_string();
    if w.file_systems[n].fs.life_cycle_state() != &LifeCycleState::Available {
        return Err(Failure::new(
            "IncorrectFileSystemLifeCycleState",
            format!("File system '{fs_id}' is not available"),
        ));
    }
    let subnet = w
        .subnets
        .iter()
        .find(|s| i.subnet_id().is_some() && s.subnet_id() == i.subnet_id())
        .cloned()
        .ok_or_else(|| {
            Failure::new(
                "SubnetNotFound",
                format!(
                    "The subnet ID '{}' does not exist",
                    i.subnet_id().unwrap_or_default()
                ),
            )
        })?;
    let zone = subnet.availability_zone().unwrap_or_default().to_string();
    let clash = w.mount_targets.iter().any(|m| {
        m.mt.file_system_id() == fs_id && m.mt.availability_zone_name() == Some(zone.as_str())
    });
    if clash {
        return Err(Failure::new(
            "MountTargetConflict",
            format!("mount target already exists in this AZ ({zone})"),
        ));
    }
    let id = w.id("fsmt");
    let eni = w.id("eni");
    w.network_interfaces.push(
        NetworkInterface::builder()
            .network_interface_id(&eni)
            .set_subnet_id(subnet.subnet_id().map(str::to_string))
            .set_vpc_id(subnet.vpc_id().map(str::to_string))
            .set_groups(Some(groups(i.security_groups())))
            .build(),
    );
    let mt = MountTargetDescription::builder()
        .owner_id(&w.account)
        .mount_target_id(&id)
        .file_system_id(&fs_id)
        .subnet_id(subnet.subnet_id().unwrap_or_default())
        .life_cycle_state(LifeCycleState::Creating)
        .ip_address("10.40.10.10")
        .network_interface_id(&eni)
        .availability_zone_name(zone)
        .set_vpc_id(subnet.vpc_id().map(str::to_string))
        .build()
        .map_err(|e| Failure::new("BadRequest", e.to_string()))?;
    let ready_at = Instant::now() + w.delays.file_system;
    w.mount_targets.push(MountTarget {
        mt: mt.clone(),
        security_groups: i.security_groups().to_vec(),
        ready_at,
    });
    op::create_mount_target::CreateMountTargetOutput::builder()
        .set_owner_id(mt.owner_id().map(str::to_string))
        .mount_target_id(mt.mount_target_id())
        .file_system_id(mt.file_system_id())
        .subnet_id(mt.subnet_id())
        .life_cycle_state(mt.life_cycle_state().clone())
        .set_ip_address(mt.ip_address().map(str::to_string))
        .set_network_interface_id(mt.network_interface_id().map(str::to_string))
        .set_availability_zone_name(mt.availability_zone_name().map(str::to_string))
        .set_vpc_id(mt.vpc_id().map(str::to_string))
        .build()
        .map_err(|e| Failure::new("BadRequest", e.to_string()))
}

/// `DeleteMountTarget`.
fn delete_mount_target(
    w: &mut World,
    i: &op::delete_mount_target::DeleteMountTargetInput,
) -> Result<op::delete_mount_target::DeleteMountTargetOutput, Failure> {
    let n = mt_index(w, i.mount_target_id())?;
    let gone = w.mount_targets.remove(n);
    let eni = gone.mt.network_interface_id().map(str::to_string);
    w.network_interfaces
        .retain(|e| e.network_interface_id != eni);
    Ok(op::delete_mount_target::DeleteMountTargetOutput::builder().build())
}
