//! `presta-reconciler serve`: the daemon. Loads and validates the configuration, reconciles
//! every stack periodically and on demand, serves the HTTP API, reloads the configuration on
//! SIGHUP and when its files change (a broken edit is refused and the last good configuration
//! keeps running), and on SIGTERM/SIGINT stops taking triggers, lets the runs in flight finish
//! (bounded by `--drain-timeout`) and exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use presta_aws::ClientSettings;
use presta_controller::lease::{Lease, LeaseSettings, Role};
use presta_controller::metrics::Metrics;
use presta_controller::{Controller, ControllerSettings};
use presta_engine::{Engine, LogProgress, Settings};
use presta_spec::Stack;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Desired-state files or directories of YAML files.
    #[arg(
        short = 'f',
        long = "file",
        required = true,
        value_name = "FILE",
        env = "PRESTA_CONFIG",
        value_delimiter = ','
    )]
    files: Vec<PathBuf>,
    /// Address of the HTTP API. A non-loopback address needs a token.
    #[arg(long, default_value = "127.0.0.1:9480", env = "PRESTA_LISTEN")]
    listen: SocketAddr,
    /// File holding the bearer token that `POST /reconcile*` and `/stacks/*/plan` require.
    #[arg(long, env = "PRESTA_TOKEN_FILE", value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// The API budget: requests a second (and burst) per AWS service and region, that every
    /// request waits for, e.g. `--aws-rate ec2=10 --aws-rate rds=5/10` (repeatable; the
    /// other services keep their defaults, below AWS's refill rates: docs/reconciliation.md).
    #[arg(
        long = "aws-rate",
        value_name = "SERVICE=RATE[/BURST]",
        env = "PRESTA_AWS_RATE",
        value_delimiter = ','
    )]
    aws_rate: Vec<String>,
    /// No client-side API budget (AWS's throttling and the SDK's adaptive retry only).
    #[arg(long = "no-aws-budget")]
    no_aws_budget: bool,
    /// Seconds between two runs of a converged stack (spread by ±10%); with events flowing,
    /// of a stack pending, blocked, held or failing.
    #[arg(long, default_value_t = 60, env = "PRESTA_INTERVAL", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    interval: u64,
    /// Where AWS's change events come from: `auto` (the daemon keeps an SQS queue and an
    /// EventBridge rule in each region it manages), `sqs:QUEUE_URL` (a queue and rule made by
    /// someone else; `presta-reconciler events pattern` prints the rule's pattern) or `off`
    /// (polling only). docs/events.md.
    #[arg(
        long,
        default_value = "off",
        env = "PRESTA_EVENTS",
        value_name = "auto|sqs:URL|off"
    )]
    events: String,
    /// The name of the daemon's queue and rule (`--events auto`): daemons sharing an account
    /// and region need different names.
    #[arg(long, default_value = presta_aws::events::DEFAULT_NAME, env = "PRESTA_EVENTS_NAME")]
    events_name: String,
    /// With events flowing: seconds between two runs of a converged stack (the safety net).
    #[arg(long, default_value_t = 600, env = "PRESTA_RESYNC_INTERVAL", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    resync_interval: u64,
    /// Seconds between two heartbeats put on the bus; a region whose heartbeat has not come
    /// back for two of them falls back to polling at --interval.
    #[arg(long, default_value_t = 60, env = "PRESTA_HEARTBEAT_INTERVAL", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    heartbeat_interval: u64,
    /// Milliseconds between an event and the run it asks for: a burst makes one run.
    #[arg(
        long,
        default_value_t = 1000,
        env = "PRESTA_EVENTS_DEBOUNCE_MS",
        value_name = "MS"
    )]
    events_debounce_ms: u64,
    /// Stacks reconciled at once.
    #[arg(long, default_value_t = 8, env = "PRESTA_CONCURRENCY", value_parser = clap::value_parser!(u64).range(1..=256))]
    concurrency: u64,
    /// Seconds the runs in flight get to finish on shutdown.
    #[arg(
        long,
        default_value_t = 30,
        env = "PRESTA_DRAIN_TIMEOUT",
        value_name = "SECONDS"
    )]
    drain_timeout: u64,
    /// Longest wait of `POST /reconcile?wait=true`, in seconds.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    request_wait_timeout: u64,
    /// Seconds between two checks of the configuration files for changes (0: SIGHUP only).
    #[arg(
        long,
        default_value_t = 2,
        env = "PRESTA_RELOAD_POLL",
        value_name = "SECONDS"
    )]
    reload_poll: u64,
    /// Longest delay between runs after repeated failures, in seconds.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    max_backoff: u64,
    /// AWS endpoint for every service (else the SDK's own, which honours AWS_ENDPOINT_URL).
    #[arg(long, env = "PRESTA_AWS_ENDPOINT_URL", value_name = "URL")]
    endpoint_url: Option<String>,
    /// Seconds one attempt of an AWS call may take before it is retried; `/readyz` turns 503
    /// when an observation waits for AWS longer than two of them.
    #[arg(long, default_value_t = 10, env = "PRESTA_AWS_ATTEMPT_TIMEOUT", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=120))]
    aws_attempt_timeout: u64,
    /// One writer among replicas: `dynamodb:TABLE` (partition key `lease`, a string). Only
    /// the replica holding the lease reconciles; the others stand by.
    #[arg(long, env = "PRESTA_LEASE", value_name = "dynamodb:TABLE")]
    lease: Option<String>,
    /// The lease's key in the table: replicas with the same name compete for it.
    #[arg(long, default_value = "presta-reconciler", env = "PRESTA_LEASE_NAME")]
    lease_name: String,
    /// Region of the lease table (default: AWS_REGION, else the first stack's region).
    #[arg(long, env = "PRESTA_LEASE_REGION")]
    lease_region: Option<String>,
    /// Seconds a lease lasts without renewal (renewed every third of it).
    #[arg(long, default_value_t = 15, env = "PRESTA_LEASE_SECONDS", value_parser = clap::value_parser!(u64).range(3..=300))]
    lease_seconds: u64,
    /// This replica's name in the lease and in the User-Agent of its AWS calls (default:
    /// host name and process id).
    #[arg(long, env = "PRESTA_REPLICA_ID")]
    replica_id: Option<String>,
}

