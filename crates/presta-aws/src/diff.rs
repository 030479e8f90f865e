//! Field-level differences and plan entries: which field, the desired and the live value, and
//! what applying it means. Values are JSON so that plans print and serialise the same way.
//! Secret values never enter a diff (parameters are compared by existence and type only).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Value, json};

/// Placeholder for a value that exists only once a dependency has been created.
pub const UNKNOWN: &str = "(known after apply)";

/// A resource kind, as it appears in plans, logs and metric labels (`target_group`). Each
/// kind declares its own constant in its module (`Kind::TARGET_GROUP` in `target_group.rs`),
/// and [`crate::registry::KINDS`] lists them all: there is no list of kinds here to keep in
/// step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kind(&'static str);

impl Kind {
    /// A kind named by its label (snake case, as in plans and metrics).
    pub const fn new(label: &'static str) -> Kind {
        Kind(label)
    }

    /// The label used in metrics and plans.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDiff {
    /// Path in the resource, named like the spec where it comes from the spec
    /// (`healthCheck.path`, `ingress`, `tags.environment`).
    pub field: String,
    pub desired: Value,
    pub live: Value,
    /// Why this difference will not be applied (a change that would destroy data), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
}

/// A field path, as a diff reports it and an update reads it (`healthCheck.path`). Every
/// kind names its fields as constants shared by its `diff` and its `update`, so a misspelt
/// name cannot silently skip an update: [`Diffs`] only takes a `Field` (or a path built from
/// one with [`Field::key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field(pub &'static str);

impl Field {
    /// The path of one key under this field (`tags.environment`, `userData.IMAGE`).
    pub fn key(self, key: &str) -> FieldPath {
        FieldPath(format!("{}.{key}", self.0))
    }
}

/// A field path built at run time from a [`Field`] (a tag key, a bootstrap value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What [`Diffs`] accepts as a field name: a [`Field`] or a [`FieldPath`], never a bare string.
pub trait FieldName {
    fn path(self) -> String;
}

impl FieldName for Field {
    fn path(self) -> String {
        self.0.to_string()
    }
}

impl FieldName for FieldPath {
    fn path(self) -> String {
        self.0
    }
}

/// The tags a kind manages, as `tags.<key>` paths.
pub const TAGS: Field = Field("tags");

/// The differences an update was asked to correct, read with one meaning: a field changed
/// when its path or a path under it differs (`healthCheck` covers `healthCheck.path`).
#[derive(Debug, Clone, Copy)]
pub struct Delta<'a>(pub &'a [FieldDiff]);

