//! The database's master password, as the rotation changes it: set it now, then read whether
//! RDS still has the change pending. Part of the database's kind ([`crate::db_instance`]).

use crate::clients::Aws;
use crate::db_status::DbStatus;
use crate::error::{AwsError, AwsResultExt};

/// Sets a new master password now (`ApplyImmediately`): the rotation's second step.
pub async fn set_master_password(
    aws: &Aws,
    identifier: &str,
    password: &crate::secret::Secret,
) -> Result<(), AwsError> {
    aws.rds
        .modify_db_instance()
        .db_instance_identifier(identifier)
        .master_user_password(password.expose())
        .apply_immediately(true)
        .send()
        .await
        .aws()?;
    Ok(())
}

/// The instance's status and whether a master password change is still pending.
pub async fn password_change_state(
    aws: &Aws,
    identifier: &str,
) -> Result<(DbStatus, bool), AwsError> {
    let out = aws
        .rds
        .describe_db_instances()
        .db_instance_identifier(identifier)
        .send()
        .await
        .aws()?;
    let db = out.db_instances().first().ok_or_else(|| {
        AwsError::unexpected("DescribeDBInstances", format!("{identifier} not found"))
    })?;
    let pending = db
        .pending_modified_values()
        .is_some_and(|p| p.master_user_password().is_some());
    Ok((
        DbStatus::new(db.db_instance_status().unwrap_or_default()),
        pending,
    ))
}
