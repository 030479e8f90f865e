//! `rotate-db-password` against the emulator: SSM gets a new version, the database the same
//! value (read back from the emulator), one instance the `presta-ctl set-db-password` command;
//! a failure injected at each step leaves a report saying where it stopped, and a re-run
//! completes; a lost password parameter is recovered the same way.

use crate::common;

use common::Env;

const PARAM: &str = "/presta-reconciler/demo/db-password";

fn rotate(env: &Env) -> (i32, serde_json::Value, String) {
    let out = env.cli(&[
        "rotate-db-password",
        "--stack",
        "demo",
        "--wait",
        "30",
        "--output",
        "json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (out.status.code().unwrap_or(-1), report, stdout)
}

fn agree(env: &Env, value: &str) {
    assert_eq!(
        env.emu.rds_master_password("demo-db").unwrap().as_deref(),
        Some(value),
        "the database holds the parameter's value"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_changes_ssm_the_database_and_the_shop_and_a_rerun_finishes_a_stopped_one() {
    let env = Env::start();
    env.apply(&env.demo());
    let ssm = aws_sdk_ssm::Client::new(&env.sdk().await);
    let (p0, v0) = env.secret(PARAM).await;
    agree(&env, &p0);

    env.emu.reset_calls().unwrap();
    let (code, report, stdout) = rotate(&env);
    assert_eq!(code, 0, "{report:#}");
    let (p1, v1) = env.secret(PARAM).await;
    assert_eq!(v1, v0 + 1);
    assert_ne!(p1, p0);
    agree(&env, &p1);
    assert!(!stdout.contains(&p1), "the report holds no secret");
    assert_eq!(report["version"], v1);
    let listed = ssm.list_commands().send().await.unwrap();
    let cmd = &listed.commands()[0];
    assert_eq!(
        cmd.parameters().unwrap()["commands"],
        vec!["presta-ctl set-db-password".to_string()]
    );
    assert_eq!(
        cmd.instance_ids().len(),
        1,
        "one instance: the file is on EFS"
    );
    assert!(
        !format!("{cmd:?}").contains(&p1),
        "no value on the command line"
    );

    // A failure at each step: the report says where, nothing after it happened, a re-run
    // completes and everything agrees again.
    type Inject = Box<dyn Fn(&Env)>;
    let cases: [(&str, Inject); 3] = [
        (
            "store the new password",
            Box::new(|e: &Env| {
                e.emu
                    .set_faults_on(1.0, 1, &["ssm"], &["PutParameter"], &["denied"])
                    .unwrap()
            }),
        ),
        (
            "change the database's password",
            Box::new(|e: &Env| {
                e.emu
                    .set_faults_on(1.0, 1, &["rds"], &["ModifyDBInstance"], &["denied"])
                    .unwrap()
            }),
        ),
        (
            "update the shop's parameters.php",
            Box::new(|e: &Env| {
                e.emu
                    .set_command_result(Some(("Failed", 1, "parameters.php: permission denied")))
                    .unwrap()
            }),
        ),
    ];
    for (step, inject) in cases {
        let (before, _) = env.secret(PARAM).await;
        let db_before = env.emu.rds_master_password("demo-db").unwrap();
        inject(&env);
        let (code, report, _) = rotate(&env);
        assert_eq!(code, 1, "{step}: {report:#}");
        let stopped = report["stopped"].as_str().unwrap();
        assert!(
            stopped.contains(&format!("stopped at `{step}`")),
            "{stopped}"
        );
        assert!(stopped.contains("again"), "{stopped}");
        let failed = report["steps"].as_array().unwrap().last().unwrap();
        assert_eq!(failed["step"], step);
        assert_eq!(failed["ok"], false);
        if step == "store the new password" {
            assert_eq!(env.secret(PARAM).await.0, before, "nothing stored");
            assert_eq!(env.emu.rds_master_password("demo-db").unwrap(), db_before);
        }
        if step == "change the database's password" {
            assert_eq!(
                env.emu.rds_master_password("demo-db").unwrap(),
                db_before,
                "database untouched"
            );
        }
        env.emu.set_faults(0.0, 1, &[]).unwrap();
        env.emu.set_command_result(None).unwrap();
        let (code, report, _) = rotate(&env);
        assert_eq!(code, 0, "re-run after `{step}`: {report:#}");
        agree(&env, &env.secret(PARAM).await.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_password_parameter_is_recovered_by_a_rotation() {
    let env = Env::start();
    env.apply(&env.demo());
    let ssm = aws_sdk_ssm::Client::new(&env.sdk().await);
    ssm.delete_parameter().name(PARAM).send().await.unwrap();
    // The data rule blocks: a new password would not be the database's.
    let (code, plan) = env.plan_json(&env.demo());
    assert_eq!(code, 2, "{plan:#}");
    assert!(
        plan.to_string().contains("rotate") || plan.to_string().contains("missing"),
        "{plan:#}"
    );

    let (code, report, _) = rotate(&env);
    assert_eq!(code, 0, "{report:#}");
    assert!(
        report["steps"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("created again"),
        "{report:#}"
    );
    let (p, _) = env.secret(PARAM).await;
    agree(&env, &p);
    // Ownership tags came back with it; the stack is whole again.
    let tags = ssm
        .list_tags_for_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
        .resource_id(PARAM)
        .send()
        .await
        .unwrap();
    assert!(tags.tag_list().iter().any(|t| t.key() == "managed-by"));
    let (code, plan) = env.plan_json(&env.demo());
    assert_eq!(code, 0, "{plan:#}");
}
