//! An in-memory fake of the AWS APIs the drivers call: the port the engine and the controller
//! are tested on in milliseconds, under `tokio::time::pause()`.
//!
//! The drivers are not replaced: they run with their real SDK clients, whose network is
//! replaced ([`presta_aws::Transport`]). An interceptor answers each request before it is
//! sent, from the typed input, with a typed output (the resources kept in a [`World`]) or with
//! an error as AWS puts it on the wire (so that the SDK's own error parsing, the drivers'
//! error classes and the call counters see what they see against AWS). The fake
//!
//! - keeps resources: VPCs, subnets, security groups, launch templates, load balancers,
//!   target groups, listeners, Auto Scaling groups, RDS instances, subnet groups and
//!   snapshots, EFS file systems and mount targets, SSM parameters;
//! - answers like AWS: `creating`/`provisioning` statuses that settle after a delay on the
//!   Tokio clock ([`Delays`]), `DependencyViolation` for a security group still in use,
//!   not-found and duplicate codes;
//! - injects faults per operation ([`FakeAws::fail`]), and counts calls ([`FakeAws::calls`]).
//!
//! Each attempt is answered on its own, so the SDK's retry policy sees throttling and 5xx
//! answers as it sees AWS's, and retries them. It never opens a socket.

mod asg;
mod ec2;
mod efs;
mod elb;
mod rds;
mod ssm;
mod wire;
mod world;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
    FinalizerInterceptorContextMut, Input, Output,
};
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use presta_aws::{ClientSettings, Transport};

pub use wire::Failure;
pub use world::{Chaos, Delays, World};

/// The answer to one call: a typed output, or an error as AWS sends it.
type Answer = Result<Output, Box<HttpResponse>>;
/// One call, ready to be answered (once per attempt: the SDK retries what AWS would let it).
type Prepared = Box<dyn Fn(&Mutex<World>) -> Answer + Send + Sync>;
/// Prepares the calls of one operation (`None` for the input of another).
type Handler = Box<dyn Fn(&Input) -> Option<Prepared> + Send + Sync>;

/// The fake: shared by every client built from [`FakeAws::settings`].
#[derive(Clone)]
pub struct FakeAws {
    shared: Arc<Shared>,
}

struct Shared {
    world: Mutex<World>,
    handlers: Vec<Handler>,
    prepared: Mutex<HashMap<u64, Prepared>>,
    pending: Mutex<HashMap<u64, Answer>>,
    next: AtomicU64,
}

impl std::fmt::Debug for FakeAws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeAws").finish_non_exhaustive()
    }
}

/// Registers the handler of one operation: `$op` is the SDK's operation module (its input
/// type keys the handler), `$name` the operation's AWS name, `$wire` how its errors look.
macro_rules! handle {
    ($list:ident, $wire:expr, $name:literal, $input:ty, $f:expr) => {{
        let f = $f;
        $list.push(Box::new(
            move |input: &aws_smithy_runtime_api::client::interceptors::context::Input| {
                let input: $input = input.downcast_ref::<$input>()?.clone();
                Some(Box::new(move |world: &std::sync::Mutex<$crate::World>| {
                    let mut world = world.lock().unwrap_or_else(|e| e.into_inner());
                    let service = $crate::service_of(std::any::type_name::<$input>());
                    let answer = match world.enter($name, service) {
                        $crate::world::Verdict::Proceed => f(&mut world, &input),
                        $crate::world::Verdict::Fail(failure) => Err(failure),
                        $crate::world::Verdict::Lose(failure) => {
                            let _ = f(&mut world, &input);
                            Err(failure)
                        }
                    };
                    match answer {
                        Ok(out) => Ok(
                            aws_smithy_runtime_api::client::interceptors::context::Output::erase(
                                out,
                            ),
                        ),
                        Err(failure) => Err(Box::new($wire.error($name, &failure))),
                    }
                }) as $crate::Prepared)
            },
        ) as $crate::Handler);
    }};
}
pub(crate) use handle;