impl Delta<'_> {
    /// Whether `field`, or a field under it, differs.
    pub fn touches(&self, field: Field) -> bool {
        self.0.iter().any(|d| {
            d.field == field.0
                || d.field
                    .strip_prefix(field.0)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
    }

    /// Whether any of `fields` differs.
    pub fn touches_any(&self, fields: &[Field]) -> bool {
        fields.iter().any(|f| self.touches(*f))
    }

    /// Whether something other than tags differs.
    pub fn beyond_tags(&self) -> bool {
        self.0.iter().any(|d| {
            !(d.field == TAGS.0
                || d.field
                    .strip_prefix(TAGS.0)
                    .is_some_and(|rest| rest.starts_with('.')))
        })
    }
}

/// Collects differences between desired and live values, field by field.
#[derive(Debug, Default)]
pub struct Diffs(Vec<FieldDiff>);

impl Diffs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `field` when `desired != live`.
    pub fn field<T: PartialEq + Serialize + ?Sized>(
        &mut self,
        field: impl FieldName,
        desired: &T,
        live: &T,
    ) -> &mut Self {
        if desired != live {
            self.0.push(FieldDiff {
                field: field.path(),
                desired: json!(desired),
                live: json!(live),
                blocked: None,
            });
        }
        self
    }

    /// Records `field` as a difference that must not be applied, with the reason.
    pub fn blocked<T: PartialEq + Serialize + ?Sized>(
        &mut self,
        field: impl FieldName,
        desired: &T,
        live: &T,
        reason: &str,
    ) -> &mut Self {
        if desired != live {
            self.0.push(FieldDiff {
                field: field.path(),
                desired: json!(desired),
                live: json!(live),
                blocked: Some(reason.to_string()),
            });
        }
        self
    }

    /// Compares two sets (rules, subnets): order never matters.
    pub fn set<T: Ord + Serialize + Clone>(
        &mut self,
        field: impl FieldName,
        desired: &BTreeSet<T>,
        live: &BTreeSet<T>,
    ) -> &mut Self {
        if desired != live {
            self.0.push(FieldDiff {
                field: field.path(),
                desired: json!(desired),
                live: json!(live),
                blocked: None,
            });
        }
        self
    }

    /// Compares the tags the reconciler manages; tags others added are not drift.
    pub fn tags(
        &mut self,
        desired: &BTreeMap<String, String>,
        live: &BTreeMap<String, String>,
    ) -> &mut Self {
        for (k, v) in desired {
            let live_v = live.get(k);
            if live_v != Some(v) {
                self.0.push(FieldDiff {
                    field: TAGS.key(k).path(),
                    desired: json!(v),
                    live: live_v.map(|s| json!(s)).unwrap_or(Value::Null),
                    blocked: None,
                });
            }
        }
        self
    }

    pub fn finish(self) -> Vec<FieldDiff> {
        self.0
    }
}

/// What a plan does to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Live matches desired.
    None,
    Create,
    /// Brought back from what the stack kept (the database from its snapshot) instead of
    /// created empty; `reason` says from what.
    Restore,
    /// Changed in place.
    Update,
    /// A new one replaces the old one (never for data-bearing resources).
    Replace,
    /// Removed (only for resources that hold no data, e.g. an HTTPS listener no longer wanted).
    Delete,
    /// Drift that will not be corrected automatically; `reason` says why.
    Blocked,
    /// Cannot be decided yet: a dependency is missing, pending or failed.
    Waiting,
    /// The AWS call failed; `reason` has AWS's code and message.
    Failed,
}

impl Action {
    /// The symbol used in printed plans.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::None => " ",
            Action::Create => "+",
            Action::Restore => "+<",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
            Action::Blocked => "!",
            Action::Waiting => "…",
            Action::Failed => "✗",
        }
    }
}

/// One resource in a plan or an apply report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub kind: Kind,
    /// The deterministic name (or key) of the resource.
    pub name: String,
    /// The live id or ARN, when it exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub action: Action,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diffs: Vec<FieldDiff>,
    /// Why the action is blocked or waiting, or a note (e.g. an instance refresh started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a failed change: the class of the AWS error (throttled, transient, not found,
    /// refused...), for the scheduler, the status and the error metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<crate::error::ErrorClass>,
    /// For a change failed by an AWS call: the typed error (class, operation, resource, code,
    /// message), carried as it is to the status API and the error metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::error::StepError>,
}

impl Change {
    /// A change of the resource `name` of `kind`; no id, diffs, reason or error yet.
    pub fn new(kind: Kind, name: impl Into<String>, action: Action) -> Change {
        Change {
            kind,
            name: name.into(),
            id: None,
            action,
            diffs: Vec::new(),
            reason: None,
            error_class: None,
            error: None,
        }
    }

    /// Failed by `err`: its class and the typed error, about this change's resource.
    pub fn with_failure(mut self, err: &crate::error::AwsError) -> Change {
        let resource = self.id.clone().unwrap_or_else(|| self.name.clone());
        self.error_class = Some(err.class);
        self.error = Some(crate::error::StepError::new(err, resource));
        self
    }

    /// With the live id or ARN.
    pub fn with_id(mut self, id: impl Into<Option<String>>) -> Change {
        self.id = id.into();
        self
    }

