//! `spec.promotion`: staging before production (docs/promotion.md).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where this stack's rolling changes come from: the stack it follows, and for how long that
/// stack must have run them healthy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Promotion {
    /// The stack this one follows (e.g. `staging`): any stack of the configuration, in any
    /// region. A stack may not follow itself, and promotions may not form a cycle.
    pub after: String,
    /// How long the followed stack must have run the same release with a `healthy` verdict
    /// throughout: a number and a unit, `s`, `m`, `h` or `d`, e.g. `30m`, `2h`, `1h30m`.
    #[serde(default = "crate::defaults::soak")]
    pub soak: String,
    /// When a promoted release rolls here, the instance refresh stops at half the group for
    /// this long (the new instances serve beside the old ones) before replacing the rest;
    /// new instances that fail the load balancer's health checks fail the refresh, which
    /// stops and is reported. At most 1 h (AWS's limit on a checkpoint delay).
    #[serde(default = "crate::defaults::checkpoint_pause")]
    pub checkpoint_pause: String,
    /// The followed stack's region, filled in when the configuration is loaded.
    #[serde(skip)]
    #[schemars(skip)]
    pub after_region: Option<String>,
    /// The followed stack's Auto Scaling group (its `spec.names`, else the deterministic
    /// name), filled in when the configuration is loaded.
    #[serde(skip)]
    #[schemars(skip)]
    pub after_group: Option<String>,
}

impl Promotion {
    /// The Auto Scaling group of the followed stack, where its release evidence lives.
    pub fn followed_group(&self) -> String {
        self.after_group
            .clone()
            .unwrap_or_else(|| crate::naming::Component::AutoScalingGroup.name(&self.after))
    }

    /// The soak time (zero when `soak` does not parse, which validation refuses).
    pub fn soak_duration(&self) -> std::time::Duration {
        crate::defaults::parse_duration(&self.soak).unwrap_or_default()
    }

    /// The pause at half the group (zero when it does not parse, which validation refuses).
    pub fn checkpoint_pause_duration(&self) -> std::time::Duration {
        crate::defaults::parse_duration(&self.checkpoint_pause).unwrap_or_default()
    }
}
