//! The EFS file system holding the shop's files (`/var/www/html`). Never deleted or replaced:
//! turning encryption off would need a new file system, so it is reported as blocked.
//!
//! Identity: the creation token `presta-reconciler-<stack>-efs` makes creation idempotent.
//! Observation: one paginated `DescribeFileSystems` (tags included), then per stack's file
//! system its lifecycle configuration and backup policy, concurrently.

use std::collections::BTreeMap;

use aws_sdk_efs::types::{PerformanceMode, ThroughputMode};

use crate::clients::Aws;
use crate::diff::{Delta, Diffs, FieldDiff, Kind};
use crate::driver::{Driver, Readiness, Scope, absent_is_success};
use crate::error::{AwsError, AwsResultExt};
use crate::registry::{Deletion, Iam, Observed, OrphanSearch, Owned, Targets, Teardown};
use crate::tags::{self, Tags};
use fields::*;
use presta_spec::Stack;
use presta_spec::naming::{Component, MANAGED_BY_VALUE, TAG_COMPONENT, TAG_MANAGED_BY, TAG_STACK};

/// The fields this kind manages, as its diff reports them and its update reads them.
pub mod fields {
    use crate::diff::Field;

    /// The lifecycle policies (`lifecycle.transitionToIa`, `...ToPrimaryOnAccess`).
    pub const LIFECYCLE: Field = Field("lifecycle");
    pub const ENCRYPTED: Field = Field("encrypted");
    pub const THROUGHPUT_MODE: Field = Field("throughputMode");
    pub const PROVISIONED_THROUGHPUT_MIBPS: Field = Field("provisionedThroughputMibps");
    pub const LIFECYCLE_TRANSITION_TO_IA: Field = Field("lifecycle.transitionToIa");
    pub const LIFECYCLE_TRANSITION_TO_PRIMARY_ON_ACCESS: Field =
        Field("lifecycle.transitionToPrimaryOnAccess");
    pub const AUTOMATIC_BACKUPS: Field = Field("automaticBackups");
}

#[derive(Debug, Clone)]
pub struct FileSystemDesired {
    pub creation_token: String,
    pub encrypted: bool,
    /// `elastic`, `bursting` or `provisioned`.
    pub throughput_mode: String,
    pub provisioned_mibps: Option<f64>,
    /// `AFTER_30_DAYS`...; `None` keeps everything in Standard.
    pub transition_to_ia: Option<String>,
    pub transition_to_primary_on_access: bool,
    pub automatic_backups: bool,
    pub tags: Tags,
    /// No instance of the stack has run yet (its Auto Scaling group does not exist): a file
    /// system created now is marked [`TAG_UNUSED`] until the group exists, so that an
    /// interrupted first creation is known to have left an empty file system.
    pub unused: bool,
}

