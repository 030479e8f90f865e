//! What a plan or an apply found and did, per stack: changes, outputs, errors; printed for
//! people or serialised as JSON. No secret value can appear: diffs never carry one.

use std::fmt::Write as _;
use std::time::Duration;

use presta_aws::{Action, Change, Mode};
use presta_spec::Stack;
use serde::Serialize;

/// Values other systems need from a stack.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Outputs {
    pub alb_dns_name: Option<String>,
    pub tg_arn: Option<String>,
    pub db_endpoint: Option<String>,
    pub efs_id: Option<String>,
    pub asg_name: Option<String>,
    pub launch_template_version: Option<i64>,
    /// Where the shop answers: `https://<domain>/` once HTTPS serves, else `http://` and the
    /// domain or the load balancer's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shop_url: Option<String>,
    /// The shop's own certificate (`https.certificate: auto`): its status and expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

/// The group's latest instance refresh, as AWS reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefreshStatus {
    pub id: String,
    /// `Pending`, `InProgress`, `Successful`, `Failed`, `Cancelled`, ...
    pub status: String,
    pub percentage_complete: i32,
    /// AWS's words on where it stands: waiting at a checkpoint, why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// True when this run started it (the launch template changed).
    pub started_by_this_run: bool,
}

/// The shop's domain moves (new load balancer name, custom domain set or changed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainChange {
    pub from: String,
    pub to: String,
    /// How the database side follows.
    pub how: String,
}

/// Where a resource stands at the end of a run: corrections an apply made count as in sync.
/// The status API shows it per resource; the metrics count it per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceState {
    InSync,
    /// Differs from the spec; the next apply corrects it.
    Drifted,
    /// Differs in a way the reconciler refuses to correct (data at risk, not the stack's).
    Blocked,
    /// Declared but missing.
    Absent,
    /// Present but not declared (a listener opened by hand).
    Undeclared,
    Waiting,
    Failed,
}

/// One stack's result.
#[derive(Debug, Clone, Serialize)]
pub struct StackReport {
    pub stack: String,
    pub region: String,
    /// `plan` or `apply`, as asked.
    pub mode: Mode,
    /// True when the stack's policy is `observe`: nothing was changed whatever was asked.
    pub observe_only: bool,
    pub changes: Vec<Change>,
    pub outputs: Outputs,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_refresh: Option<RefreshStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain_change: Option<DomainChange>,
    /// A stack-level failure (network not found, region unreachable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Is the shop serving (targets, instances, database, files, the security-group chain)?
    /// A different question from drift: a converged stack with no healthy target is `down`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::Health>,
    /// The class of the AWS error behind `error`, when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<presta_aws::error::ErrorClass>,
    /// The typed error behind `error`, when an AWS call caused it (the region's observation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<presta_aws::error::StepError>,
    /// The plan is larger than the stack's change budget: nothing was changed (in an apply)
    /// or would be without approval (in a plan).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<crate::budget::Held>,
    /// A change that rolls the instances waits for the stack this one follows
    /// (`spec.promotion`); everything else was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gated: Option<crate::promotion::Gated>,
    /// True when the region could not be observed at all (AWS unreachable, credentials).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub observation_failed: bool,
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0)
}

impl StackReport {
    pub fn new(stack: &Stack, mode: Mode, observe_only: bool) -> Self {
        StackReport {
            stack: stack.name().to_string(),
            region: stack.spec.region.clone(),
            mode,
            observe_only,
            changes: Vec::new(),
            outputs: Outputs::default(),
            instance_refresh: None,
            domain_change: None,
            error: None,
            health: None,
            error_class: None,
            failure: None,
            held: None,
            gated: None,
            observation_failed: false,
            duration: Duration::ZERO,
        }
    }

    /// Whether this run could change things (an apply on an `enforce` stack, not held).
    pub fn applied(&self) -> bool {
        self.mode == Mode::Apply && !self.observe_only && self.held.is_none()
    }

    /// The state of one of this report's resources once the run is over.
    pub fn state_of(&self, c: &Change) -> ResourceState {
        if c.action == Action::Blocked || c.blocked().next().is_some() {
            return ResourceState::Blocked;
        }
        match c.action {
            Action::None => ResourceState::InSync,
            _ if self.applied() && c.is_pending() => ResourceState::InSync,
            Action::Create | Action::Restore => ResourceState::Absent,
            Action::Delete => ResourceState::Undeclared,
            Action::Update | Action::Replace => ResourceState::Drifted,
            Action::Waiting => ResourceState::Waiting,
            Action::Blocked => ResourceState::Blocked,
            Action::Failed => ResourceState::Failed,
        }
    }

