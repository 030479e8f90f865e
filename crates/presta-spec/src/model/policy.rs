//! `spec.policy`: what the reconciler may do to a stack, and what `destroy` keeps.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `enforce` corrects drift; `observe` only reports it and changes nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    #[default]
    Enforce,
    Observe,
}

/// What the reconciler may do to this stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub mode: Enforcement,
    /// Take over resources that already carry the stack's deterministic names but no ownership
    /// tag (made by hand or by another tool). Off by default: such a resource is reported as
    /// blocked and left alone.
    #[serde(default)]
    pub adopt_existing: bool,
    /// What `destroy` does with the data-bearing resources.
    #[serde(default)]
    pub deletion: Deletion,
    /// The change budget: once a stack exists, one run may change at most this many of its
    /// resources. A larger plan (a wrong VPC selector, a moved region, a renamed stack) is
    /// held, nothing changed, until a person approves that exact plan (`apply --approve`,
    /// `POST /stacks/{stack}/approve`). Creating a brand-new stack is not limited.
    #[serde(default = "crate::defaults::max_changes_per_run")]
    pub max_changes_per_run: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: Enforcement::default(),
            adopt_existing: false,
            deletion: Deletion::default(),
            max_changes_per_run: crate::defaults::max_changes_per_run(),
        }
    }
}

/// What `destroy` does with the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseDeletion {
    /// A final snapshot `<stack>-db-final-<UTC time>` with the stack's tags; automated
    /// backups retained. `apply` restores from it.
    #[default]
    Snapshot,
    /// Left running, no longer tagged as managed.
    Retain,
    /// Deleted without a snapshot: only with `destroy --delete-data` as well.
    Delete,
}

/// What `destroy` does with the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileSystemDeletion {
    /// Kept with its data, tagged `presta-reconciler/retained-at`; `apply` adopts it again.
    #[default]
    Retain,
    /// Deleted: only with `destroy --delete-data` as well.
    Delete,
}

/// `destroy`'s treatment of data; the defaults keep every byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deletion {
    #[serde(default)]
    pub database: DatabaseDeletion,
    #[serde(default)]
    pub file_system: FileSystemDeletion,
}
