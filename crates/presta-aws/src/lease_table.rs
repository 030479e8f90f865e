//! The lease table in DynamoDB: the one item `{lease, holder, version, renewed_at_ms,
//! expires_at_ms}` the daemon's replicas compete for (`serve --lease dynamodb:TABLE`). Only
//! the storage is here; who holds the lease and when a standby takes over is decided in
//! `presta-controller`'s `lease` module, over the [`LeaseStore`] port (an in-memory store
//! stands in for this one in its tests).

use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::BoxFuture;

use crate::error::AwsError;

/// The lease item as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub holder: String,
    /// Changes at every renewal.
    pub version: String,
}

/// What a write of the lease requires of the item as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nobody holds it.
    Absent,
    /// It is held by `holder` (the writer itself).
    HeldBy(String),
    /// It still has this version (a stale holder's).
    Version(String),
}

/// Why a write of the lease did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseWriteError {
    /// The item is not as the claim required (someone else renewed or took it).
    Conflict,
    /// The table did not answer, or refused.
    Unreachable(String),
}

/// Where the lease is kept.
pub trait LeaseStore: Send + Sync {
    /// The lease item `name`, read consistently.
    fn read<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<LeaseRecord>, String>>;

    /// Writes `record` (valid for `duration_ms`) as the lease `name`, if `claim` still holds.
    fn write<'a>(
        &'a self,
        name: &'a str,
        record: &'a LeaseRecord,
        duration_ms: i64,
        claim: &'a Claim,
    ) -> BoxFuture<'a, Result<(), LeaseWriteError>>;

    /// Deletes the lease `name` if `holder` holds it.
    fn release<'a>(&'a self, name: &'a str, holder: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

/// The lease in a DynamoDB table whose partition key is the string `lease`.
pub struct DynamoLease {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoLease {
    pub fn new(sdk: &aws_types::SdkConfig, table: &str) -> DynamoLease {
        DynamoLease {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: table.to_string(),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl LeaseStore for DynamoLease {
    fn read<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<LeaseRecord>, String>> {
        Box::pin(async move {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("lease", AttributeValue::S(name.to_string()))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("GetItem", e).to_string())?;
            let Some(item) = out.item() else {
                return Ok(None);
            };
            let text = |k: &str| match item.get(k) {
                Some(AttributeValue::S(v)) => v.clone(),
                _ => String::new(),
            };
            Ok(Some(LeaseRecord {
                holder: text("holder"),
                // An item without a version (written by hand, or by an older release): its
                // renewal time stands for it.
                version: match item.get("version") {
                    Some(AttributeValue::S(v)) => v.clone(),
                    _ => format!("{:?}", item.get("expires_at_ms")),
                },
            }))
        })
    }

    fn write<'a>(
        &'a self,
        name: &'a str,
        record: &'a LeaseRecord,
        duration_ms: i64,
        claim: &'a Claim,
    ) -> BoxFuture<'a, Result<(), LeaseWriteError>> {
        Box::pin(async move {
            // The wall-clock times are for people reading the table; no decision uses them.
            let now = now_ms();
            let req = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("lease", AttributeValue::S(name.to_string()))
                .item("holder", AttributeValue::S(record.holder.clone()))
                .item("version", AttributeValue::S(record.version.clone()))
                .item("renewed_at_ms", AttributeValue::N(now.to_string()))
                .item(
                    "expires_at_ms",
                    AttributeValue::N((now + duration_ms).to_string()),
                );
            let req = match claim {
                Claim::Absent => req
                    .condition_expression("attribute_not_exists(#l)")
                    .expression_attribute_names("#l", "lease"),
                Claim::HeldBy(holder) => req
                    .condition_expression("#h = :me")
                    .expression_attribute_names("#h", "holder")
                    .expression_attribute_values(":me", AttributeValue::S(holder.clone())),
                Claim::Version(version) => req
                    .condition_expression("#v = :seen")
                    .expression_attribute_names("#v", "version")
                    .expression_attribute_values(":seen", AttributeValue::S(version.clone())),
            };
            match req.send().await {
                Ok(_) => Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
                {
                    Err(LeaseWriteError::Conflict)
                }
                Err(e) => Err(LeaseWriteError::Unreachable(
                    AwsError::from_sdk("PutItem", e).to_string(),
                )),
            }
        })
    }

    fn release<'a>(&'a self, name: &'a str, holder: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("lease", AttributeValue::S(name.to_string()))
                .condition_expression("#h = :me")
                .expression_attribute_names("#h", "holder")
                .expression_attribute_values(":me", AttributeValue::S(holder.to_string()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| AwsError::from_sdk("DeleteItem", e).to_string())
        })
    }
}
