//! The emulator harness, proven through the Rust AWS SDK: start on a free loopback port, seed
//! the network a stack needs, read it back, use the operations the harness adds to moto, and
//! stop without leaving a process behind.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::types::Filter;
use presta_emulator::Emulator;

async fn sdk(emu: &Emulator, region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(presta_aws::clients::http_client(Some(emu.endpoint())))
        .endpoint_url(emu.endpoint())
        .region(Region::new(region.to_string()))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "emulator",
        ))
        .load()
        .await
}

fn tag_filter(value: &str) -> Filter {
    Filter::builder().name("tag:Name").values(value).build()
}

#[tokio::test]
async fn seeded_network_reads_back_through_the_rust_sdk() {
    let emu = Emulator::builder()
        .seed("demo")
        .start()
        .expect("emulator starts");
    assert!(
        emu.endpoint().starts_with("http://127.0.0.1:"),
        "{}",
        emu.endpoint()
    );
    let seeded = emu.network("demo").expect("seed reported").clone();
    let config = sdk(&emu, "eu-west-3").await;
    let ec2 = aws_sdk_ec2::Client::new(&config);

    let vpcs = ec2
        .describe_vpcs()
        .filters(tag_filter("presta-demo-vpc"))
        .send()
        .await
        .unwrap();
    let vpcs = vpcs.vpcs();
    assert_eq!(vpcs.len(), 1);
    assert_eq!(vpcs[0].vpc_id(), Some(seeded.vpc_id.as_str()));

    for (kind, cidrs) in [
        ("public", ["10.40.0.0/24", "10.40.1.0/24"]),
        ("private", ["10.40.10.0/24", "10.40.11.0/24"]),
    ] {
        let out = ec2
            .describe_subnets()
            .filters(tag_filter(&format!("presta-demo-{kind}-*")))
            .filters(
                Filter::builder()
                    .name("vpc-id")
                    .values(&seeded.vpc_id)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let subnets = out.subnets();
        assert_eq!(subnets.len(), 2, "{kind} subnets");
        let mut got: Vec<&str> = subnets.iter().filter_map(|s| s.cidr_block()).collect();
        got.sort();
        assert_eq!(got, cidrs);
        let azs: std::collections::BTreeSet<&str> = subnets
            .iter()
            .filter_map(|s| s.availability_zone())
            .collect();
        assert_eq!(
            azs.len(),
            2,
            "{kind} subnets span two availability zones: {azs:?}"
        );
        let mut ids: Vec<String> = subnets
            .iter()
            .filter_map(|s| s.subnet_id().map(String::from))
            .collect();
        ids.sort();
        let mut seeded_ids = seeded.subnet_ids(kind);
        seeded_ids.sort();
        assert_eq!(ids, seeded_ids);
    }

    let iam = aws_sdk_iam::Client::new(&config);
    let profile = iam
        .get_instance_profile()
        .instance_profile_name("presta-demo-instance")
        .send()
        .await
        .unwrap();
    assert_eq!(profile.instance_profile().map(|p| p.roles().len()), Some(1));

    // The default AMI parameter of the spec resolves on the emulator too.
    let ssm = aws_sdk_ssm::Client::new(&config);
    let param = ssm
        .get_parameter()
        .name(presta_spec::defaults::AL2023_X86_64_PARAMETER)
        .send()
        .await
        .unwrap();
    assert!(
        param
            .parameter()
            .and_then(|p| p.value())
            .is_some_and(|v| v.starts_with("ami-"))
    );
}

#[tokio::test]
async fn operations_the_harness_adds_to_moto_work_through_the_sdk() {
    let emu = Emulator::builder()
        .seed("ext")
        .instance_refresh_seconds(0.5)
        .start()
        .expect("emulator starts");
    let config = sdk(&emu, "eu-west-3").await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let asg = aws_sdk_autoscaling::Client::new(&config);
    let efs = aws_sdk_efs::Client::new(&config);
    let subnets = emu.network("ext").unwrap().subnet_ids("private").join(",");

    ec2.create_launch_template()
        .launch_template_name("ext-app")
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id("ami-12345678")
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Small)
                .build(),
        )
        .send()
        .await
        .unwrap();
    asg.create_auto_scaling_group()
        .auto_scaling_group_name("ext-app")
        .min_size(1)
        .max_size(2)
        .desired_capacity(1)
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_name("ext-app")
                .build(),
        )
        .vpc_zone_identifier(subnets)
        .send()
        .await
        .unwrap();

    // PutScalingPolicy: moto answers `PolicyArn`; the harness answers the AWS shape.
    let policy = asg
        .put_scaling_policy()
        .auto_scaling_group_name("ext-app")
        .policy_name("ext-cpu")
        .policy_type("TargetTrackingScaling")
        .target_tracking_configuration(
            aws_sdk_autoscaling::types::TargetTrackingConfiguration::builder()
                .predefined_metric_specification(
                    aws_sdk_autoscaling::types::PredefinedMetricSpecification::builder()
                        .predefined_metric_type(
                            aws_sdk_autoscaling::types::MetricType::AsgAverageCpuUtilization,
                        )
                        .build(),
                )
                .target_value(60.0)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(
        policy
            .policy_arn()
            .is_some_and(|a| a.contains("policyName/ext-cpu")),
        "{policy:?}"
    );

    // Instance refresh: started, in progress, refused while in progress, then successful.
    let started = asg
        .start_instance_refresh()
        .auto_scaling_group_name("ext-app")
        .send()
        .await
        .unwrap();
    let id = started.instance_refresh_id().unwrap().to_string();
    let again = asg
        .start_instance_refresh()
        .auto_scaling_group_name("ext-app")
        .send()
        .await;
    let code = again.unwrap_err().into_service_error();
    assert!(code.is_instance_refresh_in_progress_fault(), "{code:?}");
    let described = asg
        .describe_instance_refreshes()
        .auto_scaling_group_name("ext-app")
        .send()
        .await
        .unwrap();
    let first = &described.instance_refreshes()[0];
    assert_eq!(first.instance_refresh_id(), Some(id.as_str()));
    assert_eq!(first.status().map(|s| s.as_str()), Some("InProgress"));
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let described = asg
        .describe_instance_refreshes()
        .auto_scaling_group_name("ext-app")
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.instance_refreshes()[0]
            .status()
            .map(|s| s.as_str()),
        Some("Successful")
    );

    // EFS backup policy.
    let fs = efs
        .create_file_system()
        .creation_token("ext-efs")
        .encrypted(true)
        .throughput_mode(aws_sdk_efs::types::ThroughputMode::Elastic)
        .send()
        .await
        .unwrap();
    let fs_id = fs.file_system_id().to_string();
    let put = efs
        .put_backup_policy()
        .file_system_id(&fs_id)
        .backup_policy(
            aws_sdk_efs::types::BackupPolicy::builder()
                .status(aws_sdk_efs::types::Status::Enabled)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.backup_policy().map(|b| b.status().as_str()),
        Some("ENABLED")
    );
    let got = efs
        .describe_backup_policy()
        .file_system_id(&fs_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.backup_policy().map(|b| b.status().as_str()),
        Some("ENABLED")
    );
}

