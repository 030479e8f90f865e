//! Rules that the JSON Schema cannot express: AWS naming limits, CIDR syntax, cross-field
//! constraints, pinned images. Each finding names the field path and says what is allowed;
//! the loader adds file, line and column.

//!
//! One module per spec section, like the model: [`network`], [`load_balancer`], [`compute`],
//! [`prestashop`], [`data`] (database, file system, secrets).

mod compute;
mod data;
mod load_balancer;
mod names;
mod network;
mod prestashop;

pub use prestashop::zone_id_like;

pub use names::name_problem;
pub use prestashop::image_problem;

use crate::defaults::{API_VERSION, KIND};
use crate::model::Stack;
use crate::naming::{self, Component, ELB_NAME_LIMIT};
use crate::regions;

/// One problem in one document, before it is placed in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Dotted field path, e.g. `spec.database.backupRetentionDays`.
    pub path: String,
    pub message: String,
    pub help: Option<String>,
}

#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, path: &str, message: impl Into<String>, help: impl Into<Option<String>>) {
        self.0.push(Finding {
            path: path.to_string(),
            message: message.into(),
            help: help.into(),
        });
    }

    fn range(&mut self, path: &str, value: u64, min: u64, max: u64, unit: &str) {
        if value < min || value > max {
            self.add(
                path,
                format!("{value} is out of range"),
                Some(format!("allowed: {min} to {max}{unit}")),
            );
        }
    }
}

fn help(s: impl Into<String>) -> Option<String> {
    Some(s.into())
}

fn is_hex_id(value: &str, prefix: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|rest| {
        (8..=17).contains(&rest.len()) && rest.chars().all(|c| c.is_ascii_hexdigit())
    })
}

/// Validates one stack (already typed, defaults applied by serde).
pub fn validate_stack(stack: &Stack) -> Vec<Finding> {
    let mut f = Findings::default();
    if stack.api_version != API_VERSION {
        f.add(
            "apiVersion",
            format!("unsupported apiVersion `{}`", stack.api_version),
            help(format!("this release reads `{API_VERSION}`")),
        );
    }
    if stack.kind != KIND {
        f.add(
            "kind",
            format!("unsupported kind `{}`", stack.kind),
            help(format!("use `{KIND}`")),
        );
    }
    stack_name(&mut f, &stack.metadata.name);
    labels(&mut f, stack);
    let spec = &stack.spec;
    region(&mut f, &spec.region);
    network::network(&mut f, stack);
    load_balancer::load_balancer(&mut f, stack);
    compute::compute(&mut f, stack);
    prestashop::prestashop(&mut f, stack);
    prestashop::dns(&mut f, stack);
    data::database(&mut f, stack);
    data::file_system(&mut f, stack);
    data::secrets(&mut f, stack);
    names::names(&mut f, stack);
    f.range(
        "spec.policy.maxChangesPerRun",
        u64::from(spec.policy.max_changes_per_run),
        1,
        1000,
        " resources (a plan larger than this is held for approval)",
    );
    promotion(&mut f, stack);
    f.0
}

/// `spec.promotion` within one document: a duration, and not the stack itself. Whether the
/// followed stack exists and whether promotions form a cycle is checked across the whole
/// configuration when it is loaded.
fn promotion(f: &mut Findings, stack: &Stack) {
    let Some(p) = &stack.spec.promotion else {
        return;
    };
    if p.after == stack.name() {
        f.add(
            "spec.promotion.after",
            format!("stack `{}` follows itself", p.after),
            help("name the stack whose changes this one waits for, e.g. `staging`"),
        );
    }
    match crate::defaults::parse_duration(&p.checkpoint_pause) {
        Some(d) if d.as_secs() <= 3600 => {}
        Some(_) => f.add(
            "spec.promotion.checkpointPause",
            format!("`{}` is longer than 1 h", p.checkpoint_pause),
            help("AWS pauses an instance refresh at a checkpoint for at most 1 h (3600 s)"),
        ),
        None => f.add(
            "spec.promotion.checkpointPause",
            format!("`{}` is not a duration", p.checkpoint_pause),
            help("a number and a unit (s, m, h), largest unit first, e.g. `5m`"),
        ),
    }
    if crate::defaults::parse_duration(&p.soak).is_none() {
        f.add(
            "spec.promotion.soak",
            format!("`{}` is not a duration", p.soak),
            help("a number and a unit (s, m, h, d), largest unit first, e.g. `30m`, `1h30m`"),
        );
    }
}

