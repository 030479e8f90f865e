//! One stack, in dependency order. This is the only place that knows what depends on what:
//!
//! ```text
//! stage 1   SSM secrets   ALB security group   target group   DB subnet group   EFS
//! stage 2   app security group (80 from ALB sg)     load balancer (ALB sg)
//! stage 3   DB sg (3306 from app)   EFS sg (2049 from app)   listeners (ALB, target group)
//! stage 4   RDS instance (DB sg, subnet group, secret)   EFS mount targets (EFS, EFS sg)
//! stage 5   launch template (app sg, AMI, user data ← ALB DNS, RDS endpoint, EFS id)
//! stage 6   Auto Scaling group (launch template, target group) + instance refresh
//! ```
//!
//! Work inside a stage runs concurrently. In a plan, a value that only exists once a
//! dependency is created reads `(known after apply)`; in an apply, a resource whose dependency
//! is missing, pending or failed waits (and says on what) while the rest converges.

use std::time::{Duration, Instant};

use presta_aws::auto_scaling_group::{
    AutoScalingGroupDesired, AutoScalingGroupLive, AutoScalingGroups,
};
use presta_aws::certificate::CertificateLive;
use presta_aws::db_instance::{DbInstanceDesired, DbInstanceLive, DbInstances};
use presta_aws::db_subnet_group::{DbSubnetGroupDesired, DbSubnetGroupLive, DbSubnetGroups};
use presta_aws::file_system::{FileSystemDesired, FileSystemLive, FileSystems};
use presta_aws::launch_template::{LaunchTemplateDesired, LaunchTemplateLive, LaunchTemplates};
use presta_aws::load_balancer::{LoadBalancerDesired, LoadBalancerLive, LoadBalancers};

use presta_aws::network::Network;
use presta_aws::parameter::{ParameterDesired, ParameterLive, Parameters};
use presta_aws::security_group::{SecurityGroupDesired, SecurityGroupLive, SecurityGroups};
use presta_aws::target_group::{TargetGroupDesired, TargetGroupLive, TargetGroups};
use presta_aws::{Action, Aws, Change, Kind, Mode};
use presta_spec::Stack;
use presta_spec::model::Enforcement;
use presta_spec::naming::Component;

use crate::Settings;
use crate::bootstrap;
use crate::budget::{self, Guard};
use crate::data::DbSource;
use crate::report::{Outputs, RefreshStatus, StackReport};
use crate::snapshot::Snapshot;

mod files;
mod front;
mod promote;
mod refresh;
mod run;

use run::Run;

pub async fn reconcile(
    aws: &Aws,
    stack: &Stack,
    snap: &Snapshot,
    requested: Mode,
    guard: &Guard,
    settings: &Settings,
) -> StackReport {
    let started = Instant::now();
    let observe_only = stack.spec.policy.mode == Enforcement::Observe;
    let mode = if observe_only { Mode::Plan } else { requested };
    let mut report = StackReport::new(stack, requested, observe_only);
    let net = match snap.inventory.resolve(stack) {
        Ok(n) => n,
        Err(e) => {
            report.error = Some(e.to_string());
            report.duration = started.elapsed();
            return report;
        }
    };
    let data = match crate::data::decide(aws, stack, snap).await {
        Ok(d) => d,
        Err(e) => {
            report.error = Some(format!("looking for the database's snapshots: {e}"));
            report.duration = started.elapsed();
            return report;
        }
    };
    let new_run = |mode: Mode| Run {
        aws,
        stack,
        snap,
        mode,
        settings,
        data: data.clone(),
        changes: std::sync::Mutex::new(Vec::new()),
        guard,
        gated: std::sync::Mutex::new(None),
        promoted: std::sync::Mutex::new(None),
    };
    // The change budget: a stack that exists is planned first against the same observation
    // (no AWS call), and an apply larger than the budget is held unless that exact plan was
    // approved.
    let moved_vpc = budget::moved_vpc(stack, snap, &net.vpc_id);
    let group_name = stack.resource_name(Component::AutoScalingGroup);
    let exists =
        snap.contains::<AutoScalingGroups>(&group_name) || guard.presumed_existing.is_some();
    // A stack taken over from another tool: its first changes wait for an approval.
    let adopted = snap
        .get::<AutoScalingGroups>(&group_name)
        .and_then(|g| g.tags.get(presta_aws::adopt::TAG_ADOPTED).cloned());
    if exists && mode == Mode::Apply {
        let plan = new_run(Mode::Plan);
        let (outputs, refresh) = converge(&plan, &net).await;
        let changes = plan.changes.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = guard.holds(budget::check(
            &changes,
            stack.spec.policy.max_changes_per_run,
            guard.presumed_existing.as_deref(),
            moved_vpc.as_ref(),
            adopted.as_deref(),
        )) {
            tracing::warn!(stack = %stack.name(), plan_hash = %held.plan_hash, changes = held.changes, reason = %held.reason, "plan held for approval: nothing changed");
            report.changes = changes;
            report.outputs = outputs;
            report.instance_refresh = refresh;
            report.held = Some(held);
            report.duration = started.elapsed();
            return report;
        }
    }
    let run = new_run(mode);
    let (outputs, refresh) = converge(&run, &net).await;
    report.gated = run.gated.into_inner().unwrap_or_else(|e| e.into_inner());
    report.changes = run.changes.into_inner().unwrap_or_else(|e| e.into_inner());
    report.outputs = outputs;
    report.instance_refresh = refresh;
    report.domain_change = refresh::domain_change(&report.changes);
    if settings.health {
        report.health = Some(
            crate::health::assess(aws, stack, snap, &net, report.instance_refresh.as_ref()).await,
        );
    }
    if report.applied()
        && !stack.spec.followed_by.is_empty()
        && let Some(health) = &report.health
    {
        promote::record_evidence(aws, stack, snap, &report, health).await;
    }
    if exists && mode == Mode::Plan && !observe_only {
        report.held = guard.holds(budget::check(
            &report.changes,
            stack.spec.policy.max_changes_per_run,
            guard.presumed_existing.as_deref(),
            moved_vpc.as_ref(),
            adopted.as_deref(),
        ));
    }
    if adopted.is_some() {
        clear_adoption_mark(aws, stack, &report, &group_name).await;
    }
    report.duration = started.elapsed();
    report
}

