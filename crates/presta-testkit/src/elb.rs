//! Elastic Load Balancing v2: load balancers (with their attributes and a `provisioning` time),
//! target groups, listeners, tags, and the health of the targets the Auto Scaling groups
//! register.

use aws_sdk_elasticloadbalancingv2::operation as op;
use aws_sdk_elasticloadbalancingv2::types::{
    AvailabilityZone, Listener, LoadBalancer, LoadBalancerAttribute, LoadBalancerSchemeEnum,
    LoadBalancerState, LoadBalancerStateEnum, Matcher, Tag, TagDescription, TargetDescription,
    TargetGroup, TargetGroupAttribute, TargetHealth, TargetHealthDescription,
    TargetHealthStateEnum,
};
use tokio::time::Instant;

use crate::wire::{Failure, Wire};
use crate::world::World;
use crate::{Handler, handle};

const W: Wire = Wire::Query;

fn lb_index(w: &World, arn: Option<&str>) -> Result<usize, Failure> {
    w.load_balancers
        .iter()
        .position(|l| arn.is_some() && l.lb.load_balancer_arn() == arn)
        .ok_or_else(|| {
            Failure::new(
                "LoadBalancerNotFound",
                format!("Load balancer '{}' not found", arn.unwrap_or_default()),
            )
        })
}

fn tg_index(w: &World, arn: Option<&str>) -> Result<usize, Failure> {
    w.target_groups
        .iter()
        .position(|t| arn.is_some() && t.tg.target_group_arn() == arn)
        .ok_or_else(|| {
            Failure::new(
                "TargetGroupNotFound",
                format!("Target groups '{}' not found", arn.unwrap_or_default()),
            )
        })
}

fn merge(into: &mut Vec<(String, String)>, tags: impl IntoIterator<Item = (String, String)>) {
    for (k, v) in tags {
        into.retain(|(have, _)| *have != k);
        into.push((k, v));
    }
}

