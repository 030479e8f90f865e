//! Every AWS call the drivers make goes through an SDK interceptor that reports its service,
//! operation, outcome and latency to a [`CallRecorder`]. The engine counts calls per run with
//! [`CallStats`]; the daemon's metrics implement the same trait.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Success,
    /// AWS answered 4xx (not found, validation, throttling...).
    ClientError,
    /// AWS answered 5xx.
    ServerError,
    /// No answer: timeout, connection refused, DNS.
    Transport,
}

impl Outcome {
    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
            Outcome::Transport => "transport_error",
        }
    }
}

/// Receives one record per AWS operation (retries included in its latency).
pub trait CallRecorder: Send + Sync + std::fmt::Debug {
    fn record(&self, service: &str, operation: &str, outcome: Outcome, elapsed: Duration);

    /// One failed attempt of an operation (the SDK may retry it): its class, `throttled`,
    /// `transient`, `not_found`, `conflict`, `refused` or `transport`.
    fn record_attempt_error(&self, _service: &str, _operation: &str, _class: &str) {}

    /// A request of `service` waited `waited` for a token of the API budget.
    fn record_budget_wait(&self, _service: &str, _waited: Duration) {}
}

/// Per-resource reads in flight at once, per kind (attributes of each load balancer, each
/// file system's policies...): enough to hide latency, few enough that a fleet of hundreds
/// of stacks neither bursts past AWS's API rate limits nor queues hundreds of requests on one
/// endpoint.
pub const READ_CONCURRENCY: usize = 8;

/// Runs `futures` with at most [`READ_CONCURRENCY`] in flight, keeping their order; the first
/// error wins.
pub fn bounded<T, E, F>(
    futures: impl IntoIterator<Item = F>,
) -> impl std::future::Future<Output = Result<Vec<T>, E>>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    use futures::{StreamExt, TryStreamExt};
    // Built now, so that the caller's closures are not held across an await.
    let futures: Vec<F> = futures.into_iter().collect();
    futures::stream::iter(futures)
        .buffered(READ_CONCURRENCY)
        .try_collect()
}

/// Decides whether this process may still change AWS (the daemon's lease among replicas):
/// checked before every mutating call, so a replica that lost its lease stops before its next
/// write (fencing), not at the end of its run.
pub trait Fence: Send + Sync + std::fmt::Debug {
    /// `Err(why)` when writes are no longer allowed.
    fn may_write(&self) -> Result<(), String>;
}

/// Whether an operation only reads (Describe, Get, List).
pub fn is_read_only(operation: &str) -> bool {
    ["Describe", "Get", "List"]
        .iter()
        .any(|p| operation.starts_with(p))
}

/// The class of a failed attempt, from its HTTP answer (none: no answer at all).
pub fn attempt_error_class(
    status: Option<u16>,
    body: &[u8],
    error_type: Option<&str>,
) -> &'static str {
    use crate::error::{ErrorClass, THROTTLING_CODES, classify};
    let Some(status) = status else {
        return "transport";
    };
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    let code = error_type
        .map(|t| t.split(':').next().unwrap_or(t).to_string())
        .or_else(|| {
            let xml = text.split("<Code>").nth(1)?.split("</Code>").next()?;
            Some(xml.to_string())
        })
        .or_else(|| {
            let json = text.split("\"__type\"").nth(1)?.split('"').nth(1)?;
            Some(json.rsplit('#').next().unwrap_or(json).to_string())
        });
    if status == 429
        || code
            .as_deref()
            .is_some_and(|c| THROTTLING_CODES.contains(&c))
    {
        return "throttled";
    }
    match classify(code.as_deref(), Some(status)) {
        ErrorClass::NotFound => "not_found",
        ErrorClass::Transient => "transient",
        ErrorClass::Conflict => "conflict",
        ErrorClass::Refused => "refused",
        ErrorClass::Transport => "transport",
    }
}

/// Counts calls by service and operation; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct CallStats {
    inner: Arc<Mutex<BTreeMap<(String, String), OpStats>>>,
}

/// Figures of one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OpStats {
    pub calls: u64,
    pub errors: u64,
    pub total: Duration,
}

impl CallStats {
    /// Total number of calls.
    pub fn total(&self) -> u64 {
        self.lock().values().map(|s| s.calls).sum()
    }

    /// Calls that can change AWS state (everything but Describe/Get/List).
    pub fn mutating(&self) -> u64 {
        self.lock()
            .iter()
            .filter(|((_, op), _)| is_mutating(op))
            .map(|(_, s)| s.calls)
            .sum()
    }

    /// `(service, operation) → figures`, sorted.
    pub fn by_operation(&self) -> BTreeMap<(String, String), OpStats> {
        self.lock().clone()
    }

    /// Forgets everything counted so far.
    pub fn reset(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), OpStats>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CallRecorder for CallStats {
    fn record(&self, service: &str, operation: &str, outcome: Outcome, elapsed: Duration) {
        let mut map = self.lock();
        let entry = map
            .entry((service.to_string(), operation.to_string()))
            .or_default();
        entry.calls += 1;
        entry.total += elapsed;
        if outcome != Outcome::Success {
            entry.errors += 1;
        }
    }
}

/// Sends each record to several recorders (the run's stats and the daemon's metrics).
#[derive(Debug, Clone, Default)]
pub struct Recorders(pub Vec<Arc<dyn CallRecorder>>);

impl CallRecorder for Recorders {
    fn record(&self, service: &str, operation: &str, outcome: Outcome, elapsed: Duration) {
        for r in &self.0 {
            r.record(service, operation, outcome, elapsed);
        }
    }

