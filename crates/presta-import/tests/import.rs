//! The import on a `terraform show -json` of the runbook's shop
//! (tests/fixtures/terraform/runbook-show.json, made by applying
//! tests/fixtures/terraform/runbook with Terraform 1.11 to the emulator), changed in each
//! test to hold what the test needs. No AWS: tests/suite/import_terraform.rs does the rest.

use presta_import::{ImportError, Options, import};
use serde_json::{Value, json};

const PASSWORD: &str = "S3cret-Pa55word-xyz";

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/terraform/runbook-show.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn module(doc: &mut Value) -> &mut Value {
    &mut doc["values"]["root_module"]["child_modules"][0]
}

fn resource<'a>(doc: &'a mut Value, address: &str) -> &'a mut Value {
    module(doc)["resources"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["address"] == address)
        .unwrap_or_else(|| panic!("{address} is in the fixture"))
}

fn run(doc: &Value, stack: Option<&str>) -> Result<presta_import::Import, ImportError> {
    import(
        &doc.to_string(),
        &Options {
            stack: stack.map(str::to_string),
        },
    )
}

#[test]
fn the_runbooks_shop_is_one_stack_with_its_own_names_and_no_secret() {
    let out = run(&fixture(), None).unwrap();
    let s = &out.stack;
    assert_eq!(s.name(), "prestashop");
    let names = &s.spec.names;
    assert_eq!(names.load_balancer.as_deref(), Some("prestashop-alb"));
    assert_eq!(names.database.as_deref(), Some("ps-db"));
    assert_eq!(names.db_subnet_group.as_deref(), Some("ps-db-subnets"));
    assert_eq!(
        names.security_groups.instances.as_deref(),
        Some("prestashop-ec2-sg")
    );
    assert_eq!(
        s.spec.secrets.db_password_parameter.as_deref(),
        Some("/prestashop/db_password")
    );
    assert_eq!(
        s.spec.secrets.admin_password_parameter.as_deref(),
        Some("none"),
        "an installed shop gets no generated admin password"
    );
    assert_eq!(s.spec.database.username, "psadmin");
    assert_eq!(s.spec.database.engine_version, "8.0");
    assert_eq!(s.spec.compute.min_size, 2);
    assert_eq!(s.spec.compute.target_cpu_utilization, 70);
    assert_eq!(s.spec.compute.imds_hop_limit, 2);
    assert_eq!(
        s.spec.prestashop.image,
        "prestashop/prestashop:8.2.1-apache"
    );
    assert_eq!(s.spec.prestashop.language, "fr");
    assert_eq!(s.spec.prestashop.admin_folder, "admin-boutique");
    assert_eq!(s.spec.load_balancer.health_check.matcher, "200-399");
    assert_eq!(s.spec.load_balancer.allowed_cidrs, vec!["0.0.0.0/0"]);
    assert!(!s.spec.load_balancer.drop_invalid_header_fields);
    assert_eq!(s.metadata.labels["Project"], "boutique");
    assert!(
        out.stack
            .spec
            .compute
            .ami
            .ssm_parameter
            .as_deref()
            .is_some_and(|p| p.contains("al2023")),
        "the AMI is the public parameter the data source read"
    );
    // Both separate rules and every inline group are imported.
    let addresses: Vec<&str> = out
        .report
        .imported
        .iter()
        .map(|i| i.address.as_str())
        .collect();
    assert_eq!(addresses.len(), 19, "{addresses:#?}");
    assert!(
        addresses
            .contains(&"module.prestashop.aws_vpc_security_group_ingress_rule.rds_mysql_from_ec2")
    );
    assert!(addresses.contains(&"module.prestashop.aws_security_group_rule.ec2_http_from_alb"));
    // The secret: named, never copied.
    let yaml = out.yaml();
    let text = out.report.to_string();
    let json = serde_json::to_string(&out.report).unwrap();
    for what in [&yaml, &text, &json] {
        assert!(!what.contains(PASSWORD), "the password leaked:\n{what}");
    }
    assert!(text.contains("SECRETS: this state file holds secrets in plain text"));
    assert!(text.contains("module.prestashop.aws_db_instance.this.password"));
    // The state rm commands: one per imported address, dependents first.
    assert_eq!(out.report.state_rm.len(), 19);
    let pos = |needle: &str| {
        out.report
            .state_rm
            .iter()
            .position(|c| c.contains(needle))
            .unwrap()
    };
    assert!(pos("aws_security_group_rule") < pos("aws_security_group.ec2"));
    assert!(pos("aws_lb_listener") < pos("aws_lb.this"));
    assert!(pos("aws_efs_mount_target") < pos("aws_efs_file_system"));
    assert!(text.contains("DELETES THE SHOP"));
    // The user data becomes the product's bootstrap: said, with the reason.
    assert!(
        out.report
            .takeover_changes
            .iter()
            .any(|c| c.contains("becomes the product's bootstrap")),
        "{:#?}",
        out.report.takeover_changes
    );
    assert!(
        out.report
            .takeover_changes
            .iter()
            .any(|c| c.contains("PS_HANDLE_DYNAMIC_DOMAIN=1 becomes 0"))
    );
}

