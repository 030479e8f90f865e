//! The launch template of the instances: AMI, type, instance profile, security group, IMDSv2
//! with its hop limit, encrypted gp3 root volume, and the rendered user data.
//!
//! A change never edits instances in place: it creates a new template version with the whole
//! desired data, makes it the default, and the Auto Scaling group rolls (instance refresh).
//! Observation: one `DescribeLaunchTemplates` filtered by name, then the default version of
//! each stack's template, concurrently. AMI references (SSM public parameters) are resolved
//! with one `GetParameters` call per ten parameters.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{
    Filter, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateTagSpecificationRequest, RequestLaunchTemplateData, ResourceType, VolumeType,
};
use futures::future::try_join_all;
use sha2::{Digest, Sha256};

use crate::clients::Aws;
use crate::diff::{Delta, Diffs, FieldDiff, Kind};
use crate::driver::{Driver, Scope, absent_is_success};
use crate::error::{AwsError, AwsResultExt};
use crate::iam::allow;
use crate::registry::{Deletion, Iam, Observed, OrphanSearch, Owned, Targets, Teardown};
use crate::tags::{self, Tags};
use fields::*;
use presta_spec::Stack;
use presta_spec::naming::Component;
use serde_json::json;

/// Device name of the Amazon Linux 2023 root volume.
pub const ROOT_DEVICE: &str = "/dev/xvda";

/// The part of a template that instances are built from: one version's data.
/// The fields this kind manages, as its diff reports them and its update reads them.
pub mod fields {
    use crate::diff::Field;

