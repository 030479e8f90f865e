//! EC2 launch templates and their versions (`$Default`, `$Latest`).

use super::*;

/// What `DescribeLaunchTemplateVersions` answers for the data a version was created with.
fn response_data(d: &RequestLaunchTemplateData) -> ResponseLaunchTemplateData {
    ResponseLaunchTemplateData::builder()
        .set_image_id(d.image_id().map(str::to_string))
        .set_instance_type(d.instance_type().cloned())
        .set_user_data(d.user_data().map(str::to_string))
        .set_security_group_ids(Some(d.security_group_ids().to_vec()))
        .set_iam_instance_profile(d.iam_instance_profile().map(|p| {
            LaunchTemplateIamInstanceProfileSpecification::builder()
                .set_name(p.name().map(str::to_string))
                .set_arn(p.arn().map(str::to_string))
                .build()
        }))
        .set_metadata_options(d.metadata_options().map(|m| {
            LaunchTemplateInstanceMetadataOptions::builder()
                .set_http_tokens(m.http_tokens().cloned())
                .set_http_put_response_hop_limit(m.http_put_response_hop_limit())
                .set_http_endpoint(m.http_endpoint().cloned())
                .build()
        }))
        .set_block_device_mappings(Some(
            d.block_device_mappings()
                .iter()
                .map(|b| {
                    LaunchTemplateBlockDeviceMapping::builder()
                        .set_device_name(b.device_name().map(str::to_string))
                        .set_ebs(b.ebs().map(|e| {
                            LaunchTemplateEbsBlockDevice::builder()
                                .set_volume_size(e.volume_size())
                                .set_volume_type(e.volume_type().cloned())
                                .set_encrypted(e.encrypted())
                                .set_delete_on_termination(e.delete_on_termination())
                                .build()
                        }))
                        .build()
                })
                .collect(),
        ))
        .build()
}

fn template<'a>(
    w: &'a mut World,
    id: Option<&str>,
    name: Option<&str>,
) -> Result<&'a mut crate::world::LaunchTemplate, Failure> {
    w.launch_templates
        .iter_mut()
        .find(|t| {
            (id.is_some() && t.template.launch_template_id() == id)
                || (name.is_some() && t.template.launch_template_name() == name)
        })
        .ok_or_else(|| {
            Failure::new(
                "InvalidLaunchTemplateId.NotFound",
                format!(
                    "The specified launch template, with template ID {}, does not exist.",
                    id.or(name).unwrap_or_default()
                ),
            )
        })
}

pub(super) fn register(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "DescribeLaunchTemplates",
        op::describe_launch_templates::DescribeLaunchTemplatesInput,
        describe_launch_templates
    );
    handle!(
        h,
        W,
        "DescribeLaunchTemplateVersions",
        op::describe_launch_template_versions::DescribeLaunchTemplateVersionsInput,
        |w: &mut World,
         i: &op::describe_launch_template_versions::DescribeLaunchTemplateVersionsInput| {
            let wanted = |t: &crate::world::LaunchTemplate, v: &LaunchTemplateVersion| {
                i.versions().is_empty()
                    || i.versions().iter().any(|want| match want.as_str() {
                        "$Default" => v.default_version() == Some(true),
                        "$Latest" => v.version_number() == t.template.latest_version_number(),
                        n => n.parse::<i64>().ok() == v.version_number(),
                    })
            };
            let mut found = Vec::new();
            let by_id = i.launch_template_id().is_some() || i.launch_template_name().is_some();
            if by_id {
                let t = template(w, i.launch_template_id(), i.launch_template_name())?;
                found.extend(t.versions.iter().filter(|v| wanted(t, v)).cloned());
            } else {
                for t in &w.launch_templates {
                    let keep = world::passes(filters(i.filters()), |n| match n {
                        "launch-template-name" => vec![
                            t.template
                                .launch_template_name()
                                .unwrap_or_default()
                                .to_string(),
                        ],
                        n => tag_values(t.template.tags(), n).unwrap_or_default(),
                    });
                    if keep {
                        found.extend(t.versions.iter().filter(|v| wanted(t, v)).cloned());
                    }
                }
            }
            Ok(op::describe_launch_template_versions::DescribeLaunchTemplateVersionsOutput::builder()
            .set_launch_template_versions(Some(found))
            .build())
        }
    );
    handle!(
        h,
        W,
        "CreateLaunchTemplate",
        op::create_launch_template::CreateLaunchTemplateInput,
        create_launch_template
    );
    handle!(
        h,
        W,
        "CreateLaunchTemplateVersion",
        op::create_launch_template_version::CreateLaunchTemplateVersionInput,
        |w: &mut World,
         i: &op::create_launch_template_version::CreateLaunchTemplateVersionInput| {
            let t = template(w, i.launch_template_id(), i.launch_template_name())?;
            let number = t.template.latest_version_number().unwrap_or(0) + 1;
            t.template.latest_version_number = Some(number);
            let version = LaunchTemplateVersion::builder()
                .set_launch_template_id(t.template.launch_template_id().map(str::to_string))
                .set_launch_template_name(t.template.launch_template_name().map(str::to_string))
                .version_number(number)
                .default_version(false)
                .set_version_description(i.version_description().map(str::to_string))
                .set_launch_template_data(i.launch_template_data().map(response_data))
                .build();
            t.versions.push(version.clone());
            Ok(
                op::create_launch_template_version::CreateLaunchTemplateVersionOutput::builder()
                    .launch_template_version(version)
                    .build(),
            )
        }
    );
    handle!(
        h,
        W,
        "ModifyLaunchTemplate",
        op::modify_launch_template::ModifyLaunchTemplateInput,
        modify_launch_template
    );
    handle!(
        h,
        W,
        "DeleteLaunchTemplate",
        op::delete_launch_template::DeleteLaunchTemplateInput,
        delete_launch_template
    );
}