#[test]
fn an_attribute_that_is_not_carried_over_is_listed_with_its_address() {
    let mut doc = fixture();
    let lb = resource(&mut doc, "module.prestashop.aws_lb.this");
    lb["values"]["access_logs"] =
        json!([{"bucket": "shop-logs", "enabled": true, "prefix": "alb"}]);
    lb["values"]["enable_http2"] = json!(false);
    let tg = resource(&mut doc, "module.prestashop.aws_lb_target_group.this");
    tg["values"]["slow_start"] = json!(30);
    let out = run(&doc, None).unwrap();
    let listed = |addr: &str, attr: &str| {
        out.report
            .unmapped
            .iter()
            .find(|u| u.address == addr && u.attribute == attr)
            .cloned()
    };
    let logs = listed("module.prestashop.aws_lb.this", "access_logs").expect("listed");
    assert!(logs.value.as_deref().unwrap().contains("shop-logs"));
    assert!(logs.reason.contains("not managed"), "{}", logs.reason);
    assert!(listed("module.prestashop.aws_lb.this", "enable_http2").is_some());
    assert!(listed("module.prestashop.aws_lb_target_group.this", "slow_start").is_some());
    // An attribute equal to AWS's default is not noise in the report.
    assert!(listed("module.prestashop.aws_lb.this", "desync_mitigation_mode").is_none());
    assert!(
        out.report
            .to_string()
            .contains("module.prestashop.aws_lb.this.access_logs")
    );
}

/// A second copy of the shop in its own module, every id and name changed.
fn two_stacks() -> Value {
    let mut doc = fixture();
    let first = module(&mut doc).clone();
    let text = first
        .to_string()
        .replace("prestashop", "second")
        .replace("ps-db", "second-db")
        .replace("\"sg-", "\"sg-2")
        .replace("/sg-", "/sg-2")
        .replace("\"fs-", "\"fs-2")
        .replace("/fs-", "/fs-2")
        .replace("\"lt-", "\"lt-2")
        .replace("/lt-", "/lt-2")
        .replace("\"db-", "\"db-2")
        .replace("\"sgr", "\"sgr2")
        .replace("/sgr-", "/sgr-2")
        .replace("\"fsmt-", "\"fsmt-2");
    let mut second: Value = serde_json::from_str(&text).unwrap();
    // The user data names the file system and the parameter too.
    for r in second["resources"].as_array_mut().unwrap() {
        if r["type"] == "aws_launch_template" {
            let b64 = r["values"]["user_data"].as_str().unwrap();
            let plain = String::from_utf8(aws_smithy_types::base64::decode(b64).unwrap()).unwrap();
            let plain = plain
                .replace("prestashop/db_password", "second/db_password")
                .replace("fs-", "fs-2");
            r["values"]["user_data"] = json!(aws_smithy_types::base64::encode(plain));
        }
    }
    doc["values"]["root_module"]["child_modules"]
        .as_array_mut()
        .unwrap()
        .push(second);
    doc
}

#[test]
fn a_state_with_two_stacks_is_refused_with_their_names_and_imports_the_one_named() {
    let doc = two_stacks();
    match run(&doc, None) {
        Err(ImportError::SeveralStacks(names)) => {
            assert_eq!(names, vec!["prestashop", "second"]);
        }
        other => panic!(
            "expected a refusal, got {:?}",
            other.map(|i| i.report.stack)
        ),
    }
    let text = run(&doc, None).unwrap_err().to_string();
    assert!(text.contains("prestashop, second"), "{text}");
    assert!(text.contains("--stack"), "{text}");
    let out = run(&doc, Some("second")).unwrap();
    assert_eq!(out.stack.spec.names.database.as_deref(), Some("second-db"));
    assert_eq!(out.report.imported.len(), 19);
    assert!(
        out.report
            .imported
            .iter()
            .all(|i| i.address.starts_with("module.second."))
    );
    // The other stack is said to stay in Terraform's state, not dropped silently.
    assert!(
        out.report
            .left_alone
            .iter()
            .any(|l| l.address == "module.prestashop.aws_lb.this")
    );
    let e = run(&doc, Some("third")).unwrap_err().to_string();
    assert!(e.contains("only prestashop, second"), "{e}");
}

