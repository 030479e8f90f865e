//! One writer among replicas: two daemons with `--lease dynamodb:TABLE` against one emulator.
//! Only the holder ever changes AWS (calls told apart at the emulator by the User-Agent's app
//! name, `presta-<replica id>`); the standby says so on `/readyz`, `/stacks` and
//! `POST /reconcile`; a killed leader is replaced within the lease time; a leader cut off from
//! the lease table stops writing. The lease's timing cases (clock skew, races between
//! standbys, release) run under paused time in `presta-controller`'s `lease_tests`.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use common::{Daemon, Env};

const LEASE_SECONDS: u64 = 6;

async fn create_table(env: &Env) {
    let ddb = aws_sdk_dynamodb::Client::new(&env.sdk().await);
    ddb.create_table()
        .table_name("presta-lease")
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("lease")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("lease")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

fn replica(env: &Env, id: &str) -> Daemon {
    env.serve(
        &env.demo(),
        &[
            "--interval",
            "2",
            "--lease",
            "dynamodb:presta-lease",
            "--lease-seconds",
            &LEASE_SECONDS.to_string(),
            "--replica-id",
            id,
        ],
    )
}

fn role(d: &Daemon) -> String {
    let (code, body) = d.http("GET", "/stacks", None);
    if code != 200 {
        return String::new();
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["replica"]["role"].as_str().unwrap_or("").to_string()
}

/// The replicas (User-Agent app names) that made mutating calls, the lease's own aside (the
/// test's own drift injections are `other`).
fn writers(env: &Env) -> BTreeSet<String> {
    env.emu
        .calls()
        .unwrap()
        .into_iter()
        .filter(|c| c.is_mutating() && c.service != "dynamodb" && c.agent != "other")
        .map(|c| c.agent)
        .collect()
}

fn healed(d: &Daemon) -> bool {
    d.json("GET", "/stacks/demo")["drift"]
        .as_array()
        .is_some_and(|a| a.is_empty())
        && d.json("GET", "/stacks/demo")["state"] == "converged"
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_lease_holder_writes_and_a_standby_takes_over_from_a_dead_leader() {
    let env = Env::start();
    create_table(&env).await;
    let a = replica(&env, "a");
    let b = replica(&env, "b");
    a.eventually(60, "one replica leads", |a| {
        role(a) == "leader" || role(&b) == "leader"
    });
    let (leader, standby, leader_agent, standby_agent) = if role(&a) == "leader" {
        (a, b, "presta-a", "presta-b")
    } else {
        (b, a, "presta-b", "presta-a")
    };
    leader.eventually(90, "the leader converges the stack", |d| {
        d.json("GET", "/stacks/demo")["state"] == "converged"
    });

    // The standby: alive, not ready, says who leads, refuses to run.
    assert_eq!(role(&standby), "standby");
    assert_eq!(standby.http("GET", "/healthz", None).0, 200);
    let (code, body) = standby.http("GET", "/readyz", None);
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("standby") && body.contains(&leader_agent[7..]),
        "{body}"
    );
    let (code, body) = standby.http("POST", "/reconcile/demo", None);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("holds the lease"), "{body}");
    assert_eq!(standby.metric("presta_lease_leader"), Some(0.0));
    assert_eq!(leader.metric("presta_lease_leader"), Some(1.0));
    assert_eq!(
        writers(&env),
        BTreeSet::from([leader_agent.to_string()]),
        "only the leader wrote"
    );

    // The leader dies without releasing the lease: the standby takes over once it expires.
    env.emu.reset_calls().unwrap();
    let mut leader = leader;
    leader.child.kill().unwrap();
    leader.child.wait().unwrap();
    let killed = Instant::now();
    standby.eventually(LEASE_SECONDS + 10, "the standby takes the lease", |d| {
        role(d) == "leader"
    });
    let took = killed.elapsed();
    eprintln!("the standby took over {took:?} after the leader was killed");
    // The lease duration after the leader's last renewal (at most a renewal interval before
    // the kill), plus half an interval for the standby to have seen it, plus the poll of
    // `eventually`.
    assert!(
        took <= Duration::from_secs(LEASE_SECONDS + 3),
        "took over after {took:?}"
    );
    env.open_ssh().await;
    let (code, body) = standby.http("POST", "/reconcile/demo?wait=true", None);
    assert_eq!(code, 200, "{body}");
    standby.eventually(30, "the new leader heals the drift", healed);
    assert_eq!(writers(&env), BTreeSet::from([standby_agent.to_string()]));
    assert!(standby.log_text().contains("lease acquired"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_cut_off_from_the_lease_table_stops_writing() {
    let env = Env::start();
    create_table(&env).await;
    let a = replica(&env, "a");
    a.eventually(90, "a leads and converges", |d| {
        role(d) == "leader" && d.json("GET", "/stacks/demo")["state"] == "converged"
    });

    // Every call to the lease table fails from now on.
    env.emu.set_faults(1.0, 7, &["dynamodb"]).unwrap();
    a.eventually(LEASE_SECONDS + 10, "a steps down", |d| role(d) == "standby");
    env.emu.reset_calls().unwrap();
    env.open_ssh().await;
    // Intervals pass: the drift is seen by nobody who may write, and nothing is written (the
    // fencing's timing is checked under paused time in presta-controller's lease_tests).
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(writers(&env), BTreeSet::new());
    let (code, body) = a.http("GET", "/readyz", None);
    assert_eq!(code, 503);
    assert!(body.contains("lease table cannot be reached"), "{body}");
    assert!(a.log_text().contains("lease lost"));

    // The table answers again: a leads again and heals.
    env.emu.set_faults(0.0, 7, &[]).unwrap();
    a.eventually(LEASE_SECONDS + 10, "a leads again", |d| role(d) == "leader");
    let (code, body) = a.http("POST", "/reconcile/demo?wait=true", None);
    assert_eq!(code, 200, "{body}");
    a.eventually(30, "a heals the drift", healed);
    assert_eq!(writers(&env), BTreeSet::from(["presta-a".to_string()]));
}
