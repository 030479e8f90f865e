//! The instances of a stack's Auto Scaling group: which are in service, which launches
//! failed (for the health verdict), and the instance refreshes that replace them when the
//! launch template changes. Part of the Auto Scaling group's kind
//! ([`crate::auto_scaling_group`]), kept apart for its size.

use aws_sdk_autoscaling::types::{RefreshPreferences, Tag as AsgTag};

use crate::auto_scaling_group::AutoScalingGroups;
use crate::clients::Aws;
use crate::error::{AwsError, AwsResultExt};

/// The group's instances that are InService (one call).
pub async fn in_service_instances(aws: &Aws, group: &str) -> Result<Vec<String>, AwsError> {
    let out = aws
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .aws()?;
    Ok(out
        .auto_scaling_groups()
        .iter()
        .flat_map(|g| g.instances())
        .filter(|i| {
            i.lifecycle_state() == Some(&aws_sdk_autoscaling::types::LifecycleState::InService)
        })
        .filter_map(|i| i.instance_id().map(String::from))
        .collect())
}

/// Launches of the group that failed within the last `window_minutes`, newest first (its
/// scaling activities: one call), for the health verdict.
pub async fn failed_launches(
    aws: &Aws,
    group: &str,
    window_minutes: i64,
) -> Result<Vec<String>, AwsError> {
    let out = aws
        .autoscaling
        .describe_scaling_activities()
        .auto_scaling_group_name(group)
        .max_records(20)
        .send()
        .await
        .aws()?;
    let since = aws_smithy_types::DateTime::from_secs(
        aws_smithy_types::DateTime::from(std::time::SystemTime::now()).secs() - window_minutes * 60,
    );
    Ok(out
        .activities()
        .iter()
        .filter(|a| {
            a.status_code() == Some(&aws_sdk_autoscaling::types::ScalingActivityStatusCode::Failed)
        })
        .filter(|a| a.start_time().is_none_or(|t| t.secs() >= since.secs()))
        .map(|a| {
            a.status_message()
                .or(a.description())
                .unwrap_or("a launch failed")
                .to_string()
        })
        .collect())
}

/// Tag that marks a group while an instance refresh the reconciler started may still run, so
/// that later observations ask for its status (one call per rolling group) and steady-state
/// observations make no per-group call at all.
pub const TAG_REFRESH: &str = "presta-reconciler/refresh";

/// A group's latest instance refresh, as AWS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshInfo {
    pub id: String,
    /// `Pending`, `InProgress`, `Successful`, `Failed`, `Cancelled`, ...
    pub status: String,
    pub percentage_complete: i32,
    /// AWS's words on where it stands (a checkpoint, why it failed).
    pub status_reason: Option<String>,
}

impl AutoScalingGroups {
    /// Marks the group as rolling (see [`TAG_REFRESH`]), or clears the mark with `None`.
    pub async fn mark_refresh(
        &self,
        aws: &Aws,
        group: &str,
        refresh_id: Option<&str>,
    ) -> Result<(), AwsError> {
        self.put_tag(aws, group, TAG_REFRESH, refresh_id).await
    }

    /// Sets one tag of the group (not propagated to its instances), or removes it with `None`.
    pub async fn put_tag(
        &self,
        aws: &Aws,
        group: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), AwsError> {
        let tag = AsgTag::builder()
            .resource_id(group)
            .resource_type("auto-scaling-group")
            .key(key)
            .set_value(value.map(String::from))
            .propagate_at_launch(false)
            .build();
        match value {
            Some(_) => aws
                .autoscaling
                .create_or_update_tags()
                .tags(tag)
                .send()
                .await
                .map(|_| ())
                .aws(),
            None => aws
                .autoscaling
                .delete_tags()
                .tags(tag)
                .send()
                .await
                .map(|_| ())
                .aws(),
        }
    }

    /// Starts a rolling replacement of the group's instances onto the template's default
    /// version. Returns the refresh id, or `None` when one is already in progress. With
    /// `checkpoint_pause` (seconds), the refresh stops at half the group for that long before
    /// replacing the rest (a promoted release: the new half serves beside the old one).
    pub async fn start_refresh(
        &self,
        aws: &Aws,
        group: &str,
        min_healthy_percentage: i32,
        warmup_seconds: i32,
        checkpoint_pause: Option<i32>,
    ) -> Result<Option<String>, AwsError> {
        let mut prefs = RefreshPreferences::builder()
            .min_healthy_percentage(min_healthy_percentage)
            .instance_warmup(warmup_seconds);
        if let Some(pause) = checkpoint_pause {
            prefs = prefs
                .set_checkpoint_percentages(Some(vec![50, 100]))
                .checkpoint_delay(pause);
        }
        let res = aws
            .autoscaling
            .start_instance_refresh()
            .auto_scaling_group_name(group)
            .preferences(prefs.build())
            .send()
            .await
            .aws();
        match res {
            Ok(out) => Ok(out.instance_refresh_id().map(String::from)),
            Err(e) if e.has_code("InstanceRefreshInProgress") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The latest instance refresh of a group: `(id, status, percentage)`.
    pub async fn latest_refresh(
        &self,
        aws: &Aws,
        group: &str,
    ) -> Result<Option<RefreshInfo>, AwsError> {
        let out = aws
            .autoscaling
            .describe_instance_refreshes()
            .auto_scaling_group_name(group)
            .max_records(1)
            .send()
            .await
            .aws()?;
        Ok(out.instance_refreshes().first().map(|r| RefreshInfo {
            id: r.instance_refresh_id().unwrap_or_default().to_string(),
            status: r
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            percentage_complete: r.percentage_complete().unwrap_or(0),
            status_reason: r.status_reason().map(String::from),
        }))
    }
}
