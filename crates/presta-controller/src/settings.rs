//! How often and how patiently the daemon reconciles, and why a trigger is refused.

use std::time::Duration;

/// How often and how patiently the daemon reconciles.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// Time between two runs of a converged stack.
    pub interval: Duration,
    /// Spread of the interval, as a fraction (0.1: ±10%), so that stacks do not all hit AWS at
    /// the same second.
    pub jitter: f64,
    /// Next look at a stack that waits for AWS (a database being created).
    pub pending_requeue: Duration,
    /// First delay after a failure; doubles with each further failure.
    pub backoff_base: Duration,
    /// The longest delay after failures.
    pub backoff_max: Duration,
    /// The next run after AWS refused a request (access denied, invalid request): no tight
    /// retry loop; a configuration change or a manual trigger runs the stack sooner.
    pub refused_retry: Duration,
    /// `/readyz` fails when the last successful AWS observation is older than this.
    pub ready_max_age: Duration,
    /// `/readyz` fails when an observation has waited this long for AWS (about two attempt
    /// timeouts): a frozen or black-holed endpoint shows within seconds, not after the
    /// whole operation timeout.
    pub stuck_after: Duration,
    /// With events flowing in a stack's region (`serve --events`): the time between two runs
    /// of a converged stack (the safety net); `None`: events off, `interval` always.
    pub resync_interval: Option<Duration>,
    /// An event asks for a run this much later, so that a burst makes one run.
    pub events_debounce: Duration,
    /// Who writes among replicas (`serve --lease`); `None`: this process alone.
    pub role: Option<tokio::sync::watch::Receiver<crate::lease::Role>>,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        ControllerSettings {
            interval: Duration::from_secs(60),
            jitter: 0.1,
            pending_requeue: Duration::from_secs(15),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
            refused_retry: Duration::from_secs(1800),
            ready_max_age: Duration::from_secs(180),
            stuck_after: Duration::from_secs(20),
            resync_interval: None,
            events_debounce: Duration::from_secs(1),
            role: None,
        }
    }
}

impl ControllerSettings {
    /// The delay before the next run after `failures` failures in a row (at least one).
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
        self.backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max)
    }

    /// The interval, spread by up to ±`jitter`.
    pub(crate) fn jittered_interval(&self) -> Duration {
        let spread = self.jitter.clamp(0.0, 0.9) * (2.0 * unit_random() - 1.0);
        self.interval.mul_f64(1.0 + spread)
    }

    /// The next resync of a converged stack while events flow: the resync interval, or, the
    /// first time (`spread`), a random part of it (at least a tenth), so that a fleet's
    /// resyncs spread across the interval instead of coming together.
    pub(crate) fn resync_delay(&self, resync: Duration, spread: bool) -> Duration {
        if spread {
            resync.mul_f64(0.1 + 0.9 * unit_random())
        } else {
            resync
        }
    }
}

/// A random number in [0, 1).
pub(crate) fn unit_random() -> f64 {
    let mut buf = [0u8; 8];
    if getrandom::fill(&mut buf).is_ok() {
        (u64::from_le_bytes(buf) >> 11) as f64 / (1u64 << 53) as f64
    } else {
        0.5
    }
}

/// Why a trigger was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    #[error("no stack `{stack}` in the configuration (stacks: {known})")]
    UnknownStack { stack: String, known: String },
    #[error("the daemon is shutting down and takes no new runs")]
    ShuttingDown,
    #[error(
        "this replica is on standby: {} holds the lease and reconciles; send the request to it",
        leader.as_deref().unwrap_or("another replica")
    )]
    Standby { leader: Option<String> },
    #[error(
        "stack `{stack}` has no held plan nor gated release to approve (GET /stacks/{stack} shows `held` or `gated` when there is one)"
    )]
    NotHeld { stack: String },
    #[error(
        "stack `{stack}`'s held plan or gated release is now {current}, not {given}: look at the new plan (GET /stacks/{stack}) and approve its hash"
    )]
    PlanChanged {
        stack: String,
        given: String,
        current: String,
    },
}

/// Why a maintenance command did not run, or failed to be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Trigger(#[from] TriggerError),
    /// The command or its argument is not allowed (nothing was sent).
    #[error("{0}")]
    Invalid(String),
    /// AWS refused or failed the Run Command calls.
    #[error("SSM Run Command failed: {0}")]
    Aws(#[from] presta_aws::AwsError),
}