/// `--events`: how change events reach the daemon, or `None` for polling only.
fn events_settings(
    args: &Args,
    id: &str,
) -> anyhow::Result<Option<presta_controller::events::EventSettings>> {
    use presta_controller::events::{EventSettings, EventSource};
    let source = match args.events.as_str() {
        "off" => return Ok(None),
        "auto" => EventSource::Auto {
            name: args.events_name.clone(),
        },
        other => match other.strip_prefix("sqs:") {
            Some(url) if url.starts_with("http") => EventSource::Queue {
                url: url.to_string(),
            },
            _ => bail!(
                "--events `{other}`: expected auto, sqs:QUEUE_URL or off\n  help: e.g. --events auto, or --events sqs:https://sqs.eu-west-3.amazonaws.com/123456789012/my-queue"
            ),
        },
    };
    if args.resync_interval < args.interval {
        bail!(
            "--resync-interval {} is shorter than --interval {}: the resync of converged stacks is the slow safety net while events flow\n  help: e.g. --interval 60 --resync-interval 600",
            args.resync_interval,
            args.interval
        );
    }
    Ok(Some(EventSettings {
        source,
        heartbeat: Duration::from_secs(args.heartbeat_interval),
        daemon: id.to_string(),
    }))
}

/// `dynamodb:TABLE` → TABLE.
fn lease_table(spec: &str) -> anyhow::Result<String> {
    match spec.split_once(':') {
        Some(("dynamodb", table)) if !table.is_empty() => Ok(table.to_string()),
        _ => bail!(
            "--lease `{spec}`: expected dynamodb:TABLE\n  help: e.g. --lease dynamodb:presta-reconciler-lease (a table whose partition key is `lease`, a string)"
        ),
    }
}

/// This replica's name: the one given, else host name and process id.
fn replica_id(args: &Args) -> String {
    args.replica_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "replica".into());
        format!("{host}-{}", std::process::id())
    })
}

