//! EFS mount targets: one per private subnet, with the stack's EFS security group. Keyed
//! `<file system id>@<subnet id>`. A deleted mount target is re-created; one in a subnet the
//! stack no longer uses is deleted (it holds no data).
//!
//! Observation: per file system, `DescribeMountTargets` and then each target's security
//! groups (EFS has no batch form), concurrently.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::try_join_all;

use crate::clients::Aws;
use crate::diff::{Diffs, FieldDiff, Kind};
use crate::driver::{Driver, Readiness, Scope, absent_is_success};
use crate::error::{AwsError, AwsResultExt};
use crate::network::Network;
use crate::registry::{Deletion, Iam, Observed, Targets, Teardown};
use crate::tags::Tags;
use fields::*;

/// The fields this kind manages, as its diff reports them and its update reads them.
pub mod fields {
    use crate::diff::Field;

    pub const SECURITY_GROUPS: Field = Field("securityGroups");
}

#[derive(Debug, Clone)]
pub struct MountTargetDesired {
    pub file_system_id: String,
    pub subnet_id: String,
    pub security_groups: BTreeSet<String>,
}

impl MountTargetDesired {
    /// One mount target per private subnet, with the file system's security group.
    pub fn for_network(net: &Network, file_system: &str, security_group: &str) -> Vec<Self> {
        net.private
            .iter()
            .map(|s| MountTargetDesired {
                file_system_id: file_system.to_string(),
                subnet_id: s.id.clone(),
                security_groups: [security_group.to_string()].into(),
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MountTargetLive {
    pub id: String,
    pub file_system_id: String,
    pub subnet_id: String,
    pub state: crate::status::EfsState,
    pub ip_address: Option<String>,
    pub security_groups: BTreeSet<String>,
}

/// The key of a mount target.
pub fn key(file_system_id: &str, subnet_id: &str) -> String {
    format!("{file_system_id}@{subnet_id}")
}

pub struct MountTargets;

impl Kind {
    pub const MOUNT_TARGET: Kind = Kind::new("mount_target");
}

impl Driver for MountTargets {
    const KIND: Kind = Kind::MOUNT_TARGET;
    const IAM: Iam = Iam {
        read: &[
            "elasticfilesystem:DescribeMountTargets",
            "elasticfilesystem:DescribeMountTargetSecurityGroups",
            "elasticfilesystem:DescribeFileSystems",
            "ec2:DescribeNetworkInterfaces",
        ],
        create: &[],
        change: &[
            "elasticfilesystem:CreateMountTarget",
            "elasticfilesystem:ModifyMountTargetSecurityGroups",
            "elasticfilesystem:DeleteMountTarget",
        ],
        statements: Iam::no_statements,
    };
    /// Their network interfaces hold the file system's security group: gone before it.
    const TEARDOWN: Teardown = Teardown::new(40, Deletion::Awaited);
    const PARENT: Option<Kind> = Some(Kind::FILE_SYSTEM);

    /// The mount targets of the stacks' file systems.
    fn scope(_: &Targets, observed: &Observed) -> Scope {
        Scope::under(
            observed
                .values::<crate::file_system::FileSystems>()
                .map(|f| f.id.clone())
                .collect(),
        )
    }

    type Desired = MountTargetDesired;
    type Live = MountTargetLive;

    fn name(desired: &MountTargetDesired) -> String {
        key(&desired.file_system_id, &desired.subnet_id)
    }

    fn lookup(desired: &Self::Desired) -> Scope {
        Scope {
            parents: vec![desired.file_system_id.clone()],
            ..Scope::default()
        }
    }

    fn parents(live: &Self::Live) -> Vec<String> {
        vec![live.file_system_id.clone()]
    }

    /// Deletes a mount target (in a subnet the stack no longer uses, or at destroy): it holds
    /// no data. Absent is success.
    async fn delete(&self, aws: &Aws, live: &MountTargetLive) -> Result<(), AwsError> {
        absent_is_success(
            aws.efs
                .delete_mount_target()
                .mount_target_id(&live.id)
                .send()
                .await
                .map(|_| ())
                .aws(),
        )
    }

    /// A mount target is the stack's when its file system is.
    async fn ownership_tags(&self, aws: &Aws, live: &MountTargetLive) -> Result<Tags, AwsError> {
        let resp = aws
            .efs
            .describe_file_systems()
            .file_system_id(&live.file_system_id)
            .send()
            .await
            .aws()?;
        Ok(resp
            .file_systems()
            .first()
            .map(|fs| {
                fs.tags()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn id(live: &MountTargetLive) -> String {
        live.id.clone()
    }

    fn readiness(live: &MountTargetLive) -> Readiness {
        live.state.readiness("the mount target")
    }

    /// `scope.parents`: file system ids.
    async fn observe(
        &self,
        aws: &Aws,
        scope: &Scope,
    ) -> Result<BTreeMap<String, MountTargetLive>, AwsError> {
        let per_fs = try_join_all(scope.parents.iter().map(|fs| async move {
            let out = aws
                .efs
                .describe_mount_targets()
                .file_system_id(fs)
                .send()
                .await
                .aws()?;
            Ok::<_, AwsError>(out.mount_targets().to_vec())
        }))
        .await?;
        let targets: Vec<_> = per_fs.into_iter().flatten().collect();
        // A mount target's security groups are those of its network interface: one
        // DescribeNetworkInterfaces for every mount target of the region, instead of one
        // DescribeMountTargetSecurityGroups per mount target.
        let enis: Vec<String> = targets
            .iter()
            .filter_map(|m| m.network_interface_id().map(String::from))
            .collect();
        let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        if !enis.is_empty() {
            let interfaces = aws
                .ec2
                .describe_network_interfaces()
                .set_network_interface_ids(Some(enis))
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .aws()?;
            for eni in interfaces {
                groups.insert(
                    eni.network_interface_id().unwrap_or_default().to_string(),
                    eni.groups()
                        .iter()
                        .filter_map(|g| g.group_id().map(String::from))
                        .collect(),
                );
            }
        }
        let mut live = BTreeMap::new();
        for mt in &targets {
            let security_groups = match mt.network_interface_id().and_then(|e| groups.get(e)) {
                Some(g) => g.clone(),
                // No interface yet (creating): ask the mount target itself.
                None => aws
                    .efs
                    .describe_mount_target_security_groups()
                    .mount_target_id(mt.mount_target_id())
                    .send()
                    .await
                    .aws()?
                    .security_groups()
                    .iter()
                    .cloned()
                    .collect(),
            };
            let m = MountTargetLive {
                id: mt.mount_target_id().to_string(),
                file_system_id: mt.file_system_id().to_string(),
                subnet_id: mt.subnet_id().to_string(),
                state: mt.life_cycle_state().as_str().into(),
                ip_address: mt.ip_address().map(String::from),
                security_groups,
            };
            live.insert(key(&m.file_system_id, &m.subnet_id), m);
        }
        Ok(live)
    }

    fn diff(&self, desired: &MountTargetDesired, live: &MountTargetLive) -> Vec<FieldDiff> {
        let mut d = Diffs::new();
        d.set(
            SECURITY_GROUPS,
            &desired.security_groups,
            &live.security_groups,
        );
        d.finish()
    }

    async fn create(
        &self,
        aws: &Aws,
        desired: &MountTargetDesired,
    ) -> Result<MountTargetLive, AwsError> {
        let res = aws
            .efs
            .create_mount_target()
            .file_system_id(&desired.file_system_id)
            .subnet_id(&desired.subnet_id)
            .set_security_groups(Some(desired.security_groups.iter().cloned().collect()))
            .send()
            .await
            .aws();
        match res {
            Ok(mt) => Ok(MountTargetLive {
                id: mt.mount_target_id().to_string(),
                file_system_id: desired.file_system_id.clone(),
                subnet_id: desired.subnet_id.clone(),
                state: mt.life_cycle_state().as_str().into(),
                ip_address: mt.ip_address().map(String::from),
                security_groups: desired.security_groups.clone(),
            }),
            Err(e) if e.has_code("MountTargetConflict") => {
                let scope = Scope {
                    parents: vec![desired.file_system_id.clone()],
                    ..Scope::default()
                };
                self.observe(aws, &scope)
                    .await?
                    .remove(&Self::name(desired))
                    .ok_or(e)
            }
            Err(e) => Err(e),
        }
    }

    async fn update(
        &self,
        aws: &Aws,
        desired: &MountTargetDesired,
        live: &MountTargetLive,
        _diffs: &[FieldDiff],
    ) -> Result<MountTargetLive, AwsError> {
        aws.efs
            .modify_mount_target_security_groups()
            .mount_target_id(&live.id)
            .set_security_groups(Some(desired.security_groups.iter().cloned().collect()))
            .send()
            .await
            .aws()?;
        Ok(MountTargetLive {
            security_groups: desired.security_groups.clone(),
            ..live.clone()
        })
    }
}
