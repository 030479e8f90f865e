//! The shop's front door: its certificate, the listeners, and its records in Route 53.
//!
//! ```text
//! stage 1   the certificate requested (`https.certificate: auto`), not waited for
//! stage 2   its validation records in the hosted zone
//! stage 3   the listeners: HTTPS with the certificate once it is issued and HTTP
//!           redirecting to it (HTTP forwarding until then); alias records to the load balancer
//! last      in an apply, a certificate still being validated is waited for (bounded by
//!           --wait-timeout), then the listeners again; records and certificates of the
//!           stack that nothing declares or uses any more are deleted
//! ```
//!
//! Never a listener without a certificate: while the certificate is pending, HTTP serves the
//! shop and the HTTPS listener waits (an existing one keeps the certificate it has).

use std::collections::BTreeSet;

use presta_aws::certificate::{CertificateDesired, CertificateLive, Certificates};
use presta_aws::diff::UNKNOWN;
use presta_aws::dns_record::{RecordDesired, Records};
use presta_aws::listener::{ListenerDesired, ListenerLive, Listeners};
use presta_aws::listener_rule::{ListenerRuleDesired, ListenerRules};
use presta_aws::load_balancer::LoadBalancerLive;
use presta_aws::target_group::TargetGroupLive;
use presta_aws::{Action, Change, Driver, Kind, Mode, Readiness};
use presta_spec::model::CertificateSource;
use presta_spec::naming::certificate_key;

use super::run::Run;

/// Stage 1: the stack's own certificate, requested if missing.
pub(super) async fn certificate(run: &Run<'_>) -> Option<CertificateLive> {
    let desired = CertificateDesired::for_stack(run.stack)?;
    run.step_unwaited(
        &Certificates,
        &desired,
        run.snap.get::<Certificates>(&desired.key),
    )
    .await
}

/// The stack's certificates as observed, with `current` (as stepped) in place of the
/// observed current one.
fn certificates<'a>(
    run: &'a Run<'_>,
    current: Option<&'a CertificateLive>,
) -> Vec<&'a CertificateLive> {
    let key = certificate_key(run.stack.name());
    let prefix = format!("{key}@");
    run.snap
        .iter::<Certificates>()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, c)| c)
        .chain(current)
        .collect()
}

/// The records the stack's certificates ask for (the current one's and those still in use).
fn validation_desired(run: &Run<'_>, current: Option<&CertificateLive>) -> Vec<RecordDesired> {
    let Some(dns) = &run.stack.spec.dns else {
        return Vec::new();
    };
    let mut out: Vec<RecordDesired> = Vec::new();
    for cert in certificates(run, current) {
        for r in RecordDesired::validation(run.stack.name(), &dns.hosted_zone, &cert.validation) {
            if !out.iter().any(|o| o.key == r.key) {
                out.push(r);
            }
        }
    }
    out
}

/// Stage 2: the validation records, so that ACM issues (and later renews) the certificate.
/// ACM asks for the same record for every certificate of a name in an account: one already
/// there with the right value serves, whoever wrote it, and stays theirs.
pub(super) async fn validation_records(run: &Run<'_>, current: Option<&CertificateLive>) {
    let desired = validation_desired(run, current);
    futures::future::join_all(desired.iter().map(|d| async {
        let live = run.snap.get::<Records>(&d.key);
        match live {
            Some(l)
                if !presta_aws::tags::owned_by(&l.tags, run.stack.name())
                    && l.target == d.target =>
            {
                run.record(
                    Change::new(Kind::DNS_RECORD, d.key.clone(), Action::None)
                        .with_id(Some(Records::id(l)))
                        .with_reason(Some(
                            "the validation record is already in the zone (written by someone else: left as is)"
                                .into(),
                        )),
                );
            }
            _ => {
                run.step(&Records, d, live).await;
            }
        }
    }))
    .await;
}

/// The certificate the HTTPS listener uses: an ARN from the spec, or the stack's own once
/// issued; while a new one of its own is validated, the issued one the listener has.
fn usable_certificate(run: &Run<'_>, current: Option<&CertificateLive>) -> Option<String> {
    match run.stack.certificate_source()? {
        CertificateSource::Arn(arn) => Some(arn),
        CertificateSource::Auto => {
            if let Some(c) = current.filter(|c| Certificates::readiness(c) == Readiness::Ready) {
                return Some(c.arn.clone());
            }
            let https_key = ListenerDesired::https_key(run.stack)?;
            let in_use = run
                .snap
                .get::<Listeners>(&https_key)?
                .certificate_arn
                .clone()?;
            certificates(run, None)
                .into_iter()
                .find(|c| c.arn == in_use && c.status == "ISSUED")
                .map(|c| c.arn.clone())
        }
    }
}

