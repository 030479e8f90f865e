//! SSM Parameter Store SecureStrings: the database master password and the shop's admin
//! password. Generated once when absent, never read except by the one call that needs the
//! value, never shown.
//!
//! **A value overwritten by hand is drift.** Every version the reconciler writes (creation,
//! rotation, recovery) carries the parameter label [`WRITTEN_LABEL`]; the observation asks, in
//! the same `GetParameters` call, for the latest version and for the labelled one
//! (`name:presta-reconciler`). A latest version newer than the labelled one was written by
//! someone else (`aws ssm put-parameter --overwrite`): the update puts the labelled version's
//! value back as a new version (read and written without ever being logged) and moves the
//! label to it, so the database, the shop and the next instance agree again. A parameter with
//! several versions and no label (unlabelled by hand, or its labelled version pushed out of
//! SSM's 100-version history) is blocked with `rotate-db-password` as the way out; a single
//! unlabelled version (a parameter written before labels) is labelled as it is.

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
use presta_spec::naming::{Component, StackNames};
use serde_json::json;

/// Length of generated passwords (about 190 bits).
pub const PASSWORD_LENGTH: usize = 32;

/// A secret parameter the stack needs.
/// The fields this kind manages, as its diff reports them and its update reads them.
pub mod fields {
    use crate::diff::Field;

    pub const TYPE: Field = Field("type");
    /// Which version holds the value in use (never the value itself).
    pub const VALUE_VERSION: Field = Field("valueVersion");
}

/// The parameter label on the version whose value the reconciler wrote last.
pub const WRITTEN_LABEL: &str = "presta-reconciler";

fn labelled(name: &str) -> String {
    format!("{name}:{WRITTEN_LABEL}")
}

#[derive(Debug, Clone)]
pub struct ParameterDesired {
    /// Full path, e.g. `/presta-reconciler/demo/db-password`.
    pub name: String,
    pub description: String,
    pub tags: Tags,
    /// Whether the value's version is compared: the database password, the one value the
    /// database and every instance depend on. The admin password is read once, at the shop's
    /// install, and changed in the back office afterwards: its versions are labelled, not
    /// compared.
    pub tracked: bool,
}

impl ParameterDesired {
    /// The stack's database master password parameter (`secrets.dbPasswordParameter`, else
    /// under the prefix).
    pub fn db_password(stack: &Stack) -> Self {
        let mut p = Self::secret(stack, stack.names().db_password, "database master password");
        p.tracked = true;
        p
    }

    /// The shop's admin password parameter; `None` for a shop that is already installed
    /// (`secrets.adminPasswordParameter: none`).
    pub fn admin_password(stack: &Stack) -> Option<Self> {
        let name = stack.names().admin_password?;
        Some(Self::secret(stack, name, "PrestaShop admin password"))
    }

    fn secret(stack: &Stack, name: String, what: &str) -> Self {
        ParameterDesired {
            description: format!(
                "presta-reconciler {}: {what} (generated; the versions it wrote carry the label presta-reconciler)",
                stack.name()
            ),
            tags: stack
                .names()
                .tags(Component::DbInstance, &stack.metadata.labels),
            name,
            tracked: false,
        }
    }
}

