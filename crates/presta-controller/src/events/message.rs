//! From one queue message to a decision, purely: which stacks it names, or why it triggers
//! nothing. A message is EventBridge's envelope (`source`, `detail-type`, `region`,
//! `account`, `time`, `resources`, `detail`); CloudTrail's events carry the call in `detail`
//! (`eventName`, `userAgent`, `requestParameters`, `responseElements`), the services' own
//! events their fields. The resources are found by every id, ARN and name in those fields,
//! looked up in an [`Index`] of what each stack owns.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use presta_aws::events::{CLOUDTRAIL_DETAIL_TYPE, HEARTBEAT_SOURCE};
use serde_json::Value;

/// The User-Agent part every call of the daemon carries (`app/presta-<replica id>`).
pub const OWN_USER_AGENT: &str = "app/presta-";

/// What a message says.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A daemon's heartbeat: the path works.
    Heartbeat { daemon: String },
    /// A change AWS reported.
    Change(ChangeEvent),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    /// `aws.ec2`, `aws.rds`...
    pub source: String,
    /// The call (`AuthorizeSecurityGroupIngress`) or the event's detail type.
    pub name: String,
    pub region: String,
    pub account: String,
    /// When AWS says it happened (CloudTrail's `eventTime`, else the envelope's `time`).
    pub time: Option<SystemTime>,
    pub user_agent: String,
    pub read_only: bool,
    /// A CloudTrail record of a call (else a service's own event, without User-Agent).
    pub cloudtrail: bool,
    /// Every string of the parameters, the response, the detail and `resources`.
    pub tokens: Vec<String>,
}

/// Why a message triggers no run (the label of `presta_events_ignored_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    OwnWrite,
    NoManagedResource,
    Malformed,
    OtherRegion,
    OtherAccount,
    ReadOnly,
    OtherDaemon,
}

impl Ignored {
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::OwnWrite => "own_write",
            Ignored::NoManagedResource => "no_managed_resource",
            Ignored::Malformed => "malformed",
            Ignored::OtherRegion => "other_region",
            Ignored::OtherAccount => "other_account",
            Ignored::ReadOnly => "read_only",
            Ignored::OtherDaemon => "other_daemon",
        }
    }
}

/// Reads one message body.
pub fn parse(body: &str) -> Result<Parsed, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let source = v["source"].as_str().ok_or("no `source`")?.to_string();
    let detail_type = v["detail-type"].as_str().ok_or("no `detail-type`")?;
    let detail = &v["detail"];
    if !detail.is_object() {
        return Err("no `detail` object".into());
    }
    if source == HEARTBEAT_SOURCE {
        let daemon = detail["daemon"]
            .as_str()
            .ok_or("a heartbeat without `daemon`")?;
        return Ok(Parsed::Heartbeat {
            daemon: daemon.to_string(),
        });
    }
    let cloudtrail = detail_type == CLOUDTRAIL_DETAIL_TYPE;
    let mut tokens = Vec::new();
    if cloudtrail {
        strings(&detail["requestParameters"], &mut tokens);
        strings(&detail["responseElements"], &mut tokens);
        strings(&detail["resources"], &mut tokens);
    } else {
        strings(detail, &mut tokens);
    }
    strings(&v["resources"], &mut tokens);
    let time = detail["eventTime"]
        .as_str()
        .or(v["time"].as_str())
        .and_then(parse_rfc3339);
    Ok(Parsed::Change(ChangeEvent {
        name: if cloudtrail {
            detail["eventName"].as_str().unwrap_or_default().to_string()
        } else {
            detail_type.to_string()
        },
        source,
        region: v["region"].as_str().unwrap_or_default().to_string(),
        account: v["account"].as_str().unwrap_or_default().to_string(),
        time,
        user_agent: detail["userAgent"].as_str().unwrap_or_default().to_string(),
        read_only: detail["readOnly"].as_bool().unwrap_or(false),
        cloudtrail,
        tokens,
    }))
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if !s.is_empty() => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// What each stack owns, by id, ARN and name, and the prefixes of its names (its parameters'
/// path).
#[derive(Debug, Default)]
pub struct Index {
    exact: HashMap<String, String>,
    prefixes: Vec<(String, String)>,
}

