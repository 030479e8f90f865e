//! What an import says: the resources it took, every attribute it did not carry over and
//! why, what it left to Terraform, where the state holds secrets, and the exact
//! `terraform state rm` commands that detach Terraform.

use std::fmt;

use presta_spec::naming::Component;
use serde::Serialize;

pub use presta_aws::adopt::Handle;

/// A resource `--adopt` tags: its part in the stack and how to reach it.
#[derive(Debug, Clone, Serialize)]
pub struct Taggable {
    pub address: String,
    pub component: &'static str,
    #[serde(skip)]
    pub role: Component,
    pub handle: Handle,
}

/// One imported resource.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    pub address: String,
    #[serde(rename = "type")]
    pub ty: String,
    /// What it is in the stack, e.g. `load balancer`, `rule of the database's group`.
    pub role: String,
}

/// An attribute not carried over.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Unmapped {
    pub address: String,
    pub attribute: String,
    /// Its value, never a secret's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub reason: String,
}

/// A resource of the state the import does not take.
#[derive(Debug, Clone, Serialize)]
pub struct LeftAlone {
    pub address: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub why: String,
}

/// Everything an import says, as text ([`fmt::Display`]) or JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub format: String,
    pub stack: String,
    /// Every stack the state holds.
    pub stacks_in_state: Vec<String>,
    pub imported: Vec<Imported>,
    pub unmapped: Vec<Unmapped>,
    pub left_alone: Vec<LeftAlone>,
    /// `address.attribute` of each secret the state holds in plain text.
    pub secrets_in_state: Vec<String>,
    /// What the reconciler will change once it takes over, with the reason (the instances'
    /// user data becomes the product's bootstrap, ...).
    pub takeover_changes: Vec<String>,
    /// To tag with `--adopt`.
    #[serde(skip)]
    pub taggable: Vec<Taggable>,
    pub state_rm: Vec<String>,
}

/// The order `terraform state rm` takes the addresses: what refers to others first (rules,
/// attachments, listeners, mount targets, policies), the parameters last, so that each
/// removal leaves a state Terraform can still plan.
fn removal_rank(ty: &str) -> u8 {
    match ty {
        "aws_autoscaling_attachment" | "aws_autoscaling_policy" => 0,
        "aws_security_group_rule"
        | "aws_vpc_security_group_ingress_rule"
        | "aws_vpc_security_group_egress_rule" => 1,
        "aws_lb_listener" | "aws_efs_mount_target" | "aws_efs_backup_policy" => 2,
        "aws_autoscaling_group" => 3,
        "aws_launch_template" => 4,
        "aws_lb" => 5,
        "aws_lb_target_group" => 6,
        "aws_db_instance" => 7,
        "aws_db_subnet_group" => 8,
        "aws_efs_file_system" => 9,
        "aws_security_group" => 10,
        _ => 11,
    }
}

/// Quotes an address for a POSIX shell when it holds an instance key.
fn shell_word(address: &str) -> String {
    if address
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        address.to_string()
    } else {
        format!("'{}'", address.replace('\'', r"'\''"))
    }
}

impl Report {
    /// Fills [`Report::state_rm`] from the imported addresses.
    pub fn plan_state_rm(&mut self) {
        let mut all: Vec<&Imported> = self.imported.iter().collect();
        all.sort_by_key(|i| (removal_rank(&i.ty), i.address.clone()));
        self.state_rm = all
            .iter()
            .map(|i| format!("terraform state rm {}", shell_word(&i.address)))
            .collect();
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "import report: stack `{}` from a {}",
            self.stack, self.format
        )?;
        if self.stacks_in_state.len() > 1 {
            writeln!(
                f,
                "  the state holds {} stacks ({}); this report is about `{}` only",
                self.stacks_in_state.len(),
                self.stacks_in_state.join(", "),
                self.stack
            )?;
        }
        writeln!(f, "\nimported ({} resources):", self.imported.len())?;
        for i in &self.imported {
            writeln!(f, "  {:<70} {}", i.address, i.role)?;
        }
        writeln!(
            f,
            "\nnot carried over ({} attributes; each stays as it is on the live resource):",
            self.unmapped.len()
        )?;
        if self.unmapped.is_empty() {
            writeln!(
                f,
                "  none: every attribute is in the stack, computed by AWS, Terraform's own, or AWS's default"
            )?;
        }
        for u in &self.unmapped {
            let value = u
                .value
                .as_deref()
                .map(|v| format!(" = {v}"))
                .unwrap_or_default();
            writeln!(
                f,
                "  {}.{}{value}\n      {}",
                u.address, u.attribute, u.reason
            )?;
        }
        if !self.left_alone.is_empty() {
            writeln!(
                f,
                "\nleft to Terraform (not part of a PrestaShop stack this product manages):"
            )?;
            for l in &self.left_alone {
                writeln!(f, "  {} ({}): {}", l.address, l.ty, l.why)?;
            }
        }
        if !self.takeover_changes.is_empty() {
            writeln!(
                f,
                "\nwhat the reconciler will change once it manages the stack (each held until you approve the plan):"
            )?;
            for c in &self.takeover_changes {
                writeln!(f, "  - {c}")?;
            }
        }
        if !self.secrets_in_state.is_empty() {
            writeln!(
                f,
                "\nSECRETS: this state file holds secrets in plain text ({}). The import never read or copied them; keep the file as safe as the database itself, and delete the copies you no longer need.",
                self.secrets_in_state.join(", ")
            )?;
        }
        writeln!(
            f,
            "\ndetach Terraform, once the stack is adopted (`import terraform --adopt`) and its plan reviewed:"
        )?;
        for c in &self.state_rm {
            writeln!(f, "  {c}")?;
        }
        writeln!(
            f,
            "\nWARNING: until these commands have run, `terraform destroy` (or removing the module) on the old configuration DELETES THE SHOP: its database, its files and its load balancer. Run them before anyone touches that configuration again."
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_rm_dependents_first_and_quoted() {
        let mut r = Report {
            imported: vec![
                Imported {
                    address: "module.m.aws_security_group.app".into(),
                    ty: "aws_security_group".into(),
                    role: String::new(),
                },
                Imported {
                    address: "module.m.aws_efs_mount_target.t[\"subnet-1\"]".into(),
                    ty: "aws_efs_mount_target".into(),
                    role: String::new(),
                },
                Imported {
                    address: "aws_security_group_rule.x".into(),
                    ty: "aws_security_group_rule".into(),
                    role: String::new(),
                },
            ],
            ..Report::default()
        };
        r.plan_state_rm();
        assert_eq!(
            r.state_rm,
            vec![
                "terraform state rm aws_security_group_rule.x",
                "terraform state rm 'module.m.aws_efs_mount_target.t[\"subnet-1\"]'",
                "terraform state rm module.m.aws_security_group.app",
            ]
        );
        let text = r.to_string();
        assert!(text.contains("DELETES THE SHOP"), "{text}");
    }
}
