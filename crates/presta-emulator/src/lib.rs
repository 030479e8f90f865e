//! The local AWS emulator: moto on a free loopback port, extended with the operations the
//! product needs that moto lacks, optionally seeded with the network a stack expects.
//!
//! One harness for tests, the demo and the benchmark:
//!
//! ```no_run
//! let emu = presta_emulator::Emulator::builder().seed("demo").start()?;
//! // Point any AWS client at it:
//! for (k, v) in emu.env() { /* command.env(k, v) */ }
//! # Ok::<(), presta_emulator::EmulatorError>(())
//! ```
//!
//! The emulator process stops when the [`Emulator`] is dropped, and also when this process
//! dies (it watches its stdin), so no test leaves a server behind. It only ever binds
//! 127.0.0.1.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::Duration;

use serde::Deserialize;

/// The launcher, embedded so that the demo works from an installed binary too.
const LAUNCHER: &str = include_str!("../moto/launcher.py");
/// The CloudTrail-shaped events of the calls the launcher serves (imported by it).
const CLOUDTRAIL_EVENTS: &str = include_str!("../moto/cloudtrail_events.py");
/// The moto version the harness installs when moto is missing.
pub const MOTO_REQUIREMENT: &str = include_str!("../moto/requirements.txt");

/// Region the demo network is seeded in by default.
pub const DEFAULT_REGION: &str = "eu-west-3";

/// Why the emulator could not be started or queried.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error(
        "cannot run `{python}` ({source})\n  help: install Python 3, or set PRESTA_PYTHON to its path"
    )]
    NoPython {
        python: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "moto is not installed and `pip install` failed:\n{output}\n  help: run `python3 -m pip install -r crates/presta-emulator/moto/requirements.txt`"
    )]
    InstallFailed { output: String },
    #[error("the emulator did not start: {message}\n--- emulator stderr ---\n{stderr}")]
    StartFailed { message: String, stderr: String },
    #[error("emulator I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected answer from the emulator: {0}")]
    Protocol(String),
}

/// The network the launcher seeded for one name (`presta-<name>-*` tags).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct SeededNetwork {
    pub name: String,
    pub region: String,
    pub vpc_id: String,
    /// `public-a`, `public-b`, `private-a`, `private-b` → subnet id.
    pub subnets: BTreeMap<String, String>,
    pub instance_profile: String,
    /// An ACM certificate for `domain` (for HTTPS listeners).
    pub certificate_arn: String,
    /// `shop.<name>.example.com`.
    pub domain: String,
    /// A public hosted zone, `<name>.example.com`, that holds the certificate's validation
    /// record.
    pub hosted_zone: String,
    pub hosted_zone_id: String,
}

impl SeededNetwork {
    /// Subnet ids whose key starts with `public` or `private`.
    pub fn subnet_ids(&self, kind: &str) -> Vec<String> {
        self.subnets
            .iter()
            .filter(|(k, _)| k.starts_with(kind))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// One call as the emulator saw it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Call {
    /// The SigV4 service name (`ec2`, `elasticloadbalancing`, `rds`, ...).
    pub service: String,
    /// `DescribeSubnets`, or for REST APIs (EFS) the method and path shape.
    pub operation: String,
    pub status: u16,
    pub ms: f64,
    /// `terraform` when the User-Agent says so, the SDK app name (`app/<name>`: the daemon
    /// sends `presta-<replica id>`) when there is one, else `other`.
    pub agent: String,
    /// The fault injected into this call, if one was (`throttle`, `unavailable`,
    /// `internal`, `lost`).
    #[serde(default)]
    pub fault: Option<String>,
}

impl Call {
    /// Whether the call can change state (anything but Describe/Get/List reads).
    pub fn is_mutating(&self) -> bool {
        let op = self.operation.as_str();
        !(op.starts_with("Describe")
            || op.starts_with("Get")
            || op.starts_with("List")
            || op.starts_with("GET "))
    }
}

#[derive(Deserialize)]
struct Ready {
    event: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    seed: Vec<SeededNetwork>,
}

/// Options for [`Emulator::start`].
#[derive(Debug, Clone)]
pub struct Builder {
    seeds: Vec<String>,
    region: String,
    refresh_seconds: Option<f64>,
    acm_validation_wait: Option<u64>,
    event_delay: Option<f64>,
    timeout: Duration,
}

/// A running emulator.
#[derive(Debug)]
pub struct Emulator {
    child: Child,
    stdin: Option<ChildStdin>,
    endpoint: String,
    port: u16,
    seeds: Vec<SeededNetwork>,
    _script_dir: tempfile::TempDir,
}

impl Builder {
    /// Seeds `presta-<name>-vpc`, two public and two private subnets (two AZs) and the
    /// instance profile `presta-<name>-instance`.
    pub fn seed(mut self, name: &str) -> Self {
        self.seeds.push(name.to_string());
        self
    }

