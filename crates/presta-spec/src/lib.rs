//! The `PrestaShopStack` desired-state spec.
//!
//! Start with [`model::Stack`] (what a document holds), [`load::load_path`] (how files are
//! read and checked) and [`naming`] (how AWS resources are named and tagged, since there is
//! no state file). Every default is in [`defaults`]. Nothing here calls AWS.

pub mod defaults;
pub mod load;
pub mod model;
pub mod naming;
pub mod position;
pub mod regions;
pub mod schema;
pub mod validate;

pub use load::{ConfigError, LoadedStack, Problem, load_path, load_paths, parse_file};
pub use model::Stack;
