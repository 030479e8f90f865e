//! `presta-reconciler demo`: the local emulator, seeded, and the daemon (`serve`) keeping the
//! demo stack converged on it; with `--once`, a single `apply` instead. Both are this same
//! binary, run with the emulator's environment, as a person would.
//! Nothing here can reach real AWS: the emulator binds 127.0.0.1 and every client gets its
//! endpoint and dummy credentials.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use presta_emulator::Emulator;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Desired-state file (or directory) to run: by default the demo shop under its own name,
    /// over HTTPS, in the emulator's hosted zone `demo.example.com`.
    #[arg(short = 'f', long = "file", default_value_os_t = crate::demo_config())]
    file: PathBuf,
    /// Name of the seeded network (`presta-<name>-vpc`, `presta-<name>-public-*`, ...).
    #[arg(long, default_value = "demo")]
    seed: String,
    /// Apply once and exit instead of running the daemon until Ctrl-C.
    #[arg(long)]
    once: bool,
    /// Where the daemon's HTTP API listens.
    #[arg(long, default_value = "127.0.0.1:9480")]
    listen: std::net::SocketAddr,
    /// Seconds between two runs of the daemon.
    #[arg(long, default_value_t = 30)]
    interval: u64,
    /// How the daemon learns of changes: `auto` (AWS's change events, which the emulator
    /// publishes as CloudTrail would: drift healed within seconds) or `off` (polling every
    /// --interval only, to look at drift before it is healed).
    #[arg(long, default_value = "auto", value_name = "auto|off")]
    events: String,
    /// A share of the emulator's AWS calls (0 to 1) that fail the way AWS fails, to watch the
    /// reconciler converge anyway: throttling in each service's own code, 500/503, answers lost
    /// after the call was processed (see --faults-kinds).
    #[arg(long, value_name = "RATE", value_parser = fault_rate)]
    faults: Option<f64>,
    /// The faults' random seed: the same seed fails the same calls.
    #[arg(long, default_value_t = 1, value_name = "SEED")]
    faults_seed: u64,
    /// Which faults, comma-separated: throttle, unavailable, internal, lost, denied, slow,
    /// reset, blackhole (default: throttle, unavailable, internal, lost).
    #[arg(long, value_delimiter = ',', value_name = "KIND,...")]
    faults_kinds: Vec<String>,
}

fn fault_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "`{text}` is not a share of the calls: give a number from 0 to 1 (0.3: 30 %)"
        )),
    }
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
    if let Some(rate) = args.faults {
        inject_faults(&emulator, args, rate)?;
    }
    let exe = std::env::current_exe().context("locating this binary")?;
    let show_env = || {
        println!("\nTo talk to the emulator from another shell:");
        for (k, v) in emulator.env() {
            println!("  export {k}={v}");
        }
        println!("  export AWS_REGION={region} AWS_DEFAULT_REGION={region}");
    };
    if args.once {
        apply_once(args, &exe, &emulator)?;
        show_env();
        println!(
            "Then, for example: presta-reconciler plan -f {}",
            args.file.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    show_env();
    let base = format!("http://{}", args.listen);
    println!(
        "\nThe daemon builds the stack on its first run, then keeps it converged: {}. Try:",
        if args.events == "off" {
            format!("it looks every {}s", args.interval)
        } else {
            format!(
                "AWS's change events trigger a run within seconds (the emulator publishes them as CloudTrail would); it looks again every 10 min anyway, every {}s while events do not flow",
                args.interval
            )
        }
    );
    println!("  curl -s {base}/stacks/demo | jq '.state, .outputs'");
    println!("  curl -s {base}/metrics | grep '^presta_'");
    println!("  curl -s -X POST '{base}/reconcile/demo?wait=true' | jq '.results[0].result'");
    println!("Ctrl-C stops the daemon and the emulator.");
    println!(
        "\n$ presta-reconciler serve -f {} --listen {} --interval {} --events {}",
        args.file.display(),
        args.listen,
        args.interval,
        args.events
    );
    let status = run_daemon(args, exe, &emulator)?;
    emulator.stop();
    if !status.success() {
        anyhow::bail!("the daemon stopped with {status}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `--faults RATE`: the emulator fails that share of the calls.
fn inject_faults(emulator: &Emulator, args: &Args, rate: f64) -> anyhow::Result<()> {
    let kinds: Vec<&str> = args.faults_kinds.iter().map(String::as_str).collect();
    emulator
            .set_faults_on(rate, args.faults_seed, &[], &[], &kinds)
            .map_err(|e| {
                anyhow::anyhow!("setting the emulator's faults: {e}\n  help: --faults-kinds takes throttle, unavailable, internal, lost, denied, slow, reset, blackhole")
            })?;
    println!(
        "faults:   {:.0} % of the AWS calls fail (seed {}; {})",
        rate * 100.0,
        args.faults_seed,
        if kinds.is_empty() {
            "throttle, unavailable, internal, lost".to_string()
        } else {
            kinds.join(", ")
        }
    );
    Ok(())
}

/// `--once`: one `apply` against the emulator, as a person would run it.
fn apply_once(args: &Args, exe: &std::path::Path, emulator: &Emulator) -> anyhow::Result<()> {
    println!("\n$ presta-reconciler apply -f {}", args.file.display());
    let status = std::process::Command::new(exe)
        .arg("apply")
        .arg("-f")
        .arg(&args.file)
        .envs(emulator.env())
        .env_remove("AWS_PROFILE")
        .status()
        .context("running apply")?;
    if !status.success() {
        if args.faults.is_some() {
            anyhow::bail!(
                "apply against the emulator failed ({status}) under injected faults\n  help: without --once the daemon retries on its own; or run apply again: it goes on from what exists"
            );
        }
        anyhow::bail!("apply against the emulator failed ({status})");
    }
    Ok(())
}

/// The daemon against the emulator until it stops; Ctrl-C, SIGTERM and SIGHUP stop it.
fn run_daemon(
    args: &Args,
    exe: std::path::PathBuf,
    emulator: &Emulator,
) -> anyhow::Result<std::process::ExitStatus> {
    let mut daemon = tokio::process::Command::new(exe);
    daemon
        .arg("serve")
        .arg("-f")
        .arg(&args.file)
        .arg("--listen")
        .arg(args.listen.to_string())
        .arg("--interval")
        .arg(args.interval.to_string())
        .arg("--events")
        .arg(&args.events)
        .envs(emulator.env())
        .env_remove("AWS_PROFILE");
    let status = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut child = daemon.spawn().context("running the daemon")?;
            // Ctrl-C reaches the daemon too (same process group); SIGTERM and SIGHUP (`kill`,
            // `timeout`, a closed terminal) reach this process alone. Either way the daemon is
            // asked to stop, and waited for, before the emulator goes.
            let mut term = signal(SignalKind::terminate()).context("watching SIGTERM")?;
            let mut hup = signal(SignalKind::hangup()).context("watching SIGHUP")?;
            loop {
                tokio::select! {
                    status = child.wait() => return anyhow::Ok(status?),
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
                if let Some(pid) = child.id() {
                    let _ = std::process::Command::new("kill")
                        .args(["-TERM", &pid.to_string()])
                        .status();
                }
            }
        })?;
    Ok(status)
}
