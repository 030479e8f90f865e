//! SSM Parameter Store SecureStrings: the database master password and the shop's admin
//! password. Generated once when absent, never overwritten, never read except by the one call
//! that needs the value, never shown: a diff compares the type only.

use std::collections::BTreeMap;

use aws_sdk_ssm::types::ParameterType;

use crate::clients::Aws;
use crate::diff::{Diffs, FieldDiff, Kind};
use crate::driver::{Driver, Scope, absent_is_success};
use crate::error::{AwsError, AwsResultExt};
use crate::iam::allow;
use crate::registry::{Deletion, Iam, Observed, Targets, Teardown};
use crate::secret::{Secret, generate_password};
use crate::tags::{self, Tags};
use fields::*;
use presta_spec::Stack;
use presta_spec::naming::{self, Component};
use serde_json::json;

/// Length of generated passwords (about 190 bits).
pub const PASSWORD_LENGTH: usize = 32;

/// A secret parameter the stack needs.
/// The fields this kind manages, as its diff reports them and its update reads them.
pub mod fields {
    use crate::diff::Field;

    pub const TYPE: Field = Field("type");
}

#[derive(Debug, Clone)]
pub struct ParameterDesired {
    /// Full path, e.g. `/presta-reconciler/demo/db-password`.
    pub name: String,
    pub description: String,
    pub tags: Tags,
}

impl ParameterDesired {
    /// The stack's database master password parameter.
    pub fn db_password(stack: &Stack) -> Self {
        Self::secret(
            stack,
            naming::db_password_parameter(&stack.parameter_prefix()),
            "database master password",
        )
    }

    /// The shop's admin password parameter.
    pub fn admin_password(stack: &Stack) -> Self {
        Self::secret(
            stack,
            naming::admin_password_parameter(&stack.parameter_prefix()),
            "PrestaShop admin password",
        )
    }

    fn secret(stack: &Stack, name: String, what: &str) -> Self {
        ParameterDesired {
            description: format!(
                "presta-reconciler {}: {what} (generated; never overwritten)",
                stack.name()
            ),
            tags: naming::tags(stack.name(), Component::DbInstance, &stack.metadata.labels),
            name,
        }
    }
}

/// A live parameter: metadata only, never the value.
#[derive(Debug, Clone, PartialEq)]
pub struct ParameterLive {
    pub name: String,
    pub kind: String,
    pub version: i64,
    pub arn: String,
    /// The value of a plain `String` parameter observed for its value ([`Scope::plain`]: an
    /// AMI reference); never a `SecureString`'s.
    pub plain_value: Option<String>,
}

/// The parameters `names` (as [`Parameters::observe`]) and, in the same `GetParameters`
/// calls, the values of the plain `String` parameters `plain` (the AMI references of the
/// stacks: public parameters such as `/aws/service/ami-amazon-linux-latest/…`): one call for
/// a stack's passwords and its AMI instead of two. Nothing is decrypted, and only the values
/// of names in `plain` that are not `SecureString` are kept: never a secret's.
pub async fn observe_with_plain(
    aws: &Aws,
    names: &[String],
    plain: &[String],
) -> Result<(BTreeMap<String, ParameterLive>, BTreeMap<String, String>), AwsError> {
    let mut all: Vec<String> = names.to_vec();
    for p in plain {
        if !all.contains(p) {
            all.push(p.clone());
        }
    }
    let mut found = BTreeMap::new();
    let mut values = BTreeMap::new();
    for chunk in all.chunks(10) {
        let resp = aws
            .ssm
            .get_parameters()
            .set_names(Some(chunk.to_vec()))
            .with_decryption(false)
            .send()
            .await
            .aws("GetParameters")?;
        for p in resp.parameters() {
            let name = p.name().unwrap_or_default();
            let kind = p
                .r#type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default();
            if kind != "SecureString"
                && plain.iter().any(|n| n == name)
                && let Some(v) = p.value()
            {
                values.insert(name.to_string(), v.to_string());
            }
            if names.iter().any(|n| n == name) {
                let live = ParameterLive {
                    name: name.to_string(),
                    kind,
                    version: p.version(),
                    arn: p.arn().unwrap_or_default().to_string(),
                    plain_value: None,
                };
                found.insert(live.name.clone(), live);
            }
        }
    }
    Ok((found, values))
}

pub struct Parameters;

impl Kind {
    pub const PARAMETER: Kind = Kind::new("parameter");
}

impl Driver for Parameters {
    const KIND: Kind = Kind::PARAMETER;
    const IAM: Iam = Iam {
        read: &["ssm:ListTagsForResource"],
        create: &[],
        change: &[],
        statements: || {
            let ssm_any = json!(crate::iam::SSM_ANY);
            vec![
                allow(
                    "ReadTheStacksParametersAndThePublicAmiParameters",
                    &["ssm:GetParameter", "ssm:GetParameters"],
                    json!([
                        crate::iam::SSM_ANY,
                        "arn:aws:ssm:*::parameter/aws/service/*"
                    ]),
                    None,
                ),
                allow(
                    "CreateSecretsUnderTheStacksPrefixOnly",
                    &["ssm:AddTagsToResource", "ssm:PutParameter"],
                    ssm_any.clone(),
                    None,
                ),
                allow(
                    "DeleteSecretsUnderTheStacksPrefixOnlyOnDestroyWithDataDeleted",
                    &["ssm:DeleteParameter"],
                    ssm_any,
                    None,
                ),
            ]
        },
    };
    const TEARDOWN: Teardown = Teardown::new(60, Deletion::Secret);

