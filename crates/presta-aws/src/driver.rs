//! The contract every resource kind implements, and the one generic step that applies it.
//!
//! Like Crossplane's external client and ACK's resource manager: a driver *observes* (never
//! mutates), *diffs* (a pure function of desired and live), *creates* (idempotently: names,
//! tokens, tags at creation), *updates* (only the fields that differ) and *deletes* (absent
//! is success). Drivers know AWS; the engine knows the order of kinds and what depends on
//! what. Policy (plan or apply, `observe` mode, blocked changes) is decided here, once.

use std::collections::BTreeMap;
use std::future::Future;

use crate::clients::Aws;
use crate::diff::{Action, Change, FieldDiff, Kind};
use crate::error::{AwsError, ErrorClass};
use crate::registry::{Iam, Observed, OrphanSearch, Owned, Targets, Teardown};
use crate::tags::Tags;
use presta_spec::naming::{MANAGED_BY_VALUE, TAG_MANAGED_BY, TAG_STACK};

/// What an observation covers: the stacks of one region, and for kinds that hang off another
/// resource (listeners, mount targets), the live ids of their parents.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub stacks: Vec<String>,
    /// Deterministic names of the desired resources of this kind (for kinds found by name).
    pub names: Vec<String>,
    /// Parent ids or ARNs (load balancers for listeners, file systems for mount targets).
    pub parents: Vec<String>,
    /// Names read in the same calls for their plain value (the stacks' AMI references, read
    /// with their passwords' `GetParameters`); only the parameter kind uses it.
    pub plain: Vec<String>,
    /// Of `names`, those whose labelled version is read too (the database passwords: a value
    /// overwritten by hand is drift); only the parameter kind uses it.
    pub tracked: Vec<String>,
    /// The stacks with names in DNS (`spec.dns`): their zones, host names and certificates;
    /// only the certificate and DNS record kinds use it.
    pub fronts: Vec<presta_spec::naming::StackNames>,
}

impl Scope {
    /// A scope of deterministic names.
    pub fn named(names: Vec<String>) -> Scope {
        Scope {
            names,
            ..Scope::default()
        }
    }

    /// A scope of parent ids (listeners of load balancers, mount targets of file systems).
    pub fn under(parents: Vec<String>) -> Scope {
        Scope {
            parents,
            ..Scope::default()
        }
    }
}

/// Whether a resource can be used yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Still settling; the status AWS reports.
    Pending(String),
    /// In a state that needs a person.
    Failed(String),
}

