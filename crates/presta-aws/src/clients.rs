//! The one place that builds AWS clients: region per stack, the standard credential chain,
//! `AWS_ENDPOINT_URL` honoured (the SDK reads it), explicit timeouts (the SDK sets no
//! per-request timeout by default), the retry policy, and the call-counting interceptor.

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};

use crate::calls::{CallRecorder, CountingInterceptor};

#[cfg(test)]
mod tests {
    use super::plain_loopback;

    #[test]
    fn only_plain_http_to_this_machine_skips_tls() {
        assert!(plain_loopback("http://127.0.0.1:5000"));
        assert!(plain_loopback("http://127.0.0.2:5000/"));
        assert!(plain_loopback("http://localhost:4566"));
        assert!(plain_loopback("http://[::1]:5000"));
        assert!(!plain_loopback("https://127.0.0.1:5000"));
        assert!(!plain_loopback("http://10.0.0.5:5000"));
        assert!(!plain_loopback("http://localstack:4566"));
        assert!(!plain_loopback("https://ec2.eu-west-3.amazonaws.com"));
    }
}

/// Client settings shared by every region.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Overrides the endpoint of every service (tests, the emulator). Without it the SDK's
    /// own resolution applies, which honours `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// Time to open a connection.
    pub connect_timeout: Duration,
    /// Time for one attempt of an operation.
    pub attempt_timeout: Duration,
    /// Time for an operation, retries included.
    pub operation_timeout: Duration,
    /// Attempts per operation (the first included).
    pub max_attempts: u32,
    /// Adaptive retry adds client-side rate limiting when AWS throttles.
    pub adaptive_retry: bool,
    /// Fixed credentials instead of the standard chain (tests against a local endpoint, so
    /// that the chain never probes the instance metadata service).
    pub static_credentials: Option<(String, String)>,
    /// Checked before every mutating call (the daemon's lease among replicas).
    pub fence: Option<Arc<dyn crate::calls::Fence>>,
    /// Added to the User-Agent (`app/<name>`): tells this process's calls apart in AWS
    /// CloudTrail (and in the emulator's log).
    pub app_name: Option<String>,
    /// Stands in for the network (an in-memory fake of AWS, `presta-testkit`): every client
    /// sends through its HTTP client, after its interceptors. `None` in every real run.
    pub transport: Option<Transport>,
    /// The API budget every request waits on (a token bucket per service and region, shared
    /// by every client built with these settings); `None`: no client-side limit.
    pub budget: Option<Arc<crate::ratelimit::ApiBudget>>,
    /// Hosted zone ids by name, shared by every connection built with these settings.
    pub zones: Arc<crate::dns_record::ZoneIds>,
    /// What the process remembers of the certificates (tags, each region's list), shared the
    /// same way.
    pub known_certificates: Arc<crate::certificate::KnownCertificates>,
    /// Listener rules' tags by ARN, shared the same way.
    pub rule_tags: Arc<crate::tags::TagMemory>,
}

/// What a fake of AWS puts in place of the network: the HTTP client every SDK client sends
/// through, and the interceptors that answer before anything is sent.
#[derive(Debug, Clone)]
pub struct Transport {
    pub http: aws_smithy_runtime_api::client::http::SharedHttpClient,
    pub interceptors: Vec<aws_smithy_runtime_api::client::interceptors::SharedInterceptor>,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            endpoint_url: None,
            connect_timeout: Duration::from_secs(3),
            attempt_timeout: Duration::from_secs(20),
            operation_timeout: Duration::from_secs(60),
            max_attempts: 5,
            adaptive_retry: true,
            static_credentials: None,
            fence: None,
            app_name: None,
            transport: None,
            budget: None,
            zones: Arc::default(),
            known_certificates: Arc::default(),
            rule_tags: Arc::default(),
        }
    }
}

/// The clients of one region.
#[derive(Debug, Clone)]
pub struct Aws {
    pub region: String,
    pub ec2: aws_sdk_ec2::Client,
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub rds: aws_sdk_rds::Client,
    pub efs: aws_sdk_efs::Client,
    pub ssm: aws_sdk_ssm::Client,
    /// Certificates of the region (the HTTPS listener's).
    pub acm: aws_sdk_acm::Client,
    /// Route 53 (a global service: the records of the shops' hosted zones).
    pub route53: aws_sdk_route53::Client,
    /// The daemon's event plumbing: its queue, its rule and heartbeat, the trail check, and
    /// the account the queue's policy names.
    pub sqs: aws_sdk_sqs::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub cloudtrail: aws_sdk_cloudtrail::Client,
    pub sts: aws_sdk_sts::Client,
    /// Region-wide listings this connection's observation made, for a later step of the same
    /// run to reuse instead of listing again.
    pub listings: Arc<Listings>,
    /// Hosted zone ids by name (kept across connections: see [`ClientSettings::zones`]).
    pub zones: Arc<crate::dns_record::ZoneIds>,
    /// What the process remembers of the certificates (see [`ClientSettings::known_certificates`]).
    pub known_certificates: Arc<crate::certificate::KnownCertificates>,
    /// Listener rules' tags by ARN (see [`ClientSettings::rule_tags`]).
    pub rule_tags: Arc<crate::tags::TagMemory>,
}

