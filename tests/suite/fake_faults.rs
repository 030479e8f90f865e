//! AWS as it fails, on the in-memory fake under paused time: a seeded share of the calls
//! throttled, refused with 500/503 or processed with the answer lost, and runs cut off after
//! any number of writes. Many seeds and every cut point, in seconds; `tests/suite/faults.rs` keeps
//! one run of each fault kind against the emulator, through the real HTTP stack.

use crate::fake;

use std::time::Duration;

use fake::*;

/// An engine on `fake` that gives up waiting after three minutes: a cut run waits on what it
/// can no longer observe, and only the next run matters here.
fn impatient(fake: &FakeAws) -> presta_engine::Engine {
    let mut e = engine(fake);
    e.settings.wait_timeout = Duration::from_secs(180);
    e
}
use presta_aws::Mode;
use presta_testkit::{Chaos, FakeAws};

/// Applies until a run fails nothing and waits on nothing; returns how many runs it took.
async fn apply_until_converged(engine: &presta_engine::Engine) -> usize {
    let mut last = String::new();
    for runs in 1..=40 {
        let report = engine.run(&demo(|t| t), Mode::Apply).await;
        let s = &report.stacks[0];
        if s.failed() == 0
            && !s
                .changes
                .iter()
                .any(|c| c.action == presta_aws::Action::Waiting)
        {
            return runs;
        }
        last = report.render();
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    panic!("not converged after 40 applies; the last:\n{last}");
}

/// With the faults off: every resource exists once, nothing holding data was deleted, and a
/// plan finds nothing to do.
async fn assert_built_once(fake: &FakeAws, engine: &presta_engine::Engine, what: &str) {
    fake.calm();
    assert_eq!(inventory(fake), expected(), "{what}: nothing created twice");
    let deletes: Vec<String> = fake
        .mutating_calls()
        .into_iter()
        .filter(|c| c == "DeleteDBInstance" || c == "DeleteFileSystem")
        .collect();
    assert!(deletes.is_empty(), "{what}: {deletes:?}");
    let plan = engine.run(&demo(|t| t), Mode::Plan).await;
    assert!(plan.stacks[0].converged(), "{what}: {}", plan.render());
}

#[tokio::test(start_paused = true)]
async fn apply_converges_through_thirty_percent_of_failing_calls_for_twenty_seeds() {
    let mut injected = std::collections::BTreeMap::new();
    let mut runs = Vec::new();
    for seed in 1..=20 {
        let fake = FakeAws::new();
        fake.seed("demo");
        let engine = engine(&fake);
        fake.chaos(0.3, seed, &[]);
        runs.push(apply_until_converged(&engine).await);
        for (kind, n) in fake.injected() {
            *injected.entry(kind).or_insert(0) += n;
        }
        assert_built_once(&fake, &engine, &format!("seed {seed}")).await;
    }
    eprintln!("applies per seed: {runs:?}; faults: {injected:?}");
    for kind in Chaos::ALL {
        assert!(
            injected.get(&kind).copied().unwrap_or(0) > 20,
            "{kind:?}: {injected:?}"
        );
    }
    assert!(
        runs.iter().any(|r| *r > 1),
        "the faults made some applies fail: {runs:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn apply_cut_off_after_any_write_is_finished_by_running_it_again() {
    // A creation from nothing makes 27 writes: cut after each of them.
    for writes in 0..=27 {
        let fake = FakeAws::new();
        fake.seed("demo");
        let engine = impatient(&fake);
        fake.cut_after_writes(writes);
        let cut = engine.run(&demo(|t| t), Mode::Apply).await;
        // The cut run fails, or waits on what it can no longer observe.
        let unfinished = cut.stacks[0].failed() > 0
            || cut.stacks[0]
                .changes
                .iter()
                .any(|c| c.action == presta_aws::Action::Waiting);
        assert_eq!(
            unfinished,
            writes < 27,
            "cut after {writes}: {}",
            cut.render()
        );
        fake.calm();
        let again = engine.run(&demo(|t| t), Mode::Apply).await;
        assert_eq!(
            again.stacks[0].failed(),
            0,
            "after a cut at {writes}: {}",
            again.render()
        );
        assert_built_once(&fake, &engine, &format!("cut after {writes} writes")).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_heal_cut_off_between_its_corrections_is_finished_by_running_it_again() {
    for writes in 0..=4 {
        let (fake, engine) = built(&[]).await;
        {
            let mut w = fake.world();
            w.target_groups[0].tg.health_check_path = Some(format!("/drift-{writes}"));
            w.groups[0].max_size = Some(7);
            let attrs = &mut w.load_balancers[0].attributes;
            attrs.retain(|a| a.key() != Some("idle_timeout.timeout_seconds"));
            attrs.push(
                aws_sdk_elasticloadbalancingv2::types::LoadBalancerAttribute::builder()
                    .key("idle_timeout.timeout_seconds")
                    .value("321")
                    .build(),
            );
        }
        fake.cut_after_writes(writes);
        engine.run(&demo(|t| t), Mode::Apply).await;
        fake.calm();
        let again = engine.run(&demo(|t| t), Mode::Apply).await;
        assert_eq!(again.stacks[0].failed(), 0, "{}", again.render());
        assert_built_once(&fake, &engine, &format!("heal cut after {writes} writes")).await;
    }
}

/// `destroy` of the demo stack on the fake, with the stack's own settings.
async fn destroy(
    fake: &FakeAws,
    engine: &presta_engine::Engine,
) -> presta_engine::destroy::DestroyReport {
    let stack = demo(|t| t).remove(0).with_defaults();
    let req = presta_engine::destroy::Request {
        stack: "demo".into(),
        names: stack.names(),
        deletion: stack.spec.policy.deletion,
        delete_data: false,
        config: None,
    };
    let recorder: std::sync::Arc<dyn presta_aws::calls::CallRecorder> =
        std::sync::Arc::new(presta_aws::calls::CallStats::default());
    let aws = presta_aws::Aws::connect("eu-west-3", &fake.settings(), recorder).await;
    presta_engine::destroy::destroy(&aws, &req, &engine.settings).await
}

#[tokio::test(start_paused = true)]
async fn destroy_cut_off_after_any_write_is_finished_by_running_it_again_and_keeps_the_data() {
    for writes in 0.. {
        let (fake, _) = built(&[]).await;
        let engine = impatient(&fake);
        let fs = fake.world().file_systems[0].fs.file_system_id().to_string();
        fake.cut_after_writes(writes);
        let cut = destroy(&fake, &engine).await;
        fake.calm();
        let finished = destroy(&fake, &engine).await;
        assert_eq!(
            finished.error, None,
            "cut after {writes}: {finished:?} (the cut run: {cut:?})"
        );
        {
            let w = fake.world();
            assert!(w.databases.is_empty() && w.load_balancers.is_empty() && w.groups.is_empty());
            assert!(
                w.security_groups.is_empty(),
                "cut after {writes}: {:?}",
                w.security_groups
            );
            assert_eq!(
                w.file_systems.len(),
                1,
                "cut after {writes}: the files are kept"
            );
            assert_eq!(w.file_systems[0].fs.file_system_id(), fs);
            assert_eq!(
                w.snapshots.len(),
                1,
                "cut after {writes}: one final snapshot"
            );
            let secrets = w
                .parameters
                .keys()
                .filter(|k| k.starts_with("/presta-reconciler/demo/"));
            assert_eq!(
                secrets.count(),
                2,
                "cut after {writes}: the secrets are kept"
            );
        }
        let deletes_data = fake
            .mutating_calls()
            .iter()
            .any(|c| c == "DeleteFileSystem");
        assert!(!deletes_data, "cut after {writes}");
        // The shop comes back from what destroy kept.
        fake.reset_calls();
        let back = engine.run(&demo(|t| t), Mode::Apply).await;
        assert_eq!(back.stacks[0].failed(), 0, "{}", back.render());
        assert!(
            fake.mutating_calls()
                .contains(&"RestoreDBInstanceFromDBSnapshot".to_string())
        );
        assert_eq!(fake.world().file_systems[0].fs.file_system_id(), fs);
        // Past the last write, the cut changes nothing: every point has been tried.
        if cut.error.is_none() {
            assert!(writes > 5, "a destroy makes more than five writes");
            eprintln!("destroy cut after each of its {writes} writes, then finished");
            break;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_file_system_creation_holds_the_database_back_instead_of_blocking_the_stack() {
    // EFS throttles the first creation: the database is not created without the shop's
    // files (which the data rule would then refuse to pair with an empty file system).
    let fake = FakeAws::new();
    fake.seed("demo");
    let engine = impatient(&fake);
    fake.fail("CreateFileSystem", "ThrottlingException", Some(10));
    let first = engine.run(&demo(|t| t), Mode::Apply).await;
    let s = &first.stacks[0];
    let db = s
        .changes
        .iter()
        .find(|c| c.kind == presta_aws::Kind::DB_INSTANCE)
        .unwrap();
    assert_eq!(db.action, presta_aws::Action::Waiting, "{}", first.render());
    assert!(db.reason.as_deref().unwrap().contains("the file system"));
    assert!(
        fake.world().databases.is_empty(),
        "no database without files"
    );
    fake.calm();
    let runs = apply_until_converged(&engine).await;
    assert!(runs <= 3, "converged in {runs} runs");
    assert_built_once(&fake, &engine, "after the throttled creation").await;
}
