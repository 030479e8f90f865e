//! Drift: each test converges the demo stack, changes one thing by hand through the AWS SDK,
//! and checks that `plan` names the field (live → desired) with exit code 2, that `apply`
//! restores it, and that the stack then plans clean.

use crate::common;

use std::path::Path;

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange};
use common::{Env, change, diffs};

/// Plan shows exactly `expected` on the resource, apply heals, plan is clean again.
fn expect_healed(
    env: &Env,
    file: &Path,
    kind: &str,
    name: &str,
    action: &str,
    expected: &[&str],
) -> serde_json::Value {
    let (code, report) = env.plan_json(file);
    assert_eq!(code, 2, "drift must make plan exit 2: {report:#}");
    let c = change(&report, kind, name);
    assert_eq!(c["action"], action, "{c:#}");
    assert_eq!(diffs(c), expected, "{c:#}");
    let pending: Vec<&serde_json::Value> = common::changes(&report)
        .iter()
        .filter(|c| c["action"] != "none")
        .collect();
    assert_eq!(
        pending.len(),
        1,
        "only the drifted resource differs: {pending:#?}"
    );
    env.apply(file);
    let (code, after) = env.plan_json(file);
    assert_eq!(code, 0, "apply must heal the drift: {after:#}");
    report
}

async fn converged() -> (Env, aws_config::SdkConfig) {
    let env = Env::start();
    env.apply(&env.demo());
    let sdk = env.sdk().await;
    (env, sdk)
}

async fn group_id(ec2: &aws_sdk_ec2::Client, name: &str) -> String {
    let out = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").values(name).build())
        .send()
        .await
        .unwrap();
    out.security_groups()[0].group_id().unwrap().to_string()
}

fn tcp(port: i32, cidr: &str) -> IpPermission {
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(port)
        .to_port(port)
        .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
        .build()
}

/// Each case drifts one thing by hand and heals it; the next starts from the healed stack (one
/// emulator for the group: a moto start and a first apply per case cost more than the case).
#[tokio::test(flavor = "multi_thread")]
async fn network_drift_is_healed_one_change_after_another() {
    let (env, sdk) = converged().await;
    an_extra_ingress_rule_is_revoked(&env, &sdk).await;
    a_removed_load_balancer_rule_is_authorised_again(&env, &sdk).await;
    a_changed_health_check_path_is_restored(&env, &sdk).await;
    a_changed_listener_action_is_restored_and_a_deleted_listener_recreated(&env, &sdk).await;
    a_removed_ownership_tag_is_restored(&env, &sdk).await;
}

/// Each case drifts one thing by hand and heals it; the next starts from the healed stack (one
/// emulator for the group: a moto start and a first apply per case cost more than the case).
#[tokio::test(flavor = "multi_thread")]
async fn group_and_file_drift_is_healed_one_change_after_another() {
    let (env, sdk) = converged().await;
    changed_group_limits_are_restored_but_desired_capacity_is_not_drift(&env, &sdk).await;
    a_removed_file_system_lifecycle_is_restored(&env, &sdk).await;
    a_deleted_mount_target_is_recreated(&env, &sdk).await;
    a_mount_target_given_another_security_group_is_restored(&env, &sdk).await;
    a_new_default_template_version_is_replaced_and_the_group_rolls(&env, &sdk).await;
}

async fn an_extra_ingress_rule_is_revoked(env: &Env, sdk: &aws_config::SdkConfig) {
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let app = group_id(&ec2, "demo-app-sg").await;
    let alb = group_id(&ec2, "demo-alb-sg").await;
    ec2.authorize_security_group_ingress()
        .group_id(&app)
        .ip_permissions(tcp(22, "0.0.0.0/0"))
        .send()
        .await
        .unwrap();
    let expected = format!(
        "ingress: [\"tcp/22 from 0.0.0.0/0\",\"tcp/80 from {alb}\"] → [\"tcp/80 from {alb}\"]"
    );
    expect_healed(
        env,
        &env.demo(),
        "security_group",
        "demo-app-sg",
        "update",
        &[&expected],
    );
    let rules = ec2
        .describe_security_groups()
        .group_ids(&app)
        .send()
        .await
        .unwrap();
    let shown: Vec<String> =
        presta_aws::security_group::rules_of(rules.security_groups()[0].ip_permissions())
            .iter()
            .map(ToString::to_string)
            .collect();
    assert_eq!(shown, [format!("tcp/80 from {alb}")]);
}

