//! The health verdict of a stack: is the shop serving? Drift asks "is it as declared?"; this
//! asks what a person looking at the console would: a converged stack with no healthy target
//! is `down`.
//!
//! From the run's observation (already made) plus one call per stack, the target group's
//! target health, and a second, the group's recent scaling activities, only while instances
//! are missing. No per-instance call.
//!
//! | verdict    | when |
//! |------------|------|
//! | `down`     | no healthy target; the load balancer, database or file system missing; the database in a state that stops the shop; the security-group chain (internet → ALB → instances → database/EFS) broken |
//! | `degraded` | fewer healthy targets than the group's minimum; fewer instances InService than desired; a launch failed in the last hour; the last instance refresh failed or was cancelled; an Availability Zone of the group without a mount target; the shop's own certificate not issued, its renewal failed, or expiring within 30 days; a name of the shop that does not resolve to the load balancer in its zone |
//! | `healthy`  | none of the above |
//! | `unknown`  | the stack does not exist yet, or could not be observed |

use presta_aws::Aws;
use presta_aws::auto_scaling_group::AutoScalingGroups;
use presta_aws::auto_scaling_group::{self, AutoScalingGroupLive};
use presta_aws::db_instance::DbInstances;
use presta_aws::db_instance::{DbState, DbStatus};
use presta_aws::file_system::FileSystems;
use presta_aws::load_balancer::LoadBalancers;
use presta_aws::mount_target::MountTargets;
use presta_aws::network::Network;
use presta_aws::security_group::SecurityGroups;
use presta_aws::security_group::{SecurityGroupDesired, SecurityGroupLive};
use presta_aws::target_group::TargetGroups;
use presta_aws::target_group::{self, TargetHealth};
use presta_spec::Stack;
use presta_spec::naming::Component;
use serde::Serialize;

use crate::report::RefreshStatus;
use crate::snapshot::Snapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Healthy,
    Degraded,
    Down,
    Unknown,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [
        Verdict::Healthy,
        Verdict::Degraded,
        Verdict::Down,
        Verdict::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Degraded => "degraded",
            Verdict::Down => "down",
            Verdict::Unknown => "unknown",
        }
    }
}

/// One stack's health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    pub verdict: Verdict,
    /// Why it is not healthy, most serious first.
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets_healthy: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets_total: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances_in_service: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances_desired: Option<i32>,
    /// When the shop's own certificate expires (seconds since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_not_after: Option<i64>,
}

impl Health {
    pub fn unknown(reason: impl Into<String>) -> Health {
        Health {
            verdict: Verdict::Unknown,
            reasons: vec![reason.into()],
            targets_healthy: None,
            targets_total: None,
            instances_in_service: None,
            instances_desired: None,
            certificate_not_after: None,
        }
    }
}

/// What the verdict is made of, apart from AWS (so that the rules are a pure function).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub exists: bool,
    pub load_balancer: bool,
    pub targets: Option<TargetHealth>,
    pub group: Option<AutoScalingGroupLive>,
    pub failed_launches: Vec<String>,
    pub refresh: Option<RefreshStatus>,
    pub db_status: Option<DbStatus>,
    pub file_system: bool,
    /// Availability Zones of the group's subnets without an available mount target.
    pub zones_without_mount_target: Vec<String>,
    /// Links of the security-group chain that are missing, in words.
    pub broken_links: Vec<String>,
    /// What is wrong with the shop's front door (certificate, records), in words.
    pub front_door: Vec<String>,
    pub certificate_not_after: Option<i64>,
}

