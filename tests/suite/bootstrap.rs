//! The instance bootstrap: rendered for several specs and checked (values, no secret, size,
//! shellcheck, php -l), then **executed** in a sandbox directory where the system commands it
//! calls (dnf, rpm, systemctl, mount, mountpoint, docker, aws, curl, chown) are recording
//! stand-ins. The stand-in `systemctl start` runs the unit's Exec lines the way systemd does
//! (a failing line without `-` stops the start), so `presta-ctl prestart/poststart` run too.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::root;

const DB_SECRET: &str = "s3cret-DB-pw-0123456789";
const ADMIN_SECRET: &str = "s3cret-ADMIN-pw-9876543210";

fn render(config: &str, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_presta-reconciler"))
        .current_dir(root())
        .args(["bootstrap", "-f", config])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a tool when it is installed; on CI (`CI` set) it must be.
fn tool(name: &str) -> bool {
    let found = Command::new(name).arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed (.ci/run installs it)"
        );
        eprintln!("{name} is not installed: skipped");
    }
    found
}

#[test]
fn the_rendered_bootstrap_carries_the_stacks_values_and_no_secret() {
    let demo = render(
        "config/demo.yaml",
        &["--alb-dns-name", "Demo-ALB-1.eu-west-3.elb.amazonaws.com"],
    );
    assert!(demo.contains("readonly IMAGE='prestashop/prestashop:8.2.7-8.1-apache'"));
    assert!(
        demo.contains("readonly PS_DOMAIN='demo-alb-1.eu-west-3.elb.amazonaws.com'"),
        "lower-cased"
    );
    assert!(
        demo.contains("readonly PS_ENABLE_SSL='0'"),
        "no HTTPS without a custom domain"
    );
    assert!(demo.contains("readonly EFS_ID='fs-00000000000000000'"));
    assert!(demo.contains("_netdev,tls"));
    assert!(demo.contains("RequiresMountsFor=/mnt/efs/psdata"));
    assert!(demo.contains("SetEnvIf X-Forwarded-Proto \"^https$\" HTTPS=on"));
    assert!(demo.contains("opcache.revalidate_freq=60"));
    assert!(demo.contains("PS_HANDLE_DYNAMIC_DOMAIN=0"));
    assert!(demo.contains("rm -f \"$MNT/docker_updt_ps_domains.php\""));
    assert!(
        demo.contains("prestashop:thumbnails:regenerate"),
        "presta-ctl is inlined"
    );
    assert!(
        demo.contains("ImageType::getImagesTypes"),
        "rebuild_thumbs.php is inlined"
    );
    assert!(!demo.contains("@presta-"), "every marker is replaced");
    assert!(
        !demo.contains("PS_INSTALL_AUTO=1"),
        "the install is decided on the instance"
    );

    let prod = render("config/production.example.yaml", &[]);
    assert!(
        prod.contains("readonly PS_ENABLE_SSL='1'"),
        "custom domain + HTTPS"
    );
    let domain = prod
        .lines()
        .find_map(|l| l.strip_prefix("readonly PS_DOMAIN='"))
        .unwrap();
    assert!(
        !domain.contains("elb.amazonaws.com"),
        "the custom domain: {domain}"
    );
    assert_ne!(demo, prod);

    for text in [&demo, &prod] {
        let lower = text.to_lowercase();
        for word in ["db_passwd='", "admin_passwd='", "password='"] {
            assert!(!lower.contains(word), "a secret value in user data: {word}");
        }
        let stored = presta_aws::launch_template::encode_user_data(text).len();
        assert!(
            stored < 16 * 1024,
            "{stored} bytes stored (EC2 limit 16 KiB)"
        );
        // The launch template driver reads the values back from what EC2 stores.
        let values = presta_aws::launch_template::bootstrap_values(
            &presta_aws::launch_template::decode_user_data(
                &presta_aws::launch_template::encode_user_data(text),
            ),
        );
        assert_eq!(values.get("REGION").map(String::as_str), Some("eu-west-3"));
        assert!(values.contains_key("IMAGE") && values.contains_key("PS_DOMAIN"));
    }
}

