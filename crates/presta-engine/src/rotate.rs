//! `rotate-db-password`: a new database password in the three places that must agree, each
//! step verified before the next:
//!
//! 1. a new random value as a new version of the SSM parameter (or the parameter created
//!    again with its ownership tags when it was lost), read back;
//! 2. `ModifyDBInstance` with it, applied immediately, until RDS has no change pending;
//! 3. `presta-ctl set-db-password` on one instance of the group (SSM Run Command): the
//!    shop's `parameters.php` on EFS (shared by every instance) takes the value from SSM,
//!    atomically, and the caches are cleared.
//!
//! The report says where it stopped when a step fails. Running it again finishes the job: it
//! starts over with a new value, and every step is idempotent.

use std::time::Duration;

use presta_aws::commands::{self, Maintenance};
use presta_aws::parameter::{self, ParameterDesired};
use presta_aws::{Aws, auto_scaling_group, db_instance};
use presta_spec::Stack;
use presta_spec::naming::Component;
use serde::Serialize;

/// One step's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// What a rotation did.
#[derive(Debug, Clone, Serialize)]
pub struct Rotation {
    pub stack: String,
    pub parameter: String,
    /// The parameter's version holding the new value (never the value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    pub steps: Vec<Step>,
    pub completed: bool,
    /// Where it stopped and what to do, when it did not complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

impl Rotation {
    fn step(&mut self, step: &'static str, result: Result<String, String>) -> bool {
        let ok = result.is_ok();
        let detail = result.unwrap_or_else(|e| e);
        if !ok {
            self.stopped = Some(format!(
                "stopped at `{step}`: {detail}. Run `presta-reconciler rotate-db-password --stack {}` again once the cause is fixed: it starts over with a new password and finishes every step",
                self.stack
            ));
        }
        self.steps.push(Step { step, ok, detail });
        ok
    }
}

/// Rotates `stack`'s database password; `wait` bounds the database change and the instance
/// command each.
pub async fn rotate(aws: &Aws, stack: &Stack, wait: Duration) -> Rotation {
    let desired = ParameterDesired::db_password(stack);
    let db = stack.resource_name(Component::DbInstance);
    let group = stack.resource_name(Component::AutoScalingGroup);
    let mut r = Rotation {
        stack: stack.name().to_string(),
        parameter: desired.name.clone(),
        version: None,
        steps: Vec::new(),
        completed: false,
        stopped: None,
    };
    // Before anything changes: the database must be there to take the password.
    let ready = match db_instance::password_change_state(aws, &db).await {
        Ok((status, _)) if status.is_available() => Ok(()),
        Ok((status, _)) => Err(format!("the database `{db}` is `{status}`, not available")),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = ready {
        r.step("check the database", Err(e));
        return r;
    }
    // 1. The new value in SSM, read back.
    let secret = match presta_aws::secret::generate_password(parameter::PASSWORD_LENGTH) {
        Ok(s) => s,
        Err(e) => {
            r.step(
                "store the new password",
                Err(format!("no random source: {e}")),
            );
            return r;
        }
    };
    let stored = store(aws, &desired, &secret).await;
    if let Ok((v, _)) = &stored {
        r.version = Some(*v);
    }
    if !r.step("store the new password", stored.map(|(_, note)| note)) {
        return r;
    }
    // 2. The database, until RDS has applied it.
    let modified = set_on_database(aws, &db, &secret, wait).await;
    if !r.step("change the database's password", modified) {
        return r;
    }
    // 3. The shop's parameters.php, through one instance (the file is on EFS).
    let on_instance = set_on_instance(aws, &group, wait).await;
    if !r.step("update the shop's parameters.php", on_instance) {
        return r;
    }
    r.completed = true;
    r
}

/// Step 1: the new value stored as a new version of the parameter, and read back: the
/// version, and what to say of it.
async fn store(
    aws: &Aws,
    desired: &ParameterDesired,
    secret: &presta_aws::secret::Secret,
) -> Result<(i64, String), String> {
    let exists = parameter::read_secret(aws, &desired.name).await.is_ok();
    let version = parameter::put_new_version(aws, desired, secret, exists)
        .await
        .map_err(|e| e.to_string())?;
    let back = parameter::read_secret(aws, &desired.name)
        .await
        .map_err(|e| e.to_string())?;
    if back.expose() != secret.expose() {
        return Err(
            "the parameter does not hold the new value after PutParameter (another writer?)"
                .to_string(),
        );
    }
    let note = if exists {
        ""
    } else {
        " (the parameter was missing: created again)"
    };
    Ok((version, format!("{} version {version}{note}", desired.name)))
}

/// Step 2: the database's master password, waited for until RDS has applied it.
async fn set_on_database(
    aws: &Aws,
    db: &str,
    secret: &presta_aws::secret::Secret,
    wait: Duration,
) -> Result<String, String> {
    db_instance::set_master_password(aws, db, secret)
        .await
        .map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let (status, pending) = db_instance::password_change_state(aws, db)
            .await
            .map_err(|e| e.to_string())?;
        if status.is_available() && !pending {
            return Ok(format!("{db}: master password changed"));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "{db} is still `{status}` after {} s (change pending: {pending})",
                wait.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Step 3: the shop's `parameters.php` (on EFS) through one instance in service, caches cleared.
async fn set_on_instance(aws: &Aws, group: &str, wait: Duration) -> Result<String, String> {
    let instances = auto_scaling_group::in_service_instances(aws, group)
        .await
        .map_err(|e| e.to_string())?;
    let Some(instance) = instances.first() else {
        return Err(format!(
            "no instance of {group} is InService to update the shop's parameters.php"
        ));
    };
    let line = Maintenance::SetDbPassword
        .shell_line(None)
        .map_err(|e| e.to_string())?;
    let run = commands::run_on(
        aws,
        group,
        Some(instance),
        Maintenance::SetDbPassword.as_str(),
        &line,
        wait,
    )
    .await
    .map_err(|e| e.to_string())?;
    let result = run.results.first();
    if run.succeeded {
        return Ok(format!(
            "{instance}: parameters.php updated, caches cleared (command {})",
            run.command_id
        ));
    }
    Err(format!(
        "{instance}: {} (exit {}): {}",
        result.map_or("no answer", |r| r.status.as_str()),
        result
            .and_then(|r| r.exit_code)
            .map_or("-".to_string(), |c| c.to_string()),
        result.map_or("", |r| r.output.as_str()).trim()
    ))
}