fn pairs(tags: &[Tag]) -> Vec<(String, String)> {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn add_tags(w: &mut World, arn: &str, tags: &[Tag]) {
    let entry = w.elb_tags.entry(arn.to_string()).or_default();
    let mut have = pairs(entry);
    merge(&mut have, pairs(tags));
    *entry = have
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
}

pub(crate) fn register(h: &mut Vec<Handler>) {
    load_balancers(h);
    target_groups(h);
    listeners(h);
    handle!(
        h,
        W,
        "AddTags",
        op::add_tags::AddTagsInput,
        |w: &mut World, i: &op::add_tags::AddTagsInput| {
            for arn in i.resource_arns() {
                let known = w
                    .load_balancers
                    .iter()
                    .any(|l| l.lb.load_balancer_arn() == Some(arn))
                    || w.target_groups
                        .iter()
                        .any(|t| t.tg.target_group_arn() == Some(arn));
                if !known {
                    return Err(Failure::new(
                        "LoadBalancerNotFound",
                        format!("'{arn}' not found"),
                    ));
                }
                add_tags(w, arn, i.tags());
            }
            Ok(op::add_tags::AddTagsOutput::builder().build())
        }
    );
    handle!(
        h,
        W,
        "DescribeTags",
        op::describe_tags::DescribeTagsInput,
        |w: &mut World, i: &op::describe_tags::DescribeTagsInput| {
            let found = i
                .resource_arns()
                .iter()
                .map(|arn| {
                    TagDescription::builder()
                        .resource_arn(arn)
                        .set_tags(Some(w.elb_tags.get(arn).cloned().unwrap_or_default()))
                        .build()
                })
                .collect();
            Ok(op::describe_tags::DescribeTagsOutput::builder()
                .set_tag_descriptions(Some(found))
                .build())
        }
    );
}

fn load_balancers(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "DescribeLoadBalancers",
        op::describe_load_balancers::DescribeLoadBalancersInput,
        |w: &mut World, i: &op::describe_load_balancers::DescribeLoadBalancersInput| {
            let found: Vec<LoadBalancer> = w
                .load_balancers
                .iter()
                .map(|l| &l.lb)
                .filter(|l| {
                    (i.names().is_empty()
                        || i.names().iter().any(|n| l.load_balancer_name() == Some(n)))
                        && (i.load_balancer_arns().is_empty()
                            || i.load_balancer_arns()
                                .iter()
                                .any(|a| l.load_balancer_arn() == Some(a)))
                })
                .cloned()
                .collect();
            if found.is_empty() && !i.names().is_empty() {
                return Err(Failure::new(
                    "LoadBalancerNotFound",
                    "One or more load balancers not found",
                ));
            }
            Ok(
                op::describe_load_balancers::DescribeLoadBalancersOutput::builder()
                    .set_load_balancers(Some(found))
                    .build(),
            )
        }
    );
    handle!(
        h,
        W,
        "CreateLoadBalancer",
        op::create_load_balancer::CreateLoadBalancerInput,
        |w: &mut World, i: &op::create_load_balancer::CreateLoadBalancerInput| {
            let name = i.name().unwrap_or_default().to_string();
            if let Some(l) = w
                .load_balancers
                .iter()
                .find(|l| l.lb.load_balancer_name() == Some(&name))
            {
                return Err(Failure::new(
                    "DuplicateLoadBalancerName",
                    format!(
                        "A load balancer with the same name '{name}' exists: {}",
                        l.lb.load_balancer_arn().unwrap_or_default()
                    ),
                ));
            }
            let zones = zones(w, i.subnets())?;
            let vpc = w
                .subnets
                .iter()
                .find(|s| i.subnets().first().map(String::as_str) == s.subnet_id())
                .and_then(|s| s.vpc_id().map(str::to_string));
            let suffix = w.id("app");
            let arn = w.arn(
                "elasticloadbalancing",
                &format!("loadbalancer/app/{name}/{}", &suffix[4..]),
            );
            let lb = LoadBalancer::builder()
                .load_balancer_arn(&arn)
                .load_balancer_name(&name)
                .dns_name(format!(
                    "{name}-{}.{}.elb.amazonaws.com",
                    &suffix[10..],
                    w.region
                ))
                .scheme(
                    i.scheme()
                        .cloned()
                        .unwrap_or(LoadBalancerSchemeEnum::InternetFacing),
                )
                .set_vpc_id(vpc)
                .r#type(aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum::Application)
                .set_ip_address_type(i.ip_address_type().cloned())
                .state(
                    LoadBalancerState::builder()
                        .code(LoadBalancerStateEnum::Provisioning)
                        .build(),
                )
                .set_availability_zones(Some(zones))
                .set_security_groups(Some(i.security_groups().to_vec()))
                .build();
            let attributes = [
                ("deletion_protection.enabled", "false"),
                ("idle_timeout.timeout_seconds", "60"),
                ("routing.http.drop_invalid_header_fields.enabled", "false"),
                ("access_logs.s3.enabled", "false"),
            ]
            .into_iter()
            .map(|(k, v)| LoadBalancerAttribute::builder().key(k).value(v).build())
            .collect();
            let ready_at = Instant::now() + w.delays.load_balancer;
            w.load_balancers.push(crate::world::LoadBalancer {
                lb: lb.clone(),
                attributes,
                ready_at,
            });
            add_tags(w, &arn, i.tags());
            Ok(
                op::create_load_balancer::CreateLoadBalancerOutput::builder()
                    .load_balancers(lb)
                    .build(),
            )
        }
    );
    handle!(
        h,
        W,
        "DescribeLoadBalancerAttributes",
        op::describe_load_balancer_attributes::DescribeLoadBalancerAttributesInput,
        |w: &mut World,
         i: &op::describe_load_balancer_attributes::DescribeLoadBalancerAttributesInput| {
            let n = lb_index(w, i.load_balancer_arn())?;
            Ok(op::describe_load_balancer_attributes::DescribeLoadBalancerAttributesOutput::builder()
            .set_attributes(Some(w.load_balancers[n].attributes.clone()))
            .build())
        }
    );
    handle!(
        h,
        W,
        "ModifyLoadBalancerAttributes",
        op::modify_load_balancer_attributes::ModifyLoadBalancerAttributesInput,
        |w: &mut World,
         i: &op::modify_load_balancer_attributes::ModifyLoadBalancerAttributesInput| {
            let n = lb_index(w, i.load_balancer_arn())?;
            let attrs = &mut w.load_balancers[n].attributes;
            for a in i.attributes() {
                attrs.retain(|have| have.key() != a.key());
                attrs.push(a.clone());
            }
            Ok(
                op::modify_load_balancer_attributes::ModifyLoadBalancerAttributesOutput::builder()
                    .set_attributes(Some(attrs.clone()))
                    .build(),
            )
        }
    );
    handle!(
        h,
        W,
        "SetSecurityGroups",
        op::set_security_groups::SetSecurityGroupsInput,
        |w: &mut World, i: &op::set_security_groups::SetSecurityGroupsInput| {
            let n = lb_index(w, i.load_balancer_arn())?;
            w.load_balancers[n].lb.security_groups = Some(i.security_groups().to_vec());
            Ok(op::set_security_groups::SetSecurityGroupsOutput::builder()
                .set_security_group_ids(Some(i.security_groups().to_vec()))
                .build())
        }
    );
    handle!(
        h,
        W,
        "SetSubnets",
        op::set_subnets::SetSubnetsInput,
        |w: &mut World, i: &op::set_subnets::SetSubnetsInput| {
            let n = lb_index(w, i.load_balancer_arn())?;
            let zones = zones(w, i.subnets())?;
            w.load_balancers[n].lb.availability_zones = Some(zones.clone());
            Ok(op::set_subnets::SetSubnetsOutput::builder()
                .set_availability_zones(Some(zones))
                .build())
        }
    );
    handle!(
        h,
        W,
        "DeleteLoadBalancer",
        op::delete_load_balancer::DeleteLoadBalancerInput,
        |w: &mut World, i: &op::delete_load_balancer::DeleteLoadBalancerInput| {
            let Ok(n) = lb_index(w, i.load_balancer_arn()) else {
                // Deleting a load balancer that does not exist succeeds.
                return Ok(op::delete_load_balancer::DeleteLoadBalancerOutput::builder().build());
            };
            let protected = w.load_balancers[n].attributes.iter().any(|a| {
                a.key() == Some("deletion_protection.enabled") && a.value() == Some("true")
            });
            if protected {
                return Err(Failure::new(
                    "OperationNotPermitted",
                    "Load balancer has deletion protection enabled",
                ));
            }
            let arn = w
                .load_balancers
                .remove(n)
                .lb
                .load_balancer_arn
                .unwrap_or_default();
            w.listeners.retain(|l| l.load_balancer_arn() != Some(&arn));
            w.elb_tags.remove(&arn);
            Ok(op::delete_load_balancer::DeleteLoadBalancerOutput::builder().build())
        }
    );
}

