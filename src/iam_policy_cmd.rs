//! `presta-reconciler iam-policy -f FILE`: the daemon's IAM policy narrowed to a configuration;
//! `iam-policy --reference`: the policy for any configuration (`deploy/iam/policy.json`).
//!
//! The reference policy is generated from the kind registry (every action the kinds declare,
//! writes bounded by the ownership tag or to resources being created:
//! [`presta_aws::iam::reference_policy`]). `-f` narrows what depends on the stacks:
//! `iam:PassRole` to the roles of the instance profiles the stacks name, and the SSM
//! statements to the stacks' parameter prefixes in their regions.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

use presta_aws::iam::{LEASE_TABLE, PASS_ROLE_ANY, SSM_ANY};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Desired-state files or directories: every stack the daemon will run.
    #[arg(
        short = 'f',
        long = "file",
        required_unless_present = "reference",
        value_name = "FILE"
    )]
    files: Vec<PathBuf>,
    /// Print the policy for any configuration, as shipped in deploy/iam/policy.json.
    #[arg(long, conflicts_with_all = ["files", "roles"])]
    reference: bool,
    /// The role of an instance profile, when it is not named like the profile (the console
    /// and most tools name both alike): `PROFILE=ROLE`, repeatable.
    #[arg(long = "role", value_name = "PROFILE=ROLE")]
    roles: Vec<String>,
    /// The lease table of `serve --lease dynamodb:TABLE`, when it is not the default name.
    #[arg(long, value_name = "TABLE", default_value = "presta-reconciler-lease")]
    lease_table: String,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if args.reference {
        println!(
            "{}",
            serde_json::to_string_pretty(&presta_aws::iam::reference_policy())?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let stacks: Vec<_> = presta_spec::load_paths(&args.files)?
        .into_iter()
        .map(|l| l.stack.with_defaults())
        .collect();
    let mut overrides = std::collections::BTreeMap::new();
    for r in &args.roles {
        let (profile, role) = r.split_once('=').with_context(|| {
            format!(
                "--role `{r}`: expected PROFILE=ROLE, e.g. --role shop-instance=shop-instance-role"
            )
        })?;
        overrides.insert(profile.trim().to_string(), role.trim().to_string());
    }
    let roles: BTreeSet<String> = stacks
        .iter()
        .map(|s| {
            let profile = &s.spec.compute.instance_profile;
            let role = overrides.get(profile).unwrap_or(profile);
            format!("arn:aws:iam::*:role/{role}")
        })
        .collect();
    // The prefix of each stack, and the parameters an imported stack keeps outside it.
    let parameters: BTreeSet<String> = stacks
        .iter()
        .flat_map(|s| {
            let arn = |path: &str| {
                let slash = if path.starts_with('/') { "" } else { "/" };
                format!("arn:aws:ssm:{}:*:parameter{slash}{path}", s.spec.region)
            };
            let prefix = s.parameter_prefix();
            let under = |p: &String| p.starts_with(&format!("{prefix}/"));
            std::iter::once(arn(&format!("{prefix}/*")))
                .chain(
                    s.names()
                        .parameters()
                        .iter()
                        .filter(|p| !under(p))
                        .map(|p| arn(p)),
                )
                .collect::<Vec<_>>()
        })
        .collect();
    let table = format!("arn:aws:dynamodb:*:*:table/{}", args.lease_table);
    // Route 53 changes: the stacks' hosted zones, when each is given by its id.
    let mut zones = Some(BTreeSet::new());
    for s in &stacks {
        let Some(dns) = &s.spec.dns else { continue };
        let id = dns.hosted_zone.trim_start_matches("/hostedzone/");
        if presta_spec::validate::zone_id_like(id) {
            if let Some(z) = zones.as_mut() {
                z.insert(format!("arn:aws:route53:::hostedzone/{id}"));
            }
        } else {
            eprintln!(
                "note: stack `{}` names its hosted zone `{}` by name: Route 53 changes stay allowed on every zone; write the zone's id in spec.dns.hostedZone to limit them to it",
                s.name(),
                dns.hosted_zone
            );
            zones = None;
        }
    }
    let mut policy = narrow(&roles, &parameters, &table)?;
    narrow_zones(&mut policy, zones.as_ref());
    println!("{}", serde_json::to_string_pretty(&policy)?);
    Ok(ExitCode::SUCCESS)
}

/// The reference policy with PassRole limited to `roles`, the SSM statements to `parameters`
/// and the lease statement to `table` (ARNs).
fn narrow(
    roles: &BTreeSet<String>,
    parameters: &BTreeSet<String>,
    table: &str,
) -> anyhow::Result<Value> {
    let mut policy: Value = presta_aws::iam::reference_policy();
    let statements = policy["Statement"]
        .as_array_mut()
        .context("the built-in policy has no Statement list")?;
    let as_list = |set: &BTreeSet<String>| Value::from(set.iter().cloned().collect::<Vec<_>>());
    for st in statements.iter_mut() {
        let resource = &mut st["Resource"];
        match resource {
            Value::String(r) if r == PASS_ROLE_ANY => *resource = as_list(roles),
            Value::String(r) if r == SSM_ANY => *resource = as_list(parameters),
            Value::String(r) if r == LEASE_TABLE => *resource = Value::from(table),
            Value::Array(list) if list.iter().any(|r| r == SSM_ANY) => {
                let mut out: Vec<Value> = Vec::new();
                for r in list.iter() {
                    if r == SSM_ANY {
                        out.extend(parameters.iter().cloned().map(Value::from));
                    } else {
                        out.push(r.clone());
                    }
                }
                *list = out;
            }
            _ => {}
        }
    }
    Ok(policy)
}

/// The Route 53 statement limited to `zones` (ARNs); removed when no stack has a zone;
/// left on every zone when `zones` is `None` (a zone given by name).
fn narrow_zones(policy: &mut Value, zones: Option<&BTreeSet<String>>) {
    let Some(zones) = zones else { return };
    let Some(statements) = policy["Statement"].as_array_mut() else {
        return;
    };
    let any = Value::from(presta_aws::dns_record::ZONES_ANY);
    if zones.is_empty() {
        statements.retain(|st| st["Resource"] != any);
        return;
    }
    for st in statements.iter_mut().filter(|st| st["Resource"] == any) {
        st["Resource"] = Value::from(zones.iter().cloned().collect::<Vec<_>>());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn route53_changes_are_limited_to_the_declared_zones() {
        use super::*;
        let any = presta_aws::dns_record::ZONES_ANY;
        let mut policy = presta_aws::iam::reference_policy();
        let zones = BTreeSet::from(["arn:aws:route53:::hostedzone/Z0123456789ABC".to_string()]);
        narrow_zones(&mut policy, Some(&zones));
        let text = policy.to_string();
        assert!(!text.contains(any) && text.contains("hostedzone/Z0123456789ABC"));
        let mut policy = presta_aws::iam::reference_policy();
        narrow_zones(&mut policy, Some(&BTreeSet::new()));
        assert!(
            !policy
                .to_string()
                .contains("route53:ChangeResourceRecordSets")
        );
        let mut policy = presta_aws::iam::reference_policy();
        narrow_zones(&mut policy, None);
        assert!(policy.to_string().contains(any));
    }

    use super::*;

    #[test]
    fn pass_role_and_parameters_are_narrowed_and_nothing_else_changes() {
        let roles = BTreeSet::from(["arn:aws:iam::*:role/shop-role".to_string()]);
        let params = BTreeSet::from(["arn:aws:ssm:eu-west-3:*:parameter/p/shop/*".to_string()]);
        let narrowed = narrow(&roles, &params, "arn:aws:dynamodb:*:*:table/t").unwrap();
        let text = narrowed.to_string();
        assert!(!text.contains(PASS_ROLE_ANY));
        assert!(!text.contains(SSM_ANY));
        assert!(text.contains("role/shop-role"));
        assert!(text.contains("parameter/p/shop/*"));
        assert!(text.contains("table/t\"") && !text.contains(LEASE_TABLE));
        let original: Value = presta_aws::iam::reference_policy();
        assert_eq!(
            narrowed["Statement"].as_array().unwrap().len(),
            original["Statement"].as_array().unwrap().len()
        );
        // The public AMI parameters stay readable.
        assert!(text.contains("parameter/aws/service/*"));
    }
}
