//! One observation of a region for a set of stacks: every registered kind listed once
//! (filtered by the stacks' deterministic names), concurrently; then the kinds that hang off
//! another resource (listeners of the load balancers, mount targets of the file systems).
//! Observing ten stacks costs about the calls of one, plus the few per-resource reads AWS
//! offers no batch for. The kinds come from [`presta_aws::registry::KINDS`]: nothing here
//! names one, but the parameters that carry the AMI references.

use std::collections::BTreeMap;
use std::ops::Deref;

use presta_aws::network::Inventory;
use presta_aws::parameter::Parameters;
use presta_aws::{Aws, AwsError, Observed};
use presta_spec::Stack;

pub use presta_aws::registry::Targets;

/// Everything live that the stacks of one region own: the network, and each kind's live
/// resources (read with [`Observed::get`] and [`Observed::values`], through `Deref`).
pub struct Snapshot {
    pub inventory: Inventory,
    /// SSM parameter name → AMI id.
    pub amis: BTreeMap<String, String>,
    pub live: Observed,
}

impl Deref for Snapshot {
    type Target = Observed;

    fn deref(&self) -> &Observed {
        &self.live
    }
}

/// Which stacks of `stacks` to observe: their names, SSM prefixes and AMI references.
pub fn targets_of(stacks: &[&Stack]) -> Targets {
    Targets {
        stacks: stacks.iter().map(|s| s.names()).collect(),
        ami_params: stacks
            .iter()
            .filter_map(|s| s.spec.compute.ami.ssm_parameter.clone())
            .collect(),
    }
}

impl Snapshot {
    /// Observes every kind for `stacks` (all in `aws`'s region).
    pub async fn observe(aws: &Aws, stacks: &[&Stack]) -> Result<Snapshot, AwsError> {
        Self::observe_targets(aws, &targets_of(stacks)).await
    }

    /// Observes every kind for the stacks named in `targets`.
    pub async fn observe_targets(aws: &Aws, targets: &Targets) -> Result<Snapshot, AwsError> {
        let (inventory, live) =
            tokio::try_join!(Inventory::fetch(aws), Observed::observe(aws, targets))?;
        // The AMI references were read with the passwords (one `GetParameters`).
        let amis = targets
            .ami_params
            .iter()
            .filter_map(|p| {
                let value = live.get::<Parameters>(p)?.plain_value.clone()?;
                Some((p.clone(), value))
            })
            .collect();
        Ok(Snapshot {
            inventory,
            amis,
            live,
        })
    }
}
