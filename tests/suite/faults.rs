//! AWS as it fails: a seeded share of the calls throttled, refused with 500/503, or processed
//! with the answer lost. The reconciler converges anyway, creates nothing twice and never
//! deletes a data-bearing resource.
//!
//! Each fault kind runs here once against the emulator, through the real HTTP stack and the
//! SDK's real retries; `tests/suite/fake_faults.rs` runs the same classes on the in-memory fake
//! over many seeds and every cut point, in seconds.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Env;

/// Resources of the demo stack as AWS holds them, counted by kind (duplicates show as > 1).
async fn inventory(env: &Env) -> BTreeMap<&'static str, usize> {
    let sdk = env.sdk().await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&sdk);
    let rds = aws_sdk_rds::Client::new(&sdk);
    let efs = aws_sdk_efs::Client::new(&sdk);
    let asg = aws_sdk_autoscaling::Client::new(&sdk);
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let mut out = BTreeMap::new();
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
    out.insert("security_group", sgs.security_groups().len());
    out.insert(
        "launch_template",
        ec2.describe_launch_templates()
            .send()
            .await
            .unwrap()
            .launch_templates()
            .len(),
    );
    out.insert(
        "load_balancer",
        elb.describe_load_balancers()
            .send()
            .await
            .unwrap()
            .load_balancers()
            .len(),
    );
    out.insert(
        "target_group",
        elb.describe_target_groups()
            .send()
            .await
            .unwrap()
            .target_groups()
            .len(),
    );
    out.insert(
        "db_instance",
        rds.describe_db_instances()
            .send()
            .await
            .unwrap()
            .db_instances()
            .len(),
    );
    out.insert(
        "file_system",
        efs.describe_file_systems()
            .send()
            .await
            .unwrap()
            .file_systems()
            .len(),
    );
    out.insert(
        "auto_scaling_group",
        asg.describe_auto_scaling_groups()
            .send()
            .await
            .unwrap()
            .auto_scaling_groups()
            .len(),
    );
    out.insert(
        "parameter",
        ssm.get_parameters_by_path()
            .path("/presta-reconciler/demo")
            .send()
            .await
            .unwrap()
            .parameters()
            .len(),
    );
    out
}

fn expected() -> BTreeMap<&'static str, usize> {
    [
        ("security_group", 4),
        ("launch_template", 1),
        ("load_balancer", 1),
        ("target_group", 1),
        ("db_instance", 1),
        ("file_system", 1),
        ("auto_scaling_group", 1),
        ("parameter", 2),
    ]
    .into()
}

fn data_deletes(env: &Env) -> Vec<String> {
    env.emu
        .calls()
        .unwrap()
        .into_iter()
        .filter(|c| {
            c.operation == "DeleteDBInstance"
                || c.operation.starts_with("DELETE /2015-02-01/file-systems")
                || c.operation == "DeleteParameter"
        })
        .map(|c| c.operation)
        .collect()
}