    /// Region of the seeded networks (default `eu-west-3`).
    pub fn region(mut self, region: &str) -> Self {
        self.region = region.to_string();
        self
    }

    /// How long an emulated instance refresh stays in progress (default 2 s).
    pub fn instance_refresh_seconds(mut self, seconds: f64) -> Self {
        self.refresh_seconds = Some(seconds);
        self
    }

    /// How long ACM takes at least to issue a requested certificate whose validation records
    /// are in a hosted zone (default 0: at the next look once the records are there).
    pub fn acm_validation_wait(mut self, seconds: u64) -> Self {
        self.acm_validation_wait = Some(seconds);
        self
    }

    /// Starts the emulator and waits until it answers (and is seeded).
    /// Seconds between a mutating call and its CloudTrail-shaped event on the bus (default 1).
    pub fn event_delay(mut self, seconds: f64) -> Self {
        self.event_delay = Some(seconds);
        self
    }

    pub fn start(self) -> Result<Emulator, EmulatorError> {
        ensure_moto()?;
        let dir = tempfile::Builder::new()
            .prefix("presta-emulator-")
            .tempdir()?;
        let script = dir.path().join("launcher.py");
        std::fs::write(&script, LAUNCHER)?;
        std::fs::write(dir.path().join("cloudtrail_events.py"), CLOUDTRAIL_EVENTS)?;
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path)?;

        let mut cmd = Command::new(python());
        cmd.arg(&script).args([
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--region",
            &self.region,
        ]);
        for s in &self.seeds {
            cmd.args(["--seed", s]);
        }
        if let Some(delay) = self.event_delay {
            cmd.args(["--event-delay", &delay.to_string()]);
        }
        if let Some(secs) = self.refresh_seconds {
            cmd.env("PRESTA_EMULATOR_REFRESH_SECONDS", secs.to_string());
        }
        cmd.env(
            "MOTO_ACM_VALIDATION_WAIT",
            self.acm_validation_wait.unwrap_or(0).to_string(),
        );
        // The launcher must never reach real AWS, whatever this process's environment says.
        for (k, v) in dummy_credentials() {
            cmd.env(k, v);
        }
        cmd.env_remove("AWS_PROFILE").env_remove("AWS_ENDPOINT_URL");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd.spawn().map_err(|source| EmulatorError::NoPython {
            python: python(),
            source,
        })?;

        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| EmulatorError::Protocol("no stdout".into()))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let fail = |message: String, child: &mut Child| {
            let _ = child.kill();
            let _ = child.wait();
            EmulatorError::StartFailed {
                message,
                stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
            }
        };
        let line = match rx.recv_timeout(self.timeout) {
            Ok(line) => line,
            Err(_) => {
                return Err(fail(
                    format!("no answer within {:?}", self.timeout),
                    &mut child,
                ));
            }
        };
        let ready: Ready = match serde_json::from_str(line.trim()) {
            Ok(r) => r,
            Err(_) => return Err(fail(format!("unexpected first line {line:?}"), &mut child)),
        };
        if ready.event != "ready" {
            return Err(fail(ready.message, &mut child));
        }
        let port = ready
            .endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| EmulatorError::Protocol(format!("endpoint {:?}", ready.endpoint)))?;
        let stdin = child.stdin.take();
        Ok(Emulator {
            child,
            stdin,
            endpoint: ready.endpoint,
            port,
            seeds: ready.seed,
            _script_dir: dir,
        })
    }
}

impl Emulator {
    /// Options: seeds, region.
    pub fn builder() -> Builder {
        Builder {
            seeds: Vec::new(),
            region: DEFAULT_REGION.to_string(),
            refresh_seconds: None,
            acm_validation_wait: None,
            event_delay: None,
            timeout: Duration::from_secs(90),
        }
    }

