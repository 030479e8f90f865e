//! The four security groups, by the part each plays (the load balancer's, the instances', the
//! database's, the file system's), their rules inline and as separate resources, and what the
//! reconciler will authorise or revoke.

use std::collections::{BTreeMap, BTreeSet};

use presta_spec::naming::Component;
use serde_json::{Map, Value, json};

use super::{Core, Ctx, int_of, str_of, strs_of};
use crate::ImportError;
use crate::report::{Handle, Unmapped};
use crate::state::Resource;

/// One ingress rule as the import reads it: protocol, ports, and where from (a CIDR or a
/// security group id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Rule {
    pub protocol: String,
    pub from: i64,
    pub to: i64,
    pub source: String,
}

impl Rule {
    pub fn tcp(port: i64, source: &str) -> Rule {
        Rule {
            protocol: "tcp".into(),
            from: port,
            to: port,
            source: source.into(),
        }
    }

    pub fn show(&self) -> String {
        let ports = if self.protocol == "-1" || self.protocol == "all" {
            "all traffic".to_string()
        } else if self.from == self.to {
            format!("{}/{}", self.protocol, self.from)
        } else {
            format!("{}/{}-{}", self.protocol, self.from, self.to)
        };
        format!("{ports} from {}", self.source)
    }
}

/// The groups by their part, with their rules.
pub(super) struct Sgs<'a> {
    pub groups: Groups<'a>,
    pub alb: String,
    pub app: String,
    pub db: String,
    pub efs: String,
    pub by_id: BTreeMap<String, &'a Resource>,
}

/// Finds the groups by the part they play, takes them and their rule resources.
pub(super) fn take<'a>(cx: &mut Ctx<'a>, core: &Core<'a>) -> Result<Sgs<'a>, ImportError> {
    let groups = security_groups(cx);
    let roles = roles(cx, core);
    let mut sg_names: Map<String, Value> = Map::new();
    let by_id: BTreeMap<String, &Resource> = cx
        .of_type("aws_security_group")
        .into_iter()
        .filter_map(|g| Some((g.str("id")?.to_string(), g)))
        .collect();
    for (component, id, role) in &roles {
        let Some(id) = id else {
            return Err(ImportError::Unsupported {
                address: "aws_security_group".into(),
                message: format!("the stack has no {role}"),
            });
        };
        let Some(g) = by_id.get(id).copied() else {
            return Err(ImportError::Unsupported {
                address: id.clone(),
                message: format!(
                    "the {role} ({id}) is not in the state: import it into Terraform first (`terraform import`), or import the stack by hand"
                ),
            });
        };
        let key = match component {
            Component::AlbSecurityGroup => "loadBalancer",
            Component::AppSecurityGroup => "instances",
            Component::DbSecurityGroup => "database",
            _ => "fileSystem",
        };
        sg_names.insert(key.into(), json!(g.str("name").unwrap_or_default()));
        cx.take(g, role);
        cx.tag(g, *component, Handle::Ec2(id.clone()));
        egress(cx, g, &groups);
    }
    let sg = |c: Component| {
        roles
            .iter()
            .find(|(r, _, _)| *r == c)
            .and_then(|(_, id, _)| id.clone())
            .unwrap_or_default()
    };
    let (alb_sg, app_sg, db_sg, efs_sg) = (
        sg(Component::AlbSecurityGroup),
        sg(Component::AppSecurityGroup),
        sg(Component::DbSecurityGroup),
        sg(Component::EfsSecurityGroup),
    );
    for rule in groups.rule_resources.clone() {
        let target = rule.str("security_group_id").unwrap_or_default();
        let role = if target == alb_sg {
            "rule of the load balancer's group"
        } else if target == app_sg {
            "rule of the instances' group"
        } else if target == db_sg {
            "rule of the database's group"
        } else if target == efs_sg {
            "rule of the file system's group"
        } else {
            continue;
        };
        cx.take(rule, role);
    }
    cx.names
        .insert("securityGroups".into(), Value::Object(sg_names));
    Ok(Sgs {
        groups,
        alb: alb_sg,
        app: app_sg,
        db: db_sg,
        efs: efs_sg,
        by_id,
    })
}