#[test]
fn an_unknown_resource_type_next_to_the_stack_is_reported() {
    let mut doc = fixture();
    let alb_arn = resource(&mut doc, "module.prestashop.aws_lb.this")["values"]["arn"].clone();
    let resources = module(&mut doc)["resources"].as_array_mut().unwrap();
    resources.push(json!({
        "address": "module.prestashop.aws_wafv2_web_acl_association.shop",
        "mode": "managed", "type": "aws_wafv2_web_acl_association", "name": "shop",
        "values": {"id": "waf-assoc", "resource_arn": alb_arn, "web_acl_arn": "arn:aws:wafv2:eu-west-3:123456789012:regional/webacl/shop/1"},
        "sensitive_values": {}
    }));
    resources.push(json!({
        "address": "module.prestashop.aws_s3_bucket.logs",
        "mode": "managed", "type": "aws_s3_bucket", "name": "logs",
        "values": {"id": "shop-logs", "bucket": "shop-logs"},
        "sensitive_values": {}
    }));
    let out = run(&doc, None).unwrap();
    let waf = out
        .report
        .left_alone
        .iter()
        .find(|l| l.ty == "aws_wafv2_web_acl_association")
        .expect("reported");
    assert!(waf.why.contains("refers to the stack"), "{}", waf.why);
    let bucket = out
        .report
        .left_alone
        .iter()
        .find(|l| l.ty == "aws_s3_bucket")
        .expect("reported");
    assert!(bucket.why.contains("not linked"), "{}", bucket.why);
    assert!(
        out.report
            .to_string()
            .contains("aws_wafv2_web_acl_association.shop")
    );
    assert!(
        !out.report.state_rm.iter().any(|c| c.contains("wafv2")),
        "what is not imported stays in Terraform's state"
    );
}

