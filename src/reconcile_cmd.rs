//! `presta-reconciler plan` and `apply`.
//!
//! plan exit codes (like `terraform plan -detailed-exitcode`): 0 no changes, 2 changes or
//! drift pending, 1 error. apply: 0 when every stack converged or only blocked drift remains
//! (reported), 1 when a step failed or a resource is still waiting, 3 when a stack's plan
//! was held by its change budget (nothing changed; `--approve <hash>` applies it).

use crate::Output;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use presta_aws::{Action, ClientSettings, Mode};
use presta_engine::budget::{Guard, Guards};
use presta_engine::{Engine, Progress, RunReport, Settings};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Desired-state files or directories.
    #[arg(short = 'f', long = "file", required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Only these stacks (repeatable); default: every stack of the files.
    #[arg(long = "stack", value_name = "NAME")]
    stacks: Vec<String>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// AWS endpoint for every service (else the SDK's own, which honours AWS_ENDPOINT_URL).
    #[arg(long, env = "PRESTA_AWS_ENDPOINT_URL", value_name = "URL")]
    endpoint_url: Option<String>,
    /// How long apply waits for a resource to become usable (RDS, EFS), in seconds.
    #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
    wait_timeout: u64,
    /// Seconds one attempt of an AWS call may take before it is retried (a connection that
    /// never answers costs this much, not the whole operation timeout).
    #[arg(long, default_value_t = 20, env = "PRESTA_AWS_ATTEMPT_TIMEOUT", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=120))]
    aws_attempt_timeout: u64,
    /// Stacks reconciled at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Puts this command's requests under the API budget the daemon uses by default (a token
    /// bucket per service and region, below AWS's refill rates: docs/reconciliation.md), e.g.
    /// for a large one-shot apply in an account the daemon also works in.
    #[arg(long = "aws-budget")]
    aws_budget: bool,
    /// The API budget's rate for one service, e.g. `--aws-rate ec2=10 --aws-rate rds=5/10`
    /// (repeatable; implies --aws-budget; the other services keep their defaults).
    #[arg(
        long = "aws-rate",
        value_name = "SERVICE=RATE[/BURST]",
        env = "PRESTA_AWS_RATE",
        value_delimiter = ','
    )]
    aws_rate: Vec<String>,
    /// plan: skip the search for orphaned stacks (resources of stacks in none of the files),
    /// e.g. when the files given are only part of what runs in the region.
    #[arg(long)]
    no_orphans: bool,
    /// Skip the health verdict (target health and scaling activities: two reads per stack).
    #[arg(long)]
    no_health: bool,
    /// apply: apply a held plan anyway (a plan larger than the stack's
    /// spec.policy.maxChangesPerRun), named by the hash `plan` printed; repeatable. A plan that
    /// changed since is held again with its new hash.
    #[arg(long, value_name = "PLAN_HASH")]
    approve: Vec<String>,
}

struct StderrProgress;

impl Progress for StderrProgress {
    fn report(&self, line: &str) {
        eprintln!("{line}");
    }
}

pub fn run(args: &Args, mode: Mode) -> anyhow::Result<ExitCode> {
    let mut loaded = presta_spec::load_paths(&args.files)?;
    for wanted in &args.stacks {
        if !loaded.iter().any(|s| s.stack.name() == wanted) {
            let known: Vec<&str> = loaded.iter().map(|s| s.stack.name()).collect();
            anyhow::bail!(
                "no stack `{wanted}` in the files given\n  help: stacks found: {}",
                known.join(", ")
            );
        }
    }
    // Orphans are stacks that are in none of the files, whatever --stack selects.
    let known: BTreeSet<String> = loaded.iter().map(|l| l.stack.name().to_string()).collect();
    let regions: BTreeSet<String> = loaded.iter().map(|l| l.stack.spec.region.clone()).collect();
    if !args.stacks.is_empty() {
        loaded.retain(|s| args.stacks.iter().any(|w| w == s.stack.name()));
    }
    let stacks: Vec<_> = loaded
        .into_iter()
        .map(|l| l.stack.with_defaults())
        .collect();
    let budget = crate::api_budget(&args.aws_rate, !args.aws_budget && args.aws_rate.is_empty())?;
    let settings = Settings {
        client: ClientSettings {
            endpoint_url: args.endpoint_url.clone(),
            attempt_timeout: Duration::from_secs(args.aws_attempt_timeout),
            // One client-side limiter at a time: the API budget when asked for, else the
            // SDK's adaptive retry (as `serve`).
            adaptive_retry: budget.is_none(),
            budget,
            ..ClientSettings::default()
        },
        wait_timeout: Duration::from_secs(args.wait_timeout),
        poll_interval: Duration::from_secs(10),
        concurrency: args.concurrency,
        health: !args.no_health,
        progress: Arc::new(StderrProgress),
    };
    let engine = Engine::new(settings);
    let guards: Guards = stacks
        .iter()
        .map(|s| {
            (
                s.name().to_string(),
                Guard {
                    approved: args.approve.iter().map(|h| h.trim().to_string()).collect(),
                    presumed_existing: None,
                    approved_by: (!args.approve.is_empty()).then(crate::cli_user),
                },
            )
        })
        .collect();
    let runtime = crate::runtime()?;
    let report = runtime.block_on(async {
        if mode == Mode::Plan && !args.no_orphans {
            engine
                .run_guarded_with_orphans(&stacks, mode, &guards, &regions, &known)
                .await
        } else {
            engine.run_guarded(&stacks, mode, &guards).await
        }
    });
    match args.output {
        Output::Text => print!("{}", report.render()),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(exit_code(&report, mode))
}

fn exit_code(report: &RunReport, mode: Mode) -> ExitCode {
    let failed = report.stacks.iter().any(|s| s.failed() > 0);
    let waiting = report
        .stacks
        .iter()
        .any(|s| s.changes.iter().any(|c| c.action == Action::Waiting));
    match mode {
        Mode::Plan if failed => ExitCode::from(1),
        Mode::Plan if report.stacks.iter().all(|s| s.converged()) => ExitCode::SUCCESS,
        Mode::Plan => ExitCode::from(2),
        Mode::Apply if failed || waiting => ExitCode::from(1),
        Mode::Apply if report.stacks.iter().any(|s| s.held.is_some()) => ExitCode::from(3),
        Mode::Apply => ExitCode::SUCCESS,
    }
}
