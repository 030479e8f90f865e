//! The change budget (blast radius): a plan that changes more of an existing stack than
//! `spec.policy.maxChangesPerRun` is held, nothing changed, until that exact plan is approved
//! (`apply --approve <hash>`, `POST /stacks/{stack}/approve`). The CLI and the API journeys
//! run here against the emulator; the budget's and the data rule's cases (a new stack is not
//! limited, one change fits a budget of one, a renamed stack is held) run on the fake in
//! `tests/suite/orchestration.rs` and `tests/suite/daemon_loop.rs`.

use crate::common;

use common::Env;
use presta_emulator::Emulator;

/// The demo network plus a second one (`presta-other-*`), as a wrong VPC selector finds it.
fn two_networks() -> Env {
    let emu = Emulator::builder()
        .seed("demo")
        .seed("other")
        .instance_refresh_seconds(1.0)
        .start()
        .expect("the emulator starts");
    Env {
        emu,
        dir: tempfile::tempdir().unwrap(),
    }
}

/// The config with `spec.policy.maxChangesPerRun: n`.
fn budget(text: String, n: u32) -> String {
    text.replace(
        "  database:\n",
        &format!("  policy:\n    maxChangesPerRun: {n}\n  database:\n"),
    )
}

/// `apply -f file` exits 3 (held) without one mutating call.
fn apply_is_held(env: &Env, file: &std::path::Path) {
    env.emu.reset_calls().unwrap();
    let out = env.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(env.mutating_calls(), Vec::<String>::new());
}

fn other_vpc(text: String) -> String {
    text.replace("Name: presta-demo-", "Name: presta-other-")
}

#[test]
fn an_existing_stack_pointed_at_another_vpc_is_held_until_that_plan_is_approved() {
    let env = two_networks();
    let demo = env.demo();
    env.apply(&demo);
    let moved = env.config("moved.yaml", other_vpc);
    let moved = moved.to_str().unwrap();

    // plan says it would be held, and names the plan.
    let (code, plan) = env.json(&["plan", "-f", moved, "--output", "json"]);
    assert_eq!(code, 2, "{plan:#}");
    let held = &plan["stacks"][0]["held"];
    let hash = held["plan_hash"].as_str().expect("a held plan").to_string();
    assert!(held["changes"].as_u64().unwrap() > 5, "{held:#}");
    assert!(
        held["reason"]
            .as_str()
            .unwrap()
            .contains("maxChangesPerRun = 5"),
        "{held:#}"
    );

    // apply holds it: exit 3, not one mutating call, the text says how to approve.
    env.emu.reset_calls().unwrap();
    let out = env.cli(&["apply", "-f", moved]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("HELD"), "{text}");
    assert!(text.contains(&format!("--approve {hash}")), "{text}");
    assert_eq!(env.mutating_calls(), Vec::<String>::new());

    // A wrong hash approves nothing.
    let out = env.cli(&["apply", "-f", moved, "--approve", "0123456789abcdef"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(env.mutating_calls(), Vec::<String>::new());

    // The same move under a large budget is held all the same, and says why.
    let roomy = env.config("roomy.yaml", |t| budget(other_vpc(t), 100));
    let (code, plan) = env.json(&["plan", "-f", roomy.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code, 2, "{plan:#}");
    let reason = plan["stacks"][0]["held"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("cannot move between VPCs"), "{plan:#}");
    assert!(!reason.contains("maxChangesPerRun = 100"), "{reason}");
    apply_is_held(&env, &roomy);

    // The right one applies exactly that plan.
    let (_, report) = env.json(&["apply", "-f", moved, "--approve", &hash, "--output", "json"]);
    assert!(report["stacks"][0]["held"].is_null(), "{report:#}");
    let calls = env.mutating_calls();
    assert!(
        calls.iter().any(|c| c.ends_with("ModifyDBSubnetGroup")),
        "the approved plan was applied: {calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.ends_with("DeleteDBInstance") || c.ends_with("DeleteFileSystem")),
        "{calls:?}"
    );
}

#[test]
fn the_daemon_holds_a_plan_and_applies_it_once_approved_through_the_api() {
    let env = Env::start();
    let token_file = env.dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token-0123456789").unwrap();
    let mut perms = std::fs::metadata(&token_file).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&token_file, perms).unwrap();
    let conf = env.dir.path().join("stacks.yaml");
    std::fs::copy(env.demo(), &conf).unwrap();
    let d = env.serve(
        &conf,
        &[
            "--interval",
            "2",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    );
    d.eventually(90, "demo converged", |d| {
        d.json("GET", "/stacks/demo")["state"] == "converged"
    });

    // Two changes against a budget of one: held, with the plan in the status and a metric.
    let text = std::fs::read_to_string(env.demo()).unwrap();
    let edited = budget(text, 1)
        .replace("minSize: 1", "minSize: 2")
        .replace("    backupRetentionDays: 1", "    backupRetentionDays: 3");
    env.emu.reset_calls().unwrap();
    std::fs::write(&conf, &edited).unwrap();
    d.eventually(30, "demo held", |d| {
        d.json("GET", "/stacks/demo")["state"] == "held"
    });
    let status = d.json("GET", "/stacks/demo");
    let hash = status["held"]["plan_hash"].as_str().unwrap().to_string();
    assert_eq!(d.metric("presta_stack_held{stack=\"demo\"}"), Some(1.0));
    assert!(d.log_text().contains("plan waits for approval"));
    // Held over several runs: still nothing changed.
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_eq!(env.mutating_calls(), Vec::<String>::new());

    // Approval needs the token and the current hash.
    let path = "/stacks/demo/approve?wait=true";
    let body = format!("{{\"plan_hash\": \"{hash}\"}}");
    assert_eq!(d.post_json(path, None, &body).0, 401);
    let (code, answer) = d.post_json(
        path,
        Some("s3cret-token-0123456789"),
        "{\"plan_hash\": \"0000000000000000\"}",
    );
    assert_eq!(code, 409, "{answer}");
    assert!(
        answer.contains(&hash),
        "the answer names the current plan: {answer}"
    );
    let (code, answer) = d.post_json(path, Some("s3cret-token-0123456789"), &body);
    assert_eq!(code, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["results"][0]["result"], "converged", "{answer:#}");
    assert_eq!(d.metric("presta_stack_held{stack=\"demo\"}"), Some(0.0));
    let calls = env.mutating_calls();
    assert!(
        calls.iter().any(|c| c.ends_with("ModifyDBInstance")),
        "{calls:?}"
    );
}
