//! The kind registry: every resource kind, once.
//!
//! A kind declares everything about itself in its module, on its [`Driver`] impl: its label
//! ([`Driver::KIND`]), what it is observed by ([`Driver::scope`], [`Driver::PARENT`]), its
//! place in `destroy` and what happens to its data ([`Driver::TEARDOWN`]), how the orphan
//! search lists it ([`Driver::ORPHANS`], [`Driver::list_owned`]) and the AWS actions it calls
//! ([`Driver::IAM`]). [`KINDS`] lists the kinds, one line each; the observation of a region,
//! `destroy`, the orphan search, the change budget, the metrics and the IAM policy iterate it.
//! Only the stage order (which output feeds which desired state) names kinds one by one, in
//! `presta-engine`'s `stack` module.
//!
//! Adding a kind: its module (desired, live, driver with the declarations above) and one line
//! in [`KINDS`]; see docs/architecture.md.

use std::any::Any;
use std::collections::BTreeMap;

use futures::future::BoxFuture;
use presta_spec::naming::{Component, MANAGED_BY_VALUE, StackNames, TAG_MANAGED_BY, TAG_STACK};

use crate::auto_scaling_group::AutoScalingGroups;
use crate::certificate::Certificates;
use crate::clients::Aws;
use crate::db_instance::DbInstances;
use crate::db_subnet_group::DbSubnetGroups;
use crate::diff::{Change, Kind};
use crate::dns_record::Records;
use crate::driver::{Driver, Mode, Owner, Scope, remove};
use crate::error::AwsError;
use crate::file_system::FileSystems;
use crate::launch_template::LaunchTemplates;
use crate::listener::Listeners;
use crate::listener_rule::ListenerRules;
use crate::load_balancer::LoadBalancers;
use crate::mount_target::MountTargets;
use crate::parameter::Parameters;
use crate::security_group::SecurityGroups;
use crate::tags::Tags;
use crate::target_group::TargetGroups;

/// Every kind, in the order of the stages (plans, metrics and the IAM policy list them so).
pub static KINDS: &[&dyn KindEntry] = &[
    &Parameters,
    &SecurityGroups,
    &TargetGroups,
    &LoadBalancers,
    &Listeners,
    &ListenerRules,
    &Certificates,
    &Records,
    &DbSubnetGroups,
    &DbInstances,
    &FileSystems,
    &MountTargets,
    &LaunchTemplates,
    &AutoScalingGroups,
];

/// The daemon's own kinds (`serve --events auto`): one of each per region and daemon, not per
/// stack, so the stacks' observation never lists them; [`crate::events::ensure`] observes and
/// heals them, `presta-reconciler events remove` deletes them, the IAM policy grants them.
pub static DAEMON_KINDS: &[&dyn KindEntry] =
    &[&crate::events::EventQueues, &crate::events::EventRules];

/// Every kind's label, in registry order.
pub fn kinds() -> impl Iterator<Item = Kind> {
    KINDS.iter().map(|e| e.kind())
}

/// The registry entry of `kind`.
pub fn entry(kind: Kind) -> Option<&'static dyn KindEntry> {
    KINDS.iter().copied().find(|e| e.kind() == kind)
}

/// Whether `kind` holds the shop's data (the database, the files): never rebuilt empty,
/// never deleted by a plan, counted apart by the change budget.
pub fn holds_data(kind: Kind) -> bool {
    entry(kind).is_some_and(|e| e.teardown_of_kind().deletion.holds_data())
}

/// Which stacks to observe: how their resources and parameters are named (the rest of a spec
/// is not needed to find a stack's resources, so `destroy` can observe a stack that is no
/// longer declared).
#[derive(Debug, Clone, Default)]
pub struct Targets {
    pub stacks: Vec<StackNames>,
    /// SSM parameters that name AMIs.
    pub ami_params: Vec<String>,
}

impl Targets {
    /// One stack.
    pub fn one(names: StackNames) -> Targets {
        Targets {
            stacks: vec![names],
            ami_params: Vec::new(),
        }
    }

    /// The names of `component` for every stack: explicit (`spec.names`) or deterministic.
    pub fn names(&self, component: Component) -> Vec<String> {
        self.stacks.iter().map(|n| n.name(component)).collect()
    }
}

/// The live resources observed so far, kind by kind (each a map from name to the kind's
/// `Live`): what the engine reads with [`Observed::get`] and [`Observed::values`].
#[derive(Default)]
pub struct Observed {
    by_kind: BTreeMap<Kind, Box<dyn Any + Send + Sync>>,
}