/// Runs `apply` until it exits 0, as a person or CI would after a failed step (each run goes
/// on from what exists); returns how many runs it took (at most 11).
fn apply_until_converged(env: &Env, file: &std::path::Path, extra: &[&str]) -> usize {
    let mut args = vec!["apply", "-f", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    for runs in 1..12 {
        let out = env.cli(&args);
        if out.status.success() {
            return runs;
        }
        if runs == 11 {
            panic!(
                "not converged after {runs} applies:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
    unreachable!()
}

/// The faults the emulator injected, by kind.
fn faults_injected(env: &Env) -> BTreeMap<String, usize> {
    env.emu
        .calls()
        .unwrap()
        .iter()
        .filter_map(|c| c.fault.clone())
        .fold(BTreeMap::new(), |mut m, f| {
            *m.entry(f).or_default() += 1;
            m
        })
}

/// With the faults off: every resource exists once, no data-bearing resource was deleted,
/// and plan finds nothing to do.
async fn assert_built_once(env: &Env, file: &std::path::Path) {
    env.emu.set_faults(0.0, 0, &[]).unwrap();
    assert_eq!(inventory(env).await, expected(), "nothing created twice");
    assert!(data_deletes(env).is_empty(), "{:?}", data_deletes(env));
    let (code, plan) = env.plan_json(file);
    assert_eq!(code, 0, "converged: {plan:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_converges_through_fifteen_percent_of_failing_calls_and_creates_nothing_twice() {
    let env = Env::start();
    let demo = env.demo();
    // Throttling is left to the daemon's run below: the SDK's adaptive retry answers it with
    // client-side delays of up to 18 s, which this test does not need to wait through.
    env.emu
        .set_faults_on(0.15, 7, &[], &[], &["unavailable", "internal", "lost"])
        .unwrap();
    let runs = apply_until_converged(&env, &demo, &[]);
    let faults = faults_injected(&env);
    eprintln!("{runs} apply run(s); faults injected: {faults:?}");
    assert!(faults.values().sum::<usize>() >= 5, "{faults:?}");
    assert!(
        faults.contains_key("lost"),
        "answers were lost after processing: {faults:?}"
    );
    assert_built_once(&env, &demo).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_converges_through_reset_black_holed_and_slow_connections() {
    // The network fails rather than AWS: connections reset, answers that never come (held 3 s,
    // past the 1 s attempt timeout) and slow answers, on 15 % of the calls.
    let env = Env::start();
    let demo = env.demo();
    env.emu
        .set_network_faults(
            0.15,
            5,
            &[],
            &["reset", "blackhole", "slow"],
            Duration::from_secs(3),
            1500,
        )
        .unwrap();
    let runs = apply_until_converged(&env, &demo, &["--aws-attempt-timeout", "1"]);
    let faults = faults_injected(&env);
    eprintln!("{runs} apply run(s); network faults injected: {faults:?}");
    for kind in ["reset", "blackhole", "slow"] {
        assert!(faults.contains_key(kind), "{kind} was injected: {faults:?}");
    }
    assert_built_once(&env, &demo).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_never_answers_costs_the_attempt_timeout_not_the_hold() {
    // Every DescribeVpcs is black-holed for 60 s. With --aws-attempt-timeout 1, plan gives up
    // after the SDK's attempts of 1 s each, and says why; it does not hang for a minute.
    let env = Env::start();
    env.emu
        .set_network_faults(
            1.0,
            1,
            &["DescribeVpcs"],
            &["blackhole"],
            Duration::from_secs(60),
            0,
        )
        .unwrap();
    let started = Instant::now();
    let out = env.cli(&[
        "plan",
        "-f",
        env.demo().to_str().unwrap(),
        "--aws-attempt-timeout",
        "1",
    ]);
    let took = started.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("DescribeVpcs"), "{text}");
    assert!(
        took < Duration::from_secs(45),
        "gave up after {took:?}, not after the 60 s hold"
    );
    assert!(
        faults_injected(&env)["blackhole"] >= 2,
        "the SDK tried again after the first attempt timed out"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_converges_and_heals_through_failing_calls_and_counts_the_errors() {
    // 5 % here, with the SDK's adaptive retry and its client-side delays after throttling;
    // 30 % on the fake in tests/suite/daemon_loop.rs.
    let env = Env::start();
    env.emu.set_faults(0.05, 11, &[]).unwrap();
    let d = env.serve(&env.demo(), &["--interval", "2", "--max-backoff", "4"]);
    d.eventually(
        300,
        "the loop converges the stack despite the faults",
        |d| d.json("GET", "/stacks/demo")["state"] == "converged",
    );
    // A heal, still with faults: port 22 opened on the instances' group.
    let ec2 = aws_sdk_ec2::Client::new(&env.sdk().await);
    // The injection also hits this test's own calls: each is retried until AWS takes it.
    let mut sg = None;
    for _ in 0..20 {
        if let Ok(out) = ec2
            .describe_security_groups()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("group-name")
                    .values("demo-app-sg")
                    .build(),
            )
            .send()
            .await
        {
            sg = out.security_groups()[0].group_id().map(String::from);
            break;
        }
    }
    let sg = sg.expect("the group is found within 20 tries");
    let mut opened = false;
    for _ in 0..20 {
        let r = ec2
            .authorize_security_group_ingress()
            .group_id(&sg)
            .ip_protocol("tcp")
            .from_port(22)
            .to_port(22)
            .cidr_ip("0.0.0.0/0")
            .send()
            .await;
        // An answer lost after AWS processed it: the rule is there already.
        let duplicate = r
            .as_ref()
            .err()
            .and_then(|e| e.as_service_error())
            .and_then(aws_sdk_ec2::error::ProvideErrorMetadata::code)
            == Some("InvalidPermission.Duplicate");
        if r.is_ok() || duplicate {
            opened = true;
            break;
        }
    }
    assert!(opened);
    d.eventually(240, "the loop heals port 22 despite the faults", |d| {
        d.metric(
            r#"presta_drift_corrected_total{field="ingress",kind="security_group",stack="demo"}"#,
        )
        .is_some_and(|v| v >= 1.0)
            && d.json("GET", "/stacks/demo")["state"] == "converged"
    });
    // Every failed attempt is counted by class, including those the SDK retried.
    let metrics = d.http("GET", "/metrics", None).1;
    let by_class = |class: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("presta_aws_api_errors_total{")
                    && l.contains(&format!("class=\"{class}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        by_class("throttled") >= 1.0,
        "throttling counted:\n{metrics}"
    );
    assert!(by_class("transient") >= 1.0, "5xx counted:\n{metrics}");
    env.emu.set_faults(0.0, 0, &[]).unwrap();
    assert_eq!(inventory(&env).await, expected(), "nothing created twice");
    assert!(data_deletes(&env).is_empty(), "{:?}", data_deletes(&env));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_call_is_reported_and_not_retried_in_a_loop() {
    let env = Env::start();
    let d = env.serve(&env.demo(), &["--interval", "2"]);
    d.eventually(90, "converged", |d| {
        d.json("GET", "/stacks/demo")["state"] == "converged"
    });

    // The daemon's role lost the permission to revoke rules; someone opens SSH.
    env.emu
        .set_faults_on(
            1.0,
            3,
            &["ec2"],
            &["RevokeSecurityGroupIngress"],
            &["denied"],
        )
        .unwrap();
    env.emu.reset_calls().unwrap();
    env.open_ssh().await;

    // The stack says why it waits, the metrics carry the class...
    d.eventually(30, "the refusal is reported", |d| {
        d.json("GET", "/stacks/demo")["state"] == "error"
    });
    let status = d.json("GET", "/stacks/demo");
    let waiting = status["waiting_for"].as_str().unwrap_or_default();
    assert!(waiting.contains("AWS refused"), "{status:#}");
    let failed = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "demo-app-sg")
        .unwrap();
    assert_eq!(failed["error_class"], "refused", "{failed:#}");
    // One typed error from the driver to the API: class, operation, resource, AWS's words.
    let e = &failed["error"];
    assert_eq!(e["class"], "refused", "{failed:#}");
    assert_eq!(e["operation"], "RevokeSecurityGroupIngress", "{failed:#}");
    assert!(
        e["resource"].as_str().unwrap().starts_with("sg-"),
        "{failed:#}"
    );
    assert!(!e["message"].as_str().unwrap().is_empty(), "{failed:#}");
    assert!(
        d.metric("presta_reconcile_errors_total{class=\"refused\",kind=\"security_group\",operation=\"RevokeSecurityGroupIngress\",stack=\"demo\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        d.log_text()
            .contains("AWS refused the reconciler's request")
    );

    // ...and for the next 6 s (3 intervals) the refused call is not tried again, while the
    // daemon stays ready. (The whole refused-retry delay, and readiness past the age after
    // which a daemon that stopped observing says its view is stale, are checked over 29
    // minutes of paused time in presta-controller's loop tests.)
    std::thread::sleep(Duration::from_secs(6));
    let calls = env.emu.calls().unwrap();
    let revokes = calls
        .iter()
        .filter(|c| c.operation == "RevokeSecurityGroupIngress")
        .count();
    assert_eq!(
        revokes, 1,
        "one refused attempt in three intervals, no retry storm"
    );
    let writes = calls
        .iter()
        .filter(|c| c.is_mutating() && c.agent != "other")
        .count();
    assert_eq!(writes, 1, "nothing else written either: {calls:?}");
    let (code, body) = d.http("GET", "/readyz", None);
    assert_eq!(
        code, 200,
        "a stack waiting on a refusal is not a stale daemon: {body}"
    );

    // The permission is back: a manual trigger heals at once.
    env.emu.set_faults(0.0, 3, &[]).unwrap();
    let (code, body) = d.http("POST", "/reconcile/demo?wait=true", None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"result\":\"converged\""), "{body}");
    assert!(d.json("GET", "/stacks/demo")["waiting_for"].is_null());
}

/// Runs `apply` with every AWS call slowed and SIGKILLs it once the emulator has seen `n`
/// mutating calls (0: after `ms` milliseconds); returns the mutating calls made by then.
fn apply_killed_after(env: &Env, file: &std::path::Path, n: usize, ms: u64) -> usize {
    env.emu.set_latency(60).unwrap();
    env.emu.reset_calls().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_presta-reconciler"));
    cmd.current_dir(common::root())
        .args(["apply", "-f"])
        .arg(file)
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in env.emu.env() {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    loop {
        let made = env.mutating_calls().len();
        let due = if n == 0 {
            started.elapsed().as_millis() as u64 >= ms
        } else {
            made >= n
        };
        if due || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill(); // SIGKILL
    child.wait().unwrap();
    env.emu.set_latency(0).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    env.mutating_calls().len()
}

/// After the re-run: everything once, nothing pending.
async fn converged_without_duplicates(env: &Env, what: &str) {
    assert_eq!(
        inventory(env).await,
        expected(),
        "{what}: duplicates or gaps"
    );
    let (code, plan) = env.plan_json(&env.demo());
    assert_eq!(code, 0, "{what}: not converged: {plan:#}");
    assert!(
        data_deletes(env).is_empty(),
        "{what}: {:?}",
        data_deletes(env)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_killed_at_four_points_is_finished_by_running_it_again() {
    let demo = common::root().join("config/demo.yaml");
    let mut landed = Vec::new();
    // 2 points of a creation from nothing (about 1.5 s with 60 ms per call), each on a fresh
    // emulator: the process SIGKILLed after so many writes, or so many ms. Every write of
    // the creation is a cut point in tests/suite/fake_faults.rs.
    for (n, ms) in [(0, 30), (8, 0)] {
        let env = Env::start();
        let made = apply_killed_after(&env, &demo, n, ms);
        landed.push(made);
        let out = env.cli(&["apply", "-f", demo.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "re-run after a kill at {made} writes: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        converged_without_duplicates(&env, &format!("cold, killed after {made} writes")).await;
    }
    // 2 points of a heal: three drifts at once, the apply killed between and after their
    // corrections.
    let env = Env::start();
    env.apply(&demo);
    let sdk = env.sdk().await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&sdk);
    let asg = aws_sdk_autoscaling::Client::new(&sdk);
    for (round, n) in [1usize, 3].into_iter().enumerate() {
        let tg = elb
            .describe_target_groups()
            .names("demo-tg")
            .send()
            .await
            .unwrap()
            .target_groups()[0]
            .target_group_arn()
            .unwrap()
            .to_string();
        elb.modify_target_group()
            .target_group_arn(&tg)
            .health_check_path(format!("/drift-{round}"))
            .send()
            .await
            .unwrap();
        asg.update_auto_scaling_group()
            .auto_scaling_group_name("demo-app")
            .max_size(7)
            .send()
            .await
            .unwrap();
        let lb = elb
            .describe_load_balancers()
            .names("demo-alb")
            .send()
            .await
            .unwrap()
            .load_balancers()[0]
            .load_balancer_arn()
            .unwrap()
            .to_string();
        elb.modify_load_balancer_attributes()
            .load_balancer_arn(&lb)
            .attributes(
                aws_sdk_elasticloadbalancingv2::types::LoadBalancerAttribute::builder()
                    .key("idle_timeout.timeout_seconds")
                    .value("321")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let made = apply_killed_after(&env, &demo, n, 50);
        landed.push(made);
        env.apply(&demo);
        converged_without_duplicates(&env, &format!("heal {round}, killed after {made} writes"))
            .await;
    }
    eprintln!("kills landed after {landed:?} mutating calls");
    let distinct: std::collections::BTreeSet<usize> = landed.iter().copied().collect();
    // The kills split the runs at (at least) three different numbers of writes made.
    assert!(distinct.len() >= 3, "kills landed at {landed:?}");
}