/// The verdict, pure.
pub fn verdict(f: &Facts) -> Health {
    if !f.exists {
        return Health::unknown("the stack does not exist yet");
    }
    let mut down = Vec::new();
    let mut degraded = Vec::new();
    if !f.load_balancer {
        down.push("the load balancer does not exist".to_string());
    }
    match &f.targets {
        None => down.push("the target group does not exist".to_string()),
        Some(t) if t.healthy == 0 => down.push(if t.total == 0 {
            "no target is registered in the target group".to_string()
        } else {
            format!(
                "no healthy target: {} of {} registered are not healthy ({})",
                t.total - t.healthy,
                t.total,
                t.others.join(", ")
            )
        }),
        Some(t) => {
            if let Some(g) = &f.group
                && (t.healthy as i32) < g.min_size
            {
                degraded.push(format!(
                    "{} healthy targets, fewer than the group's minimum of {}",
                    t.healthy, g.min_size
                ));
            }
        }
    }
    match &f.group {
        None => down.push("the Auto Scaling group does not exist".to_string()),
        Some(g) if g.in_service < g.desired_capacity => degraded.push(format!(
            "{} of {} desired instances are InService",
            g.in_service, g.desired_capacity
        )),
        Some(_) => {}
    }
    if let Some(first) = f.failed_launches.first() {
        degraded.push(format!(
            "{} launch(es) failed in the last hour; the latest: {first}",
            f.failed_launches.len()
        ));
    }
    if let Some(r) = &f.refresh
        && matches!(r.status.as_str(), "Failed" | "Cancelled" | "RollbackFailed")
    {
        degraded.push(format!(
            "the instance refresh {} ended {}{}",
            r.id,
            r.status.to_lowercase(),
            r.status_reason
                .as_deref()
                .map(|why| format!(": {why}"))
                .unwrap_or_default()
        ));
    }
    match f.db_status.as_ref().map(|s| (s, s.state())) {
        None => down.push("the database does not exist".to_string()),
        Some((_, DbState::Available | DbState::Serving)) => {}
        Some((s, DbState::Transitional)) => degraded.push(format!("the database is {s}")),
        Some((s, _)) => down.push(format!("the database is {s}")),
    }
    if !f.file_system {
        down.push("the file system does not exist".to_string());
    } else if !f.zones_without_mount_target.is_empty() {
        degraded.push(format!(
            "no mount target in {}: instances there cannot reach the shop's files",
            f.zones_without_mount_target.join(", ")
        ));
    }
    down.extend(f.broken_links.iter().cloned());
    degraded.extend(f.front_door.iter().cloned());
    let verdict = if !down.is_empty() {
        Verdict::Down
    } else if !degraded.is_empty() {
        Verdict::Degraded
    } else {
        Verdict::Healthy
    };
    Health {
        verdict,
        reasons: down.into_iter().chain(degraded).collect(),
        targets_healthy: f.targets.as_ref().map(|t| t.healthy),
        targets_total: f.targets.as_ref().map(|t| t.total),
        instances_in_service: f.group.as_ref().map(|g| g.in_service),
        instances_desired: f.group.as_ref().map(|g| g.desired_capacity),
        certificate_not_after: f.certificate_not_after,
    }
}

/// A certificate expiring within this is `degraded` (ACM renews 60 days before expiry: one
/// still this close has not been renewed).
pub const CERTIFICATE_WARNING_DAYS: i64 = 30;

/// What is wrong with a certificate of the stack's own, in words: not issued, its renewal
/// failed, expired or expiring within [`CERTIFICATE_WARNING_DAYS`]. Pure.
pub fn certificate_findings(
    status: &str,
    renewal: Option<&str>,
    not_after: Option<i64>,
    now: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    if status != "ISSUED" {
        out.push(format!("the certificate is {status} (HTTPS waits for it)"));
    } else if renewal == Some("FAILED") {
        out.push(
            "the certificate's renewal failed: check its validation records in the zone"
                .to_string(),
        );
    }
    if let Some(t) = not_after {
        let days = (t - now).div_euclid(86_400);
        if t <= now {
            out.push("the certificate has expired".to_string());
        } else if days < CERTIFICATE_WARNING_DAYS {
            out.push(format!(
                "the certificate expires in {days} days, under {CERTIFICATE_WARNING_DAYS}: ACM has not renewed it"
            ));
        }
    }
    out
}

/// The shop's front door in words: its own certificate (issued, renewed, not about to expire)
/// and its names (an alias record to the load balancer in the zone). Pure, from the run's
/// observation.
fn front_door(stack: &Stack, snap: &Snapshot, now: i64) -> (Vec<String>, Option<i64>) {
    use presta_aws::certificate::Certificates;
    use presta_aws::dns_record::{Records, Target, key};
    let mut out = Vec::new();
    let mut not_after = None;
    if stack.certificate_source() == Some(presta_spec::model::CertificateSource::Auto) {
        let cert_key = presta_spec::naming::certificate_key(stack.name());
        match snap.get::<Certificates>(&cert_key) {
            None => out.push("the shop's certificate does not exist".to_string()),
            Some(c) => {
                not_after = c.not_after;
                out.extend(certificate_findings(
                    &c.status,
                    c.renewal.as_deref(),
                    c.not_after,
                    now,
                ));
            }
        }
    }
    if stack.spec.dns.is_some() {
        let lb = snap.get::<LoadBalancers>(&stack.resource_name(Component::LoadBalancer));
        if let Some(lb) = lb {
            let want = presta_aws::dns_record::normal(&lb.dns_name);
            for name in stack.host_names() {
                match snap.get::<Records>(&key(&name, "A")).map(|r| &r.target) {
                    Some(Target::Alias { dns_name, .. }) if *dns_name == want => {}
                    Some(other) => out.push(format!(
                        "{name} does not resolve to the load balancer: its A record is {other}"
                    )),
                    None => out.push(format!(
                        "{name} does not resolve to the load balancer: no A record in the zone"
                    )),
                }
            }
        }
    }
    (out, not_after)
}

