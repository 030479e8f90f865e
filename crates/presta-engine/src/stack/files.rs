//! The file system's mount targets, one per private subnet of the stack: created where
//! missing, removed from a subnet the stack no longer uses.

use std::collections::BTreeSet;

use presta_aws::mount_target::{self, MountTargetDesired, MountTargets};
use presta_aws::network::Network;
use presta_aws::{Driver, Kind};

use super::run::Run;

pub(super) async fn mount_targets(
    run: &Run<'_>,
    net: &Network,
    fs_id: &str,
    efs_sg_id: &str,
    missing: &[String],
) {
    let desired = MountTargetDesired::for_network(net, fs_id, efs_sg_id);
    if run.blocked_by_missing(missing) {
        for d in &desired {
            run.waiting(Kind::MOUNT_TARGET, MountTargets::name(d), missing);
        }
        return;
    }
    futures::future::join_all(desired.iter().map(|d| {
        run.step(
            &MountTargets,
            d,
            run.snap.get::<MountTargets>(&MountTargets::name(d)),
        )
    }))
    .await;
    let wanted: BTreeSet<String> = desired.iter().map(MountTargets::name).collect();
    for extra in run.snap.values::<MountTargets>().filter(|m| {
        m.file_system_id == fs_id
            && !wanted.contains(&mount_target::key(&m.file_system_id, &m.subnet_id))
    }) {
        let name = mount_target::key(&extra.file_system_id, &extra.subnet_id);
        run.prune(
            &MountTargets,
            &name,
            extra,
            "in a subnet the stack no longer uses",
        )
        .await;
    }
}
