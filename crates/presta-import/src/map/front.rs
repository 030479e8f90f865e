//! The load balancer, its listeners and its target group.

use presta_spec::naming::Component;
use serde_json::{Value, json};

use super::groups::Sgs;
use super::{Core, Ctx, int_of, need, str_of};
use crate::ImportError;
use crate::report::{Handle, LeftAlone};

/// The HTTP (and HTTPS) listeners.
struct Listeners {
    http_port: i64,
    https_port: Option<i64>,
    https_spec: Value,
}

fn listeners(cx: &mut Ctx<'_>, core: &Core<'_>) -> Result<Listeners, ImportError> {
    let tg = core.tg;
    let listeners = cx.of_type("aws_lb_listener");
    let http = listeners
        .iter()
        .copied()
        .find(|l| l.str("protocol") == Some("HTTP"));
    let https = listeners
        .iter()
        .copied()
        .find(|l| l.str("protocol") == Some("HTTPS"));
    let http = need(http, "aws_lb_listener", "HTTP listener")?;
    let http_port = http.int("port").unwrap_or(80);
    let http_action = http.block("default_action");
    let redirect = http_action.and_then(|a| str_of(a, "type")) == Some("redirect");
    let tg_arn = tg.str("arn").unwrap_or_default();
    if !redirect && http_action.and_then(|a| str_of(a, "target_group_arn")) != Some(tg_arn) {
        cx.unmapped(http, "default_action", "the product's HTTP listener forwards to the stack's target group (or redirects to HTTPS): this action is replaced once the reconciler manages the stack");
        cx.change(format!(
            "{}: its default action becomes a forward to the target group",
            http.address
        ));
    }
    cx.take(http, "HTTP listener");
    let mut https_spec = Value::Null;
    if let Some(h) = https {
        https_spec = json!({
            "certificate": h.str("certificate_arn").unwrap_or_default(),
            "port": h.int("port").unwrap_or(443),
            "sslPolicy": h.str("ssl_policy").unwrap_or("ELBSecurityPolicy-TLS13-1-2-2021-06"),
            "http": if redirect { "redirect" } else { "forward" },
        });
        cx.take(h, "HTTPS listener");
    }
    for l in listeners
        .iter()
        .filter(|l| Some(**l) != Some(http) && Some(**l) != https)
    {
        cx.report.left_alone.push(LeftAlone {
            address: l.address.clone(),
            ty: l.ty.clone(),
            why: "a third listener: the product manages one HTTP and one HTTPS listener; the reconciler leaves it on the load balancer and Terraform's state keeps it".into(),
        });
    }
    Ok(Listeners {
        http_port,
        https_port: https.and_then(|h| h.int("port")),
        https_spec,
    })
}

/// The `spec.loadBalancer` section.
pub(super) fn load_balancer(
    cx: &mut Ctx<'_>,
    core: &Core<'_>,
    sgs: &Sgs<'_>,
) -> Result<Value, ImportError> {
    let (lb, tg) = (core.lb, core.tg);
    let Listeners {
        http_port,
        https_port,
        https_spec,
    } = listeners(cx, core)?;
    // The allowed networks: the sources of the load balancer group's listener-port rules.
    let ports: Vec<i64> = std::iter::once(http_port).chain(https_port).collect();
    let alb_rules = sgs.groups.rules.get(&sgs.alb).cloned().unwrap_or_default();
    let mut allowed: Vec<String> = Vec::new();
    for r in &alb_rules {
        if r.protocol == "tcp"
            && r.from == r.to
            && ports.contains(&r.from)
            && r.source.contains('/')
            && !allowed.contains(&r.source)
        {
            allowed.push(r.source.clone());
        }
    }
    super::groups::rule_changes(cx, sgs, &allowed, &ports);
    let (hc, stick_on, stick_duration) = target_group(cx, core);
    let lb_spec = json!({
        "scheme": if lb.bool("internal").unwrap_or(false) { "internal" } else { "internet-facing" },
        "allowedCidrs": allowed,
        "idleTimeoutSeconds": lb.int("idle_timeout").unwrap_or(60),
        "dropInvalidHeaderFields": lb.bool("drop_invalid_header_fields").unwrap_or(false),
        "deletionProtection": lb.bool("enable_deletion_protection").unwrap_or(false),
        "httpPort": http_port,
        "healthCheck": {
            "path": str_of(&hc, "path").unwrap_or("/"),
            "matcher": str_of(&hc, "matcher").unwrap_or("200"),
            "intervalSeconds": int_of(&hc, "interval").unwrap_or(30),
            "timeoutSeconds": int_of(&hc, "timeout").unwrap_or(5),
            "healthyThreshold": int_of(&hc, "healthy_threshold").unwrap_or(5),
            "unhealthyThreshold": int_of(&hc, "unhealthy_threshold").unwrap_or(2),
        },
        "stickiness": {"enabled": stick_on, "durationSeconds": stick_duration},
        "deregistrationDelaySeconds": tg.int("deregistration_delay").unwrap_or(300),
    });
    let mut lb_spec = lb_spec;
    if !https_spec.is_null() {
        lb_spec["https"] = https_spec;
    }
    cx.take(lb, "load balancer");
    Ok(lb_spec)
}

/// The target group (taken with the load balancer): its health check and stickiness.
fn target_group(cx: &mut Ctx<'_>, core: &Core<'_>) -> (serde_json::Map<String, Value>, bool, i64) {
    let (lb, tg) = (core.lb, core.tg);
    let tg_arn = tg.str("arn").unwrap_or_default();
    Core::named(cx, "loadBalancer", lb.str("name").unwrap_or_default());
    cx.tag(
        lb,
        Component::LoadBalancer,
        Handle::Elb(lb.str("arn").unwrap_or_default().into()),
    );
    Core::named(cx, "targetGroup", tg.str("name").unwrap_or_default());
    cx.take(tg, "target group");
    cx.tag(tg, Component::TargetGroup, Handle::Elb(tg_arn.into()));
    let hc = tg.block("health_check").cloned().unwrap_or_default();
    if str_of(&hc, "port").is_some_and(|p| p != "traffic-port") {
        cx.unmapped(
            tg,
            "health_check.port",
            "the product checks the traffic port",
        );
        cx.change(format!(
            "{}: the health check moves to the traffic port",
            tg.address
        ));
    }
    if str_of(&hc, "protocol").is_some_and(|p| p != "HTTP") {
        cx.unmapped(tg, "health_check.protocol", "the product checks over HTTP");
        cx.change(format!(
            "{}: the health check is made over HTTP",
            tg.address
        ));
    }
    if tg.int("port").unwrap_or(80) != 80 || tg.str("protocol").unwrap_or("HTTP") != "HTTP" {
        cx.unmapped(tg, "port", "the product's target group is HTTP on port 80, where the container listens; another port or protocol cannot be changed in place");
    }
    if tg.str("target_type").unwrap_or("instance") != "instance" {
        cx.unmapped(tg, "target_type", "the product registers instances");
    }
    let stick = tg.block("stickiness").cloned().unwrap_or_default();
    let stick_on = stick
        .get("enabled")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if stick_on && str_of(&stick, "type").is_some_and(|t| t != "lb_cookie") {
        cx.unmapped(
            tg,
            "stickiness.type",
            "the product uses load-balancer cookies (lb_cookie)",
        );
    }
    let stick_duration = int_of(&stick, "cookie_duration")
        .filter(|d| *d > 0)
        .unwrap_or(86400);
    (hc, stick_on, stick_duration)
}