    pub const IMAGE_ID: Field = Field("imageId");
    pub const INSTANCE_TYPE: Field = Field("instanceType");
    pub const INSTANCE_PROFILE: Field = Field("instanceProfile");
    pub const SECURITY_GROUPS: Field = Field("securityGroups");
    pub const METADATA_OPTIONS_HTTP_TOKENS: Field = Field("metadataOptions.httpTokens");
    pub const METADATA_OPTIONS_HOP_LIMIT: Field = Field("metadataOptions.hopLimit");
    pub const ROOT_VOLUME_SIZE_GIB: Field = Field("rootVolume.sizeGiB");
    pub const ROOT_VOLUME_ENCRYPTED: Field = Field("rootVolume.encrypted");
    pub const USER_DATA: Field = Field("userData");
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateData {
    pub image_id: String,
    pub instance_type: String,
    pub instance_profile: String,
    pub security_groups: BTreeSet<String>,
    /// The user-data script, plain text.
    pub user_data: String,
    pub http_tokens: String,
    pub hop_limit: i32,
    pub root_volume_gib: i32,
    pub root_encrypted: bool,
}

#[derive(Debug, Clone)]
pub struct LaunchTemplateDesired {
    pub name: String,
    pub data: TemplateData,
    pub tags: Tags,
    /// Tags put on the instances and volumes launched from the template.
    pub instance_tags: Tags,
}

impl LaunchTemplateDesired {
    /// The stack's template: the AMI, `spec.compute`, the instances' group, the rendered
    /// bootstrap; IMDSv2 required and an encrypted root volume, always.
    pub fn for_stack(stack: &Stack, image_id: &str, app_group: &str, user_data: String) -> Self {
        let compute = &stack.spec.compute;
        let tags = |c| stack.names().tags(c, &stack.metadata.labels);
        LaunchTemplateDesired {
            name: stack.resource_name(Component::LaunchTemplate),
            data: TemplateData {
                image_id: image_id.to_string(),
                instance_type: compute.instance_type.clone(),
                instance_profile: compute.instance_profile.clone(),
                security_groups: [app_group.to_string()].into(),
                user_data,
                http_tokens: "required".into(),
                hop_limit: compute.imds_hop_limit as i32,
                root_volume_gib: compute.root_volume_size_gib as i32,
                root_encrypted: true,
            },
            tags: tags(Component::LaunchTemplate),
            instance_tags: tags(Component::AutoScalingGroup),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LaunchTemplateLive {
    pub id: String,
    pub name: String,
    pub default_version: i64,
    pub latest_version: i64,
    /// Data of the default version.
    pub data: TemplateData,
    pub tags: Tags,
}

use crate::user_data::digest;
pub use crate::user_data::{bootstrap_values, decode_user_data, encode_user_data};

pub struct LaunchTemplates;

/// Above this many templates in one observation, their default versions are read with one
/// account-wide call rather than one call each.
const BATCH_VERSIONS_ABOVE: usize = 4;

impl Kind {
    pub const LAUNCH_TEMPLATE: Kind = Kind::new("launch_template");
}

impl Driver for LaunchTemplates {
    const KIND: Kind = Kind::LAUNCH_TEMPLATE;
    const IAM: Iam = Iam {
        read: &[
            "ec2:DescribeLaunchTemplates",
            "ec2:DescribeLaunchTemplateVersions",
        ],
        create: &["ec2:CreateLaunchTemplate"],
        change: &[
            "ec2:CreateLaunchTemplateVersion",
            "ec2:ModifyLaunchTemplate",
            "ec2:CreateTags",
            "ec2:DeleteLaunchTemplate",
        ],
        statements: || {
            vec![
                crate::iam::tag_while_creating(
                    "TagLaunchTemplatesAndInstancesOnlyWhileCreatingThem",
                    "ec2",
                    "ec2:CreateTags",
                    &["CreateLaunchTemplate", "RunInstances"],
                ),
                // The group launches from the stack's template: the caller must be allowed to
                // launch with it, and only with templates that carry the ownership tag.
                allow(
                    "LaunchOnlyFromTheStacksTemplates",
                    &["ec2:RunInstances"],
                    json!("arn:aws:ec2:*:*:launch-template/*"),
                    Some(crate::iam::resource_tagged()),
                ),
                allow(
                    "LaunchInstancesFromTheStacksTemplates",
                    &["ec2:RunInstances"],
                    json!([
                        "arn:aws:ec2:*:*:instance/*",
                        "arn:aws:ec2:*:*:volume/*",
                        "arn:aws:ec2:*:*:network-interface/*",
                        "arn:aws:ec2:*:*:subnet/*",
                        "arn:aws:ec2:*:*:security-group/*",
                        "arn:aws:ec2:*::image/*"
                    ]),
                    Some(json!({
                        "Bool": { "ec2:IsLaunchTemplateResource": "true" },
                        "ArnLike": { "ec2:LaunchTemplate": "arn:aws:ec2:*:*:launch-template/*" }
                    })),
                ),
            ]
        },
    };
    const TEARDOWN: Teardown = Teardown::new(11, Deletion::Plain);
    const ORPHANS: OrphanSearch = OrphanSearch::Secondary;

    fn scope(targets: &Targets, _: &Observed) -> Scope {
        Scope::named(targets.names(Component::LaunchTemplate))
    }

    /// Tag-filtered, or by name.
    async fn list_owned(
        &self,
        aws: &Aws,
        names: Option<&[String]>,
    ) -> Result<Vec<Owned>, AwsError> {
        let filter = match names {
            None => crate::tags::ec2_owned_filter(),
            Some(names) => Filter::builder()
                .name("launch-template-name")
                .set_values(Some(names.to_vec()))
                .build(),
        };
        let templates = aws
            .ec2
            .describe_launch_templates()
            .filters(filter)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .aws()?;
        Ok(templates
            .iter()
            .map(|t| {
                Owned::from_tags(
                    t.launch_template_name().unwrap_or_default(),
                    t.launch_template_id().unwrap_or_default(),
                    t.tags().iter().filter_map(|t| Some((t.key()?, t.value()?))),
                )
            })
            .collect())
    }

    type Desired = LaunchTemplateDesired;
    type Live = LaunchTemplateLive;

    fn name(desired: &LaunchTemplateDesired) -> String {
        desired.name.clone()
    }

    fn id(live: &LaunchTemplateLive) -> String {
        live.id.clone()
    }

    async fn delete(&self, aws: &Aws, live: &LaunchTemplateLive) -> Result<(), AwsError> {
        absent_is_success(
            aws.ec2
                .delete_launch_template()
                .launch_template_id(&live.id)
                .send()
                .await
                .map(|_| ())
                .aws(),
        )
    }

    fn tags(live: &Self::Live) -> Option<&Tags> {
        Some(&live.tags)
    }

    async fn observe(
        &self,
        aws: &Aws,
        scope: &Scope,
    ) -> Result<BTreeMap<String, LaunchTemplateLive>, AwsError> {
        if scope.names.is_empty() {
            return Ok(BTreeMap::new());
        }
        // EC2 takes at most 200 values per filter; a page of 200 holds every match.
        let pages = try_join_all(scope.names.chunks(200).map(|names| async move {
            aws.ec2
                .describe_launch_templates()
                .filters(
                    Filter::builder()
                        .name("launch-template-name")
                        .set_values(Some(names.to_vec()))
                        .build(),
                )
                .max_results(200)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .aws()
        }))
        .await?;
        let templates: Vec<_> = pages.into_iter().flatten().collect();
        // The default version of each template: with many templates, one paginated call for
        // the default versions of every template of the account (EC2's batch form) instead
        // of one call per template; templates it does not list are asked for one by one.
        let mut defaults: BTreeMap<String, aws_sdk_ec2::types::LaunchTemplateVersion> =
            BTreeMap::new();
        if templates.len() > BATCH_VERSIONS_ABOVE {
            let all = aws
                .ec2
                .describe_launch_template_versions()
                .versions("$Default")
                .max_results(200)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .aws()?;
            for v in all {
                if let Some(id) = v.launch_template_id() {
                    defaults.insert(id.to_string(), v);
                }
            }
        }
        let defaults = &defaults;
        let lives = crate::calls::bounded(templates.iter().map(|t| async move {
            let id = t.launch_template_id().unwrap_or_default();
            let fetched;
            let version = match defaults.get(id) {
                Some(v) => Some(v),
                None => {
                    fetched = aws
                        .ec2
                        .describe_launch_template_versions()
                        .launch_template_id(id)
                        .versions("$Default")
                        .send()
                        .await
                        .aws()?;
                    fetched.launch_template_versions().first()
                }
            };
            Ok::<_, AwsError>(live_of(t, version.and_then(|v| v.launch_template_data())))
        }))
        .await?;
        Ok(lives.into_iter().map(|l| (l.name.clone(), l)).collect())
    }

    fn diff(&self, desired: &LaunchTemplateDesired, live: &LaunchTemplateLive) -> Vec<FieldDiff> {
        let (w, h) = (&desired.data, &live.data);
        let mut d = Diffs::new();
        d.field(IMAGE_ID, &w.image_id, &h.image_id)
            .field(INSTANCE_TYPE, &w.instance_type, &h.instance_type)
            .field(INSTANCE_PROFILE, &w.instance_profile, &h.instance_profile)
            .set(SECURITY_GROUPS, &w.security_groups, &h.security_groups);
        user_data_diff(&mut d, &w.user_data, &h.user_data);
        d.field(METADATA_OPTIONS_HTTP_TOKENS, &w.http_tokens, &h.http_tokens)
            .field(METADATA_OPTIONS_HOP_LIMIT, &w.hop_limit, &h.hop_limit)
            .field(ROOT_VOLUME_SIZE_GIB, &w.root_volume_gib, &h.root_volume_gib)
            .field(ROOT_VOLUME_ENCRYPTED, &w.root_encrypted, &h.root_encrypted)
            .tags(&desired.tags, &live.tags);
        d.finish()
    }

    /// Creates the template (version 1 is the default). The client token derives from the
    /// name and data, so a retried create cannot make a second template.
    async fn create(
        &self,
        aws: &Aws,
        desired: &LaunchTemplateDesired,
    ) -> Result<LaunchTemplateLive, AwsError> {
        let res = aws
            .ec2
            .create_launch_template()
            .launch_template_name(&desired.name)
            .client_token(client_token(&desired.name, &desired.data))
            .version_description("presta-reconciler")
            .launch_template_data(request_data(desired))
            .tag_specifications(tags::ec2_spec(ResourceType::LaunchTemplate, &desired.tags))
            .send()
            .await
            .aws();
        match res {
            // A new template holds exactly what was sent: its answer gives the rest (no
            // read-back, two calls fewer per creation).
            Ok(out) => {
                if let Some(t) = out.launch_template()
                    && let Some(id) = t.launch_template_id()
                {
                    return Ok(LaunchTemplateLive {
                        id: id.to_string(),
                        name: desired.name.clone(),
                        default_version: t.default_version_number().unwrap_or(1),
                        latest_version: t.latest_version_number().unwrap_or(1),
                        data: desired.data.clone(),
                        tags: desired.tags.clone(),
                    });
                }
            }
            // Made by an earlier attempt (same client token) or by someone else: read it.
            Err(e) if e.class == crate::ErrorClass::Conflict => {}
            Err(e) => return Err(e),
        }
        let scope = Scope {
            names: vec![desired.name.clone()],
            ..Scope::default()
        };
        let live = self
            .observe(aws, &scope)
            .await?
            .remove(&desired.name)
            .ok_or_else(|| {
                AwsError::unexpected(
                    "DescribeLaunchTemplates",
                    format!("{} is not visible after CreateLaunchTemplate", desired.name),
                )
            })?;
        let diffs = self.diff(desired, &live);
        if diffs.is_empty() {
            Ok(live)
        } else {
            self.update(aws, desired, &live, &diffs).await
        }
    }

    /// A new version with the whole desired data, made the default; tags restored apart.
    async fn update(
        &self,
        aws: &Aws,
        desired: &LaunchTemplateDesired,
        live: &LaunchTemplateLive,
        diffs: &[FieldDiff],
    ) -> Result<LaunchTemplateLive, AwsError> {
        let mut version = live.default_version;
        if Delta(diffs).beyond_tags() {
            let out = aws
                .ec2
                .create_launch_template_version()
                .launch_template_id(&live.id)
                .client_token(client_token(
                    &format!("{}-v{}", desired.name, live.latest_version),
                    &desired.data,
                ))
                .version_description("presta-reconciler")
                .launch_template_data(request_data(desired))
                .send()
                .await
                .aws()?;
            version = out
                .launch_template_version()
                .and_then(|v| v.version_number())
                .unwrap_or(live.latest_version + 1);
            aws.ec2
                .modify_launch_template()
                .launch_template_id(&live.id)
                .default_version(version.to_string())
                .send()
                .await
                .aws()?;
        }
        let add = tags::missing(&desired.tags, &live.tags);
        if !add.is_empty() {
            aws.ec2
                .create_tags()
                .resources(&live.id)
                .set_tags(Some(tags::ec2(&add)))
                .send()
                .await
                .aws()?;
        }
        Ok(LaunchTemplateLive {
            default_version: version,
            latest_version: version.max(live.latest_version),
            data: desired.data.clone(),
            tags: live.tags.clone().into_iter().chain(add).collect(),
            ..live.clone()
        })
    }
}

/// User data differences, by the bootstrap value that changed (`userData.IMAGE`,
/// `userData.PS_DOMAIN`), so that a plan says what the instances will run differently; a
/// change of the script itself (a new reconciler version) shows as `userData` digests.
/// The live template from its description and its default version's data (normalised: the
/// user data decoded, the root volume by its device name).
fn live_of(
    t: &aws_sdk_ec2::types::LaunchTemplate,
    data: Option<&aws_sdk_ec2::types::ResponseLaunchTemplateData>,
) -> LaunchTemplateLive {
    let id = t.launch_template_id().unwrap_or_default();
    let root = data
        .and_then(|d| {
            d.block_device_mappings()
                .iter()
                .find(|b| b.device_name() == Some(ROOT_DEVICE))
        })
        .and_then(|b| b.ebs());
    let user_data = data
        .and_then(|d| d.user_data())
        .and_then(|b64| aws_smithy_types::base64::decode(b64).ok())
        .map(|bytes| decode_user_data(&bytes))
        .unwrap_or_default();
    LaunchTemplateLive {
        id: id.to_string(),
        name: t.launch_template_name().unwrap_or_default().to_string(),
        default_version: t.default_version_number().unwrap_or(0),
        latest_version: t.latest_version_number().unwrap_or(0),
        data: TemplateData {
            image_id: data
                .and_then(|d| d.image_id())
                .unwrap_or_default()
                .to_string(),
            instance_type: data
                .and_then(|d| d.instance_type())
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            instance_profile: data
                .and_then(|d| d.iam_instance_profile())
                .and_then(|p| p.name())
                .unwrap_or_default()
                .to_string(),
            security_groups: data
                .map(|d| d.security_group_ids().iter().cloned().collect())
                .unwrap_or_default(),
            user_data,
            http_tokens: data
                .and_then(|d| d.metadata_options())
                .and_then(|m| m.http_tokens())
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            hop_limit: data
                .and_then(|d| d.metadata_options())
                .and_then(|m| m.http_put_response_hop_limit())
                .unwrap_or(0),
            root_volume_gib: root.and_then(|e| e.volume_size()).unwrap_or(0),
            root_encrypted: root.and_then(|e| e.encrypted()).unwrap_or(false),
        },
        tags: tags::from_ec2(t.tags()),
    }
}

fn user_data_diff(d: &mut Diffs, desired: &str, live: &str) {
    if desired == live {
        return;
    }
    let (want, have) = (bootstrap_values(desired), bootstrap_values(live));
    if want != have && !have.is_empty() {
        let keys: BTreeSet<&String> = want.keys().chain(have.keys()).collect();
        for k in keys {
            if k != "PRESTA_VALUES" {
                d.field(USER_DATA.key(k), &want.get(k), &have.get(k));
            }
        }
    }
    let strip = |m: &BTreeMap<String, String>, text: &str| {
        let mut t = text.to_string();
        for (k, v) in m {
            t = t.replace(&format!("readonly {k}={}", quote(v)), "");
        }
        t
    };
    if have.is_empty() || strip(&want, desired) != strip(&have, live) {
        d.field(USER_DATA, &digest(desired), &digest(live));
    }
}

fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

fn client_token(name: &str, data: &TemplateData) -> String {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(format!("{data:?}").as_bytes());
    let hex: String = h
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("presta-{hex}")
}

fn request_data(desired: &LaunchTemplateDesired) -> RequestLaunchTemplateData {
    let d = &desired.data;
    let instance_tags = |rt| {
        LaunchTemplateTagSpecificationRequest::builder()
            .resource_type(rt)
            .set_tags(Some(tags::ec2(&desired.instance_tags)))
            .build()
    };
    RequestLaunchTemplateData::builder()
        .image_id(&d.image_id)
        .instance_type(d.instance_type.as_str().into())
        .iam_instance_profile(
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .name(&d.instance_profile)
                .build(),
        )
        .set_security_group_ids(Some(d.security_groups.iter().cloned().collect()))
        .user_data(aws_smithy_types::base64::encode(encode_user_data(
            &d.user_data,
        )))
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(LaunchTemplateHttpTokensState::from(d.http_tokens.as_str()))
                .http_put_response_hop_limit(d.hop_limit)
                .http_endpoint(LaunchTemplateInstanceMetadataEndpointState::Enabled)
                .build(),
        )
        .block_device_mappings(
            LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name(ROOT_DEVICE)
                .ebs(
                    LaunchTemplateEbsBlockDeviceRequest::builder()
                        .volume_size(d.root_volume_gib)
                        .volume_type(VolumeType::Gp3)
                        .encrypted(d.root_encrypted)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        .tag_specifications(instance_tags(ResourceType::Instance))
        .tag_specifications(instance_tags(ResourceType::Volume))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> TemplateData {
        TemplateData {
            image_id: "ami-1".into(),
            instance_type: "t3.small".into(),
            instance_profile: "p".into(),
            security_groups: ["sg-app".to_string()].into(),
            user_data: "#!/bin/bash\necho hi\n".into(),
            http_tokens: "required".into(),
            hop_limit: 1,
            root_volume_gib: 20,
            root_encrypted: true,
        }
    }

    #[test]
    fn user_data_changes_show_digests_not_text() {
        let desired = LaunchTemplateDesired {
            name: "shop-app".into(),
            data: data(),
            tags: Tags::new(),
            instance_tags: Tags::new(),
        };
        let mut live = LaunchTemplateLive {
            id: "lt-1".into(),
            name: "shop-app".into(),
            default_version: 1,
            latest_version: 1,
            data: data(),
            tags: Tags::new(),
        };
        assert!(LaunchTemplates.diff(&desired, &live).is_empty());
        live.data.user_data = "#!/bin/bash\necho other\n".into();
        live.data.hop_limit = 2;
        let diffs = LaunchTemplates.diff(&desired, &live);
        assert_eq!(
            diffs.iter().map(|d| d.field.as_str()).collect::<Vec<_>>(),
            ["userData", "metadataOptions.hopLimit"]
        );
        let shown = diffs[0].desired.as_str().unwrap();
        assert!(
            shown.starts_with("sha256:") && !shown.contains("echo"),
            "{shown}"
        );
    }

    #[test]
    fn client_tokens_follow_the_data() {
        let a = client_token("x", &data());
        assert_eq!(a, client_token("x", &data()));
        let mut other = data();
        other.image_id = "ami-2".into();
        assert_ne!(a, client_token("x", &other));
        assert!(a.len() <= 64);
    }
}
