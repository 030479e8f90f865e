//! One writer among replicas: a lease in a DynamoDB table (`serve --lease dynamodb:TABLE`),
//! like kube-rs's and client-go's leader election on a Lease object.
//!
//! The lease is one item `{lease: <name>, holder, expires_at_ms}`. A replica takes or renews
//! it with a conditional `PutItem` (the item is absent, expired, or already its own), every
//! `renew_every` (~5 s), for `duration` (~15 s). Only the holder reconciles; the others serve
//! `/healthz` and `/metrics`, say `standby` on `/readyz` and `/stacks`, and answer
//! `POST /reconcile` with 503 naming the leader.
//!
//! Fencing: the holder may write until `duration` after the start of its last successful
//! renewal, measured on its own monotonic clock. Every mutating AWS call checks that first
//! ([`presta_aws::calls::Fence`]), so a holder cut off from the table stops before its next
//! write, and a successor only takes over once the old item expired (same duration, measured
//! by the table's clock). A graceful stop deletes the item so that another replica takes over
//! at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use tokio::sync::watch;

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
    client: aws_sdk_dynamodb::Client,
    settings: LeaseSettings,
    fence: Arc<LeaseFence>,
    role: watch::Sender<Role>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Lease {
    pub fn new(sdk: &aws_types::SdkConfig, settings: LeaseSettings) -> Lease {
        let standby = Role::Standby {
            id: settings.id.clone(),
            leader: None,
            reason: Some("the lease has not been asked for yet".into()),
        };
        Lease {
            client: aws_sdk_dynamodb::Client::new(sdk),
            settings,
            fence: Arc::new(LeaseFence::default()),
            role: watch::channel(standby).0,
        }
    }

    pub fn fence(&self) -> Arc<LeaseFence> {
        self.fence.clone()
    }

    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// One attempt to take or renew the lease; updates the fence and the role.
    pub async fn tick(&self) {
        let s = &self.settings;
        let started = Instant::now();
        let now = now_ms();
        let put = self
            .client
            .put_item()
            .table_name(&s.table)
            .item("lease", AttributeValue::S(s.name.clone()))
            .item("holder", AttributeValue::S(s.id.clone()))
            .item(
                "expires_at_ms",
                AttributeValue::N((now + s.duration.as_millis() as i64).to_string()),
            )
            .condition_expression("attribute_not_exists(#l) OR #h = :me OR #e < :now")
            .expression_attribute_names("#l", "lease")
            .expression_attribute_names("#h", "holder")
            .expression_attribute_names("#e", "expires_at_ms")
            .expression_attribute_values(":me", AttributeValue::S(s.id.clone()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        match put {
            Ok(_) => {
                // Valid for the lease's duration from the moment the request left, minus a
                // margin for clock drift between this host and the table.
                let margin = s.duration / 10;
                self.fence.set(Some(started + s.duration - margin));
                let leader = Role::Leader { id: s.id.clone() };
                if *self.role.borrow() != leader {
                    tracing::info!(lease = %s.name, table = %s.table, id = %s.id, "lease acquired: this replica reconciles");
                }
                self.role.send_replace(leader);
            }
            Err(e) => {
                let conflict = e
                    .as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception());
                let (leader, reason) = if conflict {
                    (self.holder().await, None)
                } else {
                    let why = presta_aws::AwsError::from_sdk("PutItem", e).to_string();
                    (
                        None,
                        Some(format!("the lease table cannot be reached: {why}")),
                    )
                };
                if self.fence.valid() && !conflict {
                    // Still within the lease: keep writing until it runs out (the fence stops
                    // the writes then), and try again at the next tick.
                    tracing::warn!(lease = %s.name, reason = reason.as_deref().unwrap_or(""), "lease renewal failed; writes stop when the lease runs out");
                    return;
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
    }

    /// The current holder, as the table says.
    async fn holder(&self) -> Option<String> {
        let out = self
            .client
            .get_item()
            .table_name(&self.settings.table)
            .key("lease", AttributeValue::S(self.settings.name.clone()))
            .consistent_read(true)
            .send()
            .await
            .ok()?;
        match out.item()?.get("holder")? {
            AttributeValue::S(h) => Some(h.clone()),
            _ => None,
        }
    }

    /// Renews every `renew_every` until `shutdown` turns true, then hands the lease back.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            self.tick().await;
            tokio::select! {
                _ = tokio::time::sleep(self.settings.renew_every) => {}
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
        let r = self
            .client
            .delete_item()
            .table_name(&s.table)
            .key("lease", AttributeValue::S(s.name.clone()))
            .condition_expression("#h = :me")
            .expression_attribute_names("#h", "holder")
            .expression_attribute_values(":me", AttributeValue::S(s.id.clone()))
            .send()
            .await;
        match r {
            Ok(_) => tracing::info!(lease = %s.name, "lease released"),
            Err(e) => {
                tracing::warn!(lease = %s.name, error = %presta_aws::AwsError::from_sdk("DeleteItem", e), "releasing the lease failed; it expires on its own")
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
