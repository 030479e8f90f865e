//! One stack's resources, written as a `PrestaShopStack`: every spec field from the
//! attributes, the network by the subnets and VPC the resources use, the passwords by the SSM
//! parameter that holds them, the names as they are (`spec.names`).

use std::collections::{BTreeMap, BTreeSet};

use presta_spec::Stack;
use presta_spec::naming::Component;
use serde_json::{Map, Value, json};

use crate::ImportError;
use crate::attrs::{self, shown};
use crate::group::Group;
use crate::report::{Handle, Imported, LeftAlone, Report, Taggable, Unmapped};
use crate::state::Resource;

/// One ingress rule as the import reads it: protocol, ports, and where from (a CIDR or a
/// security group id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rule {
    protocol: String,
    from: i64,
    to: i64,
    source: String,
}

impl Rule {
    fn tcp(port: i64, source: &str) -> Rule {
        Rule {
            protocol: "tcp".into(),
            from: port,
            to: port,
            source: source.into(),
        }
    }

    fn show(&self) -> String {
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

struct Ctx<'a> {
    all: &'a [Resource],
    members: Vec<&'a Resource>,
    report: Report,
}

impl<'a> Ctx<'a> {
    fn of_type(&self, ty: &str) -> Vec<&'a Resource> {
        self.members
            .iter()
            .copied()
            .filter(|r| r.ty == ty)
            .collect()
    }

    /// The one resource of `ty`; an error when there are several.
    fn one(&self, ty: &str, what: &str) -> Result<Option<&'a Resource>, ImportError> {
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

    fn take(&mut self, r: &Resource, role: &str) {
        self.report.imported.push(Imported {
            address: r.address.clone(),
            ty: r.ty.clone(),
            role: role.to_string(),
        });
        self.report.unmapped.extend(attrs::leftovers(r));
    }

    fn tag(&mut self, r: &Resource, role: Component, handle: Handle) {
        self.report.taggable.push(Taggable {
            address: r.address.clone(),
            component: role.tag(),
            role,
            handle,
        });
    }

    fn unmapped(&mut self, r: &Resource, attr: &str, reason: impl Into<String>) {
        let value = r.values.get(attr).and_then(|v| shown(r, attr, v));
        self.report.unmapped.push(Unmapped {
            address: r.address.clone(),
            attribute: attr.to_string(),
            value,
            reason: reason.into(),
        });
    }

    fn change(&mut self, what: impl Into<String>) {
        self.report.takeover_changes.push(what.into());
    }
}

fn need<'a>(r: Option<&'a Resource>, ty: &str, what: &str) -> Result<&'a Resource, ImportError> {
    r.ok_or_else(|| ImportError::Unsupported {
        address: ty.to_string(),
        message: format!(
            "the stack has no {what} ({ty}): the reconciler would create one, which is not a takeover; import a state that holds the whole shop"
        ),
    })
}

fn region_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

fn sorted(v: Vec<String>) -> Vec<String> {
    let set: BTreeSet<String> = v.into_iter().collect();
    set.into_iter().collect()
}

