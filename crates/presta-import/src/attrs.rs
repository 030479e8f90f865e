//! Every attribute of every imported resource is accounted for: mapped to the spec (by
//! [`crate::map`]), a value AWS or Terraform computes, a Terraform-only setting, equal to
//! AWS's own default (which is what the reconciler leaves), or reported.

use serde_json::{Value, json};

use crate::report::Unmapped;
use crate::state::Resource;

/// How one resource type's attributes are accounted for.
pub struct Rules {
    pub ty: &'static str,
    /// Read into the spec (checked there).
    pub mapped: &'static [&'static str],
    /// Computed by AWS or Terraform (ids, ARNs, DNS names, statuses): nothing to carry.
    pub computed: &'static [&'static str],
    /// Terraform's own settings (timeouts, what `destroy` does): no AWS counterpart.
    pub terraform_only: &'static [&'static str],
    /// AWS's defaults, which the reconciler leaves as they are: equal is fine.
    pub defaults: fn() -> Vec<(&'static str, Value)>,
}

const TAGS: [&str; 2] = ["tags", "tags_all"];

pub static RULES: &[Rules] = &[
    Rules {
        ty: "aws_lb",
        mapped: &[
            "name",
            "internal",
            "idle_timeout",
            "drop_invalid_header_fields",
            "enable_deletion_protection",
            "subnets",
            "subnet_mapping",
            "security_groups",
            "load_balancer_type",
        ],
        computed: &[
            "arn",
            "arn_suffix",
            "dns_name",
            "id",
            "zone_id",
            "vpc_id",
            "name_prefix",
        ],
        terraform_only: &["timeouts"],
        defaults: || {
            vec![
                ("client_keep_alive", json!(3600)),
                ("desync_mitigation_mode", json!("defensive")),
                ("enable_http2", json!(true)),
                ("enable_cross_zone_load_balancing", json!(true)),
                ("ip_address_type", json!("ipv4")),
                ("xff_header_processing_mode", json!("append")),
            ]
        },
    },
    Rules {
        ty: "aws_lb_target_group",
        mapped: &[
            "name",
            "port",
            "protocol",
            "vpc_id",
            "health_check",
            "stickiness",
            "deregistration_delay",
            "target_type",
        ],
        computed: &[
            "arn",
            "arn_suffix",
            "id",
            "load_balancer_arns",
            "name_prefix",
        ],
        terraform_only: &[],
        defaults: || {
            vec![
                ("ip_address_type", json!("ipv4")),
                ("load_balancing_algorithm_type", json!("round_robin")),
                (
                    "load_balancing_cross_zone_enabled",
                    json!("use_load_balancer_configuration"),
                ),
                ("protocol_version", json!("HTTP1")),
                ("load_balancing_anomaly_mitigation", json!("off")),
            ]
        },
    },
    Rules {
        ty: "aws_lb_listener",
        mapped: &[
            "load_balancer_arn",
            "port",
            "protocol",
            "default_action",
            "certificate_arn",
            "ssl_policy",
        ],
        computed: &["arn", "id"],
        terraform_only: &["timeouts"],
        defaults: || {
            vec![
                ("tcp_idle_timeout_seconds", json!(350)),
                ("routing_http_response_server_enabled", json!(true)),
            ]
        },
    },
    Rules {
        ty: "aws_launch_template",
        mapped: &[
            "name",
            "name_prefix",
            "image_id",
            "instance_type",
            "iam_instance_profile",
            "vpc_security_group_ids",
            "user_data",
            "metadata_options",
            "block_device_mappings",
            "tag_specifications",
        ],
        computed: &["arn", "id", "default_version", "latest_version"],
        terraform_only: &["update_default_version"],
        defaults: Vec::new,
    },
    Rules {
        ty: "aws_autoscaling_group",
        mapped: &[
            "name",
            "min_size",
            "max_size",
            "desired_capacity",
            "vpc_zone_identifier",
            "target_group_arns",
            "health_check_grace_period",
            "health_check_type",
            "launch_template",
            "tag",
        ],
        computed: &[
            "arn",
            "id",
            "predicted_capacity",
            "availability_zones",
            "service_linked_role_arn",
            "name_prefix",
            "desired_capacity_type",
        ],
        terraform_only: &[
            "wait_for_capacity_timeout",
            "wait_for_elb_capacity",
            "min_elb_capacity",
            "force_delete",
            "force_delete_warm_pool",
            "ignore_failed_scaling_activities",
            "timeouts",
        ],
        defaults: || {
            vec![
                ("default_cooldown", json!(300)),
                ("metrics_granularity", json!("1Minute")),
            ]
        },
    },
    Rules {
        ty: "aws_autoscaling_policy",
        mapped: &[
            "name",
            "autoscaling_group_name",
            "policy_type",
            "target_tracking_configuration",
        ],
        computed: &["arn", "id"],
        terraform_only: &[],
        defaults: || vec![("enabled", json!(true))],
    },
    Rules {
        ty: "aws_autoscaling_attachment",
        mapped: &["autoscaling_group_name", "lb_target_group_arn"],
        computed: &["id"],
        terraform_only: &[],
        defaults: Vec::new,
    },
    Rules {
        ty: "aws_db_instance",
        mapped: &[
            "identifier",
            "engine",
            "engine_version",
            "instance_class",
            "allocated_storage",
            "max_allocated_storage",
            "multi_az",
            "backup_retention_period",
            "deletion_protection",
            "db_name",
            "username",
            "db_subnet_group_name",
            "vpc_security_group_ids",
            "storage_encrypted",
            "storage_type",
            "publicly_accessible",
            "port",
            "password",
            "password_wo",
            "parameter_group_name",
            "option_group_name",
        ],
        computed: &[
            "address",
            "arn",
            "endpoint",
            "id",
            "resource_id",
            "status",
            "latest_restorable_time",
            "availability_zone",
            "backup_window",
            "maintenance_window",
            "ca_cert_identifier",
            "engine_version_actual",
            "hosted_zone_id",
            "kms_key_id",
            "license_model",
            "listener_endpoint",
            "replicas",
            "master_user_secret",
            "storage_throughput",
            "iops",
            "network_type",
            "identifier_prefix",
        ],
        terraform_only: &[
            "apply_immediately",
            "skip_final_snapshot",
            "final_snapshot_identifier",
            "delete_automated_backups",
            "allow_major_version_upgrade",
            "timeouts",
            "password_wo_version",
            "blue_green_update",
            "snapshot_identifier",
        ],
        defaults: || {
            vec![
                ("auto_minor_version_upgrade", json!(true)),
                ("backup_target", json!("region")),
            ]
        },
    },
    Rules {
        ty: "aws_db_subnet_group",
        mapped: &["name", "subnet_ids"],
        computed: &[
            "arn",
            "id",
            "vpc_id",
            "description",
            "supported_network_types",
            "name_prefix",
        ],
        terraform_only: &[],
        defaults: Vec::new,
    },
    Rules {
        ty: "aws_efs_file_system",
        mapped: &[
            "creation_token",
            "encrypted",
            "throughput_mode",
            "provisioned_throughput_in_mibps",
            "performance_mode",
            "lifecycle_policy",
        ],
        computed: &[
            "arn",
            "id",
            "dns_name",
            "name",
            "number_of_mount_targets",
            "owner_id",
            "size_in_bytes",
            "kms_key_id",
            "availability_zone_id",
            "availability_zone_name",
        ],
        terraform_only: &[],
        defaults: Vec::new,
    },
    Rules {
        ty: "aws_efs_backup_policy",
        mapped: &["file_system_id", "backup_policy"],
        computed: &["id"],
        terraform_only: &[],
        defaults: Vec::new,
    },
    Rules {
        ty: "aws_efs_mount_target",
        mapped: &["file_system_id", "subnet_id", "security_groups"],
        computed: &[
            "availability_zone_id",
            "availability_zone_name",
            "dns_name",
            "file_system_arn",
            "id",
            "ip_address",
            "mount_target_dns_name",
            "network_interface_id",
            "owner_id",
            "ip_address_type",
            "ipv6_address",
        ],
        terraform_only: &["timeouts"],
        defaults: Vec::new,
    },
    Rules {
        ty: "aws_security_group",
        mapped: &["name", "description", "vpc_id", "ingress", "egress"],
        computed: &["arn", "id", "owner_id", "name_prefix"],
        terraform_only: &["revoke_rules_on_delete", "timeouts"],
        defaults: Vec::new,
    },
    Rules {
        ty: "aws_security_group_rule",
        mapped: &[
            "type",
            "from_port",
            "to_port",
            "protocol",
            "security_group_id",
            "cidr_blocks",
            "ipv6_cidr_blocks",
            "source_security_group_id",
            "self",
            "description",
            "prefix_list_ids",
        ],
        computed: &["id", "security_group_rule_id"],
        terraform_only: &["timeouts"],
        defaults: Vec::new,
    },
    Rules {
        ty: "aws_vpc_security_group_ingress_rule",
        mapped: &[
            "security_group_id",
            "ip_protocol",
            "from_port",
            "to_port",
            "cidr_ipv4",
            "cidr_ipv6",
            "referenced_security_group_id",
            "description",
            "prefix_list_id",
        ],
        computed: &["arn", "id", "security_group_rule_id"],
        terraform_only: &[],
        defaults: Vec::new,
    },
    Rules {
        ty: "aws_vpc_security_group_egress_rule",
        mapped: &[
            "security_group_id",
            "ip_protocol",
            "from_port",
            "to_port",
            "cidr_ipv4",
            "cidr_ipv6",
            "referenced_security_group_id",
            "description",
            "prefix_list_id",
        ],
        computed: &["arn", "id", "security_group_rule_id"],
        terraform_only: &[],
        defaults: Vec::new,
    },
    Rules {
        ty: "aws_ssm_parameter",
        mapped: &[
            "name",
            "type",
            "value",
            "value_wo",
            "insecure_value",
            "description",
        ],
        computed: &["arn", "id", "version"],
        terraform_only: &["overwrite", "has_value_wo", "value_wo_version"],
        defaults: || {
            vec![
                ("data_type", json!("text")),
                ("tier", json!("Standard")),
                ("key_id", json!("alias/aws/ssm")),
            ]
        },
    },
];

