//! What the fake keeps: the resources of one region, as the SDK's own types (so that a test
//! can change any field by hand, as a person in the console would), the calls answered and
//! the faults to inject.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_autoscaling::types as asg;
use aws_sdk_ec2::types as ec2;
use aws_sdk_efs::types as efs;
use aws_sdk_elasticloadbalancingv2::types as elb;
use aws_sdk_rds::types as rds;
use aws_sdk_ssm::types as ssm;
use tokio::time::Instant;

use crate::wire::Failure;

/// How long resources take to become usable, on the Tokio clock.
#[derive(Debug, Clone, Copy)]
pub struct Delays {
    /// RDS `creating`/`modifying` → `available`.
    pub database: Duration,
    /// ALB `provisioning` → `active`.
    pub load_balancer: Duration,
    /// EFS file systems and mount targets `creating` → `available`.
    pub file_system: Duration,
}

impl Default for Delays {
    fn default() -> Self {
        Delays {
            database: Duration::from_secs(60),
            load_balancer: Duration::from_secs(20),
            file_system: Duration::from_secs(5),
        }
    }
}

/// What happens to one call.
pub(crate) enum Verdict {
    Proceed,
    /// Refused before anything is done.
    Fail(Failure),
    /// Done, but the answer is lost on the way back: the caller sees this failure.
    Lose(Failure),
}

/// The kinds of random faults ([`crate::FakeAws::chaos`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Chaos {
    /// `Throttling` (400).
    Throttle,
    /// `ServiceUnavailable` (503).
    Unavailable,
    /// `InternalError` (500).
    Internal,
    /// Processed, then the answer lost (the caller sees a 500): it must not create twice.
    Lost,
}

impl Chaos {
    pub const ALL: [Chaos; 4] = [
        Chaos::Throttle,
        Chaos::Unavailable,
        Chaos::Internal,
        Chaos::Lost,
    ];

    fn failure(self, operation: &str) -> Failure {
        match self {
            Chaos::Throttle => Failure::new("Throttling", format!("{operation}: Rate exceeded")),
            Chaos::Unavailable => Failure::new(
                "ServiceUnavailable",
                format!("{operation}: Service unavailable"),
            ),
            Chaos::Internal | Chaos::Lost => Failure::new(
                "InternalError",
                format!("{operation}: An internal error has occurred"),
            ),
        }
    }
}

/// A seeded share of calls failing.
#[derive(Debug, Clone)]
pub(crate) struct Random {
    pub rate: f64,
    pub state: u64,
    pub kinds: Vec<Chaos>,
}

impl Random {
    /// xorshift64*: deterministic for a seed.
    fn next(&mut self) -> f64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub operation: String,
    pub code: String,
    pub remaining: Option<u32>,
}

/// A load balancer with what is read separately.
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    pub lb: elb::LoadBalancer,
    pub attributes: Vec<elb::LoadBalancerAttribute>,
    pub ready_at: Instant,
}

#[derive(Debug, Clone)]
pub struct TargetGroup {
    pub tg: elb::TargetGroup,
    pub attributes: Vec<elb::TargetGroupAttribute>,
}

#[derive(Debug, Clone)]
pub struct LaunchTemplate {
    pub template: ec2::LaunchTemplate,
    pub versions: Vec<ec2::LaunchTemplateVersion>,
}

#[derive(Debug, Clone)]
pub struct Database {
    pub db: rds::DbInstance,
    pub ready_at: Instant,
}

#[derive(Debug, Clone)]
pub struct FileSystem {
    pub fs: efs::FileSystemDescription,
    pub backup: bool,
    pub lifecycle: Vec<efs::LifecyclePolicy>,
    pub ready_at: Instant,
}

#[derive(Debug, Clone)]
pub struct MountTarget {
    pub mt: efs::MountTargetDescription,
    pub security_groups: Vec<String>,
    pub ready_at: Instant,
}

#[derive(Debug, Clone)]
pub struct Parameter {
    /// The latest version.
    pub parameter: ssm::Parameter,
    pub tags: Vec<ssm::Tag>,
    /// Every version, oldest first, with its labels (a label is on one version at most).
    pub history: Vec<(ssm::Parameter, Vec<String>)>,
}