/// A stack taken over from another tool whose first changes are applied (approved, or none
/// were needed) is an ordinary stack from now on: its adoption mark comes off.
async fn clear_adoption_mark(aws: &Aws, stack: &Stack, report: &StackReport, group: &str) {
    let settled = report.applied()
        && report.failed() == 0
        && !report
            .changes
            .iter()
            .any(|c| c.action == presta_aws::Action::Waiting);
    if !settled {
        return;
    }
    match presta_aws::auto_scaling_group::clear_adopted(aws, group).await {
        Ok(()) => {
            tracing::info!(stack = %stack.name(), "the stack taken over from another tool has its first changes applied: its adoption mark is removed")
        }
        Err(e) => {
            tracing::warn!(stack = %stack.name(), error = %e, "could not remove the adoption mark; the next run tries again")
        }
    }
}

/// What a value a step needs is, or why it is not known yet.
fn id_of<T>(live: &Option<T>, f: impl Fn(&T) -> String) -> Option<String> {
    live.as_ref().map(f)
}

/// The stacks' stages in order; each stage function states which outputs feed which desired
/// state.
async fn converge(run: &Run<'_>, net: &Network) -> (Outputs, Option<RefreshStatus>) {
    // Each stage on the heap: their futures are large (every kind's calls joined), and a
    // daemon's worker thread has a 2 MiB stack.
    let base = Box::pin(stage1(run, net)).await;
    let front = Box::pin(stage2(run, net, &base)).await;
    let back = Box::pin(stage3(run, net, &base, &front)).await;
    let data = Box::pin(stage4(run, net, &base, &back)).await;
    let lt = Box::pin(stage5(run, &base, &front, &data)).await;
    let template_change = refresh::TemplateChange::of(run);
    let (asg, refresh) = Box::pin(stage6(run, net, &base, &lt, template_change)).await;
    let (https, cert) = Box::pin(front::finish(
        run,
        front.lb.as_ref(),
        base.tg.as_ref(),
        base.cert.as_ref(),
    ))
    .await;
    let outputs = Outputs {
        alb_dns_name: id_of(&front.lb, |l| l.dns_name.clone()),
        tg_arn: id_of(&base.tg, |t| t.arn.clone()),
        db_endpoint: data.db.as_ref().and_then(|d| d.endpoint.clone()),
        efs_id: id_of(&base.fs, |f| f.id.clone()),
        asg_name: id_of(&asg, |a| a.name.clone()),
        launch_template_version: lt.as_ref().map(|l| l.default_version),
        shop_url: front::shop_url(run, front.lb.as_ref(), https),
        certificate: cert.as_ref().map(front::certificate_summary),
    };
    (outputs, refresh)
}

