//! The runbook's maintenance commands from the controller, through SSM Run Command: exactly
//! one command with the shell document, the `presta-ctl` line and the group's instances as
//! target; each instance's result reported; unknown commands refused before any AWS call; the
//! HTTP endpoint behind the token.

use crate::common;

use common::Env;

#[tokio::test(flavor = "multi_thread")]
async fn exec_sends_one_command_to_the_groups_instances_and_reports_each() {
    let env = Env::start();
    env.apply(&env.demo());

    // An unknown command (or a shell string) never reaches AWS.
    env.emu.reset_calls().unwrap();
    let out = env.cli(&["exec", "--stack", "demo", "rm -rf /"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cache-clear, thumbs, htaccess, status, set-domain")
    );
    let out = env.cli(&["exec", "--stack", "demo", "set-domain", "x.com;reboot"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        env.emu.calls().unwrap().is_empty(),
        "no AWS call for a refused command"
    );

    let (code, run) = env.json(&["exec", "--stack", "demo", "cache-clear", "--output", "json"]);
    assert_eq!(code, 0, "{run:#}");
    assert_eq!(run["succeeded"], true);
    assert_eq!(run["document"], "AWS-RunShellScript");
    let results = run["results"].as_array().unwrap();
    assert!(!results.is_empty(), "{run:#}");
    assert!(
        results
            .iter()
            .all(|r| r["status"] == "Success" && r["exit_code"] == 0)
    );
    let sends: Vec<_> = env
        .emu
        .calls()
        .unwrap()
        .into_iter()
        .filter(|c| c.operation == "SendCommand")
        .collect();
    assert_eq!(sends.len(), 1, "exactly one command");

    // What AWS received: the document, the line, the group as target.
    let ssm = aws_sdk_ssm::Client::new(&env.sdk().await);
    let listed = ssm.list_commands().send().await.unwrap();
    let cmd = &listed.commands()[0];
    assert_eq!(cmd.document_name(), Some("AWS-RunShellScript"));
    assert_eq!(
        cmd.parameters().unwrap()["commands"],
        vec!["presta-ctl cache-clear".to_string()]
    );
    let target = &cmd.targets()[0];
    assert_eq!(target.key(), Some("tag:aws:autoscaling:groupName"));
    assert_eq!(target.values(), ["demo-app".to_string()]);

    // A failing instance: exit 1, its status and output shown.
    env.emu
        .set_command_result(Some(("Failed", 2, "cache dir not writable")))
        .unwrap();
    let out = env.cli(&["exec", "--stack", "demo", "thumbs", "products"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("presta-ctl thumbs products"), "{text}");
    assert!(text.contains("Failed  exit 2"), "{text}");
    assert!(text.contains("| cache dir not writable"), "{text}");
}

#[test]
fn the_commands_endpoint_needs_the_token_and_keeps_the_last_result() {
    let env = Env::start();
    let token_file = env.dir.path().join("token");
    std::fs::write(&token_file, "exec-token-0123456789abcdef").unwrap();
    let mut perms = std::fs::metadata(&token_file).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&token_file, perms).unwrap();
    let d = env.serve(
        &env.demo(),
        &[
            "--interval",
            "600",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    );
    d.eventually(90, "converged", |d| {
        d.json("GET", "/stacks/demo")["state"] == "converged"
    });
    let path = "/stacks/demo/commands/cache-clear";
    assert_eq!(d.http("POST", path, None).0, 401);
    env.emu.reset_calls().unwrap();
    let (code, body) = d.http(
        "POST",
        "/stacks/demo/commands/reboot",
        Some("exec-token-0123456789abcdef"),
    );
    assert_eq!(code, 400, "{body}");
    assert!(env.emu.calls().unwrap().is_empty());
    let (code, body) = d.http("POST", path, Some("exec-token-0123456789abcdef"));
    assert_eq!(code, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["run"]["succeeded"], true, "{answer:#}");
    let status = d.json("GET", "/stacks/demo");
    assert_eq!(status["last_command"]["command"], "presta-ctl cache-clear");
    assert!(
        !status["last_command"]["results"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // The status page shows it too.
    let (_, page) = d.http("GET", "/", None);
    assert!(page.contains("Last maintenance command"), "{page}");
}
