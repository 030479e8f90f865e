//! `spec.prestashop`: the image, the domain, the environment the reconciler manages.

use crate::model::{PrestaShop, Stack};

use super::{Findings, help};

/// Variables the reconciler sets on the container itself, and the field that sets each.
const MANAGED_ENV: &[(&str, &str)] = &[
    (
        "PS_DOMAIN",
        "spec.prestashop.domain (or the load balancer's DNS name)",
    ),
    ("DB_SERVER", "the RDS endpoint"),
    ("DB_PORT", "the RDS endpoint"),
    ("DB_NAME", "spec.database.name"),
    ("DB_USER", "spec.database.username"),
    ("DB_PASSWD", "the generated SSM secret"),
    ("DB_PREFIX", "the reconciler (ps_)"),
    ("ADMIN_MAIL", "spec.prestashop.adminEmail"),
    ("ADMIN_PASSWD", "the generated SSM secret"),
    ("PS_LANGUAGE", "spec.prestashop.language"),
    ("PS_COUNTRY", "spec.prestashop.country"),
    ("PS_FOLDER_ADMIN", "spec.prestashop.adminFolder"),
    ("PS_INSTALL_AUTO", "the bootstrap's install-once lock"),
    (
        "PS_ERASE_DB",
        "nothing: erasing the database is never allowed",
    ),
    ("PS_INSTALL_DB", "nothing: RDS creates the schema"),
    (
        "PS_HANDLE_DYNAMIC_DOMAIN",
        "the reconciler (always 0: behind a load balancer it rewrites the shop's domain)",
    ),
    (
        "PS_ENABLE_SSL",
        "spec.loadBalancer.https with spec.prestashop.domain",
    ),
];

/// Admin folder names PrestaShop already uses, or that a scanner would try first.
const RESERVED_FOLDERS: &[&str] = &[
    "admin",
    "app",
    "bin",
    "cache",
    "classes",
    "config",
    "controllers",
    "docs",
    "download",
    "img",
    "install",
    "js",
    "localization",
    "mails",
    "modules",
    "override",
    "pdf",
    "src",
    "themes",
    "tools",
    "translations",
    "upload",
    "var",
    "vendor",
    "webservice",
];

pub(super) fn prestashop(f: &mut Findings, stack: &Stack) {
    let ps = &stack.spec.prestashop;
    let base = "spec.prestashop";
    if let Some((message, hint)) = image_problem(&ps.image) {
        f.add(&format!("{base}.image"), message, help(hint));
    }
    if let Some(domain) = &ps.domain
        && let Some(hint) = domain_problem(domain)
    {
        f.add(
            &format!("{base}.domain"),
            format!("`{domain}` is not a host name"),
            help(hint),
        );
    }
    admin(f, ps);
    if !(ps.language.len() == 2 && ps.language.chars().all(|c| c.is_ascii_lowercase())) {
        f.add(
            &format!("{base}.language"),
            format!("`{}` is not a language code", ps.language),
            help("an ISO 639-1 code, e.g. `en`, `fr`"),
        );
    }
    if !(ps.country.len() == 2 && ps.country.chars().all(|c| c.is_ascii_alphabetic())) {
        f.add(
            &format!("{base}.country"),
            format!("`{}` is not a country code", ps.country),
            help("an ISO 3166-1 alpha-2 code, e.g. `FR`, `GB`"),
        );
    }
    for (key, value) in &ps.extra_env {
        extra_env(f, key, value);
    }
}

/// The back office: its folder (not guessable, not one of PrestaShop's) and its e-mail.
fn admin(f: &mut Findings, ps: &PrestaShop) {
    let base = "spec.prestashop";
    let folder = &ps.admin_folder;
    let folder_ok = !folder.is_empty()
        && folder.len() <= 64
        && folder
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !folder_ok {
        f.add(
            &format!("{base}.adminFolder"),
            format!("`{folder}` is not a folder name"),
            help("1 to 64 letters, digits, `-` and `_`"),
        );
    } else if RESERVED_FOLDERS.contains(&folder.to_ascii_lowercase().as_str()) {
        f.add(
            &format!("{base}.adminFolder"),
            format!(
                "`{folder}` is a folder PrestaShop already uses or a guessable back-office URL"
            ),
            help("pick a name of your own, e.g. `admin-7c3f9e`"),
        );
    }
    let email = &ps.admin_email;
    let email_ok = email.split_once('@').is_some_and(|(user, host)| {
        !user.is_empty()
            && host.contains('.')
            && !host.starts_with('.')
            && !host.ends_with('.')
            && !email.contains(char::is_whitespace)
    });
    if !email_ok {
        f.add(
            &format!("{base}.adminEmail"),
            format!("`{email}` is not an e-mail address"),
            help("e.g. `ops@example.com`"),
        );
    }
}

