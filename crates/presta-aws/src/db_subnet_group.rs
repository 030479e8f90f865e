//! The DB subnet group: the private subnets the database may live in.
//! Observation: one paginated `DescribeDBSubnetGroups`, matched by name.

use std::collections::{BTreeMap, BTreeSet};

use crate::clients::Aws;
use crate::diff::{Diffs, FieldDiff, Kind};
use crate::driver::{Driver, Scope, absent_is_success};
use crate::error::{AwsError, AwsResultExt};
use crate::iam::allow;
use crate::network::Network;
use crate::registry::{Deletion, Iam, Observed, Targets, Teardown};
use crate::tags::Tags;
use fields::*;
use presta_spec::Stack;
use presta_spec::naming::Component;
use serde_json::json;

/// The fields this kind manages, as its diff reports them and its update reads them.
pub mod fields {
    use crate::diff::Field;

    pub const SUBNETS: Field = Field("subnets");
}

#[derive(Debug, Clone)]
pub struct DbSubnetGroupDesired {
    pub name: String,
    pub description: String,
    pub subnets: BTreeSet<String>,
    pub tags: Tags,
}

impl DbSubnetGroupDesired {
    /// The database's subnet group: the stack's private subnets.
    pub fn for_stack(stack: &Stack, net: &Network) -> Self {
        DbSubnetGroupDesired {
            name: stack.resource_name(Component::DbSubnetGroup),
            description: format!(
                "presta-reconciler {}: private subnets of the database",
                stack.name()
            ),
            subnets: net.private_ids().into_iter().collect(),
            tags: stack
                .names()
                .tags(Component::DbSubnetGroup, &stack.metadata.labels),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DbSubnetGroupLive {
    pub name: String,
    pub arn: String,
    pub vpc_id: String,
    pub subnets: BTreeSet<String>,
}

pub struct DbSubnetGroups;

impl Kind {
    pub const DB_SUBNET_GROUP: Kind = Kind::new("db_subnet_group");
}

impl Driver for DbSubnetGroups {
    const KIND: Kind = Kind::DB_SUBNET_GROUP;
    const IAM: Iam = Iam {
        read: &["rds:DescribeDBSubnetGroups", "rds:ListTagsForResource"],
        create: &["rds:CreateDBSubnetGroup"],
        change: &[
            "rds:ModifyDBSubnetGroup",
            "rds:AddTagsToResource",
            "rds:DeleteDBSubnetGroup",
        ],
        statements: || {
            vec![allow(
                "TagOnCreateOfTheStacksDbSubnetGroupsByTheirNames",
                &["rds:AddTagsToResource"],
                json!(["arn:aws:rds:*:*:subgrp:*-db-subnets"]),
                Some(crate::iam::request_tagged()),
            )]
        },
    };
    /// Kept with a retained database, which uses it.
    const TEARDOWN: Teardown = Teardown::new(50, Deletion::DatabaseNetwork);

    fn scope(targets: &Targets, _: &Observed) -> Scope {
        Scope::named(targets.names(Component::DbSubnetGroup))
    }

    type Desired = DbSubnetGroupDesired;
    type Live = DbSubnetGroupLive;

    fn name(desired: &DbSubnetGroupDesired) -> String {
        desired.name.clone()
    }

    fn id(live: &DbSubnetGroupLive) -> String {
        live.name.clone()
    }

    async fn delete(&self, aws: &Aws, live: &DbSubnetGroupLive) -> Result<(), AwsError> {
        absent_is_success(
            aws.rds
                .delete_db_subnet_group()
                .db_subnet_group_name(&live.name)
                .send()
                .await
                .map(|_| ())
                .aws(),
        )
    }

    /// Subnet groups are observed without tags: read them for the ownership check.
    async fn ownership_tags(&self, aws: &Aws, live: &DbSubnetGroupLive) -> Result<Tags, AwsError> {
        let resp = aws
            .rds
            .list_tags_for_resource()
            .resource_name(&live.arn)
            .send()
            .await
            .aws()?;
        Ok(from_rds(resp.tag_list()))
    }

    async fn observe(
        &self,
        aws: &Aws,
        scope: &Scope,
    ) -> Result<BTreeMap<String, DbSubnetGroupLive>, AwsError> {
        if scope.names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let all = aws
            .rds
            .describe_db_subnet_groups()
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .aws()?;
        Ok(all
            .iter()
            .filter(|g| {
                g.db_subnet_group_name()
                    .is_some_and(|n| scope.names.iter().any(|w| w == n))
            })
            .map(|g| {
                let live = DbSubnetGroupLive {
                    name: g.db_subnet_group_name().unwrap_or_default().to_string(),
                    arn: g.db_subnet_group_arn().unwrap_or_default().to_string(),
                    vpc_id: g.vpc_id().unwrap_or_default().to_string(),
                    subnets: g
                        .subnets()
                        .iter()
                        .filter_map(|s| s.subnet_identifier().map(String::from))
                        .collect(),
                };
                (live.name.clone(), live)
            })
            .collect())
    }

    fn diff(&self, desired: &DbSubnetGroupDesired, live: &DbSubnetGroupLive) -> Vec<FieldDiff> {
        let mut d = Diffs::new();
        d.set(SUBNETS, &desired.subnets, &live.subnets);
        d.finish()
    }

    async fn create(
        &self,
        aws: &Aws,
        desired: &DbSubnetGroupDesired,
    ) -> Result<DbSubnetGroupLive, AwsError> {
        let res = aws
            .rds
            .create_db_subnet_group()
            .db_subnet_group_name(&desired.name)
            .db_subnet_group_description(&desired.description)
            .set_subnet_ids(Some(desired.subnets.iter().cloned().collect()))
            .set_tags(Some(rds_tags(&desired.tags)))
            .send()
            .await
            .aws();
        match res {
            Ok(out) => {
                let g = out.db_subnet_group();
                Ok(DbSubnetGroupLive {
                    name: desired.name.clone(),
                    arn: g
                        .and_then(|g| g.db_subnet_group_arn())
                        .unwrap_or_default()
                        .to_string(),
                    vpc_id: g.and_then(|g| g.vpc_id()).unwrap_or_default().to_string(),
                    subnets: desired.subnets.clone(),
                })
            }
            Err(e) if e.class == crate::ErrorClass::Conflict => {
                let scope = Scope {
                    names: vec![desired.name.clone()],
                    ..Scope::default()
                };
                self.observe(aws, &scope)
                    .await?
                    .remove(&desired.name)
                    .ok_or(e)
            }
            Err(e) => Err(e),
        }
    }

    async fn update(
        &self,
        aws: &Aws,
        desired: &DbSubnetGroupDesired,
        live: &DbSubnetGroupLive,
        _diffs: &[FieldDiff],
    ) -> Result<DbSubnetGroupLive, AwsError> {
        aws.rds
            .modify_db_subnet_group()
            .db_subnet_group_name(&desired.name)
            .set_subnet_ids(Some(desired.subnets.iter().cloned().collect()))
            .send()
            .await
            .aws()?;
        Ok(DbSubnetGroupLive {
            subnets: desired.subnets.clone(),
            ..live.clone()
        })
    }
}

pub(crate) fn rds_tags(tags: &Tags) -> Vec<aws_sdk_rds::types::Tag> {
    tags.iter()
        .map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build())
        .collect()
}

pub(crate) fn from_rds(tags: &[aws_sdk_rds::types::Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}
