//! `spec.names`: the existing AWS names of a stack built by another tool (Terraform).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::naming::Component;

/// The AWS names of this stack's resources, for a shop that another tool built (see
/// docs/migrate-from-terraform.md): a load balancer, a target group, a database or an Auto
/// Scaling group cannot be renamed without downtime, so an imported stack keeps its names.
/// Every entry left out uses the deterministic name (`<stack>-alb`, `<stack>-db`, ...), which
/// is what a new stack should do. Used by every driver, by `destroy`, by the orphan search
/// and by `iam-policy`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Names {
    /// The Application Load Balancer's name (1 to 32 letters, digits and hyphens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<String>,
    /// The target group's name (1 to 32 letters, digits and hyphens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group: Option<String>,
    /// The launch template's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_template: Option<String>,
    /// The Auto Scaling group's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scaling_group: Option<String>,
    /// The target-tracking scaling policy's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_policy: Option<String>,
    /// The DB subnet group's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_subnet_group: Option<String>,
    /// The RDS instance identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The EFS file system's creation token (EFS has no name; Terraform's
    /// `aws_efs_file_system.creation_token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_system: Option<String>,
    #[serde(default, skip_serializing_if = "SecurityGroupNames::is_empty")]
    pub security_groups: SecurityGroupNames,
}

/// The security groups' names (`GroupName`, not the `Name` tag).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityGroupNames {
    /// The load balancer's group (from the allowed networks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<String>,
    /// The instances' group (from the load balancer's group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<String>,
    /// The database's group (MySQL from the instances' group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The file system's group (NFS from the instances' group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_system: Option<String>,
}

impl SecurityGroupNames {
    pub fn is_empty(&self) -> bool {
        *self == SecurityGroupNames::default()
    }
}

impl Names {
    pub fn is_empty(&self) -> bool {
        *self == Names::default()
    }

    /// Each explicit name with its component and its field path under `spec.names`.
    pub fn entries(&self) -> Vec<(Component, &'static str, &str)> {
        let sg = &self.security_groups;
        [
            (Component::LoadBalancer, "loadBalancer", &self.load_balancer),
            (Component::TargetGroup, "targetGroup", &self.target_group),
            (
                Component::LaunchTemplate,
                "launchTemplate",
                &self.launch_template,
            ),
            (
                Component::AutoScalingGroup,
                "autoScalingGroup",
                &self.auto_scaling_group,
            ),
            (
                Component::ScalingPolicy,
                "scalingPolicy",
                &self.scaling_policy,
            ),
            (
                Component::DbSubnetGroup,
                "dbSubnetGroup",
                &self.db_subnet_group,
            ),
            (Component::DbInstance, "database", &self.database),
            (Component::FileSystem, "fileSystem", &self.file_system),
            (
                Component::AlbSecurityGroup,
                "securityGroups.loadBalancer",
                &sg.load_balancer,
            ),
            (
                Component::AppSecurityGroup,
                "securityGroups.instances",
                &sg.instances,
            ),
            (
                Component::DbSecurityGroup,
                "securityGroups.database",
                &sg.database,
            ),
            (
                Component::EfsSecurityGroup,
                "securityGroups.fileSystem",
                &sg.file_system,
            ),
        ]
        .into_iter()
        .filter_map(|(c, path, v)| v.as_deref().map(|v| (c, path, v)))
        .collect()
    }

    /// Sets the explicit name of `component`.
    pub fn set(&mut self, component: Component, name: String) {
        let sg = &mut self.security_groups;
        let slot = match component {
            Component::LoadBalancer => &mut self.load_balancer,
            Component::TargetGroup => &mut self.target_group,
            Component::LaunchTemplate => &mut self.launch_template,
            Component::AutoScalingGroup => &mut self.auto_scaling_group,
            Component::ScalingPolicy => &mut self.scaling_policy,
            Component::DbSubnetGroup => &mut self.db_subnet_group,
            Component::DbInstance => &mut self.database,
            Component::FileSystem => &mut self.file_system,
            Component::AlbSecurityGroup => &mut sg.load_balancer,
            Component::AppSecurityGroup => &mut sg.instances,
            Component::DbSecurityGroup => &mut sg.database,
            Component::EfsSecurityGroup => &mut sg.file_system,
        };
        *slot = Some(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_entries_agree_for_every_component() {
        let all = Component::ALL;
        let mut n = Names::default();
        for (i, c) in all.iter().enumerate() {
            n.set(*c, format!("n{i}"));
        }
        let entries = n.entries();
        assert_eq!(entries.len(), all.len());
        for (i, c) in all.iter().enumerate() {
            let e = entries.iter().find(|e| e.0 == *c).unwrap();
            assert_eq!(e.2, format!("n{i}"));
        }
    }
}
