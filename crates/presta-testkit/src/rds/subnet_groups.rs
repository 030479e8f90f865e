//! DB subnet groups.

use super::*;

pub(super) fn register(h: &mut Vec<Handler>) {
    handle!(
        h,
        W,
        "DescribeDBSubnetGroups",
        op::describe_db_subnet_groups::DescribeDbSubnetGroupsInput,
        describe_db_subnet_groups
    );
    handle!(
        h,
        W,
        "CreateDBSubnetGroup",
        op::create_db_subnet_group::CreateDbSubnetGroupInput,
        create_db_subnet_group
    );
    handle!(
        h,
        W,
        "ModifyDBSubnetGroup",
        op::modify_db_subnet_group::ModifyDbSubnetGroupInput,
        modify_db_subnet_group
    );
    handle!(
        h,
        W,
        "DeleteDBSubnetGroup",
        op::delete_db_subnet_group::DeleteDbSubnetGroupInput,
        delete_db_subnet_group
    );
}

fn build_group(
    w: &World,
    name: &str,
    description: Option<&str>,
    ids: &[String],
) -> Result<DbSubnetGroup, Failure> {
    let mut vpc = None;
    let mut subnets = Vec::new();
    for id in ids {
        let s = w
            .subnets
            .iter()
            .find(|s| s.subnet_id() == Some(id))
            .ok_or_else(|| {
                Failure::new("InvalidSubnet", format!("The subnet {id} does not exist"))
            })?;
        if vpc.is_some() && vpc != s.vpc_id() {
            return Err(Failure::new(
                "InvalidParameterValue",
                "subnets are in different VPCs",
            ));
        }
        vpc = s.vpc_id();
        subnets.push(
            Subnet::builder()
                .subnet_identifier(id)
                .subnet_status("Active")
                .build(),
        );
    }
    Ok(DbSubnetGroup::builder()
        .db_subnet_group_name(name)
        .set_db_subnet_group_description(description.map(str::to_string))
        .db_subnet_group_arn(w.arn("rds", &format!("subgrp:{name}")))
        .set_vpc_id(vpc.map(str::to_string))
        .subnet_group_status("Complete")
        .set_subnets(Some(subnets))
        .build())
}

/// `DescribeDBSubnetGroups`.
fn describe_db_subnet_groups(
    w: &mut World,
    i: &op::describe_db_subnet_groups::DescribeDbSubnetGroupsInput,
) -> Result<op::describe_db_subnet_groups::DescribeDbSubnetGroupsOutput, Failure> {
    if let Some(name) = i.db_subnet_group_name() {
        let g = subnet_group(w, Some(name))?;
        return Ok(
            op::describe_db_subnet_groups::DescribeDbSubnetGroupsOutput::builder()
                .db_subnet_groups(g)
                .build(),
        );
    }
    let all = w.subnet_groups.iter().map(|(g, _)| g.clone()).collect();
    Ok(
        op::describe_db_subnet_groups::DescribeDbSubnetGroupsOutput::builder()
            .set_db_subnet_groups(Some(all))
            .build(),
    )
}

/// `CreateDBSubnetGroup`.
fn create_db_subnet_group(
    w: &mut World,
    i: &op::create_db_subnet_group::CreateDbSubnetGroupInput,
) -> Result<op::create_db_subnet_group::CreateDbSubnetGroupOutput, Failure> {
    let name = i.db_subnet_group_name().unwrap_or_default().to_string();
    if subnet_group(w, Some(&name)).is_ok() {
        return Err(Failure::new(
            "DBSubnetGroupAlreadyExists",
            format!("The DB subnet group '{name}' already exists."),
        ));
    }
    let group = build_group(w, &name, i.db_subnet_group_description(), i.subnet_ids())?;
    w.subnet_groups.push((group.clone(), i.tags().to_vec()));
    Ok(
        op::create_db_subnet_group::CreateDbSubnetGroupOutput::builder()
            .db_subnet_group(group)
            .build(),
    )
}

/// `ModifyDBSubnetGroup`.
fn modify_db_subnet_group(
    w: &mut World,
    i: &op::modify_db_subnet_group::ModifyDbSubnetGroupInput,
) -> Result<op::modify_db_subnet_group::ModifyDbSubnetGroupOutput, Failure> {
    let old = subnet_group(w, i.db_subnet_group_name())?;
    let name = old.db_subnet_group_name().unwrap_or_default().to_string();
    let group = build_group(
        w,
        &name,
        i.db_subnet_group_description()
            .or(old.db_subnet_group_description()),
        i.subnet_ids(),
    )?;
    if let Some((g, _)) = w
        .subnet_groups
        .iter_mut()
        .find(|(g, _)| g.db_subnet_group_name() == Some(&name))
    {
        *g = group.clone();
    }
    for d in &mut w.databases {
        if d.db
            .db_subnet_group()
            .and_then(|g| g.db_subnet_group_name())
            == Some(&name)
        {
            d.db.db_subnet_group = Some(group.clone());
        }
    }
    Ok(
        op::modify_db_subnet_group::ModifyDbSubnetGroupOutput::builder()
            .db_subnet_group(group)
            .build(),
    )
}

/// `DeleteDBSubnetGroup`.
fn delete_db_subnet_group(
    w: &mut World,
    i: &op::delete_db_subnet_group::DeleteDbSubnetGroupInput,
) -> Result<op::delete_db_subnet_group::DeleteDbSubnetGroupOutput, Failure> {
    let name = subnet_group(w, i.db_subnet_group_name())?
        .db_subnet_group_name
        .unwrap_or_default();
    if w.databases.iter().any(|d| {
        d.db.db_subnet_group()
            .and_then(|g| g.db_subnet_group_name())
            == Some(&name)
    }) {
        return Err(Failure::new(
            "InvalidDBSubnetGroupStateFault",
            format!(
                "Cannot delete the subnet group '{name}' because at least one database instance is still using it."
            ),
        ));
    }
    w.subnet_groups
        .retain(|(g, _)| g.db_subnet_group_name() != Some(&name));
    Ok(op::delete_db_subnet_group::DeleteDbSubnetGroupOutput::builder().build())
}
