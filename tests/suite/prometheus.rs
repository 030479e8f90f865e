//! The monitoring artefacts against the real thing: `promtool` checks and unit-tests the alert
//! rules of `deploy/prometheus/`; a real Prometheus server (Debian's `prometheus` package)
//! scrapes the daemon on loopback, sees injected drift, fires the matching alert and resolves
//! it after the heal; every query of the Grafana dashboard returns data from it.
//!
//! Skipped, saying so, only where the binaries are not installed (`.ci/run` installs them).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, Env, root};

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn skip(what: &str) -> bool {
    if have(what) {
        return false;
    }
    eprintln!("SKIPPED: `{what}` is not installed (apt-get install prometheus; .ci/run does it)");
    true
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .current_dir(root().join("deploy/prometheus"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn promtool_checks_and_unit_tests_the_alert_rules() {
    if skip("promtool") {
        return;
    }
    assert!(promtool(&["check", "rules", "alerts.yml"]).contains("SUCCESS: 12 rules found"));
    promtool(&["check", "config", "prometheus.yml"]);
    assert!(promtool(&["test", "rules", "alerts.test.yml"]).contains("SUCCESS"));
}

/// A percent-encoded query string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// A Prometheus scraping `target` every second with the shipped rules, their `for:`
    /// durations shortened to seconds (the expressions are the shipped ones).
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let rules = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
        let fast: String = rules
            .lines()
            .map(|l| match l.trim_start().strip_prefix("for: ") {
                Some(_) => format!("{}for: 2s", &l[..l.len() - l.trim_start().len()]),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(dir.path().join("alerts.yml"), fast).unwrap();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - alerts.yml\nscrape_configs:\n  - job_name: presta-reconciler\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus starts");
        let p = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        p.until(60, "Prometheus is ready", |p| {
            get(&p.addr, "/-/ready").0 == 200
        });
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    fn until(&self, secs: u64, what: &str, mut ok: impl FnMut(&Prometheus) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if ok(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("{what}: not within {secs}s\n{}", self.log());
    }

    /// The result vector of an instant query.
    fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let (code, body) = get(
            &self.addr,
            &format!("/api/v1/query?query={}", encode(promql)),
        );
        assert_eq!(code, 200, "{promql}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The alerts Prometheus holds (pending or firing).
    fn alerts(&self) -> Vec<serde_json::Value> {
        let (_, body) = get(&self.addr, "/api/v1/alerts");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["alerts"].as_array().cloned().unwrap_or_default()
    }

    fn firing(&self, name: &str, stack: &str) -> bool {
        self.alerts().iter().any(|a| {
            a["labels"]["alertname"] == name
                && a["labels"]["stack"] == stack
                && a["state"] == "firing"
        })
    }
}

fn dashboard_queries(path: &Path) -> Vec<(String, String)> {
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            out.push((
                p["title"].as_str().unwrap().to_string(),
                t["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$stack", ".*")
                    .replace("$__rate_interval", "1m"),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_sees_the_drift_fires_the_alert_and_every_dashboard_query_has_data() {
    if skip("prometheus") {
        return;
    }
    let env = Env::start();
    let d: Daemon = env.serve(&env.demo(), &["--interval", "600"]);
    d.eventually(90, "converged", |d| {
        d.json("GET", "/stacks/demo")["state"] == "converged"
    });
    let prom = Prometheus::start(&d.addr);
    prom.until(30, "the daemon is scraped", |p| {
        p.query("up{job=\"presta-reconciler\"} == 1").len() == 1
    });

    // Drift, seen by a plan: the series shows it and the alert fires.
    env.open_ssh().await;
    let (code, body) = d.http("GET", "/stacks/demo/plan", None);
    assert_eq!(code, 200, "{body}");
    prom.until(30, "the drift series", |p| {
        p.query("sum(presta_drifted_resources{stack=\"demo\",kind=\"security_group\"}) == 1")
            .len()
            == 1
    });
    prom.until(30, "PrestaDriftPending fires", |p| {
        p.firing("PrestaDriftPending", "demo")
    });
    let alert = prom
        .alerts()
        .into_iter()
        .find(|a| a["labels"]["alertname"] == "PrestaDriftPending")
        .unwrap();
    assert_eq!(alert["labels"]["kind"], "security_group");

    // A heal resolves it.
    let (code, body) = d.http("POST", "/reconcile/demo?wait=true", None);
    assert_eq!(code, 200, "{body}");
    prom.until(30, "PrestaDriftPending resolves", |p| {
        !p.alerts()
            .iter()
            .any(|a| a["labels"]["alertname"] == "PrestaDriftPending")
    });

    // A few failing AWS calls, so that the error panels have something to show.
    env.emu.set_faults(0.5, 11, &["ssm"]).unwrap();
    let _ = d.http("POST", "/reconcile/demo?wait=true", None);
    env.emu.set_faults(0.0, 11, &[]).unwrap();
    let _ = d.http("POST", "/reconcile/demo?wait=true", None);
    std::thread::sleep(Duration::from_secs(3));

    let path: PathBuf = root().join("deploy/grafana/presta-reconciler.json");
    let queries = dashboard_queries(&path);
    assert!(queries.len() >= 11, "{queries:?}");
    let mut empty = Vec::new();
    for (panel, q) in &queries {
        let mut ok = false;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if !prom.query(q).is_empty() {
                ok = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if !ok {
            empty.push(format!("{panel}: {q}"));
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data: {empty:#?}"
    );
}
