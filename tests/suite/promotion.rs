//! Staging before production (`spec.promotion`) against the emulator: a new image rolls to
//! `staging` at once and waits on `prod` (gated, with the reason) while drift on `prod` is
//! still healed; staging's health restarts the soak clock; after the soak `prod` rolls; an
//! approval promotes early; the evidence lives in AWS so a one-shot apply of `prod` alone, a
//! restarted daemon and the first daemon decide the same.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Env;

const OLD: &str = "prestashop/prestashop:8.2.7-8.1-apache";
const NEW: &str = "prestashop/prestashop:8.2.8-8.1-apache";

/// staging and prod from the demo file; prod follows staging with `soak`.
fn pair(env: &Env, name: &str, staging_image: &str, prod_image: &str, soak: &str) -> PathBuf {
    env.config(name, |text| {
        let staging = text
            .replace("name: demo", "name: staging")
            .replace(OLD, staging_image);
        let prod = text
            .replace("name: demo", "name: prod")
            .replace(OLD, prod_image)
            .replace(
                "  region: eu-west-3\n",
                &format!(
                    "  region: eu-west-3\n  promotion:\n    after: staging\n    soak: {soak}\n    checkpointPause: 3s\n"
                ),
            );
        format!("{staging}\n---\n{prod}")
    })
}

fn stack<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stack"] == name)
        .unwrap_or_else(|| panic!("no stack {name} in {report:#}"))
}

/// The change of `kind` named `name` in one stack's report.
fn change<'a>(stack: &'a serde_json::Value, kind: &str, name: &str) -> &'a serde_json::Value {
    stack["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == kind && c["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {stack:#}"))
}

/// `plan -f file --stack name --output json`: the report.
fn plan_one(env: &Env, file: &Path, name: &str) -> serde_json::Value {
    let args = [
        "plan",
        "-f",
        file.to_str().unwrap(),
        "--stack",
        name,
        "--output",
        "json",
    ];
    env.json(&args).1
}

fn apply(env: &Env, file: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["apply", "-f", file.to_str().unwrap(), "--output", "json"];
    args.extend_from_slice(extra);
    env.json(&args)
}

/// The image prod's launch template runs (its default version's user data).
async fn template_image(env: &Env, stack: &str) -> String {
    let aws = env.aws().await;
    let scope = presta_aws::Scope {
        names: vec![format!("{stack}-app")],
        ..Default::default()
    };
    use presta_aws::Driver;
    let live = presta_aws::launch_template::LaunchTemplates
        .observe(&aws, &scope)
        .await
        .unwrap();
    let t = live
        .get(&format!("{stack}-app"))
        .expect("the template exists");
    presta_aws::launch_template::bootstrap_values(&t.data.user_data)["IMAGE"].clone()
}

async fn instances(env: &Env, stack: &str) -> Vec<String> {
    let asg = aws_sdk_autoscaling::Client::new(&env.sdk().await);
    let out = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(format!("{stack}-app"))
        .send()
        .await
        .unwrap();
    out.auto_scaling_groups()[0]
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(String::from))
        .collect()
}

