//! Deterministic AWS names and ownership tags.
//!
//! There is no state file: every resource of a stack is found again by the name derived here
//! from the stack's name and by the ownership tags. Changing a name here renames (and so
//! re-creates) resources in every deployed stack, so these are part of the product's contract.

use std::collections::BTreeMap;

/// Tag carried by every resource the reconciler manages.
pub const TAG_MANAGED_BY: &str = "managed-by";
/// Value of [`TAG_MANAGED_BY`].
pub const MANAGED_BY_VALUE: &str = "presta-reconciler";
/// Tag naming the owning stack.
pub const TAG_STACK: &str = "presta-reconciler/stack";
/// Tag naming the resource's role inside the stack (`alb`, `db`, ...).
pub const TAG_COMPONENT: &str = "presta-reconciler/component";
/// Tag prefix reserved for the reconciler; labels may not use it.
pub const RESERVED_TAG_PREFIX: &str = "presta-reconciler/";

/// Load balancer and target group names are limited to 32 characters by ELBv2.
pub const ELB_NAME_LIMIT: usize = 32;
/// Suffixes appended to the stack name for ELBv2 names.
const ELB_SUFFIXES: [&str; 2] = [ALB_SUFFIX, TG_SUFFIX];
const ALB_SUFFIX: &str = "-alb";
const TG_SUFFIX: &str = "-tg";

/// The longest stack name whose derived names all fit AWS limits.
pub const fn max_stack_name_len() -> usize {
    let mut longest = 0;
    let mut i = 0;
    while i < ELB_SUFFIXES.len() {
        if ELB_SUFFIXES[i].len() > longest {
            longest = ELB_SUFFIXES[i].len();
        }
        i += 1;
    }
    ELB_NAME_LIMIT - longest
}

/// The roles of a stack's resources; each has one deterministic name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    AlbSecurityGroup,
    AppSecurityGroup,
    DbSecurityGroup,
    EfsSecurityGroup,
    LoadBalancer,
    TargetGroup,
    LaunchTemplate,
    AutoScalingGroup,
    ScalingPolicy,
    DbSubnetGroup,
    DbInstance,
    FileSystem,
}

impl Component {
    /// Every role, once.
    pub const ALL: [Component; 12] = [
        Component::AlbSecurityGroup,
        Component::AppSecurityGroup,
        Component::DbSecurityGroup,
        Component::EfsSecurityGroup,
        Component::LoadBalancer,
        Component::TargetGroup,
        Component::LaunchTemplate,
        Component::AutoScalingGroup,
        Component::ScalingPolicy,
        Component::DbSubnetGroup,
        Component::DbInstance,
        Component::FileSystem,
    ];

    /// The value of the [`TAG_COMPONENT`] tag.
    pub fn tag(self) -> &'static str {
        match self {
            Component::AlbSecurityGroup => "alb-sg",
            Component::AppSecurityGroup => "app-sg",
            Component::DbSecurityGroup => "db-sg",
            Component::EfsSecurityGroup => "efs-sg",
            Component::LoadBalancer => "alb",
            Component::TargetGroup => "tg",
            Component::LaunchTemplate => "launch-template",
            Component::AutoScalingGroup => "asg",
            Component::ScalingPolicy => "cpu-policy",
            Component::DbSubnetGroup => "db-subnet-group",
            Component::DbInstance => "db",
            Component::FileSystem => "efs",
        }
    }

    /// The AWS name of this component in `stack`.
    pub fn name(self, stack: &str) -> String {
        match self {
            Component::LoadBalancer => format!("{stack}{ALB_SUFFIX}"),
            Component::TargetGroup => format!("{stack}{TG_SUFFIX}"),
            Component::LaunchTemplate | Component::AutoScalingGroup => format!("{stack}-app"),
            Component::ScalingPolicy => format!("{stack}-cpu-target"),
            Component::DbSubnetGroup => format!("{stack}-db-subnets"),
            Component::DbInstance => format!("{stack}-db"),
            // EFS has no name, only a creation token (idempotency) and a Name tag.
            Component::FileSystem => format!("presta-reconciler-{stack}-efs"),
            other => format!("{stack}-{}", other.tag()),
        }
    }
}

/// Names of the stack's SSM parameters under its prefix.
pub fn db_password_parameter(prefix: &str) -> String {
    format!("{}/db-password", prefix.trim_end_matches('/'))
}

/// Names of the stack's SSM parameters under its prefix.
pub fn admin_password_parameter(prefix: &str) -> String {
    format!("{}/admin-password", prefix.trim_end_matches('/'))
}

/// The tags every resource of `stack` carries for `component`: ownership tags, a `Name`, and
/// the stack's labels (ownership tags win over labels of the same key, which validation
/// refuses anyway).
pub fn tags(
    stack: &str,
    component: Component,
    labels: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    role_tags(
        stack,
        component.tag(),
        &component_display_name(stack, component),
        labels,
    )
}

/// The tags of a resource of `stack` in the role `role` (the [`TAG_COMPONENT`] value), named
/// `name`: ownership tags, a `Name`, and the stack's labels.
pub fn role_tags(
    stack: &str,
    role: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut tags = labels.clone();
    tags.insert("Name".to_string(), name.to_string());
    tags.insert(TAG_MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string());
    tags.insert(TAG_STACK.to_string(), stack.to_string());
    tags.insert(TAG_COMPONENT.to_string(), role.to_string());
    tags
}