/// What an observation listed region-wide and another step of the same run can reuse: the
/// orphan probe reads the target groups the target-group driver listed (one call fewer per
/// region and plan). Each [`Aws::connect`] starts empty; a reuse takes the listing.
#[derive(Debug, Default)]
pub struct Listings {
    target_groups: std::sync::Mutex<Option<Vec<(String, String)>>>,
}

impl Listings {
    /// Every target group of the region as `(name, arn)`.
    pub fn put_target_groups(&self, groups: Vec<(String, String)>) {
        *self.target_groups.lock().unwrap_or_else(|e| e.into_inner()) = Some(groups);
    }

    /// The target groups listed earlier in this run, if any (taken: a second reader lists).
    pub fn take_target_groups(&self) -> Option<Vec<(String, String)>> {
        self.target_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl Aws {
    /// Clients for `region`, reporting every call to `recorder`.
    pub async fn connect(
        region: &str,
        settings: &ClientSettings,
        recorder: Arc<dyn CallRecorder>,
    ) -> Aws {
        let shared = sdk_config(region, settings).await;
        let counter = CountingInterceptor {
            recorder,
            fence: settings.fence.clone(),
        };
        let extra: &[_] = settings
            .transport
            .as_ref()
            .map_or(&[], |t| t.interceptors.as_slice());
        macro_rules! client {
            ($sdk:ident, $service:literal) => {{
                let mut conf = $sdk::config::Builder::from(&shared);
                for i in extra {
                    conf.push_interceptor(i.clone());
                }
                if let (Some(budget), Some(http)) = (&settings.budget, shared.http_client()) {
                    conf.set_http_client(Some(crate::ratelimit::budgeted(
                        http,
                        budget.clone(),
                        region,
                        $service,
                        counter.recorder.clone(),
                    )));
                }
                $sdk::Client::from_conf(conf.interceptor(counter.clone()).build())
            }};
        }
        Aws {
            region: region.to_string(),
            ec2: client!(aws_sdk_ec2, "ec2"),
            elbv2: client!(aws_sdk_elasticloadbalancingv2, "elasticloadbalancing"),
            autoscaling: client!(aws_sdk_autoscaling, "autoscaling"),
            rds: client!(aws_sdk_rds, "rds"),
            efs: client!(aws_sdk_efs, "elasticfilesystem"),
            ssm: client!(aws_sdk_ssm, "ssm"),
            acm: client!(aws_sdk_acm, "acm"),
            route53: client!(aws_sdk_route53, "route53"),
            sqs: client!(aws_sdk_sqs, "sqs"),
            events: client!(aws_sdk_eventbridge, "events"),
            cloudtrail: client!(aws_sdk_cloudtrail, "cloudtrail"),
            sts: client!(aws_sdk_sts, "sts"),
            listings: Arc::default(),
            zones: settings.zones.clone(),
            known_certificates: settings.known_certificates.clone(),
            rule_tags: settings.rule_tags.clone(),
        }
    }
}

/// The HTTP client of the AWS clients: hyper 1 with rustls 0.23 on ring (the one HTTP and TLS
/// stack of the binary), or, for an `http://` endpoint on a loopback address (the emulator),
/// plain HTTP without any TLS set-up (no root certificates read). `endpoint` is the
/// configured endpoint; without one, `AWS_ENDPOINT_URL` as the SDK reads it.
///
/// One client per SDK configuration, not one per process: a client's connections belong to
/// the Tokio runtime that opened them.
pub fn http_client(
    endpoint: Option<&str>,
) -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::{Builder, tls};
    let from_env = std::env::var("AWS_ENDPOINT_URL").ok();
    if endpoint.or(from_env.as_deref()).is_some_and(plain_loopback) {
        return Builder::new().build_http();
    }
    Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Whether `url` is plain HTTP to this machine (`http://127.x.y.z`, `http://localhost`,
/// `http://[::1]`).
fn plain_loopback(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host_port = rest.split('/').next().unwrap_or_default();
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The SDK configuration of `region` with these settings (endpoint, credentials, timeouts,
/// retry policy, User-Agent app name), for the drivers' clients and the daemon's lease table.
pub async fn sdk_config(region: &str, settings: &ClientSettings) -> aws_types::SdkConfig {
    let retry = if settings.adaptive_retry {
        RetryConfig::adaptive()
    } else {
        RetryConfig::standard()
    };
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(settings.connect_timeout)
                .operation_attempt_timeout(settings.attempt_timeout)
                .operation_timeout(settings.operation_timeout)
                .build(),
        )
        .retry_config(retry.with_max_attempts(settings.max_attempts));
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader = loader.http_client(match &settings.transport {
        Some(t) => t.http.clone(),
        None => http_client(settings.endpoint_url.as_deref()),
    });
    if let Some(name) = &settings.app_name
        && let Ok(app) = aws_types::app_name::AppName::new(name.clone())
    {
        loader = loader.app_name(app);
    }
    if let Some((key, secret)) = &settings.static_credentials {
        loader = loader.credentials_provider(aws_sdk_ec2::config::Credentials::new(
            key,
            secret,
            None,
            None,
            "presta-static",
        ));
    }
    loader.load().await
}
