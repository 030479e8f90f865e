//! SSM Parameter Store: parameters (SecureString values returned only with decryption), their
//! versions and tags.

use aws_sdk_ssm::operation as op;
use aws_sdk_ssm::types::ParameterType;

use crate::wire::{Failure, Wire};
use crate::world::World;
use crate::{Handler, handle};

const W: Wire = Wire::Json;

/// A parameter as `GetParameters` shows it: a SecureString's value only decrypted.
fn shown(p: &aws_sdk_ssm::types::Parameter, decrypt: bool) -> aws_sdk_ssm::types::Parameter {
    let mut p = p.clone();
    if p.r#type() == Some(&ParameterType::SecureString) && !decrypt {
        p.value = Some("AQICAHfakeciphertext".into());
    }
    p
}

fn not_found(name: &str) -> Failure {
    Failure::new("ParameterNotFound", format!("Parameter {name} not found."))
}

pub(crate) fn register(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "GetParameters",
        op::get_parameters::GetParametersInput,
        get_parameters
    );
    handle!(
        h,
        W,
        "GetParameter",
        op::get_parameter::GetParameterInput,
        get_parameter
    );
    handle!(
        h,
        W,
        "PutParameter",
        op::put_parameter::PutParameterInput,
        put_parameter
    );
    handle!(
        h,
        W,
        "LabelParameterVersion",
        op::label_parameter_version::LabelParameterVersionInput,
        label_parameter_version
    );
    handle!(
        h,
        W,
        "DeleteParameter",
        op::delete_parameter::DeleteParameterInput,
        delete_parameter
    );
    handle!(
        h,
        W,
        "ListTagsForResource",
        op::list_tags_for_resource::ListTagsForResourceInput,
        list_tags_for_resource
    );
}

/// `GetParameters`.
fn get_parameters(
    w: &mut World,
    i: &op::get_parameters::GetParametersInput,
) -> Result<op::get_parameters::GetParametersOutput, Failure> {
    let decrypt = i.with_decryption() == Some(true);
    let mut found = Vec::new();
    let mut invalid = Vec::new();
    for name in i.names() {
        let (base, selector) = split(name);
        match w.parameters.get(base).and_then(|p| p.select(selector)) {
            Some(p) => found.push(shown(&p, decrypt)),
            None => invalid.push(name.clone()),
        }
    }
    Ok(op::get_parameters::GetParametersOutput::builder()
        .set_parameters(Some(found))
        .set_invalid_parameters(Some(invalid))
        .build())
}

/// `GetParameter`.
fn get_parameter(
    w: &mut World,
    i: &op::get_parameter::GetParameterInput,
) -> Result<op::get_parameter::GetParameterOutput, Failure> {
    let name = i.name().unwrap_or_default();
    let (base, selector) = split(name);
    let p = w.parameters.get(base).ok_or_else(|| not_found(name))?;
    let version = p.select(selector).ok_or_else(|| {
        Failure::new(
            "ParameterVersionNotFound",
            format!("Systems Manager could not find version {name}."),
        )
    })?;
    Ok(op::get_parameter::GetParameterOutput::builder()
        .parameter(shown(&version, i.with_decryption() == Some(true)))
        .build())
}

/// `name:selector` → (`name`, `selector`).
fn split(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once(':') {
        Some((base, sel)) if !sel.is_empty() => (base, Some(sel)),
        _ => (name, None),
    }
}

/// `LabelParameterVersion`: the labels move to `version`.
fn label_parameter_version(
    w: &mut World,
    i: &op::label_parameter_version::LabelParameterVersionInput,
) -> Result<op::label_parameter_version::LabelParameterVersionOutput, Failure> {
    let name = i.name().unwrap_or_default();
    let p = w.parameters.get_mut(name).ok_or_else(|| not_found(name))?;
    let version = i.parameter_version().unwrap_or(p.parameter.version);
    if !p.history.iter().any(|(v, _)| v.version == version) {
        return Err(Failure::new(
            "ParameterVersionNotFound",
            format!("Systems Manager could not find version {version} of {name}."),
        ));
    }
    for (v, labels) in p.history.iter_mut() {
        labels.retain(|l| !i.labels().contains(l));
        if v.version == version {
            labels.extend(i.labels().iter().cloned());
        }
    }
    Ok(
        op::label_parameter_version::LabelParameterVersionOutput::builder()
            .parameter_version(version)
            .build(),
    )
}

/// `PutParameter`.
fn put_parameter(
    w: &mut World,
    i: &op::put_parameter::PutParameterInput,
) -> Result<op::put_parameter::PutParameterOutput, Failure> {
    let name = i.name().unwrap_or_default().to_string();
    if w.parameters.contains_key(&name) && i.overwrite() != Some(true) {
        return Err(Failure::new(
            "ParameterAlreadyExists",
            "The parameter already exists. To overwrite this request, set the overwrite option in the request to true.",
        ));
    }
    if w.parameters.contains_key(&name) && !i.tags().is_empty() {
        return Err(Failure::new(
            "ValidationException",
            "Invalid request: tags and overwrite can't be used together.",
        ));
    }
    let kind = i.r#type().cloned().unwrap_or(ParameterType::String);
    let version = w.put_parameter(
        &name,
        i.value().unwrap_or_default(),
        kind,
        i.tags().to_vec(),
    );
    Ok(op::put_parameter::PutParameterOutput::builder()
        .version(version)
        .build())
}

/// `DeleteParameter`.
fn delete_parameter(
    w: &mut World,
    i: &op::delete_parameter::DeleteParameterInput,
) -> Result<op::delete_parameter::DeleteParameterOutput, Failure> {
    let name = i.name().unwrap_or_default();
    w.parameters.remove(name).ok_or_else(|| not_found(name))?;
    Ok(op::delete_parameter::DeleteParameterOutput::builder().build())
}

/// `ListTagsForResource`.
fn list_tags_for_resource(
    w: &mut World,
    i: &op::list_tags_for_resource::ListTagsForResourceInput,
) -> Result<op::list_tags_for_resource::ListTagsForResourceOutput, Failure> {
    let name = i.resource_id().unwrap_or_default();
    let p = w.parameters.get(name).ok_or_else(|| {
        Failure::new(
            "InvalidResourceId",
            format!("{name} is not a valid resource id"),
        )
    })?;
    Ok(
        op::list_tags_for_resource::ListTagsForResourceOutput::builder()
            .set_tag_list(Some(p.tags.clone()))
            .build(),
    )
}
