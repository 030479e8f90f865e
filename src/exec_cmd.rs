//! `presta-reconciler exec --stack NAME COMMAND [ARG]`: one of the runbook's `presta-ctl`
//! commands on every instance of the stack, through SSM Run Command (no SSH, no open port).
//! Exit 0 when every instance succeeded, 1 otherwise.

use std::process::ExitCode;
use std::time::Duration;

use presta_aws::commands::{self, Maintenance};

use crate::{OneStack, Output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stack whose instances run the command, and where it is declared.
    #[command(flatten)]
    target: OneStack,
    /// cache-clear, thumbs [TYPE], htaccess, status, set-domain [DOMAIN].
    command: String,
    /// set-domain's domain, thumbs' image type.
    arg: Option<String>,
    /// Longest wait for every instance's result, in seconds.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    wait: u64,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    // Checked before anything else: an unknown command never reaches AWS.
    let cmd = Maintenance::parse(&args.command).map_err(anyhow::Error::msg)?;
    let line = cmd
        .shell_line(args.arg.as_deref())
        .map_err(anyhow::Error::msg)?;
    let stack = args.target.load()?;
    let group = stack.resource_name(presta_spec::naming::Component::AutoScalingGroup);
    let run = crate::runtime()?.block_on(async {
        let aws = args.target.connect(&stack).await;
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
