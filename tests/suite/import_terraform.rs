//! Taking over a shop that Terraform built (docs/migrate-from-terraform.md), end to end: the
//! runbook's Terraform configuration (tests/fixtures/terraform/runbook) is applied by the real
//! `terraform` with the hashicorp/aws provider from the local filesystem mirror, to the
//! emulator; the product imports it from `terraform show -json` and from the raw state, adopts
//! it in place, Terraform is detached with the printed `terraform state rm` commands, and the
//! daemon manages the shop.
//!
//! The mirror is found through a setting, never a path in the code: `PRESTA_TF_MIRROR`, or a
//! `filesystem_mirror` in the file `TF_CLI_CONFIG_FILE` names. Without Terraform or the mirror
//! the test says so and stops, unless `PRESTA_REQUIRE_TERRAFORM=1` (CI sets it) makes that a
//! failure.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Env, root};
use presta_emulator::Emulator;

/// The database password Terraform is given: it must never show anywhere the product writes.
const PASSWORD: &str = "Runbook-Secret-7q2XkLm9";

fn mirror() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("PRESTA_TF_MIRROR") {
        let p = PathBuf::from(p);
        return if p.is_dir() {
            Ok(p)
        } else {
            Err(format!(
                "PRESTA_TF_MIRROR={} is not a directory",
                p.display()
            ))
        };
    }
    if let Ok(cfg) = std::env::var("TF_CLI_CONFIG_FILE")
        && let Ok(text) = std::fs::read_to_string(&cfg)
        && let Some(at) = text.find("filesystem_mirror")
        && let Some(path) = text[at..]
            .split("path")
            .nth(1)
            .and_then(|rest| rest.split('"').nth(1))
    {
        return Ok(PathBuf::from(path));
    }
    Err("neither PRESTA_TF_MIRROR nor a filesystem_mirror in TF_CLI_CONFIG_FILE names the hashicorp/aws provider mirror".into())
}

/// Terraform and its provider mirror, or why not.
fn terraform_ready() -> Option<PathBuf> {
    let missing = match Command::new("terraform").arg("version").output() {
        Ok(o) if o.status.success() => mirror().err(),
        _ => Some("`terraform` is not on the PATH".to_string()),
    };
    match missing {
        None => mirror().ok(),
        Some(why) if std::env::var("PRESTA_REQUIRE_TERRAFORM").as_deref() == Ok("1") => {
            panic!("PRESTA_REQUIRE_TERRAFORM=1 but {why}")
        }
        Some(why) => {
            // Straight to the terminal, past the test harness's capture of `eprintln!`, so
            // that a skip is seen in `cargo test`'s output.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED import_terraform: {why}. Set PRESTA_TF_MIRROR to the directory holding registry.terraform.io/hashicorp/aws to run it. ***\n"
            );
            None
        }
    }
}

struct Tf {
    dir: PathBuf,
    env: Vec<(String, String)>,
    vars: Vec<String>,
}

impl Tf {
    fn new(env: &Env, mirror: &Path) -> Tf {
        let dir = env.dir.path().join("terraform");
        copy_dir(&root().join("tests/fixtures/terraform/runbook"), &dir);
        let rc = dir.join("cli.tfrc");
        std::fs::write(
            &rc,
            format!(
                "provider_installation {{\n  filesystem_mirror {{\n    path = \"{}\"\n    include = [\"registry.terraform.io/hashicorp/aws\"]\n  }}\n  direct {{ exclude = [\"registry.terraform.io/hashicorp/aws\"] }}\n}}\n",
                mirror.display()
            ),
        )
        .unwrap();
        let mut vars: Vec<(String, String)> = env
            .emu
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        vars.push(("TF_CLI_CONFIG_FILE".into(), rc.display().to_string()));
        vars.push(("TF_IN_AUTOMATION".into(), "1".into()));
        vars.push(("CHECKPOINT_DISABLE".into(), "1".into()));
        vars.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
        let tf = Tf {
            dir,
            env: vars,
            vars: vec![
                format!("-var=endpoint={}", env.emu.endpoint()),
                format!("-var=db_password={PASSWORD}"),
            ],
        };
        tf.run(&["init", "-input=false", "-no-color"], false);
        tf
    }