/// One AWS resource kind: everything the engine, `destroy`, the orphan search and the IAM
/// policy need to know about it is declared here, once, in the kind's module; the kind is
/// then listed in [`crate::registry::KINDS`].
pub trait Driver: Send + Sync + 'static {
    const KIND: Kind;
    /// What one resource should look like (from the spec and its dependencies' outputs).
    type Desired: Send + Sync;
    /// The live resource, normalised (no SDK types).
    type Live: Clone + Send + Sync + 'static;

    /// The AWS actions this kind calls, for the generated IAM policy.
    const IAM: Iam;

    /// Where `destroy` deletes this kind and what it does with its data (per resource:
    /// [`Driver::teardown`]).
    const TEARDOWN: Teardown;

    /// Whether (and when) the orphan search lists this kind.
    const ORPHANS: OrphanSearch = OrphanSearch::Skip;

    /// The kind whose live resources this one hangs off (listeners: the load balancers):
    /// observed after it, with [`Driver::scope`] reading its live map.
    const PARENT: Option<Kind> = None;

    /// What to observe for the stacks in `targets`: their deterministic names, or, for kinds
    /// with a [`Driver::PARENT`], the parents' live ids found in `observed`.
    fn scope(targets: &Targets, observed: &Observed) -> Scope;

    /// The teardown of one live resource: the kind's, unless one kind plays several parts
    /// (the database's security group is kept with a retained database, the others not).
    fn teardown(_live: &Self::Live) -> Teardown {
        Self::TEARDOWN
    }

    /// The owned resources of this kind in the region: those carrying the ownership tags
    /// (`names` is `None`) or named `names`; for [`Driver::ORPHANS`] other than `Skip`.
    fn list_owned(
        &self,
        _aws: &Aws,
        _names: Option<&[String]>,
    ) -> impl Future<Output = Result<Vec<Owned>, AwsError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// Before `destroy` deletes it: what must be lifted first (a load balancer's deletion
    /// protection), said in the returned note.
    fn before_delete(
        &self,
        _aws: &Aws,
        _live: &Self::Live,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send {
        async { Ok(None) }
    }

    /// When `destroy` keeps it while deleting what it refers to: drop those references (a
    /// kept security group revokes its rules from the groups about to go).
    fn detach(
        &self,
        _aws: &Aws,
        _live: &Self::Live,
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        async { Ok(()) }
    }

    /// The deterministic name of the desired resource: the key of [`Driver::observe`]'s map.
    fn name(desired: &Self::Desired) -> String;

    /// The live id or ARN.
    fn id(live: &Self::Live) -> String;

    /// Whether the live resource can be used by its dependents yet (RDS `creating`, EFS
    /// `creating`, an ALB `provisioning` are pending). Most kinds are ready once they exist.
    fn readiness(_live: &Self::Live) -> Readiness {
        Readiness::Ready
    }

    /// How to observe this one desired resource (after a create lost a race): its name, and
    /// for kinds observed through a parent, that parent.
    fn lookup(desired: &Self::Desired) -> Scope {
        Scope {
            names: vec![Self::name(desired)],
            ..Scope::default()
        }
    }

    /// The live resource's tags, for kinds whose observation returns them (ownership checks).
    fn tags(_live: &Self::Live) -> Option<&Tags> {
        None
    }

    /// For kinds observed through a parent (listeners, mount targets): the parent ids to put
    /// in [`Scope::parents`] to observe this resource again.
    fn parents(_live: &Self::Live) -> Vec<String> {
        Vec::new()
    }

    /// Every live resource of this kind owned by one of the stacks in scope, keyed by name:
    /// one list call per kind (paginated), not one per resource. Never mutates.
    fn observe(
        &self,
        aws: &Aws,
        scope: &Scope,
    ) -> impl Future<Output = Result<BTreeMap<String, Self::Live>, AwsError>> + Send;

    /// Differences on the fields the spec manages. Pure.
    fn diff(&self, desired: &Self::Desired, live: &Self::Live) -> Vec<FieldDiff>;

    /// Creates the resource; safe to call again after a crash (finds or reuses).
    fn create(
        &self,
        aws: &Aws,
        desired: &Self::Desired,
    ) -> impl Future<Output = Result<Self::Live, AwsError>> + Send;

    /// Corrects the applicable `diffs`; returns the live state afterwards.
    fn update(
        &self,
        aws: &Aws,
        desired: &Self::Desired,
        live: &Self::Live,
        diffs: &[FieldDiff],
    ) -> impl Future<Output = Result<Self::Live, AwsError>> + Send;

    /// Deletes the live resource; a resource already gone is success. Called only through
    /// [`remove`], after the ownership check. Data-bearing kinds delete safely by default
    /// (the database keeps a final snapshot).
    fn delete(
        &self,
        aws: &Aws,
        live: &Self::Live,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// The tags that decide whether the live resource may be deleted: the observed ones by
    /// default; kinds observed without tags read them, kinds that hang off a parent
    /// (listeners, mount targets) answer with their parent's.
    fn ownership_tags(
        &self,
        _aws: &Aws,
        live: &Self::Live,
    ) -> impl Future<Output = Result<Tags, AwsError>> + Send {
        let tags = Self::tags(live).cloned().unwrap_or_default();
        async move { Ok(tags) }
    }
}

/// `Ok(())` for a delete whose target was already gone.
pub fn absent_is_success(res: Result<(), AwsError>) -> Result<(), AwsError> {
    match res {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// Who may be touched: the stack that owns the run, and whether its spec adopts untagged
/// resources that carry its deterministic names.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub stack: &'a str,
    pub adopt_existing: bool,
}

impl Owner<'_> {
    /// Why a live resource must be left alone, if it must.
    pub fn refusal(&self, tags: &Tags) -> Option<String> {
        // A resource with some of the stack's ownership tags is the stack's, even if someone
        // removed one of them (that is drift the diff restores).
        match tags.get(TAG_STACK) {
            Some(other) if other != self.stack => Some(format!("it belongs to stack `{other}` (tag {TAG_STACK}); the reconciler never touches another stack's resources")),
            Some(_) => None,
            None if tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE) => None,
            None if self.adopt_existing => None,
            None => Some(
                "it exists with this stack's name but without its ownership tags (made by hand or another tool): set `spec.policy.adoptExisting: true` to let the reconciler manage it"
                    .to_string(),
            ),
        }
    }
}

