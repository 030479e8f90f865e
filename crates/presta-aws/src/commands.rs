//! The runbook's maintenance commands, run on a stack's instances through SSM Run Command
//! (`AWS-RunShellScript` targeted at the instances of the stack's Auto Scaling group): no SSH,
//! no open port. Only a closed list of `presta-ctl` commands, never an arbitrary shell string;
//! an argument (a domain, a thumbnail type) is checked character by character before any AWS
//! call.

use std::time::{Duration, Instant};

use aws_sdk_ssm::types::{CommandInvocationStatus, Target};
use serde::Serialize;

use crate::clients::Aws;
use crate::error::{AwsError, AwsResultExt};

/// The document every command goes through.
pub const DOCUMENT: &str = "AWS-RunShellScript";
/// The instance tag Auto Scaling puts on the group's instances: the command's target.
pub const GROUP_TAG: &str = "aws:autoscaling:groupName";

/// The commands the controller may run (`presta-ctl <command>` on every instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Maintenance {
    /// Purge PrestaShop's caches.
    CacheClear,
    /// Rebuild thumbnails (argument: the image type, default `all`).
    Thumbs,
    /// Regenerate `.htaccess`.
    Htaccess,
    /// Container, EFS mount, install lock, domain.
    Status,
    /// Store the shop's domain (argument: the domain, default the stack's).
    SetDomain,
    /// Rewrite `database_password` in the shop's parameters.php from the SSM parameter and
    /// clear the cache (used by `rotate-db-password`; no value on the command line).
    SetDbPassword,
}

impl Maintenance {
    pub const ALL: [Maintenance; 6] = [
        Maintenance::CacheClear,
        Maintenance::Thumbs,
        Maintenance::Htaccess,
        Maintenance::Status,
        Maintenance::SetDomain,
        Maintenance::SetDbPassword,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Maintenance::CacheClear => "cache-clear",
            Maintenance::Thumbs => "thumbs",
            Maintenance::Htaccess => "htaccess",
            Maintenance::Status => "status",
            Maintenance::SetDomain => "set-domain",
            Maintenance::SetDbPassword => "set-db-password",
        }
    }

    /// What people may run (`exec`, `POST /stacks/{stack}/commands/{command}`);
    /// `set-db-password` belongs to `rotate-db-password` only.
    pub const PUBLIC: [Maintenance; 5] = [
        Maintenance::CacheClear,
        Maintenance::Thumbs,
        Maintenance::Htaccess,
        Maintenance::Status,
        Maintenance::SetDomain,
    ];

    /// The command named `name`, or why not.
    pub fn parse(name: &str) -> Result<Maintenance, String> {
        Maintenance::PUBLIC
            .into_iter()
            .find(|m| m.as_str() == name)
            .ok_or_else(|| {
                format!(
                    "unknown command `{name}`: the commands are {} (presta-ctl's; no other command is ever run)",
                    Maintenance::PUBLIC.map(|m| m.as_str()).join(", ")
                )
            })
    }

    /// The shell line sent to the instances, with `arg` checked.
    pub fn shell_line(self, arg: Option<&str>) -> Result<String, String> {
        let checked = |allowed: fn(char) -> bool, what: &str| -> Result<String, String> {
            match arg {
                None => Ok(String::new()),
                Some(a) if !a.is_empty() && a.len() <= 253 && a.chars().all(allowed) => {
                    Ok(format!(" {a}"))
                }
                Some(a) => Err(format!(
                    "`{a}` is not a valid {what} for `{}`",
                    self.as_str()
                )),
            }
        };
        let tail = match self {
            Maintenance::SetDomain => checked(
                |c| c.is_ascii_alphanumeric() || c == '.' || c == '-',
                "domain",
            )?,
            Maintenance::Thumbs => checked(
                |c| c.is_ascii_lowercase() || c == '_',
                "image type (all, products, categories, manufacturers, suppliers, stores)",
            )?,
            _ if arg.is_some() => {
                return Err(format!("`{}` takes no argument", self.as_str()));
            }
            _ => String::new(),
        };
        Ok(format!("presta-ctl {}{tail}", self.as_str()))
    }
}

/// One instance's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceResult {
    pub instance: String,
    /// `Success`, `Failed`, `TimedOut`, `Cancelled`, ... or `InProgress` when the wait ended.
    pub status: String,
    pub exit_code: Option<i32>,
    /// The last lines of the output (at most 2 KiB).
    pub output: String,
}

/// One command on one stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandRun {
    pub command: String,
    pub command_id: String,
    pub document: &'static str,
    pub group: String,
    pub results: Vec<InstanceResult>,
    /// Every instance finished within the wait.
    pub complete: bool,
    /// Every instance finished with exit 0.
    pub succeeded: bool,
}

