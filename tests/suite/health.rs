//! The health verdict against the emulator: a converged stack is `healthy`; no healthy target
//! makes it `down` (drift or not); a mount target deleted in one Availability Zone makes it
//! `degraded` with that reason; the daemon exports the verdict as a state set.

use crate::common;

use common::Env;

fn health(env: &Env) -> serde_json::Value {
    let (_, plan) = env.plan_json(&env.demo());
    plan["stacks"][0]["health"].clone()
}

#[test]
fn a_converged_stack_is_healthy_and_down_without_a_healthy_target() {
    let env = Env::start();
    env.apply(&env.demo());
    let h = health(&env);
    assert_eq!(h["verdict"], "healthy", "{h:#}");
    assert!(h["targets_healthy"].as_u64().unwrap() >= 1, "{h:#}");

    // The shop fails its health checks: converged, but down.
    env.emu.set_target_health("unhealthy", None).unwrap();
    let (code, plan) = env.plan_json(&env.demo());
    assert_eq!(code, 0, "no drift: {plan:#}");
    let h = &plan["stacks"][0]["health"];
    assert_eq!(h["verdict"], "down", "{h:#}");
    let reason = h["reasons"][0].as_str().unwrap();
    assert!(reason.contains("no healthy target"), "{reason}");
    assert!(reason.contains("FailedHealthChecks"), "{reason}");
    assert_eq!(h["targets_healthy"], 0);
    // The text plan says it too.
    let out = env.cli(&["plan", "-f", env.demo().to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("health: down — no healthy target"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    env.emu.set_target_health("healthy", None).unwrap();
    assert_eq!(health(&env)["verdict"], "healthy");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_mount_target_is_degraded_with_its_zone() {
    let env = Env::start();
    env.apply(&env.demo());
    let efs = aws_sdk_efs::Client::new(&env.sdk().await);
    let ec2 = aws_sdk_ec2::Client::new(&env.sdk().await);
    let fs = efs
        .describe_file_systems()
        .send()
        .await
        .unwrap()
        .file_systems()[0]
        .file_system_id()
        .to_string();
    let mts = efs
        .describe_mount_targets()
        .file_system_id(&fs)
        .send()
        .await
        .unwrap();
    let mt = &mts.mount_targets()[0];
    let subnet = ec2
        .describe_subnets()
        .subnet_ids(mt.subnet_id())
        .send()
        .await
        .unwrap();
    let zone = subnet.subnets()[0].availability_zone().unwrap().to_string();
    efs.delete_mount_target()
        .mount_target_id(mt.mount_target_id())
        .send()
        .await
        .unwrap();

    let h = health(&env);
    assert_eq!(h["verdict"], "degraded", "{h:#}");
    let reasons = h["reasons"].to_string();
    assert!(
        reasons.contains(&format!("no mount target in {zone}")),
        "{reasons}"
    );

    // apply puts the mount target back; the next look is healthy again.
    env.apply(&env.demo());
    assert_eq!(health(&env)["verdict"], "healthy");
}

#[test]
fn the_daemon_serves_the_verdict_and_exports_it_as_a_state_set() {
    let env = Env::start();
    let d = env.serve(&env.demo(), &["--interval", "2"]);
    d.eventually(90, "healthy", |d| {
        d.json("GET", "/stacks/demo")["health"]["verdict"] == "healthy"
    });
    assert_eq!(
        d.metric("presta_stack_health{stack=\"demo\",verdict=\"healthy\"}"),
        Some(1.0)
    );
    assert!(d.metric("presta_targets_healthy{stack=\"demo\"}").unwrap() >= 1.0);
    env.emu.set_target_health("unhealthy", None).unwrap();
    d.eventually(30, "down", |d| {
        d.metric("presta_stack_health{stack=\"demo\",verdict=\"down\"}") == Some(1.0)
    });
    assert_eq!(
        d.metric("presta_stack_health{stack=\"demo\",verdict=\"healthy\"}"),
        Some(0.0)
    );
    assert_eq!(d.json("GET", "/stacks/demo")["state"], "converged");
}
