//! `apply` from nothing builds the whole stack; a second `apply` changes nothing; `plan` on a
//! converged stack exits 0; several stacks converge independently; `observe` mode and blocked
//! replacements never change anything.

use crate::common;

use aws_sdk_ec2::types::Filter;
use common::{Env, change, changes, diffs};

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// One stack's first journey on one emulator: planned on nothing, built, then left alone.
#[tokio::test]
async fn a_stack_is_planned_then_built_then_left_alone() {
    let env = Env::start();
    plan_on_nothing_shows_creates_and_changes_nothing(&env).await;
    apply_builds_the_whole_stack_from_nothing(&env).await;
    second_apply_makes_no_mutating_call_and_plan_exits_0(&env).await;
}

async fn apply_builds_the_whole_stack_from_nothing(env: &Env) {
    let stdout = env.apply(&env.demo());
    assert!(stdout.contains("16 create"), "{stdout}");
    assert!(stdout.contains("alb_dns_name = demo-alb-"), "{stdout}");
    let config = env.sdk().await;
    let net = env.emu.network("demo").unwrap().clone();

    // Security groups chained internet → ALB → instances → RDS/EFS.
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let groups = ec2
        .describe_security_groups()
        .filters(filter("tag:presta-reconciler/stack", "demo"))
        .send()
        .await
        .unwrap();
    let by_name: std::collections::BTreeMap<String, aws_sdk_ec2::types::SecurityGroup> = groups
        .security_groups()
        .iter()
        .map(|g| (g.group_name().unwrap().to_string(), g.clone()))
        .collect();
    assert_eq!(
        by_name.keys().cloned().collect::<Vec<_>>(),
        ["demo-alb-sg", "demo-app-sg", "demo-db-sg", "demo-efs-sg"]
    );
    let id = |n: &str| by_name[n].group_id().unwrap().to_string();
    let rules = |n: &str| {
        presta_aws::security_group::rules_of(by_name[n].ip_permissions())
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(rules("demo-alb-sg"), ["tcp/80 from 0.0.0.0/0"]);
    assert_eq!(
        rules("demo-app-sg"),
        [format!("tcp/80 from {}", id("demo-alb-sg"))]
    );
    assert_eq!(
        rules("demo-db-sg"),
        [format!("tcp/3306 from {}", id("demo-app-sg"))]
    );
    assert_eq!(
        rules("demo-efs-sg"),
        [format!("tcp/2049 from {}", id("demo-app-sg"))]
    );
    for g in by_name.values() {
        assert_eq!(g.vpc_id(), Some(net.vpc_id.as_str()));
        let tags = presta_aws::tags::from_ec2(g.tags());
        assert_eq!(tags["managed-by"], "presta-reconciler");
        assert_eq!(tags["environment"], "demo", "labels become tags");
    }

    // Load balancer, target group, listener.
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let lb = elb
        .describe_load_balancers()
        .names("demo-alb")
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .clone();
    assert_eq!(lb.scheme().map(|s| s.as_str()), Some("internet-facing"));
    let mut lb_subnets: Vec<String> = lb
        .availability_zones()
        .iter()
        .filter_map(|z| z.subnet_id().map(String::from))
        .collect();
    lb_subnets.sort();
    let mut public = net.subnet_ids("public");
    public.sort();
    assert_eq!(lb_subnets, public, "the ALB is in the public subnets");
    assert_eq!(lb.security_groups(), [id("demo-alb-sg")]);
    let tg = elb
        .describe_target_groups()
        .names("demo-tg")
        .send()
        .await
        .unwrap()
        .target_groups()[0]
        .clone();
    assert_eq!(tg.health_check_path(), Some("/presta-health.txt"));
    assert_eq!(tg.matcher().and_then(|m| m.http_code()), Some("200"));
    let attrs = elb
        .describe_target_group_attributes()
        .target_group_arn(tg.target_group_arn().unwrap())
        .send()
        .await
        .unwrap();
    let attr = |k: &str| {
        attrs
            .attributes()
            .iter()
            .find(|a| a.key() == Some(k))
            .and_then(|a| a.value())
            .map(String::from)
    };
    assert_eq!(attr("stickiness.enabled").as_deref(), Some("true"));
    assert_eq!(
        attr("deregistration_delay.timeout_seconds").as_deref(),
        Some("30")
    );
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(lb.load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(listeners.listeners().len(), 1);
    let l = &listeners.listeners()[0];
    assert_eq!(l.port(), Some(80));
    assert_eq!(
        l.default_actions()[0].target_group_arn(),
        tg.target_group_arn()
    );

    // Launch template: AMI resolved from SSM, IMDSv2 with hop limit 1, encrypted root, user data.
    let lts = ec2
        .describe_launch_templates()
        .launch_template_names("demo-app")
        .send()
        .await
        .unwrap();
    let lt_id = lts.launch_templates()[0]
        .launch_template_id()
        .unwrap()
        .to_string();
    let version = ec2
        .describe_launch_template_versions()
        .launch_template_id(&lt_id)
        .versions("$Default")
        .send()
        .await
        .unwrap();
    let data = version.launch_template_versions()[0]
        .launch_template_data()
        .unwrap()
        .clone();
    let ssm = aws_sdk_ssm::Client::new(&config);
    let ami = ssm
        .get_parameter()
        .name(presta_spec::defaults::AL2023_X86_64_PARAMETER)
        .send()
        .await
        .unwrap()
        .parameter()
        .unwrap()
        .value()
        .unwrap()
        .to_string();
    assert_eq!(data.image_id(), Some(ami.as_str()));
    assert_eq!(data.instance_type().map(|t| t.as_str()), Some("t3.small"));
    assert_eq!(
        data.iam_instance_profile().and_then(|p| p.name()),
        Some("presta-demo-instance")
    );
    assert_eq!(data.security_group_ids(), [id("demo-app-sg")]);
    let md = data.metadata_options().unwrap();
    assert_eq!(md.http_tokens().map(|t| t.as_str()), Some("required"));
    assert_eq!(md.http_put_response_hop_limit(), Some(1));
    let root = data.block_device_mappings()[0].ebs().unwrap();
    assert_eq!(
        (root.encrypted(), root.volume_size()),
        (Some(true), Some(20))
    );
    let user_data = presta_aws::launch_template::decode_user_data(
        &aws_smithy_types::base64::decode(data.user_data().unwrap()).unwrap(),
    );

    // RDS, EFS.
    let rds = aws_sdk_rds::Client::new(&config);
    let db = rds
        .describe_db_instances()
        .db_instance_identifier("demo-db")
        .send()
        .await
        .unwrap()
        .db_instances()[0]
        .clone();
    assert_eq!(db.engine(), Some("mysql"));
    assert!(
        db.engine_version().unwrap().starts_with("8.4"),
        "{:?}",
        db.engine_version()
    );
    assert_eq!(db.storage_encrypted(), Some(true));
    assert_eq!(db.publicly_accessible(), Some(false));
    assert_eq!(db.backup_retention_period(), Some(1));
    assert_eq!(
        db.vpc_security_groups()[0].vpc_security_group_id(),
        Some(id("demo-db-sg").as_str())
    );
    assert_eq!(
        db.db_subnet_group().and_then(|g| g.db_subnet_group_name()),
        Some("demo-db-subnets")
    );
    let efs = aws_sdk_efs::Client::new(&config);
    let fs = efs
        .describe_file_systems()
        .creation_token("presta-reconciler-demo-efs")
        .send()
        .await
        .unwrap()
        .file_systems()[0]
        .clone();
    assert_eq!(fs.encrypted(), Some(true));
    assert_eq!(fs.throughput_mode().map(|t| t.as_str()), Some("elastic"));
    let mts = efs
        .describe_mount_targets()
        .file_system_id(fs.file_system_id())
        .send()
        .await
        .unwrap();
    let mut mt_subnets: Vec<String> = mts
        .mount_targets()
        .iter()
        .map(|m| m.subnet_id().to_string())
        .collect();
    mt_subnets.sort();
    let mut private = net.subnet_ids("private");
    private.sort();
    assert_eq!(mt_subnets, private, "one mount target per private subnet");

    // The user data carries the endpoints, not the secrets.
    assert!(user_data.contains(&format!("readonly EFS_ID='{}'", fs.file_system_id())));
    assert!(user_data.contains(&format!(
        "readonly DB_HOST='{}'",
        db.endpoint().unwrap().address().unwrap()
    )));
    assert!(user_data.contains(&format!(
        "readonly PS_DOMAIN='{}'",
        lb.dns_name().unwrap().to_lowercase()
    )));
    let password = ssm
        .get_parameter()
        .name("/presta-reconciler/demo/db-password")
        .with_decryption(true)
        .send()
        .await
        .unwrap()
        .parameter()
        .unwrap()
        .value()
        .unwrap()
        .to_string();
    assert_eq!(password.len(), 32);
    assert!(
        !user_data.contains(&password),
        "the password must not be in user data"
    );
    assert!(
        !stdout.contains(&password),
        "the password must not be printed"
    );

    // Auto Scaling group: template default version, private subnets, target group, ELB checks.
    let asg = aws_sdk_autoscaling::Client::new(&config);
    let group = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("demo-app")
        .send()
        .await
        .unwrap()
        .auto_scaling_groups()[0]
        .clone();
    assert_eq!(
        group.launch_template().and_then(|l| l.launch_template_id()),
        Some(lt_id.as_str())
    );
    assert_eq!(
        group.launch_template().and_then(|l| l.version()),
        Some("$Default")
    );
    assert_eq!(
        (group.min_size(), group.max_size(), group.desired_capacity()),
        (Some(1), Some(2), Some(1))
    );
    assert_eq!(
        group.target_group_arns(),
        [tg.target_group_arn().unwrap().to_string()]
    );
    assert_eq!(group.health_check_type(), Some("ELB"));
    let mut asg_subnets: Vec<String> = group
        .vpc_zone_identifier()
        .unwrap()
        .split(',')
        .map(String::from)
        .collect();
    asg_subnets.sort();
    assert_eq!(asg_subnets, private);
    let policies = asg
        .describe_policies()
        .auto_scaling_group_name("demo-app")
        .send()
        .await
        .unwrap();
    let tt = policies.scaling_policies()[0]
        .target_tracking_configuration()
        .unwrap();
    assert_eq!(tt.target_value(), Some(60.0));

    // Outputs.
    let (code, report) = env.plan_json(&env.demo());
    assert_eq!(code, 0, "a converged stack plans no change: {report:#}");
    let outputs = &report["stacks"][0]["outputs"];
    assert_eq!(outputs["alb_dns_name"], lb.dns_name().unwrap());
    assert_eq!(outputs["tg_arn"], tg.target_group_arn().unwrap());
    assert_eq!(outputs["efs_id"], fs.file_system_id());
    assert_eq!(
        outputs["db_endpoint"],
        db.endpoint().unwrap().address().unwrap()
    );
}

async fn second_apply_makes_no_mutating_call_and_plan_exits_0(env: &Env) {
    env.emu.reset_calls().unwrap();
    let stdout = env.apply(&env.demo());
    assert_eq!(env.mutating_calls(), Vec::<String>::new(), "{stdout}");
    assert!(
        stdout.contains("no changes: 16 resources match the spec"),
        "{stdout}"
    );
    assert!(stdout.contains("(0 mutating)"), "{stdout}");
    let (code, report) = env.plan_json(&env.demo());
    assert_eq!(code, 0);
    assert!(
        changes(&report).iter().all(|c| c["action"] == "none"),
        "{report:#}"
    );
    assert_eq!(report["mutating_calls"], 0);
}

async fn plan_on_nothing_shows_creates_and_changes_nothing(env: &Env) {
    let (code, report) = env.plan_json(&env.demo());
    assert_eq!(code, 2, "changes pending");
    assert_eq!(changes(&report).len(), 16);
    assert!(
        changes(&report).iter().all(|c| c["action"] == "create"),
        "{report:#}"
    );
    assert_eq!(
        report["stacks"][0]["outputs"]["alb_dns_name"],
        serde_json::Value::Null
    );
    assert_eq!(env.mutating_calls(), Vec::<String>::new());
}

#[tokio::test]
async fn observe_mode_reports_drift_and_changes_nothing() {
    let env = Env::start();
    env.apply(&env.demo());
    let config = env.sdk().await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
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
        .health_check_path("/")
        .send()
        .await
        .unwrap();
    let observe = env.config("observe.yaml", |t| {
        format!("{t}  policy:\n    mode: observe\n")
    });
    env.emu.reset_calls().unwrap();
    let out = env.cli(&["apply", "-f", observe.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("[policy: observe, nothing is changed]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("healthCheck.path: \"/\" → \"/presta-health.txt\""),
        "{stdout}"
    );
    assert_eq!(env.mutating_calls(), Vec::<String>::new());
    let after = elb
        .describe_target_groups()
        .names("demo-tg")
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.target_groups()[0].health_check_path(),
        Some("/"),
        "observe mode must not heal"
    );
}

#[tokio::test]
async fn a_change_that_would_replace_the_database_is_blocked_and_the_rest_converges() {
    let env = Env::start();
    env.apply(&env.demo());
    // The spec now asks for MySQL 8.0: a major-version move the reconciler never makes alone.
    let downgrade = env.config("downgrade.yaml", |t| {
        t.replace(
            "    backupRetentionDays: 1\n",
            "    backupRetentionDays: 1\n    engineVersion: \"8.0\"\n",
        )
        .replace("maxSize: 2", "maxSize: 3")
    });
    env.emu.reset_calls().unwrap();
    let report = env.apply_json(&downgrade);
    let db = change(&report, "db_instance", "demo-db");
    assert_eq!(db["action"], "blocked", "{db:#}");
    assert!(
        db["diffs"][0]["blocked"]
            .as_str()
            .unwrap()
            .contains("major-version"),
        "{db:#}"
    );
    assert_eq!(
        change(&report, "auto_scaling_group", "demo-app")["action"],
        "update",
        "the rest of the stack still converges"
    );
    let calls = env.mutating_calls();
    assert!(
        !calls.iter().any(|c| c.contains("DBInstance")),
        "no call touched the database: {calls:?}"
    );
    let config = env.sdk().await;
    let rds = aws_sdk_rds::Client::new(&config);
    let db = rds
        .describe_db_instances()
        .db_instance_identifier("demo-db")
        .send()
        .await
        .unwrap();
    assert!(
        db.db_instances()[0]
            .engine_version()
            .unwrap()
            .starts_with("8.4")
    );
    let (code, report) = env.plan_json(&downgrade);
    assert_eq!(code, 2, "blocked drift stays visible");
    assert_eq!(
        diffs(change(&report, "db_instance", "demo-db")),
        ["engineVersion: \"8.4.3\" → \"8.0\""
            .replace("8.4.3", db.db_instances()[0].engine_version().unwrap())]
    );
}

#[tokio::test]
async fn two_stacks_converge_independently_and_one_failure_does_not_stop_the_other() {
    let env = Env::start();
    let demo = std::fs::read_to_string(common::root().join("config/demo.yaml")).unwrap();
    let shop2 = demo.replace("name: demo\n", "name: shop2\n");
    // A third stack whose network does not exist: it fails, the others converge.
    let broken = demo
        .replace("name: demo\n", "name: broken\n")
        .replace("Name: presta-demo-vpc", "Name: no-such-vpc");
    let file = env.config("three.yaml", |_| format!("{demo}---\n{shop2}---\n{broken}"));
    let (code, report) = env.json(&["apply", "-f", file.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code, 1, "a failed stack makes apply fail");
    let stacks = report["stacks"].as_array().unwrap();
    assert_eq!(
        stacks
            .iter()
            .map(|s| s["stack"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["demo", "shop2", "broken"]
    );
    assert!(
        stacks[2]["error"]
            .as_str()
            .unwrap()
            .contains("spec.network.vpc.tags: no VPC carries the tags {Name=no-such-vpc}"),
        "{:#}",
        stacks[2]
    );
    for s in &stacks[..2] {
        assert!(s["error"].is_null());
        assert_eq!(
            s["changes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["action"] == "create")
                .count(),
            16,
            "{s:#}"
        );
    }
    let config = env.sdk().await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let lbs = elb.describe_load_balancers().send().await.unwrap();
    let mut names: Vec<&str> = lbs
        .load_balancers()
        .iter()
        .filter_map(|l| l.load_balancer_name())
        .collect();
    names.sort();
    assert_eq!(names, ["demo-alb", "shop2-alb"]);

    // --stack limits a run to the stacks named.
    let (code, only) = env.json(&[
        "plan",
        "-f",
        file.to_str().unwrap(),
        "--stack",
        "shop2",
        "--output",
        "json",
    ]);
    assert_eq!(
        only["stacks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["stack"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["shop2"]
    );
    assert_eq!(
        code, 0,
        "shop2 is converged; the broken stack is not part of this run"
    );

    // Observing two stacks lists each kind as often as observing one: only the reads AWS has
    // no batch form for (attributes, listeners, EFS details, template versions) grow.
    let count = |calls: Vec<presta_emulator::Call>| {
        let mut m = std::collections::BTreeMap::<String, usize>::new();
        for c in calls {
            *m.entry(c.operation).or_default() += 1;
        }
        m
    };
    // The observation is compared: with only `demo` in the file, `shop2` is an orphan the
    // plan would list (docs/lifecycle.md), so both plans skip that search.
    let plan = |file: &std::path::Path| {
        env.json(&[
            "plan",
            "-f",
            file.to_str().unwrap(),
            "--output",
            "json",
            "--no-orphans",
        ])
    };
    env.emu.reset_calls().unwrap();
    let two = env.config("two.yaml", |_| format!("{demo}---\n{shop2}"));
    let (code, report) = plan(&two);
    assert_eq!(code, 0, "{report:#}");
    let ops_two = count(env.emu.calls().unwrap());
    env.emu.reset_calls().unwrap();
    let (code, _) = plan(&env.demo());
    assert_eq!(code, 0);
    let ops_one = count(env.emu.calls().unwrap());
    const LISTS: [&str; 13] = [
        "DescribeVpcs",
        "DescribeNetworkInterfaces",
        "DescribeSubnets",
        "GetParameters",
        "DescribeSecurityGroups",
        "DescribeTargetGroups",
        "DescribeLoadBalancers",
        "DescribeDBSubnetGroups",
        "DescribeDBInstances",
        "GET /2015-02-01/file-systems",
        "DescribeLaunchTemplates",
        "DescribeAutoScalingGroups",
        "DescribePolicies",
    ];
    for op in LISTS {
        assert_eq!(
            ops_two.get(op),
            ops_one.get(op),
            "{op} is called once per region whatever the number of stacks"
        );
    }
    let per_stack: usize = ops_two
        .iter()
        .filter(|(op, _)| !LISTS.contains(&op.as_str()))
        .map(|(_, n)| n)
        .sum::<usize>()
        - ops_one
            .iter()
            .filter(|(op, _)| !LISTS.contains(&op.as_str()))
            .map(|(_, n)| n)
            .sum::<usize>();
    // Seven detail reads AWS has no batch for, plus the health verdict's target health.
    assert!(
        per_stack <= 8,
        "per-stack detail reads: {per_stack}: {ops_two:?}"
    );
}

#[tokio::test]
async fn two_concurrent_applies_create_nothing_twice() {
    let env = Env::start();
    let demo = env.demo();
    let file = demo.to_str().unwrap();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| env.cli(&["apply", "-f", file]));
        let b = s.spawn(|| env.cli(&["apply", "-f", file]));
        (a.join().unwrap(), b.join().unwrap())
    });
    // One may lose a race and report it; neither may duplicate anything.
    let outputs = format!(
        "{}\n{}\n{}\n{}",
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stdout),
        String::from_utf8_lossy(&b.stderr)
    );
    let config = env.sdk().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let groups = ec2
        .describe_security_groups()
        .filters(filter("tag:presta-reconciler/stack", "demo"))
        .send()
        .await
        .unwrap();
    assert_eq!(groups.security_groups().len(), 4, "{outputs}");
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let lbs = elb.describe_load_balancers().send().await.unwrap();
    assert_eq!(lbs.load_balancers().len(), 1, "{outputs}");
    let tgs = elb.describe_target_groups().send().await.unwrap();
    assert_eq!(tgs.target_groups().len(), 1, "{outputs}");
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(lbs.load_balancers()[0].load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(listeners.listeners().len(), 1, "{outputs}");
    let efs = aws_sdk_efs::Client::new(&config);
    let fss = efs.describe_file_systems().send().await.unwrap();
    assert_eq!(fss.file_systems().len(), 1, "{outputs}");
    let mts = efs
        .describe_mount_targets()
        .file_system_id(fss.file_systems()[0].file_system_id())
        .send()
        .await
        .unwrap();
    assert_eq!(mts.mount_targets().len(), 2, "{outputs}");
    let lts = ec2.describe_launch_templates().send().await.unwrap();
    assert_eq!(lts.launch_templates().len(), 1, "{outputs}");
    let rds = aws_sdk_rds::Client::new(&config);
    assert_eq!(
        rds.describe_db_instances()
            .send()
            .await
            .unwrap()
            .db_instances()
            .len(),
        1,
        "{outputs}"
    );
    // And whatever the race left, the next apply converges it.
    env.apply(&demo);
    let (code, report) = env.plan_json(&demo);
    assert_eq!(code, 0, "{report:#}");
}

#[tokio::test]
async fn https_redirects_http_and_serves_the_certificate() {
    let env = Env::start();
    let net = env.emu.network("demo").unwrap().clone();
    let file = env.config("https.yaml", |t| {
        t.replace(
            "  prestashop:\n",
            &format!("  loadBalancer:\n    https:\n      certificateArn: {}\n  prestashop:\n    domain: {}\n", net.certificate_arn, net.domain),
        )
    });
    let stdout = env.apply(&file);
    assert!(stdout.contains("17 create"), "{stdout}");
    let config = env.sdk().await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
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
    let mut listeners = elb
        .describe_listeners()
        .load_balancer_arn(&lb)
        .send()
        .await
        .unwrap()
        .listeners()
        .to_vec();
    listeners.sort_by_key(|l| l.port());
    assert_eq!(listeners.len(), 2);
    let redirect = listeners[0].default_actions()[0]
        .redirect_config()
        .expect("HTTP redirects");
    assert_eq!(
        (listeners[0].port(), redirect.protocol(), redirect.port()),
        (Some(80), Some("HTTPS"), Some("443"))
    );
    assert_eq!(listeners[1].port(), Some(443));
    assert_eq!(
        listeners[1].certificates()[0].certificate_arn(),
        Some(net.certificate_arn.as_str())
    );
    assert_eq!(
        listeners[1].ssl_policy(),
        Some("ELBSecurityPolicy-TLS13-1-2-2021-06")
    );
    assert_eq!(
        listeners[1].default_actions()[0].target_group_arn(),
        Some(tg.as_str())
    );
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let sg = ec2
        .describe_security_groups()
        .filters(filter("group-name", "demo-alb-sg"))
        .send()
        .await
        .unwrap();
    let rules: Vec<String> =
        presta_aws::security_group::rules_of(sg.security_groups()[0].ip_permissions())
            .iter()
            .map(ToString::to_string)
            .collect();
    assert_eq!(rules, ["tcp/80 from 0.0.0.0/0", "tcp/443 from 0.0.0.0/0"]);
    // The shop is told its own domain and that it is served over HTTPS.
    let lt = ec2
        .describe_launch_template_versions()
        .launch_template_name("demo-app")
        .versions("$Default")
        .send()
        .await
        .unwrap();
    let data = lt.launch_template_versions()[0]
        .launch_template_data()
        .unwrap()
        .user_data()
        .unwrap()
        .to_string();
    let user_data = presta_aws::launch_template::decode_user_data(
        &aws_smithy_types::base64::decode(data).unwrap(),
    );
    assert!(user_data.contains(&format!("readonly PS_DOMAIN='{}'", net.domain)));
    assert!(user_data.contains("readonly PS_ENABLE_SSL='1'"));
    let (code, report) = env.plan_json(&file);
    assert_eq!(code, 0, "{report:#}");

    // Dropping HTTPS from the spec removes the HTTPS listener and the redirect.
    let plain = env.config("plain.yaml", |t| t);
    let (code, report) = env.plan_json(&plain);
    assert_eq!(code, 2);
    assert_eq!(
        change(&report, "listener", "demo-alb:443")["action"],
        "delete"
    );
    assert_eq!(
        change(&report, "listener", "demo-alb:80")["action"],
        "update"
    );
}

#[tokio::test]
async fn a_resource_made_by_hand_with_the_stack_name_is_left_alone_unless_adopted() {
    use aws_sdk_elasticloadbalancingv2::types::ProtocolEnum;
    let env = Env::start();
    let config = env.sdk().await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let vpc = env.emu.network("demo").unwrap().vpc_id.clone();
    elb.create_target_group()
        .name("demo-tg")
        .protocol(ProtocolEnum::Http)
        .port(80)
        .vpc_id(&vpc)
        .health_check_path("/mine")
        .send()
        .await
        .unwrap();

    let (code, report) = env.json(&[
        "apply",
        "-f",
        env.demo().to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(code, 1, "the group waits for a target group it may not use");
    let tg = change(&report, "target_group", "demo-tg");
    assert_eq!(tg["action"], "blocked");
    assert!(
        tg["reason"]
            .as_str()
            .unwrap()
            .contains("set `spec.policy.adoptExisting: true`"),
        "{tg:#}"
    );
    assert_eq!(
        change(&report, "auto_scaling_group", "demo-app")["action"],
        "waiting"
    );
    let path = elb
        .describe_target_groups()
        .names("demo-tg")
        .send()
        .await
        .unwrap()
        .target_groups()[0]
        .health_check_path()
        .map(String::from);
    assert_eq!(path.as_deref(), Some("/mine"), "left alone");

    let adopt = env.config("adopt.yaml", |t| {
        format!("{t}  policy:\n    adoptExisting: true\n")
    });
    env.apply(&adopt);
    let tgs = elb
        .describe_target_groups()
        .names("demo-tg")
        .send()
        .await
        .unwrap();
    let tg = &tgs.target_groups()[0];
    assert_eq!(
        tg.health_check_path(),
        Some("/presta-health.txt"),
        "adopted and corrected"
    );
    let tags = elb
        .describe_tags()
        .resource_arns(tg.target_group_arn().unwrap())
        .send()
        .await
        .unwrap();
    let tags = presta_aws::tags::from_elbv2(tags.tag_descriptions()[0].tags());
    assert_eq!(
        tags["presta-reconciler/stack"], "demo",
        "and now carries the ownership tags"
    );
    let (code, _) = env.plan_json(&env.demo());
    assert_eq!(
        code, 0,
        "once tagged, it is the stack's without the adoption flag"
    );
}

#[tokio::test]
async fn twenty_stacks_in_one_region_converge_and_plan_clean() {
    // More stacks than one page of EC2 results (moto's default page is 15 launch templates).
    let env = Env::start();
    let text = std::fs::read_to_string(common::root().join("config/demo.yaml")).unwrap();
    let doc = &text[text.find("apiVersion:").unwrap()..];
    let all: Vec<String> = (1..=20)
        .map(|i| doc.replacen("name: demo\n", &format!("name: s{i:02}\n"), 1))
        .collect();
    let file = env.dir.path().join("twenty.yaml");
    std::fs::write(&file, all.join("---\n")).unwrap();
    let out = env.cli(&["apply", "-f", file.to_str().unwrap(), "--concurrency", "16"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    env.emu.reset_calls().unwrap();
    let (code, report) = env.plan_json(&file);
    assert_eq!(code, 0, "every stack is converged: {report:#}");
    assert_eq!(report["stacks"].as_array().unwrap().len(), 20);
    let calls = env.emu.calls().unwrap();
    let count = |op: &str| calls.iter().filter(|c| c.operation == op).count();
    assert_eq!(count("DescribeLaunchTemplates"), 1);
    // One call for the observation of the 20 stacks; plan's search for orphaned stacks
    // probes the target groups (docs/lifecycle.md), not the security groups.
    assert_eq!(count("DescribeSecurityGroups"), 1, "80 groups, one call");
    assert_eq!(
        count("DescribeTargetGroups"),
        1,
        "the orphan probe reuses the observation's listing of the target groups"
    );
    assert_eq!(count("DescribeLoadBalancers"), 1);
    assert_eq!(count("DescribeNetworkInterfaces"), 1);
    assert_eq!(count("DescribeAutoScalingGroups"), 1);
    assert_eq!(
        count("GET /2015-02-01/file-systems"),
        1,
        "AWS's page of 100"
    );
    // 40 passwords, the 20 database passwords' labelled versions (a value overwritten by
    // hand is drift) and the one AMI reference, ten names a call.
    assert_eq!(count("GetParameters"), 7);
}

#[tokio::test]
async fn groups_and_parameters_that_look_like_the_stacks_are_not_taken_for_them() {
    // The security groups are found with one name pattern per stack (`demo-*-sg`) and the
    // AMI reference is read in the passwords' GetParameters: a person's group that matches
    // the pattern stays theirs, and no secret value is kept.
    let env = Env::start();
    env.apply(&env.demo());
    let config = env.sdk().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let vpc = ec2
        .describe_security_groups()
        .filters(filter("group-name", "demo-app-sg"))
        .send()
        .await
        .unwrap()
        .security_groups()[0]
        .vpc_id()
        .unwrap()
        .to_string();
    let theirs = ec2
        .create_security_group()
        .group_name("demo-legacy-sg")
        .description("a person's group")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();
    ec2.authorize_security_group_ingress()
        .group_id(&theirs)
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .cidr_ip("0.0.0.0/0")
        .send()
        .await
        .unwrap();
    let (code, report) = env.plan_json(&env.demo());
    assert_eq!(code, 0, "the person's group is not drift: {report:#}");
    let text = report.to_string();
    assert!(!text.contains("demo-legacy-sg"), "{report:#}");
    assert!(!text.contains(&theirs), "{report:#}");

    let aws = env.aws().await;
    // The driver's own answer holds the stack's four groups, not the person's.
    use presta_aws::Driver;
    let names: Vec<String> = ["alb", "app", "db", "efs"]
        .iter()
        .map(|c| format!("demo-{c}-sg"))
        .collect();
    let observed = presta_aws::security_group::SecurityGroups
        .observe(
            &aws,
            &presta_aws::Scope {
                names: names.clone(),
                ..presta_aws::Scope::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(observed.keys().cloned().collect::<Vec<_>>(), names);

    let secret = "/presta-reconciler/demo/db-password".to_string();
    let ami = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64".to_string();
    env.emu.reset_calls().unwrap();
    // Even asked for the secret's value, it is not kept: only plain parameters' values are.
    let (found, values) = presta_aws::parameter::observe_with_plain(
        &aws,
        std::slice::from_ref(&secret),
        std::slice::from_ref(&secret),
        &[ami.clone(), secret.clone()],
    )
    .await
    .unwrap();
    assert_eq!(env.emu.calls().unwrap().len(), 1, "one GetParameters");
    assert_eq!(found[&secret].kind, "SecureString");
    assert!(
        !found.contains_key(&ami),
        "only the names asked as parameters"
    );
    assert!(values[&ami].starts_with("ami-"), "{values:?}");
    assert!(!values.contains_key(&secret), "{values:?}");
}

#[tokio::test]
async fn a_run_duration_counts_the_observation() {
    let env = Env::start();
    env.apply(&env.demo());
    // Every call takes 100 ms: the region's observation alone (two rounds of calls at
    // least) is over 200 ms, the stack's own steps in a converged plan a few ms.
    env.emu.set_latency(100).unwrap();
    let started = std::time::Instant::now();
    let (code, report) = env.plan_json(&env.demo());
    let wall = started.elapsed().as_secs_f64() * 1000.0;
    env.emu.set_latency(0).unwrap();
    assert_eq!(code, 0, "{report:#}");
    let ms = report["stacks"][0]["duration"].as_f64().unwrap();
    assert!(ms >= 200.0, "the stack's run is reported as {ms} ms");
    assert!(ms <= wall, "{ms} ms reported for a {wall} ms command");
}
