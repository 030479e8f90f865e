//! The rule for the stack's data: the database and the file system are created empty together
//! (a new shop) or not at all. A missing data-bearing resource is restored from what the stack
//! kept (the database's snapshot; a retained file system is simply found again by its creation
//! token), and when there is nothing to restore from while the other half of the shop exists,
//! it is *blocked* with the reason and the ways out, never rebuilt empty behind the owner's
//! back. The database password follows the database: a new one is generated only together
//! with a new, empty database.
//!
//! Decided once per run, before any change, from the observation (plus a snapshot lookup when
//! the database is missing: no extra call in steady state).

use presta_aws::auto_scaling_group::AutoScalingGroups;
use presta_aws::db_instance::DbInstances;
use presta_aws::db_snapshot::{self, DbSnapshot};
use presta_aws::file_system::FileSystems;
use presta_aws::parameter::Parameters;
use presta_aws::{Aws, AwsError};
use presta_spec::Stack;
use presta_spec::naming::Component;

use crate::snapshot::Snapshot;

/// What a missing database is made from.
#[derive(Debug, Clone, PartialEq)]
pub enum DbSource {
    /// The database exists: nothing to decide.
    Live,
    /// Restore this snapshot.
    Restore(DbSnapshot),
    /// A new, empty database (a new shop, or `restoreFrom: none`).
    Empty,
    /// Not created: the reason and the options.
    Blocked(String),
}

/// The decisions for one stack's data.
#[derive(Debug, Clone, PartialEq)]
pub struct DataPlan {
    pub db: DbSource,
    /// Why a missing file system is not created empty, if it is not.
    pub file_system_blocked: Option<String>,
    /// Why a missing database password is not generated, if it is not.
    pub db_password_blocked: Option<String>,
}

/// What is live, as the rule needs it (kept apart from AWS so the rule is a pure function).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub stack: String,
    pub db_identifier: String,
    pub db_live: bool,
    pub fs_id: Option<String>,
    pub db_password_live: bool,
    pub db_password_parameter: String,
    pub restore_from: Option<String>,
    pub allow_empty_fs: bool,
    /// The file system still carries the unused mark and no instance of the stack exists:
    /// it was made by a first creation that did not finish, and holds no shop.
    pub fs_unused: bool,
}

/// Observes what the rule needs: a snapshot lookup only when the database is missing.
pub async fn decide(aws: &Aws, stack: &Stack, snap: &Snapshot) -> Result<DataPlan, AwsError> {
    let name = stack.name();
    let names = stack.names();
    let db_identifier = names.name(Component::DbInstance);
    let param = names.db_password.clone();
    let facts = Facts {
        stack: name.to_string(),
        db_live: snap.contains::<DbInstances>(&db_identifier),
        fs_id: snap
            .get::<FileSystems>(&names.name(Component::FileSystem))
            .map(|f| f.id.clone()),
        db_password_live: snap.contains::<Parameters>(&param),
        db_password_parameter: param,
        restore_from: stack.spec.database.restore_from.clone(),
        allow_empty_fs: stack.spec.file_system.allow_empty,
        fs_unused: snap
            .get::<FileSystems>(&names.name(Component::FileSystem))
            .is_some_and(|f| f.tags.contains_key(presta_aws::file_system::TAG_UNUSED))
            && !snap.contains::<AutoScalingGroups>(&names.name(Component::AutoScalingGroup)),
        db_identifier,
    };
    // The snapshot to restore from, when one is needed.
    let found = if facts.db_live {
        Lookup::NotNeeded
    } else {
        match facts.restore_from.as_deref() {
            Some("none") => Lookup::NotNeeded,
            Some(id) => Lookup::Named(id.to_string(), db_snapshot::find(aws, id).await?),
            None => {
                let all = db_snapshot::list(aws, &facts.db_identifier).await?;
                let usable = |s: &&DbSnapshot| s.status == "available";
                let owned = all
                    .iter()
                    .filter(usable)
                    .find(|s| presta_aws::tags::owned_by(&s.tags, &facts.stack))
                    .cloned();
                match owned {
                    Some(s) => Lookup::Owned(Some(s)),
                    None => Lookup::Untagged(all.iter().find(usable).cloned()),
                }
            }
        }
    };
    Ok(rule(&facts, found))
}

/// The result of looking for a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    NotNeeded,
    /// `restoreFrom: <id>` and what was found under that id.
    Named(String, Option<DbSnapshot>),
    /// The newest snapshot with the stack's tags, if any.
    Owned(Option<DbSnapshot>),
    /// No snapshot with the stack's tags; the newest snapshot of the identifier without them
    /// (made by hand or another tool), named in the reason but never used on its own.
    Untagged(Option<DbSnapshot>),
}

