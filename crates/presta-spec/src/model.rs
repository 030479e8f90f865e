//! The `PrestaShopStack` document: what a stack should look like.
//!
//! Field names are the YAML's (camelCase). Every struct rejects unknown fields, so a typo is
//! an error rather than a silently ignored setting. Defaults live in [`crate::defaults`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults as d;

mod front;
mod names;
mod policy;
mod promotion;
pub use front::{CERTIFICATE_AUTO, CertificateSource, Dns, HttpMode, Https};
pub use names::{Names, SecurityGroupNames};
pub use policy::{DatabaseDeletion, Deletion, Enforcement, FileSystemDeletion, Policy};
pub use promotion::Promotion;

/// One PrestaShop shop on AWS, declared Kubernetes-style.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "PrestaShopStack")]
pub struct Stack {
    /// Always `presta-reconciler.io/v1alpha1`.
    pub api_version: String,
    /// Always `PrestaShopStack`.
    pub kind: String,
    pub metadata: Metadata,
    pub spec: StackSpec,
}

/// Identity of the stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// The stack's name: lowercase letters, digits and single hyphens, starting with a letter.
    /// Every AWS resource name is derived from it (`<name>-alb`, `<name>-db`, ...), so it is
    /// limited by the shortest AWS name limit once suffixed (load balancer and target group
    /// names: 32 characters).
    pub name: String,
    /// Labels, copied as tags onto every AWS resource of the stack.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The desired state of every part of the stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StackSpec {
    /// AWS region of the whole stack, e.g. `eu-west-3`.
    pub region: String,
    pub network: Network,
    #[serde(default)]
    pub load_balancer: LoadBalancer,
    /// The shop's domain in Route 53: records, and a certificate of its own for HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    pub compute: Compute,
    pub prestashop: PrestaShop,
    #[serde(default)]
    pub database: Database,
    #[serde(default)]
    pub file_system: FileSystem,
    #[serde(default)]
    pub secrets: Secrets,
    /// Existing AWS names, for a shop another tool built (`import terraform` writes them).
    /// Leave it out for a new stack: its resources get deterministic names.
    #[serde(default, skip_serializing_if = "Names::is_empty")]
    pub names: Names,
    #[serde(default)]
    pub policy: Policy,
    /// Staging before production: changes that roll the instances (image, bootstrap, AMI,
    /// instance type) reach this stack only after the stack it follows has run the same
    /// release with a `healthy` verdict for the soak time. See docs/promotion.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Promotion>,
    /// The stacks whose `promotion.after` names this one, filled in when the configuration
    /// is loaded: only a followed stack records the release it runs (docs/promotion.md).
    #[serde(skip)]
    #[schemars(skip)]
    pub followed_by: Vec<String>,
}

/// The existing VPC and subnets the stack lives in. The reconciler never creates or changes
/// them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Network {
    /// The VPC, by id or by tags.
    pub vpc: VpcSelector,
    /// Public subnets for the load balancer, in at least two availability zones.
    pub public_subnets: SubnetSelector,
    /// Private subnets for the instances, the database and the EFS mount targets, in at least
    /// two availability zones.
    pub private_subnets: SubnetSelector,
}

/// Selects one VPC: give exactly one of `id` or `tags`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VpcSelector {
    /// A VPC id, `vpc-...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Tags the VPC must carry; values may use `*` and `?` wildcards. Exactly one VPC must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// Selects subnets: give exactly one of `ids` or `tags`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubnetSelector {
    /// Subnet ids, `subnet-...`; at least two, in different availability zones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    /// Tags the subnets must carry; values may use `*` and `?` wildcards, e.g.
    /// `Name: presta-demo-private-*`. Matched inside the selected VPC.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// Whether the load balancer faces the internet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    #[default]
    InternetFacing,
    Internal,
}

impl Scheme {
    /// The value the ELBv2 API uses.
    pub fn as_aws(self) -> &'static str {
        match self {
            Scheme::InternetFacing => "internet-facing",
            Scheme::Internal => "internal",
        }
    }
}

