//! `presta-reconciler exec --stack NAME COMMAND [ARG]`: one of the runbook's `presta-ctl`
//! commands on every instance of the stack, through SSM Run Command (no SSH, no open port).
//! Exit 0 when every instance succeeded, 1 otherwise.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use presta_aws::ClientSettings;
use presta_aws::commands::{self, Maintenance};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Desired-state files or directories.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        default_value = "config/demo.yaml"
    )]
    files: Vec<PathBuf>,
    /// The stack whose instances run the command.
    #[arg(long)]
    stack: String,
    /// cache-clear, thumbs [TYPE], htaccess, status, set-domain [DOMAIN].
    command: String,
    /// set-domain's domain, thumbs' image type.
    arg: Option<String>,
    /// Longest wait for every instance's result, in seconds.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    wait: u64,
    /// AWS endpoint for every service (else the SDK's own, which honours AWS_ENDPOINT_URL).
    #[arg(long, env = "PRESTA_AWS_ENDPOINT_URL", value_name = "URL")]
    endpoint_url: Option<String>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    // Checked before anything else: an unknown command never reaches AWS.
    let cmd = Maintenance::parse(&args.command).map_err(anyhow::Error::msg)?;
    let line = cmd
        .shell_line(args.arg.as_deref())
        .map_err(anyhow::Error::msg)?;
    let stack = crate::load_stack(&args.files, &args.stack)?;
    let region = stack.spec.region.clone();
    let group = presta_spec::naming::Component::AutoScalingGroup.name(&args.stack);
    let client = ClientSettings {
        endpoint_url: args.endpoint_url.clone(),
        ..ClientSettings::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let run = runtime.block_on(async {
        let aws = presta_aws::Aws::connect(
            &region,
            &client,
            Arc::new(presta_aws::calls::CallStats::default()),
        )
        .await;
        commands::run(
            &aws,
            &group,
            cmd.as_str(),
            &line,
            Duration::from_secs(args.wait),
        )
        .await
    })?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&run)?),
        Output::Text => {
            println!(
                "{} on {} ({} instance(s), command {}, document {})",
                run.command,
                run.group,
                run.results.len(),
                run.command_id,
                run.document
            );
            if run.results.is_empty() {
                println!(
                    "  no instance of the group answered: is the group running, and do its instances run the SSM agent with the AmazonSSMManagedInstanceCore policy?"
                );
            }
            for r in &run.results {
                println!(
                    "  {}  {}  exit {}",
                    r.instance,
                    r.status,
                    r.exit_code.map_or("-".to_string(), |c| c.to_string())
                );
                for l in r.output.lines() {
                    println!("    | {l}");
                }
            }
            if !run.complete {
                println!("  not every instance finished within {} s", args.wait);
            }
        }
    }
    Ok(if run.succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
