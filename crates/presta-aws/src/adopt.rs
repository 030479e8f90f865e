//! Taking over resources another tool made (`import terraform --adopt`): read their tags,
//! add the ownership tags, nothing else. Run with a person's credentials: the daemon's
//! policy can tag only what already carries `managed-by=presta-reconciler` (so the calls
//! here are not in its IAM policy). The daemon's one step of the takeover, removing the
//! mark once the first changes are applied, is
//! [`crate::auto_scaling_group::clear_adopted`].

use serde::Serialize;

use crate::clients::Aws;
use crate::error::{AwsError, AwsResultExt};
use crate::tags::{self, Tags};

/// The tag that marks a stack taken over from another tool, on its Auto Scaling group, until
/// its first plan with changes has been approved and applied (or until it converges with
/// nothing to change): the change budget holds every plan of such a stack meanwhile.
pub const TAG_ADOPTED: &str = "presta-reconciler/adopted";

/// How to reach one resource to tag it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "service", content = "id", rename_all = "kebab-case")]
pub enum Handle {
    /// EC2 `CreateTags` on a security group or launch template id.
    Ec2(String),
    /// ELBv2 `AddTags` on an ARN.
    Elb(String),
    /// Auto Scaling `CreateOrUpdateTags` on a group name.
    AutoScaling(String),
    /// RDS `AddTagsToResource` on an ARN.
    Rds(String),
    /// EFS `TagResource` on a file system id.
    Efs(String),
    /// SSM `AddTagsToResource` on a parameter name.
    Ssm(String),
}

/// The resource's tags now.
pub async fn current_tags(aws: &Aws, handle: &Handle) -> Result<Tags, AwsError> {
    Ok(match handle {
        Handle::Ec2(id) => {
            let out = aws
                .ec2
                .describe_tags()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("resource-id")
                        .values(id)
                        .build(),
                )
                .send()
                .await
                .aws()?;
            out.tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect()
        }
        // The one reader the load balancer and target group kinds use (20 ARNs a call).
        Handle::Elb(arn) => crate::target_group::elb_tags(aws, std::slice::from_ref(arn))
            .await?
            .remove(arn)
            .unwrap_or_default(),
        Handle::AutoScaling(name) => {
            let out = aws
                .autoscaling
                .describe_tags()
                .filters(
                    aws_sdk_autoscaling::types::Filter::builder()
                        .name("auto-scaling-group")
                        .values(name)
                        .build(),
                )
                .send()
                .await
                .aws()?;
            out.tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect()
        }
        Handle::Rds(arn) => {
            let out = aws
                .rds
                .list_tags_for_resource()
                .resource_name(arn)
                .send()
                .await
                .aws()?;
            out.tag_list()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect()
        }
        Handle::Efs(id) => {
            let out = aws
                .efs
                .list_tags_for_resource()
                .resource_id(id)
                .send()
                .await
                .aws()?;
            out.tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect()
        }
        Handle::Ssm(name) => {
            let out = aws
                .ssm
                .list_tags_for_resource()
                .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
                .resource_id(name)
                .send()
                .await
                .aws()?;
            out.tag_list()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect()
        }
    })
}

/// Adds `add` to the resource's tags (the others are kept).
pub async fn add_tags(aws: &Aws, handle: &Handle, add: &Tags) -> Result<(), AwsError> {
    match handle {
        Handle::Ec2(id) => aws
            .ec2
            .create_tags()
            .resources(id)
            .set_tags(Some(tags::ec2(add)))
            .send()
            .await
            .map(|_| ())
            .aws(),
        Handle::Elb(arn) => aws
            .elbv2
            .add_tags()
            .resource_arns(arn)
            .set_tags(Some(tags::elbv2(add)))
            .send()
            .await
            .map(|_| ())
            .aws(),
        Handle::AutoScaling(name) => aws
            .autoscaling
            .create_or_update_tags()
            .set_tags(Some(crate::auto_scaling_group::asg_tags(name, add)))
            .send()
            .await
            .map(|_| ())
            .aws(),
        Handle::Rds(arn) => aws
            .rds
            .add_tags_to_resource()
            .resource_name(arn)
            .set_tags(Some(crate::db_subnet_group::rds_tags(add)))
            .send()
            .await
            .map(|_| ())
            .aws(),
        Handle::Efs(id) => aws
            .efs
            .tag_resource()
            .resource_id(id)
            .set_tags(Some(tags::efs(add)))
            .send()
            .await
            .map(|_| ())
            .aws(),
        Handle::Ssm(name) => aws
            .ssm
            .add_tags_to_resource()
            .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .set_tags(Some(tags::ssm(add)))
            .send()
            .await
            .map(|_| ())
            .aws(),
    }
}
