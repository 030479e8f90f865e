//! The shop's records in its Route 53 hosted zone (`spec.dns`): an alias A and AAAA record
//! for each of its names pointing at the load balancer, and the CNAME records that validate
//! (and later renew) its certificate. Keyed `<name> <type>`.
//!
//! **Ownership.** Route 53 records carry no tags. As external-dns does with its TXT registry,
//! each record the reconciler writes has a TXT record beside it, `_presta-<type>.<name>`,
//! holding `"heritage=presta-reconciler,presta-reconciler/stack=<stack>"`, written and
//! deleted in the same change batch as the record (Route 53 applies a batch atomically). A
//! record without that TXT record is someone else's: it is reported and never changed or
//! deleted, whatever its name. Other records of the zone are never looked at twice.
//!
//! Observation: the zone's id from its name (`ListHostedZonesByName`, once per zone and
//! process, unless `spec.dns.hostedZone` is an id), then one `ListResourceRecordSets` per zone
//! (paginated), kept to the stacks' names and the names under them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use aws_sdk_route53::types::{ChangeAction, RrType};
use serde_json::json;

use crate::clients::Aws;
use crate::diff::{Diffs, FieldDiff, Kind};
use crate::driver::{Driver, Scope, absent_is_success};
use crate::error::{AwsError, AwsResultExt};
use crate::iam::allow;
use crate::registry::{Deletion, Iam, Observed, Targets, Teardown};
use crate::tags::Tags;
use batch::{change, owner_set, record_set, submit, txt_set};
use fields::*;

mod batch;
use presta_spec::naming::{MANAGED_BY_VALUE, TAG_MANAGED_BY, TAG_STACK};

/// The fields this kind manages.
pub mod fields {
    use crate::diff::Field;

    pub const TARGET: Field = Field("target");
}

/// Time to live of the validation records (alias records have none of their own).
pub const VALIDATION_TTL: i64 = 300;

/// What a record answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An alias to an AWS resource (the load balancer): its DNS name and hosted zone id.
    Alias { dns_name: String, zone_id: String },
    /// Plain values (the validation CNAME).
    Values { ttl: i64, values: Vec<String> },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Alias { dns_name, .. } => write!(f, "alias to {dns_name}"),
            Target::Values { values, .. } => f.write_str(&values.join(", ")),
        }
    }
}

impl serde::Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone)]
pub struct RecordDesired {
    /// `<name> <type>`.
    pub key: String,
    pub stack: String,
    /// `spec.dns.hostedZone`: a name or an id.
    pub zone: String,
    /// Lower case, without the final dot.
    pub name: String,
    /// `A`, `AAAA` or `CNAME`.
    pub rtype: String,
    pub target: Target,
}

impl RecordDesired {
    /// The alias records (A and AAAA) of each of the stack's names, to the load balancer
    /// `dns_name` in its hosted zone `lb_zone_id`.
    pub fn aliases(
        stack: &str,
        zone: &str,
        names: &[String],
        dns_name: &str,
        lb_zone_id: &str,
    ) -> Vec<RecordDesired> {
        names
            .iter()
            .flat_map(|n| ["A", "AAAA"].map(|t| (n, t)))
            .map(|(name, rtype)| RecordDesired {
                key: key(name, rtype),
                stack: stack.to_string(),
                zone: zone.to_string(),
                name: normal(name),
                rtype: rtype.to_string(),
                target: Target::Alias {
                    dns_name: normal(dns_name),
                    zone_id: lb_zone_id.to_string(),
                },
            })
            .collect()
    }

