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
        |w: &mut World, i: &op::get_parameters::GetParametersInput| {
            let decrypt = i.with_decryption() == Some(true);
            let mut found = Vec::new();
            let mut invalid = Vec::new();
            for name in i.names() {
                match w.parameters.get(name) {
                    Some(p) => found.push(shown(&p.parameter, decrypt)),
                    None => invalid.push(name.clone()),
                }
            }
            Ok(op::get_parameters::GetParametersOutput::builder()
                .set_parameters(Some(found))
                .set_invalid_parameters(Some(invalid))
                .build())
        }
    );
    handle!(
        h,
        W,
        "GetParameter",
        op::get_parameter::GetParameterInput,
        |w: &mut World, i: &op::get_parameter::GetParameterInput| {
            let name = i.name().unwrap_or_default();
            let p = w.parameters.get(name).ok_or_else(|| not_found(name))?;
            Ok(op::get_parameter::GetParameterOutput::builder()
                .parameter(shown(&p.parameter, i.with_decryption() == Some(true)))
                .build())
        }
    );
    handle!(
        h,
        W,
        "PutParameter",
        op::put_parameter::PutParameterInput,
        |w: &mut World, i: &op::put_parameter::PutParameterInput| {
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
    );
    handle!(
        h,
        W,
        "DeleteParameter",
        op::delete_parameter::DeleteParameterInput,
        |w: &mut World, i: &op::delete_parameter::DeleteParameterInput| {
            let name = i.name().unwrap_or_default();
            w.parameters.remove(name).ok_or_else(|| not_found(name))?;
            Ok(op::delete_parameter::DeleteParameterOutput::builder().build())
        }
    );
    handle!(
        h,
        W,
        "ListTagsForResource",
        op::list_tags_for_resource::ListTagsForResourceInput,
        |w: &mut World, i: &op::list_tags_for_resource::ListTagsForResourceInput| {
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
    );
}
