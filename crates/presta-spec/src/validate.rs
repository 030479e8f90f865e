//! Rules that the JSON Schema cannot express: AWS naming limits, CIDR syntax, cross-field
//! constraints, pinned images. Each finding names the field path and says what is allowed;
//! the loader adds file, line and column.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::defaults::{AL2023_ARM64_PARAMETER, AL2023_X86_64_PARAMETER, API_VERSION, KIND};
use crate::model::{Stack, SubnetSelector, ThroughputMode};
use crate::naming::{self, Component, ELB_NAME_LIMIT};
use crate::regions;

/// One problem in one document, before it is placed in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Dotted field path, e.g. `spec.database.backupRetentionDays`.
    pub path: String,
    pub message: String,
    pub help: Option<String>,
}

#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, path: &str, message: impl Into<String>, help: impl Into<Option<String>>) {
        self.0.push(Finding {
            path: path.to_string(),
            message: message.into(),
            help: help.into(),
        });
    }

    fn range(&mut self, path: &str, value: u64, min: u64, max: u64, unit: &str) {
        if value < min || value > max {
            self.add(
                path,
                format!("{value} is out of range"),
                Some(format!("allowed: {min} to {max}{unit}")),
            );
        }
    }
}

fn help(s: impl Into<String>) -> Option<String> {
    Some(s.into())
}

fn is_hex_id(value: &str, prefix: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|rest| {
        (8..=17).contains(&rest.len()) && rest.chars().all(|c| c.is_ascii_hexdigit())
    })
}

/// Validates one stack (already typed, defaults applied by serde).
pub fn validate_stack(stack: &Stack) -> Vec<Finding> {
    let mut f = Findings::default();
    if stack.api_version != API_VERSION {
        f.add(
            "apiVersion",
            format!("unsupported apiVersion `{}`", stack.api_version),
            help(format!("this release reads `{API_VERSION}`")),
        );
    }
    if stack.kind != KIND {
        f.add(
            "kind",
            format!("unsupported kind `{}`", stack.kind),
            help(format!("use `{KIND}`")),
        );
    }
    stack_name(&mut f, &stack.metadata.name);
    labels(&mut f, stack);
    let spec = &stack.spec;
    region(&mut f, &spec.region);
    network(&mut f, stack);
    load_balancer(&mut f, stack);
    compute(&mut f, stack);
    prestashop(&mut f, stack);
    database(&mut f, stack);
    file_system(&mut f, stack);
    secrets(&mut f, stack);
    f.0
}

/// The stack-name rule, shared with anything that takes a stack name (CLI `--stack`).
pub fn stack_name_problem(name: &str) -> Option<(String, String)> {
    let max = naming::max_stack_name_len();
    if name.is_empty() {
        return Some((
            "must not be empty".into(),
            format!("use 1 to {max} lowercase letters, digits and hyphens"),
        ));
    }
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid_chars || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Some((
            format!("`{name}` is not a valid stack name"),
            "use lowercase letters, digits and hyphens, starting with a letter (it becomes part of AWS resource names)".into(),
        ));
    }
    if name.ends_with('-') || name.contains("--") {
        return Some((
            format!("`{name}` ends with a hyphen or contains two in a row"),
            "RDS identifiers forbid both: use single hyphens between letters or digits".into(),
        ));
    }
    if name.len() > max {
        let alb = Component::LoadBalancer.name(name);
        return Some((
            format!(
                "`{name}` is {} characters long, too long once suffixed",
                name.len()
            ),
            format!(
                "the load balancer name `{alb}` would be {} characters, over AWS's {ELB_NAME_LIMIT}-character limit for load balancer and target group names: use at most {max} characters",
                alb.len()
            ),
        ));
    }
    None
}

fn stack_name(f: &mut Findings, name: &str) {
    if let Some((message, hint)) = stack_name_problem(name) {
        f.add("metadata.name", message, help(hint));
    }
}

