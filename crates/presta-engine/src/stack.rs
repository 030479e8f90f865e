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

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use presta_aws::auto_scaling_group::{
    AutoScalingGroupDesired, AutoScalingGroupLive, AutoScalingGroups, TAG_REFRESH,
};
use presta_aws::db_instance::{DbInstanceDesired, DbInstanceLive, DbInstances};
use presta_aws::db_snapshot::DbSnapshot;
use presta_aws::db_subnet_group::{DbSubnetGroupDesired, DbSubnetGroups};
use presta_aws::diff::UNKNOWN;
use presta_aws::file_system::{FileSystemDesired, FileSystemLive, FileSystems, transition_rule};
use presta_aws::launch_template::{
    LaunchTemplateDesired, LaunchTemplateLive, LaunchTemplates, TemplateData,
};
use presta_aws::listener::{DefaultAction, ListenerDesired, Listeners};
use presta_aws::load_balancer::{LoadBalancerDesired, LoadBalancerLive, LoadBalancers};
use presta_aws::mount_target::{self, MountTargetDesired, MountTargets};
use presta_aws::network::Network;
use presta_aws::parameter::{ParameterDesired, Parameters};
use presta_aws::security_group::{
    Rule, SecurityGroupDesired, SecurityGroupLive, SecurityGroups, Source,
};
use presta_aws::target_group::{HealthCheck, TargetGroupDesired, TargetGroupLive, TargetGroups};
use presta_aws::{Action, Aws, Change, Driver, Kind, Mode, sync};
use presta_spec::Stack;
use presta_spec::model::Mode as PolicyMode;
use presta_spec::naming::{self, Component};

use crate::Settings;
use crate::bootstrap;
use crate::data::{DataPlan, DbSource};
use crate::report::{DomainChange, Outputs, StackReport};
use crate::snapshot::Snapshot;

struct Run<'a> {
    aws: &'a Aws,
    stack: &'a Stack,
    snap: &'a Snapshot,
    mode: Mode,
    settings: &'a Settings,
    data: DataPlan,
    changes: std::sync::Mutex<Vec<Change>>,
}

/// The outcome of one step: the live resource afterwards, if any.
type Live<T> = Option<T>;