impl Owner<'_> {
    /// Why a live resource must not be deleted, if it must not: deleting needs both ownership
    /// tags naming this stack, whatever `adoptExisting` says.
    pub fn deletion_refusal(&self, tags: &Tags) -> Option<String> {
        if crate::tags::owned_by(tags, self.stack) {
            return None;
        }
        Some(match tags.get(TAG_STACK) {
            Some(other) if other != self.stack => format!(
                "it belongs to stack `{other}` (tag {TAG_STACK}); the reconciler never deletes another stack's resources"
            ),
            _ => format!(
                "it does not carry the ownership tags {TAG_MANAGED_BY}={MANAGED_BY_VALUE} and {TAG_STACK}={}: the reconciler deletes only what it owns",
                self.stack
            ),
        })
    }
}

/// The generic delete, for every kind: someone else's resource → blocked with the reason;
/// otherwise deleted in [`Mode::Apply`] (absent is success), only reported in a plan.
pub async fn remove<D: Driver>(
    driver: &D,
    aws: &Aws,
    name: &str,
    live: &D::Live,
    mode: Mode,
    owner: Owner<'_>,
    why: &str,
) -> Result<Change, AwsError> {
    let tags = match driver.ownership_tags(aws, live).await {
        Ok(tags) => Some(tags),
        // Gone already (its tags, or the parent that carries them): absent is success.
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    let mut change = Change::new(D::KIND, name.to_string(), Action::Delete)
        .with_id(Some(D::id(live)))
        .with_reason(Some(why.to_string()));
    let Some(tags) = tags else {
        change.reason = Some(format!("{why}: already gone"));
        return Ok(change);
    };
    if let Some(refusal) = owner.deletion_refusal(&tags) {
        change.action = Action::Blocked;
        change.reason = Some(format!("not deleted: {refusal}"));
        return Ok(change);
    }
    if mode == Mode::Apply {
        driver.delete(aws, live).await?;
    }
    Ok(change)
}

/// Plan only, or apply (`plan`, `apply` in reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Compute the changes; call no mutating API.
    Plan,
    /// Make the changes.
    Apply,
}

/// The result of syncing one resource: its change and the live state afterwards (`None` when
/// it does not exist, e.g. in a plan before creation).
#[derive(Debug, Clone)]
pub struct Synced<L> {
    pub change: Change,
    pub live: Option<L>,
}

