//! Listeners: one per port of a load balancer.

use super::*;

pub(super) fn register(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "DescribeListeners",
        op::describe_listeners::DescribeListenersInput,
        describe_listeners
    );
    handle!(
        h,
        W,
        "CreateListener",
        op::create_listener::CreateListenerInput,
        create_listener
    );
    handle!(
        h,
        W,
        "ModifyListener",
        op::modify_listener::ModifyListenerInput,
        modify_listener
    );
    handle!(
        h,
        W,
        "DeleteListener",
        op::delete_listener::DeleteListenerInput,
        delete_listener
    );
}

/// `DescribeListeners`.
fn describe_listeners(
    w: &mut World,
    i: &op::describe_listeners::DescribeListenersInput,
) -> Result<op::describe_listeners::DescribeListenersOutput, Failure> {
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

/// `CreateListener`.
fn create_listener(
    w: &mut World,
    i: &op::create_listener::CreateListenerInput,
) -> Result<op::create_listener::CreateListenerOutput, Failure> {
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

/// `ModifyListener`.
fn modify_listener(
    w: &mut World,
    i: &op::modify_listener::ModifyListenerInput,
) -> Result<op::modify_listener::ModifyListenerOutput, Failure> {
    let l = w
        .listeners
        .iter_mut()
        .find(|l| i.listener_arn().is_some() && l.listener_arn() == i.listener_arn())
        .ok_or_else(|| Failure::new("ListenerNotFound", "One or more listeners not found"))?;
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

/// `DeleteListener`.
fn delete_listener(
    w: &mut World,
    i: &op::delete_listener::DeleteListenerInput,
) -> Result<op::delete_listener::DeleteListenerOutput, Failure> {
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
