//! Security groups and their ingress rules. A stack has four, chained: internet → ALB →
//! instances → database and file system. Rules are reconciled as sets: a rule added by hand
//! is revoked, a missing one is authorised again. Egress is left at AWS's default.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, Ipv6Range, ResourceType, UserIdGroupPair};
use serde::{Serialize, Serializer};

use crate::clients::Aws;
use crate::diff::{Delta, Diffs, FieldDiff, Kind};
use crate::driver::{Driver, Scope, absent_is_success};
use crate::error::{AwsError, AwsResultExt};
use crate::iam::allow;
use crate::registry::{Deletion, Iam, Observed, OrphanSearch, Owned, Targets, Teardown};
use crate::tags::{self, Tags};
use fields::*;
use presta_spec::Stack;
use presta_spec::naming::{Component, TAG_COMPONENT};
use serde_json::json;

/// Where traffic may come from.
/// The fields this kind manages, as its diff reports them and its update reads them.
pub mod fields {
    use crate::diff::Field;

    pub const INGRESS: Field = Field("ingress");
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Cidr(String),
    /// Another security group, by id.
    Group(String),
}

/// One ingress rule, normalised (`-1` protocol is `all`, ports 0 when not applicable).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    pub protocol: String,
    pub from_port: i32,
    pub to_port: i32,
    pub source: Source,
}

impl Rule {
    pub fn tcp(port: u16, source: Source) -> Rule {
        Rule {
            protocol: "tcp".into(),
            from_port: port.into(),
            to_port: port.into(),
            source,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ports = if self.protocol == "all" {
            "all".to_string()
        } else if self.from_port == self.to_port {
            format!("{}/{}", self.protocol, self.from_port)
        } else {
            format!("{}/{}-{}", self.protocol, self.from_port, self.to_port)
        };
        match &self.source {
            Source::Cidr(c) => write!(f, "{ports} from {c}"),
            Source::Group(g) => write!(f, "{ports} from {g}"),
        }
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone)]
pub struct SecurityGroupDesired {
    pub name: String,
    pub description: String,
    pub vpc_id: String,
    pub ingress: BTreeSet<Rule>,
    pub tags: Tags,
}

impl SecurityGroupDesired {
    fn of(stack: &Stack, c: Component, vpc: &str, ingress: BTreeSet<Rule>, what: &str) -> Self {
        SecurityGroupDesired {
            name: stack.resource_name(c),
            description: format!("presta-reconciler {}: {what}", stack.name()),
            vpc_id: vpc.to_string(),
            ingress,
            tags: stack.names().tags(c, &stack.metadata.labels),
        }
    }

    /// The load balancer's group: HTTP (and HTTPS) from the allowed networks.
    pub fn load_balancer(stack: &Stack, vpc: &str) -> Self {
        let lb = &stack.spec.load_balancer;
        let mut rules = BTreeSet::new();
        for cidr in &lb.allowed_cidrs {
            rules.insert(Rule::tcp(lb.http_port, Source::Cidr(cidr.clone())));
            if let Some(https) = &lb.https {
                rules.insert(Rule::tcp(https.port, Source::Cidr(cidr.clone())));
            }
        }
        Self::of(
            stack,
            Component::AlbSecurityGroup,
            vpc,
            rules,
            "load balancer, from the allowed networks",
        )
    }

    /// The instances' group: HTTP from the load balancer's group only.
    pub fn instances(stack: &Stack, vpc: &str, alb_group: &str) -> Self {
        let rules = [Rule::tcp(80, Source::Group(alb_group.to_string()))].into();
        Self::of(
            stack,
            Component::AppSecurityGroup,
            vpc,
            rules,
            "instances, HTTP from the load balancer only",
        )
    }

    /// The database's group: MySQL from the instances' group only.
    pub fn database(stack: &Stack, vpc: &str, app_group: &str) -> Self {
        let rules = [Rule::tcp(3306, Source::Group(app_group.to_string()))].into();
        Self::of(
            stack,
            Component::DbSecurityGroup,
            vpc,
            rules,
            "MySQL from the instances only",
        )
    }