/// The generic step, for every kind: someone else's resource → left alone; absent → create;
/// differs → update what may be updated, report what may not; in [`Mode::Plan`] nothing is
/// called but observation.
pub async fn sync<D: Driver>(
    driver: &D,
    aws: &Aws,
    desired: &D::Desired,
    live: Option<&D::Live>,
    mode: Mode,
    owner: Owner<'_>,
) -> Result<Synced<D::Live>, AwsError> {
    let name = D::name(desired);
    if let Some(reason) = live.and_then(D::tags).and_then(|t| owner.refusal(t)) {
        return Ok(Synced {
            change: Change::new(D::KIND, name, Action::Blocked)
                .with_id(live.map(D::id))
                .with_reason(Some(reason)),
            live: None,
        });
    }
    let adopted;
    let mut note = None;
    let live = match (live, mode) {
        (Some(l), _) => l,
        (None, Mode::Plan) => {
            return Ok(Synced {
                change: Change::new(D::KIND, name, Action::Create),
                live: None,
            });
        }
        (None, Mode::Apply) => match driver.create(aws, desired).await {
            Ok(created) => {
                return Ok(Synced {
                    change: Change::new(D::KIND, name, Action::Create)
                        .with_id(Some(D::id(&created))),
                    live: Some(created),
                });
            }
            // Another writer created it since our observation: adopt theirs, then correct it.
            Err(e) if e.class == ErrorClass::Conflict => match driver
                .observe(aws, &D::lookup(desired))
                .await?
                .remove(&name)
            {
                Some(existing) => {
                    note = Some(format!(
                        "created meanwhile by another writer ({}); adopted",
                        e.code.as_deref().unwrap_or("conflict")
                    ));
                    adopted = existing;
                    &adopted
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        },
    };
    let diffs = driver.diff(desired, live);
    let id = Some(D::id(live));
    if diffs.is_empty() {
        return Ok(Synced {
            change: Change::new(D::KIND, name, Action::None)
                .with_id(id)
                .with_diffs(diffs),
            live: Some(live.clone()),
        });
    }
    let applicable: Vec<FieldDiff> = diffs
        .iter()
        .filter(|d| d.blocked.is_none())
        .cloned()
        .collect();
    if applicable.is_empty() {
        let reason = diffs
            .iter()
            .filter_map(|d| d.blocked.clone())
            .collect::<Vec<_>>()
            .join("; ");
        return Ok(Synced {
            change: Change::new(D::KIND, name, Action::Blocked)
                .with_id(id)
                .with_diffs(diffs)
                .with_reason(Some(reason)),
            live: Some(live.clone()),
        });
    }
    let after = match mode {
        Mode::Apply => driver.update(aws, desired, live, &applicable).await?,
        Mode::Plan => live.clone(),
    };
    let blocked: Vec<String> = diffs.iter().filter_map(|d| d.blocked.clone()).collect();
    let not_corrected =
        (!blocked.is_empty()).then(|| format!("not corrected: {}", blocked.join("; ")));
    let reason = [note, not_corrected]
        .into_iter()
        .flatten()
        .reduce(|a, b| format!("{a}; {b}"));
    Ok(Synced {
        change: Change::new(D::KIND, name, Action::Update)
            .with_id(id)
            .with_diffs(diffs)
            .with_reason(reason),
        live: Some(after),
    })
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod table_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ownership_decides_what_may_be_touched() {
        let owner = Owner {
            stack: "shop",
            adopt_existing: false,
        };
        assert_eq!(
            owner.refusal(&tags(&[
                ("managed-by", "presta-reconciler"),
                ("presta-reconciler/stack", "shop")
            ])),
            None
        );
        assert_eq!(
            owner.refusal(&tags(&[("managed-by", "presta-reconciler")])),
            None,
            "a removed stack tag is drift, not a stranger"
        );
        let stranger = owner.refusal(&tags(&[("Name", "shop-db")])).unwrap();
        assert!(stranger.contains("adoptExisting"), "{stranger}");
        let other = owner
            .refusal(&tags(&[("presta-reconciler/stack", "other")]))
            .unwrap();
        assert!(other.contains("belongs to stack `other`"), "{other}");
        let adopting = Owner {
            stack: "shop",
            adopt_existing: true,
        };
        assert_eq!(adopting.refusal(&tags(&[("Name", "shop-db")])), None);
        assert!(
            adopting
                .refusal(&tags(&[("presta-reconciler/stack", "other")]))
                .is_some(),
            "adoption never takes another stack's resource"
        );
    }
}
