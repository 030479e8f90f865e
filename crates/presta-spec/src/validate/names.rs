//! `spec.names` and the explicit parameter names of `spec.secrets`: each within the AWS
//! naming rules of its kind, so a typo is refused here rather than by AWS mid-run.

use crate::model::{NO_ADMIN_PASSWORD, Stack};
use crate::naming::Component;

use super::{Findings, help};

/// What AWS accepts as the name of `component`, or why not.
pub fn name_problem(component: Component, name: &str) -> Option<(String, &'static str)> {
    let len = name.len();
    let alnum_hyphen = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let bad = |why: String, rule: &'static str| Some((why, rule));
    match component {
        Component::LoadBalancer | Component::TargetGroup => {
            const RULE: &str = "1 to 32 letters, digits and hyphens, not starting or ending with a hyphen (ELBv2's rule)";
            if len == 0
                || len > 32
                || !alnum_hyphen(name)
                || name.starts_with('-')
                || name.ends_with('-')
            {
                return bad(format!("`{name}` is not a valid ELBv2 name"), RULE);
            }
            if component == Component::LoadBalancer && name.starts_with("internal-") {
                return bad(
                    format!("`{name}` starts with `internal-`"),
                    "AWS reserves that prefix for internal load balancers' DNS names",
                );
            }
        }
        Component::DbInstance => {
            const RULE: &str = "1 to 63 letters, digits and hyphens, starting with a letter, no two hyphens in a row, not ending with a hyphen (RDS's rule)";
            if len == 0
                || len > 63
                || !alnum_hyphen(name)
                || !name.starts_with(|c: char| c.is_ascii_alphabetic())
                || name.ends_with('-')
                || name.contains("--")
            {
                return bad(
                    format!("`{name}` is not a valid RDS instance identifier"),
                    RULE,
                );
            }
        }
        Component::DbSubnetGroup => {
            let ok = name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " ._-".contains(c));
            if len == 0 || len > 255 || !ok || name.eq_ignore_ascii_case("default") {
                return bad(
                    format!("`{name}` is not a valid DB subnet group name"),
                    "1 to 255 letters, digits, spaces, periods, underscores and hyphens, not `default`",
                );
            }
        }
        Component::LaunchTemplate => {
            let ok = name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "().-/_".contains(c));
            if !(3..=128).contains(&len) || !ok {
                return bad(
                    format!("`{name}` is not a valid launch template name"),
                    "3 to 128 letters, digits and `( ) . - / _`",
                );
            }
        }
        Component::AutoScalingGroup | Component::ScalingPolicy => {
            if len == 0 || len > 255 || name.contains(':') || name.chars().any(char::is_control) {
                return bad(
                    format!("`{name}` is not a valid Auto Scaling name"),
                    "1 to 255 characters, no `:`",
                );
            }
        }
        Component::FileSystem => {
            if len == 0 || len > 64 {
                return bad(
                    format!("`{name}` is not a valid EFS creation token"),
                    "1 to 64 characters",
                );
            }
        }
        Component::AlbSecurityGroup
        | Component::AppSecurityGroup
        | Component::DbSecurityGroup
        | Component::EfsSecurityGroup => {
            let ok = name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " ._-:/()#,@[]+=&;{}!$*".contains(c));
            if len == 0 || len > 255 || !ok || name.starts_with("sg-") || name == "default" {
                return bad(
                    format!("`{name}` is not a valid security group name"),
                    "1 to 255 letters, digits, spaces and `._-:/()#,@[]+=&;{}!$*`, not starting with `sg-`, not `default`",
                );
            }
        }
    }
    None
}

/// An SSM parameter name's problem, if any.
fn parameter_problem(name: &str) -> Option<&'static str> {
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c));
    let lower = name.to_ascii_lowercase();
    if name.is_empty()
        || name.len() > 1011
        || !chars_ok
        || name.ends_with('/')
        || name.contains("//")
    {
        return Some("letters, digits and `_ . - /`, e.g. `/prestashop/db_password`");
    }
    if name.contains('/') && !name.starts_with('/') {
        return Some("a hierarchical name starts with `/`");
    }
    if lower.trim_start_matches('/').starts_with("aws")
        || lower.trim_start_matches('/').starts_with("ssm")
    {
        return Some("names starting with `aws` or `ssm` are reserved by AWS");
    }
    None
}

pub(super) fn names(f: &mut Findings, stack: &Stack) {
    let mut seen: Vec<(String, &str)> = Vec::new();
    for (component, path, name) in stack.spec.names.entries() {
        let path = format!("spec.names.{path}");
        if let Some((message, rule)) = name_problem(component, name) {
            f.add(&path, message, help(rule));
        }
        let is_group = path.contains("securityGroups");
        if is_group {
            if let Some((other, _)) = seen.iter().find(|(_, n)| *n == name) {
                f.add(
                    &path,
                    format!("`{name}` is also `{other}`"),
                    help("each security group plays one part: give four different groups"),
                );
            }
            seen.push((path.trim_start_matches("spec.").to_string(), name));
        }
    }
    let secrets = &stack.spec.secrets;
    for (path, value) in [
        (
            "spec.secrets.dbPasswordParameter",
            &secrets.db_password_parameter,
        ),
        (
            "spec.secrets.adminPasswordParameter",
            &secrets.admin_password_parameter,
        ),
    ] {
        let Some(name) = value.as_deref() else {
            continue;
        };
        if path.ends_with("adminPasswordParameter") && name == NO_ADMIN_PASSWORD {
            continue;
        }
        if let Some(rule) = parameter_problem(name) {
            f.add(
                path,
                format!("`{name}` is not an SSM parameter name"),
                help(rule),
            );
        }
    }
    if let (Some(a), Some(b)) = (
        &secrets.db_password_parameter,
        &secrets.admin_password_parameter,
    ) && a == b
    {
        f.add(
            "spec.secrets.adminPasswordParameter",
            format!("`{b}` is also the database password's parameter"),
            help("the two passwords live in two parameters"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_naming_rules_per_kind() {
        assert!(name_problem(Component::LoadBalancer, "prestashop-alb").is_none());
        assert!(name_problem(Component::LoadBalancer, "internal-shop").is_some());
        assert!(name_problem(Component::TargetGroup, &"t".repeat(33)).is_some());
        assert!(name_problem(Component::TargetGroup, "ps_tg").is_some());
        assert!(name_problem(Component::DbInstance, "ps-db").is_none());
        assert!(name_problem(Component::DbInstance, "1db").is_some());
        assert!(name_problem(Component::DbInstance, "ps--db").is_some());
        assert!(name_problem(Component::DbSubnetGroup, "default").is_some());
        assert!(name_problem(Component::DbSubnetGroup, "ps db_subnets.1").is_none());
        assert!(name_problem(Component::LaunchTemplate, "lt").is_some());
        assert!(name_problem(Component::AutoScalingGroup, "a:b").is_some());
        assert!(name_problem(Component::AppSecurityGroup, "sg-app").is_some());
        assert!(name_problem(Component::AppSecurityGroup, "prestashop app sg").is_none());
        assert!(name_problem(Component::FileSystem, "terraform-20260101").is_none());
    }

    #[test]
    fn parameter_names() {
        assert!(parameter_problem("/prestashop/db_password").is_none());
        assert!(parameter_problem("db_password").is_none());
        assert!(parameter_problem("prestashop/db").is_some());
        assert!(parameter_problem("/aws/x").is_some());
        assert!(parameter_problem("/p/").is_some());
    }
}