fn tail(s: &str) -> String {
    const MAX: usize = 2048;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut start = s.len() - MAX;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

fn terminal(s: &CommandInvocationStatus) -> bool {
    !matches!(
        s,
        CommandInvocationStatus::Pending
            | CommandInvocationStatus::InProgress
            | CommandInvocationStatus::Delayed
            | CommandInvocationStatus::Cancelling
    )
}

/// Sends `line` to the instances of `group` and waits (at most `wait`) for every result.
pub async fn run(
    aws: &Aws,
    group: &str,
    command: &str,
    line: &str,
    wait: Duration,
) -> Result<CommandRun, AwsError> {
    run_on(aws, group, None, command, line, wait).await
}

/// [`run`] on one instance of the group only (`instance`), or on all of them.
pub async fn run_on(
    aws: &Aws,
    group: &str,
    instance: Option<&str>,
    command: &str,
    line: &str,
    wait: Duration,
) -> Result<CommandRun, AwsError> {
    let send = aws.ssm.send_command().document_name(DOCUMENT);
    let send = match instance {
        Some(id) => send.instance_ids(id),
        None => send.targets(
            Target::builder()
                .key(format!("tag:{GROUP_TAG}"))
                .values(group)
                .build(),
        ),
    };
    let sent = send
        .parameters("commands", vec![line.to_string()])
        .parameters("executionTimeout", vec![wait.as_secs().max(60).to_string()])
        .timeout_seconds(wait.as_secs().clamp(30, 2_592_000) as i32)
        .comment(format!("presta-reconciler: {command} on {group}"))
        .send()
        .await
        .aws()?;
    let cmd = sent
        .command()
        .ok_or_else(|| AwsError::unexpected("SendCommand", "no command in the answer"))?;
    let id = cmd.command_id().unwrap_or_default().to_string();
    let deadline = Instant::now() + wait;
    // Polled every second at first (a cache clear takes a few), then less and less often, up
    // to every 5 s (thumbnails of a large catalogue take minutes).
    let mut pause = Duration::from_secs(1);
    loop {
        // The counts of SendCommand's answer are 0 on AWS; ListCommands has the real one.
        let listed = aws.ssm.list_commands().command_id(&id).send().await.aws()?;
        let expected = listed
            .commands()
            .first()
            .map_or(0, |c| c.target_count().max(0) as usize);
        let out = aws
            .ssm
            .list_command_invocations()
            .command_id(&id)
            .details(true)
            .send()
            .await
            .aws()?;
        let invocations = out.command_invocations();
        let done = !invocations.is_empty()
            && invocations.len() >= expected
            && invocations.iter().all(|i| i.status().is_some_and(terminal));
        if done || Instant::now() >= deadline {
            let results: Vec<InstanceResult> = invocations
                .iter()
                .map(|i| {
                    let plugin = i.command_plugins().first();
                    InstanceResult {
                        instance: i.instance_id().unwrap_or_default().to_string(),
                        status: i
                            .status()
                            .map(|s| s.as_str().to_string())
                            .unwrap_or_default(),
                        exit_code: plugin.map(|p| p.response_code()),
                        output: tail(plugin.and_then(|p| p.output()).unwrap_or_default()),
                    }
                })
                .collect();
            let succeeded = done
                && !results.is_empty()
                && results
                    .iter()
                    .all(|r| r.status == "Success" && r.exit_code == Some(0));
            return Ok(CommandRun {
                command: line.to_string(),
                command_id: id,
                document: DOCUMENT,
                group: group.to_string(),
                results,
                complete: done,
                succeeded,
            });
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 3 / 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_closed_list_and_checked_arguments_are_sent() {
        assert_eq!(
            Maintenance::parse("cache-clear")
                .unwrap()
                .shell_line(None)
                .unwrap(),
            "presta-ctl cache-clear"
        );
        let e = Maintenance::parse("rm -rf /").unwrap_err();
        assert!(
            e.contains("cache-clear, thumbs, htaccess, status, set-domain"),
            "{e}"
        );
        assert_eq!(
            Maintenance::SetDomain
                .shell_line(Some("shop.example.com"))
                .unwrap(),
            "presta-ctl set-domain shop.example.com"
        );
        assert!(
            Maintenance::SetDomain
                .shell_line(Some("a.com; rm -rf /"))
                .is_err()
        );
        assert!(Maintenance::Thumbs.shell_line(Some("$(reboot)")).is_err());
        assert!(Maintenance::CacheClear.shell_line(Some("x")).is_err());
        assert_eq!(
            Maintenance::Thumbs.shell_line(Some("products")).unwrap(),
            "presta-ctl thumbs products"
        );
    }

    #[test]
    fn long_output_keeps_its_tail() {
        let s = "x".repeat(5000) + "END";
        let t = tail(&s);
        assert!(t.ends_with("END") && t.len() < 2100);
    }
}