fn zones(w: &World, subnets: &[String]) -> Result<Vec<AvailabilityZone>, Failure> {
    subnets
        .iter()
        .map(|id| {
            let s = w
                .subnets
                .iter()
                .find(|s| s.subnet_id() == Some(id))
                .ok_or_else(|| {
                    Failure::new(
                        "SubnetNotFound",
                        format!("The subnet ID '{id}' is not valid"),
                    )
                })?;
            Ok(AvailabilityZone::builder()
                .subnet_id(id)
                .set_zone_name(s.availability_zone().map(str::to_string))
                .build())
        })
        .collect()
}

fn target_groups(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "DescribeTargetGroups",
        op::describe_target_groups::DescribeTargetGroupsInput,
        |w: &mut World, i: &op::describe_target_groups::DescribeTargetGroupsInput| {
            let found: Vec<TargetGroup> = w
                .target_groups
                .iter()
                .map(|t| &t.tg)
                .filter(|t| {
                    (i.names().is_empty()
                        || i.names().iter().any(|n| t.target_group_name() == Some(n)))
                        && (i.target_group_arns().is_empty()
                            || i.target_group_arns()
                                .iter()
                                .any(|a| t.target_group_arn() == Some(a)))
                        && i.load_balancer_arn()
                            .is_none_or(|lb| t.load_balancer_arns().iter().any(|a| a == lb))
                })
                .cloned()
                .collect();
            if found.is_empty() && !i.names().is_empty() {
                return Err(Failure::new(
                    "TargetGroupNotFound",
                    "One or more target groups not found",
                ));
            }
            Ok(
                op::describe_target_groups::DescribeTargetGroupsOutput::builder()
                    .set_target_groups(Some(found))
                    .build(),
            )
        }
    );
    handle!(
        h,
        W,
        "CreateTargetGroup",
        op::create_target_group::CreateTargetGroupInput,
        |w: &mut World, i: &op::create_target_group::CreateTargetGroupInput| {
            let name = i.name().unwrap_or_default().to_string();
            if let Some(t) = w
                .target_groups
                .iter()
                .find(|t| t.tg.target_group_name() == Some(&name))
            {
                // AWS answers an identical create with the existing group.
                let tg = t.tg.clone();
                return Ok(op::create_target_group::CreateTargetGroupOutput::builder()
                    .target_groups(tg)
                    .build());
            }
            let suffix = w.id("tg");
            let arn = w.arn(
                "elasticloadbalancing",
                &format!("targetgroup/{name}/{}", &suffix[3..]),
            );
            let tg = TargetGroup::builder()
                .target_group_arn(&arn)
                .target_group_name(&name)
                .set_protocol(i.protocol().cloned())
                .set_port(i.port())
                .set_vpc_id(i.vpc_id().map(str::to_string))
                .set_health_check_protocol(i.health_check_protocol().cloned())
                .set_health_check_path(i.health_check_path().map(str::to_string))
                .set_health_check_enabled(i.health_check_enabled())
                .set_health_check_interval_seconds(i.health_check_interval_seconds())
                .set_health_check_timeout_seconds(i.health_check_timeout_seconds())
                .set_healthy_threshold_count(i.healthy_threshold_count())
                .set_unhealthy_threshold_count(i.unhealthy_threshold_count())
                .set_matcher(
                    i.matcher()
                        .cloned()
                        .or_else(|| Some(Matcher::builder().http_code("200").build())),
                )
                .set_target_type(i.target_type().cloned())
                .build();
            let attributes = [
                ("deregistration_delay.timeout_seconds", "300"),
                ("stickiness.enabled", "false"),
                ("stickiness.type", "lb_cookie"),
                ("stickiness.lb_cookie.duration_seconds", "86400"),
            ]
            .into_iter()
            .map(|(k, v)| TargetGroupAttribute::builder().key(k).value(v).build())
            .collect();
            w.target_groups.push(crate::world::TargetGroup {
                tg: tg.clone(),
                attributes,
            });
            add_tags(w, &arn, i.tags());
            Ok(op::create_target_group::CreateTargetGroupOutput::builder()
                .target_groups(tg)
                .build())
        }
    );
    handle!(
        h,
        W,
        "ModifyTargetGroup",
        op::modify_target_group::ModifyTargetGroupInput,
        |w: &mut World, i: &op::modify_target_group::ModifyTargetGroupInput| {
            let n = tg_index(w, i.target_group_arn())?;
            let t = &mut w.target_groups[n].tg;
            macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = i.$field.clone() { t.$field = Some(v); } )* };
        }
            set!(
                health_check_path,
                health_check_interval_seconds,
                health_check_timeout_seconds,
                healthy_threshold_count,
                unhealthy_threshold_count,
                matcher,
                health_check_protocol,
                health_check_port,
                health_check_enabled
            );
            Ok(op::modify_target_group::ModifyTargetGroupOutput::builder()
                .target_groups(t.clone())
                .build())
        }
    );
    handle!(
        h,
        W,
        "DescribeTargetGroupAttributes",
        op::describe_target_group_attributes::DescribeTargetGroupAttributesInput,
        |w: &mut World,
         i: &op::describe_target_group_attributes::DescribeTargetGroupAttributesInput| {
            let n = tg_index(w, i.target_group_arn())?;
            Ok(
                op::describe_target_group_attributes::DescribeTargetGroupAttributesOutput::builder(
                )
                .set_attributes(Some(w.target_groups[n].attributes.clone()))
                .build(),
            )
        }
    );
    handle!(
        h,
        W,
        "ModifyTargetGroupAttributes",
        op::modify_target_group_attributes::ModifyTargetGroupAttributesInput,
        |w: &mut World,
         i: &op::modify_target_group_attributes::ModifyTargetGroupAttributesInput| {
            let n = tg_index(w, i.target_group_arn())?;
            let attrs = &mut w.target_groups[n].attributes;
            for a in i.attributes() {
                attrs.retain(|have| have.key() != a.key());
                attrs.push(a.clone());
            }
            Ok(
                op::modify_target_group_attributes::ModifyTargetGroupAttributesOutput::builder()
                    .set_attributes(Some(attrs.clone()))
                    .build(),
            )
        }
    );
    handle!(
        h,
        W,
        "DeleteTargetGroup",
        op::delete_target_group::DeleteTargetGroupInput,
        |w: &mut World, i: &op::delete_target_group::DeleteTargetGroupInput| {
            let Ok(n) = tg_index(w, i.target_group_arn()) else {
                return Ok(op::delete_target_group::DeleteTargetGroupOutput::builder().build());
            };
            let arn = w.target_groups[n]
                .tg
                .target_group_arn()
                .unwrap_or_default()
                .to_string();
            let used = w.listeners.iter().any(|l| {
                l.default_actions()
                    .iter()
                    .any(|a| a.target_group_arn() == Some(&arn))
            });
            if used {
                return Err(Failure::new(
                    "ResourceInUse",
                    format!("Target group '{arn}' is currently in use by a listener or a rule"),
                ));
            }
            w.target_groups.remove(n);
            w.elb_tags.remove(&arn);
            Ok(op::delete_target_group::DeleteTargetGroupOutput::builder().build())
        }
    );
    handle!(
        h,
        W,
        "DescribeTargetHealth",
        op::describe_target_health::DescribeTargetHealthInput,
        |w: &mut World, i: &op::describe_target_health::DescribeTargetHealthInput| {
            let n = tg_index(w, i.target_group_arn())?;
            let arn = w.target_groups[n]
                .tg
                .target_group_arn()
                .unwrap_or_default()
                .to_string();
            let targets = w
                .groups
                .iter()
                .filter(|g| g.target_group_arns().iter().any(|a| *a == arn))
                .flat_map(|g| g.instances().iter())
                .map(|inst| {
                    TargetHealthDescription::builder()
                        .target(
                            TargetDescription::builder()
                                .set_id(inst.instance_id().map(str::to_string))
                                .port(80)
                                .build(),
                        )
                        .target_health(
                            TargetHealth::builder()
                                .state(TargetHealthStateEnum::Healthy)
                                .build(),
                        )
                        .build()
                })
                .collect();
            Ok(
                op::describe_target_health::DescribeTargetHealthOutput::builder()
                    .set_target_health_descriptions(Some(targets))
                    .build(),
            )
        }
    );
}