    fn record_attempt_error(&self, service: &str, operation: &str, class: &str) {
        for r in &self.0 {
            r.record_attempt_error(service, operation, class);
        }
    }

    fn record_budget_wait(&self, service: &str, waited: Duration) {
        for r in &self.0 {
            r.record_budget_wait(service, waited);
        }
    }
}

/// Whether an operation name is a write.
pub fn is_mutating(operation: &str) -> bool {
    !(operation.starts_with("Describe")
        || operation.starts_with("Get")
        || operation.starts_with("List"))
}

#[derive(Debug, Clone, Copy)]
struct StartedAt(Instant);

impl Storable for StartedAt {
    type Storer = StoreReplace<Self>;
}

/// The SDK interceptor that feeds a [`CallRecorder`].
#[derive(Debug, Clone)]
pub(crate) struct CountingInterceptor {
    pub(crate) recorder: Arc<dyn CallRecorder>,
    pub(crate) fence: Option<Arc<dyn Fence>>,
}

impl Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "presta-call-counter"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(StartedAt(Instant::now()));
        Ok(())
    }

    /// The fence, checked as late as possible: just before each attempt leaves.
    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(fence) = &self.fence {
            let operation = cfg.load::<Metadata>().map(|m| m.name()).unwrap_or("");
            if !is_read_only(operation) {
                fence
                    .may_write()
                    .map_err(|why| -> BoxError { format!("{operation} not sent: {why}").into() })?;
            }
        }
        Ok(())
    }

    /// Every failed attempt, retried or not, with its class.
    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if matches!(context.output_or_error(), Some(Ok(_))) {
            return Ok(());
        }
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_string(), m.name().to_string()))
            .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
        let class = match context.response() {
            Some(resp) => attempt_error_class(
                Some(resp.status().as_u16()),
                resp.body().bytes().unwrap_or_default(),
                resp.headers().get("x-amzn-ErrorType"),
            ),
            None => attempt_error_class(None, &[], None),
        };
        self.recorder
            .record_attempt_error(&service, &operation, class);
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let elapsed = cfg
            .load::<StartedAt>()
            .map(|s| s.0.elapsed())
            .unwrap_or_default();
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_string(), m.name().to_string()))
            .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
        let outcome = match (context.output_or_error(), context.response()) {
            (Some(Ok(_)), _) => Outcome::Success,
            (_, Some(resp)) if resp.status().is_server_error() => Outcome::ServerError,
            (_, Some(_)) => Outcome::ClientError,
            (_, None) => Outcome::Transport,
        };
        self.recorder.record(&service, &operation, outcome, elapsed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_attempts_are_classed_from_each_protocols_answer() {
        let ec2 = b"<Response><Errors><Error><Code>RequestLimitExceeded</Code></Error></Errors></Response>";
        assert_eq!(attempt_error_class(Some(503), ec2, None), "throttled");
        let query = b"<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>";
        assert_eq!(attempt_error_class(Some(400), query, None), "throttled");
        let json = br#"{"__type":"com.amazonaws#ThrottlingException","message":"slow"}"#;
        assert_eq!(attempt_error_class(Some(400), json, None), "throttled");
        assert_eq!(
            attempt_error_class(Some(400), b"{}", Some("ThrottlingException:http://x")),
            "throttled"
        );
        let denied = b"<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>";
        assert_eq!(attempt_error_class(Some(403), denied, None), "refused");
        let missing = b"<Response><Errors><Error><Code>InvalidGroup.NotFound</Code></Error></Errors></Response>";
        assert_eq!(attempt_error_class(Some(400), missing, None), "not_found");
        assert_eq!(attempt_error_class(Some(500), b"", None), "transient");
        assert_eq!(attempt_error_class(None, b"", None), "transport");
    }

    #[test]
    fn stats_count_calls_errors_and_writes() {
        let stats = CallStats::default();
        stats.record(
            "EC2",
            "DescribeSecurityGroups",
            Outcome::Success,
            Duration::from_millis(5),
        );
        stats.record(
            "EC2",
            "DescribeSecurityGroups",
            Outcome::Success,
            Duration::from_millis(7),
        );
        stats.record(
            "EC2",
            "AuthorizeSecurityGroupIngress",
            Outcome::ClientError,
            Duration::from_millis(3),
        );
        assert_eq!(stats.total(), 3);
        assert_eq!(stats.mutating(), 1);
        let by = stats.by_operation();
        let d = by[&("EC2".to_string(), "DescribeSecurityGroups".to_string())];
        assert_eq!(
            (d.calls, d.errors, d.total),
            (2, 0, Duration::from_millis(12))
        );
        assert_eq!(
            by[&(
                "EC2".to_string(),
                "AuthorizeSecurityGroupIngress".to_string()
            )]
                .errors,
            1
        );
        stats.reset();
        assert_eq!(stats.total(), 0);
    }
}
