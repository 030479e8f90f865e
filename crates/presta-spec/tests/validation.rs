//! One case per validation rule: a valid document, one edit, and the problem it must produce
//! (field path, words of the message, and the line when the field is written in the file).

use std::path::Path;

use presta_spec::{Problem, parse_file};

const BASE: &str = "\
apiVersion: presta-reconciler.io/v1alpha1
kind: PrestaShopStack
metadata:
  name: shop
  labels:
    team: ops
spec:
  region: eu-west-3
  network:
    vpc:
      id: vpc-0a1b2c3d4e5f60718
    publicSubnets:
      ids: [subnet-0a11111111111111a, subnet-0b22222222222222b]
    privateSubnets:
      tags:
        Name: shop-private-*
  loadBalancer:
    allowedCidrs: [\"0.0.0.0/0\"]
    healthCheck:
      path: /presta-health.txt
      intervalSeconds: 15
      timeoutSeconds: 5
  compute:
    instanceType: t3.small
    minSize: 1
    maxSize: 3
    desiredCapacity: 2
    instanceProfile: shop-instance
  prestashop:
    image: prestashop/prestashop:8.2.7-8.1-apache
    adminEmail: ops@example.com
  database:
    backupRetentionDays: 7
    engineVersion: \"8.4\"
";

fn check(yaml: &str) -> Result<usize, Vec<Problem>> {
    parse_file(yaml, Path::new("stacks.yaml")).map(|s| s.len())
}

fn problems_of(edits: &[(&str, &str)]) -> Vec<Problem> {
    let mut yaml = BASE.to_string();
    for (from, to) in edits {
        assert!(yaml.contains(from), "the base document lacks {from:?}");
        yaml = yaml.replacen(from, to, 1);
    }
    check(&yaml).expect_err("the edited document must be refused")
}

/// Asserts that exactly one problem is at `path`, that its message (or help) says `words`,
/// and, when given, that it points at `line`.
#[track_caller]
fn expect(problems: &[Problem], path: &str, words: &str, line: Option<usize>) {
    let found: Vec<&Problem> = problems.iter().filter(|p| p.path == path).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one problem at `{path}`, got: {problems:#?}"
    );
    let p = found[0];
    let text = format!("{} {}", p.message, p.help.clone().unwrap_or_default());
    assert!(
        text.contains(words),
        "problem at `{path}` should say {words:?}: {p}"
    );
    assert_eq!(p.file, "stacks.yaml");
    if let Some(line) = line {
        assert_eq!(p.line, Some(line), "{p}");
        assert!(p.column.is_some(), "{p}");
    }
}

#[test]
fn the_base_document_is_valid() {
    assert_eq!(check(BASE).unwrap(), 1);
}

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let problems = problems_of(&[("  region: eu-west-3\n", "  region: [eu-west-3\n")]);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let p = &problems[0];
    assert!(p.message.starts_with("invalid YAML"), "{p}");
    assert!(p.line.is_some() && p.column.is_some(), "{p}");
    assert!(p.to_string().starts_with("stacks.yaml:"), "{p}");
}

#[test]
fn unknown_field_is_an_error_with_a_suggestion() {
    let problems = problems_of(&[("    backupRetentionDays: 7", "    backupRetentionDay: 7")]);
    expect(
        &problems,
        "spec.database.backupRetentionDay",
        "unknown field",
        Some(33),
    );
    expect(
        &problems,
        "spec.database.backupRetentionDay",
        "did you mean `backupRetentionDays`",
        None,
    );
}

#[test]
fn unknown_top_level_and_nested_fields_are_all_reported() {
    let problems = problems_of(&[
        (
            "kind: PrestaShopStack\n",
            "kind: PrestaShopStack\nstatus: {}\n",
        ),
        ("      intervalSeconds: 15", "      intervalSecs: 15"),
    ]);
    expect(&problems, "status", "unknown field", Some(3));
    expect(
        &problems,
        "spec.loadBalancer.healthCheck.intervalSecs",
        "did you mean `intervalSeconds`",
        Some(22),
    );
}

