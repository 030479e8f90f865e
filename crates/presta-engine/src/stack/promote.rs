//! The promotion gate of the launch template (see [`crate::promotion`]): a template change
//! that changes the release waits for the followed stack; approving its hash promotes it now.
//! While the release waits, the rest of the template is still kept as declared (an IMDS hop
//! limit or a security group changed by hand is healed at once): the step runs on a desired
//! state that keeps the running release ([`held_back`]).

use presta_aws::Aws;
use presta_aws::auto_scaling_group::AutoScalingGroups;
use presta_spec::Stack;

use crate::report::StackReport;
use crate::snapshot::Snapshot;
use presta_aws::launch_template::{LaunchTemplateDesired, LaunchTemplateLive, LaunchTemplates};
use presta_aws::{Action, Change, Driver, Kind};
use presta_spec::naming::Component;

use super::run::Run;
use crate::promotion::{self, Release};

/// The desired template with the running release kept: the live AMI, instance type and
/// image; the bootstrap as declared when its code is the running one (so the stack's own
/// values follow), else the running script as it is.
pub(super) fn held_back(
    desired: &LaunchTemplateDesired,
    live: &LaunchTemplateLive,
) -> LaunchTemplateDesired {
    let (wanted, running) = (Release::of(&desired.data), Release::of(&live.data));
    let mut held = desired.clone();
    held.data.image_id = live.data.image_id.clone();
    held.data.instance_type = live.data.instance_type.clone();
    held.data.user_data = if wanted.bootstrap == running.bootstrap {
        desired.data.user_data.replacen(
            &format!(
                "readonly IMAGE={}",
                crate::bootstrap::shell_quote(&wanted.image)
            ),
            &format!(
                "readonly IMAGE={}",
                crate::bootstrap::shell_quote(&running.image)
            ),
            1,
        )
    } else {
        live.data.user_data.clone()
    };
    held
}

/// Whether the template's release must wait: `Some(gate)` (recorded for the report by
/// [`record_gate`]) when it must, `None` when the step may apply the declared template.
pub(super) async fn gated(
    run: &Run<'_>,
    desired: &LaunchTemplateDesired,
    live: Option<&LaunchTemplateLive>,
) -> Option<promotion::Gated> {
    let stack = run.stack;
    let (Some(p), Some(live)) = (&stack.spec.promotion, live) else {
        return None; // no promotion, or nothing running yet: a creation is never gated
    };
    let wanted = Release::of(&desired.data);
    if wanted == Release::of(&live.data) {
        return None; // not a rolling change (e.g. the security group): never gated
    }
    let diffs = LaunchTemplates.diff(desired, live);
    let update =
        Change::new(Kind::LAUNCH_TEMPLATE, desired.name.clone(), Action::Update).with_diffs(diffs);
    let plan_hash = crate::budget::plan_hash(std::slice::from_ref(&update));
    if run.guard.approved.iter().any(|h| h == &plan_hash) {
        let by = run.guard.approved_by.as_deref().unwrap_or("someone");
        tracing::warn!(stack = %stack.name(), plan_hash = %plan_hash, after = %p.after, approved_by = %by, "promotion approved: the release rolls without waiting for the followed stack");
        run.note_promoted(format!(
            "promoted by {by}'s approval of {plan_hash} without waiting for `{}`",
            p.after
        ));
        return None;
    }
    let same_region = p.after_region.as_deref().unwrap_or(&stack.spec.region) == stack.spec.region;
    let observed = same_region
        .then(|| run.snap.get::<AutoScalingGroups>(&p.followed_group()))
        .flatten();
    let evidence = match promotion::followed_evidence(
        run.aws,
        stack,
        observed,
        &run.settings.client,
    )
    .await
    {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(stack = %stack.name(), after = %p.after, error = %e, "reading what the followed stack runs failed: the release waits");
            return Some(promotion::Gated {
                after: p.after.clone(),
                reason: format!("what `{}` runs could not be read: {e}", p.after),
                soak_seconds: p.soak_duration().as_secs(),
                healthy_for_seconds: None,
                release: wanted,
                plan_hash,
            });
        }
    };
    let Some(gate) = promotion::decide(
        stack,
        &wanted,
        evidence.as_ref(),
        promotion::now_unix(),
        plan_hash,
    ) else {
        run.note_promoted(format!(
            "promoted: `{}` ran this release healthy for {}",
            p.after,
            promotion::human(p.soak_duration())
        ));
        return None;
    };
    tracing::info!(stack = %stack.name(), after = %p.after, reason = %gate.reason, plan_hash = %gate.plan_hash, "rolling change gated");
    Some(gate)
}

