//! `presta-reconciler`: keeps PrestaShop stacks on AWS as declared.
//!
//! Exit codes: 0 success; 1 error (invalid configuration, AWS failure); 2 wrong command line.

mod bootstrap_cmd;
mod demo;
mod destroy_cmd;
mod events_cmd;
mod exec_cmd;
mod iam_policy_cmd;
mod import_cmd;
mod probe;
mod reconcile_cmd;
mod rotate_cmd;
mod serve;
mod telemetry;
mod validate_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(name = "presta-reconciler", version, about = "Keeps PrestaShop stacks on AWS exactly as declared.", long_about = None)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PRESTA_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log level or filter (`info`, `debug`, `presta_engine=debug`); RUST_LOG wins when set.
    #[arg(long, global = true, default_value = "info", env = "PRESTA_LOG_LEVEL")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks desired-state files without calling AWS. Exit code 0: valid; 1: problems found
    /// (each printed with file, line, column, field and what is allowed).
    Validate(validate_cmd::Args),
    /// Shows what apply would change, field by field, without changing anything. Exit code 0:
    /// no changes; 2: changes or drift pending; 1: error.
    Plan(reconcile_cmd::Args),
    /// Creates what is missing and corrects drift; prints what it did and the outputs.
    Apply(reconcile_cmd::Args),
    /// Tears a stack down in reverse dependency order, keeping its data as
    /// spec.policy.deletion says (default: database final snapshot, file system and passwords
    /// kept); `apply` brings it back.
    Destroy(destroy_cmd::Args),
    /// Runs one of the runbook's maintenance commands (presta-ctl cache-clear, thumbs,
    /// htaccess, status, set-domain) on every instance of a stack through SSM Run Command,
    /// and prints each instance's result.
    Exec(exec_cmd::Args),
    /// A new database password in SSM, the database and the shop's parameters.php, each step
    /// verified; also recovers a lost password parameter. Re-run to finish a stopped one.
    RotateDbPassword(rotate_cmd::Args),
    /// Prints the JSON Schema of a PrestaShopStack document (for editors and CI).
    Schema,
    /// Prints the daemon's IAM policy narrowed to these stacks: iam:PassRole only for their
    /// instance profiles' roles, SSM only under their parameter prefixes.
    IamPolicy(iam_policy_cmd::Args),
    /// The daemon: reconciles every stack periodically and on demand, serves /healthz,
    /// /readyz, /metrics, POST /reconcile and /stacks; reloads on SIGHUP or file change.
    Serve(serve::Args),
    /// Prints the instance bootstrap (user data) rendered for a stack, without calling AWS.
    Bootstrap(bootstrap_cmd::Args),
    /// Container health check: exit 0 when the daemon's /healthz (or /readyz) answers 200.
    Probe(probe::Args),
    /// Takes over a shop another tool built: `import terraform --state FILE` writes its
    /// PrestaShopStack and a report of what is not carried over; `--adopt` adds the ownership
    /// tags (nothing else) and plans it. See docs/migrate-from-terraform.md.
    Import(import_cmd::Args),
    /// The daemon's change-event plumbing (`serve --events`): `pattern` prints the EventBridge
    /// rule's pattern, `status` shows the queue, rule and trail of a region, `remove` deletes
    /// the daemon's queue and rule.
    Events(events_cmd::Args),
    /// Starts the local AWS emulator, seeds the demo network and runs the daemon on the demo
    /// stack against it.
    Demo(demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format, &cli.log_level);
    let result = match cli.command {
        Command::Validate(args) => validate_cmd::run(&args),
        Command::Schema => {
            print!("{}", presta_spec::schema::json_schema_text());
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => demo::run(&args),
        Command::Events(args) => events_cmd::run(&args),
        Command::Import(args) => import_cmd::run(&args),
        Command::Exec(args) => exec_cmd::run(&args),
        Command::RotateDbPassword(args) => rotate_cmd::run(&args),
        Command::IamPolicy(args) => iam_policy_cmd::run(&args),
        Command::Destroy(args) => destroy_cmd::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Probe(args) => probe::run(&args),
        Command::Bootstrap(args) => bootstrap_cmd::run(&args),
        Command::Plan(args) => reconcile_cmd::run(&args, presta_aws::Mode::Plan),
        Command::Apply(args) => reconcile_cmd::run(&args, presta_aws::Mode::Apply),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// Output format on stdout, for every command that reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
}

/// The async runtime of a one-shot command: one thread. A plan or an apply waits on AWS, not
/// on the CPU (100 stacks are planned in the same time), and every worker thread costs its
/// stack and its own allocator arena: the peak memory of a one-stack plan is what users
/// compare with Terraform's.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The arguments of a command that acts on one stack of the files (`exec`,
/// `rotate-db-password`).
#[derive(Debug, clap::Args)]
pub(crate) struct OneStack {
    /// Desired-state files or directories.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        default_value = "config/demo.yaml"
    )]
    files: Vec<PathBuf>,
    /// The stack to act on.
    #[arg(long)]
    pub(crate) stack: String,
    /// AWS endpoint for every service (else the SDK's own, which honours AWS_ENDPOINT_URL).
    #[arg(long, env = "PRESTA_AWS_ENDPOINT_URL", value_name = "URL")]
    endpoint_url: Option<String>,
}

