//! The daemon end to end: the real binary (`serve`) against the emulator, driven over HTTP as
//! people and Prometheus do.

use crate::common;

use std::time::{Duration, Instant};

use common::{Daemon, Env};

fn converged(d: &Daemon) -> bool {
    let (status, body) = d.http("GET", "/stacks/demo", None);
    status == 200
        && serde_json::from_str::<serde_json::Value>(&body)
            .map(|v| v["state"] == "converged")
            .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_converges_shows_drift_heals_on_request_hides_secrets_and_stops_on_sigterm() {
    let env = Env::start();
    let d = env.serve(&env.demo(), &["--interval", "600"]);

    // Alive at once; ready once the first run has observed AWS.
    assert_eq!(d.http("GET", "/healthz", None).0, 200);
    d.eventually(60, "the first run converges the stack", converged);
    assert_eq!(d.http("GET", "/readyz", None).0, 200);
    let status = d.json("GET", "/stacks/demo");
    assert_eq!(status["runs"], 1);
    assert!(
        status["outputs"]["alb_dns_name"]
            .as_str()
            .is_some_and(|s| s.contains("elb")),
        "{status:#}"
    );
    assert!(
        status["outputs"]["tg_arn"]
            .as_str()
            .unwrap()
            .contains(":targetgroup/demo-tg/")
    );
    assert_eq!(status["drift"], serde_json::json!([]));
    let resources = status["resources"].as_array().unwrap();
    assert!(resources.len() >= 16, "{status:#}");
    assert!(
        resources.iter().all(|r| r["state"] == "in_sync"),
        "{status:#}"
    );
    assert_eq!(
        d.metric(r#"presta_resources_ready{stack="demo"}"#),
        Some(resources.len() as f64)
    );
    assert!(
        d.metric(r#"presta_last_successful_reconcile_timestamp_seconds{stack="demo"}"#)
            .unwrap()
            > 1.7e9
    );
    assert_eq!(
        d.metric(r#"presta_reconcile_runs_total{result="converged",stack="demo"}"#),
        Some(1.0)
    );

    // Drift by hand: port 22 open to the world on the instances' group.
    let sdk = env.sdk().await;
    let (_, rules) = env.app_group().await;
    env.open_ssh().await;
    let plan = d.json("GET", "/stacks/demo/plan");
    assert_eq!(plan["converged"], false);
    assert_eq!(
        d.metric(r#"presta_drifted_resources{kind="security_group",stack="demo"}"#),
        Some(1.0)
    );
    assert_eq!(
        d.metric(
            r#"presta_drift_detected_total{field="ingress",kind="security_group",stack="demo"}"#
        ),
        Some(1.0)
    );
    let status = d.json("GET", "/stacks/demo");
    let drift = status["drift"].as_array().unwrap();
    assert_eq!(drift.len(), 1, "{status:#}");
    assert_eq!(drift[0]["kind"], "security_group");
    assert_eq!(drift[0]["name"], "demo-app-sg");
    assert_eq!(drift[0]["field"], "ingress");
    assert!(
        drift[0]["live"]
            .to_string()
            .contains("tcp/22 from 0.0.0.0/0"),
        "{drift:?}"
    );
    assert!(
        !drift[0]["desired"].to_string().contains("tcp/22"),
        "{drift:?}"
    );

    // A forced run heals it and says what it did.
    let started = Instant::now();
    let healed = d.json("POST", "/reconcile/demo?wait=true");
    let took = started.elapsed();
    assert_eq!(healed["finished"], true);
    assert_eq!(healed["results"][0]["result"], "converged");
    let changes = healed["results"][0]["report"]["changes"]
        .as_array()
        .unwrap();
    let fixed: Vec<_> = changes.iter().filter(|c| c["action"] != "none").collect();
    assert_eq!(fixed.len(), 1, "{fixed:#?}");
    assert_eq!(fixed[0]["name"], "demo-app-sg");
    assert_eq!(fixed[0]["action"], "update");
    assert_eq!(env.app_group().await.1, rules, "the rule is revoked");
    assert_eq!(
        d.metric(r#"presta_drifted_resources{kind="security_group",stack="demo"}"#),
        Some(0.0)
    );
    assert_eq!(
        d.metric(
            r#"presta_drift_corrected_total{field="ingress",kind="security_group",stack="demo"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        d.json("GET", "/stacks/demo")["drift"],
        serde_json::json!([])
    );
    let status = d.json("GET", "/stacks/demo");
    let sg = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "demo-app-sg")
        .unwrap()
        .clone();
    assert_eq!(sg["last_action"], "update");
    assert_eq!(sg["state"], "in_sync");
    eprintln!("POST /reconcile/demo?wait=true answered in {took:?}");

    // A converged stack: the forced run makes no mutating call.
    env.emu.reset_calls().unwrap();
    let again = d.json("POST", "/reconcile?wait=true");
    assert_eq!(again["results"][0]["result"], "converged");
    assert_eq!(env.mutating_calls(), Vec::<String>::new());
    assert!(
        d.metric(r#"presta_aws_api_calls_total{operation="DescribeSecurityGroups",outcome="success",service="EC2"}"#)
            .unwrap()
            >= 3.0
    );

    // No secret value in any answer or log line.
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let mut secrets = Vec::new();
    for name in ["db-password", "admin-password"] {
        let p = ssm
            .get_parameter()
            .name(format!("/presta-reconciler/demo/{name}"))
            .with_decryption(true)
            .send()
            .await
            .unwrap();
        secrets.push(p.parameter().unwrap().value().unwrap().to_string());
    }
    let mut seen = String::new();
    for (m, p) in [
        ("GET", "/stacks"),
        ("GET", "/stacks/demo"),
        ("GET", "/stacks/demo/plan"),
        ("GET", "/metrics"),
        ("GET", "/readyz"),
        ("POST", "/reconcile/demo?wait=true"),
    ] {
        seen.push_str(&d.http(m, p, None).1);
    }
    seen.push_str(&healed.to_string());
    seen.push_str(&d.log_text());
    assert!(
        seen.len() > 10_000,
        "the responses and the debug log were read"
    );
    for s in &secrets {
        assert!(s.len() >= 16);
        assert!(!seen.contains(s.as_str()), "a generated password leaked");
    }

    // SIGTERM: exit 0, promptly.
    let mut d = d;
    let started = Instant::now();
    d.signal("TERM");
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still running 15s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{}", d.log_text());
    assert!(d.log_text().contains("shutting down"), "{}", d.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_loop_heals_by_itself_and_a_broken_config_is_refused_while_it_keeps_working() {
    let env = Env::start();
    let file = env.config("stack.yaml", |t| t);
    let d = env.serve(&file, &["--interval", "2", "--reload-poll", "1"]);
    d.eventually(60, "the first run converges the stack", converged);

    // The periodic loop heals drift without any trigger.
    let sdk = env.sdk().await;
    let (_, rules) = env.app_group().await;
    env.open_ssh().await;
    assert_eq!(env.app_group().await.1, rules + 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.app_group().await.1 != rules {
        assert!(
            Instant::now() < deadline,
            "not healed by the loop:\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Counted when the run that healed it ends, a moment after the group is corrected.
    d.eventually(20, "the correction counted", |d| {
        d.metric(
            r#"presta_drift_corrected_total{field="ingress",kind="security_group",stack="demo"}"#,
        )
        .is_some_and(|v| v >= 1.0)
    });

    // A broken edit: refused, counted, shown; the daemon keeps serving and reconciling.
    std::fs::write(&file, "apiVersion: presta-reconciler.io/v1alpha1\nkind: PrestaShopStack\nmetadata: {name: demo}\nspec:\n  regoin: eu-west-3\n").unwrap();
    d.eventually(20, "the broken config is refused", |d| {
        d.metric(r#"presta_config_reloads_total{result="error"}"#) == Some(1.0)
    });
    let overview = d.json("GET", "/stacks");
    let refusal = overview["config"]["last_reload_error"].as_str().unwrap();
    assert!(refusal.contains("regoin"), "{refusal}");
    assert_eq!(overview["stacks"][0]["stack"], "demo");
    assert!(d.log_text().contains("configuration reload refused"));
    let runs = d.json("GET", "/stacks/demo")["runs"].as_u64().unwrap();
    env.open_ssh().await;
    d.eventually(30, "runs go on with the last good config", |d| {
        d.json("GET", "/stacks/demo")["runs"].as_u64().unwrap() >= runs + 2
    });
    assert_eq!(env.app_group().await.1, rules, "drift is still healed");
    assert_eq!(d.http("GET", "/healthz", None).0, 200);
    assert_eq!(d.http("GET", "/readyz", None).0, 200);

    // A good edit is applied: a new health-check path reaches the target group.
    let text = std::fs::read_to_string(common::root().join("config/demo.yaml")).unwrap();
    let edited = text.replace(
        "compute:",
        "loadBalancer:\n    healthCheck:\n      path: /healthz.txt\n  compute:",
    );
    assert_ne!(edited, text);
    std::fs::write(&file, edited).unwrap();
    d.eventually(20, "the good config is loaded", |d| {
        d.metric(r#"presta_config_reloads_total{result="success"}"#) == Some(1.0)
    });
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&sdk);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tg = elb
            .describe_target_groups()
            .names("demo-tg")
            .send()
            .await
            .unwrap();
        if tg.target_groups()[0].health_check_path() == Some("/healthz.txt") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new config not applied:\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(d.json("GET", "/stacks")["config"]["last_reload_error"].is_null());
}

#[test]
fn serve_refuses_a_public_address_without_a_token_and_an_invalid_config() {
    let env = Env::start();
    let out = env.cli(&["serve", "-f", "config/demo.yaml", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without an API token"),
        "{err}"
    );
    let bad = env.config("bad.yaml", |t| {
        t.replace("region: eu-west-3", "region: mars-1")
    });
    let out = env.cli(&["serve", "-f", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.region"), "{err}");
}

#[test]
fn probe_checks_the_daemon_without_curl() {
    let env = Env::start();
    let token = env.dir.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    let d = env.serve(
        &env.demo(),
        &["--interval", "600", "--token-file", token.to_str().unwrap()],
    );
    let out = env.cli(&["probe", "--address", &d.addr]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.eventually(60, "ready", |d| d.http("GET", "/readyz", None).0 == 200);
    let out = env.cli(&["probe", "--ready", "--address", &d.addr]);
    assert_eq!(out.status.code(), Some(0));
    // The token guards the acting endpoints.
    assert_eq!(d.http("POST", "/reconcile", None).0, 401);
    assert_eq!(
        d.http(
            "POST",
            "/reconcile",
            Some("0123456789abcdef0123456789abcdef")
        )
        .0,
        202
    );
    drop(d);
    let out = env.cli(&["probe", "--address", "127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no answer"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_answers_twenty_waiting_callers_503_and_exits_within_the_drain_time() {
    let env = Env::start();
    let mut d = env.serve(&env.demo(), &["--interval", "600", "--drain-timeout", "3"]);
    d.eventually(60, "the first run converges the stack", converged);
    // Every AWS call now takes a second: the forced run outlasts the drain time.
    env.emu.set_latency(1000).unwrap();
    let signalled = std::thread::scope(|s| {
        let callers: Vec<_> = (0..20)
            .map(|_| s.spawn(|| d.http("POST", "/reconcile/demo?wait=true", None)))
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        let signalled = Instant::now();
        d.signal("TERM");
        for c in callers {
            let (status, body) = c.join().unwrap();
            assert_eq!(status, 503, "{body}");
            assert!(body.contains("shutting down"), "{body}");
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "the callers were answered at the shutdown, not after the drain"
        );
        signalled
    });
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "still running 10s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = signalled.elapsed();
    eprintln!("exited {took:?} after SIGTERM (drain 3 s)");
    env.emu.set_latency(0).unwrap();
    assert_eq!(status.code(), Some(0), "{}", d.log_text());
    assert!(
        took <= Duration::from_millis(4_300),
        "exited {took:?} after SIGTERM; the bound is the drain time (3 s) + 1 s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_turns_503_within_two_attempt_timeouts_of_an_aws_freeze_and_recovers() {
    let env = Env::start();
    let d = env.serve(
        &env.demo(),
        &["--interval", "2", "--aws-attempt-timeout", "1"],
    );
    d.eventually(60, "the first run converges the stack", converged);
    d.eventually(10, "ready", |d| d.http("GET", "/readyz", None).0 == 200);
    // AWS stops answering (every call would take 30 s).
    env.emu.set_latency(30_000).unwrap();
    let frozen = Instant::now();
    d.eventually(15, "/readyz says not ready", |d| {
        d.http("GET", "/readyz", None).0 == 503
    });
    let took = frozen.elapsed();
    let (_, body) = d.http("GET", "/readyz", None);
    env.emu.set_latency(0).unwrap();
    eprintln!("not ready {took:?} after the freeze: {body}");
    // The next sweep starts within the interval (2 s), then two attempt timeouts (2 s).
    assert!(took <= Duration::from_millis(5_500), "{took:?}");
    assert!(body.contains("AWS"), "{body}");
    d.eventually(60, "ready again once AWS answers", |d| {
        d.http("GET", "/readyz", None).0 == 200
    });
}

/// CPU time (user + system, in clock ticks) the process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): utime is the 14th field of
    // the line, stime the 15th.
    let rest = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn an_idle_daemon_uses_no_cpu_between_runs() {
    let env = Env::start();
    let d = env.serve(&env.demo(), &["--interval", "600"]);
    d.eventually(90, "converged", converged);
    let pid = d.child.id();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(pid) - before;
    // 100 ticks a second: a spinning loop would use about 300 here.
    assert!(
        used <= 20,
        "the idle daemon used {used} ticks of CPU in 3 s"
    );
}