    /// Process id of the emulator (it is gone once this value is dropped).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The seeded network of `name`, if it was seeded.
    pub fn network(&self, name: &str) -> Option<&SeededNetwork> {
        self.seeds.iter().find(|s| s.name == name)
    }

    /// Environment that points an AWS SDK or CLI (ours, boto3, Terraform's provider) at the
    /// emulator with dummy credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = dummy_credentials();
        env.push(("AWS_ENDPOINT_URL", self.endpoint.clone()));
        env
    }

    /// Every call the emulator answered since start (or the last [`Emulator::reset_calls`]).
    pub fn calls(&self) -> Result<Vec<Call>, EmulatorError> {
        #[derive(Deserialize)]
        struct Calls {
            calls: Vec<Call>,
        }
        let body = self.http("GET", "/_presta/calls")?;
        let parsed: Calls =
            serde_json::from_str(&body).map_err(|e| EmulatorError::Protocol(e.to_string()))?;
        Ok(parsed.calls)
    }

    /// Forgets the calls seen so far.
    pub fn reset_calls(&self) -> Result<(), EmulatorError> {
        self.http("DELETE", "/_presta/calls").map(|_| ())
    }

    /// The CloudTrail-shaped events of mutating calls: put on the bus `delay` seconds after
    /// the call, or not at all (`enabled` false, as in an account without a trail).
    pub fn set_events(&self, delay: f64, enabled: bool) -> Result<(), EmulatorError> {
        self.http(
            "PUT",
            &format!(
                "/_presta/events?delay={delay}&enabled={}",
                u8::from(enabled)
            ),
        )
        .map(|_| ())
    }

    /// Makes every AWS call answer `ms` milliseconds later (0 turns it off): a run becomes
    /// slow enough to be stopped at chosen points.
    pub fn set_latency(&self, ms: u64) -> Result<(), EmulatorError> {
        self.http("PUT", &format!("/_presta/latency?ms={ms}"))
            .map(|_| ())
    }

    /// Makes a share `rate` (0 to 1) of the AWS calls fail as AWS fails (the service's own
    /// throttling error, 500/503 before processing, or a 500 after processing: a lost
    /// answer), drawn from a generator seeded with `seed`; `services` limits it to those
    /// signing names (`ec2`, `rds`, `elasticfilesystem`...), empty for all. `rate` 0 stops.
    /// Makes the registered targets of every target group (or only `target`) answer `state`
    /// (`unhealthy`, `initial`, `draining`; `healthy` restores moto's own answer, for every target
    /// when `target` is `None`).
    pub fn set_target_health(
        &self,
        state: &str,
        target: Option<&str>,
    ) -> Result<(), EmulatorError> {
        self.http(
            "PUT",
            &format!(
                "/_presta/target-health?state={state}&target={}",
                target.unwrap_or("*")
            ),
        )
        .map(|_| ())
    }

    /// Sets the certificate `arn`'s expiry (`NotAfter`) to `not_after` (seconds since the
    /// epoch), as time would; `None` gives back moto's own (a year after the request).
    pub fn set_certificate_not_after(
        &self,
        arn: &str,
        not_after: Option<i64>,
    ) -> Result<(), EmulatorError> {
        let value = not_after.map(|t| t.to_string()).unwrap_or_default();
        self.http("PUT", &format!("/_presta/acm?arn={arn}&not_after={value}"))
            .map(|_| ())
    }

    /// What the next Run Command invocations answer: `Some((status, exit code, output))`, or
    /// `None` for success with the command echoed.
    pub fn set_command_result(
        &self,
        result: Option<(&str, i32, &str)>,
    ) -> Result<(), EmulatorError> {
        let query = match result {
            Some((status, code, output)) => format!(
                "status={status}&code={code}&output={}",
                output
                    .bytes()
                    .map(|b| if b.is_ascii_alphanumeric() {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    })
                    .collect::<String>()
            ),
            None => String::new(),
        };
        self.http("PUT", &format!("/_presta/command-result?{query}"))
            .map(|_| ())
    }

    /// The master password the emulated database `db` holds (tests: to check a rotation).
    pub fn rds_master_password(&self, db: &str) -> Result<Option<String>, EmulatorError> {
        let body = self.http("GET", &format!("/_presta/rds-master-password?db={db}"))?;
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|_| EmulatorError::Protocol(body.clone()))?;
        Ok(v["password"].as_str().map(String::from))
    }

    pub fn set_faults(&self, rate: f64, seed: u64, services: &[&str]) -> Result<(), EmulatorError> {
        self.set_faults_on(rate, seed, services, &[], &[])
    }

    /// Faults limited to `operations` (e.g. `RevokeSecurityGroupIngress`) and of the given
    /// `kinds` (`throttle`, `unavailable`, `internal`, `lost`, `denied`, `slow`, `reset`,
    /// `blackhole`; empty: throttle, unavailable, internal and lost).
    pub fn set_faults_on(
        &self,
        rate: f64,
        seed: u64,
        services: &[&str],
        operations: &[&str],
        kinds: &[&str],
    ) -> Result<(), EmulatorError> {
        self.configure_faults(&format!(
            "rate={rate}&seed={seed}&services={}&operations={}&kinds={}",
            services.join(","),
            operations.join(","),
            kinds.join(",")
        ))
    }

    /// Faults of the network itself on a share `rate` of the calls (of `operations`, or of
    /// every call when empty): `slow` (answered `slow_ms` later), `reset` (connection reset,
    /// no answer), `blackhole` (no answer for `hold`, then the connection closes).
    pub fn set_network_faults(
        &self,
        rate: f64,
        seed: u64,
        operations: &[&str],
        kinds: &[&str],
        hold: Duration,
        slow_ms: u64,
    ) -> Result<(), EmulatorError> {
        self.configure_faults(&format!(
            "rate={rate}&seed={seed}&operations={}&kinds={}&hold={}&slow_ms={slow_ms}",
            operations.join(","),
            kinds.join(","),
            hold.as_secs_f64()
        ))
    }

    fn configure_faults(&self, query: &str) -> Result<(), EmulatorError> {
        let body = self.http("PUT", &format!("/_presta/faults?{query}"))?;
        if body.contains("\"error\"") {
            return Err(EmulatorError::Protocol(body));
        }
        Ok(())
    }

    fn http(&self, method: &str, path: &str) -> Result<String, EmulatorError> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| EmulatorError::Protocol(response.clone()))?;
        if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
            return Err(EmulatorError::Protocol(
                head.lines().next().unwrap_or_default().to_string(),
            ));
        }
        Ok(body.to_string())
    }

    /// Stops the emulator now (dropping it does the same).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stdin.take()); // the launcher exits on end of stdin
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn dummy_credentials() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_SESSION_TOKEN", "testing".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ]
}