#[test]
fn a_state_file_of_the_wrong_format_gets_a_clear_error() {
    for (text, says) in [
        ("this is not JSON", "not JSON"),
        (
            r#"{"version": 3, "modules": []}"#,
            "version 3 is not supported",
        ),
        (
            r#"{"format_version": "2.0", "values": {}}"#,
            "format_version 2.0",
        ),
        (
            r#"{"resource_changes": [], "planned_values": {}}"#,
            "this is a plan",
        ),
        (r#"{"version": 4, "resources": []}"#, "no PrestaShop stack"),
    ] {
        let e = import(text, &Options::default()).unwrap_err().to_string();
        assert!(e.contains(says), "{text}: {e}");
    }
}

#[test]
fn the_raw_state_of_the_same_shop_gives_the_same_stack() {
    // The raw terraform.tfstate keeps the same attributes under resources[].instances[].
    let doc = fixture();
    let mut resources = Vec::new();
    for m in doc["values"]["root_module"]["child_modules"]
        .as_array()
        .unwrap()
        .iter()
        .chain(std::iter::once(&doc["values"]["root_module"]))
    {
        for r in m["resources"].as_array().into_iter().flatten() {
            let address = r["address"].as_str().unwrap();
            let module = address
                .strip_prefix("module.prestashop.")
                .map(|_| "module.prestashop");
            let mut raw = json!({
                "mode": r["mode"], "type": r["type"], "name": r["name"],
                "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
                "instances": [{"attributes": r["values"], "sensitive_attributes": []}],
            });
            if let Some(m) = module {
                raw["module"] = json!(m);
            }
            if !r["index"].is_null() {
                raw["instances"][0]["index_key"] = r["index"].clone();
            }
            resources.push(raw);
        }
    }
    let raw = json!({"version": 4, "terraform_version": "1.11.4", "serial": 1, "lineage": "x", "outputs": {}, "resources": resources});
    let a = run(&doc, None).unwrap();
    let b = run(&raw, None).unwrap();
    assert_eq!(a.stack, b.stack);
    assert_eq!(a.report.state_rm, b.report.state_rm);
}

#[test]
fn https_with_a_redirect_and_two_parameters_read_by_the_user_data() {
    let mut doc = fixture();
    let http = resource(&mut doc, "module.prestashop.aws_lb_listener.http");
    let mut https = http.clone();
    http["values"]["default_action"] = json!([{"type": "redirect", "order": 1,
        "redirect": [{"port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"}]}]);
    https["address"] = json!("module.prestashop.aws_lb_listener.https");
    https["name"] = json!("https");
    https["values"]["protocol"] = json!("HTTPS");
    https["values"]["port"] = json!(443);
    https["values"]["id"] = json!(
        "arn:aws:elasticloadbalancing:eu-west-3:123456789012:listener/app/prestashop-alb/x/https"
    );
    https["values"]["arn"] = https["values"]["id"].clone();
    https["values"]["certificate_arn"] =
        json!("arn:aws:acm:eu-west-3:123456789012:certificate/abc");
    https["values"]["ssl_policy"] = json!("ELBSecurityPolicy-TLS13-1-2-2021-06");
    // The admin password's parameter, read by the user data too.
    let db_param = resource(&mut doc, "module.prestashop.aws_ssm_parameter.db_password").clone();
    let mut admin = db_param.clone();
    admin["address"] = json!("module.prestashop.aws_ssm_parameter.admin_password");
    admin["name"] = json!("admin_password");
    admin["values"]["name"] = json!("/prestashop/admin_password");
    admin["values"]["id"] = json!("/prestashop/admin_password");
    admin["values"]["arn"] =
        json!("arn:aws:ssm:eu-west-3:123456789012:parameter/prestashop/admin_password");
    let certificate = json!({
        "address": "module.prestashop.aws_acm_certificate.shop", "mode": "managed",
        "type": "aws_acm_certificate", "name": "shop",
        "values": {"arn": "arn:aws:acm:eu-west-3:123456789012:certificate/abc", "id": "arn:aws:acm:eu-west-3:123456789012:certificate/abc", "domain_name": "boutique.example.com"},
        "sensitive_values": {}
    });
    // Terraform's `www.` redirect on the HTTPS listener.
    let www = json!({
        "address": "module.prestashop.aws_lb_listener_rule.www", "mode": "managed",
        "type": "aws_lb_listener_rule", "name": "www",
        "values": {"arn": "arn:aws:elasticloadbalancing:eu-west-3:123456789012:listener-rule/app/prestashop-alb/x/https/www",
                   "id": "arn:aws:elasticloadbalancing:eu-west-3:123456789012:listener-rule/app/prestashop-alb/x/https/www",
                   "listener_arn": "arn:aws:elasticloadbalancing:eu-west-3:123456789012:listener/app/prestashop-alb/x/https",
                   "priority": 1},
        "sensitive_values": {}
    });
    let lt = resource(&mut doc, "module.prestashop.aws_launch_template.this");
    let b64 = lt["values"]["user_data"].as_str().unwrap();
    let plain = String::from_utf8(aws_smithy_types::base64::decode(b64).unwrap()).unwrap();
    let plain =
        format!("ADMIN_PW=$(aws ssm get-parameter --name /prestashop/admin_password)\n{plain}");
    lt["values"]["user_data"] = json!(aws_smithy_types::base64::encode(plain));
    let resources = module(&mut doc)["resources"].as_array_mut().unwrap();
    resources.insert(0, admin);
    resources.push(https);
    resources.push(certificate);
    resources.push(www);
    let out = run(&doc, None).unwrap();
    let s = &out.stack;
    let h = s
        .spec
        .load_balancer
        .https
        .as_ref()
        .expect("the HTTPS listener is imported");
    assert!(h.redirects_http());
    assert_eq!(h.port, 443);
    assert_eq!(h.ssl_policy, "ELBSecurityPolicy-TLS13-1-2-2021-06");
    assert_eq!(
        s.spec.prestashop.domain.as_deref(),
        Some("boutique.example.com")
    );
    assert_eq!(
        s.spec.secrets.db_password_parameter.as_deref(),
        Some("/prestashop/db_password"),
        "of two parameters the user data reads, the database's"
    );
    assert!(
        out.report
            .left_alone
            .iter()
            .any(|l| l.address.ends_with("admin_password"))
    );
    assert!(
        out.report
            .imported
            .iter()
            .any(|i| i.role == "HTTPS listener")
    );
    assert_eq!(
        h.certificate.as_deref(),
        Some("arn:aws:acm:eu-west-3:123456789012:certificate/abc"),
        "the listener keeps Terraform's certificate by its ARN"
    );
    let cert = out
        .report
        .left_alone
        .iter()
        .find(|l| l.ty == "aws_acm_certificate")
        .expect("the certificate is recognised");
    assert!(cert.why.contains("keeps it by its ARN"), "{}", cert.why);
    let rule = out
        .report
        .left_alone
        .iter()
        .find(|l| l.ty == "aws_lb_listener_rule")
        .expect("the www redirect is recognised");
    assert!(
        rule.why
            .contains("never changes or deletes a rule it did not create"),
        "{}",
        rule.why
    );
    // The stack written validates.
    let dir = std::env::temp_dir().join(format!("presta-import-https-{}.yaml", std::process::id()));
    std::fs::write(&dir, out.yaml()).unwrap();
    let loaded = presta_spec::load_paths(std::slice::from_ref(&dir));
    std::fs::remove_file(&dir).ok();
    assert!(loaded.is_ok(), "{:?}", loaded.err().map(|e| e.to_string()));
}