impl Run<'_> {
    fn name(&self, c: Component) -> String {
        c.name(self.stack.name())
    }

    fn tags(&self, c: Component) -> BTreeMap<String, String> {
        naming::tags(self.stack.name(), c, &self.stack.metadata.labels)
    }

    fn owner(&self) -> presta_aws::Owner<'_> {
        presta_aws::Owner {
            stack: self.stack.name(),
            adopt_existing: self.stack.spec.policy.adopt_existing,
        }
    }

    fn record(&self, change: Change) {
        self.changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(change);
    }

    fn waiting(&self, kind: Kind, name: String, on: &[String]) {
        self.record(Change {
            kind,
            name,
            id: None,
            action: Action::Waiting,
            diffs: Vec::new(),
            reason: Some(format!("waits for {}", on.join(", "))),
        });
    }

    /// A dependency's value: known, or `(known after apply)` in a plan. In an apply a missing
    /// value is collected in `missing` and the step waits.
    fn need(&self, value: Option<String>, what: &str, missing: &mut Vec<String>) -> String {
        value.unwrap_or_else(|| {
            missing.push(what.to_string());
            UNKNOWN.to_string()
        })
    }

    fn blocked_by_missing(&self, missing: &[String]) -> bool {
        self.mode == Mode::Apply && !missing.is_empty()
    }

    /// Syncs one resource, waits for it to be ready in an apply, records its change.
    async fn step<D: Driver>(
        &self,
        driver: &D,
        desired: &D::Desired,
        live: Option<&D::Live>,
    ) -> Live<D::Live>
    where
        D::Live: 'static,
    {
        let name = D::name(desired);
        match sync(driver, self.aws, desired, live, self.mode, self.owner()).await {
            Ok(mut synced) => {
                if self.mode == Mode::Apply
                    && let Some(l) = &synced.live
                {
                    match crate::wait::wait_ready(
                        driver,
                        self.aws,
                        &name,
                        l.clone(),
                        self.settings,
                        self.stack.name(),
                    )
                    .await
                    {
                        Ok(ready) => synced.live = Some(ready),
                        Err(reason) => {
                            synced.change.reason = Some(reason);
                            synced.change.action = if synced.change.action == Action::None {
                                Action::Waiting
                            } else {
                                synced.change.action
                            };
                            self.record(synced.change);
                            return None;
                        }
                    }
                }
                self.record(synced.change);
                synced.live
            }
            Err(err) => {
                tracing::warn!(stack = %self.stack.name(), kind = %D::KIND, name = %name, code = err.code.as_deref().unwrap_or(""), error = %err, "step failed");
                self.record(Change {
                    kind: D::KIND,
                    name,
                    id: live.map(D::id),
                    action: Action::Failed,
                    diffs: Vec::new(),
                    reason: Some(err.to_string()),
                });
                // A resource that exists still serves its dependents.
                live.cloned()
            }
        }
    }

    /// A missing resource the data rule forbids creating: blocked, with the reason.
    fn refuse(&self, kind: Kind, name: String, reason: &str) {
        self.record(Change {
            kind,
            name,
            id: None,
            action: Action::Blocked,
            diffs: Vec::new(),
            reason: Some(reason.to_string()),
        });
    }

    /// Syncs a data-bearing resource, unless it is missing and the data rule blocks it.
    async fn guarded_step<D: Driver>(
        &self,
        driver: &D,
        desired: &D::Desired,
        live: Option<&D::Live>,
        blocked: Option<&String>,
    ) -> Live<D::Live>
    where
        D::Live: 'static,
    {
        match (live, blocked) {
            (None, Some(reason)) => {
                self.refuse(D::KIND, D::name(desired), reason);
                None
            }
            _ => self.step(driver, desired, live).await,
        }
    }

    /// Brings the missing database back from `snapshot`, then to the spec.
    async fn restore_db(
        &self,
        desired: &DbInstanceDesired,
        snapshot: &DbSnapshot,
    ) -> Live<DbInstanceLive> {
        let from = format!(
            "restored from snapshot `{}` (taken {})",
            snapshot.id,
            snapshot.created.as_deref().unwrap_or("at an unknown time")
        );
        let mut change = Change {
            kind: Kind::DbInstance,
            name: desired.identifier.clone(),
            id: None,
            action: Action::Restore,
            diffs: Vec::new(),
            reason: Some(from.clone()),
        };
        if self.mode == Mode::Plan {
            self.record(change);
            return None;
        }
        let restored = match presta_aws::db_snapshot::restore(self.aws, desired, &snapshot.id).await
        {
            Ok(l) => l,
            Err(e) => {
                change.action = Action::Failed;
                change.reason = Some(format!("restoring from snapshot `{}`: {e}", snapshot.id));
                self.record(change);
                return None;
            }
        };
        change.id = Some(DbInstances::id(&restored));
        let ready = match crate::wait::wait_ready(
            &DbInstances,
            self.aws,
            &desired.identifier,
            restored,
            self.settings,
            self.stack.name(),
        )
        .await
        {
            Ok(l) => l,
            Err(reason) => {
                change.reason = Some(format!("{from}; {reason}"));
                self.record(change);
                return None;
            }
        };
        // The snapshot's settings (backups, storage ceiling, version) brought to the spec.
        let diffs: Vec<_> = DbInstances
            .diff(desired, &ready)
            .into_iter()
            .filter(|d| d.blocked.is_none())
            .collect();
        let after = if diffs.is_empty() {
            ready
        } else {
            match DbInstances.update(self.aws, desired, &ready, &diffs).await {
                Ok(l) => {
                    change.diffs = diffs;
                    l
                }
                Err(e) => {
                    change.reason = Some(format!("{from}; bringing it to the spec failed: {e}"));
                    ready
                }
            }
        };
        self.record(change);
        Some(after)
    }

    /// Deletes a live resource the stack no longer declares, through the ownership check.
    async fn prune<D: Driver>(&self, driver: &D, name: &str, live: &D::Live, why: &str) {
        let change =
            match presta_aws::remove(driver, self.aws, name, live, self.mode, self.owner(), why)
                .await
            {
                Ok(change) => change,
                Err(e) => Change {
                    kind: D::KIND,
                    name: name.to_string(),
                    id: Some(D::id(live)),
                    action: Action::Failed,
                    diffs: Vec::new(),
                    reason: Some(e.to_string()),
                },
            };
        self.record(change);
    }

    fn security_group(
        &self,
        c: Component,
        vpc: &str,
        ingress: BTreeSet<Rule>,
        what: &str,
    ) -> SecurityGroupDesired {
        SecurityGroupDesired {
            name: self.name(c),
            description: format!("presta-reconciler {}: {what}", self.stack.name()),
            vpc_id: vpc.to_string(),
            ingress,
            tags: self.tags(c),
        }
    }
}

