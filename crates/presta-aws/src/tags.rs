//! Ownership tags in each service's shape.

use std::collections::BTreeMap;

use presta_spec::naming::{MANAGED_BY_VALUE, TAG_MANAGED_BY, TAG_STACK};

pub type Tags = BTreeMap<String, String>;

/// Tags by ARN, remembered for the process: for kinds whose list call returns no tags (ACM
/// certificates, listener rules), so that a steady-state observation does not read them again.
/// What may be deleted is decided on tags read afresh ([`crate::Driver::ownership_tags`]).
#[derive(Debug, Default)]
pub struct TagMemory(std::sync::Mutex<BTreeMap<String, Tags>>);

impl TagMemory {
    pub fn get(&self, arn: &str) -> Option<Tags> {
        self.lock().get(arn).cloned()
    }

    pub fn put(&self, arn: &str, tags: &Tags) {
        self.lock().insert(arn.to_string(), tags.clone());
    }

    pub fn forget(&self, arn: &str) {
        self.lock().remove(arn);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Tags>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `tags` say the resource belongs to `stack`.
pub fn owned_by(tags: &Tags, stack: &str) -> bool {
    tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE)
        && tags.get(TAG_STACK).map(String::as_str) == Some(stack)
}

/// The EC2 filter that lists the product's resources (`tag:managed-by=presta-reconciler`).
pub fn ec2_owned_filter() -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(format!("tag:{}", presta_spec::naming::TAG_MANAGED_BY))
        .values(presta_spec::naming::MANAGED_BY_VALUE)
        .build()
}

pub fn ec2(tags: &Tags) -> Vec<aws_sdk_ec2::types::Tag> {
    tags.iter()
        .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build())
        .collect()
}

pub fn ec2_spec(
    resource: aws_sdk_ec2::types::ResourceType,
    tags: &Tags,
) -> aws_sdk_ec2::types::TagSpecification {
    aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(ec2(tags)))
        .build()
}

pub fn from_ec2(tags: &[aws_sdk_ec2::types::Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

pub fn elbv2(tags: &Tags) -> Vec<aws_sdk_elasticloadbalancingv2::types::Tag> {
    tags.iter()
        .map(|(k, v)| {
            aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
        })
        .collect()
}

pub fn from_elbv2(tags: &[aws_sdk_elasticloadbalancingv2::types::Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// Tags as EFS takes them.
pub fn efs(tags: &Tags) -> Vec<aws_sdk_efs::types::Tag> {
    tags.iter()
        .filter_map(|(k, v)| {
            aws_sdk_efs::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .ok()
        })
        .collect()
}

pub fn ssm(tags: &Tags) -> Vec<aws_sdk_ssm::types::Tag> {
    tags.iter()
        .filter_map(|(k, v)| {
            aws_sdk_ssm::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .ok()
        })
        .collect()
}

/// The subset of `desired` missing or different in `live` (to add; nothing is removed).
pub fn missing(desired: &Tags, live: &Tags) -> Tags {
    desired
        .iter()
        .filter(|(k, v)| live.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
