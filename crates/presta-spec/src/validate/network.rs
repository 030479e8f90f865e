//! `spec.network`: the VPC and subnet selectors.

use std::collections::BTreeSet;

use crate::model::{Stack, SubnetSelector};

use super::{Findings, help, is_hex_id};

pub(super) fn network(f: &mut Findings, stack: &Stack) {
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

pub(super) fn subnets(f: &mut Findings, path: &str, sel: &SubnetSelector) {
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