/// Reconciles (or plans) one stack against a snapshot of its region.
pub async fn reconcile(
    aws: &Aws,
    stack: &Stack,
    snap: &Snapshot,
    requested: Mode,
    settings: &Settings,
) -> StackReport {
    let started = Instant::now();
    let observe_only = stack.spec.policy.mode == PolicyMode::Observe;
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
    let run = Run {
        aws,
        stack,
        snap,
        mode,
        settings,
        data,
        changes: std::sync::Mutex::new(Vec::new()),
    };
    let (outputs, refresh) = converge(&run, &net).await;
    report.changes = run.changes.into_inner().unwrap_or_else(|e| e.into_inner());
    report.outputs = outputs;
    report.instance_refresh = refresh;
    report.domain_change = domain_change(&report.changes);
    report.duration = started.elapsed();
    report
}

/// The shop's domain change, if the launch template's bootstrap values say so.
fn domain_change(changes: &[Change]) -> Option<DomainChange> {
    let diff = changes
        .iter()
        .filter(|c| c.kind == Kind::LaunchTemplate && c.action == Action::Update)
        .flat_map(|c| c.diffs.iter())
        .find(|d| d.field == "userData.PS_DOMAIN")?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    Some(DomainChange {
        from: text(&diff.live),
        to: text(&diff.desired),
        how: "instances started from the new template version store the new domain in the \
              database at start (`presta-ctl set-domain`: ps_shop_url, PS_SHOP_DOMAIN[_SSL], \
              .htaccess, caches); the instance refresh starts them"
            .into(),
    })
}