/// The token, from `--token-file` or `PRESTA_TOKEN`. Never logged.
fn token(args: &Args) -> anyhow::Result<Option<Arc<str>>> {
    let raw = match (&args.token_file, std::env::var("PRESTA_TOKEN")) {
        (Some(path), _) => {
            check_token_file(path)?;
            std::fs::read_to_string(path).with_context(|| {
                format!(
                    "reading the token file {}\n  help: check --token-file / PRESTA_TOKEN_FILE",
                    path.display()
                )
            })?
        }
        (None, Ok(t)) => t,
        (None, Err(_)) => return Ok(None),
    };
    let t = raw.trim();
    if t.len() < 16 {
        bail!(
            "the API token is too short ({} characters)\n  help: use at least 16 random characters, e.g. `openssl rand -hex 32 > token`",
            t.len()
        );
    }
    Ok(Some(Arc::from(t)))
}

/// A token file others can change is refused; one others can read is accepted with a warning.
fn check_token_file(path: &std::path::Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("reading the token file {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            bail!(
                "the token file {} can be written by other users (mode {:o}): anyone could replace the API token\n  help: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
        if mode & 0o044 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the token file can be read by other users; chmod 600 it"
            );
        }
    }
    Ok(())
}

fn load(files: &[PathBuf]) -> Result<Vec<Stack>, presta_spec::ConfigError> {
    Ok(presta_spec::load_paths(files)?
        .into_iter()
        .map(|l| l.stack.with_defaults())
        .collect())
}

fn sources(files: &[PathBuf]) -> Vec<String> {
    files.iter().map(|p| p.display().to_string()).collect()
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let token = token(args)?;
    if token.is_none() && !args.listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {} without an API token: anyone who reaches it could force runs\n  help: set --token-file (or PRESTA_TOKEN), or listen on 127.0.0.1",
            args.listen
        );
    }
    let stacks = load(&args.files)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(args, token, stacks))
}

async fn serve(
    args: &Args,
    token: Option<Arc<str>>,
    stacks: Vec<Stack>,
) -> anyhow::Result<ExitCode> {
    let id = replica_id(args);
    let budget = crate::api_budget(&args.aws_rate, args.no_aws_budget)?;
    let client = ClientSettings {
        endpoint_url: args.endpoint_url.clone(),
        attempt_timeout: Duration::from_secs(args.aws_attempt_timeout),
        app_name: Some(app_name(&id)),
        // One client-side limiter at a time: the API budget paces every request below AWS's
        // rates (with its urgent lane for changes made by hand), so a throttling answer is
        // retried with the standard back-off. The SDK's adaptive limiter, which would also
        // slow the urgent runs for tens of seconds after a few throttles, only without it.
        adaptive_retry: budget.is_none(),
        budget,
        ..ClientSettings::default()
    };
    let lease = match &args.lease {
        Some(spec) => Some(lease(args, spec, &id, &client, &stacks).await?),
        None => None,
    };
    let events = events_settings(args, &id)?;
    let events_client = events_client(&client);
    let (engine, mut settings) = engine_and_settings(args, client, lease.as_ref());
    if events.is_some() {
        settings.resync_interval = Some(Duration::from_secs(args.resync_interval));
        settings.events_debounce = Duration::from_millis(args.events_debounce_ms);
    }
    let metrics = Metrics::new();
    let names: Vec<String> = stacks.iter().map(|s| s.name().to_string()).collect();
    let controller = Controller::new(engine, metrics, settings, stacks, sources(&args.files));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "listening on {}\n  help: is another presta-reconciler running? choose another --listen",
                args.listen
            )
        })?;
    let local = listener.local_addr()?;
    // On stdout, for people and scripts (with `--listen 127.0.0.1:0` it says which port).
    println!("listening on http://{local}");
    tracing::info!(
        address = %local,
        stacks = ?names,
        interval_seconds = args.interval,
        auth = if token.is_some() { "bearer token" } else { "none (loopback only)" },
        "presta-reconciler serving"
    );
    let app = presta_http::router(presta_http::AppState {
        controller: controller.clone(),
        token,
        wait_timeout: Duration::from_secs(args.request_wait_timeout),
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let leasing = lease
        .clone()
        .map(|l| keep_lease(l, stop_rx.clone(), controller.metrics().clone()));
    if lease.is_some() {
        tracing::info!(replica = %id, lease = %args.lease_name, "waiting for the lease: this replica reconciles only while it holds it");
    }
    let eventing = events.map(|ev| {
        tracing::info!(source = ?ev.source, resync_seconds = args.resync_interval, heartbeat_seconds = args.heartbeat_interval, "change events on: converged stacks are resynced at --resync-interval while events flow");
        let bus = Arc::new(presta_controller::events::AwsEventBus::new(
            events_client,
            Arc::new(controller.metrics().clone()),
            ev.source.clone(),
        ));
        let me = controller.clone();
        tokio::spawn(async move { me.run_events(bus, ev).await })
    });
    let drain = Duration::from_secs(args.drain_timeout);
    let looping = controller.clone();
    let control = tokio::spawn(async move { looping.run(drain).await });
    let reload = tokio::spawn(reload_loop(
        controller.clone(),
        args.files.clone(),
        Duration::from_secs(args.reload_poll),
        stop_rx.clone(),
    ));
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_stop.wait_for(|s| *s).await;
            })
            .await
    });

    let signal = shutdown_signal().await;
    tracing::info!(
        signal,
        drain_seconds = args.drain_timeout,
        "shutting down: no new runs; waiting for the runs in flight"
    );
    controller.shutdown();
    let _ = stop_tx.send(true);
    if let Some(e) = eventing {
        e.abort();
    }
    let drained = stop(drain, control, server, reload, leasing).await;
    tracing::info!(drained, "stopped");
    Ok(ExitCode::SUCCESS)
}

