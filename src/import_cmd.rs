//! `presta-reconciler import terraform --state FILE`: the stack a Terraform state describes,
//! its import report, and with `--adopt` the takeover in place (ownership tags, nothing
//! else), followed by the stack's plan. docs/migrate-from-terraform.md walks the whole path.
//!
//! Exit codes: 0 imported (and adopted: the plan creates, replaces and deletes nothing);
//! 1 error, or the stack written does not validate; 3 adopted but the plan would create,
//! replace or delete something (do not hand it to the daemon: read the plan).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use presta_aws::adopt::{self, Handle, TAG_ADOPTED};
use presta_aws::{Action, ClientSettings, Mode};
use presta_engine::budget::{Guard, Guards};
use presta_engine::{Engine, Settings};
use presta_spec::naming::{MANAGED_BY_VALUE, TAG_COMPONENT, TAG_MANAGED_BY, TAG_STACK};

use crate::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    source: Source,
}

#[derive(Debug, clap::Subcommand)]
enum Source {
    /// From a Terraform state: the JSON of `terraform show -json`, or a raw terraform.tfstate
    /// (version 4), so Terraform need not be installed.
    Terraform(TerraformArgs),
}

#[derive(Debug, clap::Args)]
struct TerraformArgs {
    /// The state: `terraform show -json > state.json`, or the terraform.tfstate file itself.
    #[arg(long, value_name = "FILE")]
    state: PathBuf,
    /// The stack to import when the state holds several, and the name it gets.
    #[arg(long, value_name = "NAME")]
    stack: Option<String>,
    /// Where to write the stack (YAML); without it the stack goes to stdout and the report to
    /// stderr.
    #[arg(short = 'o', long = "out", value_name = "FILE.yaml")]
    out: Option<PathBuf>,
    /// Take the stack over in place: add the ownership tags to each imported resource
    /// (nothing else changes), then plan it. Run with a person's credentials: the daemon's
    /// policy cannot tag what it does not own. Safe to run again.
    #[arg(long)]
    adopt: bool,
    /// With --adopt: show the tags it would add, change nothing.
    #[arg(long, requires = "adopt")]
    dry_run: bool,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// AWS endpoint for every service (else the SDK's own, which honours AWS_ENDPOINT_URL).
    #[arg(long, env = "PRESTA_AWS_ENDPOINT_URL", value_name = "URL")]
    endpoint_url: Option<String>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    match &args.source {
        Source::Terraform(a) => terraform(a),
    }
}

fn terraform(args: &TerraformArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.state)
        .with_context(|| format!("cannot read the state file {}", args.state.display()))?;
    let opts = presta_import::Options {
        stack: args.stack.clone(),
    };
    let imported = presta_import::import(&text, &opts)
        .with_context(|| format!("importing {}", args.state.display()))?;
    drop(text);
    let yaml = imported.yaml();
    // The stack written must be one `validate` accepts: checked through the same loader.
    let path = match &args.out {
        Some(p) => p.clone(),
        None => std::env::temp_dir().join(format!(
            "presta-import-{}-{}.yaml",
            imported.report.stack,
            std::process::id()
        )),
    };
    std::fs::write(&path, &yaml).with_context(|| format!("cannot write {}", path.display()))?;
    let loaded = presta_spec::load_paths(std::slice::from_ref(&path));
    if args.out.is_none() {
        let _ = std::fs::remove_file(&path);
        print!("{yaml}");
    }
    let report = &imported.report;
    let say = |text: &str| {
        if args.out.is_some() {
            print!("{text}");
        } else {
            eprint!("{text}");
        }
    };
    match args.output {
        Output::Text => say(&report.to_string()),
        Output::Json => say(&format!("{}\n", serde_json::to_string_pretty(report)?)),
    }
    let stack = match loaded {
        Ok(mut l) if l.len() == 1 => l.remove(0).stack.with_defaults(),
        Ok(_) => anyhow::bail!("the stack written does not read back as one document"),
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "the stack written does not validate: fix {} (see the report above) before adopting",
                args.out
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "it".into())
            );
            return Ok(ExitCode::from(1));
        }
    };
    if let Some(out) = &args.out {
        say(&format!("\nwrote {} (it validates)\n", out.display()));
    }
    if !args.adopt {
        return Ok(ExitCode::SUCCESS);
    }
    adopt_and_plan(args, &stack, report)
}

struct Quiet;

impl presta_engine::Progress for Quiet {
    fn report(&self, _line: &str) {}
}

