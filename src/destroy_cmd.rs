//! `presta-reconciler destroy`: tears one stack down, keeping its data by default.
//!
//! Exit codes: 0 destroyed (data kept as the policy says); 1 refused (deletion protection,
//! `--delete-data` missing) or a step failed (re-run to finish); 2 wrong command line.

use crate::Output;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use presta_aws::calls::{CallRecorder, CallStats};
use presta_aws::{Aws, ClientSettings};
use presta_engine::Settings;
use presta_engine::destroy::{DestroyReport, Request};
use presta_spec::model::Deletion;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Desired-state files or directories holding the stack (its region, SSM prefix and
    /// deletion policy). Without it, or for a stack no longer in the files, give --region.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The stack to destroy.
    #[arg(long, value_name = "NAME")]
    stack: String,
    /// The stack's name again, to confirm.
    #[arg(long, value_name = "NAME")]
    confirm: Option<String>,
    /// Region of a stack that is not in the files.
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
    /// Confirms `delete` in spec.policy.deletion (the data is gone for good).
    #[arg(long)]
    delete_data: bool,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// AWS endpoint for every service (else the SDK's own, which honours AWS_ENDPOINT_URL).
    #[arg(long, env = "PRESTA_AWS_ENDPOINT_URL", value_name = "URL")]
    endpoint_url: Option<String>,
    /// How long destroy waits for a resource to go (instances, database), in seconds.
    #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
    wait_timeout: u64,
}

struct StderrProgress;

impl presta_engine::Progress for StderrProgress {
    fn report(&self, line: &str) {
        eprintln!("{line}");
    }
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if args.confirm.as_deref() != Some(args.stack.as_str()) {
        anyhow::bail!(
            "destroy needs the stack's name twice: add `--confirm {}`",
            args.stack
        );
    }
    let declared = if args.files.is_empty() {
        None
    } else {
        presta_spec::load_paths(&args.files)?
            .into_iter()
            .map(|l| l.stack.with_defaults())
            .find(|s| s.name() == args.stack)
    };
    let (region, names, deletion) = match (&declared, &args.region) {
        (Some(s), Some(r)) if r != &s.spec.region => anyhow::bail!(
            "--region {r} differs from the stack's region {} in the files",
            s.spec.region
        ),
        (Some(s), _) => (s.spec.region.clone(), s.names(), s.spec.policy.deletion),
        (None, Some(r)) => (
            r.clone(),
            presta_spec::naming::StackNames::deterministic(
                &args.stack,
                &presta_spec::defaults::parameter_prefix(&args.stack),
            ),
            Deletion::default(),
        ),
        (None, None) => anyhow::bail!(
            "stack `{}` is not in the files given: add --region REGION to find it by its ownership tags",
            args.stack
        ),
    };
    let req = Request {
        stack: args.stack.clone(),
        names,
        deletion,
        delete_data: args.delete_data,
        config: args.files.first().map(|p| p.display().to_string()),
    };
    let settings = Settings {
        client: ClientSettings {
            endpoint_url: args.endpoint_url.clone(),
            ..ClientSettings::default()
        },
        wait_timeout: Duration::from_secs(args.wait_timeout),
        poll_interval: Duration::from_secs(5),
        concurrency: 1,
        health: false,
        progress: Arc::new(StderrProgress),
    };
    let runtime = crate::runtime()?;
    let report = runtime.block_on(async {
        let recorder: Arc<dyn CallRecorder> = Arc::new(CallStats::default());
        let aws = Aws::connect(&region, &settings.client, recorder).await;
        presta_engine::destroy::destroy(&aws, &req, &settings).await
    });
    match args.output {
        Output::Text => print!("{}", render(&report)),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(if report.error.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn render(r: &DestroyReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "destroy {} ({})", r.stack, r.region);
    if r.refused {
        let _ = writeln!(
            out,
            "  refused, nothing changed: {}",
            r.error.as_deref().unwrap_or("")
        );
        return out;
    }
    for i in &r.deleted {
        let _ = writeln!(
            out,
            "  - {} {}{}",
            i.kind,
            i.name,
            i.note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
    }
    for i in &r.kept {
        let _ = writeln!(
            out,
            "  = {} {} kept: {}",
            i.kind,
            i.name,
            i.note.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(out, "  cost: {}", r.cost_note);
    if let Some(e) = &r.error {
        let _ = writeln!(out, "  error: {e}");
    }
    if let Some(cmd) = &r.restore_command {
        let _ = writeln!(out, "  bring the shop back: {cmd}");
    }
    out
}