/// A live parameter: metadata only, never the value.
#[derive(Debug, Clone, PartialEq)]
pub struct ParameterLive {
    pub name: String,
    pub kind: String,
    pub version: i64,
    /// The version carrying [`WRITTEN_LABEL`]: the value the reconciler wrote last; `None`
    /// when no version carries it.
    pub written_version: Option<i64>,
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
    tracked: &[String],
    plain: &[String],
) -> Result<(BTreeMap<String, ParameterLive>, BTreeMap<String, String>), AwsError> {
    let mut all: Vec<String> = names
        .iter()
        .flat_map(|n| {
            let mut asked = vec![n.clone()];
            asked.extend(tracked.contains(n).then(|| labelled(n)));
            asked
        })
        .collect();
    for p in plain {
        if !all.contains(p) {
            all.push(p.clone());
        }
    }
    let mut found: BTreeMap<String, ParameterLive> = BTreeMap::new();
    let mut values = BTreeMap::new();
    // name → versions seen: the latest and, when its selector answered, the labelled one
    // (AWS says which is which in `Selector`; without it, the labelled one is the lower).
    let mut labelled_found: BTreeMap<String, Option<i64>> = BTreeMap::new();
    let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for chunk in all.chunks(10) {
        let resp = aws
            .ssm
            .get_parameters()
            .set_names(Some(chunk.to_vec()))
            .with_decryption(false)
            .send()
            .await
            .aws()?;
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
                if p.selector() == Some(&format!(":{WRITTEN_LABEL}")) {
                    labelled_found.insert(name.to_string(), Some(p.version()));
                }
                seen.entry(name.to_string()).or_default().push(p.version());
                let live = ParameterLive {
                    name: name.to_string(),
                    kind,
                    version: p.version(),
                    written_version: None,
                    arn: p.arn().unwrap_or_default().to_string(),
                    plain_value: None,
                };
                let newer = found.get(name).is_none_or(|l| l.version < live.version);
                if newer {
                    found.insert(live.name.clone(), live);
                }
            }
        }
        for invalid in resp.invalid_parameters() {
            if let Some(name) = invalid.strip_suffix(&format!(":{WRITTEN_LABEL}")) {
                labelled_found.insert(name.to_string(), None);
            }
        }
    }
    for (name, live) in found.iter_mut().filter(|(n, _)| tracked.contains(n)) {
        live.written_version = match labelled_found.get(name) {
            Some(v) => *v,
            // The selector answered but not in `Selector`: the lower of the versions seen.
            None => seen.get(name).and_then(|v| v.iter().min().copied()),
        };
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
                    &[
                        "ssm:AddTagsToResource",
                        "ssm:PutParameter",
                        "ssm:LabelParameterVersion",
                    ],
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
                .flat_map(StackNames::parameters)
                .collect(),
            tracked: targets
                .stacks
                .iter()
                .map(|s| s.db_password.clone())
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

    /// The one parameter, with its labelled version when its value is compared.
    fn lookup(desired: &ParameterDesired) -> Scope {
        Scope {
            names: vec![desired.name.clone()],
            tracked: if desired.tracked {
                vec![desired.name.clone()]
            } else {
                Vec::new()
            },
            ..Scope::default()
        }
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
                .aws(),
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
            .aws()?;
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
        let (mut found, values) =
            observe_with_plain(aws, &scope.names, &scope.tracked, &scope.plain).await?;
        for (name, value) in values {
            found
                .entry(name.clone())
                .or_insert_with(|| ParameterLive {
                    name,
                    kind: "String".into(),
                    version: 0,
                    written_version: None,
                    arn: String::new(),
                    plain_value: None,
                })
                .plain_value = Some(value);
        }
        Ok(found)
    }

    fn diff(&self, desired: &ParameterDesired, live: &ParameterLive) -> Vec<FieldDiff> {
        let mut d = Diffs::new();
        d.blocked(TYPE,
            "SecureString",
            live.kind.as_str(),
            "the parameter exists with another type; the reconciler never overwrites a secret: re-create it as a SecureString by hand",
        );
        if live.kind == "SecureString" && desired.tracked {
            let latest = format!("version {}", live.version);
            match live.written_version {
                Some(w) if w == live.version => {}
                Some(w) => {
                    d.field(
                        VALUE_VERSION,
                        &format!("version {w} (written by the reconciler)"),
                        &format!("{latest} (written by someone else)"),
                    );
                }
                None if live.version <= 1 => {
                    d.field(
                        VALUE_VERSION,
                        &format!("{latest} (labelled `{WRITTEN_LABEL}`)"),
                        &format!("{latest} (not labelled)"),
                    );
                }
                None => {
                    d.blocked(
                    VALUE_VERSION,
                    "a version labelled `presta-reconciler`",
                    latest.as_str(),
                    "no version carries the reconciler's label (removed by hand, pushed out of the 100-version history, or written before labels): the reconciler cannot tell which value the database uses; run `presta-reconciler rotate-db-password --stack <stack>` to set a new one everywhere",
                    );
                }
            }
        }
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
            .aws();
        match put {
            Ok(_) => {}
            // Created meanwhile (another writer, or our own first attempt whose answer was
            // lost and retried): kept as it is.
            Err(e) if e.has_code("ParameterAlreadyExists") => {}
            Err(e) => return Err(e),
        }
        let scope = Self::lookup(desired);
        let mut live = self
            .observe(aws, &scope)
            .await?
            .remove(&desired.name)
            .ok_or_else(|| {
                AwsError::unexpected(
                    "GetParameters",
                    format!("{} is not visible after PutParameter", desired.name),
                )
            })?;
        // A single version is the one just written (as for a parameter written before
        // labels): vouched for. Several versions without a label are left to the diff.
        if live.written_version.is_none() && live.version == 1 {
            label_written(aws, &desired.name, 1).await?;
            live.written_version = Some(1);
        }
        Ok(live)
    }

    /// Puts back the value the reconciler wrote (the labelled version's, as a new version,
    /// labelled), or labels a single unlabelled version. The type is never changed.
    async fn update(
        &self,
        aws: &Aws,
        desired: &ParameterDesired,
        live: &ParameterLive,
        diffs: &[FieldDiff],
    ) -> Result<ParameterLive, AwsError> {
        if !diffs
            .iter()
            .any(|d| d.field == VALUE_VERSION.0 && d.blocked.is_none())
        {
            return Ok(live.clone());
        }
        let version = match live.written_version {
            Some(w) if w < live.version => {
                let value = read_secret(aws, &format!("{}:{w}", live.name)).await?;
                let out = aws
                    .ssm
                    .put_parameter()
                    .name(&desired.name)
                    .value(value.expose())
                    .r#type(ParameterType::SecureString)
                    .overwrite(true)
                    .send()
                    .await
                    .aws()?;
                label_written(aws, &desired.name, out.version()).await?;
                tracing::warn!(parameter = %desired.name, overwritten = live.version, restored_from = w, version = out.version(), "a secret overwritten by hand was put back (its value is never logged)");
                out.version()
            }
            _ => {
                label_written(aws, &desired.name, live.version).await?;
                live.version
            }
        };
        Ok(ParameterLive {
            version,
            written_version: Some(version),
            ..live.clone()
        })
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
    let out = put.send().await.aws()?;
    label_written(aws, &desired.name, out.version()).await?;
    Ok(out.version())
}

/// Marks `version` as the one whose value the reconciler wrote (the label moves to it).
pub async fn label_written(aws: &Aws, name: &str, version: i64) -> Result<(), AwsError> {
    aws.ssm
        .label_parameter_version()
        .name(name)
        .parameter_version(version)
        .labels(WRITTEN_LABEL)
        .send()
        .await
        .map(|_| ())
        .aws()
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
        .aws()?;
    resp.parameter()
        .and_then(|p| p.value())
        .map(|v| Secret::new(v.to_string()))
        .ok_or_else(|| AwsError::unexpected("GetParameter", format!("{name} has no value")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_type_and_the_db_passwords_written_version_are_compared() {
        let desired = ParameterDesired {
            name: "/p/db-password".into(),
            description: String::new(),
            tags: Tags::new(),
            tracked: true,
        };
        let live = ParameterLive {
            name: "/p/db-password".into(),
            kind: "SecureString".into(),
            version: 3,
            written_version: Some(3),
            arn: String::new(),
            plain_value: None,
        };
        assert!(Parameters.diff(&desired, &live).is_empty());
        // Overwritten by hand: drift on which version holds the value, never the value.
        let overwritten = ParameterLive {
            version: 4,
            ..live.clone()
        };
        let diffs = Parameters.diff(&desired, &overwritten);
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].field, "valueVersion");
        assert!(diffs[0].blocked.is_none());
        assert_eq!(diffs[0].desired, "version 3 (written by the reconciler)");
        // No label: one version is labelled as it is; several are blocked.
        let first = ParameterLive {
            version: 1,
            written_version: None,
            ..live.clone()
        };
        assert!(Parameters.diff(&desired, &first)[0].blocked.is_none());
        let unknown = ParameterLive {
            written_version: None,
            ..live.clone()
        };
        let diffs = Parameters.diff(&desired, &unknown);
        assert!(
            diffs[0]
                .blocked
                .as_deref()
                .unwrap()
                .contains("rotate-db-password")
        );
        let plain = ParameterLive {
            kind: "String".into(),
            ..live
        };
        let diffs = Parameters.diff(&desired, &plain);
        assert_eq!(diffs.len(), 1);
        assert!(diffs[0].blocked.is_some());
    }
}