/// Why the HTTPS listener waits, when the stack's certificate is not issued yet.
fn pending_reason(current: Option<&CertificateLive>) -> String {
    match current.map(Certificates::readiness) {
        Some(Readiness::Pending(status)) => format!("the certificate ({status})"),
        Some(Readiness::Failed(why)) => format!("the certificate, which ACM failed: {why}"),
        _ => "the certificate".to_string(),
    }
}

/// Stage 3: the listeners (with the certificate if it can be used now) and the alias records.
pub(super) async fn listeners_and_records(
    run: &Run<'_>,
    lb: Option<&LoadBalancerLive>,
    tg: Option<&TargetGroupLive>,
    current: Option<&CertificateLive>,
) {
    let cert = usable_certificate(run, current);
    tokio::join!(
        listeners(run, lb, tg, cert.as_deref(), current, None),
        aliases(run, lb),
    );
}

/// The last step, after the rest of the stack: a pending certificate waited for in an apply,
/// then the listeners moved to it; what the stack no longer declares or uses, deleted.
/// Returns whether HTTPS serves the shop at the end of the run (or would, in a plan), and
/// the stack's own certificate as last seen.
pub(super) async fn finish(
    run: &Run<'_>,
    lb: Option<&LoadBalancerLive>,
    tg: Option<&TargetGroupLive>,
    current: Option<&CertificateLive>,
) -> (bool, Option<CertificateLive>) {
    let mut cert_arn = usable_certificate(run, current);
    let mut last_seen = current.cloned();
    if run.mode == Mode::Apply
        && let Some(c) = current
        && matches!(Certificates::readiness(c), Readiness::Pending(_))
        && cert_arn.as_deref() != Some(c.arn.as_str())
    {
        // Looked at again first: its validation records were written since stage 1.
        let scope = presta_aws::Scope {
            names: vec![c.key.clone()],
            parents: vec![c.arn.clone()],
            ..presta_aws::Scope::default()
        };
        let latest = match Certificates.observe(run.aws, &scope).await {
            Ok(mut found) => found.remove(&c.key).unwrap_or_else(|| c.clone()),
            Err(_) => c.clone(),
        };
        match crate::wait::wait_ready(
            &Certificates,
            run.aws,
            &c.key,
            latest,
            run.settings,
            run.stack.name(),
        )
        .await
        {
            Ok(issued) => {
                cert_arn = Some(issued.arn.clone());
                last_seen = Some(issued.clone());
                // The listeners as stage 3 left them (created or changed in this run).
                let now = match lb {
                    Some(l) => Listeners
                        .observe(run.aws, &presta_aws::Scope::under(vec![l.arn.clone()]))
                        .await
                        .ok(),
                    None => None,
                };
                listeners(
                    run,
                    lb,
                    tg,
                    cert_arn.as_deref(),
                    Some(&issued),
                    now.as_ref(),
                )
                .await;
            }
            Err(why) => {
                if let Some(key) = ListenerDesired::https_key(run.stack) {
                    run.record_again(
                        Change::new(Kind::LISTENER, key, Action::Waiting)
                            .with_reason(Some(format!("waits for the certificate: {why}"))),
                    );
                }
            }
        }
    }
    prune_records(run, current).await;
    prune_certificates(run, cert_arn.as_deref()).await;
    (cert_arn.is_some() && lb.is_some(), last_seen)
}

