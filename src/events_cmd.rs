//! `presta-reconciler events`: the daemon's event plumbing by hand. `pattern` prints the
//! EventBridge rule's event pattern (for a queue and rule made with other tools, used with
//! `serve --events sqs:QUEUE_URL`); `status` shows the queue, the rule and the trail check
//! of a region; `remove` deletes the daemon's queue and rule (only if they carry its
//! ownership tags). docs/events.md.

use std::process::ExitCode;
use std::sync::Arc;

use presta_aws::events;
use presta_aws::{Action, Mode};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Prints the rule's event pattern (JSON): the AWS sources and detail types the daemon
    /// takes, and its heartbeat.
    Pattern,
    /// Shows the daemon's queue and rule in a region, and whether a trail feeds them.
    Status(Target),
    /// Deletes the daemon's rule, then its queue, in a region (only with its ownership tags).
    /// `serve --events auto` would set them up again: stop it or turn events off first.
    Remove(Target),
}

#[derive(Debug, clap::Args)]
struct Target {
    /// The region of the queue and rule.
    #[arg(long, env = "AWS_REGION")]
    region: String,
    /// Their name (`serve --events-name`).
    #[arg(long, default_value = events::DEFAULT_NAME)]
    name: String,
    /// AWS endpoint for every service (else the SDK's own, which honours AWS_ENDPOINT_URL).
    #[arg(long, env = "PRESTA_AWS_ENDPOINT_URL", value_name = "URL")]
    endpoint_url: Option<String>,
    /// With `remove`: say what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,
}

impl Target {
    async fn connect(&self) -> presta_aws::Aws {
        let client = presta_aws::ClientSettings {
            endpoint_url: self.endpoint_url.clone(),
            ..presta_aws::ClientSettings::default()
        };
        presta_aws::Aws::connect(
            &self.region,
            &client,
            Arc::new(presta_aws::calls::CallStats::default()),
        )
        .await
    }
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        Sub::Pattern => {
            println!("{}", serde_json::to_string_pretty(&events::pattern())?);
            Ok(ExitCode::SUCCESS)
        }
        Sub::Status(t) => crate::runtime()?.block_on(status(t)),
        Sub::Remove(t) => crate::runtime()?.block_on(remove(t)),
    }
}

async fn status(t: &Target) -> anyhow::Result<ExitCode> {
    let aws = t.connect().await;
    let plan = events::ensure(&aws, &t.name, Mode::Plan).await?;
    let mut in_place = true;
    for c in &plan.changes {
        let state = match c.action {
            Action::None => "in place".to_string(),
            Action::Create => {
                in_place = false;
                "missing".to_string()
            }
            _ => {
                in_place = false;
                let fields: Vec<String> = c.diffs.iter().map(|d| d.field.clone()).collect();
                format!("drifted ({})", fields.join(", "))
            }
        };
        println!("{} {}: {state}", c.kind, c.name);
    }
    if !plan.queue_url.is_empty() {
        println!("queue url: {}", plan.queue_url);
    }
    match events::trail_check(&aws).await? {
        Ok(trail) => println!("trail: `{trail}` records the management events"),
        Err(problem) => {
            in_place = false;
            println!("trail: {problem}")
        }
    }
    Ok(if in_place {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

async fn remove(t: &Target) -> anyhow::Result<ExitCode> {
    let aws = t.connect().await;
    let mode = if t.dry_run { Mode::Plan } else { Mode::Apply };
    let changes = events::remove(&aws, &t.name, mode).await?;
    if changes.is_empty() {
        println!(
            "no queue or rule `{}` in {}: nothing to remove",
            t.name, t.region
        );
    }
    let mut refused = false;
    for c in &changes {
        let verb = match (c.action, t.dry_run) {
            (Action::Blocked, _) => {
                refused = true;
                "left alone"
            }
            (_, true) => "would delete",
            (_, false) => "deleted",
        };
        println!(
            "{verb} {} {}{}",
            c.kind,
            c.name,
            c.reason
                .as_deref()
                .filter(|_| c.action == Action::Blocked)
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }
    Ok(if refused {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