    /// The validation records a certificate asks for.
    pub fn validation(
        stack: &str,
        zone: &str,
        records: &[crate::certificate::ValidationRecord],
    ) -> Vec<RecordDesired> {
        records
            .iter()
            .map(|r| RecordDesired {
                key: key(&r.name, "CNAME"),
                stack: stack.to_string(),
                zone: zone.to_string(),
                name: normal(&r.name),
                rtype: "CNAME".into(),
                target: Target::Values {
                    ttl: VALIDATION_TTL,
                    values: vec![normal(&r.value)],
                },
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordLive {
    pub key: String,
    pub zone_id: String,
    pub name: String,
    pub rtype: String,
    pub target: Target,
    /// The ownership TXT record's value, when there is one.
    pub owner_txt: Option<String>,
    /// The ownership the TXT record states, as tags (empty: not the reconciler's).
    pub tags: Tags,
}

/// `<name> <type>`, the key of a record.
pub fn key(name: &str, rtype: &str) -> String {
    format!("{} {rtype}", normal(name))
}

/// Lower case, without the final dot.
pub fn normal(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The name of the TXT record that says who owns the record `name` of type `rtype`.
pub fn owner_name(name: &str, rtype: &str) -> String {
    format!("_presta-{}.{}", rtype.to_ascii_lowercase(), normal(name))
}

/// The TXT value (quoted, as Route 53 stores it) that says `stack` owns a record.
pub fn owner_value(stack: &str) -> String {
    format!("\"heritage={MANAGED_BY_VALUE},{MANAGED_BY_VALUE}/stack={stack}\"")
}

/// The stack an ownership TXT value names, if it is the reconciler's.
pub fn owner_of(txt: &str) -> Option<String> {
    let inner = txt.trim_matches('"');
    let mut heritage = false;
    let mut stack = None;
    for part in inner.split(',') {
        match part.split_once('=') {
            Some(("heritage", v)) if v == MANAGED_BY_VALUE => heritage = true,
            Some((k, v)) if k == format!("{MANAGED_BY_VALUE}/stack") => stack = Some(v.to_string()),
            _ => {}
        }
    }
    stack.filter(|_| heritage)
}

/// Hosted zone ids by zone name, kept for the process: a zone's id does not change, and a
/// zone deleted since is forgotten at its first `NoSuchHostedZone`.
#[derive(Debug, Default)]
pub struct ZoneIds(Mutex<BTreeMap<String, String>>);

impl ZoneIds {
    fn get(&self, zone: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(zone)
            .cloned()
    }

    fn put(&self, zone: &str, id: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(zone.to_string(), id.to_string());
    }

    fn forget_id(&self, id: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, v| v != id);
    }
}

/// The id (`Z…`) of the hosted zone `zone` (a name or an id).
pub async fn zone_id(aws: &Aws, zone: &str) -> Result<String, AwsError> {
    let id = zone.strip_prefix("/hostedzone/").unwrap_or(zone);
    if presta_spec::validate::zone_id_like(id) {
        return Ok(id.to_string());
    }
    let name = normal(zone);
    if let Some(id) = aws.zones.get(&name) {
        return Ok(id);
    }
    let out = aws
        .route53
        .list_hosted_zones_by_name()
        .dns_name(&name)
        .max_items(10)
        .send()
        .await
        .aws()?;
    let found = out
        .hosted_zones()
        .iter()
        .filter(|z| normal(z.name()) == name)
        // A public zone: the shop's names are resolved from the internet.
        .find(|z| !z.config().is_some_and(|c| c.private_zone()))
        .map(|z| z.id().trim_start_matches("/hostedzone/").to_string())
        .ok_or_else(|| {
            AwsError::not_found(
                "ListHostedZonesByName",
                format!("no public hosted zone named `{name}` in this account: create it, or name an existing one in spec.dns.hostedZone"),
            )
        })?;
    aws.zones.put(&name, &found);
    Ok(found)
}

pub struct Records;

/// Every hosted zone, in the reference policy (`iam-policy -f` narrows it to the stacks').
pub const ZONES_ANY: &str = "arn:aws:route53:::hostedzone/*";

impl Kind {
    pub const DNS_RECORD: Kind = Kind::new("dns_record");
}

impl Driver for Records {
    const KIND: Kind = Kind::DNS_RECORD;
    const IAM: Iam = Iam {
        read: &[
            "route53:ListHostedZonesByName",
            "route53:ListResourceRecordSets",
        ],
        create: &[],
        change: &[],
        statements: || {
            vec![allow(
                // Route 53 has no tags on records: `iam-policy -f` narrows this to the zones
                // the stacks declare.
                "ChangeRecordsOnlyInTheStacksHostedZones",
                &["route53:ChangeResourceRecordSets"],
                json!(ZONES_ANY),
                None,
            )]
        },
    };
    /// First at `destroy`: the shop's names stop pointing at it before anything goes.
    const TEARDOWN: Teardown = Teardown::new(5, Deletion::Plain);

    /// Observed after the certificates: the names of a stack's certificates (an old one
    /// still on the listener after a domain change) are looked at too, so that the records
    /// of the names it had are found, and removed once nothing declares them.
    const PARENT: Option<Kind> = Some(Kind::CERTIFICATE);

    fn scope(targets: &Targets, observed: &Observed) -> Scope {
        let certificates: Vec<&crate::certificate::CertificateLive> = observed
            .values::<crate::certificate::Certificates>()
            .collect();
        Scope {
            fronts: targets
                .stacks
                .iter()
                .filter(|s| s.front.is_some())
                .cloned()
                .map(|mut s| {
                    let stack = s.stack.clone();
                    if let Some(front) = s.front.as_mut() {
                        for c in certificates
                            .iter()
                            .filter(|c| crate::tags::owned_by(&c.tags, &stack))
                        {
                            for n in &c.names {
                                if !front.names.contains(n) {
                                    front.names.push(n.clone());
                                }
                            }
                        }
                    }
                    s
                })
                .collect(),
            ..Scope::default()
        }
    }

    fn lookup(desired: &RecordDesired) -> Scope {
        let mut names = presta_spec::naming::StackNames::deterministic(&desired.stack, "");
        names.front = Some(presta_spec::naming::FrontNames {
            hosted_zone: desired.zone.clone(),
            names: vec![desired.name.clone()],
            own_certificate: false,
        });
        Scope {
            fronts: vec![names],
            ..Scope::default()
        }
    }

    type Desired = RecordDesired;
    type Live = RecordLive;

    fn name(desired: &RecordDesired) -> String {
        desired.key.clone()
    }

    fn id(live: &RecordLive) -> String {
        live.key.clone()
    }

    fn tags(live: &RecordLive) -> Option<&Tags> {
        Some(&live.tags)
    }

    async fn observe(
        &self,
        aws: &Aws,
        scope: &Scope,
    ) -> Result<BTreeMap<String, RecordLive>, AwsError> {
        // Zone → the names whose records (and the records under them) are the stacks'.
        let mut zones: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for s in &scope.fronts {
            if let Some(front) = &s.front {
                zones
                    .entry(front.hosted_zone.clone())
                    .or_default()
                    .extend(front.names.iter().map(|n| normal(n)));
            }
        }
        // A zone that does not exist has no records: the stack's steps say so when they
        // write (one stack's missing zone does not fail the observation of the others).
        let per_zone = crate::calls::bounded(zones.iter().map(|(zone, names)| async move {
            let id = match zone_id(aws, zone).await {
                Ok(id) => id,
                Err(e) if e.is_not_found() => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            match list(aws, &id, names).await {
                Err(e) if e.is_not_found() => {
                    aws.zones.forget_id(&id);
                    Ok(Vec::new())
                }
                other => other,
            }
        }))
        .await?;
        Ok(per_zone.into_iter().flatten().collect())
    }

    fn diff(&self, desired: &RecordDesired, live: &RecordLive) -> Vec<FieldDiff> {
        let mut d = Diffs::new();
        d.field(TARGET, &desired.target, &live.target);
        d.finish()
    }

    async fn create(&self, aws: &Aws, desired: &RecordDesired) -> Result<RecordLive, AwsError> {
        let zone_id = zone_id(aws, &desired.zone).await?;
        let changes = vec![
            change(ChangeAction::Create, &record_set(desired)?)?,
            change(ChangeAction::Upsert, &owner_set(desired)?)?,
        ];
        match submit(aws, &zone_id, changes, "ChangeResourceRecordSets").await {
            // Our own change, applied though its answer was lost (the SDK sent it again).
            Err(e)
                if e.has_code("InvalidChangeBatch")
                    && e.message.contains("already exists")
                    && self
                        .observe(aws, &Self::lookup(desired))
                        .await
                        .ok()
                        .and_then(|mut m| m.remove(&desired.key))
                        .is_some_and(|l| {
                            crate::tags::owned_by(&l.tags, &desired.stack)
                                && l.target == desired.target
                        }) =>
            {
                Ok(live_from(desired, zone_id))
            }
            // Written meanwhile by someone else: theirs, never overwritten (the next
            // observation reports it).
            Err(mut e)
                if e.has_code("InvalidChangeBatch") && e.message.contains("already exists") =>
            {
                e.class = crate::ErrorClass::Refused;
                e.message = format!(
                    "{} (a record of that name and type that the reconciler did not write: it is left alone)",
                    e.message
                );
                Err(e)
            }
            Err(e) => Err(e),
            Ok(()) => Ok(live_from(desired, zone_id)),
        }
    }

    async fn update(
        &self,
        aws: &Aws,
        desired: &RecordDesired,
        live: &RecordLive,
        _diffs: &[FieldDiff],
    ) -> Result<RecordLive, AwsError> {
        let changes = vec![
            change(ChangeAction::Upsert, &record_set(desired)?)?,
            change(ChangeAction::Upsert, &owner_set(desired)?)?,
        ];
        submit(aws, &live.zone_id, changes, "ChangeResourceRecordSets").await?;
        Ok(live_from(desired, live.zone_id.clone()))
    }

    /// Deletes the record and its ownership record together, with their current values (Route
    /// 53 deletes only an exact match).
    async fn delete(&self, aws: &Aws, live: &RecordLive) -> Result<(), AwsError> {
        let stack = live.tags.get(TAG_STACK).cloned().unwrap_or_default();
        let as_desired = RecordDesired {
            key: live.key.clone(),
            stack,
            zone: live.zone_id.clone(),
            name: live.name.clone(),
            rtype: live.rtype.clone(),
            target: live.target.clone(),
        };
        let mut changes = vec![change(ChangeAction::Delete, &record_set(&as_desired)?)?];
        if let Some(txt) = &live.owner_txt {
            changes.push(change(
                ChangeAction::Delete,
                &txt_set(&owner_name(&live.name, &live.rtype), txt)?,
            )?);
        }
        match submit(aws, &live.zone_id, changes, "ChangeResourceRecordSets").await {
            // Gone already (Route 53 says so in a change batch error).
            Err(e) if e.has_code("InvalidChangeBatch") && e.message.contains("not found") => Ok(()),
            other => absent_is_success(other),
        }
    }
}

fn live_from(desired: &RecordDesired, zone_id: String) -> RecordLive {
    RecordLive {
        key: desired.key.clone(),
        zone_id,
        name: desired.name.clone(),
        rtype: desired.rtype.clone(),
        target: desired.target.clone(),
        owner_txt: Some(owner_value(&desired.stack)),
        tags: owner_tags(&desired.stack),
    }
}

fn owner_tags(stack: &str) -> Tags {
    Tags::from([
        (TAG_MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
        (TAG_STACK.to_string(), stack.to_string()),
    ])
}

/// Whether `name` is one of `names` or under one of them.
fn within(name: &str, names: &BTreeSet<String>) -> bool {
    names
        .iter()
        .any(|n| name == n || name.ends_with(&format!(".{n}")))
}

/// The records of zone `id` at or under `names`, with their ownership read from the TXT
/// records beside them.
async fn list(
    aws: &Aws,
    id: &str,
    names: &BTreeSet<String>,
) -> Result<Vec<(String, RecordLive)>, AwsError> {
    let mut sets = Vec::new();
    let mut next: Option<(String, RrType)> = None;
    loop {
        let mut req = aws
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(id)
            .max_items(300);
        if let Some((name, rtype)) = next.take() {
            req = req.start_record_name(name).start_record_type(rtype);
        }
        let out = req.send().await.aws()?;
        sets.extend(
            out.resource_record_sets()
                .iter()
                .filter(|s| within(&normal(s.name()), names))
                .cloned(),
        );
        match (
            out.is_truncated(),
            out.next_record_name(),
            out.next_record_type(),
        ) {
            (true, Some(n), Some(t)) => next = Some((n.to_string(), t.clone())),
            _ => break,
        }
    }
    let txt: BTreeMap<String, String> = sets
        .iter()
        .filter(|s| *s.r#type() == RrType::Txt)
        .filter_map(|s| {
            let v = s.resource_records().first()?.value().to_string();
            Some((normal(s.name()), v))
        })
        .collect();
    Ok(sets
        .iter()
        .filter(|s| matches!(s.r#type(), RrType::A | RrType::Aaaa | RrType::Cname))
        .map(|s| {
            let name = normal(s.name());
            let rtype = s.r#type().as_str().to_string();
            let owner_txt = txt.get(&owner_name(&name, &rtype)).cloned();
            let tags = owner_txt
                .as_deref()
                .and_then(owner_of)
                .map(|stack| owner_tags(&stack))
                .unwrap_or_default();
            let target = match s.alias_target() {
                Some(a) => Target::Alias {
                    dns_name: normal(a.dns_name()),
                    zone_id: a.hosted_zone_id().to_string(),
                },
                None => Target::Values {
                    ttl: s.ttl().unwrap_or(0),
                    values: s
                        .resource_records()
                        .iter()
                        .map(|r| normal(r.value()))
                        .collect(),
                },
            };
            let live = RecordLive {
                key: key(&name, &rtype),
                zone_id: id.to_string(),
                name,
                rtype,
                target,
                owner_txt,
                tags,
            };
            (live.key.clone(), live)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_is_read_back_from_the_txt_value() {
        let v = owner_value("shop");
        assert_eq!(owner_of(&v).as_deref(), Some("shop"));
        assert_eq!(owner_of("\"v=spf1 include:_spf.example.com ~all\""), None);
        assert_eq!(
            owner_of("\"heritage=external-dns,presta-reconciler/stack=shop\""),
            None
        );
        assert_eq!(
            owner_name("Shop.Example.com.", "AAAA"),
            "_presta-aaaa.shop.example.com"
        );
    }

    #[test]
    fn records_under_a_name_belong_to_it_and_neighbours_do_not() {
        let names = BTreeSet::from(["shop.example.com".to_string()]);
        assert!(within("shop.example.com", &names));
        assert!(within("_abc.shop.example.com", &names));
        assert!(!within("myshop.example.com", &names));
        assert!(!within("example.com", &names));
    }
}