/// The rules of `ty`, when it is a type the import knows.
pub fn rules(ty: &str) -> Option<&'static Rules> {
    RULES.iter().find(|r| r.ty == ty)
}

/// Attributes whose value is a secret: never read, never printed.
pub fn is_secret(r: &Resource, attr: &str) -> bool {
    matches!(
        (r.ty.as_str(), attr),
        ("aws_db_instance", "password" | "password_wo")
            | ("aws_ssm_parameter", "value" | "value_wo" | "insecure_value")
    )
}

/// Unset: null, empty, false, zero, or a block whose every field is unset.
pub fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.iter().all(is_unset),
        Value::Object(o) => o.values().all(is_unset),
    }
}

/// A value as the report shows it (never a secret's; long values cut).
pub fn shown(r: &Resource, attr: &str, v: &Value) -> Option<String> {
    if is_secret(r, attr) || r.sensitive.contains(attr) {
        return None;
    }
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some(if s.len() > 120 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(117).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    })
}

/// The attributes of `r` that are neither mapped, computed, Terraform's own, unset nor equal
/// to AWS's default: reported as not carried over.
pub fn leftovers(r: &Resource) -> Vec<Unmapped> {
    let Some(rules) = rules(&r.ty) else {
        return Vec::new();
    };
    let defaults = (rules.defaults)();
    let mut out = Vec::new();
    for (attr, v) in &r.values {
        let a = attr.as_str();
        if rules.mapped.contains(&a)
            || rules.computed.contains(&a)
            || rules.terraform_only.contains(&a)
            || TAGS.contains(&a)
        {
            continue;
        }
        // Where AWS's default is known, only a different value is said (a `false` where AWS
        // says `true` is a setting, not an absence); numbers may come as strings (`"300"`).
        match defaults.iter().find(|(k, _)| *k == a) {
            Some((_, d))
                if d == v
                    || v.as_str()
                        .and_then(|text| text.parse::<Value>().ok())
                        .as_ref()
                        == Some(d) =>
            {
                continue;
            }
            Some(_) if v.is_null() => continue,
            Some(_) => {}
            None if is_unset(v) => continue,
            None => {}
        }
        out.push(Unmapped {
            address: r.address.clone(),
            attribute: attr.clone(),
            value: shown(r, attr, v),
            reason: "not managed by presta-reconciler: kept as it is on the live resource, but a resource the reconciler re-creates will not have it".into(),
        });
    }
    out
}

/// The text of a launch template's user data (base64, plain or gzip).
pub fn user_data(r: &Resource) -> Option<String> {
    if r.ty != "aws_launch_template" {
        return None;
    }
    let b64 = r.str("user_data")?;
    let bytes = aws_smithy_types::base64::decode(b64).ok()?;
    use std::io::Read;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        if flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .is_ok()
        {
            return Some(text);
        }
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_values() {
        assert!(is_unset(&json!(null)));
        assert!(is_unset(&json!([{"bucket": "", "enabled": false}])));
        assert!(!is_unset(&json!([{"bucket": "logs", "enabled": true}])));
        assert!(!is_unset(&json!(true)));
    }
}
