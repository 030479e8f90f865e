//! AWS as it fails: a seeded share of the calls throttled, refused with 500/503, or processed
//! with the answer lost. The reconciler converges anyway, creates nothing twice and never
//! deletes a data-bearing resource.

mod common;

use std::collections::BTreeMap;

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

#[tokio::test(flavor = "multi_thread")]
async fn apply_converges_through_thirty_percent_of_failing_calls_and_creates_nothing_twice() {
    let env = Env::start();
    let demo = env.demo();
    env.emu.set_faults(0.3, 7, &[]).unwrap();
    // A failed step makes apply exit 1; running it again (as a person or CI would) goes on
    // from what exists.
    let mut runs = 0;
    loop {
        runs += 1;
        let out = env.cli(&["apply", "-f", demo.to_str().unwrap()]);
        if out.status.success() {
            break;
        }
        assert!(
            runs < 12,
            "not converged after {runs} applies:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let calls = env.emu.calls().unwrap();
    let faults: BTreeMap<String, usize> =
        calls
            .iter()
            .filter_map(|c| c.fault.clone())
            .fold(BTreeMap::new(), |mut m, f| {
                *m.entry(f).or_default() += 1;
                m
            });
    eprintln!(
        "{runs} apply run(s); {} calls, faults injected: {faults:?}",
        calls.len()
    );
    assert!(faults.values().sum::<usize>() > 10, "{faults:?}");
    assert!(
        faults.contains_key("lost"),
        "answers were lost after processing: {faults:?}"
    );
    env.emu.set_faults(0.0, 0, &[]).unwrap();
    assert_eq!(inventory(&env).await, expected(), "nothing created twice");
    assert!(data_deletes(&env).is_empty(), "{:?}", data_deletes(&env));
    let (code, plan) = env.plan_json(&demo);
    assert_eq!(code, 0, "converged: {plan:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_converges_and_heals_through_failing_calls_and_counts_the_errors() {
    let env = Env::start();
    env.emu.set_faults(0.3, 11, &[]).unwrap();
    let d = env.serve(&env.demo(), &["--interval", "2", "--max-backoff", "4"]);
    d.eventually(
        300,
        "the loop converges the stack despite the faults",
        |d| d.json("GET", "/stacks/demo")["state"] == "converged",
    );
    // A heal, still with faults: port 22 opened on the instances' group.
    let ec2 = aws_sdk_ec2::Client::new(&env.sdk().await);
    let sg = ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values("demo-app-sg")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .security_groups()[0]
        .group_id()
        .unwrap()
        .to_string();
    // The injection also hits this test's own calls: retry until AWS takes it.
    let mut opened = false;
    for _ in 0..20 {
        if ec2
            .authorize_security_group_ingress()
            .group_id(&sg)
            .ip_protocol("tcp")
            .from_port(22)
            .to_port(22)
            .cidr_ip("0.0.0.0/0")
            .send()
            .await
            .is_ok()
        {
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
        by_class("throttled") >= 3.0,
        "throttling counted:\n{metrics}"
    );
    assert!(by_class("transient") >= 3.0, "5xx counted:\n{metrics}");
    env.emu.set_faults(0.0, 0, &[]).unwrap();
    assert_eq!(inventory(&env).await, expected(), "nothing created twice");
    assert!(data_deletes(&env).is_empty(), "{:?}", data_deletes(&env));
}
