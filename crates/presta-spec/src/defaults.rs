//! The defaults of the spec's plain values, each written once. The model refers to these
//! functions through `#[serde(default = "...")]`; enums and structured values carry their
//! default themselves (`#[default]` variants, `impl Default`), so this module depends on no
//! model type. The JSON Schema shows every default, and `presta-reconciler validate
//! --print-defaults` prints a file with all of them applied.

use std::collections::BTreeMap;

/// The only `apiVersion` this release reads.
pub const API_VERSION: &str = "presta-reconciler.io/v1alpha1";
/// The only `kind` this release reads.
pub const KIND: &str = "PrestaShopStack";

/// Amazon Linux 2023, x86_64, latest kernel: an SSM public parameter that AWS keeps current.
pub const AL2023_X86_64_PARAMETER: &str =
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";
/// The arm64 (Graviton) twin of [`AL2023_X86_64_PARAMETER`].
pub const AL2023_ARM64_PARAMETER: &str =
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64";

pub fn allowed_cidrs() -> Vec<String> {
    vec!["0.0.0.0/0".to_string()]
}
/// A security setting that is on unless the spec turns it off.
pub fn enabled() -> bool {
    true
}

pub fn idle_timeout_seconds() -> u32 {
    60
}
pub fn http_port() -> u16 {
    80
}
pub fn https_port() -> u16 {
    443
}
/// TLS 1.3 with 1.2 fallback: AWS's recommended policy for new listeners.
pub fn ssl_policy() -> String {
    "ELBSecurityPolicy-TLS13-1-2-2021-06".to_string()
}
/// A static file served by Apache without booting PrestaShop (see the bootstrap).
pub fn health_check_path() -> String {
    "/presta-health.txt".to_string()
}
pub fn health_check_matcher() -> String {
    "200".to_string()
}
pub fn health_check_interval_seconds() -> u32 {
    15
}
pub fn health_check_timeout_seconds() -> u32 {
    5
}
pub fn healthy_threshold() -> u32 {
    2
}
pub fn unhealthy_threshold() -> u32 {
    3
}
/// PrestaShop keeps the cart in a cookie, but the back office session is per node:
/// stickiness keeps an admin on one instance.
pub fn stickiness_enabled() -> bool {
    true
}
pub fn stickiness_duration_seconds() -> u32 {
    86_400
}
pub fn deregistration_delay_seconds() -> u32 {
    30
}

pub fn instance_type() -> String {
    "t3.small".to_string()
}
pub fn min_size() -> u32 {
    1
}
pub fn max_size() -> u32 {
    2
}
pub fn target_cpu_utilization() -> u32 {
    60
}
pub fn root_volume_size_gib() -> u32 {
    20
}
/// Hop limit 1: the PrestaShop container (one hop further) cannot reach the instance's
/// credentials through IMDS; the bootstrap runs on the host and can.
pub fn imds_hop_limit() -> u32 {
    1
}
pub fn health_check_grace_period_seconds() -> u32 {
    300
}
pub fn min_healthy_percentage() -> u32 {
    50
}
pub fn instance_warmup_seconds() -> u32 {
    300
}

pub fn admin_folder() -> String {
    "admin-shop".to_string()
}
pub fn language() -> String {
    "en".to_string()
}
pub fn country() -> String {
    "GB".to_string()
}
pub fn extra_env() -> BTreeMap<String, String> {
    BTreeMap::new()
}

/// RDS MySQL 8.4: 8.0 left standard support on 2026-07-31.
pub fn engine_version() -> String {
    "8.4".to_string()
}
pub fn instance_class() -> String {
    "db.t4g.micro".to_string()
}
pub fn allocated_storage_gib() -> u32 {
    20
}
pub fn max_allocated_storage_gib() -> Option<u32> {
    Some(100)
}
pub fn multi_az() -> bool {
    false
}
pub fn backup_retention_days() -> u32 {
    7
}
pub fn deletion_protection() -> bool {
    true
}
pub fn database_name() -> String {
    "prestashop".to_string()
}
pub fn database_username() -> String {
    "prestashop".to_string()
}

pub fn encrypted() -> bool {
    true
}
pub fn transition_to_ia_days() -> Option<u32> {
    Some(30)
}
pub fn transition_to_primary_on_access() -> bool {
    true
}
pub fn efs_backups() -> bool {
    true
}

/// `/presta-reconciler/<stack>`: the default SSM prefix depends on the stack's name, so it is
/// filled in by [`crate::model::Stack::with_defaults`] rather than by serde.
pub fn parameter_prefix(stack: &str) -> String {
    format!("/presta-reconciler/{stack}")
}

pub fn yes() -> bool {
    true
}

/// `spec.policy.maxChangesPerRun`: a heal touches one or two resources; five leaves room for a
/// deliberate change of a few settings at once.
pub fn max_changes_per_run() -> u32 {
    5
}

pub fn soak() -> String {
    "30m".to_string()
}

pub fn checkpoint_pause() -> String {
    "5m".to_string()
}

/// A duration written as numbers with units, largest first: `90s`, `30m`, `1h30m`, `2d`.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let mut total = 0u64;
    let mut number = String::new();
    let mut last_unit = u64::MAX;
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        if number.is_empty() || unit >= last_unit {
            return None;
        }
        let n: u64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        number.clear();
        last_unit = unit;
        any = true;
    }
    (any && number.is_empty()).then(|| std::time::Duration::from_secs(total))
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units_largest_first() {
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in ["", "30", "m", "30x", "30m1h", "1h1h", "-5m", "1.5h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
