//! The file system's lifecycle and backup policies, read and written (EFS has no batch form:
//! two calls per file system each way). Part of the file-system kind (`file_system.rs`).

use aws_sdk_efs::types::{
    BackupPolicy, LifecyclePolicy, Status, TransitionToIaRules,
    TransitionToPrimaryStorageClassRules,
};

use crate::clients::Aws;
use crate::error::{AwsError, AwsResultExt};
use crate::file_system::{FileSystemDesired, FileSystemLive};

/// A file system's lifecycle and backup policy (EFS has no batch form: two calls each), with
/// its description: the live file system.
pub(crate) async fn details(
    aws: &Aws,
    fs: &aws_sdk_efs::types::FileSystemDescription,
) -> Result<FileSystemLive, AwsError> {
    let id = fs.file_system_id();
    let lifecycle = aws
        .efs
        .describe_lifecycle_configuration()
        .file_system_id(id)
        .send()
        .await
        .aws()?;
    let mut to_ia = None;
    let mut to_primary = false;
    for p in lifecycle.lifecycle_policies() {
        if let Some(r) = p.transition_to_ia() {
            to_ia = Some(r.as_str().to_string());
        }
        if p.transition_to_primary_storage_class().is_some() {
            to_primary = true;
        }
    }
    let backups = match aws
        .efs
        .describe_backup_policy()
        .file_system_id(id)
        .send()
        .await
        .aws()
    {
        Ok(out) => out
            .backup_policy()
            .is_some_and(|b| matches!(b.status(), Status::Enabled | Status::Enabling)),
        Err(e) if e.is_not_found() => false,
        Err(e) => return Err(e),
    };
    Ok(FileSystemLive {
        id: id.to_string(),
        arn: fs.file_system_arn().unwrap_or_default().to_string(),
        creation_token: fs.creation_token().to_string(),
        state: fs.life_cycle_state().as_str().into(),
        encrypted: fs.encrypted().unwrap_or(false),
        throughput_mode: fs
            .throughput_mode()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        provisioned_mibps: fs.provisioned_throughput_in_mibps(),
        transition_to_ia: to_ia,
        transition_to_primary_on_access: to_primary,
        automatic_backups: backups,
        tags: fs
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
    })
}

/// The lifecycle policies `desired` declares, in place of the file system's.
pub(crate) async fn put_lifecycle(
    aws: &Aws,
    id: &str,
    desired: &FileSystemDesired,
) -> Result<(), AwsError> {
    let mut policies = Vec::new();
    if let Some(rule) = &desired.transition_to_ia {
        policies.push(
            LifecyclePolicy::builder()
                .transition_to_ia(TransitionToIaRules::from(rule.as_str()))
                .build(),
        );
    }
    if desired.transition_to_primary_on_access {
        policies.push(
            LifecyclePolicy::builder()
                .transition_to_primary_storage_class(
                    TransitionToPrimaryStorageClassRules::After1Access,
                )
                .build(),
        );
    }
    aws.efs
        .put_lifecycle_configuration()
        .file_system_id(id)
        .set_lifecycle_policies(Some(policies))
        .send()
        .await
        .aws()?;
    Ok(())
}

/// AWS Backup's automatic backups on or off.
pub(crate) async fn put_backups(aws: &Aws, id: &str, enabled: bool) -> Result<(), AwsError> {
    let status = if enabled {
        Status::Enabled
    } else {
        Status::Disabled
    };
    let policy = BackupPolicy::builder()
        .status(status)
        .build()
        .map_err(|e| AwsError::unexpected("PutBackupPolicy", e.to_string()))?;
    aws.efs
        .put_backup_policy()
        .file_system_id(id)
        .backup_policy(policy)
        .send()
        .await
        .aws()?;
    Ok(())
}