async fn listeners(
    run: &Run<'_>,
    lb: Option<&LoadBalancerLive>,
    tg: Option<&TargetGroupLive>,
    cert: Option<&str>,
    current: Option<&CertificateLive>,
    again: Option<&std::collections::BTreeMap<String, presta_aws::listener::ListenerLive>>,
) {
    let mut missing = Vec::new();
    let lb_arn = run.need(lb.map(|l| l.arn.clone()), "the load balancer", &mut missing);
    let tg_arn = run.need(tg.map(|t| t.arn.clone()), "the target group", &mut missing);
    let desired = ListenerDesired::for_stack(run.stack, &lb_arn, &tg_arn, cert);
    let https_key = ListenerDesired::https_key(run.stack);
    if run.blocked_by_missing(&missing) {
        for d in &desired {
            run.waiting(Kind::LISTENER, d.key.clone(), &missing);
        }
        return;
    }
    let stepped = futures::future::join_all(desired.iter().map(|d| async {
        match again {
            Some(now) => run.step_again(&Listeners, d, now.get(&d.key)).await,
            None => {
                run.step(&Listeners, d, run.snap.get::<Listeners>(&d.key))
                    .await
            }
        }
    }))
    .await;
    if again.is_none()
        && cert.is_none()
        && let Some(key) = &https_key
    {
        run.waiting(Kind::LISTENER, key.clone(), &[pending_reason(current)]);
    }
    if let Some(i) = desired
        .iter()
        .position(|d| Some(&d.key) == https_key.as_ref())
    {
        rules(run, stepped[i].as_ref(), desired[i].port, again.is_some()).await;
    } else if let Some(h) = run.stack.https()
        && again.is_none()
    {
        // No HTTPS listener yet (its certificate is pending): its rules wait with it.
        for d in ListenerRuleDesired::for_stack(run.stack, UNKNOWN, h.port) {
            run.waiting(Kind::LISTENER_RULE, d.key, &["the HTTPS listener".into()]);
        }
    }
    // Listeners nobody declared (a port opened by hand) are removed: they hold no data. The
    // declared HTTPS port is kept while its certificate is pending.
    let mut wanted: BTreeSet<String> = desired.iter().map(|d| d.key.clone()).collect();
    wanted.extend(https_key);
    let Some(lb) = lb else { return };
    if again.is_some() {
        return;
    }
    for extra in run
        .snap
        .values::<Listeners>()
        .filter(|l| l.load_balancer_arn == lb.arn && !wanted.contains(&l.key))
    {
        run.prune(&Listeners, &extra.key, extra, "not declared")
            .await;
    }
}

/// The HTTPS listener's rules: each extra name redirected to the domain. Created one after
/// the other (each takes the lowest free priority); the stack's rules nobody declares any
/// more are deleted, and rules it did not create are left alone. `again`: the listener was
/// stepped a second time in this run (its certificate just issued), its rules are read afresh.
async fn rules(run: &Run<'_>, https: Option<&ListenerLive>, port: u16, again: bool) {
    let mut missing = Vec::new();
    let arn = run.need(
        https.map(|l| l.arn.clone()),
        "the HTTPS listener",
        &mut missing,
    );
    let desired = ListenerRuleDesired::for_stack(run.stack, &arn, port);
    if run.blocked_by_missing(&missing) {
        for d in &desired {
            run.waiting(Kind::LISTENER_RULE, d.key.clone(), &missing);
        }
        return;
    }
    let fresh = match (again, https) {
        (true, Some(l)) => ListenerRules
            .observe(run.aws, &ListenerRules::lookup_listener(&l.arn, port))
            .await
            .ok(),
        _ => None,
    };
    let live = |key: &str| match &fresh {
        Some(now) => now.get(key),
        None => run.snap.get::<ListenerRules>(key),
    };
    for d in &desired {
        if again {
            run.step_again(&ListenerRules, d, live(&d.key)).await;
        } else {
            run.step(&ListenerRules, d, live(&d.key)).await;
        }
    }
    let (Some(listener), false) = (https, again) else {
        return;
    };
    // Only the stack's own: a rule someone else put on the listener is left alone.
    let wanted: BTreeSet<&str> = desired.iter().map(|d| d.key.as_str()).collect();
    for extra in run.snap.values::<ListenerRules>().filter(|r| {
        r.listener_arn == listener.arn
            && !wanted.contains(r.key.as_str())
            && presta_aws::tags::owned_by(&r.tags, run.stack.name())
    }) {
        run.prune(&ListenerRules, &extra.key, extra, "not declared")
            .await;
    }
}

/// The alias records (A and AAAA) of each of the shop's names, to the load balancer.
fn aliases_desired(run: &Run<'_>, lb: Option<&LoadBalancerLive>) -> Option<Vec<RecordDesired>> {
    let dns = run.stack.spec.dns.as_ref()?;
    let (dns_name, zone_id) = match lb {
        Some(l) => (l.dns_name.clone(), l.zone_id.clone()),
        None => (
            presta_aws::diff::UNKNOWN.to_string(),
            presta_aws::diff::UNKNOWN.to_string(),
        ),
    };
    Some(RecordDesired::aliases(
        run.stack.name(),
        &dns.hosted_zone,
        &run.stack.host_names(),
        &dns_name,
        &zone_id,
    ))
}

