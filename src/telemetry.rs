//! Logging: human-readable by default, JSON on request; `RUST_LOG` or `--log-level` filters.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. Logs go to stderr so that command output on stdout
/// (plans, JSON) stays machine-readable. A plain level (`--log-level info`, no `RUST_LOG`) is a
/// simple maximum level; directives (`RUST_LOG=presta_engine=debug,info`) go through
/// `EnvFilter`, whose parser is only run when there are some.
pub fn init(format: LogFormat, level: &str) {
    macro_rules! install {
        ($builder:expr) => {{
            let builder = $builder
                .with_writer(std::io::stderr)
                // Colour codes only for a person at a terminal, never in a journal or a file.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
            let _ = match format {
                LogFormat::Text => builder.with_target(false).try_init(),
                LogFormat::Json => builder
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .try_init(),
            };
        }};
    }
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let plain = match from_env {
        None => level.trim().parse::<LevelFilter>().ok(),
        Some(_) => None,
    };
    match plain {
        Some(max) => install!(tracing_subscriber::fmt().with_max_level(max)),
        None => {
            let filter =
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
            install!(tracing_subscriber::fmt().with_env_filter(filter))
        }
    }
}