/// Stage 1's live resources: they depend on nothing but the network.
struct Base {
    db_param: ParameterDesired,
    db_param_l: Option<ParameterLive>,
    alb_sg: Option<SecurityGroupLive>,
    tg: Option<TargetGroupLive>,
    subnet_group_d: DbSubnetGroupDesired,
    subnet_group: Option<DbSubnetGroupLive>,
    fs: Option<FileSystemLive>,
    /// The stack's own certificate (`https.certificate: auto`).
    cert: Option<CertificateLive>,
}

/// Stage 1: secrets, ALB security group, target group, DB subnet group, EFS.
async fn stage1(run: &Run<'_>, net: &Network) -> Base {
    let (stack, snap, vpc) = (run.stack, run.snap, net.vpc_id.as_str());
    let db_param = ParameterDesired::db_password(stack);
    let admin_param = ParameterDesired::admin_password(stack);
    let alb_sg_d = SecurityGroupDesired::load_balancer(stack, vpc);
    let tg_d = TargetGroupDesired::for_stack(stack, vpc);
    let subnet_group_d = DbSubnetGroupDesired::for_stack(stack, net);
    let mut fs_d = FileSystemDesired::for_stack(stack);
    fs_d.unused =
        !snap.contains::<AutoScalingGroups>(&stack.resource_name(Component::AutoScalingGroup));
    let (db_param_l, _admin, alb_sg, tg, subnet_group, fs, cert) = tokio::join!(
        run.guarded_step(
            &Parameters,
            &db_param,
            snap.get::<Parameters>(&db_param.name),
            run.data.db_password_blocked.as_ref()
        ),
        async {
            // None for a shop that is already installed (`adminPasswordParameter: none`).
            match &admin_param {
                Some(p) => {
                    run.step(&Parameters, p, snap.get::<Parameters>(&p.name))
                        .await
                }
                None => None,
            }
        },
        run.step(
            &SecurityGroups,
            &alb_sg_d,
            snap.get::<SecurityGroups>(&alb_sg_d.name)
        ),
        run.step(&TargetGroups, &tg_d, snap.get::<TargetGroups>(&tg_d.name)),
        run.step(
            &DbSubnetGroups,
            &subnet_group_d,
            snap.get::<DbSubnetGroups>(&subnet_group_d.name)
        ),
        run.guarded_step(
            &FileSystems,
            &fs_d,
            snap.get::<FileSystems>(&fs_d.creation_token),
            run.data.file_system_blocked.as_ref()
        ),
        front::certificate(run),
    );
    Base {
        db_param,
        db_param_l,
        alb_sg,
        tg,
        subnet_group_d,
        subnet_group,
        fs,
        cert,
    }
}

/// Stage 2's live resources.
struct Front {
    app_sg: Option<SecurityGroupLive>,
    lb: Option<LoadBalancerLive>,
}

/// Stage 2: the instances' security group (80 from the ALB's) and the load balancer.
async fn stage2(run: &Run<'_>, net: &Network, base: &Base) -> Front {
    let (stack, snap, vpc) = (run.stack, run.snap, net.vpc_id.as_str());
    let mut missing = Vec::new();
    let alb_sg_id = run.need(
        id_of(&base.alb_sg, |g| g.id.clone()),
        "the load balancer's security group",
        &mut missing,
    );
    let app_sg_d = SecurityGroupDesired::instances(stack, vpc, &alb_sg_id);
    let lb_d = LoadBalancerDesired::for_stack(stack, net, &alb_sg_id);
    if run.blocked_by_missing(&missing) {
        run.waiting(Kind::SECURITY_GROUP, app_sg_d.name.clone(), &missing);
        run.waiting(Kind::LOAD_BALANCER, lb_d.name.clone(), &missing);
        return Front {
            app_sg: None,
            lb: None,
        };
    }
    let (app_sg, lb, ()) = tokio::join!(
        run.step(
            &SecurityGroups,
            &app_sg_d,
            snap.get::<SecurityGroups>(&app_sg_d.name)
        ),
        run.step(&LoadBalancers, &lb_d, snap.get::<LoadBalancers>(&lb_d.name)),
        front::validation_records(run, base.cert.as_ref()),
    );
    Front { app_sg, lb }
}

/// Stage 3's live resources.
struct Back {
    db_sg: Option<SecurityGroupLive>,
    efs_sg: Option<SecurityGroupLive>,
}