fn labels(f: &mut Findings, stack: &Stack) {
    for (key, value) in &stack.metadata.labels {
        let path = format!("metadata.labels.{key}");
        let reserved = ["Name", naming::TAG_MANAGED_BY];
        if key.starts_with("aws:")
            || key.starts_with(naming::RESERVED_TAG_PREFIX)
            || reserved.contains(&key.as_str())
        {
            f.add(
                &path,
                format!("label `{key}` is reserved"),
                help("`aws:*` belongs to AWS; `Name`, `managed-by` and `presta-reconciler/*` are set by the reconciler to find its resources"),
            );
            continue;
        }
        let ok = |s: &str| {
            s.chars()
                .all(|c| c.is_alphanumeric() || " _.:/=+-@".contains(c))
        };
        if key.is_empty() || key.len() > 128 || !ok(key) {
            f.add(
                &path,
                format!("label key `{key}` is not a valid AWS tag key"),
                help("1 to 128 letters, digits, spaces and `_ . : / = + - @`"),
            );
        }
        if value.len() > 256 || !ok(value) {
            f.add(
                &path,
                "label value is not a valid AWS tag value",
                help("at most 256 letters, digits, spaces and `_ . : / = + - @`"),
            );
        }
    }
}

fn region(f: &mut Findings, region: &str) {
    if regions::is_known(region) {
        return;
    }
    let closest = regions::REGIONS
        .iter()
        .min_by_key(|r| strsim::levenshtein(r, region))
        .copied()
        .unwrap_or("eu-west-3");
    f.add(
        "spec.region",
        format!("`{region}` is not an AWS region"),
        help(format!(
            "did you mean `{closest}`? (regions look like `eu-west-3`, `us-east-1`)"
        )),
    );
}

fn network(f: &mut Findings, stack: &Stack) {
    let net = &stack.spec.network;
    match (&net.vpc.id, net.vpc.tags.is_empty()) {
        (Some(_), false) | (None, true) => f.add(
            "spec.network.vpc",
            "give exactly one of `id` or `tags`",
            help("e.g. `vpc: {id: vpc-0abc12345678def90}` or `vpc: {tags: {Name: my-vpc}}`"),
        ),
        (Some(id), true) if !is_hex_id(id, "vpc-") => f.add(
            "spec.network.vpc.id",
            format!("`{id}` is not a VPC id"),
            help("VPC ids look like `vpc-0abc12345678def90`"),
        ),
        _ => {}
    }
    subnets(f, "spec.network.publicSubnets", &net.public_subnets);
    subnets(f, "spec.network.privateSubnets", &net.private_subnets);
    let public: BTreeSet<_> = net.public_subnets.ids.iter().collect();
    for (i, id) in net.private_subnets.ids.iter().enumerate() {
        if public.contains(id) {
            f.add(
                &format!("spec.network.privateSubnets.ids[{i}]"),
                format!("`{id}` is also a public subnet"),
                help("the instances, database and file system belong in private subnets, apart from the load balancer's"),
            );
        }
    }
}

fn subnets(f: &mut Findings, path: &str, sel: &SubnetSelector) {
    match (sel.ids.is_empty(), sel.tags.is_empty()) {
        (true, true) | (false, false) => f.add(
            path,
            "give exactly one of `ids` or `tags`",
            help("e.g. `ids: [subnet-0aaa..., subnet-0bbb...]` or `tags: {Name: \"presta-demo-private-*\"}`"),
        ),
        (false, true) => {
            if sel.ids.len() < 2 {
                f.add(
                    &format!("{path}.ids"),
                    format!("{} subnet given, at least two are needed", sel.ids.len()),
                    help("the load balancer, the database subnet group and high availability need subnets in two availability zones"),
                );
            }
            let mut seen = BTreeSet::new();
            for (i, id) in sel.ids.iter().enumerate() {
                let p = format!("{path}.ids[{i}]");
                if !is_hex_id(id, "subnet-") {
                    f.add(&p, format!("`{id}` is not a subnet id"), help("subnet ids look like `subnet-0abc12345678def90`"));
                } else if !seen.insert(id) {
                    f.add(&p, format!("`{id}` is listed twice"), None);
                }
            }
        }
        (true, false) => {}
    }
}

