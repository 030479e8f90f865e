//! The command line as people and CI use it: exit codes, messages, JSON output, defaults,
//! the schema, and the example files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_presta-reconciler"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    // validate must never need AWS: make any accidental call fail loudly instead of reaching it.
    cmd.env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env_remove("AWS_PROFILE");
    cmd
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn config_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    files
}

#[test]
fn every_file_in_config_validates() {
    let files = config_files();
    assert!(
        files.len() >= 2,
        "config/ should hold demo.yaml and production.example.yaml"
    );
    for file in files {
        let out = run(&["validate", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{} is invalid:\n{}",
            file.display(),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).starts_with("ok: stack `"),
            "{}",
            text(&out.stdout)
        );
    }
}

#[test]
fn invalid_file_exits_1_and_lists_every_problem_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    let demo = std::fs::read_to_string("config/demo.yaml").unwrap();
    let bad = demo
        .replace("backupRetentionDays: 1", "backupRetentionDay: 1")
        .replace("region: eu-west-3", "region: eu-west-33");
    std::fs::write(&path, bad).unwrap();
    let out = run(&["validate", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let shown = path.display().to_string();
    assert!(err.contains(&format!("{shown}:")), "{err}");
    assert!(
        err.contains("error in `spec.database.backupRetentionDay`: unknown field"),
        "{err}"
    );
    assert!(err.contains("did you mean `backupRetentionDays`?"), "{err}");
    assert!(
        err.contains("error in `spec.region`: `eu-west-33` is not an AWS region"),
        "{err}"
    );
    assert!(
        err.contains("2 problems found; nothing was sent to AWS"),
        "{err}"
    );
    assert!(text(&out.stdout).is_empty(), "problems go to stderr");
}

#[test]
fn json_output_is_machine_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        std::fs::read_to_string("config/demo.yaml")
            .unwrap()
            .replace("minSize: 1", "minSize: 5"),
    )
    .unwrap();
    let out = run(&["validate", "--output", "json", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    let p = &report["problems"][0];
    assert_eq!(p["path"], "spec.compute.minSize");
    assert!(p["line"].as_u64().unwrap() > 1);
    assert!(
        p["message"]
            .as_str()
            .unwrap()
            .contains("greater than maxSize")
    );

    let ok = run(&["validate", "--output", "json", "config/demo.yaml"]);
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["stacks"][0]["name"], "demo");
}

