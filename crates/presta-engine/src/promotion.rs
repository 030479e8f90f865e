//! Staging before production (`spec.promotion`). A change that rolls the instances — the
//! PrestaShop image, the bootstrap's code, the AMI, the instance type: together a *release* —
//! reaches a stack only once the stack it follows has run that same release with a `healthy`
//! verdict for the soak time. Everything else (drift heals, tags, rules, scaling bounds) is
//! never gated.
//!
//! The evidence lives in AWS, not in memory: whoever observes a stack (the daemon, a standby
//! replica, a one-shot `apply`) records on its Auto Scaling group, in the tag
//! [`TAG_RELEASE`], which release it runs, whether it is healthy and since when. The tag is
//! written only when that changes, so a steady stack costs no call; a follower reads it from
//! the observation (same region) or with one `DescribeAutoScalingGroups` (another region, or
//! a followed stack outside this run) only while it has a rolling change to decide.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use presta_aws::auto_scaling_group::{AutoScalingGroupLive, AutoScalingGroups};
use presta_aws::launch_template::{LaunchTemplateLive, TemplateData, bootstrap_values};
use presta_aws::{Aws, AwsError, Driver, Scope};
use presta_spec::Stack;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::health::{Health, Verdict};

/// Tag on a stack's Auto Scaling group: the release it runs and its health since when.
pub const TAG_RELEASE: &str = "presta-reconciler/release";

/// What the instances of a stack run: the values a promotion compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    pub image: String,
    /// 12 hex digits of the bootstrap's code: the script without the stack's values.
    pub bootstrap: String,
    pub ami: String,
    pub instance_type: String,
}

impl Release {
    /// The release a launch template's data describes.
    pub fn of(data: &TemplateData) -> Release {
        let image = bootstrap_values(&data.user_data)
            .remove("IMAGE")
            .unwrap_or_default();
        Release {
            image,
            bootstrap: code_hash(&data.user_data),
            ami: data.image_id.clone(),
            instance_type: data.instance_type.clone(),
        }
    }

    /// What differs from `other` among what a promotion compares, in words (`image a → b`):
    /// the image, the bootstrap's code, and the AMI within one region (AMI ids are regional).
    /// The instance type is not compared: staging is usually smaller than production, and a
    /// change of type alone waits only for the followed stack to run the same software
    /// healthy.
    pub fn differences(&self, other: &Release, same_region: bool) -> Vec<String> {
        let mut out = Vec::new();
        let mut cmp = |what: &str, a: &str, b: &str| {
            if a != b {
                out.push(format!("{what} {b} → {a}"));
            }
        };
        cmp("image", &self.image, &other.image);
        cmp("bootstrap", &self.bootstrap, &other.bootstrap);
        if same_region {
            cmp("AMI", &self.ami, &other.ami);
        }
        out
    }
}

