//! Which resources of a state make up which stack: the resources are linked by the ids, ARNs
//! and names they mention (a listener its load balancer, a rule its security group, the user
//! data its password's parameter and file system), and every linked set that holds a load
//! balancer, an Auto Scaling group or a database is one stack.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::attrs;
use crate::state::Resource;

/// One stack found in the state.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    /// Indices into the state's resources: the stack's managed resources, known types or not.
    pub members: Vec<usize>,
}

/// The ids, ARNs and names by which other resources refer to `r`.
fn identities(r: &Resource) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["id", "arn"] {
        if let Some(v) = r.str(attr) {
            out.push(v.to_string());
        }
    }
    let named = [
        "aws_lb",
        "aws_lb_target_group",
        "aws_db_subnet_group",
        "aws_autoscaling_group",
        "aws_ssm_parameter",
        "aws_launch_template",
    ];
    if named.contains(&r.ty.as_str())
        && let Some(n) = r.str("name")
    {
        out.push(n.to_string());
    }
    if let Some(i) = r.str("identifier").filter(|_| r.ty == "aws_db_instance") {
        out.push(i.to_string());
    }
    // Mentions of a resource's own region-wide names that are too short to be telling are
    // not links.
    out.retain(|s| s.len() >= 4);
    out
}

fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

struct Sets(Vec<usize>);

impl Sets {
    fn find(&mut self, i: usize) -> usize {
        let mut at = i;
        while self.0[at] != at {
            self.0[at] = self.0[self.0[at]];
            at = self.0[at];
        }
        at
    }
    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b)] = a.min(b);
        }
    }
}

/// The stacks of the state, in the order of their first resource.
pub fn stacks(resources: &[Resource]) -> Vec<Group> {
    let managed: Vec<usize> = (0..resources.len())
        .filter(|&i| resources[i].managed())
        .collect();
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    for &i in &managed {
        for id in identities(&resources[i]) {
            owner.entry(id).or_insert(i);
        }
    }
    let mut sets = Sets((0..resources.len()).collect());
    for &i in &managed {
        let r = &resources[i];
        let mut mentioned = Vec::new();
        for (k, v) in &r.values {
            if k == "tags" || k == "tags_all" {
                continue;
            }
            strings(v, &mut mentioned);
        }
        for s in mentioned {
            if let Some(&j) = owner.get(s) {
                sets.join(i, j);
            }
        }
        // The user data mentions the file system, the database and the parameters by value.
        if let Some(text) = attrs::user_data(r) {
            for (id, &j) in &owner {
                let telling = id.starts_with("fs-") || id.starts_with('/') || id.contains('.');
                if telling && text.contains(id.as_str()) {
                    sets.join(i, j);
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &i in &managed {
        let root = sets.find(i);
        groups.entry(root).or_default().push(i);
    }
    let mut out: Vec<Group> = Vec::new();
    let mut taken: BTreeSet<String> = BTreeSet::new();
    for members in groups.into_values() {
        let anchors = ["aws_lb", "aws_autoscaling_group", "aws_db_instance"];
        if !members
            .iter()
            .any(|&i| anchors.contains(&resources[i].ty.as_str()))
        {
            continue;
        }
        let mut name = stack_name(resources, &members);
        let base = name.clone();
        let mut n = 2;
        while taken.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        taken.insert(name.clone());
        out.push(Group { name, members });
    }
    out
}

/// The name a stack gets: its module's (when all of it lives in one module), else its load
/// balancer's, Auto Scaling group's or database's name without a `-alb`-like suffix; always
/// a valid stack name.
fn stack_name(resources: &[Resource], members: &[usize]) -> String {
    let modules: BTreeSet<&str> = members
        .iter()
        .map(|&i| resources[i].module.as_str())
        .collect();
    if modules.len() == 1
        && let Some(m) = modules.first().filter(|m| !m.is_empty())
    {
        let last = m.rsplit("module.").next().unwrap_or(m);
        let last = last.replace(['[', ']', '"'], "-");
        let name = sanitize(&last);
        if !name.is_empty() {
            return name;
        }
    }
    for (ty, attr, suffixes) in [
        ("aws_lb", "name", &["-alb", "-lb", "-elb"][..]),
        (
            "aws_autoscaling_group",
            "name",
            &["-asg", "-app", "-group"][..],
        ),
        (
            "aws_db_instance",
            "identifier",
            &["-db", "-rds", "-mysql"][..],
        ),
    ] {
        if let Some(n) = members
            .iter()
            .map(|&i| &resources[i])
            .find(|r| r.ty == ty)
            .and_then(|r| r.str(attr))
        {
            let stem = suffixes.iter().find_map(|s| n.strip_suffix(s)).unwrap_or(n);
            let name = sanitize(stem);
            if !name.is_empty() {
                return name;
            }
        }
    }
    "shop".to_string()
}

/// A valid stack name from any text: lowercase letters, digits and single hyphens, starting
/// with a letter, at most as long as the deterministic names allow.
pub fn sanitize(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
    }
    let mut out = out.trim_matches('-').to_string();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out = format!("shop-{out}");
    }
    out.truncate(presta_spec::naming::max_stack_name_len());
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_valid() {
        assert_eq!(sanitize("PrestaShop_Prod"), "prestashop-prod");
        assert_eq!(sanitize("--a__b--"), "a-b");
        assert_eq!(sanitize("2024shop"), "shop-2024shop");
        assert!(sanitize(&"x".repeat(60)).len() <= 28);
    }
}