async fn aliases(run: &Run<'_>, lb: Option<&LoadBalancerLive>) {
    let Some(desired) = aliases_desired(run, lb) else {
        return;
    };
    if lb.is_none() && run.mode == Mode::Apply {
        for d in &desired {
            run.waiting(
                Kind::DNS_RECORD,
                d.key.clone(),
                &["the load balancer".into()],
            );
        }
        return;
    }
    futures::future::join_all(desired.iter().map(|d| async {
        let live = run.snap.get::<Records>(&d.key);
        match live {
            // Its ownership record deleted by hand, the record itself still pointing at the
            // stack's own load balancer: the stack's, its ownership written again.
            Some(l) if l.tags.is_empty() && l.target == d.target => {
                reclaim(run, d, l).await;
            }
            _ => {
                run.step(&Records, d, live).await;
            }
        }
    }))
    .await;
}

/// Writes the ownership record of an alias record that points at the stack's load balancer
/// but has lost it (no other stack's ownership is taken: only records without any).
async fn reclaim(
    run: &Run<'_>,
    desired: &RecordDesired,
    live: &presta_aws::dns_record::RecordLive,
) {
    let mut change = Change::new(Kind::DNS_RECORD, desired.key.clone(), Action::Update)
        .with_id(Some(Records::id(live)))
        .with_reason(Some(
            "its ownership record was missing; the record points at the stack's load balancer: the ownership record is written again"
                .into(),
        ));
    if run.mode == Mode::Apply
        && let Err(e) = Records.update(run.aws, desired, live, &[]).await
    {
        change = Change::new(Kind::DNS_RECORD, desired.key.clone(), Action::Failed)
            .with_id(Some(Records::id(live)))
            .with_reason(Some(e.to_string()))
            .with_failure(&e);
    }
    run.record(change);
}

/// The stack's records that nothing declares any more (a name removed, a certificate's old
/// validation record): deleted. Records of others are never candidates.
async fn prune_records(run: &Run<'_>, current: Option<&CertificateLive>) {
    let mut wanted: BTreeSet<String> = validation_desired(run, current)
        .into_iter()
        .map(|d| d.key)
        .collect();
    wanted.extend(
        aliases_desired(run, None)
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.key),
    );
    let stack = run.stack.name();
    for (key, live) in run.snap.iter::<Records>() {
        let ours = presta_aws::tags::owned_by(&live.tags, stack);
        if ours && !wanted.contains(key) {
            run.prune(&Records, key, live, "no longer one of the shop's records")
                .await;
        }
    }
}

/// The stack's certificates that no listener uses any more and that are not the current
/// one: deleted (a domain changed, `certificate` switched to an ARN).
async fn prune_certificates(run: &Run<'_>, in_use: Option<&str>) {
    let current_key = certificate_key(run.stack.name());
    let keeps_current = run.stack.certificate_source() == Some(CertificateSource::Auto);
    let used_by_listeners: BTreeSet<&str> = run
        .snap
        .values::<Listeners>()
        .filter_map(|l| l.certificate_arn.as_deref())
        .collect();
    for (key, cert) in run.snap.iter::<Certificates>() {
        if !presta_aws::tags::owned_by(&cert.tags, run.stack.name()) {
            continue;
        }
        let wanted = (keeps_current && *key == current_key) || in_use == Some(cert.arn.as_str());
        // A listener still on it (the move did not happen in this run): kept for now.
        let still_used = in_use.is_none() && used_by_listeners.contains(cert.arn.as_str());
        if !wanted && !still_used {
            run.prune(
                &Certificates,
                key,
                cert,
                "no longer the certificate of the shop",
            )
            .await;
        }
    }
}

/// Where the shop answers, for the outputs and the status page.
pub(super) fn shop_url(
    run: &Run<'_>,
    lb: Option<&LoadBalancerLive>,
    https: bool,
) -> Option<String> {
    match (&run.stack.spec.prestashop.domain, lb) {
        (Some(d), _) if https => Some(format!("https://{d}/")),
        (Some(d), _) => Some(format!("http://{d}/")),
        (None, Some(l)) => Some(format!("http://{}/", l.dns_name)),
        (None, None) => None,
    }
}

/// `ISSUED, expires in 364 days`, `PENDING_VALIDATION`.
pub(super) fn certificate_summary(c: &CertificateLive) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    match c.not_after {
        Some(t) if c.status == "ISSUED" => {
            format!("ISSUED, expires in {} days", (t - now).div_euclid(86_400))
        }
        _ => c.status.clone(),
    }
}