fn load_balancer(f: &mut Findings, stack: &Stack) {
    let lb = &stack.spec.load_balancer;
    let base = "spec.loadBalancer";
    if lb.allowed_cidrs.is_empty() {
        f.add(
            &format!("{base}.allowedCidrs"),
            "no client network is allowed",
            help("list at least one CIDR block, e.g. `0.0.0.0/0` for everyone"),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, cidr) in lb.allowed_cidrs.iter().enumerate() {
        let path = format!("{base}.allowedCidrs[{i}]");
        match cidr.parse::<IpNet>() {
            Ok(net) if net.trunc() != net => f.add(
                &path,
                format!("`{cidr}` has host bits set"),
                help(format!("write the network address: `{}`", net.trunc())),
            ),
            Ok(net) => {
                if !seen.insert(net) {
                    f.add(&path, format!("`{cidr}` is listed twice"), None);
                }
            }
            Err(_) if cidr.parse::<IpAddr>().is_ok() => f.add(
                &path,
                format!("`{cidr}` is an address, not a CIDR block"),
                help(format!("add a prefix length, e.g. `{cidr}/32`")),
            ),
            Err(_) => f.add(
                &path,
                format!("`{cidr}` is not a CIDR block"),
                help("write an IPv4 or IPv6 network with its prefix length, e.g. `203.0.113.0/24` or `2001:db8::/32`"),
            ),
        }
    }
    f.range(
        &format!("{base}.idleTimeoutSeconds"),
        lb.idle_timeout_seconds.into(),
        1,
        4000,
        " seconds",
    );
    if lb.http_port == 0 {
        f.add(
            &format!("{base}.httpPort"),
            "port 0 is not a listener port",
            help("use 1 to 65535, usually 80"),
        );
    }
    if let Some(https) = &lb.https {
        let p = format!("{base}.https");
        match parse_acm_arn(&https.certificate_arn) {
            None => f.add(
                &format!("{p}.certificateArn"),
                format!("`{}` is not an ACM certificate ARN", https.certificate_arn),
                help("ARNs look like `arn:aws:acm:eu-west-3:123456789012:certificate/1234abcd-...`"),
            ),
            Some(region) if region != stack.spec.region => f.add(
                &format!("{p}.certificateArn"),
                format!("the certificate is in `{region}`, the stack in `{}`", stack.spec.region),
                help("a load balancer can only use an ACM certificate of its own region: request or import it there"),
            ),
            Some(_) => {}
        }
        if https.port == lb.http_port || https.port == 0 {
            f.add(
                &format!("{p}.port"),
                format!("port {} is not usable for HTTPS", https.port),
                help("use a port other than the HTTP listener's, usually 443"),
            );
        }
        if !https.ssl_policy.starts_with("ELBSecurityPolicy-") {
            f.add(
                &format!("{p}.sslPolicy"),
                format!("`{}` is not an ELB security policy", https.ssl_policy),
                help(format!("e.g. `{}`", crate::defaults::ssl_policy())),
            );
        }
        if stack.spec.prestashop.domain.is_none() {
            f.add(
                &p,
                "HTTPS needs `spec.prestashop.domain`",
                help("ACM cannot issue a certificate for the load balancer's own `*.elb.amazonaws.com` name: set the shop's domain, covered by the certificate, or remove `https`"),
            );
        }
    }
    let hc = &lb.health_check;
    let p = format!("{base}.healthCheck");
    if !hc.path.starts_with('/') || hc.path.len() > 1024 {
        f.add(
            &format!("{p}.path"),
            format!("`{}` is not a health-check path", hc.path),
            help("start with `/`, at most 1024 characters"),
        );
    }
    if !valid_matcher(&hc.matcher) {
        f.add(
            &format!("{p}.matcher"),
            format!("`{}` is not an HTTP code matcher", hc.matcher),
            help("codes from 200 to 499: `200`, `200,302` or `200-299`"),
        );
    }
    f.range(
        &format!("{p}.intervalSeconds"),
        hc.interval_seconds.into(),
        5,
        300,
        " seconds",
    );
    f.range(
        &format!("{p}.timeoutSeconds"),
        hc.timeout_seconds.into(),
        2,
        120,
        " seconds",
    );
    if hc.timeout_seconds >= hc.interval_seconds {
        f.add(
            &format!("{p}.timeoutSeconds"),
            format!(
                "timeout {}s is not shorter than the interval {}s",
                hc.timeout_seconds, hc.interval_seconds
            ),
            help("a check must time out before the next one starts"),
        );
    }
    f.range(
        &format!("{p}.healthyThreshold"),
        hc.healthy_threshold.into(),
        2,
        10,
        "",
    );
    f.range(
        &format!("{p}.unhealthyThreshold"),
        hc.unhealthy_threshold.into(),
        2,
        10,
        "",
    );
    f.range(
        &format!("{base}.stickiness.durationSeconds"),
        lb.stickiness.duration_seconds.into(),
        1,
        604_800,
        " seconds",
    );
    f.range(
        &format!("{base}.deregistrationDelaySeconds"),
        lb.deregistration_delay_seconds.into(),
        0,
        3600,
        " seconds",
    );
}

/// The region of an ACM certificate ARN.
fn parse_acm_arn(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || !parts[1].starts_with("aws") || parts[2] != "acm" {
        return None;
    }
    let account_ok = parts[4].len() == 12 && parts[4].chars().all(|c| c.is_ascii_digit());
    let id = parts[5].strip_prefix("certificate/")?;
    (account_ok && !id.is_empty() && !parts[3].is_empty()).then_some(parts[3])
}

fn valid_matcher(m: &str) -> bool {
    let code = |s: &str| s.parse::<u16>().is_ok_and(|c| (200..=499).contains(&c));
    if let Some((a, b)) = m.split_once('-') {
        return code(a) && code(b) && a < b;
    }
    !m.is_empty() && m.split(',').all(code)
}

fn is_graviton(instance_type: &str) -> bool {
    // t4g, m7g, c6gn, x2gd, g5g: a `g` among the letters after the generation digit.
    let family = instance_type.split('.').next().unwrap_or("");
    match family.find(|c: char| c.is_ascii_digit()) {
        Some(i) => family[i..]
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .contains('g'),
        None => false,
    }
}

fn compute(f: &mut Findings, stack: &Stack) {
    let c = &stack.spec.compute;
    let base = "spec.compute";
    match (&c.ami.id, &c.ami.ssm_parameter) {
        (Some(_), Some(_)) | (None, None) => f.add(
            &format!("{base}.ami"),
            "give exactly one of `id` or `ssmParameter`",
            help(format!(
                "leave `ami` out for Amazon Linux 2023 (`ssmParameter: {AL2023_X86_64_PARAMETER}`)"
            )),
        ),
        (Some(id), None) if !is_hex_id(id, "ami-") => f.add(
            &format!("{base}.ami.id"),
            format!("`{id}` is not an AMI id"),
            help("AMI ids look like `ami-0abc12345678def90`"),
        ),
        (None, Some(param)) => {
            if !param.starts_with('/') {
                f.add(
                    &format!("{base}.ami.ssmParameter"),
                    format!("`{param}` is not an SSM parameter path"),
                    help("parameter paths start with `/`"),
                );
            }
            let arm = is_graviton(&c.instance_type);
            if arm && param.contains("x86_64") {
                f.add(
                    &format!("{base}.ami.ssmParameter"),
                    format!("`{}` is an arm64 (Graviton) type but the image is x86_64", c.instance_type),
                    help(format!("use `ssmParameter: {AL2023_ARM64_PARAMETER}`, or an x86_64 instance type such as `t3.small`")),
                );
            } else if !arm && param.contains("arm64") {
                f.add(
                    &format!("{base}.ami.ssmParameter"),
                    format!("`{}` is an x86_64 type but the image is arm64", c.instance_type),
                    help(format!("use `ssmParameter: {AL2023_X86_64_PARAMETER}`, or a Graviton type such as `t4g.small`")),
                );
            }
        }
        _ => {}
    }
    let it = &c.instance_type;
    let well_formed = it.split_once('.').is_some_and(|(fam, size)| {
        !fam.is_empty()
            && !size.is_empty()
            && fam.starts_with(|ch: char| ch.is_ascii_lowercase())
            && fam
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
            && size
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit())
    });
    if !well_formed {
        f.add(
            &format!("{base}.instanceType"),
            format!("`{it}` is not an EC2 instance type"),
            help("e.g. `t3.small`, `m7g.large`"),
        );
    }
    if c.max_size == 0 {
        f.add(
            &format!("{base}.maxSize"),
            "the group can never run an instance",
            help("use a maximum of at least 1"),
        );
    }
    if c.min_size > c.max_size {
        f.add(
            &format!("{base}.minSize"),
            format!(
                "minSize {} is greater than maxSize {}",
                c.min_size, c.max_size
            ),
            help("the group needs minSize <= desiredCapacity <= maxSize"),
        );
    }
    if let Some(desired) = c.desired_capacity
        && (desired < c.min_size || desired > c.max_size)
    {
        f.add(
            &format!("{base}.desiredCapacity"),
            format!(
                "desiredCapacity {desired} is outside minSize {} .. maxSize {}",
                c.min_size, c.max_size
            ),
            help("the group needs minSize <= desiredCapacity <= maxSize"),
        );
    }
    f.range(
        &format!("{base}.targetCpuUtilization"),
        c.target_cpu_utilization.into(),
        1,
        100,
        " percent",
    );
    f.range(
        &format!("{base}.rootVolumeSizeGiB"),
        c.root_volume_size_gib.into(),
        8,
        16_384,
        " GiB (Amazon Linux 2023 needs 8)",
    );
    let profile_ok = !c.instance_profile.is_empty()
        && c.instance_profile.len() <= 128
        && c.instance_profile
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "+=,.@_-".contains(ch));
    if !profile_ok {
        f.add(
            &format!("{base}.instanceProfile"),
            format!("`{}` is not an instance profile name", c.instance_profile),
            help("the name (not the ARN) of an existing IAM instance profile: 1 to 128 of letters, digits and `+=,.@_-`"),
        );
    }
    f.range(
        &format!("{base}.imdsHopLimit"),
        c.imds_hop_limit.into(),
        1,
        64,
        "",
    );
    f.range(
        &format!("{base}.instanceRefresh.minHealthyPercentage"),
        c.instance_refresh.min_healthy_percentage.into(),
        0,
        100,
        " percent",
    );
}

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