#[test]
fn shellcheck_passes_on_the_rendered_scripts_and_presta_ctl() {
    if !tool("shellcheck") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files = vec![root().join("deploy/bootstrap/presta-ctl.sh")];
    for config in ["config/demo.yaml", "config/production.example.yaml"] {
        let path = dir.path().join(config.replace('/', "_") + ".sh");
        std::fs::write(&path, render(config, &[])).unwrap();
        files.push(path);
    }
    for f in files {
        let out = Command::new("shellcheck").arg(&f).output().unwrap();
        assert!(
            out.status.success(),
            "shellcheck {}:\n{}",
            f.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn php_lint_passes_on_the_php_scripts() {
    if !tool("php") {
        return;
    }
    let out = Command::new("php")
        .arg("-l")
        .arg(root().join("deploy/bootstrap/rebuild_thumbs.php"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The PHP that presta-ctl runs with `php -r` must parse too.
    let ctl = std::fs::read_to_string(root().join("deploy/bootstrap/presta-ctl.sh")).unwrap();
    let snippets: Vec<&str> = ctl
        .split("shop_php '")
        .skip(1)
        .map(|s| s.split('\'').next().unwrap())
        .collect();
    assert!(snippets.len() >= 4, "{snippets:?}");
    for code in snippets {
        let out = Command::new("php")
            .args(["-l"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(format!("<?php {code}").as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(
            out.status.success(),
            "php -l on `{code}`: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// A sandbox: PRESTA_ROOT, the stand-ins, and the state they read.
struct Sandbox {
    _dir: tempfile::TempDir,
    base: PathBuf,
    script: PathBuf,
}

const STANDINS: &[(&str, &str)] = &[
    ("dnf", r#"touch "$SB/state/pkgs""#),
    ("rpm", r#"[ -e "$SB/state/pkgs" ]"#),
    ("chown", "true"),
    ("mountpoint", r#"[ -e "$SB/state/mounted" ]"#),
    (
        "mount",
        r#"if [ -e "$SB/state/efs-reachable" ]; then touch "$SB/state/mounted"; else echo "mount.nfs4: Connection timed out" >&2; exit 32; fi"#,
    ),
    (
        "curl",
        r#"case "$*" in *api/token*) echo TOKEN ;; *instance-id*) echo i-0sandbox ;; *) exit 22 ;; esac"#,
    ),
    (
        "aws",
        r#"case "$*" in *db-password*) echo "$DB_SECRET" ;; *admin-password*) echo "$ADMIN_SECRET" ;; *) exit 254 ;; esac"#,
    ),
    (
        "systemctl",
        r#"
case "$1" in
  is-active) [ -e "$SB/state/active" ] ;;
  start|restart)
    unit="$PRESTA_ROOT/etc/systemd/system/$2"
    grep -E '^Exec(StartPre|Start|StartPost)=' "$unit" | while IFS= read -r line; do
      cmd=${line#*=}; optional=0
      case "$cmd" in -*) optional=1; cmd=${cmd#-} ;; esac
      cmd=${cmd#/usr/bin/}
      if ! bash -c "$cmd"; then
        [ "$optional" = 1 ] || { echo "systemd: $2 failed at: $cmd" >&2; exit 1; }
      fi
    done || exit 1
    touch "$SB/state/active" ;;
  *) true ;;
esac"#,
    ),
    (
        "docker",
        r#"
mnt="$PRESTA_ROOT/mnt/efs/psdata"
case "$1" in
  run)
    case "$*" in
      *--rm*) [ -e "$SB/state/db-installed" ] && echo ps_configuration; exit 0 ;;
    esac
    envfile=$(printf '%s\n' "$@" | grep -A1 -x -- --env-file | tail -1)
    auto=$(grep '^PS_INSTALL_AUTO=' "$envfile" | cut -d= -f2)
    echo "container PS_INSTALL_AUTO=$auto" >> "$SB/calls.log"
    if [ "$auto" = 1 ]; then mkdir -p "$mnt/app/config"; echo '<?php return [];' > "$mnt/app/config/parameters.php"; fi ;;
  exec)
    # The parameters.php rewrite runs for real, with the host's php-cli, on the sandbox's EFS.
    case "$*" in
      *app/config/parameters.php*)
        prev=""; for a in "$@"; do [ "$prev" = "-r" ] && code=$a; prev=$a; done
        cd "$mnt" && exec php -r "$code" ;;
    esac
    [ -e "$SB/state/db-domain" ] && cat "$SB/state/db-domain"; true ;;
  *) true ;;
esac"#,
    ),
];

impl Sandbox {
    fn new(script: &str) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        for d in ["bin", "state", "root/etc/systemd/system", "root/var/log"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(base.join("root/etc/fstab"), "").unwrap();
        for (name, body) in STANDINS {
            let path = base.join("bin").join(name);
            std::fs::write(
                &path,
                format!("#!/bin/bash\necho \"{name} $*\" >> \"$SB/calls.log\"\n{body}\n"),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = base.join("user-data.sh");
        std::fs::write(&path, script).unwrap();
        Sandbox {
            _dir: dir,
            base,
            script: path,
        }
    }

    fn set(&self, flag: &str) {
        std::fs::write(self.base.join("state").join(flag), "").unwrap();
    }

    fn root(&self, p: &str) -> PathBuf {
        self.base.join("root").join(p)
    }

    fn mnt(&self, p: &str) -> PathBuf {
        self.root("mnt/efs/psdata").join(p)
    }

    /// bash running `script` in the sandbox: its stub commands first on the PATH, the root
    /// moved under the sandbox, the database secret being `db_secret`.
    fn bash(&self, script: &Path, db_secret: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(script)
            .env_clear()
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", self.base.join("bin").display()),
            )
            .env("SB", &self.base)
            .env("PRESTA_ROOT", self.base.join("root"))
            .env("DB_SECRET", db_secret)
            .env("ADMIN_SECRET", ADMIN_SECRET);
        cmd
    }

    fn run(&self) -> Output {
        self.bash(&self.script, DB_SECRET)
            .env("PRESTA_MOUNT_RETRY_SECONDS", "0")
            .env("PRESTA_WAIT_POLL", "1")
            .output()
            .unwrap()
    }

    /// Runs the installed presta-ctl with `args`, the database secret being `db_secret`.
    fn ctl(&self, args: &[&str], db_secret: &str) -> Output {
        self.bash(&self.root("usr/local/sbin/presta-ctl"), db_secret)
            .args(args)
            .output()
            .unwrap()
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.base.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Every file of the sandbox that holds `needle`, relative to the sandbox.
    fn files_containing(&self, needle: &str) -> Vec<String> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out)
                } else {
                    out.push(p)
                }
            }
        }
        let mut files = Vec::new();
        walk(&self.base, &mut files);
        files
            .into_iter()
            .filter(|p| !p.starts_with(self.base.join("bin")))
            .filter(|p| {
                std::fs::read(p).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle))
            })
            .map(|p| p.strip_prefix(&self.base).unwrap().display().to_string())
            .collect()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn demo_script() -> String {
    render(
        "config/demo.yaml",
        &["--alb-dns-name", "demo-alb-1.eu-west-3.elb.amazonaws.com"],
    )
}

#[test]
fn without_the_efs_mount_it_stops_before_docker() {
    let sb = Sandbox::new(&demo_script());
    sb.set("pkgs");
    let out = sb.run();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("refusing to start PrestaShop on an empty directory"),
        "{}",
        text(&out)
    );
    let calls = sb.calls();
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("mount ")).count(),
        10,
        "retried: {calls:#?}"
    );
    assert!(
        !calls.iter().any(|c| c.starts_with("docker")
            || c.contains("docker.service")
            || c.contains("prestashop")),
        "{calls:#?}"
    );
    assert!(!sb.root("etc/systemd/system/prestashop.service").exists());
    let log = std::fs::read_to_string(sb.root("var/log/presta-bootstrap.log")).unwrap();
    assert!(log.contains("FATAL"), "the log file says why: {log}");
}

#[test]
fn a_first_instance_installs_once_keeps_secrets_in_the_env_file_and_a_second_run_is_a_no_op() {
    let sb = Sandbox::new(&demo_script());
    sb.set("efs-reachable");
    let out = sb.run();
    assert!(out.status.success(), "{}", text(&out));
    let calls = sb.calls();
    let pos = |needle: &str| {
        calls
            .iter()
            .position(|c| c.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in {calls:#?}"))
    };
    // Order: packages, mount, Docker, the DB check, then the installing container.
    assert!(pos("dnf -y install docker amazon-efs-utils") < pos("mount "));
    assert!(pos("mount ") < pos("systemctl enable --now docker.service"));
    assert!(
        pos("docker run --rm") < pos("container PS_INSTALL_AUTO=1"),
        "the database is checked before installing"
    );
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("container ")).count(),
        1
    );
    assert!(
        calls.iter().any(|c| *c == format!("chown -R 33:33 {}", sb.mnt("").display()).trim_end_matches('/'))
    );
    assert!(sb.mnt("app/config/parameters.php").exists());
    assert!(
        !sb.mnt(".presta-install.lock").exists(),
        "the lock is released after the install"
    );
    assert_eq!(
        std::fs::read_to_string(sb.mnt("presta-health.txt")).unwrap(),
        "ok\n"
    );
    let fstab = std::fs::read_to_string(sb.root("etc/fstab")).unwrap();
    assert!(fstab.contains("/mnt/efs/psdata efs _netdev,tls"), "{fstab}");

    // Secrets: only in the root-only env file, never in a log, a command line or a config.
    let env = sb.root("run/prestashop/env");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&env).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let env_text = std::fs::read_to_string(&env).unwrap();
    assert!(env_text.contains(&format!("DB_PASSWD={DB_SECRET}")));
    assert!(
        env_text.contains("PS_INSTALL_AUTO=0"),
        "after the install, restarts do not install"
    );
    assert!(env_text.contains("PS_HANDLE_DYNAMIC_DOMAIN=0"));
    assert!(env_text.contains("PS_DOMAIN=demo-alb-1.eu-west-3.elb.amazonaws.com"));
    for secret in [DB_SECRET, ADMIN_SECRET] {
        assert_eq!(
            sb.files_containing(secret),
            ["root/run/prestashop/env"],
            "{secret} leaked"
        );
        assert!(!text(&out).contains(secret));
    }

    // Again (a re-run by hand, or cloud-init's per-boot hooks): nothing new happens.
    let before = sb.calls().len();
    let again = sb.run();
    assert!(again.status.success(), "{}", text(&again));
    let new: Vec<String> = sb.calls()[before..].to_vec();
    assert!(
        !new.iter().any(|c| c.starts_with("dnf")
            || c.starts_with("mount ")
            || c.starts_with("docker")
            || c.contains("start prestashop")),
        "{new:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(sb.root("etc/fstab")).unwrap(),
        fstab,
        "fstab unchanged"
    );
}

#[test]
fn an_installed_database_with_an_empty_efs_is_never_installed_over() {
    let sb = Sandbox::new(&demo_script());
    sb.set("efs-reachable");
    sb.set("db-installed");
    let out = sb.run();
    assert!(!out.status.success());
    assert!(text(&out).contains("refusing to install"), "{}", text(&out));
    assert!(
        !sb.calls().iter().any(|c| c.starts_with("container ")),
        "no container started"
    );
    assert!(!sb.mnt(".presta-install.lock").exists());
}

#[test]
fn another_instances_install_is_awaited_and_a_stale_lock_is_reported() {
    // Fresh lock held by another instance: wait for its parameters.php, then start normally.
    let sb = Sandbox::new(&demo_script());
    sb.set("efs-reachable");
    std::fs::create_dir_all(sb.mnt(".presta-install.lock")).unwrap();
    std::fs::write(
        sb.mnt(".presta-install.lock/owner"),
        "i-0other 2026-11-24T10:00:00+00:00\n",
    )
    .unwrap();
    let params = sb.mnt("app/config/parameters.php");
    let writer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(2));
        std::fs::create_dir_all(params.parent().unwrap()).unwrap();
        std::fs::write(params, "<?php return [];").unwrap();
    });
    let out = sb.run();
    writer.join().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("another instance installs PrestaShop (i-0other"),
        "{}",
        text(&out)
    );
    let containers: Vec<String> = sb
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("container "))
        .collect();
    assert_eq!(containers, ["container PS_INSTALL_AUTO=0"]);
    assert!(
        !sb.calls().iter().any(|c| c.starts_with("docker run --rm")),
        "no DB check for a waiter"
    );

    // A lock two hours old and no parameters.php: a crashed install, reported, nothing started.
    let sb = Sandbox::new(&demo_script());
    sb.set("efs-reachable");
    std::fs::create_dir_all(sb.mnt(".presta-install.lock")).unwrap();
    std::fs::write(
        sb.mnt(".presta-install.lock/owner"),
        "i-0crashed 2026-11-24T08:00:00+00:00\n",
    )
    .unwrap();
    let touched = Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(sb.mnt(".presta-install.lock/owner"))
        .status()
        .unwrap();
    assert!(touched.success());
    let out = sb.run();
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("stale install lock") && t.contains("i-0crashed"),
        "{t}"
    );
    assert!(!sb.calls().iter().any(|c| c.starts_with("container ")));
}

