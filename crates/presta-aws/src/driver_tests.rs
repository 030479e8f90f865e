//! Table tests of the generic steps with a fake driver: what `sync` and `remove` call and
//! report, for every mode and state. No AWS: the fake never sends a request.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::*;
use crate::calls::CallStats;
use crate::clients::ClientSettings;
use crate::diff::{Action, FieldDiff, Kind};
use crate::error::{AwsError, ErrorClass};

#[derive(Clone, Debug, PartialEq)]
struct Live {
    name: String,
    value: i32,
    tags: Tags,
}

/// A kind whose `value` is managed; `blocked_value` differences are refused.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<&'static str>>,
    /// What `create` answers: `None` succeeds, `Some(class)` fails with that class.
    create_fails: Option<ErrorClass>,
    /// What a lookup after a lost create race finds.
    existing: Option<Live>,
    fail_delete: bool,
}

struct Want {
    name: String,
    value: i32,
    /// A value that cannot be changed in place.
    fixed: i32,
}

impl Fake {
    fn called(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().clone()
    }
}

impl Driver for Fake {
    const KIND: Kind = Kind::TARGET_GROUP;
    type Desired = Want;
    type Live = Live;
    const IAM: crate::registry::Iam = crate::registry::Iam::NONE;
    const TEARDOWN: crate::registry::Teardown =
        crate::registry::Teardown::new(0, crate::registry::Deletion::Plain);

    fn scope(_: &crate::registry::Targets, _: &crate::registry::Observed) -> Scope {
        Scope::default()
    }

    fn name(d: &Want) -> String {
        d.name.clone()
    }
    fn id(l: &Live) -> String {
        format!("id-{}", l.name)
    }
    fn tags(l: &Live) -> Option<&Tags> {
        Some(&l.tags)
    }
    async fn observe(&self, _: &Aws, _: &Scope) -> Result<BTreeMap<String, Live>, AwsError> {
        self.calls.lock().unwrap().push("observe");
        Ok(self
            .existing
            .clone()
            .map(|l| (l.name.clone(), l))
            .into_iter()
            .collect())
    }
    fn diff(&self, d: &Want, l: &Live) -> Vec<FieldDiff> {
        let mut out = crate::diff::Diffs::new();
        out.field(crate::diff::Field("value"), &d.value, &l.value);
        out.blocked(
            crate::diff::Field("fixed"),
            &d.fixed,
            &0,
            "fixed at creation",
        );
        out.finish()
    }
    async fn create(&self, _: &Aws, d: &Want) -> Result<Live, AwsError> {
        self.calls.lock().unwrap().push("create");
        match self.create_fails {
            None => Ok(Live {
                name: d.name.clone(),
                value: d.value,
                tags: owned(),
            }),
            Some(class) => Err(AwsError {
                operation: "CreateFake",
                code: Some("Duplicate".into()),
                message: "exists".into(),
                class,
            }),
        }
    }
    async fn update(&self, _: &Aws, d: &Want, l: &Live, _: &[FieldDiff]) -> Result<Live, AwsError> {
        self.calls.lock().unwrap().push("update");
        Ok(Live {
            value: d.value,
            ..l.clone()
        })
    }
    async fn delete(&self, _: &Aws, _: &Live) -> Result<(), AwsError> {
        self.calls.lock().unwrap().push("delete");
        if self.fail_delete {
            return Err(AwsError::unexpected("DeleteFake", "still in use"));
        }
        Ok(())
    }
}

fn owned() -> Tags {
    [
        ("managed-by".to_string(), "presta-reconciler".to_string()),
        ("presta-reconciler/stack".to_string(), "shop".to_string()),
    ]
    .into()
}

fn live(value: i32, tags: Tags) -> Live {
    Live {
        name: "x".into(),
        value,
        tags,
    }
}

fn want(value: i32, fixed: i32) -> Want {
    Want {
        name: "x".into(),
        value,
        fixed,
    }
}

const OWNER: Owner<'static> = Owner {
    stack: "shop",
    adopt_existing: false,
};

async fn aws() -> Aws {
    let settings = ClientSettings {
        endpoint_url: Some("http://127.0.0.1:9".into()),
        static_credentials: Some(("k".into(), "s".into())),
        ..ClientSettings::default()
    };
    Aws::connect("eu-west-3", &settings, Arc::new(CallStats::default())).await
}