    /// With the field differences.
    pub fn with_diffs(mut self, diffs: Vec<FieldDiff>) -> Change {
        self.diffs = diffs;
        self
    }

    /// With why it is blocked or waiting, or a note.
    pub fn with_reason(mut self, reason: impl Into<Option<String>>) -> Change {
        self.reason = reason.into();
        self
    }

    /// With the class of the AWS error that failed it.
    pub fn with_error_class(
        mut self,
        class: impl Into<Option<crate::error::ErrorClass>>,
    ) -> Change {
        self.error_class = class.into();
        self
    }

    /// Whether applying the plan would change this resource.
    pub fn is_pending(&self) -> bool {
        matches!(
            self.action,
            Action::Create | Action::Restore | Action::Update | Action::Replace | Action::Delete
        )
    }

    /// Differences that an apply would correct.
    pub fn applicable(&self) -> impl Iterator<Item = &FieldDiff> {
        self.diffs.iter().filter(|d| d.blocked.is_none())
    }

    /// Differences that stay, with a reason.
    pub fn blocked(&self) -> impl Iterator<Item = &FieldDiff> {
        self.diffs.iter().filter(|d| d.blocked.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_covers_the_paths_under_it_and_only_those() {
        let diffs = [FieldDiff {
            field: "healthCheck.path".into(),
            desired: json!(1),
            live: json!(2),
            blocked: None,
        }];
        let delta = Delta(&diffs);
        assert!(delta.touches(Field("healthCheck")));
        assert!(delta.touches(Field("healthCheck.path")));
        assert!(!delta.touches(Field("healthCheck.pathology")));
        assert!(
            !delta.touches(Field("health")),
            "a prefix of a name is not a parent"
        );
        assert!(delta.beyond_tags());
        let tags = [FieldDiff {
            field: TAGS.key("env").as_str().into(),
            ..diffs[0].clone()
        }];
        assert!(!Delta(&tags).beyond_tags());
        assert!(Delta(&tags).touches(TAGS));
    }

    #[test]
    fn equal_fields_make_no_diff() {
        let mut d = Diffs::new();
        d.field(Field("a"), &1, &1).field(Field("b"), "x", "x");
        assert!(d.finish().is_empty());
    }

    #[test]
    fn differing_fields_say_desired_and_live() {
        let mut d = Diffs::new();
        d.field(Field("healthCheck.path"), "/presta-health.txt", "/");
        let diffs = d.finish();
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].field, "healthCheck.path");
        assert_eq!(diffs[0].desired, json!("/presta-health.txt"));
        assert_eq!(diffs[0].live, json!("/"));
    }

    #[test]
    fn sets_ignore_order_and_tags_ignore_foreign_keys() {
        let mut d = Diffs::new();
        let a: BTreeSet<_> = ["x", "y"].into_iter().collect();
        let b: BTreeSet<_> = ["y", "x"].into_iter().collect();
        d.set(Field("rules"), &a, &b);
        let desired = BTreeMap::from([("owner".to_string(), "ops".to_string())]);
        let mut live = desired.clone();
        live.insert("added-by-finance".into(), "yes".into());
        d.tags(&desired, &live);
        assert!(d.finish().is_empty());
        let mut d = Diffs::new();
        d.tags(&desired, &BTreeMap::new());
        let diffs = d.finish();
        assert_eq!(diffs[0].field, "tags.owner");
        assert_eq!(diffs[0].live, Value::Null);
    }

    #[test]
    fn blocked_diffs_keep_their_reason() {
        let mut d = Diffs::new();
        d.blocked(
            Field("encrypted"),
            &true,
            &false,
            "EFS encryption is fixed at creation",
        );
        let change = Change::new(Kind::FILE_SYSTEM, "x", Action::Blocked).with_diffs(d.finish());
        assert_eq!(change.blocked().count(), 1);
        assert_eq!(change.applicable().count(), 0);
        assert!(!change.is_pending());
    }
}