    fn count(&self, a: Action) -> usize {
        self.changes.iter().filter(|c| c.action == a).count()
    }

    /// Changes a (further) apply would make.
    pub fn pending(&self) -> usize {
        self.changes.iter().filter(|c| c.is_pending()).count()
    }

    /// Drift that stays, with a reason (including the blocked fields of an update).
    pub fn blocked(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| {
                c.action == Action::Blocked
                    || (c.action == Action::Update && c.blocked().next().is_some())
            })
            .count()
    }

    /// Resources whose step failed, or the stack's own error.
    pub fn failed(&self) -> usize {
        self.count(Action::Failed) + usize::from(self.error.is_some())
    }

    /// Whether live equals desired (nothing pending, blocked, waiting or failed).
    pub fn converged(&self) -> bool {
        self.error.is_none() && self.changes.iter().all(|c| c.action == Action::None)
    }

    /// The report as people read it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "stack {} ({}){}",
            self.stack,
            self.region,
            if self.observe_only {
                " [policy: observe, nothing is changed]"
            } else {
                ""
            }
        );
        if let Some(e) = &self.error {
            let _ = writeln!(out, "  error: {e}");
            return out;
        }
        if let Some(h) = &self.health {
            let _ = writeln!(
                out,
                "  health: {}{}",
                h.verdict.as_str(),
                if h.reasons.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", h.reasons.join("; "))
                }
            );
        }
        if let Some(h) = &self.held {
            let _ = writeln!(
                out,
                "  HELD: {}\n  {}; to apply exactly this plan: presta-reconciler apply -f <file> --stack {} --approve {}\n  (or POST /stacks/{}/approve with {{\"plan_hash\": \"{}\"}})",
                h.reason,
                if self.mode == Mode::Apply {
                    "nothing was changed"
                } else {
                    "an apply would change nothing until approved"
                },
                self.stack,
                h.plan_hash,
                self.stack,
                h.plan_hash
            );
        }
        if let Some(g) = &self.gated {
            let _ = writeln!(
                out,
                "  GATED: {}
  the release waits for `{}` (spec.promotion); everything else {}; to promote now: presta-reconciler apply -f <file> --stack {} --approve {}\n  (or POST /stacks/{}/approve with {{\"plan_hash\": \"{}\"}})",
                g.reason,
                g.after,
                if self.mode == Mode::Apply { "was applied" } else { "is applied as usual" },
                self.stack,
                g.plan_hash,
                self.stack,
                g.plan_hash
            );
        }
        self.render_summary(&mut out);
        self.render_changes(&mut out);
        self.render_rollout(&mut out);
        let o = &self.outputs;
        let show = |v: &Option<String>| {
            v.clone()
                .unwrap_or_else(|| presta_aws::diff::UNKNOWN.to_string())
        };
        let _ = writeln!(out, "  outputs:");
        if let Some(url) = &o.shop_url {
            let _ = writeln!(out, "    shop_url     = {url}");
        }
        if let Some(c) = &o.certificate {
            let _ = writeln!(out, "    certificate  = {c}");
        }
        let _ = writeln!(out, "    alb_dns_name = {}", show(&o.alb_dns_name));
        let _ = writeln!(out, "    tg_arn       = {}", show(&o.tg_arn));
        let _ = writeln!(out, "    db_endpoint  = {}", show(&o.db_endpoint));
        let _ = writeln!(out, "    efs_id       = {}", show(&o.efs_id));
        out
    }

    /// `3 to create, 1 blocked; 12 unchanged`.
    fn render_summary(&self, out: &mut String) {
        let verb = if self.mode == Mode::Plan { "to" } else { "" };
        let summary = [
            (Action::Create, "create"),
            (Action::Restore, "restore"),
            (Action::Update, "update"),
            (Action::Replace, "replace"),
            (Action::Delete, "delete"),
            (Action::Blocked, "blocked"),
            (Action::Waiting, "waiting"),
            (Action::Failed, "failed"),
        ]
        .iter()
        .filter_map(|(a, word)| {
            let n = self.count(*a);
            (n > 0).then(|| {
                if matches!(a, Action::Blocked | Action::Waiting | Action::Failed) {
                    format!("{n} {word}")
                } else {
                    format!("{n} {verb} {word}").replace("  ", " ")
                }
            })
        })
        .collect::<Vec<_>>();
        let unchanged = self.count(Action::None);
        if summary.is_empty() {
            let _ = writeln!(out, "  no changes: {unchanged} resources match the spec");
        } else {
            let _ = writeln!(out, "  {}; {unchanged} unchanged", summary.join(", "));
        }
    }

    /// One line per changed resource, its field differences and its reason.
    fn render_changes(&self, out: &mut String) {
        for c in self.changes.iter().filter(|c| c.action != Action::None) {
            let _ = write!(
                out,
                "  {:>3} {:<19} {}",
                c.action.symbol(),
                c.kind.as_str(),
                c.name
            );
            if let Some(id) = &c.id {
                let _ = write!(out, " ({id})");
            }
            let _ = writeln!(out);
            for d in &c.diffs {
                let _ = write!(out, "        {}: {} → {}", d.field, d.live, d.desired);
                if let Some(b) = &d.blocked {
                    let _ = write!(out, "  [blocked: {b}]");
                }
                let _ = writeln!(out);
            }
            if let Some(r) = &c.reason
                && (c.action != Action::Blocked || c.diffs.is_empty())
            {
                let _ = writeln!(out, "        {r}");
            }
        }
    }

    /// The shop's domain change and the instance refresh that carries it.
    fn render_rollout(&self, out: &mut String) {
        if let Some(d) = &self.domain_change {
            let _ = writeln!(out, "  shop domain: {} → {}", d.from, d.to);
            let _ = writeln!(out, "        {}", d.how);
        }
        if let Some(r) = &self.instance_refresh {
            let _ = writeln!(
                out,
                "  instance refresh {}: {} ({}%){}{}",
                r.id,
                r.status,
                r.percentage_complete,
                if r.started_by_this_run {
                    ", started by this run"
                } else {
                    ""
                },
                r.status_reason
                    .as_deref()
                    .map(|why| format!(" — {why}"))
                    .unwrap_or_default()
            );
        }
    }
}

/// The result of one run over several stacks.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub stacks: Vec<StackReport>,
    /// AWS calls made by the run, and how many could change state.
    pub aws_calls: u64,
    pub mutating_calls: u64,
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
    /// Resources of stacks that are not in the configuration (plan only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub orphans: Vec<presta_aws::orphans::Orphan>,
    /// Why looking for orphans failed, if it did (the plan itself is unaffected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orphans_error: Option<String>,
}