/// The signing name of the service whose SDK crate defines `type_name` (the name the API
/// budget and AWS's rate limits use).
pub(crate) fn service_of(type_name: &str) -> &'static str {
    match type_name.split("::").next().unwrap_or_default() {
        "aws_sdk_ec2" => "ec2",
        "aws_sdk_elasticloadbalancingv2" => "elasticloadbalancing",
        "aws_sdk_autoscaling" => "autoscaling",
        "aws_sdk_rds" => "rds",
        "aws_sdk_efs" => "elasticfilesystem",
        "aws_sdk_ssm" => "ssm",
        _ => "other",
    }
}

impl FakeAws {
    /// A region (`eu-west-3`) with nothing in it.
    pub fn new() -> FakeAws {
        let mut handlers = Vec::new();
        ec2::register(&mut handlers);
        elb::register(&mut handlers);
        asg::register(&mut handlers);
        rds::register(&mut handlers);
        efs::register(&mut handlers);
        ssm::register(&mut handlers);
        FakeAws {
            shared: Arc::new(Shared {
                world: Mutex::new(World::new("eu-west-3")),
                handlers,
                prepared: Mutex::new(HashMap::new()),
                pending: Mutex::new(HashMap::new()),
                next: AtomicU64::new(1),
            }),
        }
    }

    /// Seeds the network `presta-<name>-*` as the emulator does (a VPC, two public and two
    /// private subnets in two zones) and the public AMI parameters; returns the VPC id.
    pub fn seed(&self, name: &str) -> String {
        self.world().seed(name)
    }

    /// Client settings that send every call of the drivers to this fake: static credentials,
    /// the standard retry policy (three attempts; its backoff sleeps on the Tokio clock), and
    /// an endpoint on the loopback that nothing ever connects to.
    pub fn settings(&self) -> ClientSettings {
        ClientSettings {
            endpoint_url: Some("http://127.0.0.1:9".into()),
            static_credentials: Some(("AKIDFAKE".into(), "fake-secret".into())),
            max_attempts: 3,
            adaptive_retry: false,
            transport: Some(Transport {
                http: SharedHttpClient::new(Network(self.shared.clone())),
                interceptors: vec![SharedInterceptor::new(Answering(self.shared.clone()))],
            }),
            ..ClientSettings::default()
        }
    }

    /// The resources, to look at or to change by hand (drift, a deleted resource).
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.shared.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `times` calls of `operation` fail with `code` (`None`: every call, until
    /// [`FakeAws::heal`]).
    pub fn fail(&self, operation: &str, code: &str, times: Option<u32>) {
        self.world().faults.push(world::Fault {
            operation: operation.to_string(),
            code: code.to_string(),
            remaining: times,
        });
    }

    /// A seeded share `rate` of all calls fails, with one of `kinds` (empty: all four).
    pub fn chaos(&self, rate: f64, seed: u64, kinds: &[Chaos]) {
        self.world().random = Some(world::Random {
            rate,
            state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            kinds: if kinds.is_empty() {
                Chaos::ALL.to_vec()
            } else {
                kinds.to_vec()
            },
        });
    }

    /// No more random faults, no cut.
    pub fn calm(&self) {
        let mut w = self.world();
        w.random = None;
        w.cut_after = None;
    }

    /// Every call after the `writes`-th write fails without effect, as if the caller had been
    /// killed there (until [`FakeAws::calm`]).
    pub fn cut_after_writes(&self, writes: usize) {
        let mut w = self.world();
        w.cut_after = Some(w.writes + writes);
    }

    /// Random faults injected so far, by kind.
    pub fn injected(&self) -> std::collections::BTreeMap<Chaos, usize> {
        self.world().injected.clone()
    }

    /// Removes the faults of `operation`.
    pub fn heal(&self, operation: &str) {
        self.world().faults.retain(|f| f.operation != operation);
    }

    /// Every call answered since the last [`FakeAws::reset_calls`], by AWS name, in order.
    pub fn calls(&self) -> Vec<String> {
        self.world().calls.clone()
    }

    /// The calls that change something.
    pub fn mutating_calls(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| presta_aws::calls::is_mutating(c))
            .collect()
    }

    pub fn reset_calls(&self) {
        self.world().calls.clear();
    }

