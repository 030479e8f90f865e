//! The shop's front door in the spec: the HTTPS listener and its certificate, and the shop's
//! names in Route 53 (`spec.dns`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults as d;

/// The HTTPS listener. With `spec.dns` it is on by default, with a certificate of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Https {
    /// The certificate: `auto` (requested from ACM for the domain and `spec.dns.extraNames`,
    /// validated through DNS records the reconciler writes in `spec.dns.hostedZone`, renewed
    /// by ACM; the default with `spec.dns`) or the ARN of an ACM certificate of the stack's
    /// region. `certificateArn` is the older spelling of an ARN.
    #[serde(
        default,
        alias = "certificateArn",
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate: Option<String>,
    #[serde(default = "d::https_port")]
    pub port: u16,
    /// ELB security policy name.
    #[serde(default = "d::ssl_policy")]
    pub ssl_policy: String,
    /// What the HTTP listener does: `redirect` (a permanent redirect to HTTPS, keeping host,
    /// path and query) or `forward` (serve plain HTTP too).
    #[serde(default)]
    pub http: HttpMode,
    /// The older spelling of `http`: `true` is `redirect`, `false` is `forward`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_http: Option<bool>,
}

impl Default for Https {
    fn default() -> Self {
        Https {
            certificate: None,
            port: d::https_port(),
            ssl_policy: d::ssl_policy(),
            http: HttpMode::default(),
            redirect_http: None,
        }
    }
}

/// What the plain HTTP listener does once HTTPS serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HttpMode {
    /// 301 to `https://` with the same host, path and query.
    #[default]
    Redirect,
    /// Forward to the instances, as HTTPS does.
    Forward,
}

/// Where the HTTPS listener's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateSource {
    /// Requested, validated and renewed by the reconciler through ACM and `spec.dns`.
    Auto,
    /// An ACM certificate someone else manages.
    Arn(String),
}

/// The value of `https.certificate` that asks for a certificate of the reconciler's own.
pub const CERTIFICATE_AUTO: &str = "auto";

impl Https {
    /// Whether plain HTTP answers with a redirect to HTTPS.
    pub fn redirects_http(&self) -> bool {
        self.redirect_http
            .unwrap_or(self.http == HttpMode::Redirect)
    }

    /// The certificate: as written, else `auto` when `with_dns`.
    pub fn certificate_source(&self, with_dns: bool) -> Option<CertificateSource> {
        match self.certificate.as_deref() {
            Some(CERTIFICATE_AUTO) => Some(CertificateSource::Auto),
            Some(arn) => Some(CertificateSource::Arn(arn.to_string())),
            None if with_dns => Some(CertificateSource::Auto),
            None => None,
        }
    }
}

/// The shop's names in DNS: the Route 53 hosted zone of `spec.prestashop.domain`, where the
/// reconciler keeps the alias records (A and AAAA) of each name pointing at the load balancer
/// and the certificate's validation records. It writes only records it owns (each with a TXT
/// record of ownership beside it) and never changes or deletes another record of the zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dns {
    /// The public hosted zone: its name (`example.com`) or its id (`Z0123456789ABC`).
    pub hosted_zone: String,
    /// More names of the shop (e.g. `www.shop.example.com`), in the same zone: on the
    /// certificate, with alias records, and answered with a permanent redirect to the domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_names: Vec<String>,
}