async fn a_removed_load_balancer_rule_is_authorised_again(env: &Env, sdk: &aws_config::SdkConfig) {
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let alb = group_id(&ec2, "demo-alb-sg").await;
    ec2.revoke_security_group_ingress()
        .group_id(&alb)
        .ip_permissions(tcp(80, "0.0.0.0/0"))
        .send()
        .await
        .unwrap();
    expect_healed(
        env,
        &env.demo(),
        "security_group",
        "demo-alb-sg",
        "update",
        &["ingress: [] → [\"tcp/80 from 0.0.0.0/0\"]"],
    );
}

async fn a_changed_health_check_path_is_restored(env: &Env, sdk: &aws_config::SdkConfig) {
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(sdk);
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
        .health_check_path("/index.php")
        .send()
        .await
        .unwrap();
    expect_healed(
        env,
        &env.demo(),
        "target_group",
        "demo-tg",
        "update",
        &["healthCheck.path: \"/index.php\" → \"/presta-health.txt\""],
    );
    let after = elb
        .describe_target_groups()
        .names("demo-tg")
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.target_groups()[0].health_check_path(),
        Some("/presta-health.txt")
    );
}

async fn a_changed_listener_action_is_restored_and_a_deleted_listener_recreated(
    env: &Env,
    sdk: &aws_config::SdkConfig,
) {
    use aws_sdk_elasticloadbalancingv2::types::{
        Action, ActionTypeEnum, FixedResponseActionConfig,
    };
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(sdk);
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
    let listener = elb
        .describe_listeners()
        .load_balancer_arn(&lb)
        .send()
        .await
        .unwrap()
        .listeners()[0]
        .listener_arn()
        .unwrap()
        .to_string();
    let fixed = Action::builder()
        .r#type(ActionTypeEnum::FixedResponse)
        .fixed_response_config(
            FixedResponseActionConfig::builder()
                .status_code("503")
                .content_type("text/plain")
                .message_body("maintenance")
                .build(),
        )
        .build();
    elb.modify_listener()
        .listener_arn(&listener)
        .default_actions(fixed)
        .send()
        .await
        .unwrap();
    let expected = format!("defaultAction: \"fixed-response\" → \"forward to {tg}\"");
    expect_healed(
        env,
        &env.demo(),
        "listener",
        "demo-alb:80",
        "update",
        &[&expected],
    );
    let l = elb
        .describe_listeners()
        .load_balancer_arn(&lb)
        .send()
        .await
        .unwrap();
    assert_eq!(
        l.listeners()[0].default_actions()[0].target_group_arn(),
        Some(tg.as_str())
    );

    // Deleted: re-created and linked to the target group again.
    elb.delete_listener()
        .listener_arn(l.listeners()[0].listener_arn().unwrap())
        .send()
        .await
        .unwrap();
    expect_healed(env, &env.demo(), "listener", "demo-alb:80", "create", &[]);
    let l = elb
        .describe_listeners()
        .load_balancer_arn(&lb)
        .send()
        .await
        .unwrap();
    assert_eq!(l.listeners().len(), 1);
    assert_eq!(
        l.listeners()[0].default_actions()[0].target_group_arn(),
        Some(tg.as_str())
    );
}

async fn changed_group_limits_are_restored_but_desired_capacity_is_not_drift(
    env: &Env,
    sdk: &aws_config::SdkConfig,
) {
    let asg = aws_sdk_autoscaling::Client::new(sdk);
    // Scaling moved the desired capacity: not drift.
    asg.set_desired_capacity()
        .auto_scaling_group_name("demo-app")
        .desired_capacity(2)
        .send()
        .await
        .unwrap();
    let (code, report) = env.plan_json(&env.demo());
    assert_eq!(code, 0, "desired capacity is not drift: {report:#}");
    // Someone changed the limits: drift.
    asg.update_auto_scaling_group()
        .auto_scaling_group_name("demo-app")
        .min_size(0)
        .max_size(6)
        .send()
        .await
        .unwrap();
    expect_healed(
        env,
        &env.demo(),
        "auto_scaling_group",
        "demo-app",
        "update",
        &["minSize: 0 → 1", "maxSize: 6 → 2"],
    );
    let g = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("demo-app")
        .send()
        .await
        .unwrap()
        .auto_scaling_groups()[0]
        .clone();
    assert_eq!(
        (g.min_size(), g.max_size(), g.desired_capacity()),
        (Some(1), Some(2), Some(2)),
        "limits restored, capacity left as scaling set it"
    );
}

