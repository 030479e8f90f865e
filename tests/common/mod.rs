//! Shared helpers of the end-to-end tests: a seeded emulator per test, the real binary pointed
//! at it, and AWS SDK clients for checking and injecting drift.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use presta_emulator::Emulator;

pub struct Env {
    pub emu: Emulator,
    pub dir: tempfile::TempDir,
}

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

impl Env {
    /// An emulator with the demo network seeded.
    pub fn start() -> Env {
        let emu = Emulator::builder()
            .seed("demo")
            .instance_refresh_seconds(1.0)
            .start()
            .expect("the emulator starts");
        Env {
            emu,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The demo config with `edit` applied to its text, written to a temporary file.
    pub fn config(&self, name: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
        let text = std::fs::read_to_string(root().join("config/demo.yaml")).unwrap();
        let path = self.dir.path().join(name);
        std::fs::write(&path, edit(text)).unwrap();
        path
    }

    pub fn demo(&self) -> PathBuf {
        root().join("config/demo.yaml")
    }

    /// Runs the binary against the emulator.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_presta-reconciler"));
        cmd.current_dir(root())
            .args(args)
            .env_remove("AWS_PROFILE")
            .env("RUST_LOG", "warn");
        for (k, v) in self.emu.env() {
            cmd.env(k, v);
        }
        cmd.output().expect("the binary runs")
    }

    /// `apply -f file`, asserting success; returns stdout.
    pub fn apply(&self, file: &Path) -> String {
        let out = self.cli(&["apply", "-f", file.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "apply failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// `plan -f file --output json`: exit code and the report.
    pub fn plan_json(&self, file: &Path) -> (i32, serde_json::Value) {
        let out = self.cli(&["plan", "-f", file.to_str().unwrap(), "--output", "json"]);
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "plan output is not JSON ({e}):\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), report)
    }

    /// Mutating calls the emulator saw since the last reset.
    pub fn mutating_calls(&self) -> Vec<String> {
        self.emu
            .calls()
            .unwrap()
            .into_iter()
            .filter(|c| c.is_mutating())
            .map(|c| format!("{} {}", c.service, c.operation))
            .collect()
    }

    pub async fn sdk(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(self.emu.endpoint())
            .region(Region::new("eu-west-3"))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "testing", "testing", None, None, "emulator",
            ))
            .load()
            .await
    }
}

/// The changes of the first stack of a JSON report.
pub fn changes(report: &serde_json::Value) -> &Vec<serde_json::Value> {
    report["stacks"][0]["changes"].as_array().expect("changes")
}

/// The change of `kind` named `name` (or whose name contains `name`).
pub fn change<'a>(report: &'a serde_json::Value, kind: &str, name: &str) -> &'a serde_json::Value {
    changes(report)
        .iter()
        .find(|c| {
            c["kind"] == kind
                && c["name"]
                    .as_str()
                    .is_some_and(|n| n == name || n.contains(name))
        })
        .unwrap_or_else(|| panic!("no {kind} {name} in {report:#}"))
}

/// Fields that differ in a change, as `field: live → desired`.
pub fn diffs(change: &serde_json::Value) -> Vec<String> {
    change["diffs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    format!(
                        "{}: {} → {}",
                        d["field"].as_str().unwrap(),
                        d["live"],
                        d["desired"]
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
