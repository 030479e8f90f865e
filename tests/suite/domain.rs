//! The shop's front door (`spec.dns`): its certificate requested, validated through records
//! in the hosted zone and issued; HTTPS with the TLS 1.3 policy; HTTP answering 301; alias
//! records for each name. Drift made by hand is healed, records the product did not write are
//! never touched (also by `destroy`), and a certificate that is not issued in time keeps HTTP
//! serving.

use std::path::PathBuf;

use aws_sdk_elasticloadbalancingv2::types::{
    Action as ElbAction, ActionTypeEnum, Certificate, RuleCondition,
};
use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use presta_emulator::Emulator;

use crate::common::{self, Env};

const ZONE: &str = "demo.example.com";
const DOMAIN: &str = "shop.demo.example.com";
const WWW: &str = "www.shop.demo.example.com";

fn with_dns(env: &Env) -> PathBuf {
    env.config("dns.yaml", |t| {
        t.replace(
            "  prestashop:\n",
            &format!(
                "  dns:\n    hostedZone: {ZONE}\n    extraNames: [{WWW}]\n  prestashop:\n    domain: {DOMAIN}\n"
            ),
        )
    })
}

struct Aws {
    elb: aws_sdk_elasticloadbalancingv2::Client,
    acm: aws_sdk_acm::Client,
    r53: aws_sdk_route53::Client,
    zone_id: String,
}

impl Aws {
    async fn of(env: &Env) -> Aws {
        let config = env.sdk().await;
        let r53 = aws_sdk_route53::Client::new(&config);
        let zone_id = env.emu.network("demo").unwrap().hosted_zone_id.clone();
        Aws {
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&config),
            acm: aws_sdk_acm::Client::new(&config),
            r53,
            zone_id,
        }
    }

    /// Every record of the zone: (name without the final dot, type) → the record.
    async fn records(&self) -> Vec<ResourceRecordSet> {
        self.r53
            .list_resource_record_sets()
            .hosted_zone_id(&self.zone_id)
            .send()
            .await
            .unwrap()
            .resource_record_sets()
            .to_vec()
    }

    async fn record(&self, name: &str, rtype: RrType) -> Option<ResourceRecordSet> {
        self.records()
            .await
            .into_iter()
            .find(|r| r.name().trim_end_matches('.') == name && *r.r#type() == rtype)
    }

    async fn change(&self, action: ChangeAction, set: ResourceRecordSet) {
        self.r53
            .change_resource_record_sets()
            .hosted_zone_id(&self.zone_id)
            .change_batch(
                ChangeBatch::builder()
                    .changes(
                        Change::builder()
                            .action(action)
                            .resource_record_set(set)
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }

    async fn load_balancer(&self) -> (String, String) {
        let lb = self
            .elb
            .describe_load_balancers()
            .names("demo-alb")
            .send()
            .await
            .unwrap()
            .load_balancers()[0]
            .clone();
        (
            lb.load_balancer_arn().unwrap().to_string(),
            lb.dns_name().unwrap().to_string(),
        )
    }

    /// The HTTP and HTTPS listeners, by port.
    async fn listeners(&self) -> Vec<aws_sdk_elasticloadbalancingv2::types::Listener> {
        let (lb, _) = self.load_balancer().await;
        let mut l = self
            .elb
            .describe_listeners()
            .load_balancer_arn(lb)
            .send()
            .await
            .unwrap()
            .listeners()
            .to_vec();
        l.sort_by_key(|l| l.port());
        l
    }

    /// The rules of the HTTPS listener, its default one left out.
    async fn rules(&self) -> Vec<aws_sdk_elasticloadbalancingv2::types::Rule> {
        let listeners = self.listeners().await;
        let https = listeners
            .iter()
            .find(|l| l.port() == Some(443))
            .expect("the HTTPS listener");
        self.elb
            .describe_rules()
            .listener_arn(https.listener_arn().unwrap())
            .send()
            .await
            .unwrap()
            .rules()
            .iter()
            .filter(|r| r.is_default() != Some(true))
            .cloned()
            .collect()
    }

    /// The stack's certificate (tagged with its name).
    async fn certificate(&self) -> Option<aws_sdk_acm::types::CertificateDetail> {
        let list = self
            .acm
            .list_certificates()
            .send()
            .await
            .unwrap()
            .certificate_summary_list()
            .to_vec();
        for c in list {
            let arn = c.certificate_arn().unwrap();
            let tags = self
                .acm
                .list_tags_for_certificate()
                .certificate_arn(arn)
                .send()
                .await
                .unwrap();
            if tags
                .tags()
                .iter()
                .any(|t| t.key() == "Name" && t.value() == Some("demo-certificate"))
            {
                return self
                    .acm
                    .describe_certificate()
                    .certificate_arn(arn)
                    .send()
                    .await
                    .unwrap()
                    .certificate()
                    .cloned();
            }
        }
        None
    }
}

/// A plain forward to the target group `tg`, as a person would set it by hand.
fn forward(tg: &str) -> ElbAction {
    ElbAction::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(tg)
        .build()
}

fn txt(name: &str, value: &str) -> ResourceRecordSet {
    ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::Txt)
        .ttl(300)
        .resource_records(ResourceRecord::builder().value(value).build().unwrap())
        .build()
        .unwrap()
}

fn a_record(name: &str, ip: &str) -> ResourceRecordSet {
    ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::A)
        .ttl(60)
        .resource_records(ResourceRecord::builder().value(ip).build().unwrap())
        .build()
        .unwrap()
}