impl Observed {
    /// The live resources of `D`, when `D` was observed.
    pub fn of<D: Driver>(&self) -> Option<&BTreeMap<String, D::Live>> {
        self.by_kind
            .get(&D::KIND)
            .and_then(|m| m.downcast_ref::<BTreeMap<String, D::Live>>())
    }

    /// The live resource of `D` named `name`.
    pub fn get<D: Driver>(&self, name: &str) -> Option<&D::Live> {
        self.of::<D>().and_then(|m| m.get(name))
    }

    /// Whether a resource of `D` named `name` was observed.
    pub fn contains<D: Driver>(&self, name: &str) -> bool {
        self.get::<D>(name).is_some()
    }

    /// Every live resource of `D`.
    pub fn values<D: Driver>(&self) -> impl Iterator<Item = &D::Live> {
        self.of::<D>().into_iter().flat_map(|m| m.values())
    }

    /// Every (name, live resource) of `D`.
    pub fn iter<D: Driver>(&self) -> impl Iterator<Item = (&String, &D::Live)> {
        self.of::<D>().into_iter().flat_map(|m| m.iter())
    }

    /// Records the observation of `D`.
    pub fn insert<D: Driver>(&mut self, live: BTreeMap<String, D::Live>) {
        self.by_kind.insert(D::KIND, Box::new(live));
    }

    /// Observes every registered kind for `targets`: the kinds without a parent concurrently,
    /// then those that hang off them.
    pub async fn observe(aws: &Aws, targets: &Targets) -> Result<Observed, AwsError> {
        let mut observed = Observed::default();
        let mut pending: Vec<&dyn KindEntry> = KINDS.to_vec();
        while !pending.is_empty() {
            let (ready, later): (Vec<_>, Vec<_>) = pending
                .into_iter()
                .partition(|e| e.parent().is_none_or(|p| observed.by_kind.contains_key(&p)));
            if ready.is_empty() {
                let names: Vec<_> = later.iter().map(|e| e.kind().as_str()).collect();
                return Err(AwsError::unexpected(
                    "observe",
                    format!("kinds whose parent is not registered: {names:?}"),
                ));
            }
            let found = futures::future::try_join_all(
                ready
                    .iter()
                    .map(|e| e.observe_erased(aws, targets, &observed)),
            )
            .await?;
            for (e, live) in ready.iter().zip(found) {
                observed.by_kind.insert(e.kind(), live);
            }
            pending = later;
        }
        Ok(observed)
    }
}

/// What `destroy` does with a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// Holds no data: deleted.
    Plain,
    /// Holds no data; AWS refuses while something that uses it is still going away: the
    /// delete is retried within the wait timeout.
    Retried,
    /// Holds no data, and what it carries (instances, network interfaces) must be gone
    /// before the next step: deleted, then waited for.
    Awaited,
    /// The database: by `spec.policy.deletion.database` (a final snapshot by default).
    Database,
    /// The shop's files: by `spec.policy.deletion.fileSystem` (kept by default).
    Files,
    /// Part of the database's network (its subnet group, its security group): kept, its
    /// references to deleted resources dropped, with a retained database; else `Retried`.
    DatabaseNetwork,
    /// A password: kept while kept data needs it.
    Secret,
}

impl Deletion {
    /// Whether this is the shop's data.
    pub fn holds_data(self) -> bool {
        matches!(self, Deletion::Database | Deletion::Files)
    }
}

/// A resource's place in `destroy`: lower `order` first (what uses a resource goes before
/// it), and what happens to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Teardown {
    pub order: u16,
    pub deletion: Deletion,
}

impl Teardown {
    pub const fn new(order: u16, deletion: Deletion) -> Teardown {
        Teardown { order, deletion }
    }
}

/// Whether the orphan search lists a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrphanSearch {
    /// Not listed (found through the resources it hangs off, or named by a prefix only the
    /// spec knows).
    Skip,
    /// Listed by the daemon's thorough search to find forgotten stacks (what `destroy`
    /// keeps outlives the rest).
    Primary,
    /// Listed once a forgotten stack is found.
    Secondary,
}

/// One owned resource found by [`Driver::list_owned`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    /// The stack its ownership tags name (`None`: not the product's).
    pub stack: Option<String>,
    pub name: String,
    pub id: String,
    /// Kept on purpose by `destroy` (a file system tagged `retained-at`).
    pub retained: bool,
}

impl Owned {
    /// A resource whose ownership is read from its tags.
    pub fn from_tags<'a>(
        name: &str,
        id: &str,
        tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Owned {
        Owned {
            stack: stack_of(tags),
            name: name.to_string(),
            id: id.to_string(),
            retained: false,
        }
    }
}