fn gated_reason(report: &serde_json::Value, name: &str) -> String {
    let s = stack(report, name);
    s["gated"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} is not gated: {s:#}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_image_reaches_prod_only_after_staging_ran_it_healthy_for_the_soak() {
    let env = Env::start();
    let before = pair(&env, "before.yaml", OLD, OLD, "6s");
    // Created, then observed healthy: each stack records the release it runs.
    apply(&env, &before, &[]);
    let (code, report) = apply(&env, &before, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert!(stack(&report, "prod")["gated"].is_null());

    // The image changes in both files: staging rolls at once, prod waits.
    let after = pair(&env, "after.yaml", NEW, NEW, "6s");
    let (code, report) = apply(&env, &after, &[]);
    assert_eq!(code, 0, "gated is not a failure: {report:#}");
    let lt = change(stack(&report, "staging"), "launch_template", "staging-app");
    assert_eq!(lt["action"], "update", "{lt:#}");
    let reason = gated_reason(&report, "prod");
    assert!(
        reason.contains("`staging` does not run prestashop/prestashop:8.2.8-8.1-apache"),
        "{reason}"
    );
    let lt = change(stack(&report, "prod"), "launch_template", "prod-app");
    assert_eq!(lt["action"], "blocked", "{lt:#}");
    assert!(
        lt["reason"].as_str().unwrap().starts_with("gated: "),
        "{lt:#}"
    );
    assert_eq!(template_image(&env, "prod").await, OLD);
    assert_eq!(template_image(&env, "staging").await, NEW);

    // The text plan says it too, with the way to promote now.
    let out = env.cli(&["plan", "-f", after.to_str().unwrap(), "--stack", "prod"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("GATED: "), "{text}");
    assert!(text.contains("--approve "), "{text}");

    // While prod waits, drift on it is healed at once.
    env.open_ssh_on("prod").await;
    let (_, report) = apply(&env, &after, &[]);
    let sg = change(stack(&report, "prod"), "security_group", "prod-app-sg");
    assert_eq!(sg["action"], "update", "port 22 closed again: {sg:#}");
    assert!(stack(&report, "prod")["gated"].is_object());

    // A drift on the template itself (a hop limit changed by hand) is healed too, keeping the
    // running release: the image still waits.
    env.hand_made_template_version("prod", |d| {
        d.metadata_options(
            aws_sdk_ec2::types::LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(aws_sdk_ec2::types::LaunchTemplateHttpTokensState::Required)
                .http_put_response_hop_limit(3)
                .build(),
        )
    })
    .await;
    let (_, report) = apply(&env, &after, &[]);
    let lt = change(stack(&report, "prod"), "launch_template", "prod-app");
    assert_eq!(lt["action"], "update", "{lt:#}");
    let diffs = lt["diffs"].as_array().unwrap();
    let hop = diffs
        .iter()
        .find(|d| d["field"] == "metadataOptions.hopLimit")
        .unwrap_or_else(|| panic!("{lt:#}"));
    assert!(hop["blocked"].is_null(), "healed: {hop:#}");
    let image = diffs
        .iter()
        .find(|d| d["field"].as_str().unwrap().contains("IMAGE"))
        .unwrap_or_else(|| panic!("{lt:#}"));
    assert!(
        image["blocked"].as_str().unwrap().starts_with("gated: "),
        "{image:#}"
    );
    assert_eq!(template_image(&env, "prod").await, OLD);
    assert!(stack(&report, "prod")["gated"].is_object());
    let report = plan_one(&env, &after, "prod");
    let lt = change(stack(&report, "prod"), "launch_template", "prod-app");
    assert_eq!(lt["action"], "blocked", "only the release waits: {lt:#}");

    // Staging's refresh has ended: it runs the new release, healthy; the soak clock runs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    apply(&env, &after, &[]);
    let (_, report) = apply(&env, &after, &[]);
    let reason = gated_reason(&report, "prod");
    assert!(
        reason.starts_with("waiting for `staging` to run prestashop/prestashop:8.2.8-8.1-apache"),
        "{reason}"
    );
    assert!(reason.contains("healthy for 6 s"), "{reason}");

    // Staging's targets fail their health checks: the clock restarts, prod stays gated.
    for id in instances(&env, "staging").await {
        env.emu.set_target_health("unhealthy", Some(&id)).unwrap();
    }
    let (_, report) = apply(&env, &after, &[]);
    assert_eq!(stack(&report, "staging")["health"]["verdict"], "down");
    let (_, report) = apply(&env, &after, &[]);
    let reason = gated_reason(&report, "prod");
    assert!(reason.contains("`staging` is down since"), "{reason}");
    assert!(reason.contains("the clock restarts"), "{reason}");
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (_, report) = apply(&env, &after, &[]);
    assert!(
        stack(&report, "prod")["gated"].is_object(),
        "unhealthy time does not count: {report:#}"
    );

    // Healthy again: the whole soak must pass from now.
    env.emu.set_target_health("healthy", None).unwrap();
    let healthy_again = Instant::now();
    apply(&env, &after, &[]);
    let (_, report) = apply(&env, &after, &[]);
    let gated = &stack(&report, "prod")["gated"];
    assert!(
        gated["healthy_for_seconds"]
            .as_u64()
            .is_some_and(|s| s <= 3),
        "{gated:#}"
    );

    // Another process, applying prod alone, reads the same evidence from AWS.
    let alone = plan_one(&env, &after, "prod");
    let a = stack(&alone, "prod")["gated"]["healthy_for_seconds"]
        .as_u64()
        .unwrap();
    let b = gated["healthy_for_seconds"].as_u64().unwrap();
    assert!(a.abs_diff(b) <= 3, "one-shot {a} s, earlier {b} s");

    let wait = Duration::from_secs(7).saturating_sub(healthy_again.elapsed());
    tokio::time::sleep(wait).await;
    let (code, report) = apply(&env, &after, &["--stack", "prod"]);
    assert_eq!(code, 0, "{report:#}");
    let p = stack(&report, "prod");
    assert!(p["gated"].is_null(), "promoted after the soak: {p:#}");
    let lt = change(p, "launch_template", "prod-app");
    assert_eq!(lt["action"], "update", "{lt:#}");
    assert!(
        lt["reason"]
            .as_str()
            .unwrap()
            .contains("promoted: `staging` ran this release healthy"),
        "{lt:#}"
    );
    assert_eq!(template_image(&env, "prod").await, NEW);
    let asg = change(p, "auto_scaling_group", "prod-app");
    let started = asg["reason"].as_str().unwrap_or_default();
    assert!(started.contains("stops at 50% for 3 s"), "{started}");
    // The promoted release rolls in two halves: a pause at 50 %, then the rest.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = plan_one(&env, &after, "prod");
    let r = &stack(&report, "prod")["instance_refresh"];
    assert_eq!(r["status"], "InProgress", "{r:#}");
    assert_eq!(r["percentage_complete"], 50, "{r:#}");
    assert!(
        r["status_reason"].as_str().unwrap().contains("checkpoint"),
        "{r:#}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, report) = env.plan_json(&after);
    assert_eq!(code, 0, "both converged on the new image: {report:#}");
    assert_eq!(
        stack(&report, "prod")["instance_refresh"]["status"],
        "Successful"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_staging_never_runs_waits_until_a_person_approves_it() {
    let env = Env::start();
    let before = pair(&env, "before.yaml", OLD, OLD, "10m");
    apply(&env, &before, &[]);
    apply(&env, &before, &[]);
    // Only prod's file changes: staging never runs the image.
    let prod_only = pair(&env, "prod-only.yaml", OLD, NEW, "10m");
    let (_, report) = apply(&env, &prod_only, &[]);
    let gated = stack(&report, "prod")["gated"].clone();
    assert!(
        gated["reason"].as_str().unwrap().contains("does not run"),
        "{gated:#}"
    );
    let hash = gated["plan_hash"].as_str().unwrap().to_string();
    // A wrong hash promotes nothing.
    let (_, report) = apply(&env, &prod_only, &["--approve", "0000000000000000"]);
    assert!(stack(&report, "prod")["gated"].is_object());
    assert_eq!(template_image(&env, "prod").await, OLD);
    // The plan's hash promotes at once, and says who approved.
    let (code, report) = apply(&env, &prod_only, &["--stack", "prod", "--approve", &hash]);
    assert_eq!(code, 0, "{report:#}");
    let p = stack(&report, "prod");
    assert!(p["gated"].is_null(), "{p:#}");
    let lt = change(p, "launch_template", "prod-app");
    assert_eq!(lt["action"], "update", "{lt:#}");
    let note = lt["reason"].as_str().unwrap();
    assert!(note.contains(&format!("approval of {hash}")), "{note}");
    assert!(note.contains("(CLI)"), "who approved: {note}");
    assert_eq!(template_image(&env, "prod").await, NEW);
    assert_eq!(template_image(&env, "staging").await, OLD);

    // The new instances fail the health checks: the refresh stops, and says so.
    for id in instances(&env, "prod").await {
        env.emu.set_target_health("unhealthy", Some(&id)).unwrap();
    }
    let report = plan_one(&env, &prod_only, "prod");
    let p = stack(&report, "prod");
    assert_eq!(p["instance_refresh"]["status"], "Failed", "{p:#}");
    let reasons = p["health"]["reasons"].to_string();
    assert!(
        reasons.contains("ended failed: Instance refresh failed: new instances did not pass"),
        "{reasons}"
    );
}

#[test]
fn the_daemon_shows_the_gate_and_a_restarted_daemon_sees_the_same_soak() {
    let env = Env::start();
    let before = pair(&env, "before.yaml", OLD, OLD, "10m");
    apply(&env, &before, &[]);
    apply(&env, &before, &[]);
    let after = pair(&env, "after.yaml", NEW, NEW, "10m");
    let file = env.dir.path().join("live.yaml");
    std::fs::copy(&after, &file).unwrap();
    let args = ["--interval", "2"];
    let gated_for = |d: &common::Daemon| -> Option<u64> {
        let s = d.json("GET", "/stacks/prod");
        (s["state"] == "gated").then(|| s["gated"]["healthy_for_seconds"].as_u64())?
    };
    let first = env.serve(&file, &args);
    first.eventually(60, "prod gated and soaking", |d| gated_for(d).is_some());
    assert_eq!(
        first.metric("presta_stack_gated{stack=\"prod\"}"),
        Some(1.0)
    );
    assert_eq!(
        first.metric("presta_stack_gated{stack=\"staging\"}"),
        Some(0.0)
    );
    let page = first.http("GET", "/", None).1;
    assert!(page.contains("<b>Gated</b>"), "{page}");
    std::thread::sleep(Duration::from_secs(4));
    let seen = gated_for(&first).unwrap();
    first.signal("KILL");
    drop(first);

    let second = env.serve(&file, &args);
    second.eventually(60, "prod gated again", |d| gated_for(d).is_some());
    let again = gated_for(&second).unwrap();
    assert!(
        again >= seen,
        "the soak did not restart: {seen} s then {again} s"
    );
    let alone = plan_one(&env, &file, "prod");
    let one_shot = stack(&alone, "prod")["gated"]["healthy_for_seconds"]
        .as_u64()
        .unwrap();
    let again = gated_for(&second).unwrap();
    assert!(
        one_shot.abs_diff(again) <= 4,
        "daemon {again} s, one-shot {one_shot} s"
    );

    // Approving the gate's hash through the API promotes prod.
    let hash = second.json("GET", "/stacks/prod")["gated"]["plan_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = second.post_json(
        "/stacks/prod/approve",
        None,
        &format!("{{\"plan_hash\": \"{hash}\", \"approved_by\": \"alice\"}}"),
    );
    assert!(status < 300, "{status} {body}");
    second.eventually(60, "prod promoted", |d| {
        d.json("GET", "/stacks/prod")["state"] == "converged"
    });
    assert!(
        second.log_text().contains("alice (API"),
        "who approved is logged"
    );
}