/// Stage 3: the database's and the file system's security groups (from the instances'),
/// the listeners (load balancer → target group).
async fn stage3(run: &Run<'_>, net: &Network, base: &Base, front: &Front) -> Back {
    let (stack, snap, vpc) = (run.stack, run.snap, net.vpc_id.as_str());
    let mut missing = Vec::new();
    let app_sg_id = run.need(
        id_of(&front.app_sg, |g| g.id.clone()),
        "the instances' security group",
        &mut missing,
    );
    let db_sg_d = SecurityGroupDesired::database(stack, vpc, &app_sg_id);
    let efs_sg_d = SecurityGroupDesired::file_system(stack, vpc, &app_sg_id);
    if run.blocked_by_missing(&missing) {
        run.waiting(Kind::SECURITY_GROUP, db_sg_d.name.clone(), &missing);
        run.waiting(Kind::SECURITY_GROUP, efs_sg_d.name.clone(), &missing);
        return Back {
            db_sg: None,
            efs_sg: None,
        };
    }
    let (db_sg, efs_sg, ()) = tokio::join!(
        run.step(
            &SecurityGroups,
            &db_sg_d,
            snap.get::<SecurityGroups>(&db_sg_d.name)
        ),
        run.step(
            &SecurityGroups,
            &efs_sg_d,
            snap.get::<SecurityGroups>(&efs_sg_d.name)
        ),
        front::listeners_and_records(run, front.lb.as_ref(), base.tg.as_ref(), base.cert.as_ref()),
    );
    Back { db_sg, efs_sg }
}

/// Stage 4's live resources.
struct Data {
    db: Option<DbInstanceLive>,
}

/// Stage 4: the database (its security group, subnet group and password; or restored from
/// its snapshot, by the data rule) and the file system's mount targets.
async fn stage4(run: &Run<'_>, net: &Network, base: &Base, back: &Back) -> Data {
    let (stack, snap) = (run.stack, run.snap);
    let mut db_missing = Vec::new();
    let db_sg_id = run.need(
        id_of(&back.db_sg, |g| g.id.clone()),
        "the database's security group",
        &mut db_missing,
    );
    if base.subnet_group.is_none() {
        db_missing.push("the DB subnet group".into());
    }
    if base.db_param_l.is_none() {
        db_missing.push("the database password in SSM".into());
    }
    let db_d = DbInstanceDesired::for_stack(
        stack,
        &base.subnet_group_d.name,
        &db_sg_id,
        &base.db_param.name,
    );
    let db_live = snap.get::<DbInstances>(&db_d.identifier);
    // A new database only once the file system exists: a creation cut between the two (a
    // throttled CreateFileSystem) must not leave a database without files, which the data
    // rule would then rightly refuse to pair with an empty file system.
    if db_live.is_none() && matches!(run.data.db, DbSource::Empty) && base.fs.is_none() {
        db_missing.push("the file system".into());
    }
    let mut efs_missing = Vec::new();
    let efs_sg_id = run.need(
        id_of(&back.efs_sg, |g| g.id.clone()),
        "the file system's security group",
        &mut efs_missing,
    );
    let fs_id = run.need(
        id_of(&base.fs, |f| f.id.clone()),
        "the file system",
        &mut efs_missing,
    );
    let (db, ()) = tokio::join!(
        async {
            match (&run.data.db, db_live) {
                (_, Some(live)) => run.step(&DbInstances, &db_d, Some(live)).await,
                (DbSource::Blocked(reason), None) => {
                    run.refuse(Kind::DB_INSTANCE, db_d.identifier.clone(), reason);
                    None
                }
                _ if run.blocked_by_missing(&db_missing) => {
                    run.waiting(Kind::DB_INSTANCE, db_d.identifier.clone(), &db_missing);
                    None
                }
                (DbSource::Restore(snapshot), None) => run.restore_db(&db_d, snapshot).await,
                (_, None) => run.step(&DbInstances, &db_d, None).await,
            }
        },
        files::mount_targets(run, net, &fs_id, &efs_sg_id, &efs_missing),
    );
    Data { db }
}