impl RunReport {
    pub fn render(&self) -> String {
        let mut out: String = self
            .stacks
            .iter()
            .map(StackReport::render)
            .collect::<Vec<_>>()
            .join("\n");
        if !self.orphans.is_empty() {
            let stacks: std::collections::BTreeSet<(&str, &str)> = self
                .orphans
                .iter()
                .map(|o| (o.stack.as_str(), o.region.as_str()))
                .collect();
            let _ = writeln!(
                out,
                "\norphaned: {} resources of stacks that are not in the configuration (left as they are)",
                self.orphans.len()
            );
            for (stack, region) in stacks {
                let _ = writeln!(out, "  stack {stack} ({region}):");
                for o in self
                    .orphans
                    .iter()
                    .filter(|o| o.stack == stack && o.region == region)
                {
                    let _ = writeln!(
                        out,
                        "    ? {:<19} {} {}{}",
                        o.kind.as_str(),
                        o.name,
                        o.id,
                        if o.retained {
                            " (retained by destroy)"
                        } else {
                            ""
                        }
                    );
                }
                let _ = writeln!(
                    out,
                    "    put it back in the configuration, or remove it: presta-reconciler destroy --stack {stack} --confirm {stack} --region {region}"
                );
            }
        }
        if let Some(e) = &self.orphans_error {
            let _ = writeln!(out, "\nwarning: looking for orphaned resources failed: {e}");
        }
        let _ = writeln!(
            out,
            "\n{} AWS calls ({} mutating) in {:.2}s",
            self.aws_calls,
            self.mutating_calls,
            self.duration.as_secs_f64()
        );
        out
    }
}