#[test]
fn wrong_type_names_the_expected_type() {
    let problems = problems_of(&[("    minSize: 1", "    minSize: one")]);
    expect(
        &problems,
        "spec.compute.minSize",
        "expected an integer, found a string `one`",
        Some(25),
    );
}

#[test]
fn wrong_enum_value_lists_the_allowed_ones() {
    let problems = problems_of(&[(
        "  database:\n",
        "  policy:\n    mode: enforcing\n  database:\n",
    )]);
    expect(
        &problems,
        "spec.policy.mode",
        "allowed: enforce, observe",
        Some(33),
    );
}

#[test]
fn missing_required_field_is_named() {
    let problems = problems_of(&[("    adminEmail: ops@example.com\n", "")]);
    expect(
        &problems,
        "spec.prestashop.adminEmail",
        "missing required field `adminEmail`",
        Some(29),
    );
}

#[test]
fn missing_required_section_is_named() {
    let problems = problems_of(&[("  region: eu-west-3\n", "")]);
    expect(
        &problems,
        "spec.region",
        "missing required field `region` in `spec`",
        Some(7),
    );
}

#[test]
fn stack_name_longer_than_the_elb_limit_once_suffixed() {
    let long = "a".repeat(29);
    let problems = problems_of(&[("  name: shop", &format!("  name: {long}"))]);
    expect(&problems, "metadata.name", "at most 28 characters", Some(4));
    expect(&problems, "metadata.name", "32-character limit", None);
}

#[test]
fn stack_name_characters() {
    for bad in ["Shop", "shop_1", "1shop", "shop-", "shop--a"] {
        let problems = problems_of(&[("  name: shop", &format!("  name: {bad}"))]);
        expect(&problems, "metadata.name", bad, Some(4));
    }
}

#[test]
fn cidr_syntax() {
    let problems = problems_of(&[(
        "[\"0.0.0.0/0\"]",
        "[\"0.0.0.0/0\", \"10.0.0.0/33\", \"10.1.2.3/8\", \"203.0.113.7\"]",
    )]);
    expect(
        &problems,
        "spec.loadBalancer.allowedCidrs[1]",
        "is not a CIDR block",
        Some(18),
    );
    expect(
        &problems,
        "spec.loadBalancer.allowedCidrs[2]",
        "write the network address: `10.0.0.0/8`",
        Some(18),
    );
    expect(
        &problems,
        "spec.loadBalancer.allowedCidrs[3]",
        "`203.0.113.7/32`",
        Some(18),
    );
}

#[test]
fn min_desired_max_order() {
    let problems = problems_of(&[("    desiredCapacity: 2", "    desiredCapacity: 4")]);
    expect(
        &problems,
        "spec.compute.desiredCapacity",
        "outside minSize 1 .. maxSize 3",
        Some(27),
    );
    let problems = problems_of(&[
        ("    minSize: 1", "    minSize: 4"),
        ("    desiredCapacity: 2\n", ""),
    ]);
    expect(
        &problems,
        "spec.compute.minSize",
        "minSize 4 is greater than maxSize 3",
        Some(25),
    );
}

#[test]
fn fewer_than_two_subnets() {
    let problems = problems_of(&[(
        "[subnet-0a11111111111111a, subnet-0b22222222222222b]",
        "[subnet-0a11111111111111a]",
    )]);
    expect(
        &problems,
        "spec.network.publicSubnets.ids",
        "1 subnet given, at least two are needed",
        Some(13),
    );
}

#[test]
fn subnet_selector_needs_exactly_one_form() {
    let problems = problems_of(&[(
        "      tags:\n        Name: shop-private-*\n",
        "      ids: [subnet-0c33333333333333c, subnet-0d44444444444444d]\n      tags:\n        Name: shop-private-*\n",
    )]);
    expect(
        &problems,
        "spec.network.privateSubnets",
        "exactly one of `ids` or `tags`",
        Some(15),
    );
}