/// Stage 5: the launch template (the AMI, the instances' group, and the bootstrap, which needs
/// the load balancer's address or the domain, the database and the file system).
async fn stage5(
    run: &Run<'_>,
    base: &Base,
    front: &Front,
    data: &Data,
) -> Option<LaunchTemplateLive> {
    let (stack, snap) = (run.stack, run.snap);
    let mut missing = Vec::new();
    let ami = &stack.spec.compute.ami;
    let image_id = match (&ami.id, &ami.ssm_parameter) {
        (Some(id), _) => Some(id.clone()),
        (None, Some(param)) => snap.amis.get(param).cloned(),
        (None, None) => None,
    };
    let image_id = run.need(image_id, "the AMI (SSM parameter)", &mut missing);
    let domain = match &stack.spec.prestashop.domain {
        Some(d) => d.clone(),
        None => run.need(
            id_of(&front.lb, |l| l.dns_name.clone()),
            "the load balancer's DNS name",
            &mut missing,
        ),
    };
    let inputs = bootstrap::Inputs {
        efs_id: run.need(
            id_of(&base.fs, |f| f.id.clone()),
            "the file system",
            &mut missing,
        ),
        db_host: run.need(
            data.db.as_ref().and_then(|d| d.endpoint.clone()),
            "the database endpoint",
            &mut missing,
        ),
        db_port: data.db.as_ref().map(|d| d.port).unwrap_or(3306),
        domain,
    };
    let app_sg_id = run.need(
        id_of(&front.app_sg, |g| g.id.clone()),
        "the instances' security group",
        &mut missing,
    );
    let lt_name = stack.resource_name(Component::LaunchTemplate);
    let lt_before = snap.get::<LaunchTemplates>(&lt_name);
    match bootstrap::render(stack, &inputs) {
        Err(e) => {
            run.record(
                Change::new(Kind::LAUNCH_TEMPLATE, lt_name.clone(), Action::Failed)
                    .with_reason(e.to_string()),
            );
            lt_before.cloned()
        }
        Ok(_) if run.blocked_by_missing(&missing) => {
            run.waiting(Kind::LAUNCH_TEMPLATE, lt_name.clone(), &missing);
            lt_before.cloned()
        }
        Ok(user_data) => {
            let lt_d = LaunchTemplateDesired::for_stack(stack, &image_id, &app_sg_id, user_data);
            if let (Some(gate), Some(live)) =
                (promote::gated(run, &lt_d, lt_before).await, lt_before)
            {
                // The release waits; the rest of the template is kept as declared.
                let held = promote::held_back(&lt_d, live);
                let lt = run.step(&LaunchTemplates, &held, lt_before).await;
                promote::record_gate(run, &lt_d, live, gate);
                return lt;
            }
            let lt = run.step(&LaunchTemplates, &lt_d, lt_before).await;
            if let Some(note) = run
                .promoted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                let mut changes = run.changes.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(c) = changes.iter_mut().find(|c| c.kind == Kind::LAUNCH_TEMPLATE) {
                    c.reason = Some(match c.reason.take() {
                        Some(r) => format!("{r}; {note}"),
                        None => note,
                    });
                }
            }
            lt
        }
    }
}

/// Stage 6: the Auto Scaling group (launch template → target group), the instance refresh
/// when the template changed, and the file system's first use.
async fn stage6(
    run: &Run<'_>,
    net: &Network,
    base: &Base,
    lt: &Option<LaunchTemplateLive>,
    template_change: refresh::TemplateChange,
) -> (Option<AutoScalingGroupLive>, Option<RefreshStatus>) {
    let (stack, snap) = (run.stack, run.snap);
    let mut missing = Vec::new();
    let lt_id = run.need(
        id_of(lt, |l| l.id.clone()),
        "the launch template",
        &mut missing,
    );
    let tg_arn = run.need(
        id_of(&base.tg, |t| t.arn.clone()),
        "the target group",
        &mut missing,
    );
    let asg_d = AutoScalingGroupDesired::for_stack(stack, net, &lt_id, &tg_arn);
    let asg_before = snap.get::<AutoScalingGroups>(&asg_d.name);
    let asg = if run.blocked_by_missing(&missing) {
        run.waiting(Kind::AUTO_SCALING_GROUP, asg_d.name.clone(), &missing);
        None
    } else {
        run.step(&AutoScalingGroups, &asg_d, asg_before).await
    };
    let refresh = refresh::roll(run, template_change, &asg_d.name, asg.as_ref(), asg_before).await;
    // The group exists: its instances use the file system from now on.
    if run.mode == Mode::Apply
        && asg.is_some()
        && let Some(f) = &base.fs
        && f.tags.contains_key(presta_aws::file_system::TAG_UNUSED)
        && let Err(e) = FileSystems.clear_unused(run.aws, &f.id).await
    {
        tracing::warn!(stack = %stack.name(), error = %e, "removing the file system's unused mark failed; the next run removes it");
        run.failed_after(
            Kind::FILE_SYSTEM,
            &f.creation_token,
            "removing the unused mark (the next run removes it)",
            &e,
        );
    }
    (asg, refresh)
}

/// How long `apply` waits for a resource to become usable by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30 * 60);
