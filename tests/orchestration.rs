//! The engine's orchestration on the in-memory fake of AWS (`presta-testkit`), under paused
//! time: what the engine decides (order, waiting, the change budget, the data rule, destroy's
//! order, refused calls), tested in milliseconds. The drivers' requests and AWS's answers are
//! proven against the emulator in the other files.

use std::sync::Arc;
use std::time::Duration;

use presta_aws::{Action, Mode};
use presta_engine::{Engine, Progress, Settings};
use presta_spec::Stack;
use presta_testkit::FakeAws;

struct Quiet;

impl Progress for Quiet {
    fn report(&self, _: &str) {}
}

/// The demo stack, edited by `edit`.
fn demo(edit: impl Fn(String) -> String) -> Vec<Stack> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.yaml");
    let text = edit(std::fs::read_to_string(&path).unwrap());
    presta_spec::parse_file(&text, &path)
        .unwrap_or_else(|p| panic!("{p:?}"))
        .into_iter()
        .map(|l| l.stack)
        .collect()
}

fn engine(fake: &FakeAws) -> Engine {
    Engine::new(Settings {
        client: fake.settings(),
        poll_interval: Duration::from_secs(5),
        progress: Arc::new(Quiet),
        ..Settings::default()
    })
}

#[tokio::test(start_paused = true)]
async fn apply_builds_the_demo_stack_and_a_second_run_changes_nothing() {
    let fake = FakeAws::new();
    fake.seed("demo");
    let stacks = demo(|t| t);
    let engine = engine(&fake);
    let report = engine.run(&stacks, Mode::Apply).await;
    let stack = &report.stacks[0];
    assert_eq!(stack.failed(), 0, "{}", report.render());
    assert_eq!(stack.changes.len(), 16, "{}", report.render());
    assert!(
        stack.changes.iter().all(|c| c.action == Action::Create),
        "{}",
        report.render()
    );
    assert!(
        fake.mutating_calls()
            .contains(&"CreateDBInstance".to_string())
    );

    fake.reset_calls();
    let again = engine.run(&stacks, Mode::Apply).await;
    assert!(again.stacks[0].converged(), "{}", again.render());
    assert_eq!(
        fake.mutating_calls(),
        Vec::<String>::new(),
        "{}",
        again.render()
    );
}