    /// The stacks' two passwords, and their AMI references read in the same calls.
    fn scope(targets: &Targets, _: &Observed) -> Scope {
        Scope {
            names: targets
                .stacks
                .iter()
                .flat_map(|(_, p)| {
                    [
                        naming::db_password_parameter(p),
                        naming::admin_password_parameter(p),
                    ]
                })
                .collect(),
            plain: targets.ami_params.clone(),
            ..Scope::default()
        }
    }

    type Desired = ParameterDesired;
    type Live = ParameterLive;

    fn name(desired: &ParameterDesired) -> String {
        desired.name.clone()
    }

    fn id(live: &ParameterLive) -> String {
        live.name.clone()
    }

    /// `DeleteParameter`. Only destroy calls it, and only when nothing kept refers to it.
    async fn delete(&self, aws: &Aws, live: &ParameterLive) -> Result<(), AwsError> {
        absent_is_success(
            aws.ssm
                .delete_parameter()
                .name(&live.name)
                .send()
                .await
                .map(|_| ())
                .aws("DeleteParameter"),
        )
    }

    /// Parameters are observed without tags: read them for the ownership check.
    async fn ownership_tags(&self, aws: &Aws, live: &ParameterLive) -> Result<Tags, AwsError> {
        let resp = aws
            .ssm
            .list_tags_for_resource()
            .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
            .resource_id(&live.name)
            .send()
            .await
            .aws("ListTagsForResource")?;
        Ok(resp
            .tag_list()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect())
    }

    /// `GetParameters` by name, ten names a call (the API's limit), without decryption; the
    /// plain names' values in the same calls.
    async fn observe(
        &self,
        aws: &Aws,
        scope: &Scope,
    ) -> Result<BTreeMap<String, ParameterLive>, AwsError> {
        let (mut found, values) = observe_with_plain(aws, &scope.names, &scope.plain).await?;
        for (name, value) in values {
            found
                .entry(name.clone())
                .or_insert_with(|| ParameterLive {
                    name,
                    kind: "String".into(),
                    version: 0,
                    arn: String::new(),
                    plain_value: None,
                })
                .plain_value = Some(value);
        }
        Ok(found)
    }

    fn diff(&self, _desired: &ParameterDesired, live: &ParameterLive) -> Vec<FieldDiff> {
        let mut d = Diffs::new();
        d.blocked(TYPE,
            "SecureString",
            live.kind.as_str(),
            "the parameter exists with another type; the reconciler never overwrites a secret: re-create it as a SecureString by hand",
        );
        d.finish()
    }

    /// Generates the password and stores it with `Overwrite=false`: if another writer created
    /// it in the meantime, theirs is kept.
    async fn create(
        &self,
        aws: &Aws,
        desired: &ParameterDesired,
    ) -> Result<ParameterLive, AwsError> {
        let secret = generate_password(PASSWORD_LENGTH)
            .map_err(|e| AwsError::unexpected("PutParameter", format!("no random source: {e}")))?;
        let put = aws
            .ssm
            .put_parameter()
            .name(&desired.name)
            .description(&desired.description)
            .value(secret.expose())
            .r#type(ParameterType::SecureString)
            .overwrite(false)
            .set_tags(Some(tags::ssm(&desired.tags)))
            .send()
            .await
            .aws("PutParameter");
        match put {
            Ok(_) => {}
            Err(e) if e.has_code("ParameterAlreadyExists") => {}
            Err(e) => return Err(e),
        }
        let scope = Scope {
            names: vec![desired.name.clone()],
            ..Scope::default()
        };
        self.observe(aws, &scope)
            .await?
            .remove(&desired.name)
            .ok_or_else(|| {
                AwsError::unexpected(
                    "GetParameters",
                    format!("{} is not visible after PutParameter", desired.name),
                )
            })
    }

    async fn update(
        &self,
        _aws: &Aws,
        _desired: &ParameterDesired,
        live: &ParameterLive,
        _diffs: &[FieldDiff],
    ) -> Result<ParameterLive, AwsError> {
        // Every difference of a parameter is blocked: there is nothing to update.
        Ok(live.clone())
    }
}

/// Stores `secret` as a new version of the parameter (rotation), or creates the parameter
/// with its ownership tags when it is missing (the recovery of a lost password). Returns the
/// version AWS answers.
pub async fn put_new_version(
    aws: &Aws,
    desired: &ParameterDesired,
    secret: &Secret,
    exists: bool,
) -> Result<i64, AwsError> {
    let mut put = aws
        .ssm
        .put_parameter()
        .name(&desired.name)
        .value(secret.expose())
        .r#type(ParameterType::SecureString)
        .overwrite(exists);
    if !exists {
        put = put
            .description(&desired.description)
            .set_tags(Some(tags::ssm(&desired.tags)));
    }
    let out = put.send().await.aws("PutParameter")?;
    Ok(out.version())
}

/// Reads a secret's value (for the database's creation, and to check a rotation).
pub async fn read_secret(aws: &Aws, name: &str) -> Result<Secret, AwsError> {
    let resp = aws
        .ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .aws("GetParameter")?;
    resp.parameter()
        .and_then(|p| p.value())
        .map(|v| Secret::new(v.to_string()))
        .ok_or_else(|| AwsError::unexpected("GetParameter", format!("{name} has no value")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_type_is_compared_and_it_is_never_overwritten() {
        let desired = ParameterDesired {
            name: "/p/db-password".into(),
            description: String::new(),
            tags: Tags::new(),
        };
        let live = ParameterLive {
            name: "/p/db-password".into(),
            kind: "SecureString".into(),
            version: 3,
            arn: String::new(),
            plain_value: None,
        };
        assert!(Parameters.diff(&desired, &live).is_empty());
        let plain = ParameterLive {
            kind: "String".into(),
            ..live
        };
        let diffs = Parameters.diff(&desired, &plain);
        assert_eq!(diffs.len(), 1);
        assert!(diffs[0].blocked.is_some());
    }
}