/// One `extraEnv` entry: a variable name, not one the reconciler sets, booleans as "0"/"1".
fn extra_env(f: &mut Findings, key: &str, value: &str) {
    let path = format!("spec.prestashop.extraEnv.{key}");
    let name_ok = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !name_ok {
        f.add(
            &path,
            format!("`{key}` is not an environment variable name"),
            help("letters, digits and `_`, not starting with a digit"),
        );
    } else if let Some((_, owner)) = MANAGED_ENV.iter().find(|(k, _)| *k == key) {
        f.add(
            &path,
            format!("`{key}` is set by the reconciler"),
            help(format!("it comes from {owner}; remove it from extraEnv")),
        );
    } else if ["PS_DEV_MODE", "PS_HOST_MODE", "PS_DEMO_MODE"].contains(&key)
        && !["0", "1"].contains(&value)
    {
        f.add(
            &path,
            format!("`{value}` is read by PHP as a boolean string"),
            help("use \"0\" or \"1\": PHP reads any non-empty string except \"0\", even \"false\", as true"),
        );
    }
}

/// Why `image` is not a pinned image reference, if it is not.
pub fn image_problem(image: &str) -> Option<(String, String)> {
    if image.is_empty() || image.contains(char::is_whitespace) {
        return Some((
            "the image is empty or contains spaces".into(),
            "e.g. `prestashop/prestashop:8.2.7-8.1-apache`".into(),
        ));
    }
    if image.contains("@sha256:") {
        return None;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    let Some((repo_last, tag)) = last.split_once(':') else {
        return Some((
            format!("`{image}` has no tag, so it means `latest`"),
            "pin a tag (e.g. `prestashop/prestashop:8.2.7-8.1-apache`) so that every instance runs the same version".into(),
        ));
    };
    if tag == "latest" || tag.is_empty() {
        return Some((
            format!("`{image}` uses `latest`"),
            "`latest` moves (it is now a 9.x image): pin a full tag such as `8.2.7-8.1-apache` or `9.1.4-5.0-classic-8.3-apache`".into(),
        ));
    }
    let repo = image
        .rsplit_once('/')
        .map(|(r, _)| format!("{r}/{repo_last}"))
        .unwrap_or(repo_last.to_string());
    let official = matches!(
        repo.as_str(),
        "prestashop/prestashop" | "docker.io/prestashop/prestashop"
    );
    let full_version = {
        let mut parts = tag.splitn(3, '.');
        let a = parts.next().unwrap_or("");
        let b = parts.next().unwrap_or("");
        let c = parts.next().unwrap_or("");
        let digits = |s: &str| !s.is_empty() && s.chars().all(|ch| ch.is_ascii_digit());
        digits(a) && digits(b) && c.chars().next().is_some_and(|ch| ch.is_ascii_digit())
    };
    if official && !full_version {
        return Some((
            format!("`{tag}` is a floating alias of the official image"),
            "aliases such as `8`, `9.1` or `8-apache` move with each release: pin a full version tag such as `8.2.7-8.1-apache`".into(),
        ));
    }
    None
}

pub(super) fn domain_problem(domain: &str) -> Option<String> {
    if domain.contains("://") || domain.contains('/') {
        return Some(
            "give the host name only, without scheme or path, e.g. `shop.example.com`".into(),
        );
    }
    let labels_ok = domain.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    if !labels_ok || !domain.contains('.') || domain.len() > 253 {
        return Some(
            "letters, digits and hyphens in dot-separated labels, e.g. `shop.example.com`".into(),
        );
    }
    if domain.ends_with(".elb.amazonaws.com") {
        return Some("leave `domain` out to use the load balancer's own name; it changes if the load balancer is re-created".into());
    }
    None
}

/// `spec.dns`: a domain to put in the zone, a zone that can hold it, extra names in it.
pub(super) fn dns(f: &mut Findings, stack: &Stack) {
    let Some(dns) = &stack.spec.dns else { return };
    let zone = dns.hosted_zone.trim_end_matches('.').to_ascii_lowercase();
    let Some(domain) = stack.spec.prestashop.domain.as_deref() else {
        f.add(
            "spec.dns",
            "`spec.dns` needs `spec.prestashop.domain`",
            help("set the shop's host name, e.g. `shop.example.com`, in the hosted zone"),
        );
        return;
    };
    let by_id = zone_id_like(&dns.hosted_zone);
    if zone.is_empty() || (!by_id && domain_problem_of_zone(&zone)) {
        f.add(
            "spec.dns.hostedZone",
            format!(
                "`{}` is neither a hosted zone name nor an id",
                dns.hosted_zone
            ),
            help("the zone's name (`example.com`) or its id (`Z0123456789ABCDEFGHIJ`)"),
        );
    }
    let in_zone = |name: &str| {
        by_id
            || name.to_ascii_lowercase() == zone
            || name.to_ascii_lowercase().ends_with(&format!(".{zone}"))
    };
    if !by_id && !in_zone(domain) {
        f.add(
            "spec.prestashop.domain",
            format!("`{domain}` is not in the hosted zone `{zone}`"),
            help("name the zone that holds the domain in `spec.dns.hostedZone`"),
        );
    }
    let mut seen = std::collections::BTreeSet::from([domain.to_ascii_lowercase()]);
    for (i, name) in dns.extra_names.iter().enumerate() {
        let path = format!("spec.dns.extraNames[{i}]");
        if let Some(hint) = domain_problem(name) {
            f.add(&path, format!("`{name}` is not a host name"), help(hint));
        } else if !in_zone(name) {
            f.add(
                &path,
                format!("`{name}` is not in the hosted zone `{zone}`"),
                help("every name of the shop must be in `spec.dns.hostedZone`"),
            );
        } else if !seen.insert(name.to_ascii_lowercase()) {
            f.add(
                &path,
                format!("`{name}` is listed twice (or is the domain)"),
                None,
            );
        }
    }
}

/// Whether `zone` reads as a hosted zone id (`Z0123…`, or `/hostedzone/Z0123…`): upper-case
/// letters and digits, no dot (AWS's start with `Z`; other implementations' need not).
pub fn zone_id_like(zone: &str) -> bool {
    let id = zone.strip_prefix("/hostedzone/").unwrap_or(zone);
    (10..=32).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

fn domain_problem_of_zone(zone: &str) -> bool {
    domain_problem(zone).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_ids_and_names() {
        assert!(zone_id_like("Z0123456789ABCDEFGHIJ"));
        assert!(zone_id_like("/hostedzone/Z0123456789ABC"));
        assert!(zone_id_like("FBNBO2DNE08ANFRSLQH7BY"));
        assert!(!zone_id_like("example.com"));
        assert!(!zone_id_like("EXAMPLE.COM"));
        assert!(!zone_id_like("shop"));
    }

    #[test]
    fn image_pinning() {
        assert!(image_problem("prestashop/prestashop:8.2.7-8.1-apache").is_none());
        assert!(image_problem("prestashop/prestashop:9.1.4-5.0-classic-8.3-apache").is_none());
        assert!(image_problem("registry.example.com/shop/prestashop:prod-2026-11").is_none());
        assert!(image_problem("prestashop/prestashop@sha256:abcd").is_none());
        assert!(
            image_problem("prestashop/prestashop")
                .unwrap()
                .0
                .contains("no tag")
        );
        assert!(
            image_problem("prestashop/prestashop:latest")
                .unwrap()
                .0
                .contains("latest")
        );
        assert!(
            image_problem("prestashop/prestashop:8")
                .unwrap()
                .0
                .contains("floating")
        );
        assert!(
            image_problem("prestashop/prestashop:9.1")
                .unwrap()
                .0
                .contains("floating")
        );
        assert!(
            image_problem("localhost:5000/prestashop")
                .unwrap()
                .0
                .contains("no tag")
        );
    }
}