#[tokio::test]
async fn sync_decides_once_for_every_mode_and_state() {
    let aws = aws().await;
    let other: Tags = [("presta-reconciler/stack".to_string(), "other".to_string())].into();
    // (case, desired, live, mode, expected action, expected driver calls)
    type Case = (
        &'static str,
        Want,
        Option<Live>,
        Mode,
        Action,
        Vec<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "absent, plan",
            want(1, 0),
            None,
            Mode::Plan,
            Action::Create,
            vec![],
        ),
        (
            "absent, apply",
            want(1, 0),
            None,
            Mode::Apply,
            Action::Create,
            vec!["create"],
        ),
        (
            "in sync",
            want(1, 0),
            Some(live(1, owned())),
            Mode::Apply,
            Action::None,
            vec![],
        ),
        (
            "drift, plan",
            want(2, 0),
            Some(live(1, owned())),
            Mode::Plan,
            Action::Update,
            vec![],
        ),
        (
            "drift, apply",
            want(2, 0),
            Some(live(1, owned())),
            Mode::Apply,
            Action::Update,
            vec!["update"],
        ),
        (
            "only blocked drift",
            want(1, 9),
            Some(live(1, owned())),
            Mode::Apply,
            Action::Blocked,
            vec![],
        ),
        (
            "mixed drift",
            want(2, 9),
            Some(live(1, owned())),
            Mode::Apply,
            Action::Update,
            vec!["update"],
        ),
        (
            "another stack's",
            want(2, 0),
            Some(live(1, other.clone())),
            Mode::Apply,
            Action::Blocked,
            vec![],
        ),
        (
            "untagged, no adoption",
            want(2, 0),
            Some(live(1, Tags::new())),
            Mode::Apply,
            Action::Blocked,
            vec![],
        ),
    ];
    for (case, desired, current, mode, action, calls) in cases {
        let fake = Fake::default();
        let synced = sync(&fake, &aws, &desired, current.as_ref(), mode, OWNER)
            .await
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(synced.change.action, action, "{case}: {:?}", synced.change);
        assert_eq!(fake.called(), calls, "{case}");
        match case {
            "mixed drift" => assert!(
                synced
                    .change
                    .reason
                    .as_deref()
                    .unwrap()
                    .contains("not corrected: fixed at creation"),
                "{case}: {:?}",
                synced.change
            ),
            "another stack's" => {
                assert!(synced.change.reason.as_deref().unwrap().contains("`other`"))
            }
            "drift, apply" => assert_eq!(
                synced.live.unwrap().value,
                2,
                "{case}: the live state after the update"
            ),
            "absent, plan" => assert!(synced.live.is_none()),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_lost_create_race_adopts_the_other_writers_resource() {
    let aws = aws().await;
    let fake = Fake {
        create_fails: Some(ErrorClass::Conflict),
        existing: Some(live(1, owned())),
        ..Fake::default()
    };
    let synced = sync(&fake, &aws, &want(2, 0), None, Mode::Apply, OWNER)
        .await
        .unwrap();
    assert_eq!(fake.called(), ["create", "observe", "update"]);
    assert_eq!(synced.change.action, Action::Update);
    assert!(synced.change.reason.unwrap().contains("adopted"));

    // Any other failure of the create is the step's error, with its class.
    let refused = Fake {
        create_fails: Some(ErrorClass::Refused),
        ..Fake::default()
    };
    let err = sync(&refused, &aws, &want(2, 0), None, Mode::Apply, OWNER)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Refused);
    assert_eq!(refused.called(), ["create"]);
}

#[tokio::test]
async fn remove_deletes_only_what_the_stack_owns_and_only_in_apply() {
    let aws = aws().await;
    let other: Tags = [
        ("managed-by".to_string(), "presta-reconciler".to_string()),
        ("presta-reconciler/stack".to_string(), "other".to_string()),
    ]
    .into();
    let managed_only: Tags = [("managed-by".to_string(), "presta-reconciler".to_string())].into();
    // (case, tags, mode, expected action, expected calls)
    let cases: Vec<(&str, Tags, Mode, Action, Vec<&str>)> = vec![
        (
            "ours, apply",
            owned(),
            Mode::Apply,
            Action::Delete,
            vec!["delete"],
        ),
        ("ours, plan", owned(), Mode::Plan, Action::Delete, vec![]),
        (
            "another stack's",
            other,
            Mode::Apply,
            Action::Blocked,
            vec![],
        ),
        (
            "no stack tag",
            managed_only,
            Mode::Apply,
            Action::Blocked,
            vec![],
        ),
        (
            "untagged",
            Tags::new(),
            Mode::Apply,
            Action::Blocked,
            vec![],
        ),
    ];
    for (case, tags, mode, action, calls) in cases {
        let fake = Fake::default();
        let change = remove(&fake, &aws, "x", &live(1, tags), mode, OWNER, "test")
            .await
            .unwrap();
        assert_eq!(change.action, action, "{case}: {change:?}");
        assert_eq!(fake.called(), calls, "{case}");
    }
    // Adoption never extends to deleting.
    let adopting = Owner {
        stack: "shop",
        adopt_existing: true,
    };
    let fake = Fake::default();
    let change = remove(
        &fake,
        &aws,
        "x",
        &live(1, Tags::new()),
        Mode::Apply,
        adopting,
        "t",
    )
    .await
    .unwrap();
    assert_eq!(change.action, Action::Blocked);
    assert!(fake.called().is_empty());
    // A failed delete is an error, not a success.
    let failing = Fake {
        fail_delete: true,
        ..Fake::default()
    };
    assert!(
        remove(
            &failing,
            &aws,
            "x",
            &live(1, owned()),
            Mode::Apply,
            OWNER,
            "t"
        )
        .await
        .is_err()
    );
}