/// The Application Load Balancer, its listeners and its target group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancer {
    #[serde(default)]
    pub scheme: Scheme,
    /// Client networks allowed to reach the load balancer on its listener ports (CIDR blocks,
    /// IPv4 or IPv6).
    #[serde(default = "d::allowed_cidrs")]
    pub allowed_cidrs: Vec<String>,
    /// Seconds an idle connection is kept open (1 to 4000).
    #[serde(default = "d::idle_timeout_seconds")]
    pub idle_timeout_seconds: u32,
    /// Drop HTTP headers whose names are not valid (AWS security best practice).
    #[serde(default = "d::enabled")]
    pub drop_invalid_header_fields: bool,
    /// The load balancer cannot be deleted by hand while this is on (`destroy` lifts it: the
    /// load balancer holds no data). Turn it off for throwaway stacks.
    #[serde(default = "d::enabled")]
    pub deletion_protection: bool,
    /// Port of the plain HTTP listener.
    #[serde(default = "d::http_port")]
    pub http_port: u16,
    /// HTTPS listener; requires `prestashop.domain` (ACM cannot issue a certificate for the
    /// load balancer's own DNS name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<Https>,
    #[serde(default)]
    pub health_check: HealthCheck,
    #[serde(default)]
    pub stickiness: Stickiness,
    /// Seconds the target group waits for in-flight requests before deregistering a target
    /// (0 to 3600).
    #[serde(default = "d::deregistration_delay_seconds")]
    pub deregistration_delay_seconds: u32,
}

impl Default for LoadBalancer {
    fn default() -> Self {
        Self {
            scheme: Scheme::default(),
            allowed_cidrs: d::allowed_cidrs(),
            idle_timeout_seconds: d::idle_timeout_seconds(),
            drop_invalid_header_fields: d::enabled(),
            deletion_protection: d::enabled(),
            http_port: d::http_port(),
            https: None,
            health_check: HealthCheck::default(),
            stickiness: Stickiness::default(),
            deregistration_delay_seconds: d::deregistration_delay_seconds(),
        }
    }
}

/// The target group's health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    /// Path requested on each instance; the default is a static file that does not boot
    /// PrestaShop.
    #[serde(default = "d::health_check_path")]
    pub path: String,
    /// HTTP codes that count as healthy: `200`, `200,302` or `200-299`.
    #[serde(default = "d::health_check_matcher")]
    pub matcher: String,
    /// Seconds between checks (5 to 300).
    #[serde(default = "d::health_check_interval_seconds")]
    pub interval_seconds: u32,
    /// Seconds before a check fails (2 to 120, less than the interval).
    #[serde(default = "d::health_check_timeout_seconds")]
    pub timeout_seconds: u32,
    /// Consecutive successes to become healthy (2 to 10).
    #[serde(default = "d::healthy_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failures to become unhealthy (2 to 10).
    #[serde(default = "d::unhealthy_threshold")]
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            path: d::health_check_path(),
            matcher: d::health_check_matcher(),
            interval_seconds: d::health_check_interval_seconds(),
            timeout_seconds: d::health_check_timeout_seconds(),
            healthy_threshold: d::healthy_threshold(),
            unhealthy_threshold: d::unhealthy_threshold(),
        }
    }
}

/// Load-balancer cookie stickiness on the target group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Stickiness {
    #[serde(default = "d::stickiness_enabled")]
    pub enabled: bool,
    /// Cookie lifetime in seconds (1 to 604800).
    #[serde(default = "d::stickiness_duration_seconds")]
    pub duration_seconds: u32,
}

impl Default for Stickiness {
    fn default() -> Self {
        Self {
            enabled: d::stickiness_enabled(),
            duration_seconds: d::stickiness_duration_seconds(),
        }
    }
}