impl Parameter {
    /// The version a selector names: `latest` for none, `:<n>` a version, `:<label>` a label.
    pub fn select(&self, selector: Option<&str>) -> Option<ssm::Parameter> {
        let Some(sel) = selector else {
            return Some(self.parameter.clone());
        };
        let found = match sel.parse::<i64>() {
            Ok(v) => self.history.iter().find(|(p, _)| p.version == v),
            Err(_) => self
                .history
                .iter()
                .find(|(_, labels)| labels.iter().any(|l| l == sel)),
        };
        found.map(|(p, _)| {
            let mut p = p.clone();
            p.selector = Some(format!(":{sel}"));
            p
        })
    }
}

/// The resources of the region, the calls and the faults.
#[derive(Debug)]
pub struct World {
    pub region: String,
    pub account: String,
    pub delays: Delays,
    seq: u64,
    pub vpcs: Vec<ec2::Vpc>,
    pub subnets: Vec<ec2::Subnet>,
    pub security_groups: Vec<ec2::SecurityGroup>,
    pub launch_templates: Vec<LaunchTemplate>,
    pub network_interfaces: Vec<ec2::NetworkInterface>,
    pub load_balancers: Vec<LoadBalancer>,
    pub target_groups: Vec<TargetGroup>,
    /// Tags of ELB resources by ARN.
    pub elb_tags: BTreeMap<String, Vec<elb::Tag>>,
    pub listeners: Vec<elb::Listener>,
    pub groups: Vec<asg::AutoScalingGroup>,
    pub policies: Vec<asg::ScalingPolicy>,
    pub refreshes: Vec<asg::InstanceRefresh>,
    pub databases: Vec<Database>,
    pub subnet_groups: Vec<(rds::DbSubnetGroup, Vec<rds::Tag>)>,
    pub snapshots: Vec<rds::DbSnapshot>,
    pub file_systems: Vec<FileSystem>,
    pub mount_targets: Vec<MountTarget>,
    pub parameters: BTreeMap<String, Parameter>,
    pub calls: Vec<String>,
    /// Random faults injected, by kind.
    pub injected: BTreeMap<Chaos, usize>,
    pub(crate) faults: Vec<Fault>,
    pub(crate) random: Option<Random>,
    /// Writes done (answered or lost).
    pub(crate) writes: usize,
    /// After this many writes, nothing more is done (a process killed there).
    pub(crate) cut_after: Option<usize>,
    /// AWS's request rate limits on reads, per service (signing name).
    pub(crate) read_limits: BTreeMap<String, ReadLimit>,
    /// Reads refused by those limits, per service.
    pub throttled: BTreeMap<String, usize>,
    /// Reads answered (or refused), per service.
    pub reads: BTreeMap<String, usize>,
}

/// A service's bucket of non-mutating requests, as AWS meters them per account and region
/// (EC2: 20 a second, a bucket of 100): a read finding it empty is refused with the
/// service's throttling code.
#[derive(Debug, Clone)]
pub(crate) struct ReadLimit {
    pub per_second: f64,
    pub burst: f64,
    pub tokens: f64,
    pub at: Instant,
}

impl ReadLimit {
    pub(crate) fn new(per_second: f64, burst: f64) -> ReadLimit {
        ReadLimit {
            per_second,
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    /// Takes a token if there is one.
    fn admit(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 - 1e-9 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl World {
    pub fn new(region: &str) -> World {
        World {
            region: region.to_string(),
            account: "123456789012".into(),
            delays: Delays::default(),
            seq: 0,
            vpcs: Vec::new(),
            subnets: Vec::new(),
            security_groups: Vec::new(),
            launch_templates: Vec::new(),
            network_interfaces: Vec::new(),
            load_balancers: Vec::new(),
            target_groups: Vec::new(),
            elb_tags: BTreeMap::new(),
            listeners: Vec::new(),
            groups: Vec::new(),
            policies: Vec::new(),
            refreshes: Vec::new(),
            databases: Vec::new(),
            subnet_groups: Vec::new(),
            snapshots: Vec::new(),
            file_systems: Vec::new(),
            mount_targets: Vec::new(),
            parameters: BTreeMap::new(),
            calls: Vec::new(),
            injected: BTreeMap::new(),
            faults: Vec::new(),
            random: None,
            writes: 0,
            cut_after: None,
            read_limits: BTreeMap::new(),
            throttled: BTreeMap::new(),
            reads: BTreeMap::new(),
        }
    }

    /// A fresh id: `prefix-` and 17 hex digits, as EC2 hands them out.
    pub fn id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}-{:017x}", 0xfa4e_0000_u64 + self.seq)
    }

    /// An ARN of this region and account.
    pub fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:aws:{service}:{}:{}:{resource}",
            self.region, self.account
        )
    }

