//! One stack's resources, written as a `PrestaShopStack`: every spec field from the
//! attributes, the network by the subnets and VPC the resources use, the passwords by the SSM
//! parameter that holds them, the names as they are (`spec.names`). One module per part of
//! the stack: [`groups`], [`front`] (listeners, load balancer, target group), [`compute`]
//! (network, launch template, group, container), [`data`] (database, files, password).

mod compute;
mod data;
mod front;
mod groups;

use std::collections::{BTreeMap, BTreeSet};

use presta_spec::Stack;
use presta_spec::naming::Component;
use serde_json::{Map, Value, json};

use crate::ImportError;
use crate::attrs::{self, shown};
use crate::group::Group;
use crate::report::{Handle, Imported, LeftAlone, Report, Taggable, Unmapped};
use crate::state::Resource;

pub(super) struct Ctx<'a> {
    pub(super) all: &'a [Resource],
    pub(super) members: Vec<&'a Resource>,
    pub(super) report: Report,
    /// `spec.names`, filled as the resources are taken.
    pub(super) names: Map<String, Value>,
}

impl<'a> Ctx<'a> {
    pub(super) fn of_type(&self, ty: &str) -> Vec<&'a Resource> {
        self.members
            .iter()
            .copied()
            .filter(|r| r.ty == ty)
            .collect()
    }

    /// The one resource of `ty`; an error when there are several.
    pub(super) fn one(&self, ty: &str, what: &str) -> Result<Option<&'a Resource>, ImportError> {
        let found = self.of_type(ty);
        if found.len() > 1 {
            let addresses: Vec<&str> = found.iter().map(|r| r.address.as_str()).collect();
            return Err(ImportError::Unsupported {
                address: addresses.join(", "),
                message: format!(
                    "a stack has one {what}; this one has {}: split the state, or import the stack by hand",
                    found.len()
                ),
            });
        }
        Ok(found.first().copied())
    }

    pub(super) fn take(&mut self, r: &Resource, role: &str) {
        self.report.imported.push(Imported {
            address: r.address.clone(),
            ty: r.ty.clone(),
            role: role.to_string(),
        });
        self.report.unmapped.extend(attrs::leftovers(r));
    }

    pub(super) fn tag(&mut self, r: &Resource, role: Component, handle: Handle) {
        self.report.taggable.push(Taggable {
            address: r.address.clone(),
            component: role.tag(),
            role,
            handle,
        });
    }

    pub(super) fn unmapped(&mut self, r: &Resource, attr: &str, reason: impl Into<String>) {
        let value = r.values.get(attr).and_then(|v| shown(r, attr, v));
        self.report.unmapped.push(Unmapped {
            address: r.address.clone(),
            attribute: attr.to_string(),
            value,
            reason: reason.into(),
        });
    }

    pub(super) fn change(&mut self, what: impl Into<String>) {
        self.report.takeover_changes.push(what.into());
    }
}

pub(super) fn need<'a>(
    r: Option<&'a Resource>,
    ty: &str,
    what: &str,
) -> Result<&'a Resource, ImportError> {
    r.ok_or_else(|| ImportError::Unsupported {
        address: ty.to_string(),
        message: format!(
            "the stack has no {what} ({ty}): the reconciler would create one, which is not a takeover; import a state that holds the whole shop"
        ),
    })
}

pub(super) fn region_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

pub(super) fn sorted(v: Vec<String>) -> Vec<String> {
    let set: BTreeSet<String> = v.into_iter().collect();
    set.into_iter().collect()
}

pub(super) fn int_of(m: &Map<String, Value>, k: &str) -> Option<i64> {
    match m.get(k)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

pub(super) fn str_of<'m>(m: &'m Map<String, Value>, k: &str) -> Option<&'m str> {
    m.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

