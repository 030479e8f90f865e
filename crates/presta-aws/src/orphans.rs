//! Orphans: resources that carry this product's ownership tags, in the regions of the
//! configured stacks, whose stack is no longer in the configuration (renamed, removed from
//! the file). They are reported — by `plan`, `GET /orphans` and the
//! `presta_orphaned_resources` gauge — and never deleted, except by `destroy --stack NAME`.
//!
//! One light list call per region in steady state (the target groups: every stack has one,
//! named `<stack>-tg`; only those named for an unknown stack have their tags read). Only when a
//! forgotten stack shows up are the kinds the registry marks for the search listed, each by
//! its driver's [`crate::Driver::list_owned`] (security groups, file systems, launch
//! templates, Auto Scaling groups, databases). The daemon's periodic search is thorough: it
//! lists the ownership-tagged resources of the primary kinds (security groups, file
//! systems), where one kept by `destroy` outlives the rest.

use std::collections::BTreeSet;

use crate::clients::Aws;
use crate::diff::Kind;
use crate::error::AwsError;
use crate::registry::{KINDS, OrphanSearch, stack_of};
use presta_spec::naming::Component;
use serde::Serialize;

/// One resource of a stack that is not in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Orphan {
    pub stack: String,
    pub region: String,
    pub kind: Kind,
    pub name: String,
    pub id: String,
    /// Kept on purpose by `destroy` (a file system tagged `retained-at`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retained: bool,
}

/// The orphans of `aws`'s region: owned resources whose stack is not in `known`. The kinds
/// listed are those the registry marks for the orphan search, each through its own driver.
pub async fn find(
    aws: &Aws,
    known: &BTreeSet<String>,
    thorough: bool,
) -> Result<Vec<Orphan>, AwsError> {
    // The probe: every stack has a target group named `<stack>-tg`, and listing the region's
    // target groups is one light call; only the ones named for a stack that is not known
    // have their tags read, and the stacks found are then looked up by their deterministic
    // names. A thorough search (the daemon's) lists the ownership-tagged resources of the
    // primary kinds instead, which also finds what a `destroy` kept (or a killed one left)
    // after the target group went.
    let probed: Vec<String> = if thorough {
        Vec::new()
    } else {
        probe(aws, known).await?
    };
    if !thorough && probed.is_empty() {
        return Ok(Vec::new());
    }
    let list = |search: OrphanSearch| {
        let probed = &probed;
        futures::future::try_join_all(
            KINDS
                .iter()
                .filter(move |e| e.orphan_search() == search)
                .map(move |e| async move {
                    let names = (!thorough).then(|| e.names_for(probed));
                    let owned = e.list_owned_erased(aws, names.as_deref()).await?;
                    Ok::<_, AwsError>((e.kind(), owned))
                }),
        )
    };
    let mut found = list(OrphanSearch::Primary).await?;
    let any_orphan = !probed.is_empty()
        || found.iter().any(|(_, owned)| {
            owned
                .iter()
                .any(|o| o.stack.as_ref().is_some_and(|s| !known.contains(s)))
        });
    if any_orphan {
        found.extend(list(OrphanSearch::Secondary).await?);
    }
    let mut out: Vec<Orphan> = found
        .into_iter()
        .flat_map(|(kind, owned)| owned.into_iter().map(move |o| (kind, o)))
        .filter_map(|(kind, o)| {
            let stack = o.stack.filter(|s| !known.contains(s))?;
            Some(Orphan {
                stack,
                region: aws.region.clone(),
                kind,
                name: o.name,
                id: o.id,
                retained: o.retained,
            })
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The stacks not in `known` that own a target group named `<stack>-tg`.
async fn probe(aws: &Aws, known: &BTreeSet<String>) -> Result<Vec<String>, AwsError> {
    // The listing the run's observation made in this region, else one of its own.
    let tgs: Vec<(String, String)> = match aws.listings.take_target_groups() {
        Some(listed) => listed,
        None => crate::target_group::names_and_arns(&crate::target_group::list_all(aws).await?),
    };
    let suffix = Component::TargetGroup.name("");
    let candidates: Vec<String> = tgs
        .into_iter()
        .filter(|(name, _)| {
            name.strip_suffix(suffix.as_str())
                .is_some_and(|stack| !known.contains(stack))
        })
        .map(|(_, arn)| arn)
        .collect();
    let tags = crate::target_group::elb_tags(aws, &candidates).await?;
    let stacks: BTreeSet<String> = tags
        .values()
        .filter_map(|t| stack_of(t.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
        .filter(|s| !known.contains(s))
        .collect();
    Ok(stacks.into_iter().collect())
}