fn prestashop(f: &mut Findings, stack: &Stack) {
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
        let path = format!("{base}.extraEnv.{key}");
        let name_ok = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            f.add(
                &path,
                format!("`{key}` is not an environment variable name"),
                help("letters, digits and `_`, not starting with a digit"),
            );
        } else if let Some((_, owner)) = MANAGED_ENV.iter().find(|(k, _)| k == key) {
            f.add(
                &path,
                format!("`{key}` is set by the reconciler"),
                help(format!("it comes from {owner}; remove it from extraEnv")),
            );
        } else if ["PS_DEV_MODE", "PS_HOST_MODE", "PS_DEMO_MODE"].contains(&key.as_str())
            && !["0", "1"].contains(&value.as_str())
        {
            f.add(
                &path,
                format!("`{value}` is read by PHP as a boolean string"),
                help("use \"0\" or \"1\": PHP reads any non-empty string except \"0\", even \"false\", as true"),
            );
        }
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

fn domain_problem(domain: &str) -> Option<String> {
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

fn database(f: &mut Findings, stack: &Stack) {
    let db = &stack.spec.database;
    let base = "spec.database";
    let v = &db.engine_version;
    let major_ok = v == "8.0"
        || v == "8.4"
        || v.strip_prefix("8.0.")
            .or_else(|| v.strip_prefix("8.4."))
            .is_some_and(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()));
    if !major_ok {
        f.add(
            &format!("{base}.engineVersion"),
            format!("MySQL `{v}` is not supported"),
            help(
                "use `8.4` (recommended) or `8.0`, optionally with a minor version such as `8.4.3`",
            ),
        );
    }
    let class_ok = db.instance_class.strip_prefix("db.").is_some_and(|rest| {
        rest.split_once('.')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
            && rest
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.')
    });
    if !class_ok {
        f.add(
            &format!("{base}.instanceClass"),
            format!("`{}` is not an RDS instance class", db.instance_class),
            help("e.g. `db.t4g.micro`, `db.m7g.large`"),
        );
    }
    f.range(
        &format!("{base}.allocatedStorageGiB"),
        db.allocated_storage_gib.into(),
        20,
        65_536,
        " GiB (gp3)",
    );
    if let Some(max) = db.max_allocated_storage_gib
        && (max <= db.allocated_storage_gib || max > 65_536)
    {
        f.add(
            &format!("{base}.maxAllocatedStorageGiB"),
            format!(
                "{max} GiB must be above allocatedStorageGiB ({}) and at most 65536",
                db.allocated_storage_gib
            ),
            help("raise it, or set it to null to turn storage autoscaling off"),
        );
    }
    f.range(
        &format!("{base}.backupRetentionDays"),
        db.backup_retention_days.into(),
        0,
        35,
        " days",
    );
    let ident_ok = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if !ident_ok(&db.name, 64) {
        f.add(
            &format!("{base}.name"),
            format!("`{}` is not a MySQL database name RDS accepts", db.name),
            help("1 to 64 letters, digits and `_`, starting with a letter"),
        );
    }
    if !ident_ok(&db.username, 16)
        || ["rdsadmin", "root", "mysql"].contains(&db.username.to_ascii_lowercase().as_str())
    {
        f.add(
            &format!("{base}.username"),
            format!("`{}` is not a master user name RDS accepts", db.username),
            help("1 to 16 letters, digits and `_`, starting with a letter, not `rdsadmin`, `root` or `mysql`"),
        );
    }
    if let Some(from) = &db.restore_from
        && from != "none"
        && !snapshot_id_ok(from)
    {
        f.add(
            &format!("{base}.restoreFrom"),
            format!("`{from}` is not a DB snapshot identifier"),
            help("a snapshot identifier (letters, digits and single hyphens, starting with a letter, e.g. `shop-db-final-20261126175752`), an automated backup (`rds:shop-db-2026-11-26-03-10`), or `none` to start with an empty database on purpose"),
        );
    }
}