#[test]
fn a_start_with_another_domain_in_the_database_updates_it() {
    let sb = Sandbox::new(&demo_script());
    sb.set("efs-reachable");
    std::fs::create_dir_all(sb.mnt("app/config")).unwrap();
    std::fs::write(sb.mnt("app/config/parameters.php"), "<?php return [];").unwrap();
    std::fs::write(sb.base.join("state/db-domain"), "10.0.1.23").unwrap();
    let out = sb.run();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("shop domain in the database is 10.0.1.23"),
        "{}",
        text(&out)
    );
    let calls = sb.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("docker exec -u www-data")
                && c.contains("-e NEW_DOMAIN=demo-alb-1.eu-west-3.elb.amazonaws.com")),
        "{calls:#?}"
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("container "))
            .collect::<Vec<_>>(),
        ["container PS_INSTALL_AUTO=0"]
    );
}

#[test]
fn set_db_password_rewrites_parameters_php_atomically_and_never_puts_the_value_on_a_command_line() {
    if !tool("php") {
        eprintln!("SKIPPED: php-cli is not installed");
        return;
    }
    let sb = Sandbox::new(&demo_script());
    sb.set("efs-reachable");
    std::fs::create_dir_all(sb.mnt("app/config")).unwrap();
    std::fs::write(
        sb.mnt("app/config/parameters.php"),
        format!(
            "<?php return array('parameters' => array('database_host' => 'db', 'database_password' => '{DB_SECRET}', 'secret' => 'keep-me'));"
        ),
    )
    .unwrap();
    let out = sb.run();
    assert!(out.status.success(), "{}", text(&out));
    let rotated = "Rotated-Passw0rd_after.rotation+1";
    let out = sb.ctl(&["set-db-password"], rotated);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("database_password updated"),
        "{}",
        text(&out)
    );
    // The shop reads the new value; everything else is kept.
    let check = Command::new("php")
        .arg("-r")
        .arg("$p = require getenv('F'); echo $p['parameters']['database_password'], '|', $p['parameters']['secret'], '|', $p['parameters']['database_host'];")
        .env("F", sb.mnt("app/config/parameters.php"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&check.stdout),
        format!("{rotated}|keep-me|db")
    );
    // No temporary file left behind; the env file follows; the caches are cleared.
    let leftovers: Vec<_> = std::fs::read_dir(sb.mnt("app/config"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "parameters.php")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let env = std::fs::read_to_string(sb.root("run/prestashop/env")).expect("the env file");
    assert!(env.contains(&format!("DB_PASSWD={rotated}")), "{env}");
    assert!(!env.contains(&format!("DB_PASSWD={DB_SECRET}")), "{env}");
    let calls = sb.calls();
    assert!(
        calls.iter().any(|c| c.contains("cache:clear")),
        "{calls:#?}"
    );
    // Never on a command line (the stand-ins log their arguments).
    assert!(
        !calls.iter().any(|c| c.contains(rotated)),
        "the password appeared on a command line: {calls:#?}"
    );
}
