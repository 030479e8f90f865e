//! Rules of the HTTPS listener: each of the shop's extra names (`spec.dns.extraNames`, such as
//! `www.`) answered with a permanent redirect to the domain, keeping path and query
//! (`https://www.shop.example.com/a?b` → `301 https://shop.example.com/a?b`), so the shop has
//! one address and PrestaShop never sees another host. Keyed `<load balancer>:<port>:<host>`.
//!
//! Observation: one `DescribeRules` per HTTPS listener of the stacks' load balancers (the
//! default rule is the listener's own and is left out), and the tags of rules not seen before
//! (`DescribeTags`, remembered for the process: a steady run reads none).
//!
//! Ownership: a rule carries the ownership tags from its creation (the IAM policy bounds its
//! changes by them). A rule of the stack that nobody declares any more (an extra name removed)
//! is deleted; a rule the reconciler did not create (a path rule added by hand, the `www.`
//! redirect of a shop Terraform built) is never changed or deleted, unless
//! `spec.policy.adoptExisting` lets the reconciler take over one on a declared name.
//!
//! Priorities are not managed: a new rule takes the lowest free one from its position in
//! `extraNames`, so creating never fails on a priority someone else took.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use aws_sdk_elasticloadbalancingv2::types::{
    Action as ElbAction, ActionTypeEnum, HostHeaderConditionConfig, RedirectActionConfig,
    RedirectActionStatusCodeEnum, Rule, RuleCondition,
};
use serde::{Serialize, Serializer};

use crate::clients::Aws;
use crate::diff::{Diffs, FieldDiff, Kind};
use crate::driver::{Driver, Scope, absent_is_success};
use crate::error::{AwsError, AwsResultExt};
use crate::listener::{Listeners, load_balancer_name};
use crate::registry::{Deletion, Iam, Observed, Targets, Teardown};
use crate::tags::{self, Tags};
use fields::*;
use presta_spec::Stack;
use presta_spec::naming::{Component, role_tags};

/// The fields this kind manages, as its diff reports them and its update reads them.
pub mod fields {
    use crate::diff::Field;

    pub const ACTION: Field = Field("action");
}

impl Kind {
    pub const LISTENER_RULE: Kind = Kind::new("listener_rule");
}

/// What a rule does with the requests it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAction {
    /// 301 to `https://<host>:<port>/#{path}?#{query}`.
    RedirectTo { host: String, port: u16 },
    /// Anything else (forward, fixed response, a redirect elsewhere...), described.
    Other(String),
}

impl fmt::Display for RuleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleAction::RedirectTo { host, port: 443 } => {
                write!(f, "redirect to https://{host}/#{{path}}?#{{query}} (301)")
            }
            RuleAction::RedirectTo { host, port } => {
                write!(
                    f,
                    "redirect to https://{host}:{port}/#{{path}}?#{{query}} (301)"
                )
            }
            RuleAction::Other(s) => f.write_str(s),
        }
    }
}

impl Serialize for RuleAction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The HTTPS listener a rule hangs off, as [`Scope::parents`] carries it: `<arn>#<port>`
/// (the port is part of the rule's key and `DescribeRules` does not say it).
fn listener_ref(arn: &str, port: u16) -> String {
    format!("{arn}#{port}")
}

fn parse_listener_ref(parent: &str) -> (&str, u16) {
    match parent.rsplit_once('#') {
        Some((arn, port)) => (arn, port.parse().unwrap_or(0)),
        None => (parent, 0),
    }
}

#[derive(Debug, Clone)]
pub struct ListenerRuleDesired {
    /// `<load balancer name>:<port>:<host>`.
    pub key: String,
    pub listener_arn: String,
    pub port: u16,
    /// The extra name the rule matches.
    pub host: String,
    pub action: RuleAction,
    /// Where a new rule's priority search starts (its position in `extraNames`, from 1).
    pub priority: i32,
    pub tags: Tags,
}

