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

    /// Runs the binary with `args` (which end in `--output json`): exit code and the report.
    pub fn json(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let out = self.cli(args);
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} did not print JSON ({e}):\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), report)
    }

    /// `plan -f file --output json`: exit code and the report.
    pub fn plan_json(&self, file: &Path) -> (i32, serde_json::Value) {
        self.json(&["plan", "-f", file.to_str().unwrap(), "--output", "json"])
    }

    /// `apply -f file --output json`, asserting success; the report.
    pub fn apply_json(&self, file: &Path) -> serde_json::Value {
        let (code, report) =
            self.json(&["apply", "-f", file.to_str().unwrap(), "--output", "json"]);
        assert_eq!(code, 0, "apply failed: {report:#}");
        report
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

    /// The product's own clients on the emulator, as the engine builds them.
    pub async fn aws(&self) -> presta_aws::Aws {
        let settings = presta_aws::ClientSettings {
            endpoint_url: Some(self.emu.endpoint().to_string()),
            static_credentials: Some(("testing".into(), "testing".into())),
            ..presta_aws::ClientSettings::default()
        };
        presta_aws::Aws::connect(
            "eu-west-3",
            &settings,
            std::sync::Arc::new(presta_aws::calls::CallStats::default()),
        )
        .await
    }

    pub async fn sdk(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(presta_aws::clients::http_client(Some(self.emu.endpoint())))
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

/// A `presta-reconciler serve` process against the emulator, stopped (SIGKILL) when dropped.
pub struct Daemon {
    pub child: std::process::Child,
    pub addr: String,
    /// Everything the daemon logged (stderr).
    pub log: PathBuf,
}

impl Env {
    /// `serve` with change events (`--events auto`), polling and the resync at 10 minutes
    /// (so what heals within seconds was found by its event), heartbeat at 2 s unless `extra`
    /// sets it.
    pub fn serve_with_events(&self, file: &Path, extra: &[&str]) -> Daemon {
        let mut args = vec![
            "--interval",
            "600",
            "--resync-interval",
            "600",
            "--events",
            "auto",
        ];
        if !extra.contains(&"--heartbeat-interval") {
            args.extend_from_slice(&["--heartbeat-interval", "2"]);
        }
        args.extend_from_slice(extra);
        self.serve(file, &args)
    }

    /// Starts `serve -f file` on a free loopback port with `extra` arguments; returns once the
    /// daemon says where it listens.
    pub fn serve(&self, file: &Path, extra: &[&str]) -> Daemon {
        use std::io::BufRead;
        let log = self.dir.path().join(format!(
            "daemon-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_presta-reconciler"));
        cmd.current_dir(root())
            .args(["--log-level", "debug", "serve", "-f"])
            .arg(file)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("AWS_PROFILE")
            .env_remove("PRESTA_TOKEN")
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in self.emu.env() {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the daemon starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {line:?}; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_string();
        Daemon { child, addr, log }
    }
}

impl Daemon {
    /// One HTTP/1.0 request; returns the status and the body.
    pub fn http(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.addr).expect("the daemon answers");
        s.set_read_timeout(Some(std::time::Duration::from_secs(120)))
            .unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: {}\r\n{auth}Content-Length: 0\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (status, body.to_string())
    }

    /// A POST with a JSON body; status and body.
    pub fn post_json(&self, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(120)))
            .unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "POST {path} HTTP/1.0\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (status, body.to_string())
    }

    pub fn json(&self, method: &str, path: &str) -> serde_json::Value {
        let (status, body) = self.http(method, path, None);
        assert!(status < 300, "{method} {path}: {status} {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"))
    }

    /// Polls `check` every 200 ms until it holds or `secs` pass.
    pub fn eventually(&self, secs: u64, what: &str, mut check: impl FnMut(&Daemon) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if check(self) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!("{what}: not within {secs}s; log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of one metric series (`name{labels}` as printed), if present.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, text) = self.http("GET", "/metrics", None);
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Sends a signal with kill(1) (no unsafe code needed).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Env {
    /// The demo's instances' group: its id and how many rules it has.
    pub async fn app_group(&self) -> (String, usize) {
        self.app_group_of("demo").await
    }

    /// `stack`'s instances' group: its id and how many rules it has.
    pub async fn app_group_of(&self, stack: &str) -> (String, usize) {
        let ec2 = aws_sdk_ec2::Client::new(&self.sdk().await);
        let out = ec2
            .describe_security_groups()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("group-name")
                    .values(format!("{stack}-app-sg"))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let g = &out.security_groups()[0];
        (g.group_id().unwrap().to_string(), g.ip_permissions().len())
    }

    /// Drift as a person causes it: SSH opened to the world on the demo's instances' group.
    pub async fn open_ssh(&self) {
        self.open_ssh_on("demo").await
    }

    /// Drift as a person causes it: SSH opened to the world on `stack`'s instances' group.
    pub async fn open_ssh_on(&self, stack: &str) {
        use aws_sdk_ec2::types::{IpPermission, IpRange};
        let (group, _) = self.app_group_of(stack).await;
        aws_sdk_ec2::Client::new(&self.sdk().await)
            .authorize_security_group_ingress()
            .group_id(group)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(22)
                    .to_port(22)
                    .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    /// A SecureString's value and version, decrypted (tests only: never printed).
    pub async fn secret(&self, name: &str) -> (String, i64) {
        let ssm = aws_sdk_ssm::Client::new(&self.sdk().await);
        let p = ssm
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .unwrap();
        let p = p.parameter().unwrap();
        (p.value().unwrap().to_string(), p.version())
    }

    /// A new default version of `<stack>-app` made by hand: the current data (moto ignores
    /// SourceVersion, so it is copied) with `edit` applied. Returns the template id and the
    /// new version number.
    pub async fn hand_made_template_version(
        &self,
        stack: &str,
        edit: impl FnOnce(
            aws_sdk_ec2::types::builders::RequestLaunchTemplateDataBuilder,
        ) -> aws_sdk_ec2::types::builders::RequestLaunchTemplateDataBuilder,
    ) -> (String, i64) {
        use aws_sdk_ec2::types::{
            InstanceType, LaunchTemplateBlockDeviceMappingRequest,
            LaunchTemplateEbsBlockDeviceRequest, LaunchTemplateHttpTokensState,
            LaunchTemplateIamInstanceProfileSpecificationRequest,
            LaunchTemplateInstanceMetadataOptionsRequest, RequestLaunchTemplateData,
        };
        let ec2 = aws_sdk_ec2::Client::new(&self.sdk().await);
        let current = ec2
            .describe_launch_template_versions()
            .launch_template_name(format!("{stack}-app"))
            .versions("$Default")
            .send()
            .await
            .unwrap();
        let v = &current.launch_template_versions()[0];
        let id = v.launch_template_id().unwrap().to_string();
        let d = v.launch_template_data().unwrap().clone();
        let md = d.metadata_options().unwrap();
        let root = &d.block_device_mappings()[0];
        let data = RequestLaunchTemplateData::builder()
            .image_id(d.image_id().unwrap())
            .instance_type(InstanceType::from(d.instance_type().unwrap().as_str()))
            .iam_instance_profile(
                LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                    .name(d.iam_instance_profile().unwrap().name().unwrap())
                    .build(),
            )
            .set_security_group_ids(Some(d.security_group_ids().to_vec()))
            .user_data(d.user_data().unwrap())
            .metadata_options(
                LaunchTemplateInstanceMetadataOptionsRequest::builder()
                    .http_tokens(LaunchTemplateHttpTokensState::Required)
                    .http_put_response_hop_limit(md.http_put_response_hop_limit().unwrap())
                    .build(),
            )
            .block_device_mappings(
                LaunchTemplateBlockDeviceMappingRequest::builder()
                    .device_name(root.device_name().unwrap())
                    .ebs(
                        LaunchTemplateEbsBlockDeviceRequest::builder()
                            .volume_size(root.ebs().unwrap().volume_size().unwrap())
                            .encrypted(true)
                            .build(),
                    )
                    .build(),
            );
        let made = ec2
            .create_launch_template_version()
            .launch_template_id(&id)
            .launch_template_data(edit(data).build())
            .send()
            .await
            .unwrap();
        let version = made
            .launch_template_version()
            .unwrap()
            .version_number()
            .unwrap();
        ec2.modify_launch_template()
            .launch_template_id(&id)
            .default_version(version.to_string())
            .send()
            .await
            .unwrap();
        (id, version)
    }
}
