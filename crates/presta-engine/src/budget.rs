//! The change budget (blast radius). Once a stack exists, an apply first plans against the same
//! observation; a plan that changes more than `spec.policy.maxChangesPerRun` resources, or
//! that would create a data-bearing resource for a stack whose data lives elsewhere (a moved
//! region, a renamed stack), is **held**: nothing is changed until a person approves that exact
//! plan, named by its hash. A wrong VPC selector, a renamed stack or a fat-fingered region
//! then costs a held plan and an alert, not a second shop.
//!
//! A stack "exists" once its Auto Scaling group (the last thing a creation makes) does: a
//! stack being created, or re-created after `destroy`, is not limited, so an interrupted
//! creation simply resumes.

use presta_aws::db_subnet_group::DbSubnetGroups;
use presta_aws::security_group::SecurityGroups;
use presta_aws::target_group::TargetGroups;
use std::collections::BTreeMap;

use presta_aws::{Action, Change, Kind};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// What the caller knows about one stack beyond the observation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Guard {
    /// Hashes of held plans a person approved: a plan with one of these hashes is applied
    /// whatever its size.
    pub approved: Vec<String>,
    /// Why the stack counts as existing although none of it is seen where the spec points
    /// (the daemon saw it in another region, or under another name, before this
    /// configuration).
    pub presumed_existing: Option<String>,
    /// Who approved (the CLI user, or the API caller), for the log and the report.
    pub approved_by: Option<String>,
}

impl Guard {
    fn approves(&self, held: &Held) -> bool {
        self.approved.iter().any(|h| h == &held.plan_hash)
    }

    /// The plan must be held: over budget and not approved.
    pub fn holds(&self, held: Option<Held>) -> Option<Held> {
        held.filter(|h| !self.approves(h))
    }
}

/// Per stack name.
pub type Guards = BTreeMap<String, Guard>;

/// A plan held for approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    /// Names the exact plan: `apply --approve <hash>` or `POST /stacks/{stack}/approve`.
    pub plan_hash: String,
    /// Resources the plan would change.
    pub changes: usize,
    /// The stack's budget.
    pub max_changes_per_run: u32,
    /// Why it is held, in words.
    pub reason: String,
}

/// The part of a change that an approval covers: what, and from what to what.
#[derive(Serialize)]
struct Planned<'a> {
    kind: Kind,
    name: &'a str,
    action: Action,
    diffs: Vec<(&'a str, &'a serde_json::Value, &'a serde_json::Value)>,
}