    /// Every call goes through here: counted, settled on the clock, failed if a fault says so.
    pub(crate) fn enter(&mut self, operation: &str, service: &str) -> Verdict {
        self.calls.push(operation.to_string());
        self.settle();
        let write = presta_aws::calls::is_mutating(operation);
        if !write {
            *self.reads.entry(service.to_string()).or_default() += 1;
        }
        if !write
            && let Some(limit) = self.read_limits.get_mut(service)
            && !limit.admit(Instant::now())
        {
            *self.throttled.entry(service.to_string()).or_default() += 1;
            let code = if service == "ec2" {
                "RequestLimitExceeded"
            } else {
                "Throttling"
            };
            return Verdict::Fail(Failure::new(
                code,
                format!("{operation}: Rate exceeded ({service} reads)"),
            ));
        }
        if self.cut_after.is_some_and(|k| self.writes >= k) {
            return Verdict::Fail(Failure::new(
                "ServiceUnavailable",
                format!("{operation}: cut off (the caller was killed here)"),
            ));
        }
        if let Some(i) = self.faults.iter().position(|f| f.operation == operation) {
            let fault = self.faults[i].clone();
            match fault.remaining {
                Some(1) => {
                    self.faults.remove(i);
                }
                Some(n) => self.faults[i].remaining = Some(n - 1),
                None => {}
            }
            return Verdict::Fail(Failure::new(
                &fault.code,
                format!("{operation}: injected fault {}", fault.code),
            ));
        }
        if let Some(r) = &mut self.random
            && r.next() < r.rate
        {
            let roll = r.next();
            let pick = r.kinds[(roll * r.kinds.len() as f64) as usize % r.kinds.len()];
            *self.injected.entry(pick).or_default() += 1;
            if pick == Chaos::Lost {
                self.writes += usize::from(write);
                return Verdict::Lose(pick.failure(operation));
            }
            return Verdict::Fail(pick.failure(operation));
        }
        self.writes += usize::from(write);
        Verdict::Proceed
    }

    /// Statuses that settle with time: what `creating` becomes once its delay has passed.
    fn settle(&mut self) {
        let now = Instant::now();
        for d in &mut self.databases {
            let status = d.db.db_instance_status.as_deref().unwrap_or_default();
            if now >= d.ready_at && matches!(status, "creating" | "modifying" | "backing-up") {
                d.db.db_instance_status = Some("available".into());
                if let Some(p) = d.db.pending_modified_values.take()
                    && let Some(class) = p.db_instance_class
                {
                    d.db.db_instance_class = Some(class);
                }
            }
        }
        for lb in &mut self.load_balancers {
            if now >= lb.ready_at
                && let Some(state) = &mut lb.lb.state
                && state.code == Some(elb::LoadBalancerStateEnum::Provisioning)
            {
                *state = elb::LoadBalancerState::builder()
                    .code(elb::LoadBalancerStateEnum::Active)
                    .build();
            }
        }
        for fs in &mut self.file_systems {
            if now >= fs.ready_at && fs.fs.life_cycle_state == efs::LifeCycleState::Creating {
                fs.fs.life_cycle_state = efs::LifeCycleState::Available;
            }
        }
        for mt in &mut self.mount_targets {
            if now >= mt.ready_at && mt.mt.life_cycle_state == efs::LifeCycleState::Creating {
                mt.mt.life_cycle_state = efs::LifeCycleState::Available;
            }
        }
    }

    /// The network `presta-<name>-*` of the emulator's seed, and the public AMI parameters.
    pub fn seed(&mut self, name: &str) -> String {
        let prefix = format!("presta-{name}");
        let tag = |v: String| ec2::Tag::builder().key("Name").value(v).build();
        let vpc_id = self.id("vpc");
        self.vpcs.push(
            ec2::Vpc::builder()
                .vpc_id(&vpc_id)
                .cidr_block("10.40.0.0/16")
                .state(ec2::VpcState::Available)
                .tags(tag(format!("{prefix}-vpc")))
                .build(),
        );
        for (suffix, cidr, zone) in [
            ("public-a", "10.40.0.0/24", "a"),
            ("public-b", "10.40.1.0/24", "b"),
            ("private-a", "10.40.10.0/24", "a"),
            ("private-b", "10.40.11.0/24", "b"),
        ] {
            let id = self.id("subnet");
            self.subnets.push(
                ec2::Subnet::builder()
                    .subnet_id(id)
                    .vpc_id(&vpc_id)
                    .cidr_block(cidr)
                    .availability_zone(format!("{}{zone}", self.region))
                    .state(ec2::SubnetState::Available)
                    .tags(tag(format!("{prefix}-{suffix}")))
                    .build(),
            );
        }
        for (arch, ami) in [
            ("x86_64", "ami-0a1b2c3d4e5f60001"),
            ("arm64", "ami-0a1b2c3d4e5f60002"),
        ] {
            let name =
                format!("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}");
            self.put_parameter(&name, ami, ssm::ParameterType::String, Vec::new());
        }
        vpc_id
    }

