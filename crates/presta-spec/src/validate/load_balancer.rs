//! `spec.loadBalancer`: listeners, certificate, health check, names.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::CertificateSource;
use crate::model::Stack;

use super::{Findings, help};

pub(super) fn load_balancer(f: &mut Findings, stack: &Stack) {
    let lb = &stack.spec.load_balancer;
    let base = "spec.loadBalancer";
    allowed_cidrs(f, &lb.allowed_cidrs, base);
    f.range(
        &format!("{base}.idleTimeoutSeconds"),
        lb.idle_timeout_seconds.into(),
        1,
        4000,
        " seconds",
    );
    if lb.http_port == 0 {
        f.add(
            &format!("{base}.httpPort"),
            "port 0 is not a listener port",
            help("use 1 to 65535, usually 80"),
        );
    }
    if let Some(https) = stack.https() {
        self::https(f, stack, &https, &format!("{base}.https"));
    }
    health_check(f, &lb.health_check, &format!("{base}.healthCheck"));
    f.range(
        &format!("{base}.stickiness.durationSeconds"),
        lb.stickiness.duration_seconds.into(),
        1,
        604_800,
        " seconds",
    );
    f.range(
        &format!("{base}.deregistrationDelaySeconds"),
        lb.deregistration_delay_seconds.into(),
        0,
        3600,
        " seconds",
    );
}