/// The engine (with the lease's fence) and the controller's settings of `serve`'s arguments.
fn engine_and_settings(
    args: &Args,
    client: ClientSettings,
    lease: Option<&Arc<Lease>>,
) -> (Engine, ControllerSettings) {
    let engine = Engine::new(Settings {
        client: ClientSettings {
            fence: lease
                .as_ref()
                .map(|l| l.fence() as Arc<dyn presta_aws::calls::Fence>),
            ..client
        },
        // The daemon never blocks a worker on a slow resource: it looks again soon.
        wait_timeout: Duration::ZERO,
        poll_interval: Duration::from_secs(1),
        concurrency: args.concurrency as usize,
        health: true,
        progress: Arc::new(LogProgress),
    });
    let settings = ControllerSettings {
        interval: Duration::from_secs(args.interval),
        backoff_max: Duration::from_secs(args.max_backoff),
        ready_max_age: Duration::from_secs(args.interval * 3 + 60),
        stuck_after: Duration::from_secs(args.aws_attempt_timeout * 2),
        role: lease.as_ref().map(|l| l.role()),
        ..ControllerSettings::default()
    };
    (engine, settings)
}

/// The lease among replicas (`--lease dynamodb:TABLE`): its own short timeouts, since a
/// renewal must answer within its period.
async fn lease(
    args: &Args,
    spec: &str,
    id: &str,
    client: &ClientSettings,
    stacks: &[Stack],
) -> anyhow::Result<Arc<Lease>> {
    let table = lease_table(spec)?;
    let region = args
        .lease_region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| stacks.first().map(|s| s.spec.region.clone()))
        .context("the lease table's region: set --lease-region")?;
    let duration = Duration::from_secs(args.lease_seconds);
    // A renewal must answer within its period: short timeouts, one retry.
    let lease_client = ClientSettings {
        attempt_timeout: duration / 6,
        operation_timeout: duration / 3,
        max_attempts: 2,
        ..client.clone()
    };
    let sdk = presta_aws::clients::sdk_config(&region, &lease_client).await;
    Ok(Arc::new(Lease::new(
        &sdk,
        LeaseSettings {
            table,
            name: args.lease_name.clone(),
            id: id.to_string(),
            duration,
            renew_every: duration / 3,
        },
    )))
}

/// Keeps the lease until `stop`, and `presta_leader` in step with this replica's role.
fn keep_lease(
    l: Arc<Lease>,
    stop: tokio::sync::watch::Receiver<bool>,
    metrics: Metrics,
) -> tokio::task::JoinHandle<()> {
    let mut role = l.role();
    tokio::spawn(async move {
        let keep = l.run(stop);
        let watch = async {
            loop {
                let leader = matches!(*role.borrow_and_update(), Role::Leader { .. });
                metrics.leader.set(i64::from(leader));
                if role.changed().await.is_err() {
                    break;
                }
            }
        };
        tokio::select! {
            _ = keep => {}
            _ = watch => {}
        }
        metrics.leader.set(0);
    })
}