/// The EC2 instances: launch template and Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Compute {
    /// The machine image: an AMI id, or an SSM public parameter resolved at each reconcile.
    #[serde(default)]
    pub ami: AmiSource,
    #[serde(default = "d::instance_type")]
    pub instance_type: String,
    #[serde(default = "d::min_size")]
    pub min_size: u32,
    #[serde(default = "d::max_size")]
    pub max_size: u32,
    /// Instances at creation only: scaling changes it afterwards, so it is never drift.
    /// Defaults to `minSize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_capacity: Option<u32>,
    /// Average CPU (percent) the target-tracking scaling policy keeps (1 to 100).
    #[serde(default = "d::target_cpu_utilization")]
    pub target_cpu_utilization: u32,
    /// Root volume (gp3, encrypted) in GiB.
    #[serde(default = "d::root_volume_size_gib", rename = "rootVolumeSizeGiB")]
    pub root_volume_size_gib: u32,
    /// An existing IAM instance profile; its role must allow `ssm:GetParameter` on the stack's
    /// parameters and the EFS mount.
    pub instance_profile: String,
    /// IMDSv2 is always required; this is the response hop limit (1 keeps containers away
    /// from the instance credentials).
    #[serde(default = "d::imds_hop_limit")]
    pub imds_hop_limit: u32,
    /// Seconds after launch before the load balancer's health checks count.
    #[serde(default = "d::health_check_grace_period_seconds")]
    pub health_check_grace_period_seconds: u32,
    #[serde(default)]
    pub instance_refresh: InstanceRefresh,
}

/// The machine image: give exactly one of `id` or `ssmParameter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AmiSource {
    /// An AMI id, `ami-...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// An SSM parameter holding the AMI id, e.g. the Amazon Linux 2023 public parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssm_parameter: Option<String>,
}

impl Default for AmiSource {
    /// The latest Amazon Linux 2023 (x86_64), resolved at each reconcile.
    fn default() -> Self {
        AmiSource {
            id: None,
            ssm_parameter: Some(d::AL2023_X86_64_PARAMETER.to_string()),
        }
    }
}

/// How a launch-template change rolls through the group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceRefresh {
    /// Percentage of the group that must stay in service during a rolling replacement.
    #[serde(default = "d::min_healthy_percentage")]
    pub min_healthy_percentage: u32,
    /// Seconds a new instance gets before it counts as in service.
    #[serde(default = "d::instance_warmup_seconds")]
    pub instance_warmup_seconds: u32,
}

impl Default for InstanceRefresh {
    fn default() -> Self {
        Self {
            min_healthy_percentage: d::min_healthy_percentage(),
            instance_warmup_seconds: d::instance_warmup_seconds(),
        }
    }
}

/// The PrestaShop container and its first install.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrestaShop {
    /// Container image with a pinned tag, e.g. `prestashop/prestashop:8.2.7-8.1-apache`.
    /// `latest`, a missing tag or a floating alias (`8`, `9.1`) is refused.
    pub image: String,
    /// The shop's public host name. Without it the shop answers on the load balancer's DNS
    /// name, over HTTP only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Name of the back-office folder (the installer renames `admin` to it).
    #[serde(default = "d::admin_folder")]
    pub admin_folder: String,
    /// E-mail of the first back-office account.
    pub admin_email: String,
    /// Installer language (ISO 639-1, e.g. `fr`).
    #[serde(default = "d::language")]
    pub language: String,
    /// Installer country (ISO 3166-1 alpha-2, e.g. `FR`).
    #[serde(default = "d::country")]
    pub country: String,
    /// Extra environment variables for the container. Variables the reconciler sets itself
    /// (`PS_DOMAIN`, `DB_*`, ...) are refused here.
    #[serde(default = "d::extra_env", skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_env: BTreeMap<String, String>,
}

