//! The artefacts in `deploy/` parse, agree with each other and with the code: the IAM policy
//! grants exactly the operations the drivers call (read from their source), the service
//! definitions use the binary's own health check, stop timeouts exceed the drain time, and
//! the systemd unit passes `systemd-analyze verify` where it is installed.

use crate::common;

use std::collections::BTreeSet;
use std::process::Command;

use common::root;

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json(path: &str) -> serde_json::Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// `describe_db_instances` → `describedbinstances` (IAM action names are case-insensitive).
fn squash(s: &str) -> String {
    s.replace('_', "").to_lowercase()
}

/// Every `aws.<client>.<operation>()` call in the drivers' code (tests excluded), as
/// `iam-prefix:operation` in lower case.
fn operations_called_by_the_drivers() -> BTreeSet<String> {
    let prefixes = [
        ("ec2", "ec2"),
        ("elbv2", "elasticloadbalancing"),
        ("autoscaling", "autoscaling"),
        ("rds", "rds"),
        ("efs", "elasticfilesystem"),
        ("ssm", "ssm"),
        ("acm", "acm"),
        ("route53", "route53"),
        ("sqs", "sqs"),
        ("events", "events"),
        ("cloudtrail", "cloudtrail"),
        ("sts", "sts"),
        ("self.client", "dynamodb"),
    ];
    let mut ops = BTreeSet::new();
    let dir = root().join("crates/presta-aws/src");
    // `adopt.rs` is the takeover a person runs (`import terraform --adopt`) with their own
    // credentials; the daemon's one call from it lives in auto_scaling_group.rs.
    // A kind split into a folder (`dns_record/`) is read file by file.
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .flat_map(|p| {
            if p.is_dir() {
                std::fs::read_dir(&p)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .collect()
            } else {
                vec![p]
            }
        })
        .filter(|p| !p.ends_with("adopt.rs"))
        .chain([root().join("crates/presta-controller/src/lease.rs")]);
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        // Collapse whitespace so that calls split over lines read `ec2.describe_vpcs()`.
        let flat: String = code.split_whitespace().collect::<Vec<_>>().join("");
        for (client, prefix) in prefixes {
            let needle = format!("{client}.");
            let mut rest = flat.as_str();
            while let Some(i) = rest.find(&needle) {
                let before = rest[..i].chars().last();
                rest = &rest[i + needle.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue; // part of a longer name
                }
                let op: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !op.is_empty() && rest[op.len()..].starts_with("()") {
                    // SQS's DeleteMessageBatch is allowed by `sqs:DeleteMessage`.
                    let op = squash(&op).replace("deletemessagebatch", "deletemessage");
                    ops.insert(format!("{prefix}:{op}"));
                }
            }
        }
    }
    ops
}

fn policy_actions(policy: &serde_json::Value) -> Vec<(String, &serde_json::Value)> {
    let mut out = Vec::new();
    for st in policy["Statement"].as_array().unwrap() {
        assert_eq!(st["Effect"], "Allow");
        let actions: Vec<&str> = match &st["Action"] {
            serde_json::Value::String(s) => vec![s.as_str()],
            serde_json::Value::Array(a) => a.iter().map(|v| v.as_str().unwrap()).collect(),
            other => panic!("Action must be a string or a list: {other}"),
        };
        for a in actions {
            assert!(!a.contains('*'), "no wildcard actions: {a}");
            let (prefix, op) = a.split_once(':').unwrap();
            out.push((format!("{prefix}:{}", squash(op)), st));
        }
    }
    out
}

/// Actions AWS checks on the caller without a call of that name in the code.
const IMPLICIT: &[&str] = &[
    "ec2:runinstances",            // the group launches from the stack's template
    "iam:passrole",                // the template hands the instance profile to EC2
    "iam:createservicelinkedrole", // first ALB/ASG/RDS/EFS of an account
    "ssm:addtagstoresource",       // PutParameter with tags
    "rds:createdbsnapshot",        // DeleteDBInstance with a final snapshot
    "acm:addtagstocertificate",    // RequestCertificate with tags
];