/// Each group's part, its id (the first group of the resource that uses it) and its role.
fn roles(cx: &mut Ctx<'_>, core: &Core<'_>) -> Vec<(Component, Option<String>, &'static str)> {
    let (lb, lt, db) = (core.lb, core.lt, core.db);
    let first_group = |r: &Resource, attr: &str| r.strings(attr).into_iter().next();
    let alb_sg = first_group(lb, "security_groups");
    let app_sg = first_group(lt, "vpc_security_group_ids");
    let db_sg = first_group(db, "vpc_security_group_ids");
    let efs_sg = core
        .mount_targets
        .iter()
        .find_map(|m| first_group(m, "security_groups"));
    for (r, attr) in [
        (lb, "security_groups"),
        (lt, "vpc_security_group_ids"),
        (db, "vpc_security_group_ids"),
    ] {
        if r.strings(attr).len() > 1 {
            cx.unmapped(r, attr, "the product gives this resource one security group (the first here); the others are removed from it once the reconciler manages the stack");
        }
    }
    vec![
        (
            Component::AlbSecurityGroup,
            alb_sg.clone(),
            "load balancer's security group",
        ),
        (
            Component::AppSecurityGroup,
            app_sg.clone(),
            "instances' security group",
        ),
        (
            Component::DbSecurityGroup,
            db_sg.clone(),
            "database's security group",
        ),
        (
            Component::EfsSecurityGroup,
            efs_sg.clone(),
            "file system's security group",
        ),
    ]
}

/// Each group's rules against the product's: what the reconciler will authorise or revoke.
pub(super) fn rule_changes(cx: &mut Ctx<'_>, sgs: &Sgs<'_>, allowed: &[String], ports: &[i64]) {
    let (alb_sg, app_sg, db_sg, efs_sg) = (&sgs.alb, &sgs.app, &sgs.db, &sgs.efs);
    let (groups, by_id) = (&sgs.groups, &sgs.by_id);
    let mut wanted: BTreeMap<&str, BTreeSet<Rule>> = BTreeMap::new();
    wanted.insert(
        alb_sg,
        allowed
            .iter()
            .flat_map(|c| ports.iter().map(move |p| Rule::tcp(*p, c)))
            .collect(),
    );
    wanted.insert(app_sg, [Rule::tcp(80, alb_sg)].into());
    wanted.insert(db_sg, [Rule::tcp(3306, app_sg)].into());
    wanted.insert(efs_sg, [Rule::tcp(2049, app_sg)].into());
    for (group, want) in &wanted {
        let have: BTreeSet<Rule> = groups
            .rules
            .get(*group)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let label = by_id
            .get(*group)
            .and_then(|g| g.str("name"))
            .unwrap_or(group);
        for extra in have.difference(want) {
            cx.change(format!(
                "security group `{label}`: the rule {} is revoked (the product's group allows only {})",
                extra.show(),
                want.iter().map(Rule::show).collect::<Vec<_>>().join(", ")
            ));
        }
        for missing in want.difference(&have) {
            cx.change(format!(
                "security group `{label}`: the rule {} is authorised",
                missing.show()
            ));
        }
    }
}

/// The security groups' rules, inline and from separate rule resources, by group id.
#[derive(Clone, Default)]
pub(super) struct Groups<'a> {
    pub rules: BTreeMap<String, Vec<Rule>>,
    pub egress: BTreeMap<String, Vec<Rule>>,
    pub rule_resources: Vec<&'a Resource>,
}

fn inline_rules(block: &Map<String, Value>) -> Vec<Rule> {
    let protocol = str_of(block, "protocol").unwrap_or("-1").to_string();
    let (from, to) = (
        int_of(block, "from_port").unwrap_or(0),
        int_of(block, "to_port").unwrap_or(0),
    );
    let mut out = Vec::new();
    let mut sources: Vec<String> = strs_of(block, "cidr_blocks");
    sources.extend(strs_of(block, "ipv6_cidr_blocks"));
    sources.extend(strs_of(block, "security_groups"));
    sources.extend(strs_of(block, "prefix_list_ids"));
    for s in sources {
        out.push(Rule {
            protocol: protocol.clone(),
            from,
            to,
            source: s,
        });
    }
    out
}