    fn run(&self, args: &[&str], with_vars: bool) -> (i32, String) {
        let mut cmd = Command::new("terraform");
        cmd.current_dir(&self.dir).args(args);
        if with_vars {
            cmd.args(&self.vars);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("terraform runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let code = out.status.code().unwrap_or(-1);
        assert!(
            code == 0 || args.contains(&"-detailed-exitcode"),
            "terraform {args:?} failed:\n{text}"
        );
        (code, text)
    }

    fn sh(&self, line: &str) -> String {
        let mut cmd = Command::new("sh");
        cmd.current_dir(&self.dir).args(["-c", line]);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn instance_ids(env: &Env, group: &str) -> BTreeSet<String> {
    let asg = aws_sdk_autoscaling::Client::new(&env.sdk().await);
    let out = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .unwrap();
    out.auto_scaling_groups()[0]
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_terraform_built_is_imported_adopted_detached_and_managed() {
    let Some(mirror) = terraform_ready() else {
        return;
    };
    let emu = Emulator::builder()
        .seed("tfshop")
        .instance_refresh_seconds(1.0)
        .start()
        .expect("the emulator starts");
    let env = Env {
        emu,
        dir: tempfile::tempdir().unwrap(),
    };
    let tf = Tf::new(&env, &mirror);
    tf.run(
        &["apply", "-auto-approve", "-input=false", "-no-color"],
        true,
    );
    let show = env.dir.path().join("show.json");
    std::fs::write(&show, tf.sh("terraform show -json")).unwrap();
    let raw = tf.dir.join("terraform.tfstate");
    let mut everything_written = String::new();

    // ---- import, from both shapes of the state: the same stack, and `validate` accepts it
    let from_show = env.dir.path().join("shop.yaml");
    let from_raw = env.dir.path().join("shop-raw.yaml");
    for (state, out) in [(&show, &from_show), (&raw, &from_raw)] {
        let o = env.cli(&[
            "import",
            "terraform",
            "--state",
            state.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        everything_written.push_str(&text(&o));
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(text(&o).contains("(it validates)"), "{}", text(&o));
    }
    let body = |p: &Path| {
        let t = std::fs::read_to_string(p).unwrap();
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        body(&from_show),
        body(&from_raw),
        "both shapes give one stack"
    );
    let yaml = std::fs::read_to_string(&from_show).unwrap();
    everything_written.push_str(&yaml);
    assert!(yaml.contains("database: ps-db"), "{yaml}");
    assert!(
        yaml.contains("dbPasswordParameter: /prestashop/db_password"),
        "{yaml}"
    );
    let v = env.cli(&["validate", from_show.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    // The narrowed IAM policy covers the parameter the shop keeps outside the prefix.
    let policy = env.cli(&["iam-policy", "-f", from_show.to_str().unwrap()]);
    assert_eq!(policy.status.code(), Some(0), "{}", text(&policy));
    assert!(
        text(&policy).contains("parameter/prestashop/db_password"),
        "{}",
        text(&policy)
    );

    // ---- adopt: tags only, then a plan that creates, replaces and deletes nothing
    let before = instance_ids(&env, "prestashop-asg").await;
    assert_eq!(before.len(), 2, "Terraform's group runs two instances");
    let import_adopt = |extra: &[&str]| {
        let mut args = vec![
            "import",
            "terraform",
            "--state",
            show.to_str().unwrap(),
            "-o",
            from_show.to_str().unwrap(),
            "--adopt",
        ];
        args.extend_from_slice(extra);
        env.cli(&args)
    };
    let dry = import_adopt(&["--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert!(
        text(&dry).contains("would tag 12 resources"),
        "{}",
        text(&dry)
    );
    let adopt = import_adopt(&[]);
    let adopt_text = text(&adopt);
    everything_written.push_str(&adopt_text);
    assert_eq!(adopt.status.code(), Some(0), "{adopt_text}");
    assert!(adopt_text.contains("tagging 12 resources"), "{adopt_text}");
    // Safe to run again: nothing left to tag.
    let again = import_adopt(&[]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(
        text(&again).matches("already tagged").count(),
        12,
        "{}",
        text(&again)
    );

    let (code, plan) = env.plan_json(&from_show);
    let plan_text = serde_json::to_string(&plan).unwrap();
    everything_written.push_str(&plan_text);
    assert_eq!(code, 2, "the takeover's changes are pending: {plan:#}");
    let stack = &plan["stacks"][0];
    for c in stack["changes"].as_array().unwrap() {
        let action = c["action"].as_str().unwrap();
        assert!(
            !["create", "restore", "replace", "delete"].contains(&action),
            "an adopted stack's plan {action}s {}: {c:#}",
            c["name"]
        );
    }
    let held = &stack["held"];
    assert!(
        held["reason"]
            .as_str()
            .unwrap()
            .contains("taken over from another tool"),
        "{held:#}"
    );
    let hash = held["plan_hash"].as_str().unwrap().to_string();
    // Not approved: nothing rolls.
    let (code, _) = env.json(&[
        "apply",
        "-f",
        from_show.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(code, 3, "held until approved");
    assert_eq!(
        instance_ids(&env, "prestashop-asg").await,
        before,
        "the instances keep their ids"
    );

    // ---- detach Terraform: the printed commands; its plan then wants to create, not destroy
    let commands: Vec<String> = adopt_text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("terraform state rm "))
        .map(str::to_string)
        .collect();
    assert_eq!(commands.len(), 19, "{adopt_text}");
    for c in &commands {
        tf.sh(c);
    }
    let (code, tf_plan) = tf.run(
        &["plan", "-input=false", "-no-color", "-detailed-exitcode"],
        true,
    );
    assert_eq!(code, 2, "{tf_plan}");
    assert!(
        tf_plan.contains("19 to add, 0 to change, 0 to destroy"),
        "{tf_plan}"
    );

    // ---- the approved takeover: the bootstrap rolls through the group
    let approved = env.cli(&[
        "apply",
        "-f",
        from_show.to_str().unwrap(),
        "--approve",
        &hash,
    ]);
    everything_written.push_str(&text(&approved));
    assert_eq!(approved.status.code(), Some(0), "{}", text(&approved));
    let marks = aws_sdk_autoscaling::Client::new(&env.sdk().await)
        .describe_tags()
        .filters(
            aws_sdk_autoscaling::types::Filter::builder()
                .name("auto-scaling-group")
                .values("prestashop-asg")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = marks.tags().iter().filter_map(|t| t.key()).collect();
    assert!(keys.contains(&"managed-by"), "{keys:?}");
    assert!(
        !keys.contains(&"presta-reconciler/adopted"),
        "the approved first changes are applied: the adoption mark is off ({keys:?})"
    );

    // ---- the daemon manages the imported shop: healthy, and drift on an imported group
    // and database is healed
    let daemon = env.serve(&from_show, &["--interval", "600"]);
    daemon.eventually(60, "the imported stack converges and is healthy", |d| {
        let s = d.json("GET", "/stacks/prestashop");
        s["state"] == "converged" && s["health"]["verdict"] == "healthy"
    });
    // The approved plan rolls the group onto the product's bootstrap (the emulator's refresh
    // does not replace the instances it lists).
    let refreshes = aws_sdk_autoscaling::Client::new(&env.sdk().await)
        .describe_instance_refreshes()
        .auto_scaling_group_name("prestashop-asg")
        .send()
        .await
        .unwrap();
    assert_eq!(
        refreshes.instance_refreshes().len(),
        1,
        "one refresh, once approved"
    );
    let status = refreshes.instance_refreshes()[0]
        .status()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    assert!(
        ["Pending", "InProgress", "Successful"].contains(&status.as_str()),
        "the approved refresh runs: {status}"
    );
    let sdk = env.sdk().await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let group = ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values("prestashop-ec2-sg")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .security_groups()[0]
        .group_id()
        .unwrap()
        .to_string();
    ec2.authorize_security_group_ingress()
        .group_id(&group)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(
                    aws_sdk_ec2::types::IpRange::builder()
                        .cidr_ip("0.0.0.0/0")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let rds = aws_sdk_rds::Client::new(&sdk);
    rds.modify_db_instance()
        .db_instance_identifier("ps-db")
        .publicly_accessible(true)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    let (status, body) = daemon.http("POST", "/reconcile/prestashop?wait=true", None);
    assert_eq!(status, 200, "{body}");
    let rules = ec2
        .describe_security_groups()
        .group_ids(&group)
        .send()
        .await
        .unwrap()
        .security_groups()[0]
        .ip_permissions()
        .iter()
        .any(|p| p.from_port() == Some(22));
    assert!(
        !rules,
        "the SSH rule opened by hand on an imported group was revoked"
    );
    let db = rds
        .describe_db_instances()
        .db_instance_identifier("ps-db")
        .send()
        .await
        .unwrap();
    assert_eq!(
        db.db_instances()[0].publicly_accessible(),
        Some(false),
        "the imported database is private again"
    );
    everything_written.push_str(&daemon.log_text());
    drop(daemon);

    // ---- no value of the password anywhere the product wrote
    assert!(
        !everything_written.contains(PASSWORD),
        "the database password leaked into the product's output"
    );

    // ---- destroy keeps the data, as for any stack
    let d = env.cli(&[
        "destroy",
        "--stack",
        "prestashop",
        "--confirm",
        "prestashop",
        "-f",
        from_show.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&d.stdout)
        .unwrap_or_else(|_| panic!("destroy printed no JSON: {}", text(&d)));
    assert_eq!(d.status.code(), Some(0), "{report:#}");
    assert!(
        report["final_snapshot"]
            .as_str()
            .is_some_and(|s| s.starts_with("ps-db-final-")),
        "{report:#}"
    );
    let kept: Vec<&str> = report["kept"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kind"].as_str())
        .collect();
    assert!(kept.contains(&"file_system"), "{report:#}");
}