/// `DescribeLaunchTemplates`.
fn describe_launch_templates(
    w: &mut World,
    i: &op::describe_launch_templates::DescribeLaunchTemplatesInput,
) -> Result<op::describe_launch_templates::DescribeLaunchTemplatesOutput, Failure> {
    let found: Vec<LaunchTemplate> = w
        .launch_templates
        .iter()
        .map(|t| &t.template)
        .filter(|t| {
            (i.launch_template_ids().is_empty()
                || i.launch_template_ids()
                    .iter()
                    .any(|id| t.launch_template_id() == Some(id)))
                && (i.launch_template_names().is_empty()
                    || i.launch_template_names()
                        .iter()
                        .any(|n| t.launch_template_name() == Some(n)))
                && world::passes(filters(i.filters()), |n| match n {
                    "launch-template-name" => {
                        vec![t.launch_template_name().unwrap_or_default().to_string()]
                    }
                    n => tag_values(t.tags(), n).unwrap_or_default(),
                })
        })
        .cloned()
        .collect();
    Ok(
        op::describe_launch_templates::DescribeLaunchTemplatesOutput::builder()
            .set_launch_templates(Some(found))
            .build(),
    )
}

/// `CreateLaunchTemplate`.
fn create_launch_template(
    w: &mut World,
    i: &op::create_launch_template::CreateLaunchTemplateInput,
) -> Result<op::create_launch_template::CreateLaunchTemplateOutput, Failure> {
    if w.launch_templates
        .iter()
        .any(|t| t.template.launch_template_name() == i.launch_template_name())
    {
        return Err(Failure::new(
            "InvalidLaunchTemplateName.AlreadyExistsException",
            format!(
                "Launch template name already in use: {}",
                i.launch_template_name().unwrap_or_default()
            ),
        ));
    }
    let id = w.id("lt");
    let name = i.launch_template_name().unwrap_or_default().to_string();
    let template = LaunchTemplate::builder()
        .launch_template_id(&id)
        .launch_template_name(&name)
        .default_version_number(1)
        .latest_version_number(1)
        .set_tags(Some(tags_of(i.tag_specifications())))
        .build();
    let version = LaunchTemplateVersion::builder()
        .launch_template_id(&id)
        .launch_template_name(&name)
        .version_number(1)
        .default_version(true)
        .set_version_description(i.version_description().map(str::to_string))
        .set_launch_template_data(i.launch_template_data().map(response_data))
        .build();
    w.launch_templates.push(crate::world::LaunchTemplate {
        template: template.clone(),
        versions: vec![version],
    });
    Ok(
        op::create_launch_template::CreateLaunchTemplateOutput::builder()
            .launch_template(template)
            .build(),
    )
}

/// `ModifyLaunchTemplate`.
fn modify_launch_template(
    w: &mut World,
    i: &op::modify_launch_template::ModifyLaunchTemplateInput,
) -> Result<op::modify_launch_template::ModifyLaunchTemplateOutput, Failure> {
    let t = template(w, i.launch_template_id(), i.launch_template_name())?;
    if let Some(n) = i.default_version().and_then(|v| v.parse::<i64>().ok()) {
        if !t.versions.iter().any(|v| v.version_number() == Some(n)) {
            return Err(Failure::new(
                "InvalidLaunchTemplateVersion.NotFound",
                format!("version {n} does not exist"),
            ));
        }
        t.template.default_version_number = Some(n);
        for v in &mut t.versions {
            v.default_version = Some(v.version_number == Some(n));
        }
    }
    Ok(
        op::modify_launch_template::ModifyLaunchTemplateOutput::builder()
            .launch_template(t.template.clone())
            .build(),
    )
}

/// `DeleteLaunchTemplate`.
fn delete_launch_template(
    w: &mut World,
    i: &op::delete_launch_template::DeleteLaunchTemplateInput,
) -> Result<op::delete_launch_template::DeleteLaunchTemplateOutput, Failure> {
    let gone = template(w, i.launch_template_id(), i.launch_template_name())?
        .template
        .clone();
    w.launch_templates
        .retain(|t| t.template.launch_template_id() != gone.launch_template_id());
    Ok(
        op::delete_launch_template::DeleteLaunchTemplateOutput::builder()
            .launch_template(gone)
            .build(),
    )
}