/// The stack-name rule, shared with anything that takes a stack name (CLI `--stack`).
pub fn stack_name_problem(name: &str) -> Option<(String, String)> {
    let max = naming::max_stack_name_len();
    if name.is_empty() {
        return Some((
            "must not be empty".into(),
            format!("use 1 to {max} lowercase letters, digits and hyphens"),
        ));
    }
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid_chars || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Some((
            format!("`{name}` is not a valid stack name"),
            "use lowercase letters, digits and hyphens, starting with a letter (it becomes part of AWS resource names)".into(),
        ));
    }
    if name.ends_with('-') || name.contains("--") {
        return Some((
            format!("`{name}` ends with a hyphen or contains two in a row"),
            "RDS identifiers forbid both: use single hyphens between letters or digits".into(),
        ));
    }
    if name.len() > max {
        let alb = Component::LoadBalancer.name(name);
        return Some((
            format!(
                "`{name}` is {} characters long, too long once suffixed",
                name.len()
            ),
            format!(
                "the load balancer name `{alb}` would be {} characters, over AWS's {ELB_NAME_LIMIT}-character limit for load balancer and target group names: use at most {max} characters",
                alb.len()
            ),
        ));
    }
    None
}

fn stack_name(f: &mut Findings, name: &str) {
    if let Some((message, hint)) = stack_name_problem(name) {
        f.add("metadata.name", message, help(hint));
    }
}

fn labels(f: &mut Findings, stack: &Stack) {
    for (key, value) in &stack.metadata.labels {
        let path = format!("metadata.labels.{key}");
        let reserved = ["Name", naming::TAG_MANAGED_BY];
        if key.starts_with("aws:")
            || key.starts_with(naming::RESERVED_TAG_PREFIX)
            || reserved.contains(&key.as_str())
        {
            f.add(
                &path,
                format!("label `{key}` is reserved"),
                help("`aws:*` belongs to AWS; `Name`, `managed-by` and `presta-reconciler/*` are set by the reconciler to find its resources"),
            );
            continue;
        }
        let ok = |s: &str| {
            s.chars()
                .all(|c| c.is_alphanumeric() || " _.:/=+-@".contains(c))
        };
        if key.is_empty() || key.len() > 128 || !ok(key) {
            f.add(
                &path,
                format!("label key `{key}` is not a valid AWS tag key"),
                help("1 to 128 letters, digits, spaces and `_ . : / = + - @`"),
            );
        }
        if value.len() > 256 || !ok(value) {
            f.add(
                &path,
                "label value is not a valid AWS tag value",
                help("at most 256 letters, digits, spaces and `_ . : / = + - @`"),
            );
        }
    }
}

fn region(f: &mut Findings, region: &str) {
    if regions::is_known(region) {
        return;
    }
    let closest = regions::REGIONS
        .iter()
        .min_by_key(|r| strsim::levenshtein(r, region))
        .copied()
        .unwrap_or("eu-west-3");
    f.add(
        "spec.region",
        format!("`{region}` is not an AWS region"),
        help(format!(
            "did you mean `{closest}`? (regions look like `eu-west-3`, `us-east-1`)"
        )),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_names() {
        assert!(stack_name_problem("shop-1").is_none());
        assert!(stack_name_problem("Shop").is_some());
        assert!(stack_name_problem("1shop").is_some());
        assert!(stack_name_problem("shop--a").is_some());
        assert!(stack_name_problem("shop-").is_some());
        assert!(stack_name_problem(&"a".repeat(28)).is_none());
        let (msg, hint) = stack_name_problem(&"a".repeat(29)).unwrap();
        assert!(msg.contains("29 characters"), "{msg}");
        assert!(hint.contains("at most 28"), "{hint}");
    }
}