/// RDS snapshot identifiers: 1-255 letters, digits, hyphens (not two in a row, not last),
/// starting with a letter; automated backups are `rds:<identifier>-<time>`.
fn snapshot_id_ok(id: &str) -> bool {
    let body = id.strip_prefix("rds:").unwrap_or(id);
    !body.is_empty()
        && body.len() <= 255
        && body.starts_with(|c: char| c.is_ascii_alphabetic())
        && body.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !body.contains("--")
        && !body.ends_with('-')
}

fn file_system(f: &mut Findings, stack: &Stack) {
    let fs = &stack.spec.file_system;
    let base = "spec.fileSystem";
    match (fs.throughput_mode, fs.provisioned_throughput_mibps) {
        (ThroughputMode::Provisioned, None) => f.add(
            &format!("{base}.provisionedThroughputMibps"),
            "provisioned throughput needs a figure",
            help("set `provisionedThroughputMibps`, e.g. 64, or use `throughputMode: elastic`"),
        ),
        (ThroughputMode::Provisioned, Some(v)) if !(1.0..=3414.0).contains(&v) => f.add(
            &format!("{base}.provisionedThroughputMibps"),
            format!("{v} MiB/s is out of range"),
            help("allowed: 1 to 3414 MiB/s"),
        ),
        (mode, Some(_)) if mode != ThroughputMode::Provisioned => f.add(
            &format!("{base}.provisionedThroughputMibps"),
            format!(
                "only used with `throughputMode: provisioned`, not `{}`",
                mode.as_aws()
            ),
            help("remove it, or set `throughputMode: provisioned`"),
        ),
        _ => {}
    }
    const IA_DAYS: [u32; 9] = [1, 7, 14, 30, 60, 90, 180, 270, 365];
    if let Some(days) = fs.transition_to_ia_days
        && !IA_DAYS.contains(&days)
    {
        f.add(
            &format!("{base}.transitionToIaDays"),
            format!("EFS has no {days}-day transition"),
            help("allowed: 1, 7, 14, 30, 60, 90, 180, 270 or 365 days, or null for none"),
        );
    }
}