fn int_of(m: &Map<String, Value>, k: &str) -> Option<i64> {
    match m.get(k)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn str_of<'m>(m: &'m Map<String, Value>, k: &str) -> Option<&'m str> {
    m.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn strs_of(m: &Map<String, Value>, k: &str) -> Vec<String> {
    m.get(k)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
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
        let why = if attrs::rules(&r.ty).is_none() {
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

fn build(cx: &mut Ctx<'_>, name: &str) -> Result<Value, ImportError> {
    let lb = need(
        cx.one("aws_lb", "load balancer")?,
        "aws_lb",
        "load balancer",
    )?;
    let tg = need(
        cx.one("aws_lb_target_group", "target group")?,
        "aws_lb_target_group",
        "target group",
    )?;
    let asg = need(
        cx.one("aws_autoscaling_group", "Auto Scaling group")?,
        "aws_autoscaling_group",
        "Auto Scaling group",
    )?;
    let lt = need(
        cx.one("aws_launch_template", "launch template")?,
        "aws_launch_template",
        "launch template",
    )?;
    let db = need(
        cx.one("aws_db_instance", "database")?,
        "aws_db_instance",
        "database",
    )?;
    let subnet_group = need(
        cx.one("aws_db_subnet_group", "DB subnet group")?,
        "aws_db_subnet_group",
        "DB subnet group",
    )?;
    let fs = need(
        cx.one("aws_efs_file_system", "file system")?,
        "aws_efs_file_system",
        "file system",
    )?;
    if lb.str("load_balancer_type").unwrap_or("application") != "application" {
        return Err(ImportError::Unsupported {
            address: lb.address.clone(),
            message: "only an Application Load Balancer can be taken over".into(),
        });
    }
    if db.str("engine").unwrap_or("mysql") != "mysql" {
        return Err(ImportError::Unsupported {
            address: db.address.clone(),
            message: format!(
                "engine `{}`: the product runs RDS MySQL only",
                db.str("engine").unwrap_or_default()
            ),
        });
    }
    let region = [lb, tg, db, asg]
        .iter()
        .find_map(|r| r.str("arn").and_then(region_of))
        .unwrap_or("eu-west-3")
        .to_string();

    // ---- security groups by the part they play
    let groups = security_groups(cx);
    let first_group = |r: &Resource, attr: &str| r.strings(attr).into_iter().next();
    let alb_sg = first_group(lb, "security_groups");
    let app_sg = first_group(lt, "vpc_security_group_ids");
    let db_sg = first_group(db, "vpc_security_group_ids");
    let mount_targets = cx.of_type("aws_efs_mount_target");
    let efs_sg = mount_targets
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
    let roles: Vec<(Component, Option<String>, &str)> = vec![
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
    ];
    let mut names: Map<String, Value> = Map::new();
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

    // ---- listeners
    let listeners = cx.of_type("aws_lb_listener");
    let http = listeners
        .iter()
        .copied()
        .find(|l| l.str("protocol") == Some("HTTP"));
    let https = listeners
        .iter()
        .copied()
        .find(|l| l.str("protocol") == Some("HTTPS"));
    let http = need(http, "aws_lb_listener", "HTTP listener")?;
    let http_port = http.int("port").unwrap_or(80);
    let http_action = http.block("default_action");
    let redirect = http_action.and_then(|a| str_of(a, "type")) == Some("redirect");
    let tg_arn = tg.str("arn").unwrap_or_default();
    if !redirect && http_action.and_then(|a| str_of(a, "target_group_arn")) != Some(tg_arn) {
        cx.unmapped(http, "default_action", "the product's HTTP listener forwards to the stack's target group (or redirects to HTTPS): this action is replaced once the reconciler manages the stack");
        cx.change(format!(
            "{}: its default action becomes a forward to the target group",
            http.address
        ));
    }
    cx.take(http, "HTTP listener");
    let mut https_spec = Value::Null;
    if let Some(h) = https {
        https_spec = json!({
            "certificateArn": h.str("certificate_arn").unwrap_or_default(),
            "port": h.int("port").unwrap_or(443),
            "sslPolicy": h.str("ssl_policy").unwrap_or("ELBSecurityPolicy-TLS13-1-2-2021-06"),
            "redirectHttp": redirect,
        });
        cx.take(h, "HTTPS listener");
    }
    for l in listeners
        .iter()
        .filter(|l| Some(**l) != Some(http) && Some(**l) != https)
    {
        cx.report.left_alone.push(LeftAlone {
            address: l.address.clone(),
            ty: l.ty.clone(),
            why: "a third listener: the product manages one HTTP and one HTTPS listener; the reconciler leaves it on the load balancer and Terraform's state keeps it".into(),
        });
    }

    // ---- allowed networks: the sources of the load balancer group's listener-port rules
    let ports: Vec<i64> = std::iter::once(http_port)
        .chain(https.and_then(|h| h.int("port")))
        .collect();
    let alb_rules = groups.rules.get(&alb_sg).cloned().unwrap_or_default();
    let mut allowed: Vec<String> = Vec::new();
    for r in &alb_rules {
        if r.protocol == "tcp"
            && r.from == r.to
            && ports.contains(&r.from)
            && r.source.contains('/')
            && !allowed.contains(&r.source)
        {
            allowed.push(r.source.clone());
        }
    }
    // Each group's rules against the product's: what the reconciler will authorise or revoke.
    let mut wanted: BTreeMap<&str, BTreeSet<Rule>> = BTreeMap::new();
    wanted.insert(
        &alb_sg,
        allowed
            .iter()
            .flat_map(|c| ports.iter().map(move |p| Rule::tcp(*p, c)))
            .collect(),
    );
    wanted.insert(&app_sg, [Rule::tcp(80, &alb_sg)].into());
    wanted.insert(&db_sg, [Rule::tcp(3306, &app_sg)].into());
    wanted.insert(&efs_sg, [Rule::tcp(2049, &app_sg)].into());
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

    // ---- load balancer and target group
    names.insert(
        "loadBalancer".into(),
        json!(lb.str("name").unwrap_or_default()),
    );
    cx.take(lb, "load balancer");
    cx.tag(
        lb,
        Component::LoadBalancer,
        Handle::Elb(lb.str("arn").unwrap_or_default().into()),
    );
    names.insert(
        "targetGroup".into(),
        json!(tg.str("name").unwrap_or_default()),
    );
    cx.take(tg, "target group");
    cx.tag(tg, Component::TargetGroup, Handle::Elb(tg_arn.into()));
    let hc = tg.block("health_check").cloned().unwrap_or_default();
    if str_of(&hc, "port").is_some_and(|p| p != "traffic-port") {
        cx.unmapped(
            tg,
            "health_check.port",
            "the product checks the traffic port",
        );
        cx.change(format!(
            "{}: the health check moves to the traffic port",
            tg.address
        ));
    }
    if str_of(&hc, "protocol").is_some_and(|p| p != "HTTP") {
        cx.unmapped(tg, "health_check.protocol", "the product checks over HTTP");
        cx.change(format!(
            "{}: the health check is made over HTTP",
            tg.address
        ));
    }
    if tg.int("port").unwrap_or(80) != 80 || tg.str("protocol").unwrap_or("HTTP") != "HTTP" {
        cx.unmapped(tg, "port", "the product's target group is HTTP on port 80, where the container listens; another port or protocol cannot be changed in place");
    }
    if tg.str("target_type").unwrap_or("instance") != "instance" {
        cx.unmapped(tg, "target_type", "the product registers instances");
    }
    let stick = tg.block("stickiness").cloned().unwrap_or_default();
    let stick_on = stick
        .get("enabled")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if stick_on && str_of(&stick, "type").is_some_and(|t| t != "lb_cookie") {
        cx.unmapped(
            tg,
            "stickiness.type",
            "the product uses load-balancer cookies (lb_cookie)",
        );
    }
    let stick_duration = int_of(&stick, "cookie_duration")
        .filter(|d| *d > 0)
        .unwrap_or(86400);

    // ---- network
    let vpc = tg
        .str("vpc_id")
        .or_else(|| lb.str("vpc_id"))
        .unwrap_or_default()
        .to_string();
    let public = sorted(lb.strings("subnets"));
    let private = sorted(asg.strings("vpc_zone_identifier"));
    let db_subnets = sorted(subnet_group.strings("subnet_ids"));
    if db_subnets != private {
        cx.unmapped(subnet_group, "subnet_ids", format!("the product puts the instances, the database and the mount targets in the same private subnets ({}); the DB subnet group's are changed to them", private.join(", ")));
        cx.change(format!(
            "{}: its subnets become the instances' ({})",
            subnet_group.address,
            private.join(", ")
        ));
    }
    let mt_subnets = sorted(
        mount_targets
            .iter()
            .filter_map(|m| m.str("subnet_id").map(str::to_string))
            .collect(),
    );
    if mt_subnets != private {
        cx.change(format!(
            "file system mount targets: moved to the instances' subnets ({}) from {}",
            private.join(", "),
            mt_subnets.join(", ")
        ));
    }

    // ---- compute
    let (ami, profile, hop, root_gib, user_data) = launch_template(cx, lt)?;
    names.insert(
        "launchTemplate".into(),
        json!(lt.str("name").unwrap_or_default()),
    );
    cx.take(lt, "launch template");
    cx.tag(
        lt,
        Component::LaunchTemplate,
        Handle::Ec2(lt.str("id").unwrap_or_default().into()),
    );
    names.insert(
        "autoScalingGroup".into(),
        json!(asg.str("name").unwrap_or_default()),
    );
    cx.take(asg, "Auto Scaling group");
    cx.tag(
        asg,
        Component::AutoScalingGroup,
        Handle::AutoScaling(asg.str("name").unwrap_or_default().into()),
    );
    if asg.str("health_check_type").unwrap_or("EC2") != "ELB" {
        cx.change(format!(
            "{}: health checks come from the load balancer (ELB) instead of EC2 only",
            asg.address
        ));
    }
    let mut asg_tgs: BTreeSet<String> = asg.strings("target_group_arns").into_iter().collect();
    for a in cx.of_type("aws_autoscaling_attachment") {
        if a.str("autoscaling_group_name") == asg.str("name") {
            if let Some(arn) = a.str("lb_target_group_arn") {
                asg_tgs.insert(arn.to_string());
            }
            if a.str("elb").is_some() {
                cx.unmapped(a, "elb", "a Classic Load Balancer: the product attaches the group to its target group only");
            }
            cx.take(a, "the Auto Scaling group's attachment to the target group");
        }
    }
    if !asg_tgs.contains(tg_arn) {
        cx.change(format!("{}: attached to the target group", asg.address));
    }
    let mut target_cpu = json!(presta_spec::defaults::target_cpu_utilization());
    let policies = cx.of_type("aws_autoscaling_policy");
    let cpu_policy = policies.iter().copied().find(|p| {
        p.block("target_tracking_configuration")
            .and_then(|t| t.get("predefined_metric_specification"))
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|m| m.get("predefined_metric_type"))
            .and_then(Value::as_str)
            == Some("ASGAverageCPUUtilization")
    });
    match cpu_policy {
        Some(p) => {
            let target = p
                .block("target_tracking_configuration")
                .and_then(|t| t.get("target_value"))
                .and_then(Value::as_f64)
                .unwrap_or(60.0);
            target_cpu = json!(target.round() as u32);
            names.insert(
                "scalingPolicy".into(),
                json!(p.str("name").unwrap_or_default()),
            );
            cx.take(p, "CPU target-tracking scaling policy");
        }
        None => cx.change(format!(
            "{}: a target-tracking scaling policy keeps the average CPU at {}%",
            asg.address,
            presta_spec::defaults::target_cpu_utilization()
        )),
    }
    for p in policies.iter().filter(|p| Some(**p) != cpu_policy) {
        cx.report.left_alone.push(LeftAlone {
            address: p.address.clone(),
            ty: p.ty.clone(),
            why: "a scaling policy other than the CPU target tracking the product manages: it stays on the group and in Terraform's state".into(),
        });
    }

    // ---- database
    names.insert(
        "database".into(),
        json!(db.str("identifier").unwrap_or_default()),
    );
    cx.take(db, "database");
    cx.tag(
        db,
        Component::DbInstance,
        Handle::Rds(db.str("arn").unwrap_or_default().into()),
    );
    names.insert(
        "dbSubnetGroup".into(),
        json!(subnet_group.str("name").unwrap_or_default()),
    );
    cx.take(subnet_group, "DB subnet group");
    cx.tag(
        subnet_group,
        Component::DbSubnetGroup,
        Handle::Rds(subnet_group.str("arn").unwrap_or_default().into()),
    );
    database_checks(cx, db);

    // ---- file system
    names.insert(
        "fileSystem".into(),
        json!(fs.str("creation_token").unwrap_or_default()),
    );
    cx.take(fs, "file system");
    cx.tag(
        fs,
        Component::FileSystem,
        Handle::Efs(fs.str("id").unwrap_or_default().into()),
    );
    for m in &mount_targets {
        cx.take(m, "file system mount target");
    }
    let mut backups = false;
    for b in cx.of_type("aws_efs_backup_policy") {
        backups = b.block("backup_policy").and_then(|p| str_of(p, "status")) == Some("ENABLED");
        cx.take(b, "file system backup policy");
    }
    if fs.str("performance_mode").unwrap_or("generalPurpose") != "generalPurpose" {
        cx.unmapped(fs, "performance_mode", "the product's file system is generalPurpose; the mode is fixed at creation, so this one keeps its own");
    }
    let mut to_ia: Value = Value::Null;
    let mut to_primary = false;
    for p in fs.blocks("lifecycle_policy") {
        if let Some(t) = str_of(p, "transition_to_ia") {
            to_ia = json!(
                t.trim_start_matches("AFTER_")
                    .trim_end_matches("_DAYS")
                    .parse::<u32>()
                    .ok()
            );
        }
        if str_of(p, "transition_to_primary_storage_class") == Some("AFTER_1_ACCESS") {
            to_primary = true;
        }
        if str_of(p, "transition_to_archive").is_some() {
            cx.unmapped(fs, "lifecycle_policy.transition_to_archive", "the product does not manage the Archive storage class: the transition is removed with the lifecycle configuration the reconciler writes");
        }
    }
    let throughput = fs.str("throughput_mode").unwrap_or("bursting").to_string();
    let provisioned = fs
        .float("provisioned_throughput_in_mibps")
        .filter(|v| *v > 0.0);

    // ---- the password's parameter and the container, from the user data
    let params = cx.of_type("aws_ssm_parameter");
    let db_param = params
        .iter()
        .copied()
        .find(|p| p.str("name").is_some_and(|n| user_data.contains(n)))
        .or_else(|| {
            let secure: Vec<&Resource> = params
                .iter()
                .copied()
                .filter(|p| p.str("type") == Some("SecureString"))
                .collect();
            (secure.len() == 1).then(|| secure[0])
        })
        .ok_or_else(|| ImportError::Unsupported {
            address: db.address.clone(),
            message: "no SSM parameter of the state holds the database password (none is named in the user data, and there is not exactly one SecureString): put the current password in a SecureString (`aws ssm put-parameter --type SecureString --name /shop/db-password --value ...`), import it into Terraform (`terraform import aws_ssm_parameter.db_password /shop/db-password`) and import again".into(),
        })?;
    if db_param.str("type") != Some("SecureString") {
        cx.unmapped(db_param, "type", "the product keeps passwords in SecureStrings only and never overwrites one: its plan blocks on this parameter until it is re-created as a SecureString by hand");
    }
    cx.take(
        db_param,
        "database password (SecureString; its value is never read)",
    );
    cx.tag(
        db_param,
        Component::DbInstance,
        Handle::Ssm(db_param.str("name").unwrap_or_default().into()),
    );
    for p in params.iter().filter(|p| **p != db_param) {
        cx.report.left_alone.push(LeftAlone {
            address: p.address.clone(),
            ty: p.ty.clone(),
            why: "a parameter the product's stack does not use: it stays in Terraform's state"
                .into(),
        });
    }
    let prestashop = container(cx, lt, &user_data, lb, db);
    cx.change(format!(
        "{}: the instances' user data becomes the product's bootstrap (deploy/bootstrap/user-data.sh): a new launch template version, then a rolling instance refresh (at least {}% of the group in service); the running instances keep their ids until you approve it",
        lt.address,
        presta_spec::defaults::min_healthy_percentage()
    ));

    names.insert("securityGroups".into(), Value::Object(sg_names));
    let lb_spec = json!({
        "scheme": if lb.bool("internal").unwrap_or(false) { "internal" } else { "internet-facing" },
        "allowedCidrs": allowed,
        "idleTimeoutSeconds": lb.int("idle_timeout").unwrap_or(60),
        "dropInvalidHeaderFields": lb.bool("drop_invalid_header_fields").unwrap_or(false),
        "deletionProtection": lb.bool("enable_deletion_protection").unwrap_or(false),
        "httpPort": http_port,
        "healthCheck": {
            "path": str_of(&hc, "path").unwrap_or("/"),
            "matcher": str_of(&hc, "matcher").unwrap_or("200"),
            "intervalSeconds": int_of(&hc, "interval").unwrap_or(30),
            "timeoutSeconds": int_of(&hc, "timeout").unwrap_or(5),
            "healthyThreshold": int_of(&hc, "healthy_threshold").unwrap_or(5),
            "unhealthyThreshold": int_of(&hc, "unhealthy_threshold").unwrap_or(2),
        },
        "stickiness": {"enabled": stick_on, "durationSeconds": stick_duration},
        "deregistrationDelaySeconds": tg.int("deregistration_delay").unwrap_or(300),
    });
    let mut lb_spec = lb_spec;
    if !https_spec.is_null() {
        lb_spec["https"] = https_spec;
    }
    let labels = labels(&cx.members);
    label_changes(cx, &labels);
    if asg
        .block("launch_template")
        .and_then(|t| str_of(t, "version"))
        .is_some_and(|v| v != "$Default")
    {
        cx.change(format!(
            "{}: the group follows the launch template's default version ($Default), which the reconciler moves when it writes a new version",
            asg.address
        ));
    }
    Ok(json!({
        "apiVersion": presta_spec::defaults::API_VERSION,
        "kind": presta_spec::defaults::KIND,
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "region": region,
            "network": {
                "vpc": {"id": vpc},
                "publicSubnets": {"ids": public},
                "privateSubnets": {"ids": private},
            },
            "loadBalancer": lb_spec,
            "compute": {
                "ami": ami,
                "instanceType": lt.str("instance_type").unwrap_or("t3.small"),
                "minSize": asg.int("min_size").unwrap_or(1),
                "maxSize": asg.int("max_size").unwrap_or(1),
                "desiredCapacity": asg.int("desired_capacity").unwrap_or(asg.int("min_size").unwrap_or(1)),
                "targetCpuUtilization": target_cpu,
                "rootVolumeSizeGiB": root_gib,
                "instanceProfile": profile,
                "imdsHopLimit": hop,
                "healthCheckGracePeriodSeconds": asg.int("health_check_grace_period").unwrap_or(300),
            },
            "prestashop": prestashop,
            "database": {
                "engineVersion": db.str("engine_version").unwrap_or("8.0"),
                "instanceClass": db.str("instance_class").unwrap_or_default(),
                "allocatedStorageGiB": db.int("allocated_storage").unwrap_or(20),
                "maxAllocatedStorageGiB": db.int("max_allocated_storage").filter(|m| *m > 0),
                "multiAz": db.bool("multi_az").unwrap_or(false),
                "backupRetentionDays": db.int("backup_retention_period").unwrap_or(0),
                "deletionProtection": db.bool("deletion_protection").unwrap_or(false),
                "name": db.str("db_name").unwrap_or("prestashop"),
                "username": db.str("username").unwrap_or_default(),
            },
            "fileSystem": {
                "encrypted": fs.bool("encrypted").unwrap_or(false),
                "throughputMode": throughput,
                "provisionedThroughputMibps": provisioned,
                "transitionToIaDays": to_ia,
                "transitionToPrimaryOnAccess": to_primary,
                "automaticBackups": backups,
            },
            "secrets": {
                "dbPasswordParameter": db_param.str("name").unwrap_or_default(),
                "adminPasswordParameter": presta_spec::model::NO_ADMIN_PASSWORD,
            },
            "names": names,
        }
    }))
}

