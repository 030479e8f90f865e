//! Bounded, visible waits: RDS instances, EFS file systems and mount targets take minutes on
//! AWS before their dependents can use them. The emulator makes them instant; this loop is
//! what real AWS exercises, and its tests drive it with a driver that stays pending.

use presta_aws::{Aws, Driver, Readiness, Scope};

use crate::Settings;

/// Why a resource did not become ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// AWS reports it failed (`failed`, `incompatible-parameters`...): the status, in words.
    #[error("{0}")]
    Failed(String),
    /// Still transitional when the wait ended.
    #[error("still `{status}` after {waited_seconds}s (--wait-timeout): run apply again later")]
    TimedOut { status: String, waited_seconds: u64 },
}

impl NotReady {
    /// Whether waiting longer may help (the next run looks again).
    pub fn is_pending(&self) -> bool {
        matches!(self, NotReady::TimedOut { .. })
    }
}

/// Polls `driver` until the resource `name` is ready, it fails, or `settings.wait_timeout`
/// passes; reports one progress line per poll.
pub async fn wait_ready<D: Driver>(
    driver: &D,
    aws: &Aws,
    name: &str,
    mut live: D::Live,
    settings: &Settings,
    stack: &str,
) -> Result<D::Live, NotReady> {
    // The Tokio clock: paused in the orchestration tests, the wall clock otherwise.
    let started = tokio::time::Instant::now();
    loop {
        match D::readiness(&live) {
            Readiness::Ready => return Ok(live),
            Readiness::Failed(reason) => return Err(NotReady::Failed(reason)),
            Readiness::Pending(status) => {
                let waited = started.elapsed();
                if waited >= settings.wait_timeout {
                    return Err(NotReady::TimedOut {
                        status: status.to_string(),
                        waited_seconds: waited.as_secs(),
                    });
                }
                settings.progress.report(&format!(
                    "{stack}: waiting for {} {name}: {status} ({}s)",
                    D::KIND,
                    waited.as_secs()
                ));
                // Never past the timeout: the last look is at its end.
                let remaining = settings.wait_timeout.saturating_sub(waited);
                tokio::time::sleep(settings.poll_interval.min(remaining)).await;
                let scope = Scope {
                    names: vec![name.to_string()],
                    parents: D::parents(&live),
                    ..Scope::default()
                };
                match driver.observe(aws, &scope).await {
                    Ok(mut found) => {
                        if let Some(l) = found.remove(name) {
                            live = l;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "observation while waiting failed; retrying")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use presta_aws::{AwsError, ClientSettings, FieldDiff, Kind};

    use super::*;
    use crate::Progress;

    /// A database that reports `creating` for `pending_polls` observations, then `available`.
    struct SlowDb {
        pending_polls: usize,
        polls: AtomicUsize,
    }

    impl Driver for SlowDb {
        const KIND: Kind = Kind::DB_INSTANCE;
        type Desired = ();
        type Live = String;
        const IAM: presta_aws::registry::Iam = presta_aws::registry::Iam::NONE;
        const TEARDOWN: presta_aws::registry::Teardown =
            presta_aws::registry::Teardown::new(0, presta_aws::registry::Deletion::Plain);

        fn scope(_: &presta_aws::Targets, _: &presta_aws::Observed) -> Scope {
            Scope::default()
        }

        fn name(_: &()) -> String {
            "db".into()
        }
        fn id(_: &String) -> String {
            "db".into()
        }
        fn readiness(live: &String) -> Readiness {
            if live == "available" {
                Readiness::Ready
            } else {
                Readiness::Pending(live.clone())
            }
        }
        async fn observe(
            &self,
            _aws: &Aws,
            scope: &Scope,
        ) -> Result<BTreeMap<String, String>, AwsError> {
            assert_eq!(scope.names, ["db"]);
            let n = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
            let status = if n >= self.pending_polls {
                "available"
            } else {
                "creating"
            };
            Ok(BTreeMap::from([("db".to_string(), status.to_string())]))
        }
        fn diff(&self, _: &(), _: &String) -> Vec<FieldDiff> {
            Vec::new()
        }
        async fn create(&self, _: &Aws, _: &()) -> Result<String, AwsError> {
            unreachable!()
        }
        async fn update(
            &self,
            _: &Aws,
            _: &(),
            l: &String,
            _: &[FieldDiff],
        ) -> Result<String, AwsError> {
            Ok(l.clone())
        }
        async fn delete(&self, _: &Aws, _: &String) -> Result<(), AwsError> {
            unreachable!()
        }
    }

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl Progress for Lines {
        fn report(&self, line: &str) {
            self.0.lock().unwrap().push(line.to_string());
        }
    }

    async fn aws() -> Aws {
        // Never called: the fake driver makes no request.
        let settings = ClientSettings {
            endpoint_url: Some("http://127.0.0.1:9".into()),
            ..ClientSettings::default()
        };
        Aws::connect(
            "eu-west-3",
            &settings,
            Arc::new(presta_aws::calls::CallStats::default()),
        )
        .await
    }

    fn settings(lines: Arc<Lines>, timeout: Duration) -> Settings {
        Settings {
            wait_timeout: timeout,
            poll_interval: Duration::from_millis(20),
            progress: lines,
            ..Settings::default()
        }
    }

    #[tokio::test]
    async fn waits_with_a_progress_line_per_poll_until_ready() {
        let lines = Arc::new(Lines::default());
        let driver = SlowDb {
            pending_polls: 3,
            polls: AtomicUsize::new(0),
        };
        let got = wait_ready(
            &driver,
            &aws().await,
            "db",
            "creating".into(),
            &settings(lines.clone(), Duration::from_secs(600)),
            "shop",
        )
        .await;
        assert_eq!(got.unwrap(), "available");
        let lines = lines.0.lock().unwrap();
        assert_eq!(lines.len(), 3, "one line per poll while pending: {lines:?}");
        assert!(
            lines
                .iter()
                .all(|l| l.starts_with("shop: waiting for db_instance db: creating (")),
            "{lines:?}"
        );
    }

    #[tokio::test]
    async fn gives_up_after_the_timeout_and_says_what_to_do() {
        let lines = Arc::new(Lines::default());
        let driver = SlowDb {
            pending_polls: usize::MAX,
            polls: AtomicUsize::new(0),
        };
        let started = std::time::Instant::now();
        let got = wait_ready(
            &driver,
            &aws().await,
            "db",
            "creating".into(),
            &settings(lines, Duration::from_millis(150)),
            "shop",
        )
        .await;
        let err = got.unwrap_err();
        assert!(err.is_pending());
        let err = err.to_string();
        assert!(
            err.contains("still `creating` after 0s (--wait-timeout): run apply again later"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "bounded");
        let polls = driver.polls.load(Ordering::SeqCst);
        assert!(
            (3..=9).contains(&polls),
            "about timeout / interval polls: {polls}"
        );
    }
}
