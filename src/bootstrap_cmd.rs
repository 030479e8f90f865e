//! `presta-reconciler bootstrap`: prints the user data the instances of a stack run, as the
//! reconciler renders it into the launch template (without any AWS call: the values only known
//! once the stack exists are given as flags or shown as placeholders).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use presta_engine::bootstrap::{Inputs, render};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Desired-state file or directory.
    #[arg(short = 'f', long = "file", required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The stack (needed when the files hold several).
    #[arg(long)]
    stack: Option<String>,
    /// The EFS file system id.
    #[arg(long, default_value = "fs-00000000000000000")]
    efs_id: String,
    /// The RDS endpoint.
    #[arg(long, default_value = "db.example.invalid")]
    db_host: String,
    /// The shop's domain when the stack has no custom one (the load balancer's DNS name).
    #[arg(long, default_value = "alb.example.invalid")]
    alb_dns_name: String,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let loaded = presta_spec::load_paths(&args.files)?;
    let names: Vec<&str> = loaded.iter().map(|s| s.stack.name()).collect();
    let chosen = match &args.stack {
        Some(name) => loaded.iter().find(|s| s.stack.name() == name),
        None if loaded.len() == 1 => loaded.first(),
        None => bail!(
            "the files hold several stacks ({}): choose one with --stack",
            names.join(", ")
        ),
    };
    let Some(chosen) = chosen else {
        bail!(
            "no stack `{}` in the files given\n  help: stacks found: {}",
            args.stack.as_deref().unwrap_or_default(),
            names.join(", ")
        );
    };
    let stack = chosen.stack.clone().with_defaults();
    let inputs = Inputs {
        efs_id: args.efs_id.clone(),
        db_host: args.db_host.clone(),
        db_port: 3306,
        domain: stack
            .spec
            .prestashop
            .domain
            .clone()
            .unwrap_or_else(|| args.alb_dns_name.clone()),
    };
    print!("{}", render(&stack, &inputs)?);
    Ok(ExitCode::SUCCESS)
}