/// The security groups' rules, inline and from separate rule resources, by group id.
#[derive(Clone, Default)]
struct Groups<'a> {
    rules: BTreeMap<String, Vec<Rule>>,
    egress: BTreeMap<String, Vec<Rule>>,
    rule_resources: Vec<&'a Resource>,
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

type TemplateParts = (Value, String, i64, i64, String);

/// The launch template's AMI (an SSM parameter when a data source of the state resolved it),
/// instance profile, hop limit, root volume and user data text.
fn launch_template(cx: &mut Ctx<'_>, lt: &Resource) -> Result<TemplateParts, ImportError> {
    let image = lt.str("image_id").unwrap_or_default().to_string();
    let from_parameter = cx
        .all
        .iter()
        .filter(|r| r.mode == "data" && r.ty == "aws_ssm_parameter")
        .find(|r| r.str("value") == Some(image.as_str()))
        .and_then(|r| r.str("name"));
    let ami = match from_parameter {
        Some(name) => json!({"ssmParameter": name}),
        None => json!({"id": image}),
    };
    let profile = lt
        .block("iam_instance_profile")
        .and_then(|p| {
            str_of(p, "name")
                .map(str::to_string)
                .or_else(|| str_of(p, "arn").and_then(|a| a.rsplit('/').next()).map(str::to_string))
        })
        .ok_or_else(|| ImportError::Unsupported {
            address: lt.address.clone(),
            message: "the launch template has no IAM instance profile: the product's instances read their password from SSM and mount EFS with one; add it in Terraform and import again".into(),
        })?;
    let meta = lt.block("metadata_options").cloned().unwrap_or_default();
    if str_of(&meta, "http_tokens") != Some("required") {
        cx.change(format!(
            "{}: IMDSv2 becomes required (http_tokens = required)",
            lt.address
        ));
    }
    let hop = int_of(&meta, "http_put_response_hop_limit")
        .filter(|h| *h > 0)
        .unwrap_or(presta_spec::defaults::imds_hop_limit().into());
    let root = lt
        .blocks("block_device_mappings")
        .into_iter()
        .find(|b| str_of(b, "device_name").is_some_and(|d| d == "/dev/xvda" || d == "/dev/sda1"))
        .and_then(|b| {
            b.get("ebs")
                .and_then(Value::as_array)
                .and_then(|e| e.first())
                .and_then(Value::as_object)
                .cloned()
        });
    let root_gib = match &root {
        Some(ebs) => {
            if str_of(ebs, "volume_type").is_some_and(|t| t != "gp3") {
                cx.change(format!("{}: the root volume becomes gp3", lt.address));
            }
            if ebs
                .get("encrypted")
                .and_then(|v| v.as_str().map(|s| s == "true").or(v.as_bool()))
                != Some(true)
            {
                cx.change(format!("{}: the root volume becomes encrypted", lt.address));
            }
            int_of(ebs, "volume_size")
                .unwrap_or(presta_spec::defaults::root_volume_size_gib().into())
        }
        None => {
            let gib = presta_spec::defaults::root_volume_size_gib();
            cx.unmapped(lt, "block_device_mappings", format!("no root volume is set, so the AMI's default is used; the product's instances get an encrypted gp3 root volume of {gib} GiB"));
            cx.change(format!(
                "{}: the root volume becomes an encrypted {gib} GiB gp3 volume",
                lt.address
            ));
            gib.into()
        }
    };
    let user_data = attrs::user_data(lt).unwrap_or_default();
    Ok((ami, profile, hop, root_gib, user_data))
}