    /// The file system's group: NFS from the instances' group only.
    pub fn file_system(stack: &Stack, vpc: &str, app_group: &str) -> Self {
        let rules = [Rule::tcp(2049, Source::Group(app_group.to_string()))].into();
        Self::of(
            stack,
            Component::EfsSecurityGroup,
            vpc,
            rules,
            "NFS from the instances only",
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SecurityGroupLive {
    pub id: String,
    pub name: String,
    pub vpc_id: String,
    pub ingress: BTreeSet<Rule>,
    pub tags: Tags,
}

/// EC2 filter values that find `names`: one `<stack>-*-sg` per stack for the stack's
/// deterministic group names (the four groups of a stack in one value), a name that follows
/// no known pattern as itself. The pattern may catch other groups (`shop-eu-alb-sg` for
/// `shop`); the caller keeps only the names it asked for.
pub fn name_patterns(names: &[String]) -> Vec<String> {
    const GROUPS: [Component; 4] = [
        Component::AlbSecurityGroup,
        Component::AppSecurityGroup,
        Component::DbSecurityGroup,
        Component::EfsSecurityGroup,
    ];
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let value = GROUPS
            .iter()
            .find_map(|c| {
                let suffix = c.name("");
                name.strip_suffix(suffix.as_str())
                    .filter(|stack| !stack.is_empty() && !stack.contains(['*', '?']))
                    .map(|stack| format!("{stack}-*-sg"))
            })
            .unwrap_or_else(|| name.clone());
        if !out.contains(&value) {
            out.push(value);
        }
    }
    out
}

pub struct SecurityGroups;

impl Kind {
    pub const SECURITY_GROUP: Kind = Kind::new("security_group");
}

impl Driver for SecurityGroups {
    const KIND: Kind = Kind::SECURITY_GROUP;
    const IAM: Iam = Iam {
        read: &["ec2:DescribeSecurityGroups"],
        create: &["ec2:CreateSecurityGroup"],
        change: &[
            "ec2:AuthorizeSecurityGroupIngress",
            "ec2:RevokeSecurityGroupIngress",
            "ec2:CreateTags",
            "ec2:DeleteSecurityGroup",
        ],
        statements: || {
            vec![
                allow(
                    "CreateSecurityGroupsInTheStacksVpcs",
                    &["ec2:CreateSecurityGroup"],
                    json!("arn:aws:ec2:*:*:vpc/*"),
                    None,
                ),
                crate::iam::tag_while_creating(
                    "TagSecurityGroupsOnlyWhileCreatingThem",
                    "ec2",
                    "ec2:CreateTags",
                    &["CreateSecurityGroup"],
                ),
            ]
        },
    };
    /// Those that others refer to go last: the file system's, the database's (kept with a
    /// retained database), the instances', the load balancer's.
    const TEARDOWN: Teardown = Teardown::new(54, Deletion::Retried);
    const ORPHANS: OrphanSearch = OrphanSearch::Primary;

    fn scope(targets: &Targets, _: &Observed) -> Scope {
        Scope::named(
            [
                Component::AlbSecurityGroup,
                Component::AppSecurityGroup,
                Component::DbSecurityGroup,
                Component::EfsSecurityGroup,
            ]
            .into_iter()
            .flat_map(|c| targets.names(c))
            .collect(),
        )
    }

    /// Tag-filtered, or by name.
    async fn list_owned(
        &self,
        aws: &Aws,
        names: Option<&[String]>,
    ) -> Result<Vec<Owned>, AwsError> {
        let filter = match names {
            None => crate::tags::ec2_owned_filter(),
            Some(names) => Filter::builder()
                .name("group-name")
                .set_values(Some(names.to_vec()))
                .build(),
        };
        let groups = aws
            .ec2
            .describe_security_groups()
            .filters(filter)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .aws()?;
        Ok(groups
            .iter()
            .map(|g| {
                Owned::from_tags(
                    g.group_name().unwrap_or_default(),
                    g.group_id().unwrap_or_default(),
                    g.tags().iter().filter_map(|t| Some((t.key()?, t.value()?))),
                )
            })
            .collect())
    }

    /// Kept by `destroy` (the retained database's group): its rules, which name the groups
    /// about to go, are revoked so that those can be deleted.
    async fn detach(&self, aws: &Aws, live: &SecurityGroupLive) -> Result<(), AwsError> {
        let all: Vec<&Rule> = live.ingress.iter().collect();
        revoke(aws, live, &all).await
    }

    fn teardown(live: &SecurityGroupLive) -> Teardown {
        match live.tags.get(TAG_COMPONENT).map(String::as_str) {
            Some(c) if c == Component::EfsSecurityGroup.tag() => {
                Teardown::new(51, Deletion::Retried)
            }
            Some(c) if c == Component::DbSecurityGroup.tag() => {
                Teardown::new(52, Deletion::DatabaseNetwork)
            }
            Some(c) if c == Component::AppSecurityGroup.tag() => {
                Teardown::new(53, Deletion::Retried)
            }
            _ => Self::TEARDOWN,
        }
    }

    type Desired = SecurityGroupDesired;
    type Live = SecurityGroupLive;

    fn name(desired: &SecurityGroupDesired) -> String {
        desired.name.clone()
    }

    fn id(live: &SecurityGroupLive) -> String {
        live.id.clone()
    }

    /// `DeleteSecurityGroup`; fails with `DependencyViolation` while something uses it.
    async fn delete(&self, aws: &Aws, live: &SecurityGroupLive) -> Result<(), AwsError> {
        absent_is_success(
            aws.ec2
                .delete_security_group()
                .group_id(&live.id)
                .send()
                .await
                .map(|_| ())
                .aws(),
        )
    }

    fn tags(live: &Self::Live) -> Option<&Tags> {
        Some(&live.tags)
    }

    /// `DescribeSecurityGroups` filtered by the stacks' VPCs (`scope.parents`) and by one
    /// name pattern per stack (`<stack>-*-sg`, see [`name_patterns`]): one call for up to 200
    /// stacks where exact names would take one per 50. Found by name even if someone removed
    /// the ownership tag; groups the pattern catches that are not ours are dropped here.
    async fn observe(
        &self,
        aws: &Aws,
        scope: &Scope,
    ) -> Result<BTreeMap<String, SecurityGroupLive>, AwsError> {
        if scope.names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let patterns = name_patterns(&scope.names);
        // EC2 takes at most 200 values per filter.
        let pages = futures::future::try_join_all(patterns.chunks(200).map(|values| async move {
            let mut req = aws.ec2.describe_security_groups().filters(
                Filter::builder()
                    .name("group-name")
                    .set_values(Some(values.to_vec()))
                    .build(),
            );
            if !scope.parents.is_empty() {
                req = req.filters(
                    Filter::builder()
                        .name("vpc-id")
                        .set_values(Some(scope.parents.clone()))
                        .build(),
                );
            }
            req.into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .aws()
        }))
        .await?;
        let wanted: std::collections::HashSet<&str> =
            scope.names.iter().map(String::as_str).collect();
        let groups: Vec<_> = pages.into_iter().flatten().collect();
        Ok(groups
            .iter()
            .filter(|g| wanted.contains(g.group_name().unwrap_or_default()))
            .map(|g| {
                let live = SecurityGroupLive {
                    id: g.group_id().unwrap_or_default().to_string(),
                    name: g.group_name().unwrap_or_default().to_string(),
                    vpc_id: g.vpc_id().unwrap_or_default().to_string(),
                    ingress: rules_of(g.ip_permissions()),
                    tags: tags::from_ec2(g.tags()),
                };
                (live.name.clone(), live)
            })
            .collect())
    }

    fn diff(&self, desired: &SecurityGroupDesired, live: &SecurityGroupLive) -> Vec<FieldDiff> {
        let mut d = Diffs::new();
        d.set(INGRESS, &desired.ingress, &live.ingress)
            .tags(&desired.tags, &live.tags);
        d.finish()
    }

    /// Creates the group with its tags, then authorises its rules. A group of the same name
    /// in the VPC (a create that crashed before) is found and completed instead.
    async fn create(
        &self,
        aws: &Aws,
        desired: &SecurityGroupDesired,
    ) -> Result<SecurityGroupLive, AwsError> {
        let created = aws
            .ec2
            .create_security_group()
            .group_name(&desired.name)
            .description(&desired.description)
            .vpc_id(&desired.vpc_id)
            .tag_specifications(tags::ec2_spec(ResourceType::SecurityGroup, &desired.tags))
            .send()
            .await
            .aws();
        let live = match created {
            Ok(out) => SecurityGroupLive {
                id: out.group_id().unwrap_or_default().to_string(),
                name: desired.name.clone(),
                vpc_id: desired.vpc_id.clone(),
                ingress: BTreeSet::new(),
                tags: desired.tags.clone(),
            },
            Err(e) if e.has_code("InvalidGroup.Duplicate") => {
                let scope = Scope {
                    names: vec![desired.name.clone()],
                    parents: vec![desired.vpc_id.clone()],
                    ..Scope::default()
                };
                self.observe(aws, &scope)
                    .await?
                    .remove(&desired.name)
                    .ok_or(e)?
            }
            Err(e) => return Err(e),
        };
        let diffs = self.diff(desired, &live);
        if diffs.is_empty() {
            Ok(live)
        } else {
            self.update(aws, desired, &live, &diffs).await
        }
    }

    /// Revokes rules nobody declared, then authorises the missing ones; restores tags.
    async fn update(
        &self,
        aws: &Aws,
        desired: &SecurityGroupDesired,
        live: &SecurityGroupLive,
        diffs: &[FieldDiff],
    ) -> Result<SecurityGroupLive, AwsError> {
        if Delta(diffs).touches(INGRESS) {
            let extra: Vec<&Rule> = live.ingress.difference(&desired.ingress).collect();
            let missing: Vec<&Rule> = desired.ingress.difference(&live.ingress).collect();
            revoke(aws, live, &extra).await?;
            if !missing.is_empty() {
                let res = aws
                    .ec2
                    .authorize_security_group_ingress()
                    .group_id(&live.id)
                    .set_ip_permissions(Some(missing.iter().map(|r| permission(r)).collect()))
                    .send()
                    .await
                    .aws();
                match res {
                    Ok(_) => {}
                    Err(e) if e.has_code("InvalidPermission.Duplicate") => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let add = tags::missing(&desired.tags, &live.tags);
        if !add.is_empty() {
            aws.ec2
                .create_tags()
                .resources(&live.id)
                .set_tags(Some(tags::ec2(&add)))
                .send()
                .await
                .aws()?;
        }
        let mut after = live.clone();
        after.ingress = desired.ingress.clone();
        after.tags.extend(add);
        Ok(after)
    }
}

/// Revokes `rules` from the live group; a rule already gone is success.
async fn revoke(aws: &Aws, live: &SecurityGroupLive, rules: &[&Rule]) -> Result<(), AwsError> {
    if rules.is_empty() {
        return Ok(());
    }
    let res = aws
        .ec2
        .revoke_security_group_ingress()
        .group_id(&live.id)
        .set_ip_permissions(Some(rules.iter().map(|r| permission(r)).collect()))
        .send()
        .await
        .aws();
    match res {
        Ok(_) => Ok(()),
        // Already gone: revoked by an earlier attempt whose answer was lost, or by someone
        // else. The rule is not there, which is what was wanted.
        Err(e) if e.has_code("InvalidPermission.NotFound") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Flattens AWS's permission groups into one rule per source.
pub fn rules_of(perms: &[IpPermission]) -> BTreeSet<Rule> {
    let mut rules = BTreeSet::new();
    for p in perms {
        let proto = match p.ip_protocol().unwrap_or("-1") {
            "-1" => "all".to_string(),
            "6" => "tcp".to_string(),
            other => other.to_ascii_lowercase(),
        };
        let (from, to) = if proto == "all" {
            (0, 0)
        } else {
            (p.from_port().unwrap_or(0), p.to_port().unwrap_or(0))
        };
        let mk = |source| Rule {
            protocol: proto.clone(),
            from_port: from,
            to_port: to,
            source,
        };
        for r in p.ip_ranges() {
            if let Some(c) = r.cidr_ip() {
                rules.insert(mk(Source::Cidr(c.to_string())));
            }
        }
        for r in p.ipv6_ranges() {
            if let Some(c) = r.cidr_ipv6() {
                rules.insert(mk(Source::Cidr(c.to_string())));
            }
        }
        for g in p.user_id_group_pairs() {
            if let Some(id) = g.group_id() {
                rules.insert(mk(Source::Group(id.to_string())));
            }
        }
    }
    rules
}

fn permission(rule: &Rule) -> IpPermission {
    let proto = if rule.protocol == "all" {
        "-1"
    } else {
        rule.protocol.as_str()
    };
    let mut p = IpPermission::builder().ip_protocol(proto);
    if rule.protocol != "all" {
        p = p.from_port(rule.from_port).to_port(rule.to_port);
    }
    match &rule.source {
        Source::Cidr(c) if c.contains(':') => {
            p = p.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(c).build())
        }
        Source::Cidr(c) => p = p.ip_ranges(IpRange::builder().cidr_ip(c).build()),
        Source::Group(g) => {
            p = p.user_id_group_pairs(UserIdGroupPair::builder().group_id(g).build())
        }
    }
    p.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(proto: &str, from: i32, to: i32, cidrs: &[&str], groups: &[&str]) -> IpPermission {
        let mut p = IpPermission::builder()
            .ip_protocol(proto)
            .from_port(from)
            .to_port(to);
        for c in cidrs {
            p = p.ip_ranges(IpRange::builder().cidr_ip(*c).build());
        }
        for g in groups {
            p = p.user_id_group_pairs(UserIdGroupPair::builder().group_id(*g).build());
        }
        p.build()
    }

    #[test]
    fn one_name_pattern_per_stack() {
        let names: Vec<String> = ["shop", "shop-eu"]
            .iter()
            .flat_map(|s| {
                [
                    Component::AlbSecurityGroup,
                    Component::AppSecurityGroup,
                    Component::DbSecurityGroup,
                    Component::EfsSecurityGroup,
                ]
                .map(|c| c.name(s))
            })
            .chain(["legacy".to_string(), "-alb-sg".to_string()])
            .collect();
        assert_eq!(
            name_patterns(&names),
            ["shop-*-sg", "shop-eu-*-sg", "legacy", "-alb-sg"]
        );
    }

    #[test]
    fn permissions_flatten_to_one_rule_per_source() {
        let rules = rules_of(&[
            perm("tcp", 80, 80, &["0.0.0.0/0", "10.0.0.0/8"], &["sg-1"]),
            perm("-1", -1, -1, &["1.2.3.0/24"], &[]),
        ]);
        let shown: Vec<String> = rules.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "all from 1.2.3.0/24",
                "tcp/80 from 0.0.0.0/0",
                "tcp/80 from 10.0.0.0/8",
                "tcp/80 from sg-1"
            ]
        );
    }

    #[test]
    fn an_extra_rule_is_drift_named_in_the_diff() {
        let desired = SecurityGroupDesired {
            name: "shop-app-sg".into(),
            description: String::new(),
            vpc_id: "vpc-1".into(),
            ingress: [Rule::tcp(80, Source::Group("sg-alb".into()))]
                .into_iter()
                .collect(),
            tags: Tags::new(),
        };
        let mut live = SecurityGroupLive {
            id: "sg-app".into(),
            name: desired.name.clone(),
            vpc_id: "vpc-1".into(),
            ingress: desired.ingress.clone(),
            tags: Tags::new(),
        };
        assert!(SecurityGroups.diff(&desired, &live).is_empty());
        live.ingress
            .insert(Rule::tcp(22, Source::Cidr("0.0.0.0/0".into())));
        let diffs = SecurityGroups.diff(&desired, &live);
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].field, "ingress");
        assert!(
            diffs[0].live.to_string().contains("tcp/22 from 0.0.0.0/0"),
            "{}",
            diffs[0].live
        );
        assert!(!diffs[0].desired.to_string().contains("tcp/22"));
    }

    #[test]
    fn permissions_round_trip() {
        for rule in [
            Rule::tcp(443, Source::Cidr("::/0".into())),
            Rule::tcp(3306, Source::Group("sg-9".into())),
            Rule::tcp(80, Source::Cidr("0.0.0.0/0".into())),
        ] {
            let back = rules_of(&[permission(&rule)]);
            assert_eq!(back.into_iter().collect::<Vec<_>>(), vec![rule]);
        }
    }
}
