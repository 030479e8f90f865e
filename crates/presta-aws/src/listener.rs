//! Listeners of the load balancer: HTTP (forward to the target group, or a permanent redirect
//! to HTTPS) and HTTPS (certificate, TLS policy, forward). Keyed `<load balancer>:<port>`.
//!
//! Observation: one `DescribeListeners` per load balancer of the stacks (the API takes one load
//! balancer at a time), concurrently. A listener nobody declared is deleted: it holds no data.

use std::collections::BTreeMap;
use std::fmt;

use aws_sdk_elasticloadbalancingv2::types::{
    Action as ElbAction, ActionTypeEnum, Certificate, ProtocolEnum, RedirectActionConfig,
    RedirectActionStatusCodeEnum,
};
use serde::{Serialize, Serializer};

use crate::clients::Aws;
use crate::diff::{Diffs, FieldDiff, Kind};
use crate::driver::{Driver, Scope, absent_is_success};
use crate::error::{AwsError, AwsResultExt};
use crate::registry::{Deletion, Iam, Observed, Targets, Teardown};
use crate::tags::Tags;
use fields::*;
use presta_spec::Stack;
use presta_spec::naming::{Component, role_tags};

/// What a listener does with a request.
/// The fields this kind manages, as its diff reports them and its update reads them.
pub mod fields {
    use crate::diff::Field;

    pub const PROTOCOL: Field = Field("protocol");
    pub const DEFAULT_ACTION: Field = Field("defaultAction");
    pub const CERTIFICATE_ARN: Field = Field("certificateArn");
    pub const SSL_POLICY: Field = Field("sslPolicy");
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultAction {
    /// Forward to a target group (ARN).
    Forward(String),
    /// Permanent redirect to HTTPS on a port.
    RedirectHttps(u16),
    /// Anything else someone configured (fixed response, several actions...).
    Other(String),
}

impl fmt::Display for DefaultAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultAction::Forward(tg) => write!(f, "forward to {tg}"),
            DefaultAction::RedirectHttps(port) => write!(f, "redirect to HTTPS:{port} (301)"),
            DefaultAction::Other(s) => f.write_str(s),
        }
    }
}

impl Serialize for DefaultAction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone)]
pub struct ListenerDesired {
    /// `<load balancer name>:<port>`.
    pub key: String,
    pub load_balancer_arn: String,
    pub port: u16,
    /// `HTTP` or `HTTPS`.
    pub protocol: String,
    pub action: DefaultAction,
    pub certificate_arn: Option<String>,
    pub ssl_policy: Option<String>,
    /// Put on the listener at its creation (the IAM policy bounds its changes by them).
    pub tags: Tags,
}

impl ListenerDesired {
    /// The stack's listeners: HTTP (forwarding, or redirecting to HTTPS), and HTTPS with the
    /// certificate `certificate` and the TLS policy when the spec has HTTPS. Without a usable
    /// certificate (one of the reconciler's own still being validated) there is no HTTPS
    /// listener and HTTP forwards: never a listener without a certificate, never a redirect
    /// to a port nothing answers.
    pub fn for_stack(
        stack: &Stack,
        load_balancer: &str,
        target_group: &str,
        certificate: Option<&str>,
    ) -> Vec<Self> {
        let lb = &stack.spec.load_balancer;
        let name = stack.resource_name(Component::LoadBalancer);
        let https = stack.https().filter(|_| certificate.is_some());
        let tags = |key: &str| role_tags(stack.name(), "listener", key, &stack.metadata.labels);
        let http_key = format!("{name}:{}", lb.http_port);
        let mut out = vec![ListenerDesired {
            tags: tags(&http_key),
            key: http_key,
            load_balancer_arn: load_balancer.to_string(),
            port: lb.http_port,
            protocol: "HTTP".into(),
            action: match &https {
                Some(h) if h.redirects_http() => DefaultAction::RedirectHttps(h.port),
                _ => DefaultAction::Forward(target_group.to_string()),
            },
            certificate_arn: None,
            ssl_policy: None,
        }];
        if let (Some(h), Some(cert)) = (https, certificate) {
            let key = format!("{name}:{}", h.port);
            out.push(ListenerDesired {
                tags: tags(&key),
                key,
                load_balancer_arn: load_balancer.to_string(),
                port: h.port,
                protocol: "HTTPS".into(),
                action: DefaultAction::Forward(target_group.to_string()),
                certificate_arn: Some(cert.to_string()),
                ssl_policy: Some(h.ssl_policy.clone()),
            });
        }
        out
    }