fn security_groups<'a>(cx: &Ctx<'a>) -> Groups<'a> {
    let mut g = Groups::default();
    for sg in cx.of_type("aws_security_group") {
        let id = sg.str("id").unwrap_or_default().to_string();
        for b in sg.blocks("ingress") {
            let mut rules = inline_rules(b);
            if b.get("self").and_then(Value::as_bool) == Some(true) {
                rules.push(Rule {
                    protocol: str_of(b, "protocol").unwrap_or("-1").into(),
                    from: int_of(b, "from_port").unwrap_or(0),
                    to: int_of(b, "to_port").unwrap_or(0),
                    source: id.clone(),
                });
            }
            g.rules.entry(id.clone()).or_default().extend(rules);
        }
        for b in sg.blocks("egress") {
            g.egress
                .entry(id.clone())
                .or_default()
                .extend(inline_rules(b));
        }
    }
    for r in cx.of_type("aws_security_group_rule") {
        let id = r.str("security_group_id").unwrap_or_default().to_string();
        let mut rules = inline_rules(&r.values);
        if let Some(src) = r.str("source_security_group_id") {
            rules.push(Rule {
                protocol: r.str("protocol").unwrap_or("-1").into(),
                from: r.int("from_port").unwrap_or(0),
                to: r.int("to_port").unwrap_or(0),
                source: src.into(),
            });
        }
        if r.bool("self") == Some(true) {
            rules.push(Rule {
                protocol: r.str("protocol").unwrap_or("-1").into(),
                from: r.int("from_port").unwrap_or(0),
                to: r.int("to_port").unwrap_or(0),
                source: id.clone(),
            });
        }
        let side = if r.str("type") == Some("egress") {
            &mut g.egress
        } else {
            &mut g.rules
        };
        side.entry(id).or_default().extend(rules);
        g.rule_resources.push(r);
    }
    for ty in [
        "aws_vpc_security_group_ingress_rule",
        "aws_vpc_security_group_egress_rule",
    ] {
        for r in cx.of_type(ty) {
            let id = r.str("security_group_id").unwrap_or_default().to_string();
            let source = r
                .str("cidr_ipv4")
                .or_else(|| r.str("cidr_ipv6"))
                .or_else(|| r.str("referenced_security_group_id"))
                .or_else(|| r.str("prefix_list_id"))
                .unwrap_or_default()
                .to_string();
            let rule = Rule {
                protocol: r.str("ip_protocol").unwrap_or("-1").into(),
                from: r.int("from_port").unwrap_or(0),
                to: r.int("to_port").unwrap_or(0),
                source,
            };
            let side = if ty.ends_with("egress_rule") {
                &mut g.egress
            } else {
                &mut g.rules
            };
            side.entry(id).or_default().push(rule);
            g.rule_resources.push(r);
        }
    }
    g
}

/// Egress is not managed by the product (left as it is); anything but AWS's default (all
/// traffic out) is said.
fn egress(cx: &mut Ctx<'_>, sg: &Resource, groups: &Groups<'_>) {
    let id = sg.str("id").unwrap_or_default();
    let rules = groups.egress.get(id).cloned().unwrap_or_default();
    let default = rules.len() == 1 && rules[0].protocol == "-1" && rules[0].source == "0.0.0.0/0";
    if !default {
        let shown: Vec<String> = rules.iter().map(Rule::show).collect();
        cx.report.unmapped.push(Unmapped {
            address: sg.address.clone(),
            attribute: "egress".into(),
            value: Some(if shown.is_empty() {
                "none".into()
            } else {
                shown.join(", ")
            }),
            reason: "egress is not managed by presta-reconciler: kept as it is; a group the reconciler re-creates gets AWS's default (all traffic out)".into(),
        });
    }
}
