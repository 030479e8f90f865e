//! The Route 53 change batches of the record kind: a record and its ownership TXT record,
//! written or deleted together (Route 53 applies a batch atomically).

use aws_sdk_route53::types::{
    AliasTarget, Change as R53Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet,
    RrType,
};

use super::{RecordDesired, Target, VALIDATION_TTL, owner_name, owner_value};
use crate::clients::Aws;
use crate::error::{AwsError, AwsResultExt};

fn sdk_err(op: &'static str, e: impl std::fmt::Display) -> AwsError {
    AwsError::unexpected(op, e.to_string())
}

pub(super) fn record_set(d: &RecordDesired) -> Result<ResourceRecordSet, AwsError> {
    let op = "ChangeResourceRecordSets";
    let mut b = ResourceRecordSet::builder()
        .name(&d.name)
        .r#type(RrType::from(d.rtype.as_str()));
    match &d.target {
        Target::Alias { dns_name, zone_id } => {
            b = b.alias_target(
                AliasTarget::builder()
                    .dns_name(dns_name)
                    .hosted_zone_id(zone_id)
                    .evaluate_target_health(true)
                    .build()
                    .map_err(|e| sdk_err(op, e))?,
            );
        }
        Target::Values { ttl, values } => {
            b = b.ttl(*ttl);
            for v in values {
                b = b.resource_records(
                    ResourceRecord::builder()
                        .value(v)
                        .build()
                        .map_err(|e| sdk_err(op, e))?,
                );
            }
        }
    }
    b.build().map_err(|e| sdk_err(op, e))
}

pub(super) fn txt_set(name: &str, value: &str) -> Result<ResourceRecordSet, AwsError> {
    let op = "ChangeResourceRecordSets";
    ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::Txt)
        .ttl(VALIDATION_TTL)
        .resource_records(
            ResourceRecord::builder()
                .value(value)
                .build()
                .map_err(|e| sdk_err(op, e))?,
        )
        .build()
        .map_err(|e| sdk_err(op, e))
}

pub(super) fn owner_set(d: &RecordDesired) -> Result<ResourceRecordSet, AwsError> {
    txt_set(&owner_name(&d.name, &d.rtype), &owner_value(&d.stack))
}

pub(super) fn change(action: ChangeAction, set: &ResourceRecordSet) -> Result<R53Change, AwsError> {
    R53Change::builder()
        .action(action)
        .resource_record_set(set.clone())
        .build()
        .map_err(|e| sdk_err("ChangeResourceRecordSets", e))
}

pub(super) async fn submit(
    aws: &Aws,
    zone_id: &str,
    changes: Vec<R53Change>,
    op: &'static str,
) -> Result<(), AwsError> {
    let batch = ChangeBatch::builder()
        .comment("presta-reconciler")
        .set_changes(Some(changes))
        .build()
        .map_err(|e| sdk_err(op, e))?;
    aws.route53
        .change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(batch)
        .send()
        .await
        .map(|_| ())
        .aws()
}