#[test]
fn the_iam_policy_grants_exactly_what_the_code_calls() {
    let called = operations_called_by_the_drivers();
    assert!(
        called.len() > 40,
        "the scan found the drivers' calls: {called:?}"
    );
    assert!(called.contains("rds:describedbinstances"));
    assert!(called.contains("elasticloadbalancing:modifytargetgroup"));
    let policy = json("deploy/iam/policy.json");
    assert_eq!(policy["Version"], "2012-10-17");
    let granted = policy_actions(&policy);
    let names: BTreeSet<String> = granted.iter().map(|(a, _)| a.clone()).collect();
    let missing: Vec<&String> = called.difference(&names).collect();
    assert!(
        missing.is_empty(),
        "the policy lacks operations the code calls: {missing:?}"
    );
    let extra: Vec<&String> = names
        .difference(&called)
        .filter(|a| !IMPLICIT.contains(&a.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "the policy grants what the code never calls: {extra:?}"
    );
}

/// The shipped policy, and the one `iam-policy` generates for the demo configuration.
fn policies() -> Vec<(&'static str, serde_json::Value)> {
    let out = Command::new(env!("CARGO_BIN_EXE_presta-reconciler"))
        .current_dir(root())
        .args(["iam-policy", "-f", "config/demo.yaml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = serde_json::from_slice(&out.stdout).expect("iam-policy prints JSON");
    vec![
        ("deploy/iam/policy.json", json("deploy/iam/policy.json")),
        ("iam-policy -f config/demo.yaml", generated),
    ]
}

#[test]
fn the_generated_policy_passes_only_the_demo_role_and_its_parameters() {
    let (_, generated) = policies().pop().unwrap();
    let text = generated.to_string();
    let mut pass_role = Vec::new();
    for (action, st) in policy_actions(&generated) {
        if action == "iam:passrole" {
            pass_role.push(st["Resource"].clone());
        }
    }
    assert_eq!(
        pass_role,
        vec![serde_json::json!([
            "arn:aws:iam::*:role/presta-demo-instance"
        ])]
    );
    assert!(text.contains("arn:aws:ssm:eu-west-3:*:parameter/presta-reconciler/demo/*"));
    assert!(!text.contains("parameter/presta-reconciler/*\""));
    // Same actions as the shipped policy: only resources are narrowed, and Route 53 changes
    // go when no stack has a hosted zone (the demo has none).
    let shipped = json("deploy/iam/policy.json");
    let names = |p: &serde_json::Value| -> BTreeSet<String> {
        policy_actions(p).into_iter().map(|(a, _)| a).collect()
    };
    let mut expected = names(&shipped);
    assert!(expected.remove("route53:changeresourcerecordsets"));
    assert_eq!(names(&generated), expected);
}

#[test]
fn every_write_in_the_policy_is_bounded_by_the_ownership_tag_or_a_resource() {
    for (name, policy) in policies() {
        writes_are_bounded(name, &policy);
    }
}

fn writes_are_bounded(name: &str, policy: &serde_json::Value) {
    for (action, st) in policy_actions(policy) {
        let op = action.split_once(':').unwrap().1;
        if op.starts_with("describe") || op.starts_with("get") || op.starts_with("list") {
            continue;
        }
        let conditioned = st.get("Condition").is_some();
        let scoped = match &st["Resource"] {
            serde_json::Value::String(r) => r != "*",
            serde_json::Value::Array(a) => a.iter().all(|r| r != "*"),
            _ => false,
        };
        assert!(
            conditioned || scoped,
            "{name}: {action} is granted on every resource without a condition ({})",
            st["Sid"]
        );
        if action == "ssm:sendcommand" {
            // Run Command: the shell document, or the instances of the stacks' groups only.
            let r = st["Resource"].to_string();
            let cond = st["Condition"].to_string();
            assert!(
                r.contains("document/AWS-RunShellScript")
                    || (r.contains(":instance/") && cond.contains("aws:autoscaling:groupName")),
                "{name}: ssm:SendCommand too wide: {r} {cond}"
            );
            continue;
        }
        if conditioned
            && action != "iam:passrole"
            && action != "iam:createservicelinkedrole"
            && action != "ec2:runinstances"
        {
            let cond = st["Condition"].to_string();
            assert!(
                cond.contains("managed-by") && cond.contains("presta-reconciler"),
                "{action}: {cond}"
            );
        }
    }
}

#[test]
fn the_container_and_ecs_definitions_use_the_binary_health_check_and_one_writer() {
    let task = json("deploy/ecs/task-definition.json");
    let c = &task["containerDefinitions"][0];
    let check: Vec<&str> = c["healthCheck"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(check, ["CMD", "/usr/local/bin/presta-reconciler", "probe"]);
    let env: std::collections::BTreeMap<&str, &str> = c["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    let drain: u64 = env["PRESTA_DRAIN_TIMEOUT"].parse().unwrap();
    assert!(
        c["stopTimeout"].as_u64().unwrap() > drain,
        "ECS must wait longer than the drain"
    );
    assert_eq!(c["readonlyRootFilesystem"], true);
    assert!(
        c["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "PRESTA_TOKEN"),
        "listening on 0.0.0.0 needs the token"
    );
    let service = json("deploy/ecs/service.json");
    assert_eq!(service["desiredCount"], 1);
    assert_eq!(
        service["deploymentConfiguration"]["maximumPercent"], 100,
        "never two writers"
    );
    // The two-task layout is safe only with the lease, on the table the policy grants.
    let ha = json("deploy/ecs/service-ha.json");
    assert_eq!(ha["desiredCount"], 2);
    let ha_task = json("deploy/ecs/task-definition-ha.json");
    assert_eq!(ha["taskDefinition"], ha_task["family"]);
    let env = &ha_task["containerDefinitions"][0]["environment"];
    let lease = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "PRESTA_LEASE")
        .expect("the HA task runs with a lease");
    let table = lease["value"]
        .as_str()
        .unwrap()
        .strip_prefix("dynamodb:")
        .unwrap();
    assert!(
        read("deploy/iam/policy.json").contains(&format!("table/{table}\"")),
        "the policy grants the lease table {table}"
    );
    assert_eq!(
        ha_task["containerDefinitions"][0]["stopTimeout"],
        c["stopTimeout"]
    );

    let dockerfile = read("deploy/container/Dockerfile");
    assert!(dockerfile.contains(r#"CMD ["/usr/local/bin/presta-reconciler", "probe"]"#));
    assert!(dockerfile.contains("USER nonroot"));
    assert!(
        dockerfile
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .all(|l| !l.contains("curl")),
        "the image needs no curl"
    );
}

/// `serve --help`, to check that the deployment files only use real settings.
fn serve_help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_presta-reconciler"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    // Help text wraps: fold it to one line of single spaces.
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_systemd_unit_is_hardened_and_waits_longer_than_the_drain() {
    let unit = read("deploy/systemd/presta-reconciler.service");
    for line in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "CapabilityBoundingSet=",
    ] {
        assert!(unit.lines().any(|l| l.trim() == line), "missing `{line}`");
    }
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .unwrap()
        .parse()
        .unwrap();
    let env = read("deploy/systemd/presta-reconciler.env.example");
    let drain: u64 = env
        .lines()
        .find_map(|l| l.strip_prefix("PRESTA_DRAIN_TIMEOUT="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        stop > drain,
        "TimeoutStopSec={stop} must exceed the drain ({drain}s)"
    );
    // Every variable the files set is one the daemon reads.
    let help = serve_help();
    let task = read("deploy/ecs/task-definition.json");
    for text in [&env, &unit, &task] {
        for var in text
            .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .filter(|w| w.starts_with("PRESTA_") && w.len() > 7)
        {
            let global = ["PRESTA_LOG_FORMAT", "PRESTA_LOG_LEVEL", "PRESTA_TOKEN"];
            assert!(
                global.contains(&var) || help.contains(&format!("[env: {var}=")),
                "{var} is not a setting of `serve`:\n{help}"
            );
        }
    }
}

#[test]
fn systemd_analyze_verifies_the_unit_where_available() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: skipped");
        return;
    };
    assert!(probe.status.success());
    let dir = tempfile::tempdir().unwrap();
    // verify checks that ExecStart exists: point it at the binary under test.
    let unit = read("deploy/systemd/presta-reconciler.service").replace(
        "/usr/local/bin/presta-reconciler",
        env!("CARGO_BIN_EXE_presta-reconciler"),
    );
    let good = dir.path().join("presta-reconciler.service");
    std::fs::write(&good, &unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And it does catch a broken unit.
    let bad = dir.path().join("broken.service");
    std::fs::write(&bad, unit.replace("ExecStart=", "ExecStart=/nonexistent/")).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success() || !out.stderr.is_empty());
}

#[test]
fn tags_can_only_be_put_on_resources_being_created_or_already_owned() {
    for (_, policy) in policies() {
        tagging_is_bounded(&policy);
    }
}

fn tagging_is_bounded(policy: &serde_json::Value) {
    let tagging = [
        "ec2:createtags",
        "elasticloadbalancing:addtags",
        "elasticfilesystem:tagresource",
        "rds:addtagstoresource",
        "autoscaling:createorupdatetags",
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (action, st) in policy_actions(policy) {
        if !tagging.contains(&action.as_str()) {
            continue;
        }
        seen.insert(action.clone());
        let cond = st["Condition"].to_string();
        let on_everything = st["Resource"] == "*";
        let being_created = cond.contains("CreateAction");
        let already_owned = cond.contains("aws:ResourceTag/managed-by");
        assert!(
            being_created || already_owned || !on_everything,
            "{action} in {} could put the ownership tag on any existing resource: {cond}",
            st["Sid"]
        );
        if !on_everything && !already_owned {
            // Scoped by the product's resource names, and still only with the ownership tag.
            assert!(
                cond.contains("aws:RequestTag/managed-by"),
                "{action}: {cond}"
            );
        }
    }
    assert_eq!(seen.len(), tagging.len(), "{seen:?}");
}

#[test]
fn the_shipped_policy_is_the_one_generated_from_the_kinds() {
    let out = Command::new(env!("CARGO_BIN_EXE_presta-reconciler"))
        .args(["iam-policy", "--reference"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        generated,
        json("deploy/iam/policy.json"),
        "deploy/iam/policy.json is not the policy generated from the kinds' declarations: \
         regenerate it with `cargo run -- iam-policy --reference > deploy/iam/policy.json`"
    );
}

#[test]
fn instances_are_launched_only_from_templates_carrying_the_ownership_tag() {
    for (name, policy) in policies() {
        let mut template_grants = 0;
        for (action, st) in policy_actions(&policy) {
            if action != "ec2:runinstances" {
                continue;
            }
            let resources: Vec<String> = match &st["Resource"] {
                serde_json::Value::String(r) => vec![r.clone()],
                serde_json::Value::Array(a) => {
                    a.iter().map(|r| r.as_str().unwrap().to_string()).collect()
                }
                other => panic!("{other}"),
            };
            assert!(
                !resources.iter().any(|r| r == "*"),
                "{name}: ec2:RunInstances on every resource would cover any launch template ({})",
                st["Sid"]
            );
            if resources.iter().any(|r| r.contains(":launch-template/")) {
                template_grants += 1;
                assert!(
                    st["Condition"]
                        .to_string()
                        .contains("aws:ResourceTag/managed-by"),
                    "{name}: launching from a template without the ownership tag ({})",
                    st["Sid"]
                );
            }
        }
        assert_eq!(template_grants, 1, "{name}");
    }
}

#[test]
fn pass_role_is_limited_to_the_instance_roles() {
    for (_, policy) in policies() {
        for (action, st) in policy_actions(&policy) {
            if action == "iam:passrole" {
                assert_ne!(st["Resource"], "*", "iam:PassRole on every role");
                assert!(!st["Resource"].to_string().contains("\"*\""));
                assert!(st["Condition"].to_string().contains("ec2.amazonaws.com"));
            }
        }
    }
}