impl OneStack {
    /// The stack, with its defaults applied.
    pub(crate) fn load(&self) -> anyhow::Result<presta_spec::Stack> {
        load_stack(&self.files, &self.stack)
    }

    /// Clients for the stack's region.
    pub(crate) async fn connect(&self, stack: &presta_spec::Stack) -> presta_aws::Aws {
        let client = presta_aws::ClientSettings {
            endpoint_url: self.endpoint_url.clone(),
            ..presta_aws::ClientSettings::default()
        };
        presta_aws::Aws::connect(
            &stack.spec.region,
            &client,
            std::sync::Arc::new(presta_aws::calls::CallStats::default()),
        )
        .await
    }
}

/// One stack of the files, with its defaults applied, or an error naming the stacks found.
pub(crate) fn load_stack(files: &[PathBuf], name: &str) -> anyhow::Result<presta_spec::Stack> {
    let loaded = presta_spec::load_paths(files)?;
    let known: Vec<String> = loaded.iter().map(|l| l.stack.name().to_string()).collect();
    loaded
        .into_iter()
        .find(|l| l.stack.name() == name)
        .map(|l| l.stack.with_defaults())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no stack `{name}` in the files given\n  help: stacks found: {}",
                known.join(", ")
            )
        })
}

/// The default desired-state file, relative to the working directory.
/// The demo's stack: the demo shop under its own name, over HTTPS (`spec.dns` in the
/// emulator's hosted zone `demo.example.com`).
pub(crate) fn demo_config() -> PathBuf {
    PathBuf::from("config/https/demo.yaml")
}

/// Who runs this command, for approvals recorded in logs and reports: `$USER` (or
/// `$LOGNAME`) on this machine.
fn cli_user() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("{user} (CLI)")
}

/// The API budget of `--aws-rate` (defaults for the services not named), or none with
/// `--no-aws-budget`.
fn api_budget(
    rates: &[String],
    off: bool,
) -> anyhow::Result<Option<std::sync::Arc<presta_aws::ratelimit::ApiBudget>>> {
    if off {
        return Ok(None);
    }
    let mut overrides = std::collections::BTreeMap::new();
    for text in rates.iter().filter(|t| !t.trim().is_empty()) {
        let (service, rate) = presta_aws::ratelimit::ApiBudget::parse_override(text.trim())
            .map_err(|e| {
                anyhow::anyhow!(
                    "--aws-rate {e}\n  help: e.g. --aws-rate ec2=10 or --aws-rate rds=5/10 (requests a second / burst)"
                )
            })?;
        overrides.insert(service, rate);
    }
    Ok(Some(std::sync::Arc::new(
        presta_aws::ratelimit::ApiBudget::new(overrides),
    )))
}
