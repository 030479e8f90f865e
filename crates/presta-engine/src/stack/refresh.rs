//! The instance refresh: a hook of the launch template and the Auto Scaling group. When this
//! run changed the template of an existing group, a refresh rolls the group onto the new
//! version (never onto a file system the run created empty); the group's rolling state is
//! part of the stack's status. A refresh this run starts is marked with a tag on the group;
//! only marked groups are asked for their refresh (one call per rolling group), and the mark
//! goes once the refresh has ended.

use presta_aws::auto_scaling_group::{AutoScalingGroupLive, AutoScalingGroups, TAG_REFRESH};
use presta_aws::launch_template::fields::USER_DATA;
use presta_aws::{Action, Change, Kind, Mode};

use super::run::Run;
use crate::report::{DomainChange, RefreshStatus};

/// What the template change of this run means for the group.
pub(super) struct TemplateChange {
    /// The template got a new default version.
    pub changed: bool,
    /// ... that points at a file system this run created (empty).
    pub moves_to_new_fs: bool,
}

impl TemplateChange {
    pub(super) fn of(run: &Run<'_>) -> Self {
        let changes = run.changes.lock().unwrap_or_else(|e| e.into_inner());
        let lt_update = changes
            .iter()
            .find(|c| c.kind == Kind::LAUNCH_TEMPLATE && c.action == Action::Update);
        let fs_created = changes
            .iter()
            .any(|c| c.kind == Kind::FILE_SYSTEM && c.action == Action::Create);
        let efs_id = USER_DATA.key("EFS_ID");
        let efs_changes =
            lt_update.is_some_and(|c| c.diffs.iter().any(|d| d.field == efs_id.as_str()));
        TemplateChange {
            changed: lt_update.is_some(),
            moves_to_new_fs: fs_created && efs_changes,
        }
    }
}

/// Starts the refresh the template change calls for, and reports the group's rolling state.
pub(super) async fn roll(
    run: &Run<'_>,
    change: TemplateChange,
    group_name: &str,
    asg: Option<&AutoScalingGroupLive>,
    asg_before: Option<&AutoScalingGroupLive>,
) -> Option<RefreshStatus> {
    let compute = &run.stack.spec.compute;
    let (lt_changed, moves_to_new_fs) = (change.changed, change.moves_to_new_fs);
    let asg_d_name = group_name;
    let mut started = None;
    // A promoted release rolls in two halves, with a pause between them.
    let checkpoint_pause = run
        .stack
        .spec
        .promotion
        .as_ref()
        .map(|p| p.checkpoint_pause_duration().as_secs().min(3600) as i32);
    if lt_changed && asg_before.is_some() {
        let refresh = &compute.instance_refresh;
        let note = match run.mode {
            // Never move a running shop onto a file system this run created empty.
            _ if moves_to_new_fs => "the launch template now points at a new, empty file system: no instance refresh is started; roll the group yourself once the shop's files are in place (`aws autoscaling start-instance-refresh`)".to_string(),
            Mode::Plan => "the launch template changes: an instance refresh will roll the group".to_string(),
            Mode::Apply => match AutoScalingGroups
                .start_refresh(run.aws, asg_d_name, refresh.min_healthy_percentage as i32, refresh.instance_warmup_seconds as i32, checkpoint_pause)
                .await
            {
                Ok(Some(id)) => {
                    let checkpoint = checkpoint_pause.map(|s| format!(", stops at 50% for {} before the rest; new instances that fail the health checks stop it", crate::promotion::human(std::time::Duration::from_secs(s as u64)))).unwrap_or_default();
                    let note = format!("instance refresh {id} started (min healthy {}%{checkpoint})", refresh.min_healthy_percentage);
                    started = Some(id);
                    note
                }
                Ok(None) => "an instance refresh is already in progress; the new template applies to instances it launches".to_string(),
                Err(e) => format!("could not start an instance refresh: {e}"),
            },
        };
        let mut changes = run.changes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = changes
            .iter_mut()
            .find(|c| c.kind == Kind::AUTO_SCALING_GROUP)
        {
            c.reason = Some(match &c.reason {
                Some(r) => format!("{r}; {note}"),
                None => note,
            });
        }
    }

    // The group's rolling state is part of the stack's status. A refresh this run started is
    // marked with a tag on the group; only marked groups are asked for their refresh (one call
    // per rolling group), and the mark goes once the refresh has ended.
    let group = asg.or(asg_before);
    let mut refresh = None;
    if let (Some(group), Some(id)) = (group, &started) {
        if let Err(e) = AutoScalingGroups
            .mark_refresh(run.aws, &group.name, Some(id))
            .await
        {
            tracing::warn!(group = %group.name, error = %e, "marking the instance refresh failed");
        }
        refresh = Some(RefreshStatus {
            id: id.clone(),
            status: "Pending".into(),
            percentage_complete: 0,
            status_reason: None,
            started_by_this_run: true,
        });
    } else if let Some(group) = group.filter(|g| g.tags.contains_key(TAG_REFRESH)) {
        refresh = marked_refresh(run, &group.name).await;
    }

    refresh
}

/// The refresh of a group marked as rolling; the mark goes once it has ended (in an apply).
async fn marked_refresh(run: &Run<'_>, group: &str) -> Option<RefreshStatus> {
    match AutoScalingGroups.latest_refresh(run.aws, group).await {
        Ok(Some(info)) => {
            let ended = matches!(
                info.status.as_str(),
                "Successful" | "Failed" | "Cancelled" | "RollbackSuccessful" | "RollbackFailed"
            );
            if ended
                && run.mode == Mode::Apply
                && let Err(e) = AutoScalingGroups.mark_refresh(run.aws, group, None).await
            {
                tracing::warn!(group = %group, error = %e, "clearing the refresh mark failed");
            }
            Some(RefreshStatus {
                id: info.id,
                status: info.status,
                percentage_complete: info.percentage_complete,
                status_reason: info.status_reason,
                started_by_this_run: false,
            })
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(group = %group, error = %e, "reading the instance refresh failed");
            None
        }
    }
}

/// The shop's domain change, if the launch template's bootstrap values say so.
pub(super) fn domain_change(changes: &[Change]) -> Option<DomainChange> {
    let diff = changes
        .iter()
        .filter(|c| c.kind == Kind::LAUNCH_TEMPLATE && c.action == Action::Update)
        .flat_map(|c| c.diffs.iter())
        .find(|d| d.field == USER_DATA.key("PS_DOMAIN").as_str())?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    Some(DomainChange {
        from: text(&diff.live),
        to: text(&diff.desired),
        how: "instances started from the new template version store the new domain in the \
              database at start (`presta-ctl set-domain`: ps_shop_url, PS_SHOP_DOMAIN[_SSL], \
              .htaccess, caches); the instance refresh starts them"
            .into(),
    })
}
