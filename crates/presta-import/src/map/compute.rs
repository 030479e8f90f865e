//! The network, the launch template, the Auto Scaling group and its policy, and the
//! container read from the user data.

use std::collections::{BTreeMap, BTreeSet};

use presta_spec::naming::Component;
use serde_json::{Value, json};

use super::{Core, Ctx, int_of, sorted, str_of};
use crate::ImportError;
use crate::attrs;
use crate::report::{Handle, LeftAlone, Unmapped};
use crate::state::Resource;

/// The `spec.network` section: the VPC and subnets the resources use.
pub(super) fn network(cx: &mut Ctx<'_>, core: &Core<'_>) -> Value {
    let (lb, tg, asg, subnet_group) = (core.lb, core.tg, core.asg, core.subnet_group);
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
        core.mount_targets
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
    json!({
        "vpc": {"id": vpc},
        "publicSubnets": {"ids": public},
        "privateSubnets": {"ids": private},
    })
}

/// The `spec.compute` section, and the user data's text.
pub(super) fn compute(cx: &mut Ctx<'_>, core: &Core<'_>) -> Result<(Value, String), ImportError> {
    let (lt, asg) = (core.lt, core.asg);
    let (ami, profile, hop, root_gib, user_data) = launch_template(cx, lt)?;
    Core::named(cx, "launchTemplate", lt.str("name").unwrap_or_default());
    cx.take(lt, "launch template");
    cx.tag(
        lt,
        Component::LaunchTemplate,
        Handle::Ec2(lt.str("id").unwrap_or_default().into()),
    );
    Core::named(cx, "autoScalingGroup", asg.str("name").unwrap_or_default());
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
    if !asg_tgs.contains(core.tg.str("arn").unwrap_or_default()) {
        cx.change(format!("{}: attached to the target group", asg.address));
    }
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
    let target_cpu = scaling_policy(cx, core);
    let compute = json!({
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
    });
    Ok((compute, user_data))
}

/// The CPU target-tracking policy's target (the product's default when there is none).
fn scaling_policy(cx: &mut Ctx<'_>, core: &Core<'_>) -> Value {
    let asg = core.asg;
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
            Core::named(cx, "scalingPolicy", p.str("name").unwrap_or_default());
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
    target_cpu
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
pub(super) fn container(
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
    // HTTPS needs the shop's own name: the container's, else the certificate's.
    let https = cx
        .of_type("aws_lb_listener")
        .iter()
        .any(|l| l.str("protocol") == Some("HTTPS"));
    if https && out.get("domain").is_none() {
        let certificate = cx
            .all
            .iter()
            .filter(|r| r.managed() && r.ty == "aws_acm_certificate")
            .find_map(|c| c.str("domain_name"));
        match certificate {
            Some(d) => out["domain"] = json!(d),
            None => cx.unmapped(lt, "user_data", "the load balancer serves HTTPS but neither the container's PS_DOMAIN nor a certificate of the state names the shop's domain: set spec.prestashop.domain (`validate` refuses HTTPS without it)"),
        }
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
