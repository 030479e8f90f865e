//! One writer among replicas: a lease in a DynamoDB table (`serve --lease dynamodb:TABLE`),
//! like kube-rs's and client-go's leader election on a Lease object.
//!
//! The lease is one item `{lease: <name>, holder, version, renewed_at_ms, expires_at_ms}`. The
//! holder renews it every `renew_every` (~5 s) with a conditional `PutItem` (still its own),
//! which gives it a new `version`. Only the holder reconciles; the others serve `/healthz` and
//! `/metrics`, say `standby` on `/readyz` and `/stacks`, and answer `POST /reconcile` with 503
//! naming the leader.
//!
//! Taking over, without trusting clocks between hosts (client-go's rule): a standby reads the
//! item twice per renewal interval and remembers, on its own monotonic clock, when it first saw
//! its current `version`. Only once that version has stayed the same for a whole `duration`
//! (~15 s; the standby wakes up exactly then) does it write itself in, conditionally on the version being still the one it watched (two standbys
//! cannot both win). An absent item (released at shutdown) is taken at once. The wall-clock
//! times in the item are for people reading the table; no decision uses them, so a host whose
//! clock is off cannot take a lease that is being renewed.
//!
//! Fencing: the holder may write until `duration` minus a 10 % margin after the start of its
//! last successful renewal, measured on its own monotonic clock. Every mutating AWS call checks
//! that first ([`presta_aws::calls::Fence`]), so a holder cut off from the table stops before
//! its next write, before any successor (which waits a whole `duration` after it last saw the
//! holder's version change) can start.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use presta_aws::lease_table::{Claim, LeaseRecord, LeaseStore, LeaseWriteError};
use tokio::sync::watch;
use tokio::time::Instant;

/// Who writes, as this replica sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "role")]
pub enum Role {
    /// No lease configured: this process is the only writer.
    Single,
    /// This replica holds the lease.
    Leader { id: String },
    /// Another replica holds it (or nobody could be asked yet).
    Standby {
        id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        leader: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl Role {
    pub fn may_reconcile(&self) -> bool {
        matches!(self, Role::Single | Role::Leader { .. })
    }
}

/// How the lease is kept.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub table: String,
    /// The item's key: replicas with the same name compete.
    pub name: String,
    /// This replica's identity (holder).
    pub id: String,
    pub duration: Duration,
    pub renew_every: Duration,
}

/// The fence the AWS clients check before each write.
#[derive(Debug, Default)]
pub struct LeaseFence {
    valid_until: Mutex<Option<Instant>>,
}

impl LeaseFence {
    fn set(&self, until: Option<Instant>) {
        *self.valid_until.lock().unwrap_or_else(|e| e.into_inner()) = until;
    }

    fn valid(&self) -> bool {
        self.valid_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|u| Instant::now() < u)
    }
}

impl presta_aws::calls::Fence for LeaseFence {
    fn may_write(&self) -> Result<(), String> {
        if self.valid() {
            Ok(())
        } else {
            Err(
                "this replica does not hold the lease (lost or expired): it no longer writes"
                    .into(),
            )
        }
    }
}

/// A lease keeper: [`Lease::run`] renews it until shutdown; [`Lease::role`] is watched by the
/// controller.
pub struct Lease {
    store: Arc<dyn LeaseStore>,
    settings: LeaseSettings,
    fence: Arc<LeaseFence>,
    role: watch::Sender<Role>,
    /// Another holder's version and when this replica first saw it (its monotonic clock).
    watched: Mutex<Option<(String, Instant)>>,
    /// Renewals made, for unique versions.
    renewals: std::sync::atomic::AtomicU64,
}