/// Records that are not the product's: the same name with another type, another name.
async fn foreign_records(aws: &Aws) -> Vec<ResourceRecordSet> {
    let mut out: Vec<ResourceRecordSet> = aws
        .records()
        .await
        .into_iter()
        .filter(|r| {
            let n = r.name().trim_end_matches('.');
            n == "mail.demo.example.com" || (n == DOMAIN && *r.r#type() == RrType::Txt)
        })
        .collect();
    out.sort_by_key(|r| r.name().to_string());
    out
}

async fn assert_front_door(aws: &Aws) {
    let cert = aws
        .certificate()
        .await
        .expect("the certificate is requested");
    assert_eq!(cert.status().map(|s| s.as_str()), Some("ISSUED"));
    assert_eq!(cert.domain_name(), Some(DOMAIN));
    assert!(cert.subject_alternative_names().iter().any(|n| n == WWW));
    for option in cert.domain_validation_options() {
        let rr = option.resource_record().unwrap();
        let found = aws
            .record(rr.name().trim_end_matches('.'), RrType::Cname)
            .await
            .unwrap_or_else(|| panic!("validation record {} is in the zone", rr.name()));
        assert_eq!(
            found.resource_records()[0].value().trim_end_matches('.'),
            rr.value().trim_end_matches('.')
        );
    }
    let listeners = aws.listeners().await;
    assert_eq!(listeners.len(), 2, "{listeners:?}");
    let redirect = listeners[0].default_actions()[0]
        .redirect_config()
        .expect("HTTP answers with a redirect");
    assert_eq!(
        (redirect.protocol(), redirect.port(), redirect.status_code()),
        (
            Some("HTTPS"),
            Some("443"),
            Some(&aws_sdk_elasticloadbalancingv2::types::RedirectActionStatusCodeEnum::Http301)
        )
    );
    assert_eq!(listeners[1].port(), Some(443));
    assert_eq!(
        listeners[1].ssl_policy(),
        Some("ELBSecurityPolicy-TLS13-1-2-2021-06")
    );
    assert_eq!(
        listeners[1].certificates()[0].certificate_arn(),
        cert.certificate_arn()
    );
    // The listeners and the rule carry the ownership tags (the IAM policy bounds their changes
    // by them).
    let rules = aws.rules().await;
    let arns: Vec<String> = listeners
        .iter()
        .filter_map(|l| l.listener_arn().map(String::from))
        .chain(rules.iter().filter_map(|r| r.rule_arn().map(String::from)))
        .collect();
    let tagged = aws
        .elb
        .describe_tags()
        .set_resource_arns(Some(arns.clone()))
        .send()
        .await
        .unwrap();
    for arn in &arns {
        let d = tagged
            .tag_descriptions()
            .iter()
            .find(|d| d.resource_arn() == Some(arn.as_str()))
            .unwrap_or_else(|| panic!("tags of {arn}"));
        assert!(
            d.tags()
                .iter()
                .any(|t| t.key() == Some("presta-reconciler/stack") && t.value() == Some("demo")),
            "{arn}: {:?}",
            d.tags()
        );
    }
    // `www.` answers with a permanent redirect to the domain, keeping path and query.
    assert_eq!(rules.len(), 1, "{rules:?}");
    let host = rules[0].conditions()[0]
        .host_header_config()
        .unwrap()
        .values();
    assert_eq!(host, [WWW.to_string()]);
    let to = rules[0].actions()[0]
        .redirect_config()
        .expect("the extra name is redirected");
    assert_eq!(
        (
            to.protocol(),
            to.host(),
            to.port(),
            to.path(),
            to.query(),
            to.status_code()
        ),
        (
            Some("HTTPS"),
            Some(DOMAIN),
            Some("443"),
            Some("/#{path}"),
            Some("#{query}"),
            Some(&aws_sdk_elasticloadbalancingv2::types::RedirectActionStatusCodeEnum::Http301)
        )
    );
    let (_, dns_name) = aws.load_balancer().await;
    for name in [DOMAIN, WWW] {
        for t in [RrType::A, RrType::Aaaa] {
            let r = aws
                .record(name, t.clone())
                .await
                .unwrap_or_else(|| panic!("{name} {t:?} is in the zone"));
            let alias = r.alias_target().expect("an alias record");
            assert_eq!(
                alias.dns_name().trim_end_matches('.').to_lowercase(),
                dns_name.to_lowercase()
            );
            let owner = format!("_presta-{}.{name}", t.as_str().to_lowercase());
            let txt = aws
                .record(&owner, RrType::Txt)
                .await
                .unwrap_or_else(|| panic!("the ownership record {owner} is in the zone"));
            assert_eq!(
                txt.resource_records()[0].value(),
                "\"heritage=presta-reconciler,presta-reconciler/stack=demo\""
            );
        }
    }
}

#[tokio::test]
async fn a_shop_under_its_own_domain_is_served_over_https_and_its_records_are_kept() {
    let env = Env::start();
    let aws = Aws::of(&env).await;
    // Records of the zone that are not the product's.
    aws.change(ChangeAction::Create, txt(DOMAIN, "\"v=spf1 -all\""))
        .await;
    aws.change(
        ChangeAction::Create,
        a_record("mail.demo.example.com", "192.0.2.25"),
    )
    .await;
    let foreign = foreign_records(&aws).await;
    assert_eq!(foreign.len(), 2);
    let file = with_dns(&env);

    env.apply(&file);
    assert_front_door(&aws).await;
    let (code, report) = env.plan_json(&file);
    assert_eq!(code, 0, "converged after one apply: {report:#}");
    // A rule creation whose answer was lost: the next attempt finds the rule, not a second one.
    {
        use presta_aws::Driver;
        use presta_aws::listener_rule::{ListenerRuleDesired, ListenerRules, RuleAction};
        let rule = aws.rules().await[0].rule_arn().unwrap().to_string();
        let key = format!("demo-alb:443:{WWW}");
        let desired = ListenerRuleDesired {
            listener_arn: aws.listeners().await[1].listener_arn().unwrap().to_string(),
            port: 443,
            host: WWW.into(),
            action: RuleAction::RedirectTo {
                host: DOMAIN.into(),
                port: 443,
            },
            priority: 1,
            tags: presta_spec::naming::role_tags(
                "demo",
                "listener-rule",
                &key,
                &Default::default(),
            ),
            key,
        };
        let again = ListenerRules
            .create(&env.aws().await, &desired)
            .await
            .unwrap();
        assert_eq!(again.arn, rule);
        assert_eq!(aws.rules().await.len(), 1, "one rule, not two");
    }
    let outputs = &report["stacks"][0]["outputs"];
    assert_eq!(outputs["shop_url"], format!("https://{DOMAIN}/"));
    assert!(
        outputs["certificate"]
            .as_str()
            .unwrap()
            .starts_with("ISSUED, expires in 36"),
        "{outputs:#}"
    );
    // The bootstrap serves the shop at https://<domain>.
    let ec2 = aws_sdk_ec2::Client::new(&env.sdk().await);
    let version = ec2
        .describe_launch_template_versions()
        .launch_template_name("demo-app")
        .versions("$Default")
        .send()
        .await
        .unwrap();
    let data = version.launch_template_versions()[0]
        .launch_template_data()
        .unwrap();
    let user_data = presta_aws::launch_template::decode_user_data(
        &aws_smithy_types::base64::decode(data.user_data().unwrap()).unwrap(),
    );
    assert!(
        user_data.contains(&format!("readonly PS_DOMAIN='{DOMAIN}'")),
        "{user_data}"
    );
    assert!(
        user_data.contains("readonly PS_ENABLE_SSL='1'"),
        "{user_data}"
    );

    // Health: a certificate about to expire (ACM did not renew it) is `degraded`, with why.
    let cert_arn = aws
        .certificate()
        .await
        .unwrap()
        .certificate_arn()
        .unwrap()
        .to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    env.emu
        .set_certificate_not_after(&cert_arn, Some(now + 10 * 86_400))
        .unwrap();
    let (_, report) = env.plan_json(&file);
    let health = &report["stacks"][0]["health"];
    assert_eq!(health["verdict"], "degraded", "{health:#}");
    let reason = health["reasons"][0].as_str().unwrap();
    assert!(
        reason.starts_with("the certificate expires in ") && reason.contains("days, under 30"),
        "{health:#}"
    );
    let not_after = health["certificate_not_after"].as_i64().unwrap();
    assert!((not_after - (now + 10 * 86_400)).abs() <= 1, "{health:#}");
    env.emu.set_certificate_not_after(&cert_arn, None).unwrap();
    let (_, report) = env.plan_json(&file);
    assert_eq!(report["stacks"][0]["health"]["verdict"], "healthy");

    // Drift by hand: an alias deleted, another pointed elsewhere, the HTTPS listener moved to a
    // weaker policy, HTTP back to plain forwarding, a validation record deleted.
    let a = aws.record(DOMAIN, RrType::A).await.unwrap();
    aws.change(ChangeAction::Delete, a).await;
    let mut moved = aws.record(WWW, RrType::Aaaa).await.unwrap();
    moved.alias_target = Some(
        AliasTarget::builder()
            .dns_name("elsewhere.example.net")
            .hosted_zone_id("Z2FDTNDATAQYW2")
            .evaluate_target_health(false)
            .build()
            .unwrap(),
    );
    aws.change(ChangeAction::Upsert, moved).await;
    let listeners = aws.listeners().await;
    aws.elb
        .modify_listener()
        .listener_arn(listeners[1].listener_arn().unwrap())
        .ssl_policy("ELBSecurityPolicy-2016-08")
        .send()
        .await
        .unwrap();
    let tg = listeners[1].default_actions()[0]
        .target_group_arn()
        .unwrap()
        .to_string();
    aws.elb
        .modify_listener()
        .listener_arn(listeners[0].listener_arn().unwrap())
        .default_actions(forward(&tg))
        .send()
        .await
        .unwrap();
    let cert = aws.certificate().await.unwrap();
    let www_validation = cert
        .domain_validation_options()
        .iter()
        .find(|o| o.domain_name() == WWW)
        .and_then(|o| o.resource_record())
        .unwrap()
        .name()
        .trim_end_matches('.')
        .to_string();
    let v = aws.record(&www_validation, RrType::Cname).await.unwrap();
    aws.change(ChangeAction::Delete, v).await;

    let (code, report) = env.plan_json(&file);
    assert_eq!(code, 2, "the drift is planned: {report:#}");
    let health = &report["stacks"][0]["health"];
    assert_eq!(health["verdict"], "degraded", "{health:#}");
    assert!(
        health["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap()
                == format!(
                    "{DOMAIN} does not resolve to the load balancer: no A record in the zone"
                )),
        "{health:#}"
    );
    let planned: Vec<String> = common::changes(&report)
        .iter()
        .filter(|c| c["action"] != "none")
        .map(|c| {
            format!(
                "{} {}",
                c["kind"].as_str().unwrap(),
                c["name"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        format!("dns_record {DOMAIN} A"),
        format!("dns_record {WWW} AAAA"),
        format!("dns_record {www_validation} CNAME"),
        "listener demo-alb:80".to_string(),
        "listener demo-alb:443".to_string(),
    ] {
        assert!(planned.contains(&expected), "{expected} in {planned:?}");
    }
    env.apply(&file);
    assert_front_door(&aws).await;

    // The `www.` redirect turned into plain forwarding by hand, and a rule added to the HTTPS
    // listener by hand: the redirect restored, the rule the reconciler did not write left
    // alone.
    let listeners = aws.listeners().await;
    let www_rule = aws.rules().await[0].rule_arn().unwrap().to_string();
    aws.elb
        .modify_rule()
        .rule_arn(&www_rule)
        .actions(forward(&tg))
        .send()
        .await
        .unwrap();
    aws.elb
        .create_rule()
        .listener_arn(listeners[1].listener_arn().unwrap())
        .priority(7)
        .conditions(
            RuleCondition::builder()
                .field("path-pattern")
                .values("/maintenance*")
                .build(),
        )
        .actions(forward(&tg))
        .send()
        .await
        .unwrap();
    let (code, report) = env.plan_json(&file);
    assert_eq!(code, 2, "the drift is planned: {report:#}");
    let c = common::change(&report, "listener_rule", &format!("demo-alb:443:{WWW}"));
    assert_eq!(c["action"], "update", "{c:#}");
    assert_eq!(c["diffs"][0]["field"], "action", "{c:#}");
    assert_eq!(c["diffs"][0]["live"], "forward", "{c:#}");
    assert!(
        !common::changes(&report)
            .iter()
            .any(|c| c["name"] == "demo-alb:443:rule-7" && c["action"] != "none"),
        "{report:#}"
    );
    env.apply(&file);
    let (code, report) = env.plan_json(&file);
    assert_eq!(
        code, 0,
        "converged, the hand-made rule still there: {report:#}"
    );
    let rules = aws.rules().await;
    let hand = rules
        .iter()
        .find(|r| r.priority() == Some("7"))
        .expect("the rule made by hand is never deleted");
    aws.elb
        .delete_rule()
        .rule_arn(hand.rule_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_front_door(&aws).await;

    // The `www.` rule made to match another name by hand: the declared one is created again
    // and the stack's rule for a name nobody declares is deleted.
    let www_rule = aws.rules().await[0].rule_arn().unwrap().to_string();
    aws.elb
        .modify_rule()
        .rule_arn(&www_rule)
        .conditions(
            RuleCondition::builder()
                .field("host-header")
                .host_header_config(
                    aws_sdk_elasticloadbalancingv2::types::HostHeaderConditionConfig::builder()
                        .values("old.shop.demo.example.com")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let (code, report) = env.plan_json(&file);
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(
        common::change(&report, "listener_rule", &format!("demo-alb:443:{WWW}"))["action"],
        "create"
    );
    assert_eq!(
        common::change(
            &report,
            "listener_rule",
            "demo-alb:443:old.shop.demo.example.com"
        )["action"],
        "delete"
    );
    env.apply(&file);
    assert_front_door(&aws).await;

    // The ownership record of an alias deleted by hand (the alias still points at the stack's
    // load balancer): written again.
    let owner = aws
        .record(&format!("_presta-aaaa.{DOMAIN}"), RrType::Txt)
        .await
        .unwrap();
    aws.change(ChangeAction::Delete, owner).await;
    let (code, report) = env.plan_json(&file);
    assert_eq!(code, 2, "{report:#}");
    let c = common::change(&report, "dns_record", &format!("{DOMAIN} AAAA"));
    assert_eq!(c["action"], "update", "{c:#}");
    env.apply(&file);
    assert_front_door(&aws).await;

    // The certificate replaced by hand and deleted: a new one is requested, issued and the
    // listener moved to it.
    let seed_cert = env.emu.network("demo").unwrap().certificate_arn.clone();
    let listeners = aws.listeners().await;
    aws.elb
        .modify_listener()
        .listener_arn(listeners[1].listener_arn().unwrap())
        .certificates(Certificate::builder().certificate_arn(&seed_cert).build())
        .send()
        .await
        .unwrap();
    aws.acm
        .delete_certificate()
        .certificate_arn(cert.certificate_arn().unwrap())
        .send()
        .await
        .unwrap();
    env.apply(&file);
    assert_front_door(&aws).await;
    let new_cert = aws.certificate().await.unwrap();
    assert_ne!(new_cert.certificate_arn(), cert.certificate_arn());

    // The daemon heals a record deleted by hand, and exports the certificate's expiry.
    let daemon = env.serve(&file, &["--interval", "1"]);
    let not_after = new_cert.not_after().unwrap().secs() as f64;
    daemon.eventually(20, "the certificate's expiry is exported", |d| {
        d.metric("presta_certificate_expiry_seconds{stack=\"demo\"}") == Some(not_after)
    });
    let a = aws.record(WWW, RrType::A).await.unwrap();
    aws.change(ChangeAction::Delete, a).await;
    let mut healed = false;
    for _ in 0..40 {
        std::thread::sleep(std::time::Duration::from_millis(250));
        if aws.record(WWW, RrType::A).await.is_some() {
            healed = true;
            break;
        }
    }
    assert!(healed, "the daemon puts the deleted alias record back");
    let www_rule = aws.rules().await[0].rule_arn().unwrap().to_string();
    aws.elb
        .delete_rule()
        .rule_arn(&www_rule)
        .send()
        .await
        .unwrap();
    let mut healed = false;
    for _ in 0..40 {
        std::thread::sleep(std::time::Duration::from_millis(250));
        if aws.rules().await.len() == 1 {
            healed = true;
            break;
        }
    }
    assert!(healed, "the daemon puts the deleted www redirect back");
    assert_front_door(&aws).await;
    // What the front door adds to a steady observation: at most 3 calls per stack and run
    // (DescribeCertificate, ListResourceRecordSets, DescribeRules; the zone's id, the
    // certificates' tags and the region's certificate list are remembered).
    let runs = |d: &common::Daemon| {
        d.metric(r#"presta_reconcile_runs_total{result="converged",stack="demo"}"#)
            .unwrap_or(0.0)
    };
    daemon.eventually(10, "a converged run", |d| runs(d) >= 1.0);
    let before = runs(&daemon);
    env.emu.reset_calls().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let calls = env.emu.calls().unwrap();
    let after = runs(&daemon);
    let front: Vec<String> = calls
        .iter()
        .filter(|c| c.service == "acm" || c.service == "route53" || c.operation == "DescribeRules")
        .map(|c| c.operation.clone())
        .collect();
    let n = after - before;
    assert!(n >= 1.0, "runs happened while counting");
    assert!(
        front.len() as f64 <= 3.0 * (n + 1.0),
        "{} front-door calls over {n} runs: {front:?}",
        front.len()
    );
    assert!(
        !front.iter().any(|o| o.contains("hostedzonesbyname")
            || o == "ListTagsForCertificate"
            || o == "ListCertificates"),
        "remembered, not asked again: {front:?}"
    );
    // The certificate deleted by hand while the daemon runs (the listener moved off it first,
    // as ACM requires): the daemon, which remembers the region's certificate list, sees it
    // gone, requests a new one and moves the listener to it.
    let seed_cert = env.emu.network("demo").unwrap().certificate_arn.clone();
    let before = aws.certificate().await.unwrap();
    let old_arn = before.certificate_arn().unwrap().to_string();
    let mut deleted = false;
    for _ in 0..20 {
        let https = aws.listeners().await[1].listener_arn().unwrap().to_string();
        aws.elb
            .modify_listener()
            .listener_arn(&https)
            .certificates(Certificate::builder().certificate_arn(&seed_cert).build())
            .send()
            .await
            .unwrap();
        // The daemon may move it back in between: tried again then.
        if aws
            .acm
            .delete_certificate()
            .certificate_arn(&old_arn)
            .send()
            .await
            .is_ok()
        {
            deleted = true;
            break;
        }
    }
    assert!(deleted, "the certificate could be deleted by hand");
    let mut replaced = None;
    for _ in 0..80 {
        std::thread::sleep(std::time::Duration::from_millis(250));
        if let Some(c) = aws.certificate().await
            && c.certificate_arn() != Some(old_arn.as_str())
            && c.status().map(|s| s.as_str()) == Some("ISSUED")
            && aws.listeners().await[1].certificates()[0].certificate_arn() == c.certificate_arn()
        {
            replaced = Some(c);
            break;
        }
    }
    assert!(
        replaced.is_some(),
        "the daemon requests a new certificate and moves the listener to it"
    );
    assert_front_door(&aws).await;
    drop(daemon);
    assert_eq!(foreign_records(&aws).await, foreign, "never touched");

    // Destroy removes what the product wrote, and nothing else of the zone.
    let out = env.cli(&[
        "destroy",
        "-f",
        file.to_str().unwrap(),
        "--stack",
        "demo",
        "--confirm",
        "demo",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<String> = aws
        .records()
        .await
        .iter()
        .map(|r| format!("{} {}", r.name(), r.r#type().as_str()))
        .collect();
    for gone in [DOMAIN, WWW] {
        assert!(
            !left.iter().any(|r| r.starts_with(&format!("{gone}. A"))),
            "{left:?}"
        );
    }
    assert!(!left.iter().any(|r| r.starts_with("_presta-")), "{left:?}");
    assert_eq!(
        foreign_records(&aws).await,
        foreign,
        "destroy never touches them"
    );
    assert!(
        aws.certificate().await.is_none(),
        "the certificate is deleted"
    );
}

#[tokio::test]
async fn a_certificate_not_issued_in_time_keeps_http_serving_until_it_is() {
    let emu = Emulator::builder()
        .seed("demo")
        .acm_validation_wait(6)
        .start()
        .expect("the emulator starts");
    let env = Env {
        emu,
        dir: tempfile::tempdir().unwrap(),
    };
    let aws = Aws::of(&env).await;
    let file = with_dns(&env);
    let out = env.cli(&["apply", "-f", file.to_str().unwrap(), "--wait-timeout", "1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("waits for the certificate"), "{stdout}");
    let listeners = aws.listeners().await;
    assert_eq!(
        listeners.len(),
        1,
        "no listener without a certificate: {listeners:?}\n{stdout}"
    );
    assert_eq!(
        listeners[0].default_actions()[0].r#type(),
        Some(&ActionTypeEnum::Forward),
        "HTTP serves the shop meanwhile"
    );
    // The daemon keeps HTTP serving while the certificate is validated, then serves HTTPS
    // with it once ACM issues it.
    let daemon = env.serve(&file, &["--interval", "1"]);
    let mut served = false;
    for _ in 0..60 {
        let listeners = aws.listeners().await;
        assert!(
            !listeners.is_empty()
                && (listeners.len() == 2
                    || listeners[0].default_actions()[0].r#type()
                        == Some(&ActionTypeEnum::Forward)),
            "HTTP serves until HTTPS does: {listeners:?}"
        );
        // Served once HTTP redirects and the `www.` rule (stepped after the listeners, in the
        // same run) is there.
        if listeners.len() == 2
            && listeners[0].default_actions()[0]
                .redirect_config()
                .is_some()
            && aws.rules().await.len() == 1
        {
            served = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    drop(daemon);
    assert!(
        served,
        "the daemon serves HTTPS once the certificate is issued"
    );
    assert_front_door(&aws).await;
}

#[tokio::test]
async fn a_domain_change_moves_the_records_the_certificate_and_the_shop() {
    let env = Env::start();
    let aws = Aws::of(&env).await;
    let file = with_dns(&env);
    env.apply(&file);
    let old_cert = aws.certificate().await.unwrap();
    // The zone named by its id this time.
    let moved = env.config("moved.yaml", |t| {
        t.replace(
            "  prestashop:\n",
            &format!(
                "  dns:\n    hostedZone: {}\n  prestashop:\n    domain: boutique.demo.example.com\n",
                aws.zone_id
            ),
        )
    });
    let (code, report) = env.plan_json(&moved);
    assert_eq!(code, 2, "{report:#}");
    let planned: Vec<String> = common::changes(&report)
        .iter()
        .filter(|c| c["action"] != "none")
        .map(|c| {
            format!(
                "{} {} {}",
                c["action"].as_str().unwrap(),
                c["kind"].as_str().unwrap(),
                c["name"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        "create certificate demo-certificate".to_string(),
        "create dns_record boutique.demo.example.com A".to_string(),
        format!("delete dns_record {DOMAIN} A"),
        format!("delete dns_record {WWW} AAAA"),
        format!("delete listener_rule demo-alb:443:{WWW}"),
        "update launch_template demo-app".to_string(),
    ] {
        assert!(planned.contains(&expected), "{expected} in {planned:?}");
    }
    // More changes than the stack's budget: held until this exact plan is approved.
    let hash = report["stacks"][0]["held"]["plan_hash"]
        .as_str()
        .unwrap_or_else(|| panic!("the domain change is held: {report:#}"))
        .to_string();
    let out = env.cli(&[
        "apply",
        "-f",
        moved.to_str().unwrap(),
        "--stack",
        "demo",
        "--approve",
        &hash,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (code, report) = env.plan_json(&moved);
    assert_eq!(code, 0, "converged after the approved apply: {report:#}");
    let cert = aws.certificate().await.unwrap();
    assert_eq!(cert.domain_name(), Some("boutique.demo.example.com"));
    assert_eq!(cert.status().map(|s| s.as_str()), Some("ISSUED"));
    let listeners = aws.listeners().await;
    assert_eq!(
        listeners[1].certificates()[0].certificate_arn(),
        cert.certificate_arn(),
        "the listener moved to the new certificate"
    );
    let gone = aws
        .acm
        .describe_certificate()
        .certificate_arn(old_cert.certificate_arn().unwrap())
        .send()
        .await;
    assert!(gone.is_err(), "the old certificate is deleted once unused");
    assert!(
        aws.record("boutique.demo.example.com", RrType::A)
            .await
            .is_some()
    );
    for name in [DOMAIN, WWW] {
        assert!(aws.record(name, RrType::A).await.is_none(), "{name}");
        assert!(aws.record(name, RrType::Aaaa).await.is_none(), "{name}");
    }
}

#[test]
fn the_demo_serves_the_shop_at_its_domain_over_https() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_presta-reconciler"))
        .current_dir(common::root())
        .args(["demo", "-f", "config/https/demo.yaml", "--once"])
        .env_remove("AWS_ENDPOINT_URL")
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("shop_url     = https://shop.demo.example.com/"),
        "{stdout}"
    );
    assert!(
        stdout.contains("certificate  = ISSUED, expires in"),
        "{stdout}"
    );
}

/// The front door's changes by hand reach the daemon as change events (ELB's in the stack's
/// region): the `www.` redirect deleted and the HTTPS listener moved to a weaker policy are
/// healed within seconds, with polling and the resync at 10 minutes.
#[tokio::test(flavor = "multi_thread")]
async fn the_www_redirect_and_the_https_listener_are_healed_by_their_change_events() {
    let env = Env::start();
    let aws = Aws::of(&env).await;
    let file = with_dns(&env);
    env.apply(&file);
    let daemon = env.serve_with_events(&file, &[]);
    daemon.eventually(60, "converged, with events flowing", |d| {
        let s = d.json("GET", "/stacks");
        s["stacks"][0]["state"] == "converged" && s["events"][0]["mode"] == "events"
    });
    // Let the start's own events pass.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    for round in 0..2 {
        let rule = aws.rules().await[0].rule_arn().unwrap().to_string();
        aws.elb.delete_rule().rule_arn(&rule).send().await.unwrap();
        let start = std::time::Instant::now();
        while aws.rules().await.is_empty() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "{round}: the www redirect is put back after its event\n{}",
                daemon.log_text()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let https = aws.listeners().await[1].listener_arn().unwrap().to_string();
        aws.elb
            .modify_listener()
            .listener_arn(&https)
            .ssl_policy("ELBSecurityPolicy-2016-08")
            .send()
            .await
            .unwrap();
        let start = std::time::Instant::now();
        while aws.listeners().await[1].ssl_policy() != Some("ELBSecurityPolicy-TLS13-1-2-2021-06") {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "{round}: the TLS policy is put back after its event\n{}",
                daemon.log_text()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_front_door(&aws).await;
}

/// A certificate request whose answer was lost (the request reached ACM, the reply timed out)
/// is found by the next attempt, though the daemon remembers an older list of the region's
/// certificates: one certificate, not two.
#[tokio::test]
async fn a_request_whose_answer_was_lost_is_found_by_the_next_attempt() {
    use presta_aws::Driver;
    use presta_aws::certificate::{CertificateDesired, Certificates};
    let env = Env::start();
    let aws = env.aws().await;
    // The emulator seeds a certificate of the domain (not the stack's).
    let of_domain = || async {
        aws.acm
            .list_certificates()
            .send()
            .await
            .unwrap()
            .certificate_summary_list()
            .iter()
            .filter(|c| c.domain_name() == Some(DOMAIN))
            .count()
    };
    let seeded = of_domain().await;
    let desired = CertificateDesired {
        stack: "demo".into(),
        key: "demo-certificate".into(),
        names: vec![DOMAIN.into(), WWW.into()],
        tags: presta_spec::naming::role_tags(
            "demo",
            presta_aws::certificate::ROLE,
            "demo-certificate",
            &Default::default(),
        ),
    };
    // An observation: the region's list remembered, without the stack's certificate.
    let before = Certificates
        .observe(&aws, &Certificates::lookup(&desired))
        .await
        .unwrap();
    assert!(before.is_empty(), "{before:?}");
    // The request that reached ACM, its answer lost.
    let lost = aws
        .acm
        .request_certificate()
        .domain_name(DOMAIN)
        .subject_alternative_names(WWW)
        .validation_method(aws_sdk_acm::types::ValidationMethod::Dns)
        .set_tags(Some(
            desired
                .tags
                .iter()
                .map(|(k, v)| {
                    aws_sdk_acm::types::Tag::builder()
                        .key(k)
                        .value(v)
                        .build()
                        .unwrap()
                })
                .collect(),
        ))
        .send()
        .await
        .unwrap()
        .certificate_arn()
        .unwrap()
        .to_string();
    let again = Certificates.create(&aws, &desired).await.unwrap();
    assert_eq!(again.arn, lost, "the certificate already requested");
    assert_eq!(of_domain().await, seeded + 1, "one certificate, not two");
}