/// The Python interpreter: `PRESTA_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("PRESTA_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Installs moto with pip when it cannot be imported; once per process.
pub fn ensure_moto() -> Result<(), EmulatorError> {
    static CHECKED: OnceLock<Mutex<bool>> = OnceLock::new();
    let mut done = CHECKED
        .get_or_init(|| Mutex::new(false))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if *done {
        return Ok(());
    }
    let importable = |py: &str| {
        Command::new(py)
            .args(["-c", "import moto.server, werkzeug, boto3"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    };
    let py = python();
    match importable(&py) {
        Ok(s) if s.success() => {}
        Ok(_) => {
            let dir = tempfile::tempdir()?;
            let req: PathBuf = dir.path().join("requirements.txt");
            std::fs::write(&req, MOTO_REQUIREMENT)?;
            eprintln!(
                "presta-emulator: moto not found, installing it with pip ({})",
                MOTO_REQUIREMENT.trim()
            );
            let out = Command::new(&py)
                .args(["-m", "pip", "install", "--quiet", "-r"])
                .arg(&req)
                .output()
                .map_err(|source| EmulatorError::NoPython {
                    python: py.clone(),
                    source,
                })?;
            if !out.status.success() {
                return Err(EmulatorError::InstallFailed {
                    output: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
        }
        Err(source) => return Err(EmulatorError::NoPython { python: py, source }),
    }
    *done = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_not_mutating() {
        let call = |op: &str| Call {
            service: "ec2".into(),
            operation: op.into(),
            status: 200,
            ms: 1.0,
            agent: "other".into(),
            fault: None,
        };
        assert!(!call("DescribeSecurityGroups").is_mutating());
        assert!(!call("GetParameters").is_mutating());
        assert!(!call("GET /2015-02-01/file-systems").is_mutating());
        assert!(call("AuthorizeSecurityGroupIngress").is_mutating());
        assert!(call("POST /2015-02-01/file-systems").is_mutating());
        assert!(call("PutParameter").is_mutating());
    }
}
