//! The lease over an in-memory table, under `tokio::time::pause()`: take-over timing, fencing
//! and races between replicas, in milliseconds. (`tests/suite/lease.rs` runs two daemons against
//! the emulator's DynamoDB for the real table.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use presta_aws::calls::Fence;
use presta_aws::lease_table::{Claim, LeaseRecord, LeaseStore, LeaseWriteError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::lease::{Lease, LeaseSettings, Role};

/// One table shared by the replicas.
#[derive(Default)]
struct Table {
    item: Mutex<Option<LeaseRecord>>,
}

/// A replica's view of the table: cut off from it on demand.
struct View {
    table: Arc<Table>,
    cut: AtomicBool,
}

impl LeaseStore for View {
    fn read<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Result<Option<LeaseRecord>, String>> {
        Box::pin(async move {
            if self.cut.load(Ordering::SeqCst) {
                return Err("no answer".into());
            }
            Ok(self.table.item.lock().unwrap().clone())
        })
    }

    fn write<'a>(
        &'a self,
        _name: &'a str,
        record: &'a LeaseRecord,
        _duration_ms: i64,
        claim: &'a Claim,
    ) -> BoxFuture<'a, Result<(), LeaseWriteError>> {
        Box::pin(async move {
            if self.cut.load(Ordering::SeqCst) {
                return Err(LeaseWriteError::Unreachable("no answer".into()));
            }
            let mut item = self.table.item.lock().unwrap();
            let holds = match (claim, item.as_ref()) {
                (Claim::Absent, None) => true,
                (Claim::HeldBy(h), Some(r)) => r.holder == *h,
                (Claim::Version(v), Some(r)) => r.version == *v,
                _ => false,
            };
            if !holds {
                return Err(LeaseWriteError::Conflict);
            }
            *item = Some(record.clone());
            Ok(())
        })
    }

    fn release<'a>(&'a self, _name: &'a str, holder: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut item = self.table.item.lock().unwrap();
            if item.as_ref().is_some_and(|r| r.holder == holder) {
                *item = None;
            }
            Ok(())
        })
    }
}

const DURATION: Duration = Duration::from_secs(15);
const RENEW: Duration = Duration::from_secs(5);

struct Replica {
    lease: Arc<Lease>,
    view: Arc<View>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Replica {
    fn start(table: &Arc<Table>, id: &str) -> Replica {
        let view = Arc::new(View {
            table: table.clone(),
            cut: AtomicBool::new(false),
        });
        let lease = Arc::new(Lease::with_store(
            view.clone(),
            LeaseSettings {
                table: "lease".into(),
                name: "presta".into(),
                id: id.into(),
                duration: DURATION,
                renew_every: RENEW,
            },
        ));
        let (stop, rx) = watch::channel(false);
        let task = {
            let lease = lease.clone();
            tokio::spawn(async move { lease.run(rx).await })
        };
        Replica {
            lease,
            view,
            stop,
            task,
        }
    }

    fn leads(&self) -> bool {
        matches!(*self.lease.role().borrow(), Role::Leader { .. })
    }

    fn may_write(&self) -> bool {
        self.lease.fence().may_write().is_ok()
    }

    /// `kill -9`: no release.
    fn kill(&self) {
        self.task.abort();
    }
}

/// Waits (in 100 ms steps of paused time) until `cond`, at most `limit`; when it held.
async fn until(limit: Duration, cond: impl Fn() -> bool) -> Option<Instant> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(start_paused = true)]
async fn one_replica_takes_the_absent_lease_at_once_and_keeps_it() {
    let table = Arc::new(Table::default());
    let a = Replica::start(&table, "a");
    assert!(until(Duration::from_secs(1), || a.leads()).await.is_some());
    assert!(a.may_write());
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(a.leads() && a.may_write(), "renewed for 10 minutes");
}