/// The container's settings, read from the `docker run` of the user data.
fn container(
    cx: &mut Ctx<'_>,
    lt: &Resource,
    user_data: &str,
    lb: &Resource,
    db: &Resource,
) -> Value {
    let image = user_data
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .find(|w| {
            let repo = w.split(':').next().unwrap_or_default();
            repo.ends_with("prestashop/prestashop") && w.contains(':')
        })
        .map(str::to_string);
    let image = match image {
        Some(i) => i,
        None => {
            cx.unmapped(lt, "user_data", "no `prestashop/prestashop:<tag>` image with a tag is run by the user data: set spec.prestashop.image to the tag the shop runs before adopting (`validate` refuses the placeholder)");
            "prestashop/prestashop:SET-THE-TAG-THE-SHOP-RUNS".to_string()
        }
    };
    let env = docker_env(user_data);
    let dns = lb.str("dns_name").unwrap_or_default();
    let mut out = json!({ "image": image });
    let mut extra: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &env {
        match k.as_str() {
            "PS_DOMAIN" => {
                if v != dns && !v.contains("${") && !v.starts_with('$') {
                    out["domain"] = json!(v);
                }
            }
            "ADMIN_MAIL" => out["adminEmail"] = json!(v),
            "PS_LANGUAGE" => out["language"] = json!(v),
            "PS_COUNTRY" => out["country"] = json!(v),
            "PS_FOLDER_ADMIN" => out["adminFolder"] = json!(v),
            "DB_NAME" => {
                if Some(v.as_str()) != db.str("db_name") {
                    cx.change(format!("the container's DB_NAME ({v}) becomes the database's name ({})", db.str("db_name").unwrap_or_default()));
                }
            }
            "DB_USER" => {
                if Some(v.as_str()) != db.str("username") {
                    cx.change(format!("the container's DB_USER ({v}) becomes the database's master user ({})", db.str("username").unwrap_or_default()));
                }
            }
            "DB_SERVER" | "DB_PASSWD" | "DB_PORT" | "ADMIN_PASSWD" => {}
            "PS_HANDLE_DYNAMIC_DOMAIN" if v != "0" => cx.change(format!(
                "the container's PS_HANDLE_DYNAMIC_DOMAIN={v} becomes 0: behind a load balancer it rewrites the shop's domain on every request (shared/mission/prestashop-facts.md); the domain is set once in the shop"
            )),
            "PS_INSTALL_AUTO" if v != "0" => cx.change(format!(
                "the container's PS_INSTALL_AUTO={v} is no longer set on every start: the product's bootstrap installs once, under a lock on EFS, and never over an installed shop"
            )),
            "PS_ERASE_DB" | "PS_INSTALL_DB" if v != "0" => cx.change(format!("the container's {k}={v} becomes 0")),
            "PS_ENABLE_SSL" | "DB_PREFIX" | "PS_DEV_MODE" | "PS_HANDLE_DYNAMIC_DOMAIN" | "PS_INSTALL_AUTO" | "PS_ERASE_DB" | "PS_INSTALL_DB" => {}
            _ if k.contains("PASS") || k.contains("SECRET") || k.contains("KEY") => {
                cx.report.unmapped.push(Unmapped {
                    address: lt.address.clone(),
                    attribute: format!("user_data (docker -e {k})"),
                    value: None,
                    reason: "looks like a secret: not copied into the stack; put it in an SSM SecureString and pass it yourself".into(),
                });
            }
            _ => {
                extra.insert(k.clone(), v.clone());
            }
        }
    }
    if out.get("adminEmail").is_none() {
        cx.unmapped(lt, "user_data", "no ADMIN_MAIL in the container's environment: spec.prestashop.adminEmail is a placeholder (it is used only to install a new shop, which an imported stack never does)");
        out["adminEmail"] = json!("admin@example.invalid");
    }
    if !extra.is_empty() {
        out["extraEnv"] = json!(extra);
    }
    out
}

