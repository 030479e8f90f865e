//! A shop's whole life against the emulator: destroy keeps the data, apply brings the shop
//! back from it, and a lost data-bearing resource is restored, adopted or blocked — never
//! rebuilt empty next to the other half of the shop.

use crate::common;

use common::{Env, change};

async fn clients(
    env: &Env,
) -> (
    aws_sdk_rds::Client,
    aws_sdk_efs::Client,
    aws_sdk_ssm::Client,
    aws_sdk_ec2::Client,
) {
    let sdk = env.sdk().await;
    (
        aws_sdk_rds::Client::new(&sdk),
        aws_sdk_efs::Client::new(&sdk),
        aws_sdk_ssm::Client::new(&sdk),
        aws_sdk_ec2::Client::new(&sdk),
    )
}

fn destroy(env: &Env, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec![
        "destroy",
        "-f",
        "config/demo.yaml",
        "--stack",
        "demo",
        "--confirm",
        "demo",
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    env.json(&args)
}

async fn param_versions(ssm: &aws_sdk_ssm::Client) -> Vec<(String, i64)> {
    let out = ssm
        .get_parameters_by_path()
        .path("/presta-reconciler/demo")
        .recursive(true)
        .send()
        .await
        .unwrap();
    let mut v: Vec<(String, i64)> = out
        .parameters()
        .iter()
        .map(|p| (p.name().unwrap().to_string(), p.version()))
        .collect();
    v.sort();
    v
}

async fn efs_ids(efs: &aws_sdk_efs::Client) -> Vec<String> {
    efs.describe_file_systems()
        .send()
        .await
        .unwrap()
        .file_systems()
        .iter()
        .map(|f| f.file_system_id().to_string())
        .collect()
}

/// Whether `op` is among the calls (`service operation`).
fn called(calls: &[String], op: &str) -> bool {
    calls.iter().any(|c| c.ends_with(&format!(" {op}")))
}

async fn db_count(rds: &aws_sdk_rds::Client) -> usize {
    rds.describe_db_instances()
        .send()
        .await
        .unwrap()
        .db_instances()
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_keeps_the_data_and_apply_restores_the_shop_from_it() {
    let env = Env::start();
    let demo = env.demo();
    env.apply(&demo);
    let (rds, efs, ssm, ec2) = clients(&env).await;
    let fs_before = efs_ids(&efs).await;
    let params_before = param_versions(&ssm).await;
    assert_eq!(fs_before.len(), 1);
    assert_eq!(params_before.len(), 2, "{params_before:?}");

    let (code, report) = destroy(&env, &[]);
    assert_eq!(code, 0, "{report:#}");
    let deleted: Vec<&str> = report["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "auto_scaling_group",
        "launch_template",
        "listener",
        "load_balancer",
        "target_group",
        "db_instance",
        "mount_target",
        "db_subnet_group",
        "security_group",
    ] {
        assert!(deleted.contains(&kind), "{kind} not deleted: {report:#}");
    }
    let snapshot = report["final_snapshot"].as_str().unwrap().to_string();
    assert!(snapshot.starts_with("demo-db-final-"), "{snapshot}");
    assert!(
        report["restore_command"]
            .as_str()
            .unwrap()
            .contains("apply -f config/demo.yaml --stack demo"),
        "{report:#}"
    );

    // Every non-data resource is gone; the data is kept.
    assert_eq!(db_count(&rds).await, 0);
    let sgs = ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:presta-reconciler/stack")
                .values("demo")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(sgs.security_groups().is_empty(), "security groups left");
    let snaps = rds
        .describe_db_snapshots()
        .db_snapshot_identifier(&snapshot)
        .send()
        .await
        .unwrap();
    let tags: Vec<(String, String)> = snaps.db_snapshots()[0]
        .tag_list()
        .iter()
        .map(|t| (t.key().unwrap().into(), t.value().unwrap().into()))
        .collect();
    assert!(
        tags.contains(&("presta-reconciler/stack".into(), "demo".into())),
        "{tags:?}"
    );
    assert_eq!(efs_ids(&efs).await, fs_before, "the file system is kept");
    let fs = efs.describe_file_systems().send().await.unwrap();
    assert!(
        fs.file_systems()[0]
            .tags()
            .iter()
            .any(|t| t.key() == "presta-reconciler/retained-at"),
        "the kept file system is marked retained"
    );
    assert!(
        efs.describe_mount_targets()
            .file_system_id(&fs_before[0])
            .send()
            .await
            .unwrap()
            .mount_targets()
            .is_empty(),
        "mount targets removed"
    );
    assert_eq!(param_versions(&ssm).await, params_before);

    // A second destroy has nothing left to do and succeeds.
    let (code, again) = destroy(&env, &[]);
    assert_eq!(code, 0, "{again:#}");
    assert!(again["deleted"].as_array().unwrap().is_empty(), "{again:#}");

    // The plan says restore, from which snapshot.
    let (code, plan) = env.plan_json(&demo);
    assert_eq!(code, 2);
    let db = change(&plan, "db_instance", "demo-db");
    assert_eq!(db["action"], "restore", "{db:#}");
    assert!(db["reason"].as_str().unwrap().contains(&snapshot), "{db:#}");

    env.emu.reset_calls().unwrap();
    let applied = env.apply_json(&demo);
    let calls = env.mutating_calls();
    assert!(
        called(&calls, "RestoreDBInstanceFromDBSnapshot"),
        "{calls:?}"
    );
    assert!(!called(&calls, "CreateDBInstance"), "{calls:?}");
    assert!(!called(&calls, "PutParameter"), "{calls:?}");
    assert_eq!(
        applied["stacks"][0]["outputs"]["efs_id"].as_str().unwrap(),
        fs_before[0],
        "same file system"
    );
    assert_eq!(efs_ids(&efs).await, fs_before);
    assert_eq!(param_versions(&ssm).await, params_before);
    let (code, plan) = env.plan_json(&demo);
    assert_eq!(code, 0, "converged after the restore: {plan:#}");
    let fs = efs.describe_file_systems().send().await.unwrap();
    assert!(
        !fs.file_systems()[0]
            .tags()
            .iter()
            .any(|t| t.key() == "presta-reconciler/retained-at"),
        "the retained mark goes once the file system is used again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_refuses_a_protected_database_and_changes_nothing() {
    let env = Env::start();
    let file = env.config("protected.yaml", |t| {
        t.replace(
            "deletionProtection: false\n    backupRetentionDays",
            "deletionProtection: true\n    backupRetentionDays",
        )
    });
    env.apply(&file);
    env.emu.reset_calls().unwrap();
    let (code, report) = env.json(&[
        "destroy",
        "-f",
        file.to_str().unwrap(),
        "--stack",
        "demo",
        "--confirm",
        "demo",
        "--output",
        "json",
    ]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["refused"], true);
    let why = report["error"].as_str().unwrap();
    assert!(
        why.contains("--no-deletion-protection") && why.contains("demo-db"),
        "{why}"
    );
    assert!(
        env.mutating_calls().is_empty(),
        "{:?}",
        env.mutating_calls()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_needs_the_confirmation_and_delete_data_for_data() {
    let env = Env::start();
    let out = env.cli(&["destroy", "-f", "config/demo.yaml", "--stack", "demo"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--confirm demo"));
    let file = env.config("delete.yaml", |t| {
        format!("{t}  policy:\n    deletion:\n      database: delete\n")
    });
    env.apply(&file);
    env.emu.reset_calls().unwrap();
    let (code, report) = env.json(&[
        "destroy",
        "-f",
        file.to_str().unwrap(),
        "--stack",
        "demo",
        "--confirm",
        "demo",
        "--output",
        "json",
    ]);
    assert_eq!(code, 1, "{report:#}");
    assert!(report["error"].as_str().unwrap().contains("--delete-data"));
    assert!(env.mutating_calls().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_database_is_restored_from_its_snapshot_and_never_rebuilt_empty() {
    let env = Env::start();
    let demo = env.demo();
    env.apply(&demo);
    let (rds, ..) = clients(&env).await;

    // Deleted by hand without a snapshot: the shop's files remain, nothing to restore from.
    rds.delete_db_instance()
        .db_instance_identifier("demo-db")
        .skip_final_snapshot(true)
        .delete_automated_backups(true)
        .send()
        .await
        .unwrap();
    let (code, plan) = env.plan_json(&demo);
    assert_eq!(code, 2, "a lost database is not a converged stack");
    let db = change(&plan, "db_instance", "demo-db");
    assert_eq!(db["action"], "blocked", "{db:#}");
    assert!(
        db["reason"].as_str().unwrap().contains("restoreFrom"),
        "{db:#}"
    );
    env.emu.reset_calls().unwrap();
    let out = env.cli(&["apply", "-f", demo.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the shop cannot run: apply says so"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no snapshot of it was found"));
    assert!(
        !called(&env.mutating_calls(), "CreateDBInstance"),
        "never an empty database next to the shop's files"
    );
    assert_eq!(db_count(&rds).await, 0);

    // `restoreFrom: none` starts over on purpose; then a snapshot taken by hand, named in
    // `restoreFrom`, brings that database back after it is lost again.
    let fresh = env.config("fresh.yaml", |t| {
        t.replace("  database:\n", "  database:\n    restoreFrom: none\n")
    });
    env.apply(&fresh);
    assert_eq!(db_count(&rds).await, 1);
    rds.create_db_snapshot()
        .db_instance_identifier("demo-db")
        .db_snapshot_identifier("demo-db-by-hand")
        .send()
        .await
        .unwrap();
    rds.delete_db_instance()
        .db_instance_identifier("demo-db")
        .skip_final_snapshot(true)
        .send()
        .await
        .unwrap();
    let named = env.config("named.yaml", |t| {
        t.replace(
            "  database:\n",
            "  database:\n    restoreFrom: demo-db-by-hand\n",
        )
    });
    env.emu.reset_calls().unwrap();
    env.apply(&named);
    let calls = env.mutating_calls();
    assert!(
        called(&calls, "RestoreDBInstanceFromDBSnapshot"),
        "{calls:?}"
    );
    assert!(!called(&calls, "CreateDBInstance"), "{calls:?}");
    assert_eq!(db_count(&rds).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_file_system_is_blocked_and_the_fleet_is_not_moved() {
    let env = Env::start();
    let demo = env.demo();
    env.apply(&demo);
    let (_, efs, ..) = clients(&env).await;
    let id = efs_ids(&efs).await.remove(0);
    for mt in efs
        .describe_mount_targets()
        .file_system_id(&id)
        .send()
        .await
        .unwrap()
        .mount_targets()
    {
        efs.delete_mount_target()
            .mount_target_id(mt.mount_target_id())
            .send()
            .await
            .unwrap();
    }
    efs.delete_file_system()
        .file_system_id(&id)
        .send()
        .await
        .unwrap();

    let (code, plan) = env.plan_json(&demo);
    assert_eq!(code, 2);
    let fs = change(&plan, "file_system", "demo-efs");
    assert_eq!(fs["action"], "blocked", "{fs:#}");
    assert!(
        fs["reason"].as_str().unwrap().contains("allowEmpty"),
        "{fs:#}"
    );
    env.emu.reset_calls().unwrap();
    let out = env.cli(&["apply", "-f", demo.to_str().unwrap()]);
    let calls = env.mutating_calls();
    assert!(
        !called(&calls, "POST /2015-02-01/file-systems"),
        "{calls:?}"
    );
    assert!(efs_ids(&efs).await.is_empty(), "no empty file system made");
    assert!(!called(&calls, "StartInstanceRefresh"), "{calls:?}");
    assert!(!called(&calls, "CreateLaunchTemplateVersion"), "{calls:?}");
    let _ = out;

    // Starting the files over, on purpose: a new file system, but the fleet is not rolled
    // onto it by the reconciler.
    let allow = env.config("allow.yaml", |t| {
        format!("{t}  fileSystem:\n    allowEmpty: true\n")
    });
    env.emu.reset_calls().unwrap();
    let report = env.apply_json(&allow);
    assert_eq!(efs_ids(&efs).await.len(), 1);
    let calls = env.mutating_calls();
    assert!(!called(&calls, "StartInstanceRefresh"), "{calls:?}");
    let asg = change(&report, "auto_scaling_group", "demo-app");
    assert!(
        asg["reason"]
            .as_str()
            .unwrap_or("")
            .contains("no instance refresh"),
        "{asg:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_password_next_to_its_database_is_never_regenerated() {
    let env = Env::start();
    let demo = env.demo();
    env.apply(&demo);
    let (_, _, ssm, _) = clients(&env).await;
    ssm.delete_parameter()
        .name("/presta-reconciler/demo/db-password")
        .send()
        .await
        .unwrap();
    let (code, plan) = env.plan_json(&demo);
    assert_eq!(code, 2);
    let p = change(&plan, "parameter", "/presta-reconciler/demo/db-password");
    assert_eq!(p["action"], "blocked", "{p:#}");
    assert!(p["reason"].as_str().unwrap().contains("demo-db"), "{p:#}");
    env.emu.reset_calls().unwrap();
    env.apply(&demo);
    assert!(
        !called(&env.mutating_calls(), "PutParameter"),
        "{:?}",
        env.mutating_calls()
    );
    assert!(
        ssm.get_parameter()
            .name("/presta-reconciler/demo/db-password")
            .send()
            .await
            .is_err()
    );
}

/// Tagged final snapshots of the demo database.
async fn owned_snapshots(rds: &aws_sdk_rds::Client) -> Vec<String> {
    let out = rds
        .describe_db_snapshots()
        .db_instance_identifier("demo-db")
        .send()
        .await
        .unwrap();
    out.db_snapshots()
        .iter()
        .filter(|s| {
            s.tag_list()
                .iter()
                .any(|t| t.key() == Some("presta-reconciler/stack") && t.value() == Some("demo"))
        })
        .filter_map(|s| s.db_snapshot_identifier().map(String::from))
        .filter(|id| id.starts_with("demo-db-final-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_killed_at_any_point_is_finished_by_running_it_again() {
    let env = Env::start();
    let demo = env.demo();
    env.apply(&demo);
    let (rds, efs, ssm, ec2) = clients(&env).await;
    let fs = efs_ids(&efs).await;
    let params = param_versions(&ssm).await;
    // With 40 ms per call, a destroy takes about 2 s: killed at these points it stops during
    // the deletes (SIGKILL of the real process; tests/suite/fake_faults.rs cuts a destroy after
    // each of its writes).
    let mut cut_at = Vec::new();
    for (round, kill_after_ms) in [450u64, 1200].into_iter().enumerate() {
        if round > 0 {
            // The shop comes back from what the last destroy kept.
            env.apply(&demo);
            assert_eq!(efs_ids(&efs).await, fs, "round {round}: same file system");
        }
        env.emu.set_latency(40).unwrap();
        env.emu.reset_calls().unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_presta-reconciler"));
        child
            .current_dir(common::root())
            .args([
                "destroy",
                "-f",
                "config/demo.yaml",
                "--stack",
                "demo",
                "--confirm",
                "demo",
            ])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (k, v) in env.emu.env() {
            child.env(k, v);
        }
        let mut child = child.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(kill_after_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        env.emu.set_latency(0).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let before_kill = env.mutating_calls();
        cut_at.push(before_kill.len());
        // Wait out the second of the last final snapshot's name.
        std::thread::sleep(std::time::Duration::from_millis(1100));

        let (code, report) = destroy(&env, &[]);
        assert_eq!(
            code, 0,
            "round {round} (killed after {kill_after_ms} ms): {report:#}"
        );
        assert_eq!(db_count(&rds).await, 0, "round {round}");
        let sgs = ec2
            .describe_security_groups()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:presta-reconciler/stack")
                    .values("demo")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert!(
            sgs.security_groups().is_empty(),
            "round {round}: groups left"
        );
        assert_eq!(
            efs_ids(&efs).await,
            fs,
            "round {round}: the file system is kept"
        );
        assert_eq!(
            param_versions(&ssm).await,
            params,
            "round {round}: secrets kept"
        );
        assert_eq!(
            owned_snapshots(&rds).await.len(),
            round + 1,
            "round {round}: one tagged final snapshot per destroy"
        );
    }
    eprintln!("kills landed after {cut_at:?} mutating calls");
    // The kills landed at different points of the run (counted in mutating calls made).
    let distinct: std::collections::BTreeSet<usize> = cut_at.iter().copied().collect();
    assert!(distinct.len() >= 2, "kills landed at {cut_at:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renamed_stack_leaves_orphans_that_are_reported_and_never_deleted() {
    let env = Env::start();
    env.apply(&env.demo());
    let renamed = env.config("renamed.yaml", |t| {
        t.replace("name: demo\n", "name: shop\n")
    });

    // plan: a section, JSON, the exit code of the stack's own plan (creates: 2).
    let (code, plan) = env.plan_json(&renamed);
    assert_eq!(code, 2);
    let orphans = plan["orphans"].as_array().unwrap();
    assert!(orphans.iter().all(|o| o["stack"] == "demo"), "{orphans:#?}");
    let kinds: std::collections::BTreeSet<&str> = orphans
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    for k in [
        "security_group",
        "launch_template",
        "auto_scaling_group",
        "db_instance",
        "file_system",
    ] {
        assert!(kinds.contains(k), "{k} missing from {kinds:?}");
    }
    let out = env.cli(&["plan", "-f", renamed.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("orphaned:") && text.contains("stack demo (eu-west-3)"),
        "{text}"
    );
    assert!(text.contains("destroy --stack demo"), "{text}");
    // The stack that is in the file is not an orphan.
    let (_, own) = env.plan_json(&env.demo());
    assert!(own.get("orphans").is_none(), "{own:#}");

    // The daemon: GET /orphans, the gauge, a log line on the reload that drops the stack;
    // nothing of the old stack is deleted.
    let live = env.dir.path().join("live.yaml");
    std::fs::copy(env.demo(), &live).unwrap();
    let d = env.serve(&live, &["--interval", "600"]);
    d.eventually(60, "the demo stack converges", |d| {
        d.json("GET", "/stacks/demo")["state"] == "converged"
    });
    assert_eq!(
        d.json("GET", "/orphans")["orphans"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    env.emu.reset_calls().unwrap();
    std::fs::copy(&renamed, &live).unwrap();
    d.eventually(30, "the dropped stack is reported as orphaned", |d| {
        d.json("GET", "/orphans")["stacks"] == serde_json::json!(["demo"])
    });
    assert_eq!(
        d.metric(r#"presta_orphaned_resources{kind="db_instance",stack="demo"}"#),
        Some(1.0)
    );
    assert!(
        d.log_text()
            .contains("stacks dropped from the configuration")
    );
    let deletes: Vec<String> = env
        .mutating_calls()
        .into_iter()
        .filter(|c| c.contains("Delete"))
        .collect();
    assert!(deletes.is_empty(), "{deletes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_system_restored_from_backup_with_the_stack_tags_is_adopted() {
    let env = Env::start();
    let demo = env.demo();
    env.apply(&demo);
    let (_, efs, ..) = clients(&env).await;
    let old = efs_ids(&efs).await.remove(0);
    for mt in efs
        .describe_mount_targets()
        .file_system_id(&old)
        .send()
        .await
        .unwrap()
        .mount_targets()
    {
        efs.delete_mount_target()
            .mount_target_id(mt.mount_target_id())
            .send()
            .await
            .unwrap();
    }
    efs.delete_file_system()
        .file_system_id(&old)
        .send()
        .await
        .unwrap();
    // What AWS Backup's restore makes: a new file system (new token), tagged by the person
    // restoring it with the stack's ownership tags.
    let tag = |k: &str, v: &str| {
        aws_sdk_efs::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
            .unwrap()
    };
    let restored = efs
        .create_file_system()
        .creation_token("aws-backup-restore-1234")
        .encrypted(true)
        .tags(tag("managed-by", "presta-reconciler"))
        .tags(tag("presta-reconciler/stack", "demo"))
        .tags(tag("presta-reconciler/component", "efs"))
        .send()
        .await
        .unwrap()
        .file_system_id()
        .to_string();

    let (code, plan) = env.plan_json(&demo);
    assert_eq!(
        code, 2,
        "new mount targets and a new template version are pending"
    );
    assert_ne!(
        change(&plan, "file_system", "demo-efs")["action"],
        "blocked"
    );
    env.emu.reset_calls().unwrap();
    let report = env.apply_json(&demo);
    let calls = env.mutating_calls();
    assert!(
        !called(&calls, "POST /2015-02-01/file-systems"),
        "{calls:?}"
    );
    assert_eq!(report["stacks"][0]["outputs"]["efs_id"], restored.as_str());
    assert!(
        called(&calls, "POST /2015-02-01/mount-targets"),
        "{calls:?}"
    );
    // The fleet moves to the adopted file system: that is the point of adopting it.
    assert!(called(&calls, "StartInstanceRefresh"), "{calls:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_lifts_the_load_balancers_deletion_protection() {
    let env = Env::start();
    let file = env.config("protected-lb.yaml", |t| {
        t.replace(
            "    deletionProtection: false\n  compute:",
            "    deletionProtection: true\n  compute:",
        )
    });
    env.apply(&file);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&env.sdk().await);
    let lbs = elb.describe_load_balancers().send().await.unwrap();
    let arn = lbs.load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_string();
    let attrs = elb
        .describe_load_balancer_attributes()
        .load_balancer_arn(&arn)
        .send()
        .await
        .unwrap();
    assert!(
        attrs
            .attributes()
            .iter()
            .any(|a| a.key() == Some("deletion_protection.enabled") && a.value() == Some("true")),
        "the load balancer is protected before destroy"
    );
    let (code, report) = env.json(&[
        "destroy",
        "-f",
        file.to_str().unwrap(),
        "--stack",
        "demo",
        "--confirm",
        "demo",
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "{report:#}");
    assert!(
        report["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "load_balancer"),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_reports_a_file_system_destroy_kept_as_a_retained_orphan() {
    let env = Env::start();
    env.apply(&env.demo());
    let (code, report) = destroy(&env, &[]);
    assert_eq!(code, 0, "{report:#}");
    // The configuration no longer has `demo`; its groups are gone, its file system is kept.
    let other = env.config("other.yaml", |t| t.replace("name: demo\n", "name: shop\n"));
    let d = env.serve(&other, &["--interval", "600"]);
    d.eventually(60, "the kept file system is reported", |d| {
        d.json("GET", "/orphans")["orphans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["stack"] == "demo" && o["kind"] == "file_system" && o["retained"] == true)
    });
    assert_eq!(
        d.metric(r#"presta_orphaned_resources{kind="file_system",stack="demo"}"#),
        Some(1.0)
    );
}
