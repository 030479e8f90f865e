//! The certificate a stack requests for itself (`loadBalancer.https.certificate: auto`): an
//! ACM certificate for the domain and `spec.dns.extraNames`, validated through DNS (the
//! validation records are the DNS record kind's, written in the stack's hosted zone), renewed
//! by ACM as long as those records stay. Keyed `<stack>-certificate` (its `Name` tag).
//!
//! Observation: one `ListCertificates` per region; then, for each certificate whose domain is
//! a stack's domain or that a stack's HTTPS listener uses, its tags (`ListTagsForCertificate`)
//! and, for the stacks' own, `DescribeCertificate` (status, expiry, renewal, validation
//! records). A certificate whose names are no longer the stack's is observed under
//! `<stack>-certificate@<id>`: the engine moves the listener to the new one, then deletes it.
//!
//! ACM has no names, so a creation is made idempotent by looking for the stack's tagged
//! certificate first (the request carries the tags: there is no window where it exists
//! untagged).

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_acm::types::{CertificateStatus, Tag, ValidationMethod};
use serde_json::json;

use crate::clients::Aws;
use crate::diff::{FieldDiff, Kind};
use crate::driver::{Driver, Readiness, Scope, absent_is_success};
use crate::error::{AwsError, AwsResultExt};
use crate::iam::allow;
use crate::registry::{Deletion, Iam, Observed, Targets, Teardown};
use crate::tags::Tags;
use presta_spec::Stack;
use presta_spec::naming::{
    MANAGED_BY_VALUE, StackNames, TAG_MANAGED_BY, certificate_key, role_tags,
};

/// The role of the certificate in its tags.
pub const ROLE: &str = "certificate";

/// One validation record ACM asks for: a CNAME `name` → `value`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ValidationRecord {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone)]
pub struct CertificateDesired {
    pub stack: String,
    /// `<stack>-certificate`.
    pub key: String,
    /// The domain (the certificate's subject), then the extra names.
    pub names: Vec<String>,
    pub tags: Tags,
}