#[tokio::test(start_paused = true)]
async fn a_standby_takes_over_one_lease_duration_after_the_holder_dies_and_not_before() {
    let table = Arc::new(Table::default());
    let a = Replica::start(&table, "a");
    until(Duration::from_secs(1), || a.leads()).await.unwrap();
    let b = Replica::start(&table, "b");
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(!b.leads(), "a lease being renewed is never taken");
    assert!(
        b.lease.fence().may_write().is_err(),
        "a standby may not write"
    );
    let last_version = table.item.lock().unwrap().clone().unwrap().version;
    let killed = Instant::now();
    a.kill();
    let took = until(Duration::from_secs(60), || b.leads()).await.unwrap();
    let after = took.duration_since(killed);
    assert!(
        after >= DURATION - RENEW,
        "taken {after:?} after the kill: before the holder's last renewal was a lease old"
    );
    assert!(
        after <= DURATION + RENEW / 2 + Duration::from_millis(200),
        "taken {after:?} after the kill"
    );
    assert_ne!(
        table.item.lock().unwrap().clone().unwrap().version,
        last_version
    );
    assert!(b.may_write());
}

#[tokio::test(start_paused = true)]
async fn a_holder_cut_off_from_the_table_stops_writing_before_anyone_takes_over() {
    let table = Arc::new(Table::default());
    let a = Replica::start(&table, "a");
    until(Duration::from_secs(1), || a.leads()).await.unwrap();
    let b = Replica::start(&table, "b");
    tokio::time::sleep(Duration::from_secs(30)).await;
    a.view.cut.store(true, Ordering::SeqCst);
    let cut = Instant::now();
    // The holder keeps writing while its last renewal is valid (the table may be back).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(a.may_write(), "a short outage does not stop the writes");
    let fenced = until(Duration::from_secs(60), || !a.may_write())
        .await
        .unwrap();
    let took = until(Duration::from_secs(60), || b.leads()).await.unwrap();
    assert!(
        fenced < took,
        "the old holder stops writing ({:?} after the cut) before the new one starts ({:?})",
        fenced.duration_since(cut),
        took.duration_since(cut)
    );
    assert!(
        fenced.duration_since(cut) <= DURATION,
        "fenced within a lease duration of the cut"
    );
    assert!(!a.leads());
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_at_once_and_two_standbys_never_both_lead() {
    let table = Arc::new(Table::default());
    let a = Replica::start(&table, "a");
    until(Duration::from_secs(1), || a.leads()).await.unwrap();
    let b = Replica::start(&table, "b");
    let c = Replica::start(&table, "c");
    tokio::time::sleep(Duration::from_secs(60)).await;
    a.stop.send_replace(true);
    let released = Instant::now();
    let took = until(Duration::from_secs(30), || b.leads() || c.leads())
        .await
        .unwrap();
    assert!(
        took.duration_since(released) <= RENEW / 2 + Duration::from_millis(200),
        "taken {:?} after the release",
        took.duration_since(released)
    );
    for _ in 0..600 {
        assert!(!(b.leads() && c.leads()), "two leaders");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(b.leads() ^ c.leads(), "one of them leads");
}

#[tokio::test(start_paused = true)]
async fn a_lease_kept_renewed_is_not_taken_whatever_the_holders_clock_says() {
    // Another replica (on a host whose clock is far behind: the record carries no time) keeps
    // renewing: its version changes at every renewal. The standby judges by what it sees
    // change on its own clock: it never takes the lease while it is renewed, and takes it one
    // lease duration after the renewals stop.
    let table = Arc::new(Table::default());
    let renew = |n: u32| {
        *table.item.lock().unwrap() = Some(LeaseRecord {
            holder: "z".into(),
            version: format!("z:{n}"),
        });
    };
    renew(0);
    let a = Replica::start(&table, "a");
    for n in 1..=120 {
        tokio::time::sleep(RENEW).await;
        renew(n);
        assert!(!a.leads(), "a took a lease renewed {n} times");
        assert!(!a.may_write());
    }
    let stopped = Instant::now();
    let took = until(DURATION * 3, || a.leads()).await.expect("taken over");
    let after = took.duration_since(stopped);
    assert!(
        after >= DURATION - RENEW,
        "not before a lease duration: {after:?}"
    );
    assert!(
        after <= DURATION + RENEW,
        "taken {after:?} after the last renewal"
    );
    assert!(a.may_write());
}