#[tokio::test]
async fn the_call_log_counts_what_clients_send() {
    let emu = Emulator::builder()
        .seed("calls")
        .start()
        .expect("emulator starts");
    assert!(
        emu.calls().unwrap().is_empty(),
        "the seed's own calls are not counted"
    );
    let ec2 = aws_sdk_ec2::Client::new(&sdk(&emu, "eu-west-3").await);
    ec2.describe_vpcs().send().await.unwrap();
    ec2.describe_subnets().send().await.unwrap();
    ec2.create_security_group()
        .group_name("calls-x")
        .description("x")
        .vpc_id(&emu.network("calls").unwrap().vpc_id)
        .send()
        .await
        .unwrap();
    let calls = emu.calls().unwrap();
    let ops: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.service.as_str(), c.operation.as_str()))
        .collect();
    assert_eq!(
        ops,
        [
            ("ec2", "DescribeVpcs"),
            ("ec2", "DescribeSubnets"),
            ("ec2", "CreateSecurityGroup")
        ]
    );
    assert_eq!(calls.iter().filter(|c| c.is_mutating()).count(), 1);
    assert!(calls.iter().all(|c| c.status == 200));
    emu.reset_calls().unwrap();
    assert!(emu.calls().unwrap().is_empty());
}

#[test]
fn dropping_the_harness_stops_the_emulator() {
    let emu = Emulator::builder().start().expect("emulator starts");
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", emu.pid()));
    assert!(proc_dir.exists());
    let port = emu.endpoint().rsplit(':').next().unwrap().to_string();
    drop(emu);
    // The process is reaped and the port no longer answers.
    assert!(!proc_dir.exists(), "the emulator process is still there");
    assert!(std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err());
}

#[tokio::test]
async fn db_instances_get_their_own_resource_id_and_the_filter_finds_one() {
    let emu = Emulator::builder().start().expect("the emulator starts");
    let rds = aws_sdk_rds::Client::new(&sdk(&emu, "eu-west-3").await);
    let mut ids = Vec::new();
    for name in ["one-db", "two-db"] {
        let out = rds
            .create_db_instance()
            .db_instance_identifier(name)
            .engine("mysql")
            .db_instance_class("db.t4g.micro")
            .master_username("admin")
            .master_user_password("Passw0rdPassw0rd")
            .allocated_storage(20)
            .send()
            .await
            .unwrap();
        ids.push(
            out.db_instance()
                .unwrap()
                .dbi_resource_id()
                .unwrap()
                .to_string(),
        );
    }
    assert_ne!(ids[0], ids[1], "moto alone gives both the same id");
    for (name, id) in ["one-db", "two-db"].iter().zip(&ids) {
        let found = rds
            .describe_db_instances()
            .filters(
                aws_sdk_rds::types::Filter::builder()
                    .name("dbi-resource-id")
                    .values(id)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let names: Vec<_> = found
            .db_instances()
            .iter()
            .filter_map(|d| d.db_instance_identifier())
            .collect();
        assert_eq!(names, [*name]);
    }
}
