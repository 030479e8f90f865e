//! The promotion gate of the launch template (see [`crate::promotion`]): a template change
//! that changes the release waits for the followed stack; approving its hash promotes it now.

use presta_aws::auto_scaling_group::AutoScalingGroups;
use presta_aws::launch_template::{LaunchTemplateDesired, LaunchTemplateLive, LaunchTemplates};
use presta_aws::{Action, Change, Driver, Kind};
use presta_spec::naming::Component;

use super::run::Run;
use crate::promotion::{self, Release};

/// Whether the template step must wait: records the gated change and returns `true`.
pub(super) async fn gated(
    run: &Run<'_>,
    desired: &LaunchTemplateDesired,
    live: Option<&LaunchTemplateLive>,
) -> bool {
    let stack = run.stack;
    let (Some(p), Some(live)) = (&stack.spec.promotion, live) else {
        return false; // no promotion, or nothing running yet: a creation is never gated
    };
    let wanted = Release::of(&desired.data);
    if wanted == Release::of(&live.data) {
        return false; // not a rolling change (e.g. the security group): never gated
    }
    let diffs = LaunchTemplates.diff(desired, live);
    let update = Change::new(Kind::LAUNCH_TEMPLATE, desired.name.clone(), Action::Update)
        .with_diffs(diffs.clone());
    let plan_hash = crate::budget::plan_hash(std::slice::from_ref(&update));
    if run.guard.approved.iter().any(|h| h == &plan_hash) {
        let by = run.guard.approved_by.as_deref().unwrap_or("someone");
        tracing::warn!(stack = %stack.name(), plan_hash = %plan_hash, after = %p.after, approved_by = %by, "promotion approved: the release rolls without waiting for the followed stack");
        run.note_promoted(format!(
            "promoted by {by}'s approval of {plan_hash} without waiting for `{}`",
            p.after
        ));
        return false;
    }
    let same_region = p.after_region.as_deref().unwrap_or(&stack.spec.region) == stack.spec.region;
    let observed = same_region
        .then(|| {
            run.snap
                .get::<AutoScalingGroups>(&Component::AutoScalingGroup.name(&p.after))
        })
        .flatten();
    let evidence =
        match promotion::followed_evidence(run.aws, stack, observed, &run.settings.client).await {
            Ok(e) => e,
            Err(e) => {
                run.record(
                    Change::new(Kind::LAUNCH_TEMPLATE, desired.name.clone(), Action::Failed)
                        .with_diffs(diffs)
                        .with_reason(format!(
                            "reading what `{}` runs (its Auto Scaling group's tags): {e}",
                            p.after
                        ))
                        .with_error_class(e.class),
                );
                return true;
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
        return false;
    };
    tracing::info!(stack = %stack.name(), after = %p.after, reason = %gate.reason, plan_hash = %gate.plan_hash, "rolling change gated");
    run.record(
        Change::new(Kind::LAUNCH_TEMPLATE, desired.name.clone(), Action::Blocked)
            .with_diffs(diffs)
            .with_reason(format!(
                "gated: {} (`apply --approve {}` promotes it now)",
                gate.reason, gate.plan_hash
            )),
    );
    *run.gated.lock().unwrap_or_else(|e| e.into_inner()) = Some(gate);
    true
}