#[test]
fn duplicate_names_across_files_are_refused() {
    let out = run(&["validate", "config/demo.yaml", "config/demo.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("stack `demo` is declared twice"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_directory_is_read_as_one_desired_state() {
    let out = run(&["validate", "config"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("stack `demo`") && stdout.contains("stack `boutique-prod`"),
        "{stdout}"
    );
}

#[test]
fn missing_file_says_so() {
    let out = run(&["validate", "config/nope.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("cannot read config/nope.yaml"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let out = run(&["validate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn print_defaults_shows_every_defaulted_field() {
    let out = run(&["validate", "--print-defaults", "config/demo.yaml"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    let yaml = stdout
        .split("---\n")
        .nth(1)
        .expect("a YAML document follows");
    let doc: serde_json::Value = serde_yaml_from(yaml);
    assert_eq!(doc["spec"]["database"]["engineVersion"], "8.4");
    assert_eq!(doc["spec"]["fileSystem"]["throughputMode"], "elastic");
    assert_eq!(doc["spec"]["fileSystem"]["encrypted"], true);
    assert_eq!(
        doc["spec"]["secrets"]["parameterPrefix"],
        "/presta-reconciler/demo"
    );
    assert_eq!(
        doc["spec"]["compute"]["ami"]["ssmParameter"],
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    );
    assert_eq!(doc["spec"]["compute"]["desiredCapacity"], 1);
    assert_eq!(doc["spec"]["policy"]["mode"], "enforce");
    // What the file sets wins over defaults.
    assert_eq!(doc["spec"]["database"]["deletionProtection"], false);
}

fn serde_yaml_from(yaml: &str) -> serde_json::Value {
    // The binary prints YAML; the test reads it back through the JSON data model.
    let value: serde_json::Value = serde_yaml::from_str(yaml).expect("valid YAML");
    value
}

#[test]
fn schema_in_docs_is_the_one_the_binary_prints() {
    let out = run(&["schema"]);
    assert!(out.status.success());
    let kept = std::fs::read_to_string("docs/presta-stack.schema.json").unwrap();
    assert_eq!(
        text(&out.stdout),
        kept,
        "docs/presta-stack.schema.json is stale: run `cargo run -- schema > docs/presta-stack.schema.json`"
    );
}

#[test]
fn schema_accepts_the_examples_and_rejects_unknown_fields() {
    // The editor's view: the schema file alone, applied by a generic JSON Schema validator.
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("docs/presta-stack.schema.json").unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    for file in config_files() {
        let doc: serde_json::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", file.display());
    }
    let mut doc: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string("config/demo.yaml").unwrap()).unwrap();
    doc["spec"]["database"]["backupRetentionDay"] = serde_json::json!(3);
    assert!(
        !validator.is_valid(&doc),
        "an unknown field must not pass the schema"
    );
    let mut doc: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string("config/demo.yaml").unwrap()).unwrap();
    doc["kind"] = serde_json::json!("Deployment");
    assert!(!validator.is_valid(&doc), "the kind is a constant");
}

#[test]
fn demo_once_starts_the_emulator_and_builds_the_demo_stack() {
    let out = bin()
        .args(["demo", "--once"])
        .output()
        .expect("the binary runs");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("emulator: http://127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("seeded:   vpc-"), "{stdout}");
    assert!(stdout.contains("stack `demo` is valid"), "{stdout}");
    assert!(
        stdout.contains("24 create"),
        "the demo builds the stack, its certificate, HTTPS, the www redirect and its records: {stdout}"
    );
    assert!(stdout.contains("alb_dns_name = demo-alb-"), "{stdout}");
    assert!(
        stdout.contains("shop_url     = https://shop.demo.example.com/"),
        "{stdout}"
    );
    assert!(
        stdout.contains("export AWS_ENDPOINT_URL=http://127.0.0.1:"),
        "{stdout}"
    );
}

#[test]
fn every_schema_field_is_documented_in_docs_spec_md() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("docs/presta-stack.schema.json").unwrap())
            .unwrap();
    let doc = std::fs::read_to_string("docs/spec.md").unwrap();
    fn resolve<'a>(
        root: &'a serde_json::Value,
        mut s: &'a serde_json::Value,
    ) -> &'a serde_json::Value {
        loop {
            if let Some(r) = s.get("$ref").and_then(|r| r.as_str()) {
                s = r
                    .trim_start_matches("#/")
                    .split('/')
                    .fold(root, |v, seg| &v[seg]);
            } else if let Some(opts) = s.get("anyOf").and_then(|o| o.as_array()) {
                s = opts.iter().find(|o| o["type"] != "null").unwrap();
            } else {
                return s;
            }
        }
    }
    fn leaves(root: &serde_json::Value, s: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        let s = resolve(root, s);
        match s.get("properties").and_then(|p| p.as_object()) {
            Some(props) => {
                for (k, v) in props {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    leaves(root, v, &p, out);
                }
            }
            None => out.push(path.to_string()),
        }
    }
    let mut fields = Vec::new();
    leaves(&schema, &schema, "", &mut fields);
    assert!(fields.len() > 60, "{fields:?}");
    let missing: Vec<&String> = fields
        .iter()
        .filter(|f| !doc.contains(&format!("`{f}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/spec.md does not document: {missing:?}"
    );
}

#[test]
fn an_unknown_stack_is_refused_before_any_aws_call() {
    let out = run(&["plan", "-f", "config/demo.yaml", "--stack", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("no stack `nope` in the files given"), "{err}");
    assert!(err.contains("stacks found: demo"), "{err}");
}

#[test]
fn an_oversized_configuration_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    let demo =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.yaml"))
            .unwrap();
    let mut big = demo.clone();
    while big.len() < 5 * 1024 * 1024 {
        big.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&path, &big).unwrap();
    let started = std::time::Instant::now();
    let out = run(&["validate", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("over the 4194304-byte limit"), "{err}");
    assert!(err.contains("huge.yaml"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[cfg(unix)]
#[test]
fn serve_refuses_a_token_file_others_can_write() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = run(&[
        "serve",
        "-f",
        "config/demo.yaml",
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        token.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("can be written by other users") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(
        !err.contains("0123456789abcdef"),
        "the token is never printed"
    );
}

#[test]
fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    // A debug plan against a closed port: the SDK and the engine log plenty (the binary's
    // stderr is a pipe here, not a terminal).
    let out = bin()
        .args(["--log-level", "debug", "plan", "-f", "config/demo.yaml"])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(
        err.lines().filter(|l| l.contains("DEBUG")).count() > 5,
        "{err}"
    );
    assert!(!err.contains('\u{1b}'), "colour codes in a pipe: {err:?}");
}

#[test]
fn demo_stops_its_daemon_and_emulator_on_sigterm() {
    // `kill`, `timeout` or a service manager send SIGTERM to the demo alone (not to its
    // process group, as Ctrl-C does): the daemon it started must stop with it and free its port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut demo = bin()
        .args(["demo", "--listen", &listen])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the binary runs");
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "the demo's daemon never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let serving = || {
        let ps = std::process::Command::new("ps")
            .args(["-eo", "args"])
            .output()
            .unwrap();
        text(&ps.stdout)
            .lines()
            .any(|l| l.contains(" serve ") && l.contains(&listen))
    };
    assert!(serving(), "the daemon runs as a child of the demo");
    std::process::Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status()
        .unwrap();
    let status = demo.wait().unwrap();
    assert!(status.success(), "the demo stops cleanly: {status}");
    assert!(!serving(), "no daemon left behind");
    assert!(
        std::net::TcpListener::bind(&listen).is_ok(),
        "the port is free again"
    );
}

#[test]
fn demo_injects_faults_by_hand_and_still_converges() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = bin()
        .args([
            "demo",
            "--once",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--faults",
            "0.2",
            "--faults-kinds",
            "unavailable,internal",
        ])
        .output()
        .expect("the binary runs");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("faults:   20 % of the AWS calls fail (seed 1; unavailable, internal)"),
        "{stdout}"
    );
    // 500 and 503 are retried with backoff by the SDK: the stack is built all the same.
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("24 create"), "{stdout}");

    let bad = bin()
        .args([
            "demo",
            "--once",
            "--faults",
            "0.2",
            "--faults-kinds",
            "gremlins",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = text(&bad.stderr);
    assert!(
        err.contains("unknown fault kinds") && err.contains("blackhole"),
        "{err}"
    );
    let bad = bin().args(["demo", "--faults", "30"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("from 0 to 1"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn promotions_are_checked_across_the_configuration() {
    // The staging/production pair validates together, not production alone.
    let pair = run(&["validate", "config/promotion"]);
    assert!(pair.status.success(), "{}", text(&pair.stderr));
    let alone = run(&["validate", "config/promotion/production.yaml"]);
    assert_eq!(alone.status.code(), Some(1));
    let err = text(&alone.stderr);
    assert!(
        err.contains("config/promotion/production.yaml:15: error in `spec.promotion.after`"),
        "file, line and field: {err}"
    );
    assert!(
        err.contains(
            "stack `boutique-prod` follows `boutique-staging`, which is in none of the files given"
        ),
        "{err}"
    );

    // A cycle: a follows b, b follows a; both named, with where the other is declared.
    let dir = tempfile::tempdir().unwrap();
    let demo = std::fs::read_to_string("config/demo.yaml").unwrap();
    let follower = |name: &str, after: &str| {
        demo.replace("name: demo", &format!("name: {name}"))
            .replace(
                "  region: eu-west-3\n",
                &format!("  region: eu-west-3\n  promotion:\n    after: {after}\n"),
            )
    };
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, follower("a", "b")).unwrap();
    std::fs::write(&b, follower("b", "a")).unwrap();
    let out = run(&["validate", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let line = demo
        .lines()
        .position(|l| l.starts_with("  region:"))
        .unwrap()
        + 3; // 1-based, then `promotion:`, then `after:`
    assert!(
        err.contains(&format!("a.yaml:{line}: error in `spec.promotion.after`: promotion cycle: a follows b follows a (`b` is declared in {}", b.display())),
        "{err}"
    );
    assert!(err.contains("b follows a follows b"), "{err}");

    // Following itself, and a soak that is not a duration.
    let own = dir.path().join("own.yaml");
    std::fs::write(
        &own,
        follower("own", "own")
            .replace("    after: own\n", "    after: own\n    soak: 30 minutes\n"),
    )
    .unwrap();
    let out = run(&["validate", own.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(err.contains("stack `own` follows itself"), "{err}");
    assert!(err.contains("`30 minutes` is not a duration"), "{err}");
}

#[test]
fn a_wrong_aws_rate_is_refused_before_any_call() {
    let out = run(&["plan", "-f", "config/demo.yaml", "--aws-rate", "s3=5"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("`s3` is not a service the reconciler calls"),
        "{err}"
    );
    assert!(err.contains("--aws-rate ec2=10"), "{err}");
}

#[test]
fn import_terraform_without_aws_writes_a_stack_that_validates_and_refuses_wrong_files() {
    let dir = tempfile::tempdir().unwrap();
    // The runbook's shop, from the JSON `terraform show -json` printed: no AWS call.
    let out_yaml = dir.path().join("shop.yaml");
    let o = run(&[
        "import",
        "terraform",
        "--state",
        "tests/fixtures/terraform/runbook-show.json",
        "-o",
        out_yaml.to_str().unwrap(),
    ]);
    let stdout = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}{}", text(&o.stderr));
    assert!(stdout.contains("imported (19 resources)"), "{stdout}");
    assert!(stdout.contains("terraform state rm module.prestashop.aws_lb.this"));
    assert!(
        !stdout.contains("S3cret-Pa55word-xyz"),
        "the password leaked"
    );
    let v = run(&["validate", out_yaml.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v.stdout));
    // Without -o the stack goes to stdout (a valid document) and the report to stderr.
    let o = run(&[
        "import",
        "terraform",
        "--state",
        "tests/fixtures/terraform/runbook-show.json",
    ]);
    assert!(text(&o.stdout).starts_with("# Imported from a Terraform state"));
    assert!(text(&o.stderr).contains("import report: stack `prestashop`"));
    // A file that is no state: exit 1, the file named, what was expected said.
    let bad = dir.path().join("plan.json");
    std::fs::write(&bad, r#"{"format_version":"1.2","resource_changes":[]}"#).unwrap();
    let o = run(&["import", "terraform", "--state", bad.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("importing {}", bad.display())),
        "{err}"
    );
    assert!(err.contains("this is a plan"), "{err}");
    std::fs::write(&bad, r#"{"version": 3}"#).unwrap();
    let o = run(&["import", "terraform", "--state", bad.to_str().unwrap()]);
    assert!(text(&o.stderr).contains("version 3 is not supported"));
}
