//! The API budget: a client-side token bucket per AWS service and region, shared by every
//! client of the process, that every request (retries included) passes through before it is
//! sent. A fleet's resyncs then spread out at a rate AWS accepts instead of bursting into
//! throttling (EC2's non-mutating bucket refills at about 20 requests a second per account
//! and region). The defaults stay below AWS's documented refill rates; `--aws-rate` sets
//! others. Time spent waiting for a token is reported to the call recorders
//! (`presta_aws_budget_wait_seconds_total{service}`).
//!
//! The wait happens inside the HTTP connector, so it counts toward the attempt's timeout:
//! with the daemon's bounded concurrency a request waits at most a few seconds.
//!
//! Two lanes share each bucket. Work run inside [`urgent`] (a run asked by a change event or
//! by a person) reserves its token at once and is served first; the rest (resyncs, the
//! orphan search) takes a token only when one is there, so that a change made by hand is
//! healed in seconds even while a fleet's resyncs keep the bucket busy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector,
    http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use tokio::time::Instant;

use crate::calls::CallRecorder;

/// Requests a second and burst size for one service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

/// The defaults, per signing name: below AWS's documented refill rates (EC2's non-mutating
/// actions refill at 20 a second with a bucket of 100; SSM's GetParameters allows 40 a second
/// by default; ELB, Auto Scaling, RDS and EFS publish lower, per-action figures).
pub const DEFAULT_RATES: &[(&str, Rate)] = &[
    (
        "ec2",
        Rate {
            per_second: 18.0,
            burst: 80.0,
        },
    ),
    (
        "elasticloadbalancing",
        Rate {
            per_second: 8.0,
            burst: 30.0,
        },
    ),
    (
        "autoscaling",
        Rate {
            per_second: 8.0,
            burst: 30.0,
        },
    ),
    (
        "rds",
        Rate {
            per_second: 8.0,
            burst: 30.0,
        },
    ),
    (
        "elasticfilesystem",
        Rate {
            per_second: 8.0,
            burst: 30.0,
        },
    ),
    (
        "ssm",
        Rate {
            per_second: 18.0,
            burst: 40.0,
        },
    ),
    (
        "dynamodb",
        Rate {
            per_second: 20.0,
            burst: 40.0,
        },
    ),
];

/// One bucket: `burst` tokens at most, refilled at `per_second`.
#[derive(Debug)]
struct Bucket {
    rate: Rate,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: Rate) -> Bucket {
        Bucket {
            rate,
            tokens: rate.burst,
            at: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        self.at = now;
    }

    /// Takes one token now, or says how long until one is there (and reserves it): the
    /// urgent lane, served in order ahead of the other.
    fn take(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate.per_second)
        }
    }

    /// Takes one token if there is one (none reserved by the urgent lane); otherwise says
    /// how long until there may be one, and reserves nothing.
    fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 - 1e-9 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.rate.per_second,
            ))
        }
    }
}

tokio::task_local! {
    static URGENT: bool;
}

/// Runs `work` in the urgent lane of the API budget: its requests go ahead of the resyncs'.
pub async fn urgent<F: std::future::Future>(work: F) -> F::Output {
    URGENT.scope(true, work).await
}

/// Whether the current task runs inside [`urgent`].
pub fn is_urgent() -> bool {
    URGENT.try_with(|u| *u).unwrap_or(false)
}

/// The buckets by (region, service).
type Buckets = BTreeMap<(String, String), Arc<Mutex<Bucket>>>;

/// The buckets of a process, per region and service, created on first use.
#[derive(Debug)]
pub struct ApiBudget {
    rates: BTreeMap<String, Rate>,
    buckets: Mutex<Buckets>,
}

impl Default for ApiBudget {
    fn default() -> Self {
        ApiBudget::new(BTreeMap::new())
    }
}

impl ApiBudget {
    /// The defaults, with `overrides` (per signing name) on top.
    pub fn new(overrides: BTreeMap<String, Rate>) -> ApiBudget {
        let mut rates: BTreeMap<String, Rate> = DEFAULT_RATES
            .iter()
            .map(|(s, r)| (s.to_string(), *r))
            .collect();
        rates.extend(overrides);
        ApiBudget {
            rates,
            buckets: Mutex::new(BTreeMap::new()),
        }
    }

    /// The rate of `service`.
    pub fn rate(&self, service: &str) -> Option<Rate> {
        self.rates.get(service).copied()
    }

    /// Waits for a token of `service` in `region`; returns how long it waited.
    pub async fn acquire(&self, region: &str, service: &str) -> Duration {
        let Some(rate) = self.rate(service) else {
            return Duration::ZERO;
        };
        let bucket = self
            .buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((region.to_string(), service.to_string()))
            .or_insert_with(|| Arc::new(Mutex::new(Bucket::new(rate))))
            .clone();
        if is_urgent() {
            let wait = bucket
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            return wait;
        }
        let start = Instant::now();
        loop {
            let next = bucket
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .try_take(Instant::now());
            match next {
                Ok(()) => return start.elapsed(),
                Err(wait) => tokio::time::sleep(wait.max(Duration::from_millis(1))).await,
            }
        }
    }