async fn converge(run: &Run<'_>, net: &Network) -> (Outputs, Option<crate::report::RefreshStatus>) {
    let spec = &run.stack.spec;
    let snap = run.snap;
    let prefix = run.stack.parameter_prefix();
    let lb_spec = &spec.load_balancer;

    // ---- stage 1: secrets, ALB security group, target group, DB subnet group, EFS.
    let param = |name: String, what: &str| ParameterDesired {
        description: format!(
            "presta-reconciler {}: {what} (generated; never overwritten)",
            run.stack.name()
        ),
        tags: naming::tags(
            run.stack.name(),
            Component::DbInstance,
            &run.stack.metadata.labels,
        ),
        name,
    };
    let db_param = param(
        naming::db_password_parameter(&prefix),
        "database master password",
    );
    let admin_param = param(
        naming::admin_password_parameter(&prefix),
        "PrestaShop admin password",
    );
    let mut alb_rules = BTreeSet::new();
    for cidr in &lb_spec.allowed_cidrs {
        alb_rules.insert(Rule::tcp(lb_spec.http_port, Source::Cidr(cidr.clone())));
        if let Some(https) = &lb_spec.https {
            alb_rules.insert(Rule::tcp(https.port, Source::Cidr(cidr.clone())));
        }
    }
    let alb_sg_d = run.security_group(
        Component::AlbSecurityGroup,
        &net.vpc_id,
        alb_rules,
        "load balancer, from the allowed networks",
    );
    let hc = &lb_spec.health_check;
    let tg_d = TargetGroupDesired {
        name: run.name(Component::TargetGroup),
        vpc_id: net.vpc_id.clone(),
        port: 80,
        health: HealthCheck {
            path: hc.path.clone(),
            matcher: hc.matcher.clone(),
            interval_seconds: hc.interval_seconds as i32,
            timeout_seconds: hc.timeout_seconds as i32,
            healthy_threshold: hc.healthy_threshold as i32,
            unhealthy_threshold: hc.unhealthy_threshold as i32,
        },
        deregistration_delay_seconds: lb_spec.deregistration_delay_seconds,
        stickiness_seconds: lb_spec
            .stickiness
            .enabled
            .then_some(lb_spec.stickiness.duration_seconds),
        tags: run.tags(Component::TargetGroup),
    };
    let subnet_group_d = DbSubnetGroupDesired {
        name: run.name(Component::DbSubnetGroup),
        description: format!(
            "presta-reconciler {}: private subnets of the database",
            run.stack.name()
        ),
        subnets: net.private_ids().into_iter().collect(),
        tags: run.tags(Component::DbSubnetGroup),
    };
    let fs_spec = &spec.file_system;
    let fs_d = FileSystemDesired {
        creation_token: run.name(Component::FileSystem),
        encrypted: fs_spec.encrypted,
        throughput_mode: fs_spec.throughput_mode.as_aws().to_string(),
        provisioned_mibps: fs_spec.provisioned_throughput_mibps,
        transition_to_ia: fs_spec.transition_to_ia_days.map(transition_rule),
        transition_to_primary_on_access: fs_spec.transition_to_primary_on_access,
        automatic_backups: fs_spec.automatic_backups,
        tags: run.tags(Component::FileSystem),
    };
    let (db_param_l, _admin_param_l, alb_sg, tg, subnet_group, fs) = tokio::join!(
        run.guarded_step(
            &Parameters,
            &db_param,
            snap.parameters.get(&db_param.name),
            run.data.db_password_blocked.as_ref()
        ),
        run.step(
            &Parameters,
            &admin_param,
            snap.parameters.get(&admin_param.name)
        ),
        run.step(
            &SecurityGroups,
            &alb_sg_d,
            snap.security_groups.get(&alb_sg_d.name)
        ),
        run.step(&TargetGroups, &tg_d, snap.target_groups.get(&tg_d.name)),
        run.step(
            &DbSubnetGroups,
            &subnet_group_d,
            snap.db_subnet_groups.get(&subnet_group_d.name)
        ),
        run.guarded_step(
            &FileSystems,
            &fs_d,
            snap.file_systems.get(&fs_d.creation_token),
            run.data.file_system_blocked.as_ref()
        ),
    );

    // ---- stage 2: app security group, load balancer.
    let mut missing = Vec::new();
    let alb_sg_id = run.need(
        alb_sg.as_ref().map(|g: &SecurityGroupLive| g.id.clone()),
        "the load balancer's security group",
        &mut missing,
    );
    let app_sg_d = run.security_group(
        Component::AppSecurityGroup,
        &net.vpc_id,
        [Rule::tcp(80, Source::Group(alb_sg_id.clone()))].into(),
        "instances, HTTP from the load balancer only",
    );
    let lb_d = LoadBalancerDesired {
        name: run.name(Component::LoadBalancer),
        scheme: lb_spec.scheme.as_aws().to_string(),
        subnets: net.public_ids().into_iter().collect(),
        security_groups: [alb_sg_id].into(),
        idle_timeout_seconds: lb_spec.idle_timeout_seconds,
        tags: run.tags(Component::LoadBalancer),
    };
    let (app_sg, lb): (Live<SecurityGroupLive>, Live<LoadBalancerLive>) =
        if run.blocked_by_missing(&missing) {
            run.waiting(Kind::SecurityGroup, app_sg_d.name.clone(), &missing);
            run.waiting(Kind::LoadBalancer, lb_d.name.clone(), &missing);
            (None, None)
        } else {
            tokio::join!(
                run.step(
                    &SecurityGroups,
                    &app_sg_d,
                    snap.security_groups.get(&app_sg_d.name)
                ),
                run.step(&LoadBalancers, &lb_d, snap.load_balancers.get(&lb_d.name)),
            )
        };

    // ---- stage 3: database and file-system security groups, listeners.
    let mut missing = Vec::new();
    let app_sg_id = run.need(
        app_sg.as_ref().map(|g| g.id.clone()),
        "the instances' security group",
        &mut missing,
    );
    let db_sg_d = run.security_group(
        Component::DbSecurityGroup,
        &net.vpc_id,
        [Rule::tcp(3306, Source::Group(app_sg_id.clone()))].into(),
        "MySQL from the instances only",
    );
    let efs_sg_d = run.security_group(
        Component::EfsSecurityGroup,
        &net.vpc_id,
        [Rule::tcp(2049, Source::Group(app_sg_id))].into(),
        "NFS from the instances only",
    );
    let (db_sg, efs_sg) = if run.blocked_by_missing(&missing) {
        run.waiting(Kind::SecurityGroup, db_sg_d.name.clone(), &missing);
        run.waiting(Kind::SecurityGroup, efs_sg_d.name.clone(), &missing);
        (None, None)
    } else {
        let ((db_sg, efs_sg), ()) = tokio::join!(
            async {
                tokio::join!(
                    run.step(
                        &SecurityGroups,
                        &db_sg_d,
                        snap.security_groups.get(&db_sg_d.name)
                    ),
                    run.step(
                        &SecurityGroups,
                        &efs_sg_d,
                        snap.security_groups.get(&efs_sg_d.name)
                    ),
                )
            },
            listeners(run, lb.as_ref(), tg.as_ref()),
        );
        (db_sg, efs_sg)
    };

    // ---- stage 4: database, mount targets.
    let db_spec = &spec.database;
    let mut db_missing = Vec::new();
    let db_sg_id = run.need(
        db_sg.as_ref().map(|g| g.id.clone()),
        "the database's security group",
        &mut db_missing,
    );
    if subnet_group.is_none() {
        db_missing.push("the DB subnet group".into());
    }
    if db_param_l.is_none() {
        db_missing.push("the database password in SSM".into());
    }
    let db_d = DbInstanceDesired {
        identifier: run.name(Component::DbInstance),
        engine_version: db_spec.engine_version.clone(),
        instance_class: db_spec.instance_class.clone(),
        allocated_storage_gib: db_spec.allocated_storage_gib as i32,
        max_allocated_storage_gib: db_spec.max_allocated_storage_gib.map(|v| v as i32),
        multi_az: db_spec.multi_az,
        backup_retention_days: db_spec.backup_retention_days as i32,
        deletion_protection: db_spec.deletion_protection,
        db_name: db_spec.name.clone(),
        username: db_spec.username.clone(),
        subnet_group: subnet_group_d.name.clone(),
        security_groups: [db_sg_id].into(),
        password_parameter: db_param.name.clone(),
        tags: run.tags(Component::DbInstance),
    };
    let db_live = snap.db_instances.get(&db_d.identifier);
    let mut efs_missing = Vec::new();
    let efs_sg_id = run.need(
        efs_sg.as_ref().map(|g| g.id.clone()),
        "the file system's security group",
        &mut efs_missing,
    );
    let fs_id = run.need(
        fs.as_ref().map(|f: &FileSystemLive| f.id.clone()),
        "the file system",
        &mut efs_missing,
    );
    let (db, ()) = tokio::join!(
        async {
            match (&run.data.db, db_live) {
                (_, Some(live)) => run.step(&DbInstances, &db_d, Some(live)).await,
                (DbSource::Blocked(reason), None) => {
                    run.refuse(Kind::DbInstance, db_d.identifier.clone(), reason);
                    None
                }
                _ if run.blocked_by_missing(&db_missing) => {
                    run.waiting(Kind::DbInstance, db_d.identifier.clone(), &db_missing);
                    None
                }
                (DbSource::Restore(snapshot), None) => run.restore_db(&db_d, snapshot).await,
                (_, None) => run.step(&DbInstances, &db_d, None).await,
            }
        },
        mount_targets(run, net, &fs_id, &efs_sg_id, &efs_missing),
    );

    // ---- stage 5: launch template.
    let mut missing = Vec::new();
    let image_id = match (&spec.compute.ami.id, &spec.compute.ami.ssm_parameter) {
        (Some(id), _) => Some(id.clone()),
        (None, Some(param)) => snap.amis.get(param).cloned(),
        (None, None) => None,
    };
    let image_id = run.need(image_id, "the AMI (SSM parameter)", &mut missing);
    let domain = match &spec.prestashop.domain {
        Some(d) => d.clone(),
        None => run.need(
            lb.as_ref().map(|l| l.dns_name.clone()),
            "the load balancer's DNS name",
            &mut missing,
        ),
    };
    let inputs = bootstrap::Inputs {
        efs_id: run.need(
            fs.as_ref().map(|f| f.id.clone()),
            "the file system",
            &mut missing,
        ),
        db_host: run.need(
            db.as_ref()
                .and_then(|d: &DbInstanceLive| d.endpoint.clone()),
            "the database endpoint",
            &mut missing,
        ),
        db_port: db.as_ref().map(|d| d.port).unwrap_or(3306),
        domain,
    };
    let app_sg_id = run.need(
        app_sg.as_ref().map(|g| g.id.clone()),
        "the instances' security group",
        &mut missing,
    );
    let lt_name = run.name(Component::LaunchTemplate);
    let lt: Live<LaunchTemplateLive> = match bootstrap::render(run.stack, &inputs) {
        Err(e) => {
            run.record(Change {
                kind: Kind::LaunchTemplate,
                name: lt_name.clone(),
                id: None,
                action: Action::Failed,
                diffs: Vec::new(),
                reason: Some(e.to_string()),
            });
            snap.launch_templates.get(&lt_name).cloned()
        }
        Ok(user_data) => {
            let compute = &spec.compute;
            let lt_d = LaunchTemplateDesired {
                name: lt_name.clone(),
                data: TemplateData {
                    image_id,
                    instance_type: compute.instance_type.clone(),
                    instance_profile: compute.instance_profile.clone(),
                    security_groups: [app_sg_id].into(),
                    user_data,
                    http_tokens: "required".into(),
                    hop_limit: compute.imds_hop_limit as i32,
                    root_volume_gib: compute.root_volume_size_gib as i32,
                    root_encrypted: true,
                },
                tags: run.tags(Component::LaunchTemplate),
                instance_tags: run.tags(Component::AutoScalingGroup),
            };
            if run.blocked_by_missing(&missing) {
                run.waiting(Kind::LaunchTemplate, lt_name.clone(), &missing);
                snap.launch_templates.get(&lt_name).cloned()
            } else {
                run.step(&LaunchTemplates, &lt_d, snap.launch_templates.get(&lt_name))
                    .await
            }
        }
    };
    let (lt_changed, moves_to_new_fs) = {
        let changes = run.changes.lock().unwrap_or_else(|e| e.into_inner());
        let lt_update = changes
            .iter()
            .find(|c| c.kind == Kind::LaunchTemplate && c.action == Action::Update);
        let fs_created = changes
            .iter()
            .any(|c| c.kind == Kind::FileSystem && c.action == Action::Create);
        let efs_changes =
            lt_update.is_some_and(|c| c.diffs.iter().any(|d| d.field == "userData.EFS_ID"));
        (lt_update.is_some(), fs_created && efs_changes)
    };

    // ---- stage 6: Auto Scaling group, instance refresh.
    let compute = &spec.compute;
    let mut missing = Vec::new();
    let asg_d = AutoScalingGroupDesired {
        name: run.name(Component::AutoScalingGroup),
        launch_template_id: run.need(
            lt.as_ref().map(|l| l.id.clone()),
            "the launch template",
            &mut missing,
        ),
        subnets: net.private_ids().into_iter().collect(),
        min_size: compute.min_size as i32,
        max_size: compute.max_size as i32,
        initial_capacity: compute.desired_capacity.unwrap_or(compute.min_size) as i32,
        target_groups: [run.need(
            tg.as_ref().map(|t: &TargetGroupLive| t.arn.clone()),
            "the target group",
            &mut missing,
        )]
        .into(),
        health_check_grace_seconds: compute.health_check_grace_period_seconds as i32,
        policy_name: run.name(Component::ScalingPolicy),
        target_cpu: f64::from(compute.target_cpu_utilization),
        tags: run.tags(Component::AutoScalingGroup),
    };
    let asg_before = snap.auto_scaling_groups.get(&asg_d.name);
    let asg: Live<AutoScalingGroupLive> = if run.blocked_by_missing(&missing) {
        run.waiting(Kind::AutoScalingGroup, asg_d.name.clone(), &missing);
        None
    } else {
        run.step(&AutoScalingGroups, &asg_d, asg_before).await
    };
    let mut started = None;
    if lt_changed && asg_before.is_some() {
        let refresh = &compute.instance_refresh;
        let note = match run.mode {
            // Never move a running shop onto a file system this run created empty.
            _ if moves_to_new_fs => "the launch template now points at a new, empty file system: no instance refresh is started; roll the group yourself once the shop's files are in place (`aws autoscaling start-instance-refresh`)".to_string(),
            Mode::Plan => "the launch template changes: an instance refresh will roll the group".to_string(),
            Mode::Apply => match AutoScalingGroups
                .start_refresh(run.aws, &asg_d.name, refresh.min_healthy_percentage as i32, refresh.instance_warmup_seconds as i32)
                .await
            {
                Ok(Some(id)) => {
                    let note = format!("instance refresh {id} started (min healthy {}%)", refresh.min_healthy_percentage);
                    started = Some(id);
                    note
                }
                Ok(None) => "an instance refresh is already in progress; the new template applies to instances it launches".to_string(),
                Err(e) => format!("could not start an instance refresh: {e}"),
            },
        };
        let mut changes = run.changes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = changes
            .iter_mut()
            .find(|c| c.kind == Kind::AutoScalingGroup)
        {
            c.reason = Some(match &c.reason {
                Some(r) => format!("{r}; {note}"),
                None => note,
            });
        }
    }

    // The group's rolling state is part of the stack's status. A refresh this run started is
    // marked with a tag on the group; only marked groups are asked for their refresh (one call
    // per rolling group), and the mark goes once the refresh has ended.
    let group = asg.as_ref().or(asg_before);
    let mut refresh = None;
    if let (Some(group), Some(id)) = (group, &started) {
        if let Err(e) = AutoScalingGroups
            .mark_refresh(run.aws, &group.name, Some(id))
            .await
        {
            tracing::warn!(group = %group.name, error = %e, "marking the instance refresh failed");
        }
        refresh = Some(crate::report::RefreshStatus {
            id: id.clone(),
            status: "Pending".into(),
            percentage_complete: 0,
            started_by_this_run: true,
        });
    } else if let Some(group) = group.filter(|g| g.tags.contains_key(TAG_REFRESH)) {
        match AutoScalingGroups.latest_refresh(run.aws, &group.name).await {
            Ok(Some((id, status, pct))) => {
                let ended = matches!(
                    status.as_str(),
                    "Successful" | "Failed" | "Cancelled" | "RollbackSuccessful" | "RollbackFailed"
                );
                if ended
                    && run.mode == Mode::Apply
                    && let Err(e) = AutoScalingGroups
                        .mark_refresh(run.aws, &group.name, None)
                        .await
                {
                    tracing::warn!(group = %group.name, error = %e, "clearing the refresh mark failed");
                }
                refresh = Some(crate::report::RefreshStatus {
                    id,
                    status,
                    percentage_complete: pct,
                    started_by_this_run: false,
                });
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(group = %group.name, error = %e, "reading the instance refresh failed")
            }
        }
    }

    let outputs = Outputs {
        alb_dns_name: lb.as_ref().map(|l| l.dns_name.clone()),
        tg_arn: tg.as_ref().map(|t| t.arn.clone()),
        db_endpoint: db.as_ref().and_then(|d| d.endpoint.clone()),
        efs_id: fs.as_ref().map(|f| f.id.clone()),
        asg_name: asg.as_ref().map(|a| a.name.clone()),
        launch_template_version: lt.as_ref().map(|l| l.default_version),
    };
    (outputs, refresh)
}