/// After the held-back step: the template's change shows the release's fields as gated
/// (blocked, with the reason), beside whatever the step corrected.
pub(super) fn record_gate(
    run: &Run<'_>,
    desired: &LaunchTemplateDesired,
    live: &LaunchTemplateLive,
    gate: promotion::Gated,
) {
    let note = format!(
        "gated: {} (`apply --approve {}` promotes it now)",
        gate.reason, gate.plan_hash
    );
    // The release's fields: those the held-back template keeps as they run.
    let held = LaunchTemplateLive {
        data: held_back(desired, live).data,
        ..live.clone()
    };
    let kept: Vec<String> = LaunchTemplates
        .diff(desired, &held)
        .into_iter()
        .map(|d| d.field)
        .collect();
    let release_diffs: Vec<_> = LaunchTemplates
        .diff(desired, live)
        .into_iter()
        .filter(|d| kept.contains(&d.field))
        .map(|mut d| {
            d.blocked = Some(note.clone());
            d
        })
        .collect();
    {
        let mut changes = run.changes.lock().unwrap_or_else(|e| e.into_inner());
        match changes
            .iter_mut()
            .find(|c| c.kind == Kind::LAUNCH_TEMPLATE && c.name == desired.name)
        {
            Some(c) if c.action == Action::None => {
                c.action = Action::Blocked;
                c.diffs = release_diffs;
                c.reason = Some(note);
            }
            Some(c) => {
                c.diffs.extend(release_diffs);
                c.reason = Some(match c.reason.take() {
                    Some(r) => format!("{r}; the release waits: {note}"),
                    None => format!("the rest is kept as declared; the release waits: {note}"),
                });
            }
            None => changes.push(
                Change::new(Kind::LAUNCH_TEMPLATE, desired.name.clone(), Action::Blocked)
                    .with_diffs(release_diffs)
                    .with_reason(note),
            ),
        }
    }
    *run.gated.lock().unwrap_or_else(|e| e.into_inner()) = Some(gate);
}

/// After an apply judged the stack's health: the release its instances run and since when it
/// is healthy, on its group, for the stacks that follow it (see [`crate::promotion`]). A
/// failure is logged: the next run records it.
pub(super) async fn record_evidence(
    aws: &Aws,
    stack: &Stack,
    snap: &Snapshot,
    report: &StackReport,
    health: &crate::health::Health,
) {
    let group = snap.get::<AutoScalingGroups>(&stack.resource_name(Component::AutoScalingGroup));
    let template = snap.get::<LaunchTemplates>(&stack.resource_name(Component::LaunchTemplate));
    let rolling = report.changes.iter().any(|c| {
        matches!(c.kind, Kind::LAUNCH_TEMPLATE | Kind::AUTO_SCALING_GROUP) && c.is_pending()
    }) || report.instance_refresh.as_ref().is_some_and(|r| {
        matches!(
            r.status.as_str(),
            "Pending" | "InProgress" | "Cancelling" | "RollbackInProgress"
        )
    });
    if let Err(e) = crate::promotion::record(aws, stack, group, template, health, rolling).await {
        tracing::warn!(stack = %stack.name(), error = %e, "recording the release this stack runs failed; the next run records it");
    }
}