/// Whether `live` has every rule `desired` asks for.
fn link(
    live: Option<&SecurityGroupLive>,
    desired: impl FnOnce() -> SecurityGroupDesired,
    what: &str,
) -> Option<String> {
    match live {
        None => Some(format!("{what}: the security group does not exist")),
        Some(l) => desired()
            .ingress
            .iter()
            .any(|r| !l.ingress.contains(r))
            .then(|| format!("{what}: a rule of the chain is missing from {}", l.name)),
    }
}

/// The private subnets' zones where the file system has no available mount target.
fn zones_without_mount_target(snap: &Snapshot, net: &Network, fs_id: &str) -> Vec<String> {
    let mut zones: Vec<String> = net
        .private
        .iter()
        .filter(|s| {
            !snap
                .values::<MountTargets>()
                .any(|m| m.file_system_id == fs_id && m.subnet_id == s.id && m.state.is_available())
        })
        .map(|s| s.az.clone())
        .collect();
    zones.sort();
    zones.dedup();
    zones
}

/// The links of the security-group chain (internet → load balancer → instances → database and
/// file system) that are missing or do not allow what they should.
fn broken_links(stack: &Stack, snap: &Snapshot, net: &Network) -> Vec<String> {
    let names = stack.names();
    let sg = |c: Component| snap.get::<SecurityGroups>(&names.name(c));
    let vpc = net.vpc_id.as_str();
    let (alb_sg, app_sg) = (
        sg(Component::AlbSecurityGroup),
        sg(Component::AppSecurityGroup),
    );
    let app_id = app_sg.map(|g| g.id.clone()).unwrap_or_default();
    [
        link(
            alb_sg,
            || SecurityGroupDesired::load_balancer(stack, vpc),
            "internet → load balancer",
        ),
        link(
            app_sg,
            || {
                SecurityGroupDesired::instances(
                    stack,
                    vpc,
                    &alb_sg.map(|g| g.id.clone()).unwrap_or_default(),
                )
            },
            "load balancer → instances",
        ),
        link(
            sg(Component::DbSecurityGroup),
            || SecurityGroupDesired::database(stack, vpc, &app_id),
            "instances → database",
        ),
        link(
            sg(Component::EfsSecurityGroup),
            || SecurityGroupDesired::file_system(stack, vpc, &app_id),
            "instances → file system",
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Observes what the verdict needs beyond `snap` and decides.
pub async fn assess(
    aws: &Aws,
    stack: &Stack,
    snap: &Snapshot,
    net: &Network,
    refresh: Option<&RefreshStatus>,
) -> Health {
    let names = stack.names();
    let tg = snap.get::<TargetGroups>(&names.name(Component::TargetGroup));
    let group = snap.get::<AutoScalingGroups>(&names.name(Component::AutoScalingGroup));
    let lb = snap.get::<LoadBalancers>(&names.name(Component::LoadBalancer));
    let db = snap.get::<DbInstances>(&names.name(Component::DbInstance));
    let fs = snap.get::<FileSystems>(&names.name(Component::FileSystem));
    let exists = group.is_some() || lb.is_some() || db.is_some();
    if !exists {
        return verdict(&Facts::default());
    }
    let (targets, launches) = tokio::join!(
        async {
            match tg {
                Some(t) => target_group::target_health(aws, &t.arn).await.map(Some),
                None => Ok(None),
            }
        },
        async {
            // Failed launches matter while instances are missing: only then are they asked for.
            match group {
                Some(g) if g.in_service < g.desired_capacity => {
                    auto_scaling_group::failed_launches(aws, &g.name, 60).await
                }
                _ => Ok(Vec::new()),
            }
        }
    );
    let targets = match targets {
        Ok(t) => t,
        Err(e) => return Health::unknown(format!("the targets' health could not be read: {e}")),
    };
    let zones_without_mount_target = fs
        .map(|f| zones_without_mount_target(snap, net, &f.id))
        .unwrap_or_default();
    let broken_links = broken_links(stack, snap, net);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (front_door, certificate_not_after) = front_door(stack, snap, now);
    verdict(&Facts {
        exists,
        load_balancer: lb.is_some(),
        targets,
        group: group.cloned(),
        failed_launches: launches.unwrap_or_default(),
        refresh: refresh.cloned(),
        db_status: db.map(|d| d.status.clone()),
        file_system: fs.is_some(),
        zones_without_mount_target,
        broken_links,
        front_door,
        certificate_not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_degraded_when_pending_failing_to_renew_or_close_to_its_end() {
        let now = 1_000_000_000;
        let year = Some(now + 365 * 86_400);
        assert!(certificate_findings("ISSUED", Some("SUCCESS"), year, now).is_empty());
        assert!(certificate_findings("ISSUED", None, year, now).is_empty());
        assert_eq!(
            certificate_findings("PENDING_VALIDATION", None, None, now),
            ["the certificate is PENDING_VALIDATION (HTTPS waits for it)"]
        );
        assert!(
            certificate_findings("ISSUED", Some("FAILED"), year, now)[0].contains("renewal failed")
        );
        assert_eq!(
            certificate_findings("ISSUED", None, Some(now + 29 * 86_400 + 5), now),
            ["the certificate expires in 29 days, under 30: ACM has not renewed it"]
        );
        assert!(certificate_findings("ISSUED", None, Some(now + 30 * 86_400), now).is_empty());
        assert!(
            certificate_findings("EXPIRED", None, Some(now - 1), now)
                .iter()
                .any(|r| r == "the certificate has expired")
        );
    }

    fn group() -> AutoScalingGroupLive {
        AutoScalingGroupLive {
            name: "shop-app".into(),
            arn: String::new(),
            launch_template_id: String::new(),
            launch_template_version: String::new(),
            subnets: Default::default(),
            min_size: 2,
            max_size: 4,
            desired_capacity: 2,
            target_groups: Default::default(),
            health_check_type: "ELB".into(),
            health_check_grace_seconds: 300,
            target_cpu: None,
            tags: Default::default(),
            in_service: 2,
        }
    }

    fn healthy() -> Facts {
        Facts {
            exists: true,
            load_balancer: true,
            targets: Some(TargetHealth {
                healthy: 2,
                total: 2,
                others: Vec::new(),
            }),
            group: Some(group()),
            db_status: Some(DbStatus::new("available")),
            file_system: true,
            ..Facts::default()
        }
    }

    #[test]
    fn a_whole_serving_shop_is_healthy() {
        let h = verdict(&healthy());
        assert_eq!(h.verdict, Verdict::Healthy, "{:?}", h.reasons);
        assert_eq!(h.targets_healthy, Some(2));
    }

    #[test]
    fn no_healthy_target_is_down_whatever_the_drift() {
        let mut f = healthy();
        f.targets = Some(TargetHealth {
            healthy: 0,
            total: 2,
            others: vec!["i-1: unhealthy (Target.FailedHealthChecks)".into()],
        });
        let h = verdict(&f);
        assert_eq!(h.verdict, Verdict::Down);
        assert!(
            h.reasons[0].contains("no healthy target"),
            "{:?}",
            h.reasons
        );
        assert!(h.reasons[0].contains("FailedHealthChecks"));
    }

    #[test]
    fn fewer_targets_than_the_minimum_or_a_missing_zone_is_degraded() {
        let mut f = healthy();
        f.targets.as_mut().unwrap().healthy = 1;
        assert_eq!(verdict(&f).verdict, Verdict::Degraded);
        let mut f = healthy();
        f.zones_without_mount_target = vec!["eu-west-3b".into()];
        let h = verdict(&f);
        assert_eq!(h.verdict, Verdict::Degraded);
        assert!(h.reasons[0].contains("eu-west-3b"));
    }

    #[test]
    fn the_database_state_and_the_chain_decide_too() {
        for (status, v) in [
            ("backing-up", Verdict::Healthy),
            ("rebooting", Verdict::Degraded),
            ("storage-full", Verdict::Down),
            ("incompatible-parameters", Verdict::Down),
            ("stopped", Verdict::Down),
        ] {
            let mut f = healthy();
            f.db_status = Some(DbStatus::new(status));
            assert_eq!(verdict(&f).verdict, v, "{status}");
        }
        let mut f = healthy();
        f.broken_links = vec!["instances → database: a rule of the chain is missing".into()];
        assert_eq!(verdict(&f).verdict, Verdict::Down);
        let mut f = healthy();
        f.refresh = Some(RefreshStatus {
            id: "r-1".into(),
            status: "Cancelled".into(),
            percentage_complete: 10,
            status_reason: None,
            started_by_this_run: false,
        });
        assert_eq!(verdict(&f).verdict, Verdict::Degraded);
        let mut f = healthy();
        f.failed_launches = vec!["InsufficientInstanceCapacity".into()];
        assert!(verdict(&f).reasons[0].contains("InsufficientInstanceCapacity"));
    }

    #[test]
    fn a_stack_not_created_is_unknown() {
        assert_eq!(verdict(&Facts::default()).verdict, Verdict::Unknown);
    }
}
