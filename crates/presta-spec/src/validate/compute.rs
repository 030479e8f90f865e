//! `spec.compute`: instances, AMI, group sizes, instance refresh.

use crate::defaults::{AL2023_ARM64_PARAMETER, AL2023_X86_64_PARAMETER};
use crate::model::{Compute, Stack};

use super::{Findings, help, is_hex_id};

pub(super) fn is_graviton(instance_type: &str) -> bool {
    // t4g, m7g, c6gn, x2gd, g5g: a `g` among the letters after the generation digit.
    let family = instance_type.split('.').next().unwrap_or("");
    match family.find(|c: char| c.is_ascii_digit()) {
        Some(i) => family[i..]
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .contains('g'),
        None => false,
    }
}

pub(super) fn compute(f: &mut Findings, stack: &Stack) {
    let c = &stack.spec.compute;
    let base = "spec.compute";
    ami(f, c);
    instance_type(f, &c.instance_type);
    sizes(f, c);
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

/// `ami`: one of an id or an SSM parameter, of the instance type's architecture.
fn ami(f: &mut Findings, c: &Compute) {
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
}

/// `instanceType`: family and size, such as `t3.small`.
fn instance_type(f: &mut Findings, it: &str) {
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
            "spec.compute.instanceType",
            format!("`{it}` is not an EC2 instance type"),
            help("e.g. `t3.small`, `m7g.large`"),
        );
    }
}

/// The group's sizes: minSize <= desiredCapacity <= maxSize, and at least one instance.
fn sizes(f: &mut Findings, c: &Compute) {
    let base = "spec.compute";
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