async fn a_new_default_template_version_is_replaced_and_the_group_rolls(
    env: &Env,
    sdk: &aws_config::SdkConfig,
) {
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    // The same data as the current version but another instance type, made the default by
    // hand.
    let (id, hand) = env
        .hand_made_template_version("demo", |d| {
            d.instance_type(aws_sdk_ec2::types::InstanceType::M5Large)
        })
        .await;
    let report = expect_healed(
        env,
        &env.demo(),
        "launch_template",
        "demo-app",
        "update",
        &["instanceType: \"m5.large\" → \"t3.small\""],
    );
    assert!(
        report["stacks"][0]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "auto_scaling_group"
                && c["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("instance refresh will roll the group")))
    );
    let after = ec2
        .describe_launch_templates()
        .launch_template_ids(&id)
        .send()
        .await
        .unwrap()
        .launch_templates()[0]
        .clone();
    assert!(
        after.default_version_number().unwrap() > hand,
        "a new version became the default"
    );
    let asg = aws_sdk_autoscaling::Client::new(sdk);
    let refreshes = asg
        .describe_instance_refreshes()
        .auto_scaling_group_name("demo-app")
        .send()
        .await
        .unwrap();
    assert_eq!(
        refreshes.instance_refreshes().len(),
        1,
        "an instance refresh was started"
    );
}

#[tokio::test]
async fn lowered_backups_and_protection_off_are_restored() {
    let env = Env::start();
    let file = env.config("protected.yaml", |t| {
        t.replace(
            "deletionProtection: false\n    backupRetentionDays",
            "deletionProtection: true\n    backupRetentionDays",
        )
        .replace("backupRetentionDays: 1", "backupRetentionDays: 7")
    });
    env.apply(&file);
    let rds = aws_sdk_rds::Client::new(&env.sdk().await);
    rds.modify_db_instance()
        .db_instance_identifier("demo-db")
        .backup_retention_period(1)
        .deletion_protection(false)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    expect_healed(
        &env,
        &file,
        "db_instance",
        "demo-db",
        "update",
        &[
            "backupRetentionDays: 1 → 7",
            "deletionProtection: false → true",
        ],
    );
    let db = rds
        .describe_db_instances()
        .db_instance_identifier("demo-db")
        .send()
        .await
        .unwrap()
        .db_instances()[0]
        .clone();
    assert_eq!(
        (db.backup_retention_period(), db.deletion_protection()),
        (Some(7), Some(true))
    );
}

async fn a_removed_file_system_lifecycle_is_restored(env: &Env, sdk: &aws_config::SdkConfig) {
    let efs = aws_sdk_efs::Client::new(sdk);
    let fs = efs
        .describe_file_systems()
        .creation_token("presta-reconciler-demo-efs")
        .send()
        .await
        .unwrap()
        .file_systems()[0]
        .file_system_id()
        .to_string();
    efs.put_lifecycle_configuration()
        .file_system_id(&fs)
        .set_lifecycle_policies(Some(vec![]))
        .send()
        .await
        .unwrap();
    expect_healed(
        env,
        &env.demo(),
        "file_system",
        "presta-reconciler-demo-efs",
        "update",
        &[
            "lifecycle.transitionToIa: null → \"AFTER_30_DAYS\"",
            "lifecycle.transitionToPrimaryOnAccess: false → true",
        ],
    );
    let lc = efs
        .describe_lifecycle_configuration()
        .file_system_id(&fs)
        .send()
        .await
        .unwrap();
    assert_eq!(lc.lifecycle_policies().len(), 2);
}

/// The demo stack's file system id and its mount targets.
async fn demo_mount_targets(
    efs: &aws_sdk_efs::Client,
) -> (String, Vec<aws_sdk_efs::types::MountTargetDescription>) {
    let fs = efs
        .describe_file_systems()
        .creation_token("presta-reconciler-demo-efs")
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
        .unwrap()
        .mount_targets()
        .to_vec();
    (fs, mts)
}

async fn a_deleted_mount_target_is_recreated(env: &Env, sdk: &aws_config::SdkConfig) {
    let efs = aws_sdk_efs::Client::new(sdk);
    let (fs, mts) = demo_mount_targets(&efs).await;
    let gone = mts[0].clone();
    efs.delete_mount_target()
        .mount_target_id(gone.mount_target_id())
        .send()
        .await
        .unwrap();
    expect_healed(
        env,
        &env.demo(),
        "mount_target",
        gone.subnet_id(),
        "create",
        &[],
    );
    let after = efs
        .describe_mount_targets()
        .file_system_id(&fs)
        .send()
        .await
        .unwrap();
    assert_eq!(after.mount_targets().len(), 2);
    let back = after
        .mount_targets()
        .iter()
        .find(|m| m.subnet_id() == gone.subnet_id())
        .expect("recreated in the same subnet");
    let sgs = efs
        .describe_mount_target_security_groups()
        .mount_target_id(back.mount_target_id())
        .send()
        .await
        .unwrap();
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    assert_eq!(
        sgs.security_groups(),
        [group_id(&ec2, "demo-efs-sg").await],
        "relinked to the EFS security group"
    );
}

async fn a_removed_ownership_tag_is_restored(env: &Env, sdk: &aws_config::SdkConfig) {
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let db_sg = group_id(&ec2, "demo-db-sg").await;
    ec2.delete_tags()
        .resources(&db_sg)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("presta-reconciler/stack")
                .build(),
        )
        .send()
        .await
        .unwrap();
    expect_healed(
        env,
        &env.demo(),
        "security_group",
        "demo-db-sg",
        "update",
        &["tags.presta-reconciler/stack: null → \"demo\""],
    );
    let g = ec2
        .describe_security_groups()
        .group_ids(&db_sg)
        .send()
        .await
        .unwrap();
    assert_eq!(
        presta_aws::tags::from_ec2(g.security_groups()[0].tags())["presta-reconciler/stack"],
        "demo"
    );
}