fn secrets(f: &mut Findings, stack: &Stack) {
    let Some(prefix) = &stack.spec.secrets.parameter_prefix else {
        return;
    };
    let path = "spec.secrets.parameterPrefix";
    let chars_ok = prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c));
    let lower = prefix.to_ascii_lowercase();
    if !prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains("//") || !chars_ok {
        f.add(
            path,
            format!("`{prefix}` is not an SSM parameter path prefix"),
            help("start with `/`, no trailing `/`, letters, digits and `_ . - /`, e.g. `/presta-reconciler/shop`"),
        );
    } else if lower.starts_with("/aws") || lower.starts_with("/ssm") {
        f.add(
            path,
            format!("`{prefix}` is in a namespace reserved by AWS"),
            help("paths may not start with `/aws` or `/ssm`"),
        );
    } else if prefix.matches('/').count() > 13 {
        f.add(
            path,
            "too deep",
            help("SSM allows 15 levels; the reconciler adds one"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_forms() {
        assert!(valid_matcher("200"));
        assert!(valid_matcher("200,302"));
        assert!(valid_matcher("200-299"));
        assert!(!valid_matcher("299-200"));
        assert!(!valid_matcher("abc"));
        assert!(!valid_matcher("600"));
        assert!(!valid_matcher(""));
    }

    #[test]
    fn graviton_detection() {
        for arm in [
            "t4g.small",
            "m7g.large",
            "c6gn.xlarge",
            "x2gd.medium",
            "g5g.xlarge",
        ] {
            assert!(is_graviton(arm), "{arm}");
        }
        for x86 in ["t3.small", "m5d.large", "g5.xlarge", "c7i.large"] {
            assert!(!is_graviton(x86), "{x86}");
        }
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

    #[test]
    fn acm_arn_region() {
        assert_eq!(
            parse_acm_arn("arn:aws:acm:eu-west-3:123456789012:certificate/abc-123"),
            Some("eu-west-3")
        );
        assert_eq!(
            parse_acm_arn("arn:aws:acm:eu-west-3:1234:certificate/abc"),
            None
        );
        assert_eq!(
            parse_acm_arn("arn:aws:iam::123456789012:server-certificate/x"),
            None
        );
    }

    #[test]
    fn stack_names() {
        assert!(stack_name_problem("shop-1").is_none());
        assert!(stack_name_problem("Shop").is_some());
        assert!(stack_name_problem("1shop").is_some());
        assert!(stack_name_problem("shop--a").is_some());
        assert!(stack_name_problem("shop-").is_some());
        assert!(stack_name_problem(&"a".repeat(28)).is_none());
        let (msg, hint) = stack_name_problem(&"a".repeat(29)).unwrap();
        assert!(msg.contains("29 characters"), "{msg}");
        assert!(hint.contains("at most 28"), "{hint}");
    }
}
