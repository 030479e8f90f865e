//! An event path in memory: a queue and a bus that deliver what is pushed, with the
//! heartbeats of the daemon, on the Tokio clock. The loop's tests and the fleet benchmark run
//! the daemon's event loop on it (under `tokio::time::pause()`); no AWS call is made.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use presta_aws::AwsError;
use presta_aws::events::Message;
use tokio::time::Instant;

use super::{EventBus, Setup};

/// The account the memory bus answers for.
pub const ACCOUNT: &str = "123456789012";

/// A queue and a rule in memory.
#[derive(Debug, Default)]
pub struct MemoryBus {
    queue: Mutex<VecDeque<(String, String)>>,
    in_flight: Mutex<BTreeMap<String, String>>,
    deleted: AtomicU64,
    next: AtomicU64,
    /// The rule is gone: heartbeats are not delivered until the next setup.
    broken: AtomicBool,
    setups: AtomicU64,
}

impl MemoryBus {
    /// Puts a message (an EventBridge envelope, or anything) on the queue.
    pub fn push(&self, body: String) {
        let id = self.next.fetch_add(1, Ordering::SeqCst).to_string();
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((id, body));
    }

    /// A CloudTrail record of a call made by hand (`Boto3`): `event_name` of `source`
    /// (`aws.ec2`) in `region`, with `request_parameters`.
    pub fn api_call(
        &self,
        source: &str,
        region: &str,
        event_name: &str,
        request_parameters: serde_json::Value,
    ) {
        self.push(
            serde_json::json!({
                "source": source, "detail-type": "AWS API Call via CloudTrail",
                "region": region, "account": ACCOUNT,
                "detail": {
                    "eventName": event_name, "userAgent": "Boto3",
                    "eventTime": "2026-12-07T00:00:00Z",
                    "requestParameters": request_parameters
                }
            })
            .to_string(),
        );
    }

    /// Messages received or waiting, not deleted.
    pub fn left(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
            + self
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len()
    }

    /// Messages deleted so far.
    pub fn deleted(&self) -> u64 {
        self.deleted.load(Ordering::SeqCst)
    }

    /// Setups so far (the first, and each after the path broke).
    pub fn setups(&self) -> u64 {
        self.setups.load(Ordering::SeqCst)
    }

    /// As if the rule were deleted: heartbeats stop arriving until the next setup.
    pub fn break_rule(&self) {
        self.broken.store(true, Ordering::SeqCst);
    }
}

impl EventBus for MemoryBus {
    fn setup<'a>(&'a self, _region: &'a str) -> BoxFuture<'a, Result<Setup, AwsError>> {
        self.setups.fetch_add(1, Ordering::SeqCst);
        self.broken.store(false, Ordering::SeqCst);
        Box::pin(async {
            Ok(Setup {
                queue_url: "memory://queue".into(),
                account: ACCOUNT.into(),
                notes: Vec::new(),
            })
        })
    }

    fn trail<'a>(
        &'a self,
        _region: &'a str,
    ) -> BoxFuture<'a, Result<Result<String, String>, AwsError>> {
        Box::pin(async { Ok(Ok("trail".into())) })
    }

    fn heartbeat<'a>(
        &'a self,
        _region: &'a str,
        daemon: &'a str,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        if !self.broken.load(Ordering::SeqCst) {
            self.push(
                serde_json::json!({"source": "presta-reconciler", "detail-type": "presta-reconciler heartbeat", "detail": {"daemon": daemon}})
                    .to_string(),
            );
        }
        Box::pin(async { Ok(()) })
    }

    fn receive<'a>(
        &'a self,
        _region: &'a str,
        _url: &'a str,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Message>, AwsError>> {
        Box::pin(async move {
            let until = Instant::now() + wait;
            loop {
                let batch: Vec<(String, String)> = {
                    let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                    let n = q.len().min(10);
                    q.drain(..n).collect()
                };
                if !batch.is_empty() {
                    let mut f = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                    return Ok(batch
                        .into_iter()
                        .map(|(id, body)| {
                            f.insert(id.clone(), body.clone());
                            Message {
                                receipt: id,
                                body,
                                sent_at: None,
                            }
                        })
                        .collect());
                }
                if Instant::now() >= until {
                    return Ok(Vec::new());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    }

    fn delete<'a>(
        &'a self,
        _region: &'a str,
        _url: &'a str,
        receipts: Vec<String>,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        let mut f = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        for r in receipts {
            if f.remove(&r).is_some() {
                self.deleted.fetch_add(1, Ordering::SeqCst);
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn depth<'a>(
        &'a self,
        _region: &'a str,
        _url: &'a str,
    ) -> BoxFuture<'a, Result<u64, AwsError>> {
        let n = self.queue.lock().unwrap_or_else(|e| e.into_inner()).len() as u64;
        Box::pin(async move { Ok(n) })
    }
}
