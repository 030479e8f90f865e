//! `presta-reconciler rotate-db-password --stack NAME`: a new database password in SSM, in
//! RDS and in the shop's parameters.php, each step verified before the next (see
//! `presta_engine::rotate`). Also the recovery for a lost password parameter. Exit 0 when
//! every step is done, 1 with the step it stopped at.

use std::process::ExitCode;
use std::time::Duration;

use crate::{OneStack, Output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stack whose database password changes, and where it is declared.
    #[command(flatten)]
    target: OneStack,
    /// Longest wait for the database change and for the instance command, each, in seconds.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    wait: u64,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let stack = args.target.load()?;
    let r = crate::runtime()?.block_on(async {
        let aws = args.target.connect(&stack).await;
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