/// The hash of the changes a plan would make (resources in sync do not count, nor do the
/// notes): 16 hex digits of a SHA-256, stable across runs while the plan is the same.
pub fn plan_hash(changes: &[Change]) -> String {
    let mut planned: Vec<Planned<'_>> = changes
        .iter()
        .filter(|c| c.is_pending())
        .map(|c| Planned {
            kind: c.kind,
            name: &c.name,
            action: c.action,
            diffs: c
                .applicable()
                .map(|d| (d.field.as_str(), &d.desired, &d.live))
                .collect(),
        })
        .collect();
    planned.sort_by(|a, b| (a.kind, a.name).cmp(&(b.kind, b.name)));
    let bytes = serde_json::to_vec(&planned).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn data_bearing(kind: Kind) -> bool {
    presta_aws::registry::holds_data(kind)
}

/// The VPC a stack's resources live in, when it is not the one its spec now selects (a
/// wrong `spec.network` selector, or a move): `(live, selected)`. Read from the resources
/// bound to a VPC for life: the target group, the security groups, the DB subnet group.
pub fn moved_vpc(
    stack: &presta_spec::Stack,
    snap: &crate::snapshot::Snapshot,
    selected: &str,
) -> Option<(String, String)> {
    use presta_spec::naming::Component;
    let names = stack.names();
    let mut live: Vec<&str> = Vec::new();
    if let Some(tg) = snap.get::<TargetGroups>(&names.name(Component::TargetGroup)) {
        live.push(&tg.vpc_id);
    }
    for c in [
        Component::AlbSecurityGroup,
        Component::AppSecurityGroup,
        Component::DbSecurityGroup,
        Component::EfsSecurityGroup,
    ] {
        if let Some(g) = snap.get::<SecurityGroups>(&names.name(c)) {
            live.push(&g.vpc_id);
        }
    }
    if let Some(g) = snap.get::<DbSubnetGroups>(&names.name(Component::DbSubnetGroup)) {
        live.push(&g.vpc_id);
    }
    live.into_iter()
        .find(|v| !v.is_empty() && *v != selected)
        .map(|v| (v.to_string(), selected.to_string()))
}

/// Whether a plan for a stack that exists must be held, and why. `None`: within budget.
/// `moved_vpc`: the stack's resources are in another VPC than the one selected (see
/// [`moved_vpc`]); such a plan is held whatever its size. `adopted`: when the stack was taken
/// over from another tool (`import terraform --adopt`, the mark on its Auto Scaling group):
/// its first changes are held whatever their number, until a person approves them.
pub fn check(
    changes: &[Change],
    max_changes_per_run: u32,
    presumed_existing: Option<&str>,
    moved_vpc: Option<&(String, String)>,
    adopted: Option<&str>,
) -> Option<Held> {
    let pending: Vec<&Change> = changes.iter().filter(|c| c.is_pending()).collect();
    let count = pending.len();
    let mut reasons = Vec::new();
    if let Some(when) = adopted
        && count > 0
    {
        reasons.push(format!(
            "the stack was taken over from another tool ({when}, `import terraform --adopt`): its first changes ({count}: {}) wait for a person's approval",
            pending
                .iter()
                .map(|c| format!("{} {} {}", c.action.symbol(), c.kind, c.name))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some((live, selected)) = moved_vpc
        && count > 0
    {
        reasons.push(format!(
            "the stack's resources are in {live} and spec.network now selects {selected}: a stack cannot move between VPCs in place (its load balancer, target group, security groups and database stay in {live}); approving this plan would move the instances and the file system's mount targets away from them and take the shop down. Point spec.network back at {live} unless this is what you want"
        ));
    }
    if count > max_changes_per_run as usize {
        let mut by_action: BTreeMap<String, usize> = BTreeMap::new();
        for c in &pending {
            *by_action
                .entry(format!("{:?}", c.action).to_lowercase())
                .or_default() += 1;
        }
        let detail = by_action
            .iter()
            .map(|(a, n)| format!("{n} {a}"))
            .collect::<Vec<_>>()
            .join(", ");
        reasons.push(format!(
            "the plan changes {count} resources ({detail}), more than spec.policy.maxChangesPerRun = {max_changes_per_run}"
        ));
    }
    if let Some(why) = presumed_existing {
        let new_data: Vec<String> = pending
            .iter()
            .filter(|c| {
                data_bearing(c.kind) && matches!(c.action, Action::Create | Action::Restore)
            })
            .map(|c| format!("{} {}", c.kind, c.name))
            .collect();
        if !new_data.is_empty() {
            reasons.push(format!(
                "it would create {} while the stack's data exists elsewhere ({why})",
                new_data.join(" and ")
            ));
        }
    }
    if reasons.is_empty() {
        return None;
    }
    Some(Held {
        plan_hash: plan_hash(changes),
        changes: count,
        max_changes_per_run,
        reason: reasons.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use presta_aws::diff::FieldDiff;

    fn change(kind: Kind, name: &str, action: Action) -> Change {
        Change::new(kind, name, action)
    }

    fn update(name: &str, to: &str) -> Change {
        let mut c = change(Kind::SECURITY_GROUP, name, Action::Update);
        c.diffs.push(FieldDiff {
            field: "ingress".into(),
            desired: serde_json::json!(to),
            live: serde_json::json!("0.0.0.0/0:22"),
            blocked: None,
        });
        c
    }

    #[test]
    fn a_stack_taken_over_holds_even_one_change_until_approved() {
        let plan = vec![update("app", "x")];
        let when = Some("2026-12-07T13:24:04Z");
        let held = check(&plan, 1000, None, None, when).expect("held whatever the budget");
        assert!(
            held.reason.contains("taken over from another tool"),
            "{}",
            held.reason
        );
        assert!(
            held.reason.contains("security_group app"),
            "{}",
            held.reason
        );
        assert_eq!(held.changes, 1);
        // Nothing to change: nothing to hold; without the mark: within budget.
        let none = vec![change(Kind::TARGET_GROUP, "tg", Action::None)];
        assert_eq!(check(&none, 1000, None, None, when), None);
        assert_eq!(check(&plan, 1000, None, None, None), None);
        let approved = Guard {
            approved: vec![held.plan_hash.clone()],
            ..Guard::default()
        };
        assert_eq!(approved.holds(Some(held)), None);
    }

    #[test]
    fn within_budget_is_not_held() {
        let plan = vec![
            update("a", "x"),
            change(Kind::TARGET_GROUP, "tg", Action::None),
        ];
        assert_eq!(check(&plan, 1, None, None, None), None);
    }

    #[test]
    fn a_move_to_another_vpc_is_held_whatever_the_budget() {
        let moved = ("vpc-live".to_string(), "vpc-new".to_string());
        let plan = vec![update("a", "x")];
        let held = check(&plan, 1000, None, Some(&moved), None).expect("held");
        assert!(held.reason.contains("in vpc-live"), "{}", held.reason);
        assert!(held.reason.contains("selects vpc-new"), "{}", held.reason);
        assert!(
            held.reason.contains("cannot move between VPCs"),
            "{}",
            held.reason
        );
        // Nothing to change: nothing to hold.
        let none = vec![change(Kind::TARGET_GROUP, "tg", Action::None)];
        assert_eq!(check(&none, 1000, None, Some(&moved), None), None);
    }

    #[test]
    fn over_budget_is_held_with_counts() {
        let plan = vec![
            change(Kind::SECURITY_GROUP, "a", Action::Create),
            change(Kind::SECURITY_GROUP, "b", Action::Create),
            change(Kind::TARGET_GROUP, "tg", Action::Replace),
            change(Kind::LISTENER, "l", Action::None),
        ];
        let held = check(&plan, 2, None, None, None).expect("held");
        assert_eq!(held.changes, 3);
        assert!(
            held.reason.contains("2 create, 1 replace"),
            "{}",
            held.reason
        );
        assert!(held.reason.contains("maxChangesPerRun = 2"));
        assert_eq!(held.plan_hash.len(), 16);
    }

    #[test]
    fn a_presumed_existing_stack_may_not_create_data() {
        let plan = vec![change(Kind::DB_INSTANCE, "shop-db", Action::Create)];
        let held = check(&plan, 5, Some("seen in eu-west-3 before"), None, None).expect("held");
        assert!(held.reason.contains("db_instance shop-db") || held.reason.contains("shop-db"));
        assert!(held.reason.contains("seen in eu-west-3 before"));
        // The same plan on a stack nothing is known of is not held.
        assert_eq!(check(&plan, 5, None, None, None), None);
    }

    #[test]
    fn the_hash_names_the_plan_not_its_order_or_notes() {
        let a = vec![update("a", "x"), update("b", "y")];
        let mut b = vec![update("b", "y"), update("a", "x")];
        b[0].reason = Some("a note".into());
        b.push(change(Kind::LISTENER, "l", Action::None));
        assert_eq!(plan_hash(&a), plan_hash(&b));
        let c = vec![update("a", "x"), update("b", "z")];
        assert_ne!(plan_hash(&a), plan_hash(&c));
    }
}