/// How one stack's resources are found: the explicit names of `spec.names` (a shop imported
/// from Terraform), else the deterministic ones, and its parameters' names. This is all that
/// observing, `destroy` and the orphan search need of a stack.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StackNames {
    pub stack: String,
    /// The SSM prefix (parameters the reconciler writes itself).
    pub prefix: String,
    pub explicit: BTreeMap<Component, String>,
    /// The database password's parameter.
    pub db_password: String,
    /// The admin password's parameter; `None` for a shop that is already installed.
    pub admin_password: Option<String>,
    /// The shop's names in DNS (`spec.dns`), when it has them.
    pub front: Option<FrontNames>,
}

/// How a stack's DNS records and certificate are found: its hosted zone and names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FrontNames {
    /// `spec.dns.hostedZone`: a zone name or id.
    pub hosted_zone: String,
    /// The domain, then the extra names.
    pub names: Vec<String>,
    /// Whether the stack requests its own certificate (`https.certificate: auto`).
    pub own_certificate: bool,
}

/// The key (and `Name` tag) of the certificate a stack requests for itself.
pub fn certificate_key(stack: &str) -> String {
    format!("{stack}-certificate")
}

impl StackNames {
    /// A stack named the product's way, parameters under `prefix`.
    pub fn deterministic(stack: &str, prefix: &str) -> StackNames {
        StackNames {
            stack: stack.to_string(),
            prefix: prefix.to_string(),
            explicit: BTreeMap::new(),
            db_password: db_password_parameter(prefix),
            admin_password: Some(admin_password_parameter(prefix)),
            front: None,
        }
    }

    /// The AWS name of `component`.
    pub fn name(&self, component: Component) -> String {
        self.explicit
            .get(&component)
            .cloned()
            .unwrap_or_else(|| component.name(&self.stack))
    }

    /// Whether `component` keeps a name given in `spec.names`.
    pub fn is_explicit(&self, component: Component) -> bool {
        self.explicit.contains_key(&component)
    }

    /// The stack's SecureString parameters.
    pub fn parameters(&self) -> Vec<String> {
        std::iter::once(self.db_password.clone())
            .chain(self.admin_password.clone())
            .collect()
    }

    /// The tags of `component`: [`tags`], without a `Name` for a resource that keeps an
    /// explicit name (its `Name` tag is its owner's business, and adopting it changes nothing
    /// but the ownership tags).
    pub fn tags(
        &self,
        component: Component,
        labels: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut t = tags(&self.stack, component, labels);
        if self.is_explicit(component) {
            match labels.get("Name") {
                Some(v) => t.insert("Name".to_string(), v.clone()),
                None => t.remove("Name"),
            };
        }
        t
    }
}

fn component_display_name(stack: &str, component: Component) -> String {
    match component {
        Component::FileSystem => format!("{stack}-efs"),
        other => other.name(stack),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_stack_name_fits_every_elb_name() {
        let name = "a".repeat(max_stack_name_len());
        assert_eq!(max_stack_name_len(), 28);
        assert!(Component::LoadBalancer.name(&name).len() <= ELB_NAME_LIMIT);
        assert!(Component::TargetGroup.name(&name).len() <= ELB_NAME_LIMIT);
        let too_long = "a".repeat(max_stack_name_len() + 1);
        assert!(Component::LoadBalancer.name(&too_long).len() > ELB_NAME_LIMIT);
    }

    #[test]
    fn names_are_deterministic_and_distinct() {
        use Component::*;
        let all = [
            AlbSecurityGroup,
            AppSecurityGroup,
            DbSecurityGroup,
            EfsSecurityGroup,
            LoadBalancer,
            TargetGroup,
            ScalingPolicy,
            DbSubnetGroup,
            DbInstance,
            FileSystem,
        ];
        let names: std::collections::BTreeSet<_> = all.iter().map(|c| c.name("shop")).collect();
        assert_eq!(names.len(), all.len());
        assert_eq!(DbInstance.name("shop"), "shop-db");
        assert_eq!(AppSecurityGroup.name("shop"), "shop-app-sg");
        assert_eq!(FileSystem.name("shop"), "presta-reconciler-shop-efs");
    }

    #[test]
    fn tags_carry_ownership_and_labels() {
        let labels = BTreeMap::from([("team".to_string(), "ops".to_string())]);
        let t = tags("shop", Component::DbInstance, &labels);
        assert_eq!(t["managed-by"], "presta-reconciler");
        assert_eq!(t["presta-reconciler/stack"], "shop");
        assert_eq!(t["presta-reconciler/component"], "db");
        assert_eq!(t["Name"], "shop-db");
        assert_eq!(t["team"], "ops");
    }

    #[test]
    fn parameter_names_ignore_trailing_slash() {
        assert_eq!(db_password_parameter("/p/shop/"), "/p/shop/db-password");
        assert_eq!(
            admin_password_parameter("/p/shop"),
            "/p/shop/admin-password"
        );
    }
}
