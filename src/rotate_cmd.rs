//! `presta-reconciler rotate-db-password --stack NAME`: a new database password in SSM, in
//! RDS and in the shop's parameters.php, each step verified before the next (see
//! `presta_engine::rotate`). Also the recovery for a lost password parameter. Exit 0 when
//! every step is done, 1 with the step it stopped at.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use presta_aws::ClientSettings;

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
    /// The stack whose database password changes.
    #[arg(long)]
    stack: String,
    /// Longest wait for the database change and for the instance command, each, in seconds.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
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
    let stack = crate::load_stack(&args.files, &args.stack)?;
    let client = ClientSettings {
        endpoint_url: args.endpoint_url.clone(),
        ..ClientSettings::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let r = runtime.block_on(async {
        let aws = presta_aws::Aws::connect(
            &stack.spec.region,
            &client,
            Arc::new(presta_aws::calls::CallStats::default()),
        )
        .await;
        presta_engine::rotate::rotate(&aws, &stack, Duration::from_secs(args.wait)).await
    });
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&r)?),
        Output::Text => {
            println!(
                "rotating the database password of {} ({})",
                r.stack, r.parameter
            );
            for s in &r.steps {
                println!(
                    "  [{}] {}: {}",
                    if s.ok { "ok" } else { "FAILED" },
                    s.step,
                    s.detail
                );
            }
            match &r.stopped {
                Some(why) => println!("{why}"),
                None => println!("done: SSM, the database and the shop agree on the new password"),
            }
        }
    }
    Ok(if r.completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
