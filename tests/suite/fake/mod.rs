//! What the fake-driven tests share: the demo stack, an engine on the fake, and the reading
//! of reports and of the fake's resources.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use presta_aws::{Action, Mode};
use presta_engine::{Engine, Progress, Settings};
use presta_spec::Stack;
use presta_testkit::FakeAws;

pub struct Quiet;

impl Progress for Quiet {
    fn report(&self, _: &str) {}
}

/// The demo stack, edited by `edit`.
pub fn demo(edit: impl Fn(String) -> String) -> Vec<Stack> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.yaml");
    let text = edit(std::fs::read_to_string(&path).unwrap());
    presta_spec::parse_file(&text, &path)
        .unwrap_or_else(|p| panic!("{p:?}"))
        .into_iter()
        .map(|l| l.stack)
        .collect()
}

pub fn engine(fake: &FakeAws) -> Engine {
    Engine::new(Settings {
        client: fake.settings(),
        poll_interval: Duration::from_secs(5),
        progress: Arc::new(Quiet),
        ..Settings::default()
    })
}

/// Every change of the report, as `kind name action`.
pub fn actions(report: &presta_engine::StackReport) -> Vec<String> {
    report
        .changes
        .iter()
        .filter(|c| c.action != Action::None)
        .map(|c| format!("{} {} {:?}", c.kind, c.name, c.action))
        .collect()
}

/// A fake region with the demo network and the demo stack built in it.
pub async fn built(extra_networks: &[&str]) -> (FakeAws, Engine) {
    let fake = FakeAws::new();
    fake.seed("demo");
    for n in extra_networks {
        fake.seed(n);
    }
    let engine = engine(&fake);
    let report = engine.run(&demo(|t| t), Mode::Apply).await;
    assert_eq!(report.stacks[0].failed(), 0, "{}", report.render());
    fake.reset_calls();
    (fake, engine)
}

/// `spec.policy.maxChangesPerRun: n`.
pub fn budget(text: String, n: u32) -> String {
    text.replace(
        "  database:\n",
        &format!("  policy:\n    maxChangesPerRun: {n}\n  database:\n"),
    )
}

pub fn other_vpc(text: String) -> String {
    text.replace("Name: presta-demo-", "Name: presta-other-")
}

pub fn approving(stack: &str, hash: &str) -> presta_engine::budget::Guards {
    let mut guards = presta_engine::budget::Guards::new();
    guards.entry(stack.to_string()).or_default().approved = vec![hash.to_string()];
    guards
}

/// The demo stack's resources in the fake, counted by kind (duplicates show as > 1).
pub fn inventory(fake: &FakeAws) -> BTreeMap<&'static str, usize> {
    let w = fake.world();
    BTreeMap::from([
        ("security_group", w.security_groups.len()),
        ("launch_template", w.launch_templates.len()),
        ("load_balancer", w.load_balancers.len()),
        ("target_group", w.target_groups.len()),
        ("listener", w.listeners.len()),
        ("auto_scaling_group", w.groups.len()),
        ("db_instance", w.databases.len()),
        ("db_subnet_group", w.subnet_groups.len()),
        ("file_system", w.file_systems.len()),
        ("mount_target", w.mount_targets.len()),
        (
            "parameter",
            w.parameters
                .keys()
                .filter(|k| k.starts_with("/presta-reconciler/"))
                .count(),
        ),
    ])
}

/// The demo stack built once.
pub fn expected() -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("security_group", 4),
        ("launch_template", 1),
        ("load_balancer", 1),
        ("target_group", 1),
        ("listener", 1),
        ("auto_scaling_group", 1),
        ("db_instance", 1),
        ("db_subnet_group", 1),
        ("file_system", 1),
        ("mount_target", 2),
        ("parameter", 2),
    ])
}

/// `stack`'s database group is open to the world (as a person would open it).
pub fn db_open(fake: &FakeAws, stack: &str) -> bool {
    let group = format!("{stack}-db-sg");
    fake.world()
        .security_groups
        .iter()
        .find(|g| g.group_name() == Some(group.as_str()))
        .is_some_and(|g| {
            g.ip_permissions().iter().any(|p| {
                p.ip_ranges()
                    .iter()
                    .any(|r| r.cidr_ip() == Some("0.0.0.0/0"))
            })
        })
}

/// Opens `stack`'s database group to the world; returns the group's id.
pub fn open_db(fake: &FakeAws, stack: &str) -> String {
    let group = format!("{stack}-db-sg");
    let mut world = fake.world();
    let g = world
        .security_groups
        .iter_mut()
        .find(|g| g.group_name() == Some(group.as_str()))
        .expect("the stack's database group");
    g.ip_permissions.get_or_insert_with(Vec::new).push(
        aws_sdk_ec2::types::IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(3306)
            .to_port(3306)
            .ip_ranges(
                aws_sdk_ec2::types::IpRange::builder()
                    .cidr_ip("0.0.0.0/0")
                    .build(),
            )
            .build(),
    );
    g.group_id().unwrap_or_default().to_string()
}