/// `allowedCidrs`: networks, each once.
fn allowed_cidrs(f: &mut Findings, cidrs: &[String], base: &str) {
    if cidrs.is_empty() {
        f.add(
            &format!("{base}.allowedCidrs"),
            "no client network is allowed",
            help("list at least one CIDR block, e.g. `0.0.0.0/0` for everyone"),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, cidr) in cidrs.iter().enumerate() {
        let path = format!("{base}.allowedCidrs[{i}]");
        match cidr.parse::<IpNet>() {
            Ok(net) if net.trunc() != net => f.add(
                &path,
                format!("`{cidr}` has host bits set"),
                help(format!("write the network address: `{}`", net.trunc())),
            ),
            Ok(net) => {
                if !seen.insert(net) {
                    f.add(&path, format!("`{cidr}` is listed twice"), None);
                }
            }
            Err(_) if cidr.parse::<IpAddr>().is_ok() => f.add(
                &path,
                format!("`{cidr}` is an address, not a CIDR block"),
                help(format!("add a prefix length, e.g. `{cidr}/32`")),
            ),
            Err(_) => f.add(
                &path,
                format!("`{cidr}` is not a CIDR block"),
                help("write an IPv4 or IPv6 network with its prefix length, e.g. `203.0.113.0/24` or `2001:db8::/32`"),
            ),
        }
    }
}

/// `https`: a certificate of the stack's region, a port of its own, an ELB policy, a domain.
fn https(f: &mut Findings, stack: &Stack, https: &crate::model::Https, p: &str) {
    let lb = &stack.spec.load_balancer;
    let field = format!("{p}.certificate");
    match https.certificate_source(stack.spec.dns.is_some()) {
        None => f.add(
            &field,
            "HTTPS has no certificate",
            help("write `certificate: auto` with `spec.dns` (the reconciler requests, validates and renews one), or the ARN of an ACM certificate"),
        ),
        Some(CertificateSource::Auto) if stack.spec.dns.is_none() => f.add(
            &field,
            "`auto` needs `spec.dns`",
            help("name the domain's Route 53 hosted zone in `spec.dns.hostedZone`: the certificate is validated through records the reconciler writes there"),
        ),
        Some(CertificateSource::Auto) => {}
        Some(CertificateSource::Arn(arn)) => match parse_acm_arn(&arn) {
            None => f.add(
                &field,
                format!("`{arn}` is neither `auto` nor an ACM certificate ARN"),
                help("ARNs look like `arn:aws:acm:eu-west-3:123456789012:certificate/1234abcd-...`"),
            ),
            Some(region) if region != stack.spec.region => f.add(
                &field,
                format!("the certificate is in `{region}`, the stack in `{}`", stack.spec.region),
                help("a load balancer can only use an ACM certificate of its own region: request or import it there"),
            ),
            Some(_) => {}
        },
    }
    if https.port == lb.http_port || https.port == 0 {
        f.add(
            &format!("{p}.port"),
            format!("port {} is not usable for HTTPS", https.port),
            help("use a port other than the HTTP listener's, usually 443"),
        );
    }
    if !https.ssl_policy.starts_with("ELBSecurityPolicy-") {
        f.add(
            &format!("{p}.sslPolicy"),
            format!("`{}` is not an ELB security policy", https.ssl_policy),
            help(format!("e.g. `{}`", crate::defaults::ssl_policy())),
        );
    }
    if stack.spec.prestashop.domain.is_none() {
        f.add(
            p,
            "HTTPS needs `spec.prestashop.domain`",
            help("ACM cannot issue a certificate for the load balancer's own `*.elb.amazonaws.com` name: set the shop's domain, covered by the certificate, or remove `https`"),
        );
    }
}

/// `healthCheck`: a path, a matcher, bounds, a timeout shorter than the interval.
fn health_check(f: &mut Findings, hc: &crate::model::HealthCheck, p: &str) {
    if !hc.path.starts_with('/') || hc.path.len() > 1024 {
        f.add(
            &format!("{p}.path"),
            format!("`{}` is not a health-check path", hc.path),
            help("start with `/`, at most 1024 characters"),
        );
    }
    if !valid_matcher(&hc.matcher) {
        f.add(
            &format!("{p}.matcher"),
            format!("`{}` is not an HTTP code matcher", hc.matcher),
            help("codes from 200 to 499: `200`, `200,302` or `200-299`"),
        );
    }
    f.range(
        &format!("{p}.intervalSeconds"),
        hc.interval_seconds.into(),
        5,
        300,
        " seconds",
    );
    f.range(
        &format!("{p}.timeoutSeconds"),
        hc.timeout_seconds.into(),
        2,
        120,
        " seconds",
    );
    if hc.timeout_seconds >= hc.interval_seconds {
        f.add(
            &format!("{p}.timeoutSeconds"),
            format!(
                "timeout {}s is not shorter than the interval {}s",
                hc.timeout_seconds, hc.interval_seconds
            ),
            help("a check must time out before the next one starts"),
        );
    }
    f.range(
        &format!("{p}.healthyThreshold"),
        hc.healthy_threshold.into(),
        2,
        10,
        "",
    );
    f.range(
        &format!("{p}.unhealthyThreshold"),
        hc.unhealthy_threshold.into(),
        2,
        10,
        "",
    );
}

/// The region of an ACM certificate ARN.
pub(super) fn parse_acm_arn(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || !parts[1].starts_with("aws") || parts[2] != "acm" {
        return None;
    }
    let account_ok = parts[4].len() == 12 && parts[4].chars().all(|c| c.is_ascii_digit());
    let id = parts[5].strip_prefix("certificate/")?;
    (account_ok && !id.is_empty() && !parts[3].is_empty()).then_some(parts[3])
}

pub(super) fn valid_matcher(m: &str) -> bool {
    let code = |s: &str| s.parse::<u16>().is_ok_and(|c| (200..=499).contains(&c));
    if let Some((a, b)) = m.split_once('-') {
        return code(a) && code(b) && a < b;
    }
    !m.is_empty() && m.split(',').all(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_forms() {
        assert!(valid_matcher("200"));
        assert!(valid_matcher("200,302"));
        assert!(valid_matcher("200-299"));
        assert!(!valid_matcher("299-200"));
        assert!(!valid_matcher("abc"));
        assert!(!valid_matcher("600"));
        assert!(!valid_matcher(""));
    }

    #[test]
    fn acm_arn_region() {
        assert_eq!(
            parse_acm_arn("arn:aws:acm:eu-west-3:123456789012:certificate/abc-123"),
            Some("eu-west-3")
        );
        assert_eq!(
            parse_acm_arn("arn:aws:acm:eu-west-3:1234:certificate/abc"),
            None
        );
        assert_eq!(
            parse_acm_arn("arn:aws:iam::123456789012:server-certificate/x"),
            None
        );
    }
}