/// The default version of the demo stack's launch template.
async fn default_version(ec2: &aws_sdk_ec2::Client) -> i64 {
    ec2.describe_launch_templates()
        .launch_template_names("demo-app")
        .send()
        .await
        .unwrap()
        .launch_templates()[0]
        .default_version_number()
        .unwrap()
}

#[tokio::test]
async fn a_new_image_tag_rolls_the_group_through_a_new_template_version() {
    let (env, sdk) = converged().await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let before = default_version(&ec2).await;
    let file = env.config("new-tag.yaml", |t| {
        t.replace("8.2.7-8.1-apache", "8.2.8-8.1-apache")
    });
    let (code, plan) = env.plan_json(&file);
    assert_eq!(code, 2);
    let lt = change(&plan, "launch_template", "demo-app");
    assert_eq!(
        diffs(lt),
        [
            "userData.IMAGE: \"prestashop/prestashop:8.2.7-8.1-apache\" → \"prestashop/prestashop:8.2.8-8.1-apache\""
        ],
        "the plan names the value that changes, not a digest"
    );
    assert!(
        plan["stacks"][0]["instance_refresh"].is_null(),
        "no refresh yet"
    );

    let applied = env.apply_json(&file);
    let refresh = &applied["stacks"][0]["instance_refresh"];
    assert_eq!(refresh["started_by_this_run"], true, "{applied:#}");
    assert!(refresh["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(
        ["Pending", "InProgress"].contains(&refresh["status"].as_str().unwrap()),
        "{refresh}"
    );
    let version = applied["stacks"][0]["outputs"]["launch_template_version"]
        .as_i64()
        .unwrap();
    assert_eq!(version, before + 1);
    assert_eq!(default_version(&ec2).await, before + 1, "the default moved");
    let asg = aws_sdk_autoscaling::Client::new(&sdk);
    let refreshes = asg
        .describe_instance_refreshes()
        .auto_scaling_group_name("demo-app")
        .send()
        .await
        .unwrap();
    assert_eq!(
        refreshes.instance_refreshes()[0].instance_refresh_id(),
        refresh["id"].as_str()
    );
    // The next look reports how the refresh goes (the emulator finishes it in 1 s).
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let (code, after) = env.plan_json(&file);
    assert_eq!(code, 0, "{after:#}");
    let status = &after["stacks"][0]["instance_refresh"];
    assert_eq!(status["status"], "Successful");
    assert_eq!(status["percentage_complete"], 100);
    assert_eq!(status["started_by_this_run"], false);
}

#[tokio::test]
async fn a_custom_domain_is_reported_as_a_domain_change_carried_by_the_refresh() {
    let (env, _sdk) = converged().await;
    let file = env.config("domain.yaml", |t| {
        t.replace(
            "    adminEmail:",
            "    domain: Shop.Example.com\n    adminEmail:",
        )
    });
    let report = env.apply_json(&file);
    let change = &report["stacks"][0]["domain_change"];
    assert!(
        change["from"].as_str().unwrap().starts_with("demo-alb-"),
        "{change}"
    );
    assert_eq!(change["to"], "shop.example.com");
    assert!(
        change["how"]
            .as_str()
            .unwrap()
            .contains("presta-ctl set-domain")
    );
    assert_eq!(
        report["stacks"][0]["instance_refresh"]["started_by_this_run"],
        true
    );
    let text = env.cli(&["plan", "-f", file.to_str().unwrap()]);
    assert_eq!(text.status.code(), Some(0));
}

async fn a_mount_target_given_another_security_group_is_restored(
    env: &Env,
    sdk: &aws_config::SdkConfig,
) {
    let efs = aws_sdk_efs::Client::new(sdk);
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let mt = demo_mount_targets(&efs).await.1[0].clone();
    let (efs_sg, app_sg) = (
        group_id(&ec2, "demo-efs-sg").await,
        group_id(&ec2, "demo-app-sg").await,
    );
    efs.modify_mount_target_security_groups()
        .mount_target_id(mt.mount_target_id())
        .security_groups(&app_sg)
        .send()
        .await
        .unwrap();
    expect_healed(
        env,
        &env.demo(),
        "mount_target",
        mt.subnet_id(),
        "update",
        &[&format!("securityGroups: [\"{app_sg}\"] → [\"{efs_sg}\"]")],
    );
    let groups = efs
        .describe_mount_target_security_groups()
        .mount_target_id(mt.mount_target_id())
        .send()
        .await
        .unwrap();
    assert_eq!(groups.security_groups(), [efs_sg]);
}

#[tokio::test(flavor = "multi_thread")]
async fn load_balancer_security_attributes_are_managed() {
    let env = Env::start();
    env.apply(&env.demo());
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&env.sdk().await);
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
    let attr = |k: &str, v: &str| {
        aws_sdk_elasticloadbalancingv2::types::LoadBalancerAttribute::builder()
            .key(k)
            .value(v)
            .build()
    };
    let read = || async {
        elb.describe_load_balancer_attributes()
            .load_balancer_arn(&lb)
            .send()
            .await
            .unwrap()
            .attributes()
            .iter()
            .map(|a| (a.key().unwrap().to_string(), a.value().unwrap().to_string()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(
        read().await["routing.http.drop_invalid_header_fields.enabled"],
        "true",
        "on by default"
    );
    // Someone turns it off, and turns deletion protection on.
    elb.modify_load_balancer_attributes()
        .load_balancer_arn(&lb)
        .attributes(attr(
            "routing.http.drop_invalid_header_fields.enabled",
            "false",
        ))
        .attributes(attr("deletion_protection.enabled", "true"))
        .send()
        .await
        .unwrap();
    let (code, plan) = env.plan_json(&env.demo());
    assert_eq!(code, 2);
    let c = change(&plan, "load_balancer", "demo-alb");
    assert_eq!(
        diffs(c),
        [
            "dropInvalidHeaderFields: false → true",
            "deletionProtection: true → false"
        ],
        "{c:#}"
    );
    env.apply(&env.demo());
    let now = read().await;
    assert_eq!(
        now["routing.http.drop_invalid_header_fields.enabled"],
        "true"
    );
    assert_eq!(
        now["deletion_protection.enabled"], "false",
        "the demo turns it off"
    );
    let (code, _) = env.plan_json(&env.demo());
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_overwritten_by_hand_is_put_back_without_ever_showing_it() {
    let (env, sdk) = converged().await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let name = "/presta-reconciler/demo/db-password";
    let (original, v1) = env.secret(name).await;
    assert_eq!(v1, 1);
    // `aws ssm put-parameter --overwrite`: the database still uses the original.
    let hand = "typed-by-hand-0123456789";
    ssm.put_parameter()
        .name(name)
        .value(hand)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    let out = env.cli(&["plan", "-f", env.demo().to_str().unwrap()]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !text.contains(hand) && !text.contains(&original),
        "no value in the plan"
    );
    let report = expect_healed(
        &env,
        &env.demo(),
        "parameter",
        "db-password",
        "update",
        &[
            "valueVersion: \"version 2 (written by someone else)\" → \"version 1 (written by the reconciler)\"",
        ],
    );
    assert!(!report.to_string().contains(hand));
    let (now, version) = env.secret(name).await;
    assert_eq!(now, original, "the value the database uses is back");
    assert_eq!(
        version, 3,
        "as a new version: the overwritten one stays in the history"
    );

    // The label removed by hand with several versions: blocked, with the way out.
    ssm.unlabel_parameter_version()
        .name(name)
        .parameter_version(3)
        .labels("presta-reconciler")
        .send()
        .await
        .unwrap();
    let (code, report) = env.plan_json(&env.demo());
    assert_eq!(code, 2, "{report:#}");
    let c = change(&report, "parameter", "db-password");
    assert_eq!(c["action"], "blocked", "{c:#}");
    assert!(
        c["diffs"][0]["blocked"]
            .as_str()
            .unwrap()
            .contains("rotate-db-password"),
        "{c:#}"
    );
}