    /// Stores a parameter (a new version if it exists).
    pub fn put_parameter(
        &mut self,
        name: &str,
        value: &str,
        kind: ssm::ParameterType,
        tags: Vec<ssm::Tag>,
    ) -> i64 {
        let version = self
            .parameters
            .get(name)
            .map_or(1, |p| p.parameter.version + 1);
        let arn = self.arn("ssm", &format!("parameter{name}"));
        let (keep, mut history) = self
            .parameters
            .remove(name)
            .map(|p| (p.tags, p.history))
            .unwrap_or_default();
        let parameter = ssm::Parameter::builder()
            .name(name)
            .value(value)
            .r#type(kind)
            .version(version)
            .arn(arn)
            .build();
        history.push((parameter.clone(), Vec::new()));
        if history.len() > 100 {
            history.remove(0); // SSM keeps the last 100 versions
        }
        self.parameters.insert(
            name.to_string(),
            Parameter {
                parameter,
                tags: if tags.is_empty() { keep } else { tags },
                history,
            },
        );
        version
    }

    /// Whether anything still uses the security group `id` (another group's rule, a load
    /// balancer, a database, a mount target, a network interface).
    pub fn group_in_use(&self, id: &str) -> Option<String> {
        let id = Some(id);
        for g in &self.security_groups {
            if g.group_id.as_deref() == id {
                continue;
            }
            let refers = g.ip_permissions().iter().any(|p| {
                p.user_id_group_pairs()
                    .iter()
                    .any(|pair| pair.group_id.as_deref() == id)
            });
            if refers {
                return Some(format!(
                    "referenced by {}",
                    g.group_id().unwrap_or_default()
                ));
            }
        }
        if let Some(lb) = self.load_balancers.iter().find(|lb| {
            lb.lb
                .security_groups()
                .iter()
                .any(|g| Some(g.as_str()) == id)
        }) {
            return Some(format!(
                "used by {}",
                lb.lb.load_balancer_name().unwrap_or_default()
            ));
        }
        if let Some(db) = self.databases.iter().find(|d| {
            d.db.vpc_security_groups()
                .iter()
                .any(|g| g.vpc_security_group_id.as_deref() == id)
        }) {
            return Some(format!(
                "used by {}",
                db.db.db_instance_identifier().unwrap_or_default()
            ));
        }
        if let Some(mt) = self
            .mount_targets
            .iter()
            .find(|mt| mt.security_groups.iter().any(|g| Some(g.as_str()) == id))
        {
            return Some(format!("used by {}", mt.mt.mount_target_id));
        }
        None
    }
}

/// An EC2-style value match: `*` any run of characters, `?` one.
pub fn glob(pattern: &str, value: &str) -> bool {
    fn go(p: &[char], v: &[char]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('*', rest)) => (0..=v.len()).any(|i| go(rest, &v[i..])),
            Some(('?', rest)) => !v.is_empty() && go(rest, &v[1..]),
            Some((c, rest)) => v.first() == Some(c) && go(rest, &v[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    go(&p, &v)
}

/// Whether a resource passes every filter: `values(name)` gives the resource's values for a
/// filter name (`tag:Key`, `vpc-id`, …); one matching value per filter is enough.
pub fn passes<'a>(
    filters: impl IntoIterator<Item = (&'a str, &'a [String])>,
    values: impl Fn(&str) -> Vec<String>,
) -> bool {
    filters.into_iter().all(|(name, wanted)| {
        let have = values(name);
        wanted.iter().any(|w| have.iter().any(|h| glob(w, h)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_ec2_filters() {
        assert!(glob("demo-*-sg", "demo-alb-sg"));
        assert!(glob("presta-demo-public-*", "presta-demo-public-a"));
        assert!(!glob("demo-*-sg", "demo2-alb-sgx"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
    }
}