impl FileSystemDesired {
    /// The shop's file system, from `spec.fileSystem`.
    pub fn for_stack(stack: &Stack) -> Self {
        let fs = &stack.spec.file_system;
        FileSystemDesired {
            creation_token: stack.resource_name(Component::FileSystem),
            encrypted: fs.encrypted,
            throughput_mode: fs.throughput_mode.as_aws().to_string(),
            provisioned_mibps: fs.provisioned_throughput_mibps,
            transition_to_ia: fs.transition_to_ia_days.map(transition_rule),
            transition_to_primary_on_access: fs.transition_to_primary_on_access,
            automatic_backups: fs.automatic_backups,
            tags: stack
                .names()
                .tags(Component::FileSystem, &stack.metadata.labels),
            unused: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileSystemLive {
    pub id: String,
    pub arn: String,
    pub creation_token: String,
    /// `creating`, `available`, `deleting`...
    pub state: crate::status::EfsState,
    pub encrypted: bool,
    pub throughput_mode: String,
    pub provisioned_mibps: Option<f64>,
    pub transition_to_ia: Option<String>,
    pub transition_to_primary_on_access: bool,
    pub automatic_backups: bool,
    pub tags: Tags,
}

/// The EFS value for a number of days (`30` → `AFTER_30_DAYS`, `1` → `AFTER_1_DAY`).
pub fn transition_rule(days: u32) -> String {
    if days == 1 {
        "AFTER_1_DAY".to_string()
    } else {
        format!("AFTER_{days}_DAYS")
    }
}

/// Items per `DescribeFileSystems` page: AWS's own (and largest) page, where moto's default is 10.
pub const EFS_PAGE: i32 = 100;

pub struct FileSystems;

/// The tag `destroy` puts on a file system it keeps (value: the UTC time); removed when a
/// later `apply` uses the file system again.
pub const TAG_RETAINED_AT: &str = "presta-reconciler/retained-at";

/// The tag on a file system created before any instance of its stack ran (value: the UTC
/// time of creation): it holds no shop yet. Removed once the stack's Auto Scaling group
/// exists. The data rule lets a missing database be created empty next to such a file
/// system (an interrupted first creation), never next to one without the mark.
pub const TAG_UNUSED: &str = "presta-reconciler/unused-since";

impl FileSystems {
    /// Removes the [`TAG_UNUSED`] mark: the stack's instances now use the file system.
    pub async fn clear_unused(&self, aws: &Aws, id: &str) -> Result<(), AwsError> {
        aws.efs
            .untag_resource()
            .resource_id(id)
            .tag_keys(TAG_UNUSED)
            .send()
            .await
            .aws()?;
        Ok(())
    }

    /// Marks a kept file system as retained (destroy).
    pub async fn mark_retained(&self, aws: &Aws, id: &str, at: &str) -> Result<(), AwsError> {
        let mark = Tags::from([(TAG_RETAINED_AT.to_string(), at.to_string())]);
        aws.efs
            .tag_resource()
            .resource_id(id)
            .set_tags(Some(tags::efs(&mark)))
            .send()
            .await
            .aws()?;
        Ok(())
    }
}

impl Kind {
    pub const FILE_SYSTEM: Kind = Kind::new("file_system");
}

impl Driver for FileSystems {
    const KIND: Kind = Kind::FILE_SYSTEM;
    const IAM: Iam = Iam {
        read: &[
            "elasticfilesystem:DescribeFileSystems",
            "elasticfilesystem:DescribeLifecycleConfiguration",
            "elasticfilesystem:DescribeBackupPolicy",
            "elasticfilesystem:DescribeMountTargets",
        ],
        create: &["elasticfilesystem:CreateFileSystem"],
        change: &[
            "elasticfilesystem:UpdateFileSystem",
            "elasticfilesystem:PutLifecycleConfiguration",
            "elasticfilesystem:PutBackupPolicy",
            "elasticfilesystem:TagResource",
            "elasticfilesystem:UntagResource",
            "elasticfilesystem:DeleteMountTarget",
            "elasticfilesystem:DeleteFileSystem",
        ],
        statements: || {
            vec![crate::iam::tag_while_creating(
                "TagFileSystemsOnlyWhileCreatingThem",
                "elasticfilesystem",
                "elasticfilesystem:TagResource",
                &["CreateFileSystem"],
            )]
        },
    };
    const TEARDOWN: Teardown = Teardown::new(41, Deletion::Files);
    const ORPHANS: OrphanSearch = OrphanSearch::Primary;

    /// By creation token.
    fn scope(targets: &Targets, _: &Observed) -> Scope {
        Scope::named(targets.names(Component::FileSystem))
    }

    /// Every file system of the region (EFS filters by nothing but a token), or by token.
    async fn list_owned(
        &self,
        aws: &Aws,
        names: Option<&[String]>,
    ) -> Result<Vec<Owned>, AwsError> {
        let all = match names {
            None => aws
                .efs
                .describe_file_systems()
                .max_items(EFS_PAGE)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .aws()?,
            Some(tokens) => {
                let mut all = Vec::new();
                for token in tokens {
                    all.extend(
                        aws.efs
                            .describe_file_systems()
                            .creation_token(token)
                            .send()
                            .await
                            .aws()?
                            .file_systems()
                            .iter()
                            .cloned(),
                    );
                }
                all
            }
        };
        Ok(all
            .iter()
            .map(|f| Owned {
                retained: f.tags().iter().any(|t| t.key() == TAG_RETAINED_AT),
                ..Owned::from_tags(
                    f.creation_token(),
                    f.file_system_id(),
                    f.tags().iter().map(|t| (t.key(), t.value())),
                )
            })
            .collect())
    }

    type Desired = FileSystemDesired;
    type Live = FileSystemLive;

    fn name(desired: &FileSystemDesired) -> String {
        desired.creation_token.clone()
    }

    fn id(live: &FileSystemLive) -> String {
        live.id.clone()
    }

    /// Removes the mount targets, then the file system (AWS refuses while mount targets
    /// exist: `FileSystemInUse` until they are gone, a transient error to retry). The data
    /// goes with it: only `destroy` with `deletion.fileSystem: delete` and `--delete-data`
    /// calls this.
    async fn delete(&self, aws: &Aws, live: &FileSystemLive) -> Result<(), AwsError> {
        let mts = aws
            .efs
            .describe_mount_targets()
            .file_system_id(&live.id)
            .send()
            .await
            .aws();
        let mts = match mts {
            Err(e) if e.is_not_found() => return Ok(()),
            other => other?,
        };
        for mt in mts.mount_targets() {
            absent_is_success(
                aws.efs
                    .delete_mount_target()
                    .mount_target_id(mt.mount_target_id())
                    .send()
                    .await
                    .map(|_| ())
                    .aws(),
            )?;
        }
        absent_is_success(
            aws.efs
                .delete_file_system()
                .file_system_id(&live.id)
                .send()
                .await
                .map(|_| ())
                .aws(),
        )
    }

    fn tags(live: &Self::Live) -> Option<&Tags> {
        Some(&live.tags)
    }

    fn readiness(live: &FileSystemLive) -> Readiness {
        live.state.readiness("the file system")
    }

    /// `scope.names`: creation tokens.
    async fn observe(
        &self,
        aws: &Aws,
        scope: &Scope,
    ) -> Result<BTreeMap<String, FileSystemLive>, AwsError> {
        if scope.names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let all = aws
            .efs
            .describe_file_systems()
            .max_items(EFS_PAGE)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .aws()?;
        // By creation token; and, for a token with no file system, one that carries the
        // stack's ownership tags (restored from a backup, which gets a new token): adopted.
        let mut ours: Vec<(String, &aws_sdk_efs::types::FileSystemDescription)> = all
            .iter()
            .filter(|fs| scope.names.iter().any(|n| n == fs.creation_token()))
            .map(|fs| (fs.creation_token().to_string(), fs))
            .collect();
        let mut tagged: Vec<(String, &aws_sdk_efs::types::FileSystemDescription)> = all
            .iter()
            .filter(|fs| fs.life_cycle_state().as_str() == "available")
            .filter_map(|fs| {
                let tag = |k: &str| {
                    fs.tags()
                        .iter()
                        .find(|t| t.key() == k)
                        .map(|t| t.value().to_string())
                };
                let stack = tag(TAG_STACK)?;
                (tag(TAG_MANAGED_BY).as_deref() == Some(MANAGED_BY_VALUE)
                    && tag(TAG_COMPONENT).as_deref() == Some(Component::FileSystem.tag()))
                .then(|| (Component::FileSystem.name(&stack), fs))
            })
            .filter(|(key, _)| scope.names.contains(key) && !ours.iter().any(|(k, _)| k == key))
            .collect();
        // The newest first: the latest restore wins.
        tagged.sort_by_key(|(_, fs)| std::cmp::Reverse(fs.creation_time().secs()));
        for (key, fs) in tagged {
            if !ours.iter().any(|(k, _)| *k == key) {
                ours.push((key, fs));
            }
        }
        let details = crate::calls::bounded(ours.iter().map(|(key, fs)| async move {
            Ok::<_, AwsError>((key.clone(), crate::efs_policies::details(aws, fs).await?))
        }))
        .await?;
        Ok(details.into_iter().collect())
    }

    fn diff(&self, desired: &FileSystemDesired, live: &FileSystemLive) -> Vec<FieldDiff> {
        let mut d = Diffs::new();
        d.blocked(ENCRYPTED, &desired.encrypted, &live.encrypted, "EFS encryption is fixed at creation; the reconciler never replaces a file system holding the shop's files")
            .field(THROUGHPUT_MODE, &desired.throughput_mode, &live.throughput_mode);
        if desired.throughput_mode == "provisioned" {
            d.field(
                PROVISIONED_THROUGHPUT_MIBPS,
                &desired.provisioned_mibps,
                &live.provisioned_mibps,
            );
        }
        d.field(
            LIFECYCLE_TRANSITION_TO_IA,
            &desired.transition_to_ia,
            &live.transition_to_ia,
        )
        .field(
            LIFECYCLE_TRANSITION_TO_PRIMARY_ON_ACCESS,
            &desired.transition_to_primary_on_access,
            &live.transition_to_primary_on_access,
        )
        .field(
            AUTOMATIC_BACKUPS,
            &desired.automatic_backups,
            &live.automatic_backups,
        )
        .tags(&desired.tags, &live.tags)
        // Kept by `destroy` and now in use again: the mark goes.
        .field(
            crate::diff::TAGS.key(TAG_RETAINED_AT),
            &None::<&String>,
            &live.tags.get(TAG_RETAINED_AT),
        )
        // Once the stack's instances exist, the file system is in use.
        .field(
            crate::diff::TAGS.key(TAG_UNUSED),
            &live.tags.get(TAG_UNUSED).filter(|_| desired.unused),
            &live.tags.get(TAG_UNUSED),
        );
        d.finish()
    }

    async fn create(
        &self,
        aws: &Aws,
        desired: &FileSystemDesired,
    ) -> Result<FileSystemLive, AwsError> {
        let res = aws
            .efs
            .create_file_system()
            .creation_token(&desired.creation_token)
            .encrypted(desired.encrypted)
            .performance_mode(PerformanceMode::GeneralPurpose)
            .throughput_mode(ThroughputMode::from(desired.throughput_mode.as_str()))
            .set_provisioned_throughput_in_mibps(desired.provisioned_mibps)
            .backup(desired.automatic_backups)
            .set_tags(Some(tags::efs(&{
                let mut t = desired.tags.clone();
                if desired.unused {
                    t.insert(TAG_UNUSED.to_string(), crate::db_snapshot::now_rfc3339());
                }
                t
            })))
            .send()
            .await
            .aws();
        match res {
            Ok(_) => {}
            Err(e) if e.has_code("FileSystemAlreadyExists") => {}
            Err(e) => return Err(e),
        }
        let scope = Scope {
            names: vec![desired.creation_token.clone()],
            ..Scope::default()
        };
        let live = self
            .observe(aws, &scope)
            .await?
            .remove(&desired.creation_token)
            .ok_or_else(|| {
                AwsError::unexpected(
                    "DescribeFileSystems",
                    format!(
                        "{} is not visible after CreateFileSystem",
                        desired.creation_token
                    ),
                )
            })?;
        let diffs: Vec<FieldDiff> = self
            .diff(desired, &live)
            .into_iter()
            .filter(|d| d.blocked.is_none())
            .collect();
        if diffs.is_empty() {
            Ok(live)
        } else {
            self.update(aws, desired, &live, &diffs).await
        }
    }

    async fn update(
        &self,
        aws: &Aws,
        desired: &FileSystemDesired,
        live: &FileSystemLive,
        diffs: &[FieldDiff],
    ) -> Result<FileSystemLive, AwsError> {
        let delta = Delta(diffs);
        if delta.touches_any(&[THROUGHPUT_MODE, PROVISIONED_THROUGHPUT_MIBPS]) {
            aws.efs
                .update_file_system()
                .file_system_id(&live.id)
                .throughput_mode(ThroughputMode::from(desired.throughput_mode.as_str()))
                .set_provisioned_throughput_in_mibps(
                    desired
                        .provisioned_mibps
                        .filter(|_| desired.throughput_mode == "provisioned"),
                )
                .send()
                .await
                .aws()?;
        }
        if delta.touches(LIFECYCLE) {
            crate::efs_policies::put_lifecycle(aws, &live.id, desired).await?;
        }
        if delta.touches(AUTOMATIC_BACKUPS) {
            crate::efs_policies::put_backups(aws, &live.id, desired.automatic_backups).await?;
        }
        let (add, kept) = retag(aws, desired, live).await?;
        Ok(FileSystemLive {
            throughput_mode: desired.throughput_mode.clone(),
            provisioned_mibps: desired.provisioned_mibps.or(live.provisioned_mibps),
            transition_to_ia: desired.transition_to_ia.clone(),
            transition_to_primary_on_access: desired.transition_to_primary_on_access,
            automatic_backups: desired.automatic_backups,
            tags: kept.into_iter().chain(add).collect(),
            ..live.clone()
        })
    }
}

/// Adds the missing declared tags and lifts the marks that no longer hold (kept by `destroy`,
/// unused): the tags added, and the live tags kept.
async fn retag(
    aws: &Aws,
    desired: &FileSystemDesired,
    live: &FileSystemLive,
) -> Result<(Tags, Tags), AwsError> {
    let add = tags::missing(&desired.tags, &live.tags);
    if !add.is_empty() {
        aws.efs
            .tag_resource()
            .resource_id(&live.id)
            .set_tags(Some(tags::efs(&add)))
            .send()
            .await
            .aws()?;
    }
    let mut kept = live.tags.clone();
    let mut marks = Vec::new();
    if kept.remove(TAG_RETAINED_AT).is_some() {
        marks.push(TAG_RETAINED_AT.to_string());
    }
    if !desired.unused && kept.remove(TAG_UNUSED).is_some() {
        marks.push(TAG_UNUSED.to_string());
    }
    if !marks.is_empty() {
        aws.efs
            .untag_resource()
            .resource_id(&live.id)
            .set_tag_keys(Some(marks))
            .send()
            .await
            .aws()?;
    }
    Ok((add, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_rules_are_spelled_like_efs() {
        assert_eq!(transition_rule(1), "AFTER_1_DAY");
        assert_eq!(transition_rule(30), "AFTER_30_DAYS");
    }

    #[test]
    fn removed_lifecycle_is_drift_and_unencrypted_is_blocked() {
        let desired = FileSystemDesired {
            creation_token: "t".into(),
            encrypted: true,
            throughput_mode: "elastic".into(),
            provisioned_mibps: None,
            transition_to_ia: Some("AFTER_30_DAYS".into()),
            transition_to_primary_on_access: true,
            automatic_backups: true,
            tags: Tags::new(),
            unused: false,
        };
        let live = FileSystemLive {
            id: "fs-1".into(),
            arn: String::new(),
            creation_token: "t".into(),
            state: "available".into(),
            encrypted: false,
            throughput_mode: "elastic".into(),
            provisioned_mibps: None,
            transition_to_ia: None,
            transition_to_primary_on_access: false,
            automatic_backups: true,
            tags: Tags::new(),
        };
        let diffs = FileSystems.diff(&desired, &live);
        let got: Vec<(&str, bool)> = diffs
            .iter()
            .map(|d| (d.field.as_str(), d.blocked.is_some()))
            .collect();
        assert_eq!(
            got,
            [
                ("encrypted", true),
                ("lifecycle.transitionToIa", false),
                ("lifecycle.transitionToPrimaryOnAccess", false)
            ]
        );
    }
}