/// After the shutdown: waits for the runs in flight, then the connections and the lease's
/// release, everything within the drain time and a second. Whether the runs drained.
async fn stop(
    drain: Duration,
    control: tokio::task::JoinHandle<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    reload: tokio::task::JoinHandle<()>,
    leasing: Option<tokio::task::JoinHandle<()>>,
) -> bool {
    let deadline = tokio::time::Instant::now() + drain + Duration::from_secs(1);
    let drained = control.await.unwrap_or(false);
    // Waiting callers were answered 503 at the shutdown; other open connections get what
    // is left of the bound.
    match tokio::time::timeout_at(deadline, server).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server stopped with an error"),
        Err(_) => tracing::warn!("HTTP connections still open after the drain time; closing"),
        _ => {}
    }
    reload.abort();
    if let Some(l) = leasing {
        // Hands the lease back so that another replica takes over at once.
        let _ = tokio::time::timeout_at(deadline, l).await;
    }
    drained
}

/// Waits for SIGTERM (systemd, ECS) or SIGINT (Ctrl-C); returns its name.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// The content of the configuration, to notice changes (an edit, a new file in a directory):
/// the same list of files the loader reads.
fn fingerprint(files: &[PathBuf]) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    presta_spec::load::config_files(files)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            // An oversized file is not read every poll: its size and time stand for it.
            let content = match std::fs::metadata(&p) {
                Ok(m) if m.len() > presta_spec::load::MAX_FILE_BYTES => {
                    Some(format!("{}:{:?}", m.len(), m.modified().ok()).into_bytes())
                }
                _ => std::fs::read(&p).ok(),
            };
            (p, content)
        })
        .collect()
}

/// Reloads on SIGHUP and when the files change.
async fn reload_loop(
    controller: Controller,
    files: Vec<PathBuf>,
    poll: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut last = fingerprint(&files);
    loop {
        let tick = async {
            if poll.is_zero() {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(poll).await
            }
        };
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let forced = tokio::select! {
            _ = tick => false,
            _ = hangup => true,
            _ = stop.wait_for(|s| *s) => return,
        };
        let now = fingerprint(&files);
        if !forced && now == last {
            continue;
        }
        last = now;
        let why = if forced { "SIGHUP" } else { "file changed" };
        match load(&files) {
            Ok(stacks) => {
                let names: Vec<String> = stacks.iter().map(|s| s.name().to_string()).collect();
                controller.set_stacks(stacks, sources(&files));
                controller
                    .metrics()
                    .config_reloads
                    .with_label_values(&["success"])
                    .inc();
                tracing::info!(trigger = why, stacks = ?names, "configuration reloaded");
            }
            Err(e) => {
                controller
                    .metrics()
                    .config_reloads
                    .with_label_values(&["error"])
                    .inc();
                let message = e.to_string();
                tracing::error!(trigger = why, problems = %message, "configuration reload refused: the previous configuration keeps running");
                controller.reload_refused(message);
            }
        }
    }
}

/// The event path's clients: the standard retry, not the adaptive one, whose client-side
/// limiter would hold a long poll or a heartbeat back for tens of seconds after a few
/// throttling answers; and attempts long enough for a long poll, which SQS answers only after
/// waiting up to [`presta_controller::events::LONGEST_POLL`] for a message.
fn events_client(client: &ClientSettings) -> ClientSettings {
    ClientSettings {
        adaptive_retry: false,
        attempt_timeout: client.attempt_timeout + presta_controller::events::LONGEST_POLL,
        ..client.clone()
    }
}

/// The User-Agent app name for this replica (`presta-<id>`, only the characters AWS allows).
fn app_name(id: &str) -> String {
    let clean: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("presta-{clean}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_paths_attempts_outlast_a_long_poll() {
        let client = ClientSettings {
            attempt_timeout: Duration::from_secs(5),
            adaptive_retry: true,
            ..ClientSettings::default()
        };
        let events = events_client(&client);
        assert!(!events.adaptive_retry);
        assert_eq!(
            events.attempt_timeout,
            Duration::from_secs(5) + presta_controller::events::LONGEST_POLL
        );
        assert!(events.attempt_timeout > presta_controller::events::LONGEST_POLL);
    }
}