/// The stack named by both ownership tags, if both are there.
pub fn stack_of<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<String> {
    let mut managed = false;
    let mut stack = None;
    for (k, v) in tags {
        if k == TAG_MANAGED_BY && v == MANAGED_BY_VALUE {
            managed = true;
        }
        if k == TAG_STACK {
            stack = Some(v.to_string());
        }
    }
    stack.filter(|_| managed)
}

/// The AWS actions a kind calls (IAM action names, `service:Action`), by how the generated
/// policy ([`crate::iam::reference_policy`]) bounds them.
#[derive(Debug, Clone, Copy)]
pub struct Iam {
    /// Reads: allowed on every resource (observation must see what is not ours yet).
    pub read: &'static [&'static str],
    /// Creations: allowed only with the ownership tag in the request.
    pub create: &'static [&'static str],
    /// Changes and deletions: allowed only on resources carrying the ownership tag.
    pub change: &'static [&'static str],
    /// The kind's own statements, for what the ownership tag cannot bound: tags written while
    /// creating, resources scoped by name or path (IAM policy JSON, one value a statement).
    pub statements: fn() -> Vec<serde_json::Value>,
}

impl Iam {
    /// No action at all (test drivers).
    pub const NONE: Iam = Iam {
        read: &[],
        create: &[],
        change: &[],
        statements: Iam::no_statements,
    };

    /// No statements of the kind's own.
    pub fn no_statements() -> Vec<serde_json::Value> {
        Vec::new()
    }

    /// Every action of the kind, its own statements' included.
    pub fn all(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .read
            .iter()
            .chain(self.create)
            .chain(self.change)
            .map(|a| a.to_string())
            .collect();
        for st in (self.statements)() {
            match &st["Action"] {
                serde_json::Value::String(a) => all.push(a.clone()),
                serde_json::Value::Array(list) => {
                    all.extend(list.iter().filter_map(|a| a.as_str().map(String::from)))
                }
                _ => {}
            }
        }
        all
    }
}

/// A kind as the registry holds it: its [`Driver`], with the generic parts erased so that
/// kinds of different types sit in one list.
pub trait KindEntry: Send + Sync {
    fn kind(&self) -> Kind;
    fn parent(&self) -> Option<Kind>;
    fn iam(&self) -> Iam;
    fn orphan_search(&self) -> OrphanSearch;
    /// The kind's own teardown (before per-resource refinements).
    fn teardown_of_kind(&self) -> Teardown;
    /// Observes this kind for `targets`.
    fn observe_erased<'a>(
        &'a self,
        aws: &'a Aws,
        targets: &'a Targets,
        observed: &'a Observed,
    ) -> BoxFuture<'a, Result<Box<dyn Any + Send + Sync>, AwsError>>;
    /// The observed resources of this kind: (name, live id, teardown).
    fn observed_items(&self, observed: &Observed) -> Vec<Item>;
    /// The observed resource's tags, where the observation carries them.
    fn observed_tags(&self, observed: &Observed, name: &str) -> Option<Tags>;
    /// Deletes the observed resource `name` through the ownership check ([`remove`]), or in
    /// a plan says it would; `None` when it was not observed.
    fn remove_observed<'a>(
        &'a self,
        aws: &'a Aws,
        observed: &'a Observed,
        name: &'a str,
        mode: Mode,
        owner: Owner<'a>,
        why: &'a str,
    ) -> BoxFuture<'a, Result<Option<Change>, AwsError>>;
    /// [`Driver::before_delete`] of the observed resource `name`.
    fn before_delete_observed<'a>(
        &'a self,
        aws: &'a Aws,
        observed: &'a Observed,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, AwsError>>;
    /// [`Driver::detach`] of the observed resource `name`.
    fn detach_observed<'a>(
        &'a self,
        aws: &'a Aws,
        observed: &'a Observed,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), AwsError>>;
    /// Whether any of the observed resources `names` still exists (observed again).
    fn any_left<'a>(
        &'a self,
        aws: &'a Aws,
        observed: &'a Observed,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<bool, AwsError>>;
    /// [`Driver::list_owned`].
    fn list_owned_erased<'a>(
        &'a self,
        aws: &'a Aws,
        names: Option<&'a [String]>,
    ) -> BoxFuture<'a, Result<Vec<Owned>, AwsError>>;
    /// The deterministic names of this kind for `stacks` (for kinds found by name).
    fn names_for(&self, stacks: &[String]) -> Vec<String>;
}

/// One observed resource, as `destroy` sees it.
#[derive(Debug, Clone)]
pub struct Item {
    pub kind: Kind,
    pub name: String,
    pub id: String,
    pub teardown: Teardown,
}