#[test]
fn duplicate_stack_names_in_one_file() {
    let yaml = format!("{BASE}---\n{BASE}");
    let problems = check(&yaml).unwrap_err();
    expect(
        &problems,
        "metadata.name",
        "stack `shop` is declared twice",
        None,
    );
    let p = problems.iter().find(|p| p.path == "metadata.name").unwrap();
    assert_eq!(p.document, Some(2));
    assert!(p.message.contains("document 1"), "{p}");
    assert_eq!(
        p.line,
        Some(36),
        "the second document starts after the `---` line: {p}"
    );
}

#[test]
fn latest_and_untagged_images_are_refused() {
    for (image, words) in [
        ("prestashop/prestashop:latest", "uses `latest`"),
        ("prestashop/prestashop", "no tag"),
        ("prestashop/prestashop:9", "floating alias"),
    ] {
        let problems = problems_of(&[("prestashop/prestashop:8.2.7-8.1-apache", image)]);
        expect(&problems, "spec.prestashop.image", words, Some(30));
    }
}

#[test]
fn invalid_region_suggests_the_closest() {
    let problems = problems_of(&[("  region: eu-west-3", "  region: eu-wset-3")]);
    expect(
        &problems,
        "spec.region",
        "did you mean `eu-west-3`",
        Some(8),
    );
}

#[test]
fn backup_retention_range() {
    let problems = problems_of(&[("    backupRetentionDays: 7", "    backupRetentionDays: 36")]);
    expect(
        &problems,
        "spec.database.backupRetentionDays",
        "allowed: 0 to 35 days",
        Some(33),
    );
}

#[test]
fn https_needs_a_domain_and_a_certificate_of_the_same_region() {
    let problems = problems_of(&[(
        "  loadBalancer:\n",
        "  loadBalancer:\n    https:\n      certificate: arn:aws:acm:us-east-1:123456789012:certificate/abc\n",
    )]);
    expect(
        &problems,
        "spec.loadBalancer.https",
        "HTTPS needs `spec.prestashop.domain`",
        Some(19),
    );
    expect(
        &problems,
        "spec.loadBalancer.https.certificate",
        "the certificate is in `us-east-1`",
        Some(19),
    );
}

#[test]
fn graviton_instance_with_x86_image() {
    let problems = problems_of(&[("    instanceType: t3.small", "    instanceType: t4g.small")]);
    expect(
        &problems,
        "spec.compute.ami.ssmParameter",
        "al2023-ami-kernel-default-arm64",
        None,
    );
}

#[test]
fn health_check_timeout_must_be_shorter_than_interval() {
    let problems = problems_of(&[("      timeoutSeconds: 5", "      timeoutSeconds: 20")]);
    expect(
        &problems,
        "spec.loadBalancer.healthCheck.timeoutSeconds",
        "not shorter than the interval",
        Some(22),
    );
}

#[test]
fn managed_environment_variables_are_refused_in_extra_env() {
    let problems = problems_of(&[(
        "    adminEmail: ops@example.com\n",
        "    adminEmail: ops@example.com\n    extraEnv:\n      PS_DOMAIN: x.example.com\n      PS_DEV_MODE: \"false\"\n",
    )]);
    expect(
        &problems,
        "spec.prestashop.extraEnv.PS_DOMAIN",
        "set by the reconciler",
        Some(33),
    );
    expect(
        &problems,
        "spec.prestashop.extraEnv.PS_DEV_MODE",
        "use \"0\" or \"1\"",
        Some(34),
    );
}

#[test]
fn reserved_labels_are_refused() {
    let problems = problems_of(&[("    team: ops", "    presta-reconciler/stack: other")]);
    expect(
        &problems,
        "metadata.labels.presta-reconciler/stack",
        "is reserved",
        Some(6),
    );
}