impl Index {
    /// `token` (an id, ARN or name) belongs to `stack`. Short or generic names (`http`) are
    /// not indexed: a name must hold a separator to be told apart from ordinary values.
    pub fn add(&mut self, stack: &str, token: &str) {
        let specific = token.len() >= 6 && token.contains(['-', '/', '.', '_', ':']);
        if specific {
            self.exact.insert(token.to_string(), stack.to_string());
        }
    }

    /// Every name starting with `prefix` belongs to `stack`.
    pub fn add_prefix(&mut self, stack: &str, prefix: &str) {
        if prefix.len() > 1 {
            self.prefixes.push((prefix.to_string(), stack.to_string()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    /// The stacks `tokens` name: each token whole, and each part of an ARN or path.
    pub fn stacks_for(&self, tokens: &[String]) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        for t in tokens {
            if let Some(s) = self.exact.get(t) {
                found.insert(s.clone());
                continue;
            }
            if t.contains([':', '/']) {
                for part in t.split([':', '/']) {
                    if let Some(s) = self.exact.get(part) {
                        found.insert(s.clone());
                    }
                }
            }
            for (prefix, s) in &self.prefixes {
                if t.starts_with(prefix.as_str()) {
                    found.insert(s.clone());
                }
            }
        }
        found
    }
}

/// What the daemon does with one parsed change, given where its queue is.
pub fn decide(
    event: &ChangeEvent,
    region: &str,
    account: &str,
    index: &Index,
) -> Result<BTreeSet<String>, Ignored> {
    if !event.region.is_empty() && event.region != region {
        return Err(Ignored::OtherRegion);
    }
    if !account.is_empty() && !event.account.is_empty() && event.account != account {
        return Err(Ignored::OtherAccount);
    }
    if event.read_only {
        return Err(Ignored::ReadOnly);
    }
    if event.user_agent.contains(OWN_USER_AGENT) {
        return Err(Ignored::OwnWrite);
    }
    let stacks = index.stacks_for(&event.tokens);
    if stacks.is_empty() {
        return Err(Ignored::NoManagedResource);
    }
    Ok(stacks)
}

/// `2026-12-07T19:18:21Z` (fractions of a second allowed) as a time.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<u64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days).ok()? * 86_400 + hh * 3600 + mm * 60 + ss;
    let nanos = format!("{:0<9}", &frac[..frac.len().min(9)])
        .parse::<u32>()
        .ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloudtrail(name: &str, ua: &str, params: Value) -> String {
        serde_json::json!({
            "version": "0", "id": "1", "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.ec2", "account": "123456789012", "time": "2026-12-07T19:18:21Z",
            "region": "eu-west-3", "resources": [],
            "detail": {
                "eventName": name, "eventTime": "2026-12-07T19:18:20Z", "userAgent": ua,
                "requestParameters": params, "responseElements": null, "readOnly": false
            }
        })
        .to_string()
    }

    fn index() -> Index {
        let mut i = Index::default();
        i.add("shop-a", "sg-0123456789abcdef0");
        i.add("shop-a", "shop-a-tg");
        i.add("shop-a", "http");
        i.add("shop-b", "arn:aws:rds:eu-west-3:123456789012:db:shop-b-db");
        i.add("shop-b", "shop-b-db");
        i.add_prefix("shop-b", "/presta-reconciler/shop-b/");
        i
    }

    fn change(body: &str) -> ChangeEvent {
        match parse(body).unwrap() {
            Parsed::Change(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_hand_made_change_names_its_stack_by_id_arn_part_or_path() {
        let i = index();
        let sg = change(&cloudtrail(
            "AuthorizeSecurityGroupIngress",
            "Boto3/1.43",
            serde_json::json!({"groupId": "sg-0123456789abcdef0", "ipPermissions": {"items": [{"cidrIp": "0.0.0.0/0"}]}}),
        ));
        assert_eq!(sg.name, "AuthorizeSecurityGroupIngress");
        assert_eq!(
            sg.time,
            Some(UNIX_EPOCH + Duration::from_secs(1_796_671_100))
        );
        let got = decide(&sg, "eu-west-3", "123456789012", &i).unwrap();
        assert_eq!(got.into_iter().collect::<Vec<_>>(), ["shop-a"]);
        let tg = change(&cloudtrail(
            "DetachLoadBalancerTargetGroups",
            "aws-cli/2",
            serde_json::json!({"targetGroupARNs": ["arn:aws:elasticloadbalancing:eu-west-3:1:targetgroup/shop-a-tg/abc"]}),
        ));
        assert!(decide(&tg, "eu-west-3", "", &i).unwrap().contains("shop-a"));
        let param = change(&cloudtrail(
            "PutParameter",
            "Boto3",
            serde_json::json!({"name": "/presta-reconciler/shop-b/db-password", "value": "HIDDEN_DUE_TO_SECURITY_REASONS"}),
        ));
        assert!(
            decide(&param, "eu-west-3", "", &i)
                .unwrap()
                .contains("shop-b")
        );
    }

    #[test]
    fn what_triggers_nothing_says_why() {
        let i = index();
        let own = change(&cloudtrail(
            "RevokeSecurityGroupIngress",
            "aws-sdk-rust/1.3 app/presta-host-1234",
            serde_json::json!({"groupId": "sg-0123456789abcdef0"}),
        ));
        assert_eq!(decide(&own, "eu-west-3", "", &i), Err(Ignored::OwnWrite));
        let foreign = change(&cloudtrail(
            "AuthorizeSecurityGroupIngress",
            "Boto3",
            serde_json::json!({"groupId": "sg-ffffffffffffffff0", "protocol": "http"}),
        ));
        assert_eq!(
            decide(&foreign, "eu-west-3", "", &i),
            Err(Ignored::NoManagedResource),
            "a generic value (`http`) is never indexed"
        );
        let sg = change(&cloudtrail(
            "AuthorizeSecurityGroupIngress",
            "Boto3",
            serde_json::json!({"groupId": "sg-0123456789abcdef0"}),
        ));
        assert_eq!(decide(&sg, "us-east-1", "", &i), Err(Ignored::OtherRegion));
        assert_eq!(
            decide(&sg, "eu-west-3", "999999999999", &i),
            Err(Ignored::OtherAccount)
        );
        for bad in [
            "not json",
            "{}",
            r#"{"source":"aws.ec2","detail-type":"x"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn native_events_and_heartbeats() {
        let i = index();
        let rds = serde_json::json!({
            "source": "aws.rds", "detail-type": "RDS DB Instance Event", "region": "eu-west-3",
            "account": "1", "time": "2026-12-07T19:18:21Z",
            "resources": ["arn:aws:rds:eu-west-3:123456789012:db:shop-b-db"],
            "detail": {"SourceIdentifier": "shop-b-db", "Message": "modified"}
        });
        let c = change(&rds.to_string());
        assert_eq!(c.name, "RDS DB Instance Event");
        assert!(decide(&c, "eu-west-3", "", &i).unwrap().contains("shop-b"));
        let hb = serde_json::json!({"source": "presta-reconciler", "detail-type": "presta-reconciler heartbeat", "detail": {"daemon": "d1"}});
        assert_eq!(
            parse(&hb.to_string()),
            Ok(Parsed::Heartbeat {
                daemon: "d1".into()
            })
        );
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:01.5Z"),
            Some(UNIX_EPOCH + Duration::from_millis(951_782_401_500))
        );
        assert_eq!(parse_rfc3339("2000-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