impl ListenerRuleDesired {
    /// The rules of the stack's HTTPS listener (`listener`, on port `port`): one redirect per
    /// extra name, to the domain. None without `spec.dns` and a domain.
    pub fn for_stack(stack: &Stack, listener_arn: &str, port: u16) -> Vec<Self> {
        let Some(domain) = stack.spec.prestashop.domain.as_deref() else {
            return Vec::new();
        };
        let lb = stack.resource_name(Component::LoadBalancer);
        let names = stack.host_names();
        names
            .iter()
            .skip(1)
            .enumerate()
            .map(|(i, host)| {
                let host = host.to_ascii_lowercase();
                let key = format!("{lb}:{port}:{host}");
                ListenerRuleDesired {
                    tags: role_tags(stack.name(), "listener-rule", &key, &stack.metadata.labels),
                    key,
                    listener_arn: listener_arn.to_string(),
                    port,
                    host,
                    action: RuleAction::RedirectTo {
                        host: domain.to_ascii_lowercase(),
                        port,
                    },
                    priority: i as i32 + 1,
                }
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerRuleLive {
    pub arn: String,
    /// `<load balancer>:<port>:<host>`, or `…:rule-<priority>` for a rule whose condition is
    /// not one host name.
    pub key: String,
    pub listener_arn: String,
    pub port: u16,
    pub action: RuleAction,
    pub tags: Tags,
}

pub struct ListenerRules;

impl Driver for ListenerRules {
    const KIND: Kind = Kind::LISTENER_RULE;
    const IAM: Iam = Iam {
        read: &["elasticloadbalancing:DescribeRules"],
        create: &["elasticloadbalancing:CreateRule"],
        change: &[
            "elasticloadbalancing:ModifyRule",
            "elasticloadbalancing:DeleteRule",
        ],
        statements: || {
            vec![crate::iam::tag_while_creating(
                "TagListenerRulesOnlyWhileCreatingThem",
                "elasticloadbalancing",
                "elasticloadbalancing:AddTags",
                &["CreateRule"],
            )]
        },
    };
    /// Before its listener (deleting a listener deletes its rules anyway).
    const TEARDOWN: Teardown = Teardown::new(19, Deletion::Plain);
    const PARENT: Option<Kind> = Some(Kind::LISTENER);

    /// The HTTPS listeners of the stacks' load balancers.
    fn scope(_: &Targets, observed: &Observed) -> Scope {
        Scope::under(
            observed
                .values::<Listeners>()
                .filter(|l| l.protocol == "HTTPS")
                .map(|l| listener_ref(&l.arn, l.port))
                .collect(),
        )
    }

    type Desired = ListenerRuleDesired;
    type Live = ListenerRuleLive;

    fn name(desired: &ListenerRuleDesired) -> String {
        desired.key.clone()
    }

    fn id(live: &ListenerRuleLive) -> String {
        live.arn.clone()
    }

    fn lookup(desired: &ListenerRuleDesired) -> Scope {
        Self::lookup_listener(&desired.listener_arn, desired.port)
    }

    fn parents(live: &ListenerRuleLive) -> Vec<String> {
        vec![listener_ref(&live.listener_arn, live.port)]
    }

    fn tags(live: &ListenerRuleLive) -> Option<&Tags> {
        Some(&live.tags)
    }

    /// Read afresh before a deletion (the observation may have used remembered tags).
    async fn ownership_tags(&self, aws: &Aws, live: &ListenerRuleLive) -> Result<Tags, AwsError> {
        let arn = live.arn.clone();
        let tags = crate::target_group::elb_tags(aws, std::slice::from_ref(&arn))
            .await?
            .remove(&arn)
            .unwrap_or_default();
        aws.rule_tags.put(&arn, &tags);
        Ok(tags)
    }

    /// `scope.parents`: the HTTPS listeners, as `<arn>#<port>`.
    async fn observe(
        &self,
        aws: &Aws,
        scope: &Scope,
    ) -> Result<BTreeMap<String, ListenerRuleLive>, AwsError> {
        let per_listener = crate::calls::bounded(scope.parents.iter().map(|parent| async move {
            let (arn, port) = parse_listener_ref(parent);
            match rules_of(aws, arn).await {
                Ok(rules) => Ok(rules
                    .iter()
                    .filter(|r| !r.is_default().unwrap_or(false))
                    .map(|r| live_of(r, arn, port))
                    .collect::<Vec<_>>()),
                // Deleted since the listeners were read: no rules.
                Err(e) if e.is_not_found() => Ok(Vec::new()),
                Err(e) => Err(e),
            }
        }))
        .await?;
        let mut rules: Vec<ListenerRuleLive> = per_listener.into_iter().flatten().collect();
        remembered_tags(aws, &mut rules).await?;
        Ok(rules.into_iter().map(|r| (r.key.clone(), r)).collect())
    }

    fn diff(&self, desired: &ListenerRuleDesired, live: &ListenerRuleLive) -> Vec<FieldDiff> {
        let mut d = Diffs::new();
        d.field(ACTION, &desired.action, &live.action);
        d.finish()
    }

    /// Finds the rule first (an earlier run cut short), then creates it at the lowest free
    /// priority from its own.
    async fn create(
        &self,
        aws: &Aws,
        desired: &ListenerRuleDesired,
    ) -> Result<ListenerRuleLive, AwsError> {
        let rules = rules_of(aws, &desired.listener_arn).await?;
        if let Some(existing) = rules
            .iter()
            .map(|r| live_of(r, &desired.listener_arn, desired.port))
            .find(|r| r.key == desired.key)
        {
            let mut found = vec![existing];
            remembered_tags(aws, &mut found).await?;
            return Ok(found.remove(0));
        }
        let taken: BTreeSet<i32> = rules.iter().filter_map(priority_of).collect();
        let priority = (desired.priority.max(1)..)
            .find(|p| !taken.contains(p))
            .unwrap_or(desired.priority);
        let out = aws
            .elbv2
            .create_rule()
            .listener_arn(&desired.listener_arn)
            .priority(priority)
            .conditions(host_condition(&desired.host))
            .actions(elb_action(&desired.action))
            .set_tags(Some(tags::elbv2(&desired.tags)))
            .send()
            .await
            .aws()?;
        let arn = out
            .rules()
            .first()
            .and_then(|r| r.rule_arn())
            .unwrap_or_default()
            .to_string();
        aws.rule_tags.put(&arn, &desired.tags);
        Ok(ListenerRuleLive {
            tags: desired.tags.clone(),
            arn,
            key: desired.key.clone(),
            listener_arn: desired.listener_arn.clone(),
            port: desired.port,
            action: desired.action.clone(),
        })
    }

    async fn update(
        &self,
        aws: &Aws,
        desired: &ListenerRuleDesired,
        live: &ListenerRuleLive,
        _diffs: &[FieldDiff],
    ) -> Result<ListenerRuleLive, AwsError> {
        aws.elbv2
            .modify_rule()
            .rule_arn(&live.arn)
            .conditions(host_condition(&desired.host))
            .actions(elb_action(&desired.action))
            .send()
            .await
            .aws()?;
        Ok(ListenerRuleLive {
            action: desired.action.clone(),
            ..live.clone()
        })
    }

    async fn delete(&self, aws: &Aws, live: &ListenerRuleLive) -> Result<(), AwsError> {
        aws.rule_tags.forget(&live.arn);
        absent_is_success(
            aws.elbv2
                .delete_rule()
                .rule_arn(&live.arn)
                .send()
                .await
                .map(|_| ())
                .aws(),
        )
    }
}

/// Fills in the rules' tags: remembered, else read (20 a call) and remembered.
async fn remembered_tags(aws: &Aws, rules: &mut [ListenerRuleLive]) -> Result<(), AwsError> {
    let unknown: Vec<String> = rules
        .iter()
        .filter(|r| aws.rule_tags.get(&r.arn).is_none())
        .map(|r| r.arn.clone())
        .collect();
    if !unknown.is_empty() {
        let read = crate::target_group::elb_tags(aws, &unknown).await?;
        for arn in &unknown {
            aws.rule_tags
                .put(arn, read.get(arn).unwrap_or(&Tags::new()));
        }
    }
    for r in rules {
        r.tags = aws.rule_tags.get(&r.arn).unwrap_or_default();
    }
    Ok(())
}

/// Every rule of a listener, the default one included (`DescribeRules` pages).
async fn rules_of(aws: &Aws, listener_arn: &str) -> Result<Vec<Rule>, AwsError> {
    let mut out = Vec::new();
    let mut marker = None;
    loop {
        let page = aws
            .elbv2
            .describe_rules()
            .listener_arn(listener_arn)
            .set_marker(marker)
            .send()
            .await
            .aws()?;
        out.extend(page.rules().iter().cloned());
        marker = page.next_marker().map(String::from);
        if marker.is_none() {
            return Ok(out);
        }
    }
}

fn priority_of(rule: &Rule) -> Option<i32> {
    rule.priority()?.parse().ok()
}

/// The host a rule matches, when its only condition is one host name.
fn host_of(rule: &Rule) -> Option<String> {
    match rule.conditions() {
        [c] if c.field() == Some("host-header") => {
            let values = match c.host_header_config() {
                Some(h) if !h.values().is_empty() => h.values(),
                _ => c.values(),
            };
            match values {
                [one] => Some(one.to_ascii_lowercase()),
                _ => None,
            }
        }
        _ => None,
    }
}

fn live_of(rule: &Rule, listener_arn: &str, port: u16) -> ListenerRuleLive {
    // `load_balancer_name` reads `…:listener/app/<name>/…` as it reads a load balancer's ARN.
    let lb = load_balancer_name(listener_arn);
    let key = match host_of(rule) {
        Some(h) => format!("{lb}:{port}:{h}"),
        // Not a rule the reconciler writes: keyed by priority, never declared.
        None => format!("{lb}:{port}:rule-{}", rule.priority().unwrap_or("default")),
    };
    ListenerRuleLive {
        arn: rule.rule_arn().unwrap_or_default().to_string(),
        key,
        listener_arn: listener_arn.to_string(),
        port,
        action: action_of(rule.actions()),
        tags: Tags::new(),
    }
}

fn host_condition(host: &str) -> RuleCondition {
    RuleCondition::builder()
        .field("host-header")
        .host_header_config(HostHeaderConditionConfig::builder().values(host).build())
        .build()
}

fn elb_action(action: &RuleAction) -> ElbAction {
    match action {
        RuleAction::RedirectTo { host, port } => ElbAction::builder()
            .r#type(ActionTypeEnum::Redirect)
            .redirect_config(
                RedirectActionConfig::builder()
                    .protocol("HTTPS")
                    .port(port.to_string())
                    .host(host)
                    .path("/#{path}")
                    .query("#{query}")
                    .status_code(RedirectActionStatusCodeEnum::Http301)
                    .build(),
            )
            .build(),
        // Never desired: only live rules are `Other`.
        RuleAction::Other(_) => ElbAction::builder().r#type(ActionTypeEnum::Forward).build(),
    }
}

fn action_of(actions: &[ElbAction]) -> RuleAction {
    let [one] = actions else {
        return RuleAction::Other(format!("{} actions", actions.len()));
    };
    match (one.r#type(), one.redirect_config()) {
        (Some(ActionTypeEnum::Redirect), Some(r)) => {
            let keeps = r.path().unwrap_or("/#{path}") == "/#{path}"
                && r.query().unwrap_or("#{query}") == "#{query}";
            match (r.protocol(), r.host(), r.status_code()) {
                (Some("HTTPS"), Some(host), Some(RedirectActionStatusCodeEnum::Http301))
                    if keeps && !host.contains("#{") =>
                {
                    RuleAction::RedirectTo {
                        host: host.to_ascii_lowercase(),
                        port: r.port().and_then(|p| p.parse().ok()).unwrap_or(443),
                    }
                }
                _ => RuleAction::Other(format!(
                    "redirect to {}://{}:{}{}?{} ({})",
                    r.protocol().unwrap_or("#{protocol}").to_ascii_lowercase(),
                    r.host().unwrap_or("#{host}"),
                    r.port().unwrap_or("#{port}"),
                    r.path().unwrap_or("/#{path}"),
                    r.query().unwrap_or("#{query}"),
                    r.status_code().map(|s| s.as_str()).unwrap_or("?"),
                )),
            }
        }
        (Some(ActionTypeEnum::Forward), _) => RuleAction::Other("forward".into()),
        (Some(other), _) => RuleAction::Other(other.as_str().to_string()),
        (None, _) => RuleAction::Other("no action".into()),
    }
}

impl ListenerRules {
    /// The scope that observes the rules of one listener (`arn`, on `port`).
    pub fn lookup_listener(arn: &str, port: u16) -> Scope {
        Scope::under(vec![listener_ref(arn, port)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTENER: &str = "arn:aws:elasticloadbalancing:eu-west-3:123456789012:listener/app/shop-alb/50dc6c495c0c9188/f2f7dc8efc522ab2";

    #[test]
    fn the_listener_travels_with_its_port() {
        assert_eq!(
            parse_listener_ref(&listener_ref(LISTENER, 8443)),
            (LISTENER, 8443)
        );
    }

    #[test]
    fn redirects_round_trip_and_others_are_described() {
        let a = RuleAction::RedirectTo {
            host: "shop.example.com".into(),
            port: 443,
        };
        assert_eq!(action_of(&[elb_action(&a)]), a);
        assert_eq!(
            a.to_string(),
            "redirect to https://shop.example.com/#{path}?#{query} (301)"
        );
        // A redirect that drops the path is not the declared one.
        let dropped = ElbAction::builder()
            .r#type(ActionTypeEnum::Redirect)
            .redirect_config(
                RedirectActionConfig::builder()
                    .protocol("HTTPS")
                    .host("shop.example.com")
                    .path("/")
                    .status_code(RedirectActionStatusCodeEnum::Http301)
                    .build(),
            )
            .build();
        assert!(
            matches!(action_of(&[dropped]), RuleAction::Other(s) if s.contains("://shop.example.com:#{port}/?"))
        );
        let forward = ElbAction::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn("arn:tg")
            .build();
        assert_eq!(action_of(&[forward]), RuleAction::Other("forward".into()));
    }

    #[test]
    fn a_rule_is_keyed_by_its_host_or_else_by_its_priority() {
        let rule = |conditions: Vec<RuleCondition>| {
            Rule::builder()
                .rule_arn("arn:rule")
                .priority("7")
                .set_conditions(Some(conditions))
                .actions(elb_action(&RuleAction::RedirectTo {
                    host: "shop.example.com".into(),
                    port: 443,
                }))
                .build()
        };
        let www = live_of(
            &rule(vec![host_condition("WWW.shop.example.com")]),
            LISTENER,
            443,
        );
        assert_eq!(www.key, "shop-alb:443:www.shop.example.com");
        let path = RuleCondition::builder()
            .field("path-pattern")
            .values("/admin*")
            .build();
        let other = live_of(&rule(vec![path]), LISTENER, 443);
        assert_eq!(other.key, "shop-alb:443:rule-7");
    }

    #[test]
    fn a_changed_target_is_named_with_both_values() {
        let desired = ListenerRuleDesired {
            key: "shop-alb:443:www.shop.example.com".into(),
            listener_arn: LISTENER.into(),
            port: 443,
            host: "www.shop.example.com".into(),
            action: RuleAction::RedirectTo {
                host: "shop.example.com".into(),
                port: 443,
            },
            priority: 1,
            tags: Tags::new(),
        };
        let live = ListenerRuleLive {
            arn: "arn:rule".into(),
            key: desired.key.clone(),
            listener_arn: LISTENER.into(),
            port: 443,
            action: RuleAction::RedirectTo {
                host: "elsewhere.example.com".into(),
                port: 443,
            },
            tags: Tags::new(),
        };
        let diffs = ListenerRules.diff(&desired, &live);
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].field, "action");
        assert_eq!(
            diffs[0].live,
            "redirect to https://elsewhere.example.com/#{path}?#{query} (301)"
        );
        assert!(
            ListenerRules
                .diff(
                    &desired,
                    &ListenerRuleLive {
                        action: desired.action.clone(),
                        ..live
                    }
                )
                .is_empty()
        );
    }
}