impl CertificateDesired {
    /// The stack's own certificate, when it asks for one.
    pub fn for_stack(stack: &Stack) -> Option<Self> {
        let front = stack.names().front?;
        if !front.own_certificate {
            return None;
        }
        let key = certificate_key(stack.name());
        Some(CertificateDesired {
            stack: stack.name().to_string(),
            tags: role_tags(stack.name(), ROLE, &key, &stack.metadata.labels),
            key,
            names: front.names,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CertificateLive {
    pub arn: String,
    pub key: String,
    /// The subject, then the other names.
    pub names: Vec<String>,
    /// `PENDING_VALIDATION`, `ISSUED`, `EXPIRED`, `FAILED`...
    pub status: String,
    /// Why ACM failed it, when it did.
    pub failure: Option<String>,
    /// Seconds since the epoch after which it is no longer valid (issued certificates).
    pub not_after: Option<i64>,
    /// ACM's managed renewal: `PENDING_AUTO_RENEWAL`, `PENDING_VALIDATION`, `SUCCESS`,
    /// `FAILED`, when one ran.
    pub renewal: Option<String>,
    pub validation: Vec<ValidationRecord>,
    pub in_use_by: Vec<String>,
    pub tags: Tags,
}

pub struct Certificates;

impl Kind {
    pub const CERTIFICATE: Kind = Kind::new("certificate");
}

/// What the process remembers of the certificates, so that a steady-state observation reads
/// only the stacks' own certificates (`DescribeCertificate`), not ACM's whole list and the
/// tags of every certificate of their domains again:
/// - their tags by ARN (a deletion reads them afresh: [`Driver::ownership_tags`]);
/// - each region's list (`ListCertificates`: ARN and domain), for [`LIST_KEPT_FOR`]. It is
///   listed again sooner when a certificate it holds is gone (deleted by hand: the stack's
///   certificate is requested anew), when a listener uses one it does not hold, and after the
///   reconciler requests or deletes one.
#[derive(Debug, Default)]
pub struct KnownCertificates {
    tags: crate::tags::TagMemory,
    lists: std::sync::Mutex<BTreeMap<String, (tokio::time::Instant, Vec<Summary>)>>,
}

/// How long a region's certificate list is reused. What only a new list shows is a
/// certificate someone else requested with the reconciler's tags (another process).
pub const LIST_KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(3600);

/// A certificate as `ListCertificates` shows it.
#[derive(Debug, Clone)]
struct Summary {
    arn: String,
    domain: String,
}

impl KnownCertificates {
    fn get(&self, arn: &str) -> Option<Tags> {
        self.tags.get(arn)
    }

    fn put(&self, arn: &str, tags: &Tags) {
        self.tags.put(arn, tags);
    }

    /// `arn` is gone: its tags forgotten, the region's list read again next time.
    fn forget(&self, arn: &str) {
        self.tags.forget(arn);
        self.relist_region_of(arn);
    }

    /// The region of `arn` (`arn:aws:acm:<region>:…`) is listed again next time.
    fn relist_region_of(&self, arn: &str) {
        self.relist(arn.split(':').nth(3).unwrap_or_default());
    }

    /// `region` is listed again next time.
    fn relist(&self, region: &str) {
        self.lists
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(region);
    }

    /// The remembered list of `region`, when it is recent and holds every ARN of `needed`.
    fn list(&self, region: &str, needed: &[String]) -> Option<Vec<Summary>> {
        let lists = self.lists.lock().unwrap_or_else(|e| e.into_inner());
        let (at, list) = lists.get(region)?;
        let fresh = at.elapsed() < LIST_KEPT_FOR;
        let holds = needed.iter().all(|a| list.iter().any(|s| &s.arn == a));
        (fresh && holds).then(|| list.clone())
    }

    fn put_list(&self, region: &str, list: &[Summary]) {
        self.lists.lock().unwrap_or_else(|e| e.into_inner()).insert(
            region.to_string(),
            (tokio::time::Instant::now(), list.to_vec()),
        );
    }
}

/// The certificates of the region: remembered, else listed (and remembered).
async fn summaries(aws: &Aws, needed: &[String]) -> Result<Vec<Summary>, AwsError> {
    if let Some(list) = aws.known_certificates.list(&aws.region, needed) {
        return Ok(list);
    }
    let listed = aws
        .acm
        .list_certificates()
        .set_certificate_statuses(Some(every_status()))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .aws()?;
    let list: Vec<Summary> = listed
        .iter()
        .filter_map(|c| {
            Some(Summary {
                arn: c.certificate_arn()?.to_string(),
                domain: c.domain_name().unwrap_or_default().to_ascii_lowercase(),
            })
        })
        .collect();
    aws.known_certificates.put_list(&aws.region, &list);
    Ok(list)
}

/// The tags of `arn`: remembered, else read (and remembered).
async fn known_tags(aws: &Aws, arn: &str) -> Result<Tags, AwsError> {
    if let Some(t) = aws.known_certificates.get(arn) {
        return Ok(t);
    }
    let tags = tags_of(aws, arn).await?;
    aws.known_certificates.put(arn, &tags);
    Ok(tags)
}

/// Every status a certificate can have: `ListCertificates` without a filter leaves some out.
fn every_status() -> Vec<CertificateStatus> {
    [
        "PENDING_VALIDATION",
        "ISSUED",
        "INACTIVE",
        "EXPIRED",
        "VALIDATION_TIMED_OUT",
        "REVOKED",
        "FAILED",
    ]
    .into_iter()
    .map(CertificateStatus::from)
    .collect()
}

impl Driver for Certificates {
    const KIND: Kind = Kind::CERTIFICATE;
    const IAM: Iam = Iam {
        read: &[
            "acm:ListCertificates",
            "acm:ListTagsForCertificate",
            "acm:DescribeCertificate",
        ],
        create: &["acm:RequestCertificate"],
        change: &["acm:DeleteCertificate"],
        statements: || {
            vec![allow(
                "TagCertificatesOnlyWhileRequestingThem",
                &["acm:AddTagsToCertificate"],
                json!("*"),
                Some(crate::iam::request_tagged()),
            )]
        },
    };
    /// After the HTTPS listener that uses it, before nothing else.
    const TEARDOWN: Teardown = Teardown::new(25, Deletion::Retried);
    /// Observed after the listeners: a certificate a stack's listener uses is read even when
    /// its names are no longer the stack's.
    const PARENT: Option<Kind> = Some(Kind::LISTENER);

    fn scope(targets: &Targets, observed: &Observed) -> Scope {
        Scope {
            fronts: targets
                .stacks
                .iter()
                .filter(|s| s.front.as_ref().is_some_and(|f| f.own_certificate))
                .cloned()
                .collect(),
            parents: observed
                .values::<crate::listener::Listeners>()
                .filter_map(|l| l.certificate_arn.clone())
                .collect(),
            ..Scope::default()
        }
    }

    fn lookup(desired: &CertificateDesired) -> Scope {
        let mut names = StackNames::deterministic(&desired.stack, "");
        names.front = Some(presta_spec::naming::FrontNames {
            hosted_zone: String::new(),
            names: desired.names.clone(),
            own_certificate: true,
        });
        Scope {
            fronts: vec![names],
            ..Scope::default()
        }
    }

    type Desired = CertificateDesired;
    type Live = CertificateLive;

    fn name(desired: &CertificateDesired) -> String {
        desired.key.clone()
    }

    fn id(live: &CertificateLive) -> String {
        live.arn.clone()
    }

    /// Waiting for it: its ARN (see [`Certificates::observe`]).
    fn parents(live: &CertificateLive) -> Vec<String> {
        vec![live.arn.clone()]
    }

    fn tags(live: &CertificateLive) -> Option<&Tags> {
        Some(&live.tags)
    }

    fn readiness(live: &CertificateLive) -> Readiness {
        match live.status.as_str() {
            "ISSUED" => Readiness::Ready,
            "PENDING_VALIDATION" => Readiness::Pending(
                "PENDING_VALIDATION (ACM checks the validation records in the hosted zone)".into(),
            ),
            other => Readiness::Failed(match &live.failure {
                Some(why) => format!("{other}: {why}"),
                None => other.to_string(),
            }),
        }
    }

    async fn observe(
        &self,
        aws: &Aws,
        scope: &Scope,
    ) -> Result<BTreeMap<String, CertificateLive>, AwsError> {
        if scope.fronts.is_empty() && scope.parents.is_empty() {
            return Ok(BTreeMap::new());
        }
        // One certificate looked at again (waited for): by its ARN, under the name asked.
        if let ([name], [arn]) = (scope.names.as_slice(), scope.parents.as_slice()) {
            let tags = tags_of(aws, arn).await?;
            let mut live = describe(aws, arn, tags, "").await?;
            live.key = name.clone();
            return Ok(BTreeMap::from([(name.clone(), live)]));
        }
        let domains: BTreeSet<String> = scope
            .fronts
            .iter()
            .filter_map(|s| s.front.as_ref()?.names.first().cloned())
            .map(|d| d.to_ascii_lowercase())
            .collect();
        let candidates: Vec<String> = summaries(aws, &scope.parents)
            .await?
            .into_iter()
            .filter(|c| domains.contains(&c.domain) || scope.parents.contains(&c.arn))
            .map(|c| c.arn)
            .collect();
        // Certificate key (`<stack>-certificate`) → the names it must have.
        let wanted: BTreeMap<String, Vec<String>> = scope
            .fronts
            .iter()
            .filter_map(|s| Some((certificate_key(&s.stack), s.front.as_ref()?.names.clone())))
            .collect();
        let found = crate::calls::bounded(candidates.iter().map(|arn| async move {
            let tags = match known_tags(aws, arn).await {
                Ok(t) => t,
                Err(e) if e.is_not_found() => {
                    aws.known_certificates.forget(arn);
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            // The reconciler's (its `Name` is the key; the stack tag says whose it is, which
            // the generic ownership check reads).
            let managed = tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE);
            let Some(key) = tags.get("Name").filter(|_| managed).cloned() else {
                return Ok(None);
            };
            match describe(aws, arn, tags, &key).await {
                Ok(live) => Ok(Some(live)),
                Err(e) if e.is_not_found() => {
                    aws.known_certificates.forget(arn);
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        }))
        .await?;
        Ok(assign_keys(found.into_iter().flatten(), &wanted))
    }

    /// Nothing of a certificate is changed in place: other names are another certificate.
    fn diff(&self, _desired: &CertificateDesired, _live: &CertificateLive) -> Vec<FieldDiff> {
        Vec::new()
    }

    async fn create(
        &self,
        aws: &Aws,
        desired: &CertificateDesired,
    ) -> Result<CertificateLive, AwsError> {
        // Requested by an earlier run cut short: the same one, not a second. Looked for in a
        // fresh list: a request whose answer was lost (a timeout) left none in the remembered
        // one.
        aws.known_certificates.relist(&aws.region);
        if let Some(existing) = self
            .observe(aws, &Self::lookup(desired))
            .await?
            .remove(&desired.key)
        {
            return Ok(existing);
        }
        let (domain, others) = desired
            .names
            .split_first()
            .ok_or_else(|| AwsError::unexpected("RequestCertificate", "no domain name"))?;
        let out = aws
            .acm
            .request_certificate()
            .domain_name(domain)
            .set_subject_alternative_names((!others.is_empty()).then(|| others.to_vec()))
            .validation_method(ValidationMethod::Dns)
            .set_tags(Some(
                desired
                    .tags
                    .iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| AwsError::unexpected("RequestCertificate", e.to_string()))?,
            ))
            .send()
            .await
            .aws()?;
        let arn = out.certificate_arn().unwrap_or_default().to_string();
        aws.known_certificates.relist_region_of(&arn);
        let mut live = describe(aws, &arn, desired.tags.clone(), &desired.key).await?;
        live.key = desired.key.clone();
        Ok(live)
    }

    async fn update(
        &self,
        _aws: &Aws,
        _desired: &CertificateDesired,
        live: &CertificateLive,
        _diffs: &[FieldDiff],
    ) -> Result<CertificateLive, AwsError> {
        Ok(live.clone())
    }

    /// Read afresh before a deletion (the observation may have used remembered tags).
    async fn ownership_tags(&self, aws: &Aws, live: &CertificateLive) -> Result<Tags, AwsError> {
        let tags = tags_of(aws, &live.arn).await?;
        aws.known_certificates.put(&live.arn, &tags);
        Ok(tags)
    }

    async fn delete(&self, aws: &Aws, live: &CertificateLive) -> Result<(), AwsError> {
        aws.known_certificates.relist_region_of(&live.arn);
        absent_is_success(
            aws.acm
                .delete_certificate()
                .certificate_arn(&live.arn)
                .send()
                .await
                .map(|_| ())
                .aws(),
        )
    }
}

/// Keys the stacks' certificates (each found under its `Name` tag): the one whose names are
/// the stack's under `<stack>-certificate`, the others (old names, or a second one a raced
/// request made) under `<stack>-certificate@<id>`.
fn assign_keys(
    found: impl IntoIterator<Item = CertificateLive>,
    wanted: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, CertificateLive> {
    let mut out = BTreeMap::new();
    for mut live in found {
        let key = std::mem::take(&mut live.key);
        let stale = |l: &CertificateLive| format!("{key}@{}", short_id(&l.arn));
        let current = wanted
            .get(&key)
            .is_some_and(|names| same_names(names, &live.names));
        if !current {
            live.key = stale(&live);
            out.insert(live.key.clone(), live);
            continue;
        }
        live.key = key.clone();
        // Two current ones (a request raced): the issued one, else the lower ARN, stays
        // current; the other is observed as stale.
        let (kept, mut other) = match out.remove(&key) {
            None => (live, None),
            Some(existing) if prefer(&existing, &live) => (existing, Some(live)),
            Some(existing) => (live, Some(existing)),
        };
        if let Some(o) = other.as_mut() {
            o.key = stale(o);
            out.insert(o.key.clone(), o.clone());
        }
        out.insert(key.clone(), kept);
    }
    out
}

/// Which of two current certificates of a stack stays current: `true` if `kept`.
fn prefer(kept: &CertificateLive, other: &CertificateLive) -> bool {
    match (kept.status == "ISSUED", other.status == "ISSUED") {
        (true, false) => true,
        (false, true) => false,
        _ => kept.arn <= other.arn,
    }
}

fn same_names(wanted: &[String], live: &[String]) -> bool {
    let norm =
        |v: &[String]| -> BTreeSet<String> { v.iter().map(|n| n.to_ascii_lowercase()).collect() };
    wanted.first().map(|d| d.to_ascii_lowercase()) == live.first().map(|d| d.to_ascii_lowercase())
        && norm(wanted) == norm(live)
}

/// The last part of a certificate ARN (`certificate/<id>`).
pub fn short_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

async fn tags_of(aws: &Aws, arn: &str) -> Result<Tags, AwsError> {
    let out = aws
        .acm
        .list_tags_for_certificate()
        .certificate_arn(arn)
        .send()
        .await
        .aws()?;
    Ok(out
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// The certificate `arn`, read in full, under `key`.
async fn describe(
    aws: &Aws,
    arn: &str,
    tags: Tags,
    key: &str,
) -> Result<CertificateLive, AwsError> {
    let out = aws
        .acm
        .describe_certificate()
        .certificate_arn(arn)
        .send()
        .await
        .aws()?;
    let c = out.certificate().ok_or_else(|| {
        AwsError::unexpected("DescribeCertificate", "no certificate in the answer")
    })?;
    let subject = c.domain_name().unwrap_or_default().to_string();
    let mut names = vec![subject.clone()];
    names.extend(
        c.subject_alternative_names()
            .iter()
            .filter(|n| **n != subject)
            .cloned(),
    );
    let mut validation: Vec<ValidationRecord> = c
        .domain_validation_options()
        .iter()
        .filter_map(|o| o.resource_record())
        .map(|r| ValidationRecord {
            name: r.name().trim_end_matches('.').to_ascii_lowercase(),
            value: r.value().trim_end_matches('.').to_string(),
        })
        .collect();
    validation.sort();
    validation.dedup();
    Ok(CertificateLive {
        arn: arn.to_string(),
        key: key.to_string(),
        names,
        status: c
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        failure: c.failure_reason().map(|r| r.as_str().to_string()),
        not_after: c.not_after().map(|t| t.secs()),
        renewal: c
            .renewal_summary()
            .map(|r| r.renewal_status().as_str().to_string()),
        validation,
        in_use_by: c.in_use_by().to_vec(),
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_region_list_is_reused_until_it_is_old_or_misses_a_certificate() {
        let arn =
            |region: &str, id: &str| format!("arn:aws:acm:{region}:123456789012:certificate/{id}");
        let known = KnownCertificates::default();
        assert!(known.list("eu-west-3", &[]).is_none(), "nothing listed yet");
        let one = Summary {
            arn: arn("eu-west-3", "one"),
            domain: "shop.example.com".into(),
        };
        known.put_list("eu-west-3", std::slice::from_ref(&one));
        assert_eq!(known.list("eu-west-3", &[]).unwrap().len(), 1);
        assert!(known.list("eu-west-1", &[]).is_none(), "per region");
        // A listener uses a certificate the list does not hold: listed again.
        assert!(
            known
                .list("eu-west-3", &[arn("eu-west-3", "two")])
                .is_none()
        );
        assert!(
            known
                .list("eu-west-3", std::slice::from_ref(&one.arn))
                .is_some()
        );
        // Old: listed again.
        tokio::time::advance(LIST_KEPT_FOR - std::time::Duration::from_secs(1)).await;
        assert!(known.list("eu-west-3", &[]).is_some());
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        assert!(known.list("eu-west-3", &[]).is_none());
        // A certificate found gone (or requested, or deleted): its region listed again.
        known.put_list("eu-west-3", std::slice::from_ref(&one));
        known.put_list("eu-west-1", &[]);
        known.put(&one.arn, &Tags::new());
        known.forget(&one.arn);
        assert!(known.get(&one.arn).is_none());
        assert!(known.list("eu-west-3", &[]).is_none());
        assert!(known.list("eu-west-1", &[]).is_some(), "other regions kept");
    }

    fn live(arn: &str, status: &str) -> CertificateLive {
        CertificateLive {
            arn: arn.into(),
            key: "shop-certificate".into(),
            names: vec!["shop.example.com".into()],
            status: status.into(),
            failure: None,
            not_after: None,
            renewal: None,
            validation: Vec::new(),
            in_use_by: Vec::new(),
            tags: Tags::new(),
        }
    }

    #[test]
    fn the_current_certificate_is_the_one_with_the_stacks_names_issued_first() {
        let wanted = BTreeMap::from([(
            "shop-certificate".to_string(),
            vec!["shop.example.com".to_string()],
        )]);
        let mut old = live("arn:aws:acm:r:1:certificate/old", "ISSUED");
        old.names = vec!["before.example.com".into()];
        let pending = live("arn:aws:acm:r:1:certificate/a", "PENDING_VALIDATION");
        let issued = live("arn:aws:acm:r:1:certificate/b", "ISSUED");
        let keyed = assign_keys([old, pending, issued], &wanted);
        let keys: Vec<&str> = keyed.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "shop-certificate",
                "shop-certificate@a",
                "shop-certificate@old"
            ]
        );
        assert_eq!(keyed["shop-certificate"].status, "ISSUED");
        assert_eq!(keyed["shop-certificate@a"].key, "shop-certificate@a");
    }

    #[test]
    fn names_compare_as_a_set_with_the_subject_first() {
        let w = vec![
            "shop.example.com".to_string(),
            "www.shop.example.com".to_string(),
        ];
        assert!(same_names(
            &w,
            &["SHOP.example.com".into(), "www.shop.example.com".into()]
        ));
        assert!(!same_names(
            &w,
            &["www.shop.example.com".into(), "shop.example.com".into()]
        ));
        assert!(!same_names(&w, &["shop.example.com".into()]));
    }

    #[test]
    fn an_issued_certificate_stays_current_over_a_pending_one() {
        assert!(prefer(
            &live("b", "ISSUED"),
            &live("a", "PENDING_VALIDATION")
        ));
        assert!(!prefer(
            &live("a", "PENDING_VALIDATION"),
            &live("b", "ISSUED")
        ));
        assert!(prefer(&live("a", "ISSUED"), &live("b", "ISSUED")));
    }

    #[test]
    fn readiness_follows_the_status() {
        assert_eq!(
            Certificates::readiness(&live("a", "ISSUED")),
            Readiness::Ready
        );
        assert!(matches!(
            Certificates::readiness(&live("a", "PENDING_VALIDATION")),
            Readiness::Pending(_)
        ));
        assert!(matches!(
            Certificates::readiness(&live("a", "VALIDATION_TIMED_OUT")),
            Readiness::Failed(_)
        ));
    }
}
