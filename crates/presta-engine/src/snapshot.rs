//! One observation of a region for a set of stacks: every kind listed once (filtered by the
//! stacks' deterministic names), concurrently; then the kinds that hang off another resource
//! (listeners of the load balancers, mount targets of the file systems). Observing ten stacks
//! costs about the calls of one, plus the few per-resource reads AWS offers no batch for.

use std::collections::BTreeMap;

use presta_aws::auto_scaling_group::{AutoScalingGroupLive, AutoScalingGroups};
use presta_aws::db_instance::{DbInstanceLive, DbInstances};
use presta_aws::db_subnet_group::{DbSubnetGroupLive, DbSubnetGroups};
use presta_aws::file_system::{FileSystemLive, FileSystems};
use presta_aws::launch_template::{LaunchTemplateLive, LaunchTemplates};
use presta_aws::listener::{ListenerLive, Listeners};
use presta_aws::load_balancer::{LoadBalancerLive, LoadBalancers};
use presta_aws::mount_target::{MountTargetLive, MountTargets};
use presta_aws::network::Inventory;
use presta_aws::parameter::ParameterLive;
use presta_aws::security_group::{SecurityGroupLive, SecurityGroups};
use presta_aws::target_group::{TargetGroupLive, TargetGroups};
use presta_aws::{Aws, AwsError, Driver, Scope};
use presta_spec::Stack;
use presta_spec::naming::{self, Component};

/// Everything live that the stacks of one region own.
pub struct Snapshot {
    pub inventory: Inventory,
    /// SSM parameter name → AMI id.
    pub amis: BTreeMap<String, String>,
    pub parameters: BTreeMap<String, ParameterLive>,
    pub security_groups: BTreeMap<String, SecurityGroupLive>,
    pub target_groups: BTreeMap<String, TargetGroupLive>,
    pub load_balancers: BTreeMap<String, LoadBalancerLive>,
    pub listeners: BTreeMap<String, ListenerLive>,
    pub db_subnet_groups: BTreeMap<String, DbSubnetGroupLive>,
    pub db_instances: BTreeMap<String, DbInstanceLive>,
    pub file_systems: BTreeMap<String, FileSystemLive>,
    pub mount_targets: BTreeMap<String, MountTargetLive>,
    pub launch_templates: BTreeMap<String, LaunchTemplateLive>,
    pub auto_scaling_groups: BTreeMap<String, AutoScalingGroupLive>,
}

fn scope(names: Vec<String>) -> Scope {
    Scope {
        names,
        ..Scope::default()
    }
}

/// Which stacks to observe: their names and SSM prefixes (the rest of a spec is not needed to
/// find a stack's resources, so `destroy` can observe a stack that is no longer declared).
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// (stack name, SSM parameter prefix)
    pub stacks: Vec<(String, String)>,
    /// SSM parameters that name AMIs.
    pub ami_params: Vec<String>,
}

impl Targets {
    pub fn of(stacks: &[&Stack]) -> Self {
        Targets {
            stacks: stacks
                .iter()
                .map(|s| (s.name().to_string(), s.parameter_prefix()))
                .collect(),
            ami_params: stacks
                .iter()
                .filter_map(|s| s.spec.compute.ami.ssm_parameter.clone())
                .collect(),
        }
    }
}

impl Snapshot {
    /// Observes every kind for `stacks` (all in `aws`'s region).
    pub async fn observe(aws: &Aws, stacks: &[&Stack]) -> Result<Snapshot, AwsError> {
        Self::observe_targets(aws, &Targets::of(stacks)).await
    }

    /// Observes every kind for the stacks named in `targets`.
    pub async fn observe_targets(aws: &Aws, targets: &Targets) -> Result<Snapshot, AwsError> {
        let stacks = &targets.stacks;
        let names =
            |c: Component| -> Vec<String> { stacks.iter().map(|(name, _)| c.name(name)).collect() };
        let sg_names: Vec<String> = [
            Component::AlbSecurityGroup,
            Component::AppSecurityGroup,
            Component::DbSecurityGroup,
            Component::EfsSecurityGroup,
        ]
        .into_iter()
        .flat_map(names)
        .collect();
        let params: Vec<String> = stacks
            .iter()
            .flat_map(|(_, p)| {
                [
                    naming::db_password_parameter(p),
                    naming::admin_password_parameter(p),
                ]
            })
            .collect();
        let ami_params = &targets.ami_params;

        let (s_params, s_sg, s_tg, s_lb, s_dbsg, s_db, s_fs, s_lt, s_asg) = (
            scope(params),
            scope(sg_names),
            scope(names(Component::TargetGroup)),
            scope(names(Component::LoadBalancer)),
            scope(names(Component::DbSubnetGroup)),
            scope(names(Component::DbInstance)),
            scope(names(Component::FileSystem)),
            scope(names(Component::LaunchTemplate)),
            scope(names(Component::AutoScalingGroup)),
        );
        let (
            inventory,
            (parameters, amis),
            security_groups,
            target_groups,
            load_balancers,
            db_subnet_groups,
            db_instances,
            file_systems,
            launch_templates,
            auto_scaling_groups,
        ) = tokio::try_join!(
            Inventory::fetch(aws),
            // The stacks' passwords and AMI references in the same calls.
            presta_aws::parameter::observe_with_plain(aws, &s_params.names, ami_params),
            SecurityGroups.observe(aws, &s_sg),
            TargetGroups.observe(aws, &s_tg),
            LoadBalancers.observe(aws, &s_lb),
            DbSubnetGroups.observe(aws, &s_dbsg),
            DbInstances.observe(aws, &s_db),
            FileSystems.observe(aws, &s_fs),
            LaunchTemplates.observe(aws, &s_lt),
            AutoScalingGroups.observe(aws, &s_asg),
        )?;
        let lb_arns: Vec<String> = load_balancers.values().map(|l| l.arn.clone()).collect();
        let fs_ids: Vec<String> = file_systems.values().map(|f| f.id.clone()).collect();
        let (s_listeners, s_mounts) = (
            Scope {
                parents: lb_arns,
                ..Scope::default()
            },
            Scope {
                parents: fs_ids,
                ..Scope::default()
            },
        );
        let (listeners, mount_targets) = tokio::try_join!(
            Listeners.observe(aws, &s_listeners),
            MountTargets.observe(aws, &s_mounts)
        )?;
        Ok(Snapshot {
            inventory,
            amis,
            parameters,
            security_groups,
            target_groups,
            load_balancers,
            listeners,
            db_subnet_groups,
            db_instances,
            file_systems,
            mount_targets,
            launch_templates,
            auto_scaling_groups,
        })
    }
}
