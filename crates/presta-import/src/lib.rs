//! `presta-reconciler import terraform`: the shop a Terraform state describes, as a
//! `PrestaShopStack`, with a report of everything that is not carried over.
//!
//! The state is read as data ([`state`]); the resources of a PrestaShop stack are found by
//! type, whatever their addresses and names, and grouped into stacks by the references
//! between them (a listener names its load balancer, the Auto Scaling group its launch
//! template, the user data its password's parameter: [`group`]). Each stack's spec is then
//! written from the attributes ([`map`]); every attribute is either mapped to the spec, equal
//! to what AWS sets by default, a value AWS or Terraform computes, or listed in the
//! [`Report`] with its address and why. Secrets are never read: the database password in
//! the state is left where it is, and the stack names the SSM parameter that holds it.

mod attrs;
mod group;
mod map;
mod report;
pub mod state;

pub use report::{Handle, Imported, LeftAlone, Report, Taggable, Unmapped};
pub use state::{Format, Resource};

use presta_spec::Stack;

/// Why an import cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the state file is not JSON (line {line}, column {column}): {message}")]
    NotJson {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("the state file is not a Terraform state: {0}")]
    Format(String),
    #[error(
        "the state holds no PrestaShop stack: no aws_lb, aws_autoscaling_group or aws_db_instance among its {0} managed resources"
    )]
    NoStack(usize),
    #[error(
        "the state holds {} stacks: {}; name the one to import with --stack NAME",
        .0.len(),
        .0.join(", ")
    )]
    SeveralStacks(Vec<String>),
    #[error("--stack {wanted}: the state holds {}", if .found.is_empty() { "no stack".to_string() } else { format!("only {}", .found.join(", ")) })]
    UnknownStack { wanted: String, found: Vec<String> },
    #[error("{address}: {message}")]
    Unsupported { address: String, message: String },
}

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The stack to import when the state holds several (a name from the refusal), and the
    /// name the written stack gets.
    pub stack: Option<String>,
}

/// The stack written and what the import says about it.
#[derive(Debug, Clone)]
pub struct Import {
    pub stack: Stack,
    pub report: Report,
}

impl Import {
    /// The YAML document, headed by a comment that says where it came from.
    pub fn yaml(&self) -> String {
        let body = serde_yaml::to_string(&self.stack).unwrap_or_default();
        format!(
            "# Imported from a Terraform state ({}) by `presta-reconciler import terraform`.\n# Review it, then adopt: see docs/migrate-from-terraform.md.\n{body}",
            self.report.format
        )
    }
}

/// Imports the stack of a state file's text.
pub fn import(text: &str, opts: &Options) -> Result<Import, ImportError> {
    let (format, resources) = state::parse(text)?;
    let managed = resources.iter().filter(|r| r.managed()).count();
    let stacks = group::stacks(&resources);
    if stacks.is_empty() {
        return Err(ImportError::NoStack(managed));
    }
    let names: Vec<String> = stacks.iter().map(|s| s.name.clone()).collect();
    let chosen = match (&opts.stack, stacks.len()) {
        (None, 1) => &stacks[0],
        (None, _) => return Err(ImportError::SeveralStacks(names)),
        (Some(wanted), n) => match stacks.iter().find(|s| &s.name == wanted) {
            Some(s) => s,
            None if n == 1 => &stacks[0],
            None => {
                return Err(ImportError::UnknownStack {
                    wanted: wanted.clone(),
                    found: names,
                });
            }
        },
    };
    let name = opts.stack.clone().unwrap_or_else(|| chosen.name.clone());
    let (stack, mut report) = map::stack(&name, chosen, &resources)?;
    report.format = format.describe().to_string();
    report.stacks_in_state = names;
    Ok(Import { stack, report })
}