    /// AWS's rate limit on the reads of `service` (its signing name: `ec2`,
    /// `elasticloadbalancing`...): a bucket of `burst` requests refilled at `per_second` on the
    /// Tokio clock. A read that finds it empty is refused with the service's throttling code
    /// (`RequestLimitExceeded` for EC2) and counted ([`FakeAws::throttled`]). The limit is
    /// met where AWS meets it: when the request leaves the client, after the client's own
    /// budget.
    pub fn limit_reads(&self, service: &str, per_second: f64, burst: f64) {
        self.world().read_limits.insert(
            service.to_string(),
            world::ReadLimit::new(per_second, burst),
        );
    }

    /// Reads received so far, by service (throttled ones included).
    pub fn reads(&self) -> std::collections::BTreeMap<String, usize> {
        self.world().reads.clone()
    }

    /// Reads refused by [`FakeAws::limit_reads`], by service.
    pub fn throttled(&self) -> std::collections::BTreeMap<String, usize> {
        self.world().throttled.clone()
    }

    /// How long resources take to become usable.
    pub fn set_delays(&self, delays: Delays) {
        self.world().delays = delays;
    }
}

impl Default for FakeAws {
    fn default() -> Self {
        FakeAws::new()
    }
}

/// The id of the answer waiting for one call.
#[derive(Debug)]
struct Pending(u64);

impl Storable for Pending {
    type Storer = StoreReplace<Self>;
}

/// Answers each call from its typed input, before it is sent.
#[derive(Clone)]
struct Answering(Arc<Shared>);

impl std::fmt::Debug for Answering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Answering")
    }
}

const REPLY_HEADER: &str = "x-presta-fake-reply";

impl Intercept for Answering {
    fn name(&self) -> &'static str {
        "presta-testkit"
    }

    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.inner().input().ok_or("no input")?;
        let prepared = self
            .0
            .handlers
            .iter()
            .find_map(|h| h(input))
            .ok_or_else(|| format!("the fake does not answer {input:?}"))?;
        let id = self.0.next.fetch_add(1, Ordering::Relaxed);
        self.0
            .prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, prepared);
        cfg.interceptor_state().store_put(Pending(id));
        Ok(())
    }

    /// Each attempt carries its call's id to the network, which answers it as it arrives
    /// (after the client's API budget, as AWS would see it): an error answer travels as the
    /// HTTP response, a typed one waits for the attempt's completion.
    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Pending(id)) = cfg.load::<Pending>() {
            context
                .request_mut()
                .headers_mut()
                .insert(REPLY_HEADER, id.to_string());
        }
        Ok(())
    }

    /// A typed answer replaces whatever the SDK made of the empty response.
    fn modify_before_attempt_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Pending(id)) = cfg.load::<Pending>() else {
            return Ok(());
        };
        let mut pending = self.0.pending.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(pending.get(id), Some(Ok(_)))
            && let Some(Ok(output)) = pending.remove(id)
        {
            context.inner_mut().set_output_or_error(Ok(output));
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        _: &aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef<
            '_,
        >,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Pending(id)) = cfg.load::<Pending>() {
            self.0
                .prepared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
            self.0
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
        }
        Ok(())
    }
}

/// The network: returns the error answer waiting for the request, or an empty 200.
#[derive(Clone)]
struct Network(Arc<Shared>);

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Network")
    }
}

impl HttpConnector for Network {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let id = request
            .headers()
            .get(REPLY_HEADER)
            .and_then(|v| v.parse::<u64>().ok());
        let answer = id.and_then(|id| {
            let prepared = self.0.prepared.lock().unwrap_or_else(|e| e.into_inner());
            prepared.get(&id).map(|call| call(&self.0.world))
        });
        let response = match (id, answer) {
            (_, Some(Err(response))) => *response,
            (Some(id), Some(Ok(output))) => {
                self.0
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, Ok(output));
                HttpResponse::new(200.try_into().expect("a status"), SdkBody::empty())
            }
            _ => HttpResponse::new(200.try_into().expect("a status"), SdkBody::empty()),
        };
        HttpConnectorFuture::ready(Ok(response))
    }
}

impl HttpClient for Network {
    fn http_connector(
        &self,
        _: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}