async fn listeners(run: &Run<'_>, lb: Option<&LoadBalancerLive>, tg: Option<&TargetGroupLive>) {
    let lb_spec = &run.stack.spec.load_balancer;
    let lb_name = run.name(Component::LoadBalancer);
    let mut missing = Vec::new();
    let lb_arn = run.need(lb.map(|l| l.arn.clone()), "the load balancer", &mut missing);
    let tg_arn = run.need(tg.map(|t| t.arn.clone()), "the target group", &mut missing);
    let mut desired = vec![ListenerDesired {
        key: format!("{lb_name}:{}", lb_spec.http_port),
        load_balancer_arn: lb_arn.clone(),
        port: lb_spec.http_port,
        protocol: "HTTP".into(),
        action: match &lb_spec.https {
            Some(h) if h.redirect_http => DefaultAction::RedirectHttps(h.port),
            _ => DefaultAction::Forward(tg_arn.clone()),
        },
        certificate_arn: None,
        ssl_policy: None,
    }];
    if let Some(h) = &lb_spec.https {
        desired.push(ListenerDesired {
            key: format!("{lb_name}:{}", h.port),
            load_balancer_arn: lb_arn,
            port: h.port,
            protocol: "HTTPS".into(),
            action: DefaultAction::Forward(tg_arn),
            certificate_arn: Some(h.certificate_arn.clone()),
            ssl_policy: Some(h.ssl_policy.clone()),
        });
    }
    if run.blocked_by_missing(&missing) {
        for d in &desired {
            run.waiting(Kind::Listener, d.key.clone(), &missing);
        }
        return;
    }
    futures::future::join_all(
        desired
            .iter()
            .map(|d| run.step(&Listeners, d, run.snap.listeners.get(&d.key))),
    )
    .await;
    // Listeners nobody declared (a port opened by hand) are removed: they hold no data.
    let wanted: BTreeSet<&str> = desired.iter().map(|d| d.key.as_str()).collect();
    let Some(lb) = lb else { return };
    for extra in run
        .snap
        .listeners
        .values()
        .filter(|l| l.load_balancer_arn == lb.arn && !wanted.contains(l.key.as_str()))
    {
        run.prune(&Listeners, &extra.key, extra, "not declared")
            .await;
    }
}