/// The RDS MySQL instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Database {
    /// MySQL version: `8.4` or `8.0`, optionally with a minor (`8.4.3`).
    #[serde(default = "d::engine_version")]
    pub engine_version: String,
    #[serde(default = "d::instance_class")]
    pub instance_class: String,
    /// Initial storage in GiB (gp3, 20 to 65536).
    #[serde(default = "d::allocated_storage_gib", rename = "allocatedStorageGiB")]
    pub allocated_storage_gib: u32,
    /// Storage autoscaling ceiling in GiB; `null` turns storage autoscaling off.
    #[serde(
        default = "d::max_allocated_storage_gib",
        rename = "maxAllocatedStorageGiB"
    )]
    pub max_allocated_storage_gib: Option<u32>,
    #[serde(default = "d::multi_az")]
    pub multi_az: bool,
    /// Days of automated backups (0 to 35; 0 turns them off).
    #[serde(default = "d::backup_retention_days")]
    pub backup_retention_days: u32,
    #[serde(default = "d::deletion_protection")]
    pub deletion_protection: bool,
    /// Schema created at instance creation.
    #[serde(default = "d::database_name")]
    pub name: String,
    /// Master user name; its password is generated and kept in SSM.
    #[serde(default = "d::database_username")]
    pub username: String,
    /// What a missing database is made from. Unset (the default): the newest snapshot that
    /// carries the stack's ownership tags (the final snapshot `destroy` leaves), and when
    /// there is none, an empty database only for a new shop (no file system either). A
    /// snapshot identifier: restore that snapshot. `none`: start empty on purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<String>,
}

impl Default for Database {
    fn default() -> Self {
        Self {
            engine_version: d::engine_version(),
            instance_class: d::instance_class(),
            allocated_storage_gib: d::allocated_storage_gib(),
            max_allocated_storage_gib: d::max_allocated_storage_gib(),
            multi_az: d::multi_az(),
            backup_retention_days: d::backup_retention_days(),
            deletion_protection: d::deletion_protection(),
            name: d::database_name(),
            username: d::database_username(),
            restore_from: None,
        }
    }
}

/// EFS throughput mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ThroughputMode {
    // AWS's recommendation (the API's own default is bursting).
    #[default]
    Elastic,
    Bursting,
    Provisioned,
}

impl ThroughputMode {
    /// The value the EFS API uses.
    pub fn as_aws(self) -> &'static str {
        match self {
            ThroughputMode::Elastic => "elastic",
            ThroughputMode::Bursting => "bursting",
            ThroughputMode::Provisioned => "provisioned",
        }
    }
}

/// The EFS file system holding `/var/www/html`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSystem {
    /// Encryption at rest; cannot be changed after creation.
    #[serde(default = "d::encrypted")]
    pub encrypted: bool,
    #[serde(default)]
    pub throughput_mode: ThroughputMode,
    /// MiB/s, only with `throughputMode: provisioned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned_throughput_mibps: Option<f64>,
    /// Days without access before a file moves to Infrequent Access (1, 7, 14, 30, 60, 90,
    /// 180, 270 or 365); `null` keeps everything in Standard.
    #[serde(default = "d::transition_to_ia_days")]
    pub transition_to_ia_days: Option<u32>,
    /// Move a file back to Standard on its first access.
    #[serde(default = "d::transition_to_primary_on_access")]
    pub transition_to_primary_on_access: bool,
    /// AWS Backup's daily automatic backups of the file system.
    #[serde(default = "d::efs_backups")]
    pub automatic_backups: bool,
    /// Let the reconciler create an empty file system while the stack's database exists
    /// (start the shop's files over). Off: a lost file system is blocked drift, never
    /// silently rebuilt empty.
    #[serde(default)]
    pub allow_empty: bool,
}

impl Default for FileSystem {
    fn default() -> Self {
        Self {
            encrypted: d::encrypted(),
            throughput_mode: ThroughputMode::default(),
            provisioned_throughput_mibps: None,
            transition_to_ia_days: d::transition_to_ia_days(),
            transition_to_primary_on_access: d::transition_to_primary_on_access(),
            automatic_backups: d::efs_backups(),
            allow_empty: false,
        }
    }
}