impl<D: Driver> KindEntry for D {
    fn kind(&self) -> Kind {
        D::KIND
    }

    fn parent(&self) -> Option<Kind> {
        D::PARENT
    }

    fn iam(&self) -> Iam {
        D::IAM
    }

    fn orphan_search(&self) -> OrphanSearch {
        D::ORPHANS
    }

    fn teardown_of_kind(&self) -> Teardown {
        D::TEARDOWN
    }

    fn observe_erased<'a>(
        &'a self,
        aws: &'a Aws,
        targets: &'a Targets,
        observed: &'a Observed,
    ) -> BoxFuture<'a, Result<Box<dyn Any + Send + Sync>, AwsError>> {
        let scope = D::scope(targets, observed);
        Box::pin(async move {
            let live = self.observe(aws, &scope).await?;
            Ok(Box::new(live) as Box<dyn Any + Send + Sync>)
        })
    }

    fn observed_items(&self, observed: &Observed) -> Vec<Item> {
        observed
            .iter::<D>()
            .map(|(name, live)| Item {
                kind: D::KIND,
                name: name.clone(),
                id: D::id(live),
                teardown: D::teardown(live),
            })
            .collect()
    }

    fn observed_tags(&self, observed: &Observed, name: &str) -> Option<Tags> {
        observed.get::<D>(name).and_then(D::tags).cloned()
    }

    fn remove_observed<'a>(
        &'a self,
        aws: &'a Aws,
        observed: &'a Observed,
        name: &'a str,
        mode: Mode,
        owner: Owner<'a>,
        why: &'a str,
    ) -> BoxFuture<'a, Result<Option<Change>, AwsError>> {
        Box::pin(async move {
            match observed.get::<D>(name) {
                Some(live) => Ok(Some(remove(self, aws, name, live, mode, owner, why).await?)),
                None => Ok(None),
            }
        })
    }

    fn before_delete_observed<'a>(
        &'a self,
        aws: &'a Aws,
        observed: &'a Observed,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, AwsError>> {
        Box::pin(async move {
            match observed.get::<D>(name) {
                Some(live) => self.before_delete(aws, live).await,
                None => Ok(None),
            }
        })
    }

    fn detach_observed<'a>(
        &'a self,
        aws: &'a Aws,
        observed: &'a Observed,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            match observed.get::<D>(name) {
                Some(live) => self.detach(aws, live).await,
                None => Ok(()),
            }
        })
    }

    fn any_left<'a>(
        &'a self,
        aws: &'a Aws,
        observed: &'a Observed,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<bool, AwsError>> {
        Box::pin(async move {
            let mut scope = Scope::named(names.to_vec());
            for name in names {
                if let Some(live) = observed.get::<D>(name) {
                    for p in D::parents(live) {
                        if !scope.parents.contains(&p) {
                            scope.parents.push(p);
                        }
                    }
                }
            }
            let now = self.observe(aws, &scope).await?;
            Ok(names.iter().any(|n| now.contains_key(n)))
        })
    }

    fn list_owned_erased<'a>(
        &'a self,
        aws: &'a Aws,
        names: Option<&'a [String]>,
    ) -> BoxFuture<'a, Result<Vec<Owned>, AwsError>> {
        Box::pin(self.list_owned(aws, names))
    }

    fn names_for(&self, stacks: &[String]) -> Vec<String> {
        let targets = Targets {
            stacks: stacks
                .iter()
                .map(|s| StackNames::deterministic(s, ""))
                .collect(),
            ami_params: Vec::new(),
        };
        D::scope(&targets, &Observed::default()).names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_registered_once_with_a_distinct_label() {
        let labels: Vec<&str> = kinds().map(Kind::as_str).collect();
        let mut unique = labels.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), labels.len(), "{labels:?}");
        for e in KINDS {
            if let Some(p) = e.parent() {
                assert!(
                    entry(p).is_some(),
                    "{}'s parent {p} is not registered",
                    e.kind()
                );
            }
        }
    }

    #[test]
    fn the_data_kinds_are_the_database_and_the_files() {
        let data: Vec<Kind> = kinds().filter(|k| holds_data(*k)).collect();
        assert_eq!(data, vec![Kind::DB_INSTANCE, Kind::FILE_SYSTEM]);
    }

    #[test]
    fn ownership_needs_both_tags() {
        let stack = stack_of([
            ("managed-by", "presta-reconciler"),
            ("presta-reconciler/stack", "old"),
        ]);
        assert_eq!(stack.as_deref(), Some("old"));
        assert_eq!(stack_of([("presta-reconciler/stack", "old")]), None);
        assert_eq!(stack_of([("managed-by", "presta-reconciler")]), None);
    }
}