pub(super) fn strs_of(m: &Map<String, Value>, k: &str) -> Vec<String> {
    m.get(k)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Why the shop's certificate, records and listener rules stay with Terraform: the HTTPS
/// listener keeps the certificate by its ARN (`https.certificate`), and the records and rules
/// are not the reconciler's (it writes only records with its ownership TXT record beside them,
/// and rules with its tags).
fn front_door_left_alone(ty: &str) -> Option<&'static str> {
    match ty {
        "aws_acm_certificate" => Some(
            "the shop's certificate: the HTTPS listener keeps it by its ARN (spec.loadBalancer.https.certificate) and Terraform keeps managing it; to have the reconciler request and renew one of its own, set `certificate: auto` with spec.dns once Terraform no longer manages this one",
        ),
        "aws_acm_certificate_validation" => Some(
            "the certificate's validation (a Terraform wait, no AWS resource): it stays with the certificate",
        ),
        "aws_lb_listener_rule" => Some(
            "a rule of the shop's listener (such as the `www.` redirect): it stays in Terraform's state and on the listener; the reconciler never changes or deletes a rule it did not create. With spec.dns.extraNames it writes its own redirect of each extra name to the domain: remove this one from Terraform first, or set spec.policy.adoptExisting to let the reconciler take over a rule on a declared name",
        ),
        "aws_route53_record" => Some(
            "a record of the shop's hosted zone: it stays in Terraform's state; with spec.dns the reconciler writes the shop's alias records itself and never changes a record it did not write (delete this one from Terraform and the zone first, or set spec.policy.adoptExisting to let the reconciler take it over)",
        ),
        _ => None,
    }
}

/// The stack `name` of `group`, and its report.
pub fn stack(name: &str, group: &Group, all: &[Resource]) -> Result<(Stack, Report), ImportError> {
    let members: Vec<&Resource> = group.members.iter().map(|&i| &all[i]).collect();
    let mut cx = Ctx {
        all,
        members,
        report: Report {
            stack: name.to_string(),
            ..Report::default()
        },
        names: Map::new(),
    };
    let spec = build(&mut cx, name)?;
    // What the stack does not take: unknown types linked to it, and every other managed
    // resource of the state that no stack holds.
    let in_group: BTreeSet<&str> = cx.members.iter().map(|r| r.address.as_str()).collect();
    for r in all.iter().filter(|r| r.managed()) {
        let taken = cx.report.imported.iter().any(|i| i.address == r.address);
        if taken {
            continue;
        }
        let why = if let Some(why) = front_door_left_alone(&r.ty) {
            why.to_string()
        } else if attrs::rules(&r.ty).is_none() {
            if in_group.contains(r.address.as_str()) {
                format!(
                    "refers to the stack, but {} is not a kind this product manages: it stays in Terraform's state (Terraform keeps managing it)",
                    r.ty
                )
            } else {
                format!(
                    "{} is not a kind this product manages, and it is not linked to the stack",
                    r.ty
                )
            }
        } else if in_group.contains(r.address.as_str()) {
            "a second resource of a kind the stack has one of, or one it does not use: it stays in Terraform's state".to_string()
        } else {
            "not linked to this stack (another stack, or a resource of its own): it stays in Terraform's state".to_string()
        };
        cx.report.left_alone.push(LeftAlone {
            address: r.address.clone(),
            ty: r.ty.clone(),
            why,
        });
    }
    for r in &cx.members {
        for attr in [
            "password",
            "value",
            "password_wo",
            "value_wo",
            "insecure_value",
        ] {
            if attrs::is_secret(r, attr) && r.get(attr).is_some_and(|v| !attrs::is_unset(v)) {
                cx.report
                    .secrets_in_state
                    .push(format!("{}.{attr}", r.address));
            }
        }
    }
    cx.report.plan_state_rm();
    let stack: Stack = serde_json::from_value(spec).map_err(|e| ImportError::Unsupported {
        address: name.to_string(),
        message: format!("the stack written does not read back: {e} (a bug: please report it with the state's resource types)"),
    })?;
    Ok((stack.with_defaults(), cx.report))
}

/// The resources a stack has exactly one of.
pub(super) struct Core<'a> {
    pub lb: &'a Resource,
    pub tg: &'a Resource,
    pub asg: &'a Resource,
    pub lt: &'a Resource,
    pub db: &'a Resource,
    pub subnet_group: &'a Resource,
    pub fs: &'a Resource,
    pub mount_targets: Vec<&'a Resource>,
}

