//! The status page (`GET /`) in a real browser: headless Chromium (Debian's `chromium`) renders
//! it from the daemon on loopback; it shows the stack, its health, the injected drift and the
//! shop's address, and holds no secret. A screenshot is kept under `target/`.
//!
//! Chromium runs with every background network feature off and a host resolver that maps
//! every name but loopback to nothing: no traffic leaves 127.0.0.0/8.

use crate::common;

use std::process::Command;

use common::{Env, root};

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Runs headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=...`).
fn headless(browser: &str, url: &str, args: &[&str], profile: &std::path::Path) -> String {
    let out = Command::new("timeout")
        .arg("90")
        .arg(browser)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--no-pings",
            "--dns-prefetch-disable",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            "--window-size=1280,1800",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_renders_in_chromium_with_health_drift_and_no_secret() {
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED: chromium is not installed (apt-get install chromium; .ci/run does it)");
        return;
    };
    let env = Env::start();
    let d = env.serve(&env.demo(), &["--interval", "600"]);
    d.eventually(90, "converged", |d| {
        d.json("GET", "/stacks/demo")["state"] == "converged"
    });

    // Drift: SSH opened by hand, seen by a plan.
    env.open_ssh().await;
    assert_eq!(d.http("GET", "/stacks/demo/plan", None).0, 200);

    // Plain HTTP: HTML, no script, nothing from elsewhere.
    let (code, html) = d.http("GET", "/", None);
    assert_eq!(code, 200);
    assert!(!html.contains("<script"), "no JavaScript");
    assert!(
        !html.contains("src=\"http"),
        "nothing loaded from elsewhere"
    );

    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{}/", d.addr);
    let dom = headless(browser, &url, &["--dump-dom"], profile.path());
    assert!(dom.contains("<h1>presta-reconciler</h1>"), "{dom}");
    assert!(dom.contains("id=\"stack-demo\""), "{dom}");
    assert!(
        dom.contains("class=\"badge healthy\""),
        "the health verdict: {dom}"
    );
    assert!(
        dom.contains("<table class=\"drift\">"),
        "the drift table: {dom}"
    );
    assert!(dom.contains("0.0.0.0/0"), "the drifted rule: {dom}");
    let status = d.json("GET", "/stacks/demo");
    let dns = status["outputs"]["alb_dns_name"].as_str().unwrap();
    assert!(
        dom.contains(&format!("href=\"http://{dns}/\"")),
        "the shop's address as a link: {dom}"
    );

    // No secret: neither password appears.
    let ssm = aws_sdk_ssm::Client::new(&env.sdk().await);
    for p in ["db-password", "admin-password"] {
        let value = ssm
            .get_parameter()
            .name(format!("/presta-reconciler/demo/{p}"))
            .with_decryption(true)
            .send()
            .await
            .unwrap()
            .parameter()
            .unwrap()
            .value()
            .unwrap()
            .to_string();
        assert!(value.len() >= 12);
        assert!(!dom.contains(&value), "{p} leaked into the page");
        assert!(!html.contains(&value), "{p} leaked into the page");
    }

    // A screenshot for people, kept under target/.
    let shot = root().join("target/status-page.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        browser,
        &url,
        &[&format!("--screenshot={}", shot.display())],
        profile.path(),
    );
    let png = std::fs::read(&shot).expect("the screenshot is written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}