/// Why this replica does not hold the lease after a tick.
enum PutError {
    /// Another replica holds it (renewed within the lease duration).
    Held(String),
    /// The conditional write lost (someone else renewed or took it meanwhile).
    Conflict,
    /// The table did not answer.
    Unreachable(String),
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Lease {
    /// The lease in the DynamoDB table of `settings`.
    pub fn new(sdk: &aws_types::SdkConfig, settings: LeaseSettings) -> Lease {
        let store = presta_aws::lease_table::DynamoLease::new(sdk, &settings.table);
        Lease::with_store(Arc::new(store), settings)
    }

    /// The lease kept in `store` (an in-memory store in tests).
    pub fn with_store(store: Arc<dyn LeaseStore>, settings: LeaseSettings) -> Lease {
        let standby = Role::Standby {
            id: settings.id.clone(),
            leader: None,
            reason: Some("the lease has not been asked for yet".into()),
        };
        Lease {
            store,
            settings,
            fence: Arc::new(LeaseFence::default()),
            role: watch::channel(standby).0,
            watched: Mutex::new(None),
            renewals: Default::default(),
        }
    }

    pub fn fence(&self) -> Arc<LeaseFence> {
        self.fence.clone()
    }

    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// One attempt to take or renew the lease; updates the fence and the role. Returns when
    /// to try again: a leader every `renew_every`; a standby twice as often, and exactly when
    /// the version it watches becomes a whole lease duration old.
    pub async fn tick(&self) -> Duration {
        let s = &self.settings;
        let started = Instant::now();
        let standby_pause = s.renew_every / 2;
        let mut next = s.renew_every;
        let leading = matches!(*self.role.borrow(), Role::Leader { .. });
        // A leader renews straight away; the table is read when that fails, and by standbys.
        let mut result = if leading {
            self.put(Claim::HeldBy(s.id.clone())).await
        } else {
            Err(PutError::Conflict)
        };
        if matches!(result, Err(PutError::Conflict)) {
            result = match self.read().await {
                Err(why) => Err(PutError::Unreachable(why)),
                Ok(None) => self.put(Claim::Absent).await,
                Ok(Some(r)) if r.holder == s.id => self.put(Claim::HeldBy(s.id.clone())).await,
                Ok(Some(r)) => {
                    let since = {
                        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
                        match &*watched {
                            Some((v, t)) if *v == r.version => *t,
                            _ => {
                                *watched = Some((r.version.clone(), started));
                                started
                            }
                        }
                    };
                    let age = started.duration_since(since);
                    if age >= s.duration {
                        tracing::info!(lease = %s.name, holder = %r.holder, "the lease was not renewed for a whole lease duration: taking it over");
                        self.put(Claim::Version(r.version)).await
                    } else {
                        next = standby_pause.min(s.duration - age);
                        Err(PutError::Held(r.holder))
                    }
                }
            };
        }
        match result {
            Ok(()) => {
                // Valid for the lease's duration from the moment the request left, minus a
                // margin.
                let margin = s.duration / 10;
                self.fence.set(Some(started + s.duration - margin));
                *self.watched.lock().unwrap_or_else(|e| e.into_inner()) = None;
                let leader = Role::Leader { id: s.id.clone() };
                if *self.role.borrow() != leader {
                    tracing::info!(lease = %s.name, table = %s.table, id = %s.id, "lease acquired: this replica reconciles");
                }
                self.role.send_replace(leader);
            }
            Err(e) => {
                let held = matches!(e, PutError::Held(_));
                let (leader, reason, unreachable) = match e {
                    PutError::Held(holder) => (Some(holder), None, false),
                    // Lost a race for it: the winner is read at the next tick.
                    PutError::Conflict => (None, None, false),
                    PutError::Unreachable(why) => (
                        None,
                        Some(format!("the lease table cannot be reached: {why}")),
                        true,
                    ),
                };
                if self.fence.valid() && unreachable {
                    // Still within the lease: keep writing until it runs out (the fence stops
                    // the writes then), and try again at the next tick.
                    tracing::warn!(lease = %s.name, reason = reason.as_deref().unwrap_or(""), "lease renewal failed; writes stop when the lease runs out");
                    return standby_pause;
                }
                if !held {
                    next = standby_pause;
                }
                self.fence.set(None);
                let was_leader = matches!(*self.role.borrow(), Role::Leader { .. });
                if was_leader {
                    tracing::warn!(lease = %s.name, leader = leader.as_deref().unwrap_or("unknown"), reason = reason.as_deref().unwrap_or(""), "lease lost: this replica stops reconciling");
                }
                self.role.send_replace(Role::Standby {
                    id: s.id.clone(),
                    leader,
                    reason,
                });
            }
        }
        next
    }

    /// Writes this replica in as the holder, with a new version, if `claim` still holds.
    async fn put(&self, claim: Claim) -> Result<(), PutError> {
        let s = &self.settings;
        let n = self
            .renewals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let record = LeaseRecord {
            holder: s.id.clone(),
            version: format!("{}:{}:{n}", s.id, now_ms()),
        };
        match self
            .store
            .write(&s.name, &record, s.duration.as_millis() as i64, &claim)
            .await
        {
            Ok(()) => Ok(()),
            Err(LeaseWriteError::Conflict) => Err(PutError::Conflict),
            Err(LeaseWriteError::Unreachable(why)) => Err(PutError::Unreachable(why)),
        }
    }

    /// The lease item, read consistently.
    async fn read(&self) -> Result<Option<LeaseRecord>, String> {
        self.store.read(&self.settings.name).await
    }

    /// Renews every `renew_every` until `shutdown` turns true, then hands the lease back.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let next = self.tick().await;
            tokio::select! {
                _ = tokio::time::sleep(next) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        self.release().await;
    }

    /// Gives the lease up (only if this replica holds it), so another takes over at once.
    pub async fn release(&self) {
        self.fence.set(None);
        if !matches!(*self.role.borrow(), Role::Leader { .. }) {
            return;
        }
        let s = &self.settings;
        let r = self.store.release(&s.name, &s.id).await;
        match r {
            Ok(_) => tracing::info!(lease = %s.name, "lease released"),
            Err(e) => {
                tracing::warn!(lease = %s.name, error = %e, "releasing the lease failed; it expires on its own")
            }
        }
        self.role.send_replace(Role::Standby {
            id: s.id.clone(),
            leader: None,
            reason: Some("shutting down".into()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use presta_aws::calls::Fence;

    #[test]
    fn the_fence_opens_only_within_the_lease() {
        let f = LeaseFence::default();
        assert!(f.may_write().is_err(), "closed before the first renewal");
        f.set(Some(Instant::now() + Duration::from_secs(5)));
        assert!(f.may_write().is_ok());
        f.set(Some(Instant::now() - Duration::from_millis(1)));
        assert!(f.may_write().unwrap_err().contains("lease"));
    }

    #[test]
    fn only_a_leader_or_a_single_replica_reconciles() {
        assert!(Role::Single.may_reconcile());
        assert!(Role::Leader { id: "a".into() }.may_reconcile());
        assert!(
            !Role::Standby {
                id: "b".into(),
                leader: Some("a".into()),
                reason: None
            }
            .may_reconcile()
        );
    }
}