fn listeners(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "DescribeListeners",
        op::describe_listeners::DescribeListenersInput,
        |w: &mut World, i: &op::describe_listeners::DescribeListenersInput| {
            if let Some(lb) = i.load_balancer_arn() {
                lb_index(w, Some(lb))?;
            }
            let found = w
                .listeners
                .iter()
                .filter(|l| {
                    i.load_balancer_arn()
                        .is_none_or(|lb| l.load_balancer_arn() == Some(lb))
                        && (i.listener_arns().is_empty()
                            || i.listener_arns()
                                .iter()
                                .any(|a| l.listener_arn() == Some(a)))
                })
                .cloned()
                .collect();
            Ok(op::describe_listeners::DescribeListenersOutput::builder()
                .set_listeners(Some(found))
                .build())
        }
    );
    handle!(
        h,
        W,
        "CreateListener",
        op::create_listener::CreateListenerInput,
        |w: &mut World, i: &op::create_listener::CreateListenerInput| {
            let n = lb_index(w, i.load_balancer_arn())?;
            let lb_arn = w.load_balancers[n]
                .lb
                .load_balancer_arn()
                .unwrap_or_default()
                .to_string();
            if let Some(l) = w
                .listeners
                .iter()
                .find(|l| l.load_balancer_arn() == Some(&lb_arn) && l.port() == i.port())
            {
                if l.protocol() == i.protocol() && l.default_actions() == i.default_actions() {
                    let l = l.clone();
                    return Ok(op::create_listener::CreateListenerOutput::builder()
                        .listeners(l)
                        .build());
                }
                return Err(Failure::new(
                    "DuplicateListener",
                    "A listener already exists on this port for this load balancer",
                ));
            }
            for a in i.default_actions() {
                if let Some(tg) = a.target_group_arn() {
                    tg_index(w, Some(tg))?;
                }
            }
            let id = w.id("l");
            let lb_path = lb_arn
                .split_once(":loadbalancer/")
                .map(|(_, p)| p.to_string())
                .unwrap_or_default();
            let arn = w.arn(
                "elasticloadbalancing",
                &format!("listener/{lb_path}/{}", &id[2..]),
            );
            let listener = Listener::builder()
                .listener_arn(arn)
                .load_balancer_arn(&lb_arn)
                .set_port(i.port())
                .set_protocol(i.protocol().cloned())
                .set_ssl_policy(i.ssl_policy().map(str::to_string))
                .set_certificates(Some(i.certificates().to_vec()))
                .set_default_actions(Some(i.default_actions().to_vec()))
                .build();
            w.listeners.push(listener.clone());
            for a in i.default_actions() {
                if let Some(tg) = a.target_group_arn() {
                    let n = tg_index(w, Some(tg))?;
                    w.target_groups[n]
                        .tg
                        .load_balancer_arns
                        .get_or_insert_with(Vec::new)
                        .push(lb_arn.clone());
                }
            }
            Ok(op::create_listener::CreateListenerOutput::builder()
                .listeners(listener)
                .build())
        }
    );
    handle!(
        h,
        W,
        "ModifyListener",
        op::modify_listener::ModifyListenerInput,
        |w: &mut World, i: &op::modify_listener::ModifyListenerInput| {
            let l = w
                .listeners
                .iter_mut()
                .find(|l| i.listener_arn().is_some() && l.listener_arn() == i.listener_arn())
                .ok_or_else(|| {
                    Failure::new("ListenerNotFound", "One or more listeners not found")
                })?;
            if let Some(p) = i.port() {
                l.port = Some(p);
            }
            if let Some(p) = i.protocol() {
                l.protocol = Some(p.clone());
            }
            if let Some(p) = i.ssl_policy() {
                l.ssl_policy = Some(p.to_string());
            }
            if !i.certificates().is_empty() {
                l.certificates = Some(i.certificates().to_vec());
            }
            if !i.default_actions().is_empty() {
                l.default_actions = Some(i.default_actions().to_vec());
            }
            let l = l.clone();
            Ok(op::modify_listener::ModifyListenerOutput::builder()
                .listeners(l)
                .build())
        }
    );
    handle!(
        h,
        W,
        "DeleteListener",
        op::delete_listener::DeleteListenerInput,
        |w: &mut World, i: &op::delete_listener::DeleteListenerInput| {
            let before = w.listeners.len();
            w.listeners.retain(|l| l.listener_arn() != i.listener_arn());
            if before == w.listeners.len() {
                return Err(Failure::new(
                    "ListenerNotFound",
                    "One or more listeners not found",
                ));
            }
            Ok(op::delete_listener::DeleteListenerOutput::builder().build())
        }
    );
}
