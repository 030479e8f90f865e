//! AWS drivers for presta-reconciler: one module per resource kind behind the [`driver::Driver`]
//! trait, plus the shared client setup ([`clients`]), error classification ([`error`]), call
//! counting ([`calls`]) and the field-level diff model ([`diff`]).
//!
//! To see how a kind is reconciled, open its module: it holds the desired and live types, the
//! observation (one list call per kind), the pure diff, and the create and update calls.

pub mod calls;
pub mod clients;
pub mod commands;
pub mod diff;
pub mod driver;
pub mod error;
pub mod iam;
pub mod ratelimit;
pub mod status;

pub use clients::{Aws, ClientSettings, Transport};
pub use diff::{Action, Change, FieldDiff, Kind};
pub use driver::{Driver, Mode, Owner, Readiness, Scope, Synced, absent_is_success, remove, sync};
pub use error::{AwsError, ErrorClass};
pub use registry::{KINDS, Observed, Targets};
pub mod adopt;
pub mod auto_scaling_group;
pub mod certificate;
pub mod db_instance;
pub mod db_password;
pub mod db_snapshot;
pub mod db_status;
pub mod db_subnet_group;
pub mod dns_record;
pub mod efs_policies;
pub mod events;
pub mod file_system;
pub mod instances;
pub mod launch_template;
pub mod lease_table;
pub mod listener;
pub mod listener_rule;
pub mod load_balancer;
pub mod mount_target;
pub mod network;
pub mod orphans;
pub mod parameter;
pub mod registry;
pub mod secret;
pub mod security_group;
pub mod tags;
pub mod target_group;
pub mod user_data;