#[test]
fn ssm_prefix_rules() {
    let problems = problems_of(&[(
        "  database:\n",
        "  secrets:\n    parameterPrefix: /aws/shop\n  database:\n",
    )]);
    expect(
        &problems,
        "spec.secrets.parameterPrefix",
        "reserved by AWS",
        Some(33),
    );
}

#[test]
fn wrong_api_version_and_kind() {
    let problems = problems_of(&[
        ("presta-reconciler.io/v1alpha1", "presta-reconciler.io/v2"),
        ("kind: PrestaShopStack", "kind: Shop"),
    ]);
    expect(
        &problems,
        "apiVersion",
        "presta-reconciler.io/v1alpha1",
        Some(1),
    );
    expect(&problems, "kind", "PrestaShopStack", Some(2));
}

#[test]
fn structural_and_semantic_problems_are_reported_together() {
    let problems = problems_of(&[
        ("    backupRetentionDays: 7", "    backupRetentionDay: 7"),
        ("  region: eu-west-3", "  region: mars-1"),
    ]);
    expect(
        &problems,
        "spec.database.backupRetentionDay",
        "unknown field",
        Some(33),
    );
    expect(&problems, "spec.region", "not an AWS region", Some(8));
}

#[test]
fn defaults_are_applied_and_visible() {
    let stacks = parse_file(BASE, Path::new("stacks.yaml")).unwrap();
    let stack = stacks[0].stack.clone().with_defaults();
    assert_eq!(stack.spec.database.engine_version, "8.4");
    assert!(stack.spec.database.deletion_protection);
    assert!(stack.spec.file_system.encrypted);
    assert_eq!(stack.spec.file_system.throughput_mode.as_aws(), "elastic");
    assert_eq!(
        stack.spec.secrets.parameter_prefix.as_deref(),
        Some("/presta-reconciler/shop")
    );
    assert_eq!(stack.spec.compute.imds_hop_limit, 1);
    assert_eq!(
        stack.spec.policy.mode,
        presta_spec::model::Enforcement::Enforce
    );
    let printed = serde_yaml::to_string(&stack).unwrap();
    assert!(
        printed.contains("parameterPrefix: /presta-reconciler/shop"),
        "{printed}"
    );
    assert!(printed.contains("deletionProtection: true"), "{printed}");
}

#[test]
fn an_empty_file_is_refused() {
    let problems = check("# nothing here\n").unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].message.contains("no PrestaShopStack document"),
        "{}",
        problems[0]
    );
}

#[test]
fn explicit_names_follow_each_kinds_aws_rules() {
    let names = "    engineVersion: \"8.4\"\n  names:\n    loadBalancer: prestashop_alb\n    database: 1-ps-db\n    securityGroups:\n      instances: sg-app\n      database: shared\n      fileSystem: shared\n  secrets:\n    dbPasswordParameter: /aws/db\n";
    let p = problems_of(&[("    engineVersion: \"8.4\"\n", names)]);
    expect(&p, "spec.names.loadBalancer", "ELBv2", Some(36));
    expect(&p, "spec.names.database", "RDS", Some(37));
    expect(&p, "spec.names.securityGroups.instances", "sg-", Some(39));
    expect(&p, "spec.names.securityGroups.fileSystem", "also", Some(41));
    expect(&p, "spec.secrets.dbPasswordParameter", "reserved", Some(43));
    // Valid explicit names and `adminPasswordParameter: none` are accepted.
    let ok = BASE.replacen(
        "    engineVersion: \"8.4\"\n",
        "    engineVersion: \"8.4\"\n  names:\n    loadBalancer: prestashop-alb\n    database: ps-db\n  secrets:\n    dbPasswordParameter: /prestashop/db_password\n    adminPasswordParameter: none\n",
        1,
    );
    assert_eq!(check(&ok).unwrap(), 1);
}