/// The `-e NAME=VALUE` (`--env`) pairs of the user data's `docker run`, quotes removed.
fn docker_env(text: &str) -> Vec<(String, String)> {
    let joined = text.replace("\\\n", " ");
    let mut out = Vec::new();
    let words: Vec<&str> = joined.split_whitespace().collect();
    for pair in words.windows(2) {
        if pair[0] == "-e" || pair[0] == "--env" {
            let w = pair[1].trim_matches(|c| c == '"' || c == '\'');
            if let Some((k, v)) = w.split_once('=') {
                let v = v.trim_matches(|c| c == '"' || c == '\'');
                out.push((k.to_string(), v.to_string()));
            }
        } else if let Some(w) = pair[0].strip_prefix("--env=")
            && let Some((k, v)) = w.trim_matches('"').split_once('=')
        {
            out.push((k.to_string(), v.trim_matches('"').to_string()));
        }
    }
    out
}

fn database_checks(cx: &mut Ctx<'_>, db: &Resource) {
    if db.bool("storage_encrypted") != Some(true) {
        cx.unmapped(db, "storage_encrypted", "the database is not encrypted; encryption can only be added by restoring an encrypted snapshot into a new instance, which the reconciler never does: its plan shows this as blocked");
    }
    if db.str("storage_type").is_some_and(|t| t != "gp3") {
        cx.unmapped(
            db,
            "storage_type",
            "the product creates gp3 storage; an existing instance keeps its own (not compared)",
        );
    }
    if db.bool("publicly_accessible") == Some(true) {
        cx.change(format!("{}: no longer publicly accessible", db.address));
    }
    if db.bool("manage_master_user_password") == Some(true) {
        cx.unmapped(db, "manage_master_user_password", "the master password lives in Secrets Manager; the product keeps it in an SSM SecureString and would set a new one");
    }
    for (attr, default) in [
        ("parameter_group_name", "default."),
        ("option_group_name", "default:"),
    ] {
        if db.str(attr).is_some_and(|v| !v.starts_with(default)) {
            cx.unmapped(db, attr, "a custom group: kept as it is (the product does not manage it); a database the reconciler restores gets the default one");
        }
    }
    if db.int("port").is_some_and(|p| p != 3306) {
        cx.unmapped(db, "port", "the product's security groups open 3306: the database's group rule is set to 3306 while it listens elsewhere");
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_env_reads_quoted_and_continued_lines() {
        let text = "docker run -d \\\n  -e DB_SERVER=db.x \\\n  -e \"PS_LANGUAGE=fr\" --env PS_COUNTRY='FR' --env=X=1 img";
        let env = docker_env(text);
        assert!(env.contains(&("DB_SERVER".into(), "db.x".into())));
        assert!(env.contains(&("PS_LANGUAGE".into(), "fr".into())));
        assert!(env.contains(&("PS_COUNTRY".into(), "FR".into())));
        assert!(env.contains(&("X".into(), "1".into())));
    }
}
