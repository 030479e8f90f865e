//! Renders the instance bootstrap (`deploy/bootstrap/user-data.sh`) with a stack's values.
//!
//! The template is a real shell script; rendering replaces its values marker with one quoted
//! assignment per value, so no value can break out of its quotes, and each file marker with
//! that file of `deploy/bootstrap/` (the operator's `presta-ctl`, the thumbnail script), inside
//! a quoted heredoc. No secret is ever rendered: the instance reads passwords from SSM at each
//! start of the PrestaShop unit.

use std::collections::BTreeMap;

use presta_spec::Stack;

/// The template, kept in `deploy/` and compiled in.
pub const TEMPLATE: &str = include_str!("../../../deploy/bootstrap/user-data.sh");
const MARKER: &str = "# @presta-values@";
/// Files inlined into the template at `# @presta-file:NAME@`.
pub const FILES: [(&str, &str); 2] = [
    (
        "presta-ctl.sh",
        include_str!("../../../deploy/bootstrap/presta-ctl.sh"),
    ),
    (
        "rebuild_thumbs.php",
        include_str!("../../../deploy/bootstrap/rebuild_thumbs.php"),
    ),
];
/// The heredoc delimiter around inlined files; no file may contain it as a line.
const FILE_EOF: &str = "PRESTA_FILE_EOF";
/// EC2 refuses user data over 16 KiB (before base64); it is stored gzipped.
pub const USER_DATA_LIMIT: usize = 16 * 1024;

/// Values the bootstrap needs from the rest of the stack.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub efs_id: String,
    pub db_host: String,
    pub db_port: i32,
    /// The shop's host name: the custom domain, or the load balancer's DNS name.
    pub domain: String,
}

/// Why the bootstrap cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the rendered user data is {0} bytes gzipped, over EC2's {USER_DATA_LIMIT}-byte limit")]
    TooLarge(usize),
    #[error("the bootstrap template has no `{0}` line")]
    NoMarker(String),
    #[error("deploy/bootstrap/{0} contains the line `{FILE_EOF}`, which would end its heredoc")]
    Delimiter(&'static str),
}

/// Quotes a value for a POSIX shell: `'...'` with embedded quotes escaped.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The values block, one `readonly NAME='value'` per line, in a stable order.
pub fn values(stack: &Stack, inputs: &Inputs) -> BTreeMap<&'static str, String> {
    let spec = &stack.spec;
    let names = stack.names();
    let extra: Vec<String> = spec
        .prestashop
        .extra_env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    BTreeMap::from([
        ("STACK", stack.name().to_string()),
        ("REGION", spec.region.clone()),
        ("EFS_ID", inputs.efs_id.clone()),
        ("DB_HOST", inputs.db_host.clone()),
        ("DB_PORT", inputs.db_port.to_string()),
        ("DB_NAME", spec.database.name.clone()),
        ("DB_USER", spec.database.username.clone()),
        ("DB_PASSWORD_PARAM", names.db_password.clone()),
        // Empty for a shop that is already installed: the instances refuse to install.
        (
            "ADMIN_PASSWORD_PARAM",
            names.admin_password.clone().unwrap_or_default(),
        ),
        ("ADMIN_EMAIL", spec.prestashop.admin_email.clone()),
        ("PS_DOMAIN", inputs.domain.to_ascii_lowercase()),
        (
            "PS_ENABLE_SSL",
            if stack.serves_https() { "1" } else { "0" }.to_string(),
        ),
        ("IMAGE", spec.prestashop.image.clone()),
        ("ADMIN_FOLDER", spec.prestashop.admin_folder.clone()),
        ("LANGUAGE", spec.prestashop.language.clone()),
        ("COUNTRY", spec.prestashop.country.clone()),
        ("HEALTH_PATH", spec.load_balancer.health_check.path.clone()),
        ("EXTRA_ENV", extra.join("\n")),
    ])
}

/// The user data for `stack`.
pub fn render(stack: &Stack, inputs: &Inputs) -> Result<String, RenderError> {
    if !TEMPLATE.contains(MARKER) {
        return Err(RenderError::NoMarker(MARKER.into()));
    }
    let values = values(stack, inputs);
    let mut block: Vec<String> = values
        .iter()
        .map(|(k, v)| format!("readonly {k}={}", shell_quote(v)))
        .collect();
    let names: Vec<&str> = values.keys().copied().collect();
    block.push(format!("readonly PRESTA_VALUES='{}'", names.join(" ")));
    let mut rendered = TEMPLATE.replacen(MARKER, &block.join("\n"), 1);
    for (name, content) in FILES {
        let marker = format!("# @presta-file:{name}@");
        if !rendered.contains(&marker) {
            return Err(RenderError::NoMarker(marker));
        }
        if content.lines().any(|l| l == FILE_EOF) {
            return Err(RenderError::Delimiter(name));
        }
        rendered = rendered.replacen(&marker, content.trim_end(), 1);
    }
    let stored = presta_aws::launch_template::encode_user_data(&rendered).len();
    if stored > USER_DATA_LIMIT {
        return Err(RenderError::TooLarge(stored));
    }
    Ok(rendered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack() -> Stack {
        let yaml = include_str!("../../../config/demo.yaml");
        presta_spec::parse_file(yaml, std::path::Path::new("demo.yaml"))
            .unwrap()
            .remove(0)
            .stack
    }

    fn inputs() -> Inputs {
        Inputs {
            efs_id: "fs-0123456789abcdef0".into(),
            db_host: "demo-db.x.eu-west-3.rds.amazonaws.com".into(),
            db_port: 3306,
            domain: "Demo-ALB-1.eu-west-3.elb.amazonaws.com".into(),
        }
    }

    #[test]
    fn values_are_quoted_and_present() {
        let out = render(&stack(), &inputs()).unwrap();
        assert!(out.starts_with("#!/bin/bash\n"));
        assert!(out.contains("readonly EFS_ID='fs-0123456789abcdef0'"));
        assert!(
            out.contains("readonly PS_DOMAIN='demo-alb-1.eu-west-3.elb.amazonaws.com'"),
            "domains are lower-case"
        );
        assert!(out.contains("readonly IMAGE='prestashop/prestashop:8.2.7-8.1-apache'"));
        assert!(out.contains("readonly DB_PASSWORD_PARAM='/presta-reconciler/demo/db-password'"));
        assert!(out.contains("readonly PS_ENABLE_SSL='0'"));
        assert!(!out.contains(MARKER));
        let stored = presta_aws::launch_template::encode_user_data(&out).len();
        assert!(stored < USER_DATA_LIMIT / 2, "{stored} bytes gzipped");
    }

    #[test]
    fn quotes_cannot_be_escaped() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        let mut s = stack();
        s.spec
            .prestashop
            .extra_env
            .insert("X".into(), "$(reboot)'; reboot; '".into());
        let out = render(&s, &inputs()).unwrap();
        assert!(
            out.contains(r"readonly EXTRA_ENV='X=$(reboot)'\''; reboot; '\'''"),
            "{}",
            out.lines().find(|l| l.contains("EXTRA_ENV")).unwrap()
        );
    }
}