impl<'a> Core<'a> {
    fn find(cx: &Ctx<'a>) -> Result<Core<'a>, ImportError> {
        let one = |ty: &str, what: &str| need(cx.one(ty, what)?, ty, what);
        let core = Core {
            lb: one("aws_lb", "load balancer")?,
            tg: one("aws_lb_target_group", "target group")?,
            asg: one("aws_autoscaling_group", "Auto Scaling group")?,
            lt: one("aws_launch_template", "launch template")?,
            db: one("aws_db_instance", "database")?,
            subnet_group: one("aws_db_subnet_group", "DB subnet group")?,
            fs: one("aws_efs_file_system", "file system")?,
            mount_targets: cx.of_type("aws_efs_mount_target"),
        };
        if core.lb.str("load_balancer_type").unwrap_or("application") != "application" {
            return Err(ImportError::Unsupported {
                address: core.lb.address.clone(),
                message: "only an Application Load Balancer can be taken over".into(),
            });
        }
        if core.db.str("engine").unwrap_or("mysql") != "mysql" {
            return Err(ImportError::Unsupported {
                address: core.db.address.clone(),
                message: format!(
                    "engine `{}`: the product runs RDS MySQL only",
                    core.db.str("engine").unwrap_or_default()
                ),
            });
        }
        Ok(core)
    }

    /// Records the explicit name of a resource under `spec.names`.
    fn named(cx: &mut Ctx<'_>, key: &str, value: &str) {
        cx.names.insert(key.into(), json!(value));
    }
}

fn build(cx: &mut Ctx<'_>, name: &str) -> Result<Value, ImportError> {
    let core = Core::find(cx)?;
    let region = [core.lb, core.tg, core.db, core.asg]
        .iter()
        .find_map(|r| r.str("arn").and_then(region_of))
        .unwrap_or("eu-west-3")
        .to_string();
    let groups = groups::take(cx, &core)?;
    let load_balancer = front::load_balancer(cx, &core, &groups)?;
    let network = compute::network(cx, &core);
    let (compute, user_data) = compute::compute(cx, &core)?;
    let database = data::database(cx, &core);
    let file_system = data::file_system(cx, &core);
    let secrets = data::secrets(cx, &core, &user_data)?;
    let prestashop = compute::container(cx, core.lt, &user_data, core.lb, core.db);
    cx.change(format!(
        "{}: the instances' user data becomes the product's bootstrap (deploy/bootstrap/user-data.sh): a new launch template version, then a rolling instance refresh (at least {}% of the group in service); the running instances keep their ids until you approve it",
        core.lt.address,
        presta_spec::defaults::min_healthy_percentage()
    ));
    let labels = labels(&cx.members);
    label_changes(cx, &labels);
    Ok(json!({
        "apiVersion": presta_spec::defaults::API_VERSION,
        "kind": presta_spec::defaults::KIND,
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "region": region,
            "network": network,
            "loadBalancer": load_balancer,
            "compute": compute,
            "prestashop": prestashop,
            "database": database,
            "fileSystem": file_system,
            "secrets": secrets,
            "names": cx.names,
        }
    }))
}

/// Resources that lack one of the stack's labels get it as a tag (the Auto Scaling group,
/// which Terraform's `default_tags` never reach).
fn label_changes(cx: &mut Ctx<'_>, labels: &BTreeMap<String, String>) {
    if labels.is_empty() {
        return;
    }
    let tagged = [
        "aws_lb",
        "aws_lb_target_group",
        "aws_launch_template",
        "aws_autoscaling_group",
        "aws_db_instance",
        "aws_db_subnet_group",
        "aws_efs_file_system",
        "aws_security_group",
    ];
    let mut lacking = Vec::new();
    for r in cx
        .members
        .iter()
        .filter(|r| tagged.contains(&r.ty.as_str()))
    {
        let has: BTreeMap<String, String> = if r.ty == "aws_autoscaling_group" {
            r.blocks("tag")
                .iter()
                .filter_map(|t| {
                    Some((
                        str_of(t, "key")?.to_string(),
                        str_of(t, "value")?.to_string(),
                    ))
                })
                .collect()
        } else {
            r.get("tags_all")
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default()
        };
        if labels.iter().any(|(k, v)| has.get(k) != Some(v)) {
            lacking.push(r.address.clone());
        }
    }
    if !lacking.is_empty() {
        let shown: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        cx.change(format!(
            "{}: the stack's labels ({}) are added as tags",
            lacking.join(", "),
            shown.join(", ")
        ));
    }
}

/// Tags every imported resource carries (`default_tags`, say): the stack's labels.
fn labels(members: &[&Resource]) -> BTreeMap<String, String> {
    let tagged: Vec<Map<String, Value>> = members
        .iter()
        .filter_map(|r| r.get("tags_all").and_then(Value::as_object).cloned())
        .filter(|t| !t.is_empty())
        .collect();
    let Some(first) = tagged.first() else {
        return BTreeMap::new();
    };
    first
        .iter()
        .filter(|(k, v)| {
            k.as_str() != "Name"
                && k.as_str() != presta_spec::naming::TAG_MANAGED_BY
                && !k.starts_with("aws:")
                && !k.starts_with(presta_spec::naming::RESERVED_TAG_PREFIX)
                && tagged.iter().all(|t| t.get(*k) == Some(v))
        })
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}