/// The bootstrap's code: the rendered script without its values block (from its first
/// `readonly` assignment to `readonly PRESTA_VALUES=…`), hashed.
fn code_hash(user_data: &str) -> String {
    let mut code = String::new();
    let mut state = 0; // 0 before the values, 1 inside, 2 after
    for line in user_data.lines() {
        match state {
            0 if line.starts_with("readonly ") => state = 1,
            1 if line.starts_with("readonly PRESTA_VALUES=") => state = 2,
            1 => {}
            _ => {
                code.push_str(line);
                code.push('\n');
            }
        }
    }
    let digest = Sha256::digest(code.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// What a stack's group says about the release it runs (the [`TAG_RELEASE`] tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub release: Release,
    /// `healthy`, or the verdict that ended (or prevents) the healthy run.
    pub verdict: String,
    /// Unix seconds: since when the verdict holds for this release.
    pub since: u64,
}

impl Evidence {
    fn healthy(&self) -> bool {
        self.verdict == Verdict::Healthy.as_str()
    }

    /// The tag's value: `key=value` pairs separated by `;` (at most 256 characters).
    pub fn to_tag(&self) -> String {
        let r = &self.release;
        let value = format!(
            "image={};bootstrap={};ami={};type={};verdict={};since={}",
            r.image, r.bootstrap, r.ami, r.instance_type, self.verdict, self.since
        );
        if value.len() <= 256 {
            return value;
        }
        let digest = Sha256::digest(r.image.as_bytes());
        let short: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        value.replacen(
            &format!("image={}", r.image),
            &format!("image=sha256:{short}"),
            1,
        )
    }

    pub fn from_tag(value: &str) -> Option<Evidence> {
        let pairs: BTreeMap<&str, &str> =
            value.split(';').filter_map(|p| p.split_once('=')).collect();
        Some(Evidence {
            release: Release {
                image: pairs.get("image")?.to_string(),
                bootstrap: pairs.get("bootstrap")?.to_string(),
                ami: pairs.get("ami")?.to_string(),
                instance_type: pairs.get("type")?.to_string(),
            },
            verdict: pairs.get("verdict")?.to_string(),
            since: pairs.get("since")?.parse().ok()?,
        })
    }

    fn of_group(group: &AutoScalingGroupLive) -> Option<Evidence> {
        group
            .tags
            .get(TAG_RELEASE)
            .and_then(|v| Evidence::from_tag(v))
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The evidence a stack's group should carry after this observation, when it differs from
/// what it carries: the release its template describes, healthy or not since when. `None`
/// when nothing is to be written (same release and same health as recorded, or a verdict
/// that says nothing: unknown).
pub fn next_evidence(
    recorded: Option<&Evidence>,
    running: &Release,
    health: &Health,
    now: u64,
) -> Option<Evidence> {
    if health.verdict == Verdict::Unknown {
        return None;
    }
    let healthy = health.verdict == Verdict::Healthy;
    if let Some(r) = recorded
        && r.release == *running
        && r.healthy() == healthy
    {
        return None;
    }
    Some(Evidence {
        release: running.clone(),
        verdict: health.verdict.as_str().to_string(),
        since: now,
    })
}

/// Writes the evidence of a stack this run observed (an apply; never a plan): called once
/// the health verdict is known. A group that is rolling (its template changed in this run,
/// or a refresh is in progress) records nothing until it has settled.
pub async fn record(
    aws: &Aws,
    stack: &Stack,
    group: Option<&AutoScalingGroupLive>,
    template: Option<&LaunchTemplateLive>,
    health: &Health,
    rolling: bool,
) -> Result<Option<Evidence>, AwsError> {
    let (Some(group), Some(template)) = (group, template) else {
        return Ok(None);
    };
    if rolling {
        return Ok(None);
    }
    let running = Release::of(&template.data);
    let recorded = Evidence::of_group(group);
    let Some(next) = next_evidence(recorded.as_ref(), &running, health, now_unix()) else {
        return Ok(None);
    };
    AutoScalingGroups
        .put_tag(aws, &group.name, TAG_RELEASE, Some(&next.to_tag()))
        .await?;
    tracing::info!(stack = %stack.name(), release = %next.to_tag(), "promotion evidence recorded");
    Ok(Some(next))
}

/// Why a rolling change waits, for people and for the status API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gated {
    /// The stack followed.
    pub after: String,
    /// In words: what is awaited and how far it is.
    pub reason: String,
    /// The soak asked, in seconds.
    pub soak_seconds: u64,
    /// How long the followed stack has run the release healthy so far, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_for_seconds: Option<u64>,
    /// The release waiting to be promoted.
    pub release: Release,
    /// Approving this hash promotes at once (`apply --approve`, `POST /stacks/{stack}/approve`).
    pub plan_hash: String,
}

/// The decision for a rolling change to `wanted`: `None` promotes it, `Some` gates it.
pub fn decide(
    stack: &Stack,
    wanted: &Release,
    followed: Option<&Evidence>,
    now: u64,
    plan_hash: String,
) -> Option<Gated> {
    let p = stack.spec.promotion.as_ref()?;
    let soak = p.soak_duration();
    let after = &p.after;
    let same_region = p.after_region.as_deref().unwrap_or(&stack.spec.region) == stack.spec.region;
    let mut gated = Gated {
        after: after.clone(),
        reason: String::new(),
        soak_seconds: soak.as_secs(),
        healthy_for_seconds: None,
        release: wanted.clone(),
        plan_hash,
    };
    let describe = describe(wanted);
    gated.reason = match followed {
        None => format!(
            "`{after}` does not run {describe} yet (it has recorded no release: it is recorded once `{after}` is applied and judged healthy)"
        ),
        Some(e) if !wanted.differences(&e.release, same_region).is_empty() => format!(
            "`{after}` does not run {describe} yet (it runs {})",
            describe_short(&e.release)
        ),
        Some(e) if !e.healthy() => format!(
            "`{after}` is {} since {}: the clock restarts when it is healthy again",
            e.verdict,
            clock(e.since)
        ),
        Some(e) => {
            let so_far = now.saturating_sub(e.since);
            if so_far >= soak.as_secs() {
                return None;
            }
            gated.healthy_for_seconds = Some(so_far);
            format!(
                "waiting for `{after}` to run {describe} healthy for {}: {} so far",
                human(soak),
                human(Duration::from_secs(so_far))
            )
        }
    };
    Some(gated)
}

/// Reads the evidence of the stack `stack` follows: from the observation when it is there,
/// else with one call (in the followed stack's region).
pub async fn followed_evidence(
    aws: &Aws,
    stack: &Stack,
    observed: Option<&AutoScalingGroupLive>,
    client: &presta_aws::ClientSettings,
) -> Result<Option<Evidence>, AwsError> {
    let Some(p) = &stack.spec.promotion else {
        return Ok(None);
    };
    if let Some(g) = observed {
        return Ok(Evidence::of_group(g));
    }
    let name = p.followed_group();
    let region = p.after_region.clone().unwrap_or(stack.spec.region.clone());
    let scope = Scope {
        names: vec![name.clone()],
        ..Scope::default()
    };
    let groups = if region == aws.region {
        AutoScalingGroups.observe(aws, &scope).await?
    } else {
        let other = Aws::connect(
            &region,
            client,
            Arc::new(presta_aws::calls::CallStats::default()),
        )
        .await;
        AutoScalingGroups.observe(&other, &scope).await?
    };
    Ok(groups.get(&name).and_then(Evidence::of_group))
}

fn describe(r: &Release) -> String {
    format!(
        "{} (bootstrap {}, {}, {})",
        r.image, r.bootstrap, r.ami, r.instance_type
    )
}

fn describe_short(r: &Release) -> String {
    format!("{} with bootstrap {}", r.image, r.bootstrap)
}

/// `10:42 UTC` (today) or `2026-12-05 10:42 UTC`.
fn clock(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = civil(days as i64);
    let today = now_unix() / 86_400 == days;
    let hm = format!("{:02}:{:02} UTC", secs / 3600, secs % 3600 / 60);
    if today {
        hm
    } else {
        format!("{y:04}-{m:02}-{d:02} {hm}")
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `30 min`, `1 h 30 min`, `45 s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        _ if s % 3600 / 60 == 0 => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(image: &str) -> Release {
        Release {
            image: image.into(),
            bootstrap: "abc123abc123".into(),
            ami: "ami-1".into(),
            instance_type: "t3.small".into(),
        }
    }

    fn health(verdict: Verdict) -> Health {
        let mut h = Health::unknown("test");
        h.verdict = verdict;
        h
    }

    fn promoted_stack(soak: &str) -> Stack {
        let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/demo.yaml");
        let mut stack = presta_spec::load_path(std::path::Path::new(demo))
            .unwrap()
            .remove(0)
            .stack;
        stack.spec.promotion = Some(presta_spec::model::Promotion {
            after: "staging".into(),
            soak: soak.into(),
            checkpoint_pause: "5m".into(),
            after_region: None,
            after_group: None,
        });
        stack
    }

    #[test]
    fn the_code_hash_ignores_the_values_but_not_the_code() {
        let a = "#!/bin/bash\nset -e\nreadonly A='1'\nreadonly B='x\ny'\nreadonly PRESTA_VALUES='A B'\necho hi\n";
        let b = "#!/bin/bash\nset -e\nreadonly A='2'\nreadonly B='z'\nreadonly PRESTA_VALUES='A B'\necho hi\n";
        let c = "#!/bin/bash\nset -e\nreadonly A='1'\nreadonly PRESTA_VALUES='A'\necho bye\n";
        assert_eq!(code_hash(a), code_hash(b));
        assert_ne!(code_hash(a), code_hash(c));
    }

    #[test]
    fn evidence_round_trips_through_its_tag() {
        let e = Evidence {
            release: release("prestashop/prestashop:8.2.7-8.1-apache"),
            verdict: "healthy".into(),
            since: 1_765_000_000,
        };
        assert_eq!(Evidence::from_tag(&e.to_tag()), Some(e.clone()));
        assert!(Evidence::from_tag("image=x;verdict=healthy").is_none());
        let long = Evidence {
            release: release(&format!("registry.example.com/{}:1.2.3", "a".repeat(300))),
            ..e
        };
        assert!(long.to_tag().len() <= 256);
    }

    #[test]
    fn evidence_is_written_only_when_release_or_health_changes() {
        let r = release("img:1");
        let first = next_evidence(None, &r, &health(Verdict::Healthy), 100).unwrap();
        assert_eq!((first.verdict.as_str(), first.since), ("healthy", 100));
        assert_eq!(
            next_evidence(Some(&first), &r, &health(Verdict::Healthy), 200),
            None
        );
        let down = next_evidence(Some(&first), &r, &health(Verdict::Degraded), 300).unwrap();
        assert_eq!((down.verdict.as_str(), down.since), ("degraded", 300));
        // Degraded then down: still not healthy since 300.
        assert_eq!(
            next_evidence(Some(&down), &r, &health(Verdict::Down), 400),
            None
        );
        let again = next_evidence(Some(&down), &r, &health(Verdict::Healthy), 500).unwrap();
        assert_eq!(again.since, 500, "the clock restarts");
        let new = next_evidence(
            Some(&again),
            &release("img:2"),
            &health(Verdict::Healthy),
            600,
        );
        assert_eq!(new.unwrap().since, 600);
        assert_eq!(
            next_evidence(Some(&again), &r, &health(Verdict::Unknown), 700),
            None
        );
    }

    #[test]
    fn the_decision_follows_the_evidence() {
        let stack = promoted_stack("30m");
        let wanted = release("img:2");
        let hash = || "h".to_string();
        let no = decide(&stack, &wanted, None, 1000, hash()).unwrap();
        assert!(no.reason.contains("does not run img:2"), "{}", no.reason);
        let old = Evidence {
            release: release("img:1"),
            verdict: "healthy".into(),
            since: 0,
        };
        let g = decide(&stack, &wanted, Some(&old), 1000, hash()).unwrap();
        assert!(g.reason.contains("it runs img:1"), "{}", g.reason);
        let soaking = Evidence {
            release: wanted.clone(),
            verdict: "healthy".into(),
            since: 1000,
        };
        let g = decide(&stack, &wanted, Some(&soaking), 1000 + 12 * 60, hash()).unwrap();
        assert_eq!(
            g.reason,
            "waiting for `staging` to run img:2 (bootstrap abc123abc123, ami-1, t3.small) healthy for 30 min: 12 min so far"
        );
        assert_eq!(g.healthy_for_seconds, Some(720));
        assert_eq!(
            decide(&stack, &wanted, Some(&soaking), 1000 + 1800, hash()),
            None
        );
        let sick = Evidence {
            verdict: "degraded".into(),
            ..soaking.clone()
        };
        let g = decide(&stack, &wanted, Some(&sick), 1000 + 3600, hash()).unwrap();
        assert!(g.reason.contains("is degraded since"), "{}", g.reason);
        assert!(g.reason.contains("the clock restarts"), "{}", g.reason);
        // Another region: AMI ids differ and do not count.
        let mut far = promoted_stack("30m");
        far.spec.promotion.as_mut().unwrap().after_region = Some("us-east-1".into());
        let other_ami = Evidence {
            release: Release {
                ami: "ami-2".into(),
                ..wanted.clone()
            },
            ..soaking
        };
        assert_eq!(
            decide(&far, &wanted, Some(&other_ami), 1000 + 1800, hash()),
            None
        );
        assert!(decide(&stack, &wanted, Some(&other_ami), 1000 + 1800, hash()).is_some());
    }

    #[test]
    fn clocks_and_durations_read_well() {
        assert_eq!(human(Duration::from_secs(1800)), "30 min");
        assert_eq!(human(Duration::from_secs(5400)), "1 h 30 min");
        assert_eq!(human(Duration::from_secs(7200)), "2 h");
        assert_eq!(human(Duration::from_secs(42)), "42 s");
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_429), (2025, 12, 7));
        assert_eq!(
            clock(20_429 * 86_400 + 10 * 3600 + 42 * 60),
            "2025-12-07 10:42 UTC"
        );
    }
}