/// The rule itself, pure.
pub fn rule(f: &Facts, found: Lookup) -> DataPlan {
    let db = if f.db_live {
        DbSource::Live
    } else {
        match found {
            Lookup::NotNeeded => DbSource::Empty,
            Lookup::Named(_, Some(s)) if s.status == "available" => DbSource::Restore(s),
            Lookup::Named(id, Some(s)) => DbSource::Blocked(format!(
                "the snapshot `{id}` named in spec.database.restoreFrom is `{}`; the database is restored once it is `available`",
                s.status
            )),
            Lookup::Named(id, None) => DbSource::Blocked(format!(
                "spec.database.restoreFrom names the snapshot `{id}`, which does not exist in this region: check the identifier (`aws rds describe-db-snapshots --db-instance-identifier {}`), or set `restoreFrom: none` to start with an empty database",
                f.db_identifier
            )),
            Lookup::Owned(Some(s)) => DbSource::Restore(s),
            Lookup::Owned(None) | Lookup::Untagged(None) => match &f.fs_id {
                // A first creation interrupted before the database: the file system is empty.
                Some(_) if f.fs_unused => DbSource::Empty,
                Some(fs) => DbSource::Blocked(format!(
                    "the database `{db}` is missing while the shop's file system {fs} exists, and no snapshot of it was found: an empty database next to the shop's files would lose every order and customer. \
                     Restore it: set spec.database.restoreFrom to a snapshot (`aws rds describe-db-snapshots --db-instance-identifier {db}`; automated backups are `rds:…`), or set `restoreFrom: none` to start with an empty database on purpose",
                    db = f.db_identifier
                )),
                None => DbSource::Empty,
            },
            // A snapshot exists but nothing says it is this stack's: a person decides.
            Lookup::Untagged(Some(s)) => DbSource::Blocked(format!(
                "the database `{db}` is missing; the snapshot `{id}` (taken {when}) has its identifier but not this stack's ownership tags, so it is not restored on its own. \
                 Restore it: set `spec.database.restoreFrom: {id}`{tail}",
                db = f.db_identifier,
                id = s.id,
                when = s.created.as_deref().unwrap_or("at an unknown time"),
                tail = if f.fs_id.is_some() {
                    "; an empty database next to the shop's files would lose every order and customer".to_string()
                } else {
                    ", or `restoreFrom: none` to start with an empty database".to_string()
                }
            )),
        }
    };
    let db_has_data = matches!(db, DbSource::Live | DbSource::Restore(_));
    let file_system_blocked = (f.fs_id.is_none() && db_has_data && !f.allow_empty_fs).then(|| {
        let db_state = match &db {
            DbSource::Restore(s) => format!("is being restored from snapshot `{}`", s.id),
            _ => "exists".to_string(),
        };
        format!(
            "the shop's file system is missing while its database `{}` {db_state}: an empty file system would not match the shop in the database (PrestaShop refuses to start on it). \
             Bring the files back (restore the EFS backup with AWS Backup and tag the restored file system with this stack's tags), or set `spec.fileSystem.allowEmpty: true` to start the files over",
            f.db_identifier
        )
    });
    let db_password_blocked = (!f.db_password_live && db_has_data).then(|| {
        format!(
            "the database password parameter {} is missing while the database `{}` {}: a new password would not be the database's (nor the one in the shop's parameters.php). \
             Put the original value back (`aws ssm put-parameter --name {} --type SecureString --value …`), or set a new one in all three places: that parameter, the database (`aws rds modify-db-instance --db-instance-identifier {} --master-user-password … --apply-immediately`) and `database_password` in the shop's app/config/parameters.php on the file system",
            f.db_password_parameter,
            f.db_identifier,
            if f.db_live { "exists" } else { "is restored from a snapshot" },
            f.db_password_parameter,
            f.db_identifier
        )
    });
    DataPlan {
        db,
        file_system_blocked,
        db_password_blocked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            stack: "shop".into(),
            db_identifier: "shop-db".into(),
            db_live: true,
            fs_id: Some("fs-1".into()),
            db_password_live: true,
            db_password_parameter: "/presta-reconciler/shop/db-password".into(),
            restore_from: None,
            allow_empty_fs: false,
            fs_unused: false,
        }
    }

    fn snapshot(status: &str) -> DbSnapshot {
        DbSnapshot {
            id: "shop-db-final-20261126175752".into(),
            arn: "arn:snap".into(),
            instance: "shop-db".into(),
            snapshot_type: "manual".into(),
            status: status.into(),
            created: Some("2026-11-26T17:57:52Z".into()),
            created_epoch: 1.0,
            allocated_storage_gib: 20,
            tags: Default::default(),
        }
    }

    #[test]
    fn a_whole_shop_needs_nothing() {
        let p = rule(&facts(), Lookup::NotNeeded);
        assert_eq!(p.db, DbSource::Live);
        assert_eq!(p.file_system_blocked, None);
        assert_eq!(p.db_password_blocked, None);
    }

    #[test]
    fn a_new_shop_is_created_empty_together() {
        let f = Facts {
            db_live: false,
            fs_id: None,
            db_password_live: false,
            ..facts()
        };
        let p = rule(&f, Lookup::Owned(None));
        assert_eq!(p.db, DbSource::Empty);
        assert_eq!(p.file_system_blocked, None);
        assert_eq!(p.db_password_blocked, None);
    }

    #[test]
    fn a_lost_database_next_to_the_files_is_blocked_not_rebuilt() {
        let f = Facts {
            db_live: false,
            ..facts()
        };
        let DbSource::Blocked(why) = rule(&f, Lookup::Owned(None)).db else {
            panic!("not blocked")
        };
        assert!(why.contains("shop-db") && why.contains("fs-1"), "{why}");
        assert!(why.contains("restoreFrom: none"), "{why}");
    }

    #[test]
    fn a_first_creation_cut_before_the_database_creates_it_empty() {
        // The file system still carries the unused mark and no instance ever ran.
        let f = Facts {
            db_live: false,
            db_password_live: true,
            fs_unused: true,
            ..facts()
        };
        assert_eq!(rule(&f, Lookup::Owned(None)).db, DbSource::Empty);
        // An untagged snapshot of the identifier still needs a person.
        let DbSource::Blocked(_) = rule(&f, Lookup::Untagged(Some(snapshot("available")))).db
        else {
            panic!("not blocked")
        };
    }

    #[test]
    fn a_lost_database_is_restored_from_the_stack_snapshot() {
        let f = Facts {
            db_live: false,
            ..facts()
        };
        let p = rule(&f, Lookup::Owned(Some(snapshot("available"))));
        assert_eq!(p.db, DbSource::Restore(snapshot("available")));
        assert_eq!(p.file_system_blocked, None);
    }

    #[test]
    fn an_untagged_snapshot_is_named_but_never_used_on_its_own() {
        let f = Facts {
            db_live: false,
            ..facts()
        };
        let DbSource::Blocked(why) = rule(&f, Lookup::Untagged(Some(snapshot("available")))).db
        else {
            panic!("not blocked")
        };
        assert!(
            why.contains("restoreFrom: shop-db-final-20261126175752"),
            "{why}"
        );
        // A new shop with an unrelated old snapshot of the same name is blocked too: the
        // person says whether to restore it or to start empty.
        let new = Facts {
            db_live: false,
            fs_id: None,
            ..facts()
        };
        assert!(matches!(
            rule(&new, Lookup::Untagged(Some(snapshot("available")))).db,
            DbSource::Blocked(w) if w.contains("restoreFrom: none")
        ));
    }

    #[test]
    fn restore_from_names_a_snapshot_or_none() {
        let f = Facts {
            db_live: false,
            restore_from: Some("x".into()),
            ..facts()
        };
        assert!(matches!(
            rule(&f, Lookup::Named("x".into(), None)).db,
            DbSource::Blocked(w) if w.contains("does not exist")
        ));
        assert!(matches!(
            rule(&f, Lookup::Named("x".into(), Some(snapshot("creating")))).db,
            DbSource::Blocked(w) if w.contains("`creating`")
        ));
        assert_eq!(rule(&f, Lookup::NotNeeded).db, DbSource::Empty);
    }

    #[test]
    fn a_lost_file_system_next_to_the_database_is_blocked_unless_allowed() {
        let f = Facts {
            fs_id: None,
            ..facts()
        };
        let why = rule(&f, Lookup::NotNeeded).file_system_blocked.unwrap();
        assert!(why.contains("allowEmpty"), "{why}");
        let allowed = Facts {
            allow_empty_fs: true,
            ..f.clone()
        };
        assert_eq!(rule(&allowed, Lookup::NotNeeded).file_system_blocked, None);
        // Restoring the database without its files is the same loss.
        let both = Facts {
            db_live: false,
            ..f
        };
        let p = rule(&both, Lookup::Owned(Some(snapshot("available"))));
        assert!(p.file_system_blocked.unwrap().contains("being restored"));
    }

    #[test]
    fn a_lost_password_next_to_the_database_is_never_regenerated() {
        let f = Facts {
            db_password_live: false,
            ..facts()
        };
        let why = rule(&f, Lookup::NotNeeded).db_password_blocked.unwrap();
        assert!(why.contains("put-parameter"), "{why}");
        let restoring = Facts {
            db_live: false,
            db_password_live: false,
            ..facts()
        };
        assert!(
            rule(&restoring, Lookup::Owned(Some(snapshot("available"))))
                .db_password_blocked
                .is_some()
        );
    }
}