    /// `service=rate[/burst]` (e.g. `ec2=20`, `rds=5/10`): one override.
    pub fn parse_override(text: &str) -> Result<(String, Rate), String> {
        let (service, value) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}`: expected SERVICE=RATE[/BURST], e.g. ec2=20"))?;
        let (rate, burst) = match value.split_once('/') {
            Some((r, b)) => (r, Some(b)),
            None => (value, None),
        };
        let per_second: f64 = rate
            .parse()
            .ok()
            .filter(|r: &f64| *r > 0.0 && r.is_finite())
            .ok_or_else(|| {
                format!("`{text}`: the rate must be a positive number of requests a second")
            })?;
        let burst = match burst {
            Some(b) => b
                .parse()
                .ok()
                .filter(|b: &f64| *b >= 1.0 && b.is_finite())
                .ok_or_else(|| format!("`{text}`: the burst must be at least 1"))?,
            None => (per_second * 2.0).max(1.0),
        };
        let known: Vec<&str> = DEFAULT_RATES.iter().map(|(s, _)| *s).collect();
        if !known.contains(&service) {
            return Err(format!(
                "`{service}` is not a service the reconciler calls: one of {}",
                known.join(", ")
            ));
        }
        Ok((service.to_string(), Rate { per_second, burst }))
    }
}

/// `inner`, with every request of `service` in `region` waiting for a token of `budget`
/// first; each wait is reported to `recorder`.
pub fn budgeted(
    inner: SharedHttpClient,
    budget: Arc<ApiBudget>,
    region: &str,
    service: &'static str,
    recorder: Arc<dyn CallRecorder>,
) -> SharedHttpClient {
    let region = region.to_string();
    http_client_fn(move |settings, components| {
        SharedHttpConnector::new(Budgeted {
            inner: inner.http_connector(settings, components),
            budget: budget.clone(),
            region: region.clone(),
            service,
            recorder: recorder.clone(),
        })
    })
}

#[derive(Debug)]
struct Budgeted {
    inner: SharedHttpConnector,
    budget: Arc<ApiBudget>,
    region: String,
    service: &'static str,
    recorder: Arc<dyn CallRecorder>,
}

impl HttpConnector for Budgeted {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (inner, budget, recorder) = (
            self.inner.clone(),
            self.budget.clone(),
            self.recorder.clone(),
        );
        let (region, service) = (self.region.clone(), self.service);
        HttpConnectorFuture::new(async move {
            let waited = budget.acquire(&region, service).await;
            if !waited.is_zero() {
                recorder.record_budget_wait(service, waited);
            }
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_then_requests_are_spaced_at_the_rate() {
        let budget = ApiBudget::new(BTreeMap::from([(
            "ec2".to_string(),
            Rate {
                per_second: 10.0,
                burst: 5.0,
            },
        )]));
        let start = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..15 {
            waits.push(budget.acquire("eu-west-3", "ec2").await);
        }
        assert!(waits[..5].iter().all(|w| w.is_zero()), "{waits:?}");
        assert!(waits[5..].iter().all(|w| !w.is_zero()), "{waits:?}");
        // 15 requests at 10/s after a burst of 5: one second.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(990) && took <= Duration::from_millis(1010),
            "{took:?}"
        );
        // Another region and another service have buckets of their own.
        assert!(budget.acquire("us-east-1", "ec2").await.is_zero());
        assert!(budget.acquire("eu-west-3", "rds").await.is_zero());
        // Idle time refills, up to the burst.
        tokio::time::sleep(Duration::from_secs(60)).await;
        for _ in 0..5 {
            assert!(budget.acquire("eu-west-3", "ec2").await.is_zero());
        }
        assert!(!budget.acquire("eu-west-3", "ec2").await.is_zero());
    }

    #[tokio::test(start_paused = true)]
    async fn urgent_requests_go_ahead_of_a_busy_bucket() {
        let budget = Arc::new(ApiBudget::new(BTreeMap::from([(
            "ec2".to_string(),
            Rate {
                per_second: 10.0,
                burst: 5.0,
            },
        )])));
        // Twenty background requests keep the bucket busy for about two seconds.
        let background: Vec<_> = (0..20)
            .map(|_| {
                let b = budget.clone();
                tokio::spawn(async move {
                    b.acquire("eu-west-3", "ec2").await;
                    Instant::now()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let start = Instant::now();
        for _ in 0..3 {
            assert!(urgent(async { is_urgent() }).await);
            urgent(budget.acquire("eu-west-3", "ec2")).await;
        }
        assert!(!is_urgent());
        // Three urgent requests wait for the next three tokens only: 0.3 s, not 2 s.
        let took = start.elapsed();
        assert!(took <= Duration::from_millis(320), "{took:?}");
        let mut ends = Vec::new();
        for h in background {
            ends.push(h.await.unwrap());
        }
        // Every request still went at the bucket's rate: 5 at once, then 18 more at 10/s.
        let last = ends
            .iter()
            .max()
            .unwrap()
            .duration_since(start - Duration::from_millis(100));
        assert!(
            last >= Duration::from_millis(1790) && last <= Duration::from_millis(1850),
            "{last:?}"
        );
    }

    #[test]
    fn overrides_parse_with_a_clear_error() {
        assert_eq!(
            ApiBudget::parse_override("ec2=20").unwrap(),
            (
                "ec2".to_string(),
                Rate {
                    per_second: 20.0,
                    burst: 40.0
                }
            )
        );
        assert_eq!(
            ApiBudget::parse_override("rds=5/10").unwrap().1,
            Rate {
                per_second: 5.0,
                burst: 10.0
            }
        );
        assert!(
            ApiBudget::parse_override("ec2")
                .unwrap_err()
                .contains("SERVICE=RATE")
        );
        assert!(
            ApiBudget::parse_override("ec2=0")
                .unwrap_err()
                .contains("positive")
        );
        assert!(
            ApiBudget::parse_override("s3=5")
                .unwrap_err()
                .contains("not a service")
        );
        for (service, rate) in DEFAULT_RATES {
            assert!(rate.per_second > 0.0 && rate.burst >= 1.0, "{service}");
        }
    }
}