fn adopt_and_plan(
    args: &TerraformArgs,
    stack: &presta_spec::Stack,
    report: &presta_import::Report,
) -> anyhow::Result<ExitCode> {
    let client = ClientSettings {
        endpoint_url: args.endpoint_url.clone(),
        ..ClientSettings::default()
    };
    let runtime = crate::runtime()?;
    let name = stack.name().to_string();
    runtime.block_on(async {
        let aws = presta_aws::Aws::connect(
            &stack.spec.region,
            &client,
            Arc::new(presta_aws::calls::CallStats::default()),
        )
        .await;
        tag_all(&aws, stack, report, args.dry_run).await
    })?;
    if args.dry_run {
        println!("\n--dry-run: nothing was changed");
        return Ok(ExitCode::SUCCESS);
    }
    // The plan, as the daemon will see the stack.
    let settings = Settings {
        client,
        wait_timeout: Duration::from_secs(60),
        poll_interval: Duration::from_secs(5),
        concurrency: 1,
        health: true,
        progress: Arc::new(Quiet),
    };
    let engine = Engine::new(settings);
    let guards: Guards = BTreeMap::from([(name.clone(), Guard::default())]);
    let run =
        runtime.block_on(engine.run_guarded(std::slice::from_ref(stack), Mode::Plan, &guards));
    println!("\nthe plan of `{name}` now that it is adopted:\n");
    print!("{}", run.render());
    let destructive: Vec<String> = run
        .stacks
        .iter()
        .flat_map(|s| s.changes.iter())
        .filter(|c| {
            matches!(
                c.action,
                Action::Create | Action::Restore | Action::Replace | Action::Delete
            )
        })
        .map(|c| format!("{} {} {}", c.action.symbol(), c.kind, c.name))
        .collect();
    if !destructive.is_empty() {
        println!(
            "\nSTOP: this plan would create, replace or delete ({}). The stack is tagged but must not be handed to the daemon: fix the stack file (see the report) until the plan shows none, or remove the ownership tags to go back (docs/migrate-from-terraform.md).",
            destructive.join(", ")
        );
        return Ok(ExitCode::from(3));
    }
    let held = run.stacks.iter().find_map(|s| s.held.as_ref());
    println!("\nnext steps (docs/migrate-from-terraform.md):");
    match held {
        Some(h) => println!(
            "  1. review the changes above; they wait for your approval: presta-reconciler apply -f {} --approve {}",
            args.out
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "STACK.yaml".into()),
            h.plan_hash
        ),
        None => println!("  1. nothing to change: the stack is already as the file says"),
    }
    println!("  2. detach Terraform: the `terraform state rm` commands of the report");
    println!("  3. hand the file to the daemon (serve -f ...)");
    Ok(ExitCode::SUCCESS)
}

/// Reads every resource's tags, then (unless `dry_run`) adds the missing ownership tags and
/// labels the password's current version; a resource another stack owns stops it before any
/// tag is written.
async fn tag_all(
    aws: &presta_aws::Aws,
    stack: &presta_spec::Stack,
    report: &presta_import::Report,
    dry_run: bool,
) -> anyhow::Result<()> {
    let name = stack.name().to_string();
    let now = presta_aws::db_snapshot::now_rfc3339();
    // Read everything first: a resource another stack owns stops the takeover before any
    // tag is written.
    let mut plan: Vec<(&presta_import::Taggable, BTreeMap<String, String>)> = Vec::new();
    for t in &report.taggable {
        let current = adopt::current_tags(aws, &t.handle)
            .await
            .with_context(|| format!("reading the tags of {} ({:?})", t.address, t.handle))?;
        if let Some(owner) = current.get(TAG_STACK)
            && owner != &name
            && current.get(TAG_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE)
        {
            anyhow::bail!(
                "{} already belongs to the stack `{owner}`: nothing was tagged; import it under that name (--stack {owner}) or remove its ownership tags first",
                t.address
            );
        }
        let mut want = BTreeMap::from([
            (TAG_MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
            (TAG_STACK.to_string(), name.clone()),
            (TAG_COMPONENT.to_string(), t.component.to_string()),
        ]);
        if matches!(t.handle, Handle::AutoScaling(_)) && !current.contains_key(TAG_ADOPTED) {
            want.insert(TAG_ADOPTED.to_string(), now.clone());
        }
        want.retain(|k, v| current.get(k) != Some(v));
        plan.push((t, want));
    }
    println!(
        "\n{} {} resources of `{name}`:",
        if dry_run { "would tag" } else { "tagging" },
        plan.len()
    );
    for (t, want) in &plan {
        let shown: Vec<String> = want.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "  {:<70} {}",
            t.address,
            if shown.is_empty() {
                "already tagged".to_string()
            } else {
                shown.join(", ")
            }
        );
        if !dry_run && !want.is_empty() {
            adopt::add_tags(aws, &t.handle, want)
                .await
                .with_context(|| format!("tagging {}", t.address))?;
        }
    }
    // The password's current value is the one the database uses: the reconciler vouches
    // for it (its label), so that a later overwrite by hand is seen as drift.
    let param = stack.names().db_password;
    let (found, _) = presta_aws::parameter::observe_with_plain(
        aws,
        std::slice::from_ref(&param),
        std::slice::from_ref(&param),
        &[],
    )
    .await
    .with_context(|| format!("reading the parameter {param}"))?;
    if let Some(live) = found.get(&param)
        && live.written_version.is_none()
    {
        println!(
            "  {param}: version {} {} `{}` (the value the database uses; never read)",
            live.version,
            if dry_run {
                "would be labelled"
            } else {
                "labelled"
            },
            presta_aws::parameter::WRITTEN_LABEL
        );
        if !dry_run {
            presta_aws::parameter::label_written(aws, &param, live.version).await?;
        }
    }
    Ok(())
}
