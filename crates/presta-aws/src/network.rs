//! The existing VPC and subnets of each stack, resolved from ids or tag selectors. Read only:
//! the reconciler never changes the network. One `DescribeVpcs` and one `DescribeSubnets` per
//! region, whatever the number of stacks; selectors are matched here.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Subnet, Vpc};
use presta_spec::Stack;
use presta_spec::model::{SubnetSelector, VpcSelector};

use crate::clients::Aws;
use crate::error::{AwsError, AwsResultExt};

/// A subnet and its availability zone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SubnetRef {
    pub id: String,
    pub az: String,
}

/// The network of one stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub vpc_id: String,
    pub public: Vec<SubnetRef>,
    pub private: Vec<SubnetRef>,
}

impl Network {
    pub fn public_ids(&self) -> Vec<String> {
        self.public.iter().map(|s| s.id.clone()).collect()
    }
    pub fn private_ids(&self) -> Vec<String> {
        self.private.iter().map(|s| s.id.clone()).collect()
    }
}

/// Why a stack's network could not be resolved: the spec points at something that is not there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}\n  help: {help}")]
pub struct NetworkError {
    pub field: String,
    pub message: String,
    pub help: String,
}

/// Everything needed to resolve every stack of a region: two calls.
pub struct Inventory {
    vpcs: Vec<Vpc>,
    subnets: Vec<Subnet>,
}

impl Inventory {
    pub async fn fetch(aws: &Aws) -> Result<Self, AwsError> {
        let vpcs = aws
            .ec2
            .describe_vpcs()
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .aws()?;
        let subnets = aws
            .ec2
            .describe_subnets()
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .aws()?;
        Ok(Inventory { vpcs, subnets })
    }

    /// The network of `stack`.
    pub fn resolve(&self, stack: &Stack) -> Result<Network, NetworkError> {
        let net = &stack.spec.network;
        let vpc_id = self.vpc(&net.vpc)?;
        let public = self.subnets(&vpc_id, &net.public_subnets, "spec.network.publicSubnets")?;
        let private = self.subnets(&vpc_id, &net.private_subnets, "spec.network.privateSubnets")?;
        Ok(Network {
            vpc_id,
            public,
            private,
        })
    }

    fn vpc(&self, sel: &VpcSelector) -> Result<String, NetworkError> {
        if let Some(id) = &sel.id {
            return self
                .vpcs
                .iter()
                .find(|v| v.vpc_id() == Some(id))
                .map(|_| id.clone())
                .ok_or_else(|| NetworkError {
                    field: "spec.network.vpc.id".into(),
                    message: format!("VPC `{id}` does not exist in this region"),
                    help: "check the id and the stack's region".into(),
                });
        }
        let found: Vec<&Vpc> = self
            .vpcs
            .iter()
            .filter(|v| tags_match(&sel.tags, v.tags().iter().map(|t| (t.key(), t.value()))))
            .collect();
        match found.as_slice() {
            [one] => Ok(one.vpc_id().unwrap_or_default().to_string()),
            [] => Err(NetworkError {
                field: "spec.network.vpc.tags".into(),
                message: format!("no VPC carries the tags {}", show(&sel.tags)),
                help: "tag the VPC, or give its id".into(),
            }),
            many => Err(NetworkError {
                field: "spec.network.vpc.tags".into(),
                message: format!(
                    "{} VPCs carry the tags {}: {}",
                    many.len(),
                    show(&sel.tags),
                    many.iter()
                        .filter_map(|v| v.vpc_id())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                help: "make the selector match exactly one VPC, or give its id".into(),
            }),
        }
    }

    fn subnets(
        &self,
        vpc_id: &str,
        sel: &SubnetSelector,
        field: &str,
    ) -> Result<Vec<SubnetRef>, NetworkError> {
        let in_vpc = |s: &&Subnet| s.vpc_id() == Some(vpc_id);
        let chosen: Vec<&Subnet> = if !sel.ids.is_empty() {
            let mut out = Vec::new();
            for (i, id) in sel.ids.iter().enumerate() {
                match self.subnets.iter().find(|s| s.subnet_id() == Some(id)) {
                    Some(s) if in_vpc(&s) => out.push(s),
                    Some(s) => {
                        return Err(NetworkError {
                            field: format!("{field}.ids[{i}]"),
                            message: format!(
                                "subnet `{id}` is in {}, not in the stack's VPC {vpc_id}",
                                s.vpc_id().unwrap_or("?")
                            ),
                            help: "use subnets of the stack's VPC".into(),
                        });
                    }
                    None => {
                        return Err(NetworkError {
                            field: format!("{field}.ids[{i}]"),
                            message: format!("subnet `{id}` does not exist in this region"),
                            help: "check the id and the stack's region".into(),
                        });
                    }
                }
            }
            out
        } else {
            self.subnets
                .iter()
                .filter(in_vpc)
                .filter(|s| tags_match(&sel.tags, s.tags().iter().map(|t| (t.key(), t.value()))))
                .collect()
        };
        let mut refs: Vec<SubnetRef> = chosen
            .iter()
            .map(|s| SubnetRef {
                id: s.subnet_id().unwrap_or_default().to_string(),
                az: s.availability_zone().unwrap_or_default().to_string(),
            })
            .collect();
        refs.sort();
        let azs: BTreeSet<&str> = refs.iter().map(|s| s.az.as_str()).collect();
        if refs.len() < 2 || azs.len() < 2 {
            let what = if sel.ids.is_empty() {
                format!("the tags {}", show(&sel.tags))
            } else {
                "the ids".to_string()
            };
            return Err(NetworkError {
                field: field.to_string(),
                message: format!("{what} select {} subnet(s) in {} availability zone(s) of {vpc_id}", refs.len(), azs.len()),
                help: "the load balancer, the database and the file system need subnets in at least two availability zones".into(),
            });
        }
        Ok(refs)
    }
}

fn show(tags: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// Whether every selector tag is present with a matching value (`*` and `?` wildcards).
fn tags_match<'a>(
    selector: &BTreeMap<String, String>,
    tags: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>,
) -> bool {
    let tags: BTreeMap<&str, &str> = tags
        .filter_map(|(k, v)| Some((k?, v.unwrap_or(""))))
        .collect();
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, pattern)| tags.get(k.as_str()).is_some_and(|v| glob(pattern, v)))
}

/// `*` matches any run of characters, `?` any one character (EC2 filter semantics).
pub fn glob(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi, mut star, mut mark) = (0, 0, None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_ec2_filters() {
        assert!(glob("presta-demo-private-*", "presta-demo-private-a"));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc"));
        assert!(glob("*-b", "x-a-b"));
        assert!(!glob("presta-demo-private-*", "presta-demo-public-a"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }

    #[test]
    fn empty_selector_matches_nothing() {
        assert!(!tags_match(&BTreeMap::new(), std::iter::empty()));
        let sel = BTreeMap::from([("Name".to_string(), "x-*".to_string())]);
        assert!(tags_match(
            &sel,
            [(Some("Name"), Some("x-1")), (Some("Other"), Some("y"))].into_iter()
        ));
        assert!(!tags_match(
            &sel,
            [(Some("Other"), Some("x-1"))].into_iter()
        ));
    }
}