    /// The key of the stack's HTTPS listener, when the spec has one.
    pub fn https_key(stack: &Stack) -> Option<String> {
        let name = stack.resource_name(Component::LoadBalancer);
        stack.https().map(|h| format!("{name}:{}", h.port))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerLive {
    pub arn: String,
    pub key: String,
    pub load_balancer_arn: String,
    pub port: u16,
    pub protocol: String,
    pub action: DefaultAction,
    pub certificate_arn: Option<String>,
    pub ssl_policy: Option<String>,
}

pub struct Listeners;

/// `<name>` of `arn:aws:elasticloadbalancing:<region>:<account>:loadbalancer/app/<name>/<id>`.
pub fn load_balancer_name(arn: &str) -> &str {
    arn.split('/').nth(2).unwrap_or(arn)
}

impl Kind {
    pub const LISTENER: Kind = Kind::new("listener");
}

impl Driver for Listeners {
    const KIND: Kind = Kind::LISTENER;
    const IAM: Iam = Iam {
        read: &["elasticloadbalancing:DescribeListeners"],
        create: &[],
        change: &[
            "elasticloadbalancing:CreateListener",
            "elasticloadbalancing:ModifyListener",
            "elasticloadbalancing:DeleteListener",
        ],
        statements: || {
            vec![crate::iam::tag_while_creating(
                "TagListenersOnlyWhileCreatingThem",
                "elasticloadbalancing",
                "elasticloadbalancing:AddTags",
                &["CreateListener"],
            )]
        },
    };
    const TEARDOWN: Teardown = Teardown::new(20, Deletion::Plain);
    const PARENT: Option<Kind> = Some(Kind::LOAD_BALANCER);

    /// The listeners of the stacks' load balancers.
    fn scope(_: &Targets, observed: &Observed) -> Scope {
        Scope::under(
            observed
                .values::<crate::load_balancer::LoadBalancers>()
                .map(|l| l.arn.clone())
                .collect(),
        )
    }

    type Desired = ListenerDesired;
    type Live = ListenerLive;

    fn name(desired: &ListenerDesired) -> String {
        desired.key.clone()
    }

    fn lookup(desired: &Self::Desired) -> Scope {
        Scope {
            parents: vec![desired.load_balancer_arn.clone()],
            ..Scope::default()
        }
    }

    fn parents(live: &Self::Live) -> Vec<String> {
        vec![live.load_balancer_arn.clone()]
    }

    /// Deletes a listener (one nobody declared, or the stack's at destroy); absent is success.
    async fn delete(&self, aws: &Aws, live: &ListenerLive) -> Result<(), AwsError> {
        absent_is_success(
            aws.elbv2
                .delete_listener()
                .listener_arn(&live.arn)
                .send()
                .await
                .map(|_| ())
                .aws(),
        )
    }

    /// A listener is the stack's when its load balancer is.
    async fn ownership_tags(&self, aws: &Aws, live: &ListenerLive) -> Result<Tags, AwsError> {
        let arn = live.load_balancer_arn.clone();
        Ok(
            crate::target_group::elb_tags(aws, std::slice::from_ref(&arn))
                .await?
                .remove(&arn)
                .unwrap_or_default(),
        )
    }

    fn id(live: &ListenerLive) -> String {
        live.arn.clone()
    }

    /// `scope.parents`: the load balancers' ARNs.
    async fn observe(
        &self,
        aws: &Aws,
        scope: &Scope,
    ) -> Result<BTreeMap<String, ListenerLive>, AwsError> {
        let per_lb = crate::calls::bounded(scope.parents.iter().map(|lb_arn| async move {
            let out = aws
                .elbv2
                .describe_listeners()
                .load_balancer_arn(lb_arn)
                .send()
                .await
                .aws()?;
            Ok::<_, AwsError>(
                out.listeners()
                    .iter()
                    .map(|l| {
                        let port = l.port().unwrap_or(0) as u16;
                        ListenerLive {
                            arn: l.listener_arn().unwrap_or_default().to_string(),
                            key: format!("{}:{port}", load_balancer_name(lb_arn)),
                            load_balancer_arn: lb_arn.clone(),
                            port,
                            protocol: l
                                .protocol()
                                .map(|p| p.as_str().to_string())
                                .unwrap_or_default(),
                            action: action_of(l.default_actions()),
                            certificate_arn: l
                                .certificates()
                                .first()
                                .and_then(|c| c.certificate_arn())
                                .map(String::from),
                            ssl_policy: l.ssl_policy().map(String::from),
                        }
                    })
                    .collect::<Vec<_>>(),
            )
        }))
        .await?;
        Ok(per_lb
            .into_iter()
            .flatten()
            .map(|l| (l.key.clone(), l))
            .collect())
    }

    fn diff(&self, desired: &ListenerDesired, live: &ListenerLive) -> Vec<FieldDiff> {
        let mut d = Diffs::new();
        d.field(PROTOCOL, &desired.protocol, &live.protocol).field(
            DEFAULT_ACTION,
            &desired.action,
            &live.action,
        );
        if desired.protocol == "HTTPS" {
            d.field(
                CERTIFICATE_ARN,
                &desired.certificate_arn,
                &live.certificate_arn,
            )
            .field(SSL_POLICY, &desired.ssl_policy, &live.ssl_policy);
        }
        d.finish()
    }

    async fn create(&self, aws: &Aws, desired: &ListenerDesired) -> Result<ListenerLive, AwsError> {
        let mut req = aws
            .elbv2
            .create_listener()
            .load_balancer_arn(&desired.load_balancer_arn)
            .port(desired.port.into())
            .protocol(ProtocolEnum::from(desired.protocol.as_str()))
            .default_actions(elb_action(&desired.action));
        if let Some(cert) = &desired.certificate_arn {
            req = req.certificates(Certificate::builder().certificate_arn(cert).build());
        }
        if let Some(policy) = &desired.ssl_policy {
            req = req.ssl_policy(policy);
        }
        let out = req
            .set_tags(Some(crate::tags::elbv2(&desired.tags)))
            .send()
            .await
            .aws()?;
        let arn = out
            .listeners()
            .first()
            .and_then(|l| l.listener_arn())
            .unwrap_or_default()
            .to_string();
        Ok(live_from(desired, arn))
    }

    async fn update(
        &self,
        aws: &Aws,
        desired: &ListenerDesired,
        live: &ListenerLive,
        _diffs: &[FieldDiff],
    ) -> Result<ListenerLive, AwsError> {
        let mut req = aws
            .elbv2
            .modify_listener()
            .listener_arn(&live.arn)
            .port(desired.port.into())
            .protocol(ProtocolEnum::from(desired.protocol.as_str()))
            .default_actions(elb_action(&desired.action));
        if let Some(cert) = &desired.certificate_arn {
            req = req.certificates(Certificate::builder().certificate_arn(cert).build());
        }
        if let Some(policy) = &desired.ssl_policy {
            req = req.ssl_policy(policy);
        }
        req.send().await.aws()?;
        Ok(live_from(desired, live.arn.clone()))
    }
}

fn live_from(desired: &ListenerDesired, arn: String) -> ListenerLive {
    ListenerLive {
        arn,
        key: desired.key.clone(),
        load_balancer_arn: desired.load_balancer_arn.clone(),
        port: desired.port,
        protocol: desired.protocol.clone(),
        action: desired.action.clone(),
        certificate_arn: desired.certificate_arn.clone(),
        ssl_policy: desired.ssl_policy.clone(),
    }
}

fn elb_action(action: &DefaultAction) -> ElbAction {
    match action {
        DefaultAction::Forward(tg) => ElbAction::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(tg)
            .build(),
        DefaultAction::RedirectHttps(port) => ElbAction::builder()
            .r#type(ActionTypeEnum::Redirect)
            .redirect_config(
                RedirectActionConfig::builder()
                    .protocol("HTTPS")
                    .port(port.to_string())
                    .status_code(RedirectActionStatusCodeEnum::Http301)
                    .build(),
            )
            .build(),
        DefaultAction::Other(_) => ElbAction::builder().r#type(ActionTypeEnum::Forward).build(),
    }
}

fn action_of(actions: &[ElbAction]) -> DefaultAction {
    match actions {
        [one] => match one.r#type() {
            Some(ActionTypeEnum::Forward) => {
                let tg = one.target_group_arn().map(String::from).or_else(|| {
                    one.forward_config().and_then(|f| match f.target_groups() {
                        [single] => single.target_group_arn().map(String::from),
                        _ => None,
                    })
                });
                tg.map(DefaultAction::Forward).unwrap_or_else(|| {
                    DefaultAction::Other("forward to several target groups".into())
                })
            }
            Some(ActionTypeEnum::Redirect) => match one.redirect_config() {
                Some(r)
                    if r.protocol() == Some("HTTPS")
                        && matches!(
                            r.status_code(),
                            Some(RedirectActionStatusCodeEnum::Http301)
                        ) =>
                {
                    DefaultAction::RedirectHttps(
                        r.port().and_then(|p| p.parse().ok()).unwrap_or(443),
                    )
                }
                Some(r) => DefaultAction::Other(format!(
                    "redirect to {}:{}",
                    r.protocol().unwrap_or("#{protocol}"),
                    r.port().unwrap_or("#{port}")
                )),
                None => DefaultAction::Other("redirect".into()),
            },
            Some(other) => DefaultAction::Other(other.as_str().to_string()),
            None => DefaultAction::Other("no action".into()),
        },
        [] => DefaultAction::Other("no action".into()),
        many => DefaultAction::Other(format!("{} actions", many.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_arn() {
        assert_eq!(
            load_balancer_name(
                "arn:aws:elasticloadbalancing:eu-west-3:123456789012:loadbalancer/app/shop-alb/50dc6c495c0c9188"
            ),
            "shop-alb"
        );
    }

    #[test]
    fn actions_round_trip() {
        for a in [
            DefaultAction::Forward("arn:tg".into()),
            DefaultAction::RedirectHttps(443),
        ] {
            assert_eq!(action_of(&[elb_action(&a)]), a);
        }
    }

    #[test]
    fn a_changed_action_is_named_with_both_values() {
        let desired = ListenerDesired {
            key: "shop-alb:80".into(),
            load_balancer_arn: "arn:lb".into(),
            port: 80,
            protocol: "HTTP".into(),
            action: DefaultAction::Forward("arn:tg".into()),
            certificate_arn: None,
            ssl_policy: None,
            tags: Tags::new(),
        };
        let live = ListenerLive {
            action: DefaultAction::Other("fixed-response".into()),
            ..live_from(&desired, "arn:l".into())
        };
        let diffs = Listeners.diff(&desired, &live);
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].field, "defaultAction");
        assert_eq!(diffs[0].desired, "forward to arn:tg");
        assert_eq!(diffs[0].live, "fixed-response");
    }
}