/// Where generated passwords are kept.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Secrets {
    /// SSM Parameter Store path prefix; defaults to `/presta-reconciler/<stack name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_prefix: Option<String>,
    /// The SecureString holding the database's master password, when it is not
    /// `<parameterPrefix>/db-password` (a shop imported from Terraform keeps its parameter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_password_parameter: Option<String>,
    /// The SecureString holding the first back-office account's password, when it is not
    /// `<parameterPrefix>/admin-password`; `none` for a shop that is already installed (an
    /// imported one): no admin password is generated, and the instances refuse to run the
    /// installer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_password_parameter: Option<String>,
}

/// The value of `secrets.adminPasswordParameter` that says the shop is already installed.
pub const NO_ADMIN_PASSWORD: &str = "none";

impl Stack {
    /// The stack's name.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// Fills in the defaults that depend on other fields (serde fills in the rest), so the
    /// result shows every value the reconciler will use.
    pub fn with_defaults(mut self) -> Self {
        if self.spec.secrets.parameter_prefix.is_none() {
            self.spec.secrets.parameter_prefix = Some(d::parameter_prefix(&self.metadata.name));
        }
        if self.spec.compute.desired_capacity.is_none() {
            self.spec.compute.desired_capacity = Some(self.spec.compute.min_size);
        }
        self
    }

    /// The SSM prefix, defaulted.
    pub fn parameter_prefix(&self) -> String {
        self.spec
            .secrets
            .parameter_prefix
            .clone()
            .unwrap_or_else(|| d::parameter_prefix(&self.metadata.name))
    }

    /// How this stack's resources are named: `spec.names`, else the deterministic names.
    pub fn names(&self) -> crate::naming::StackNames {
        let prefix = self.parameter_prefix();
        let secrets = &self.spec.secrets;
        crate::naming::StackNames {
            stack: self.metadata.name.clone(),
            explicit: self
                .spec
                .names
                .entries()
                .into_iter()
                .map(|(c, _, n)| (c, n.to_string()))
                .collect(),
            db_password: secrets
                .db_password_parameter
                .clone()
                .unwrap_or_else(|| crate::naming::db_password_parameter(&prefix)),
            admin_password: match secrets.admin_password_parameter.as_deref() {
                Some(NO_ADMIN_PASSWORD) => None,
                Some(name) => Some(name.to_string()),
                None => Some(crate::naming::admin_password_parameter(&prefix)),
            },
            prefix,
            front: self.spec.dns.as_ref().map(|dns| crate::naming::FrontNames {
                hosted_zone: dns.hosted_zone.clone(),
                names: self.host_names(),
                own_certificate: self.certificate_source() == Some(CertificateSource::Auto),
            }),
        }
    }

    /// The AWS name of `component` in this stack (explicit or deterministic).
    pub fn resource_name(&self, component: crate::naming::Component) -> String {
        self.names().name(component)
    }

    /// Whether the shop is served over HTTPS (a custom domain and an HTTPS listener).
    pub fn serves_https(&self) -> bool {
        self.https().is_some() && self.spec.prestashop.domain.is_some()
    }

    /// The HTTPS listener: as written, or the default one when `spec.dns` is given.
    pub fn https(&self) -> Option<std::borrow::Cow<'_, Https>> {
        match (&self.spec.load_balancer.https, &self.spec.dns) {
            (Some(h), _) => Some(std::borrow::Cow::Borrowed(h)),
            (None, Some(_)) => Some(std::borrow::Cow::Owned(Https::default())),
            (None, None) => None,
        }
    }

    /// The HTTPS listener's certificate, when there is one.
    pub fn certificate_source(&self) -> Option<CertificateSource> {
        self.https()
            .and_then(|h| h.certificate_source(self.spec.dns.is_some()))
    }

    /// Every name the shop answers to: the domain, then `spec.dns.extraNames`.
    pub fn host_names(&self) -> Vec<String> {
        let mut out: Vec<String> = self.spec.prestashop.domain.iter().cloned().collect();
        if let Some(dns) = &self.spec.dns {
            out.extend(dns.extra_names.iter().cloned());
        }
        out
    }
}