async fn mount_targets(
    run: &Run<'_>,
    net: &Network,
    fs_id: &str,
    efs_sg_id: &str,
    missing: &[String],
) {
    let desired: Vec<MountTargetDesired> = net
        .private
        .iter()
        .map(|s| MountTargetDesired {
            file_system_id: fs_id.to_string(),
            subnet_id: s.id.clone(),
            security_groups: [efs_sg_id.to_string()].into(),
        })
        .collect();
    if run.blocked_by_missing(missing) {
        for d in &desired {
            run.waiting(Kind::MountTarget, MountTargets::name(d), missing);
        }
        return;
    }
    futures::future::join_all(desired.iter().map(|d| {
        run.step(
            &MountTargets,
            d,
            run.snap.mount_targets.get(&MountTargets::name(d)),
        )
    }))
    .await;
    let wanted: BTreeSet<String> = desired.iter().map(MountTargets::name).collect();
    for extra in run.snap.mount_targets.values().filter(|m| {
        m.file_system_id == fs_id
            && !wanted.contains(&mount_target::key(&m.file_system_id, &m.subnet_id))
    }) {
        let name = mount_target::key(&extra.file_system_id, &extra.subnet_id);
        run.prune(
            &MountTargets,
            &name,
            extra,
            "in a subnet the stack no longer uses",
        )
        .await;
    }
}

/// How long `apply` waits for a resource to become usable by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30 * 60);
