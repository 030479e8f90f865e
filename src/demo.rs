//! `presta-reconciler demo`: the local emulator, seeded, and the demo stack applied to it
//! (by this same binary's `apply`, run with the emulator's environment, as a person would).
//! Nothing here can reach real AWS: the emulator binds 127.0.0.1 and every client gets its
//! endpoint and dummy credentials.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use presta_emulator::Emulator;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Desired-state file (or directory) to run.
    #[arg(short = 'f', long = "file", default_value_os_t = crate::default_config())]
    file: PathBuf,
    /// Name of the seeded network (`presta-<name>-vpc`, `presta-<name>-public-*`, ...).
    #[arg(long, default_value = "demo")]
    seed: String,
    /// Exit after the first pass instead of running until Ctrl-C.
    #[arg(long)]
    once: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let stacks = presta_spec::load_path(&args.file)?;
    eprintln!(
        "starting the AWS emulator (moto on 127.0.0.1) and seeding network `presta-{}`...",
        args.seed
    );
    let region = stacks
        .first()
        .map(|s| s.stack.spec.region.clone())
        .unwrap_or_else(|| presta_emulator::DEFAULT_REGION.into());
    let emulator = Emulator::builder()
        .seed(&args.seed)
        .region(&region)
        .start()
        .context("starting the emulator")?;
    let network = emulator
        .network(&args.seed)
        .context("the emulator did not report the seeded network")?;
    println!("emulator: {}", emulator.endpoint());
    println!(
        "seeded:   {} (public {:?}, private {:?}), instance profile {}",
        network.vpc_id,
        network.subnet_ids("public"),
        network.subnet_ids("private"),
        network.instance_profile
    );
    for s in &stacks {
        println!(
            "stack `{}` is valid ({} document {}, region {})",
            s.stack.name(),
            s.file.display(),
            s.document,
            s.stack.spec.region
        );
    }
    println!("\n$ presta-reconciler apply -f {}", args.file.display());
    let exe = std::env::current_exe().context("locating this binary")?;
    let status = std::process::Command::new(exe)
        .arg("apply")
        .arg("-f")
        .arg(&args.file)
        .envs(emulator.env())
        .env_remove("AWS_PROFILE")
        .status()
        .context("running apply")?;
    if !status.success() {
        anyhow::bail!("apply against the emulator failed ({status})");
    }
    println!("\nTo talk to the emulator from another shell:");
    for (k, v) in emulator.env() {
        println!("  export {k}={v}");
    }
    println!("  export AWS_REGION={region} AWS_DEFAULT_REGION={region}");
    println!(
        "Then, for example: presta-reconciler plan -f {}",
        args.file.display()
    );
    if args.once {
        return Ok(ExitCode::SUCCESS);
    }
    println!("\nRunning until Ctrl-C.");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(tokio::signal::ctrl_c())?;
    emulator.stop();
    Ok(ExitCode::SUCCESS)
}
