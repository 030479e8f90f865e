//! `presta-reconciler validate`: checks files, prints every problem, makes no AWS call.

use crate::Output;
use std::path::PathBuf;
use std::process::ExitCode;

use presta_spec::ConfigError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories of YAML files to check, as one desired state.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Also print every stack with all defaults applied (YAML).
    #[arg(long)]
    print_defaults: bool,
    /// Output format of the report on stdout.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let (stacks, problems) = match presta_spec::load_paths(&args.files) {
        Ok(stacks) => (stacks, Vec::new()),
        Err(ConfigError::Invalid { problems }) => (Vec::new(), problems),
        Err(other) => return Err(other.into()),
    };
    match args.output {
        Output::Json => {
            let report = serde_json::json!({
                "valid": problems.is_empty(),
                "stacks": stacks.iter().map(|s| serde_json::json!({
                    "name": s.stack.name(), "file": s.file, "document": s.document, "region": s.stack.spec.region,
                })).collect::<Vec<_>>(),
                "problems": problems,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Output::Text if problems.is_empty() => {
            for s in &stacks {
                println!(
                    "ok: stack `{}` ({}, document {}, region {})",
                    s.stack.name(),
                    s.file.display(),
                    s.document,
                    s.stack.spec.region
                );
            }
            if args.print_defaults {
                for s in &stacks {
                    println!(
                        "---\n{}",
                        serde_yaml::to_string(&s.stack.clone().with_defaults())?.trim_end()
                    );
                }
            }
        }
        Output::Text => {
            for p in &problems {
                eprintln!("{p}");
            }
            let n = problems.len();
            eprintln!(
                "{n} problem{} found; nothing was sent to AWS",
                if n == 1 { "" } else { "s" }
            );
        }
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
