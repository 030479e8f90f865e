//! The daemon's view of orphans: resources of stacks that left the configuration. Looked for
//! once per interval (and right after a reload that dropped a stack), in the regions of the
//! configured stacks; kept for `GET /orphans` and the `presta_orphaned_resources` gauge.
//! Never deleted: `presta-reconciler destroy --stack NAME` does that, when a person says so.

use std::collections::BTreeSet;
use std::time::SystemTime;
use tokio::time::Instant;

use presta_aws::calls::CallStats;
use presta_aws::orphans::Orphan;
use serde::Serialize;

use crate::Controller;
use crate::time::rfc3339;

/// What `GET /orphans` answers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OrphanStatus {
    pub orphans: Vec<Orphan>,
    /// The stacks they belong to.
    pub stacks: Vec<String>,
    /// When the last search finished (RFC 3339); none before the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
    /// Why the last search failed, in which region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What to do about them.
    pub help: String,
}

impl Controller {
    /// Whether a search is due now (and if so, marks the next one an interval away: the
    /// resync interval while change events flow in every region, since events name the
    /// product's resources too).
    pub(super) fn orphans_due(&self) -> bool {
        let mut st = self.state();
        if st.stacks.is_empty() || Instant::now() < st.orphans_due {
            return false;
        }
        let events_flow = !st.events.is_empty()
            && st
                .events
                .values()
                .all(|r| r.mode == crate::events::SyncMode::Events);
        let every = match self.inner.settings.resync_interval {
            Some(resync) if events_flow => resync,
            _ => self.inner.settings.interval,
        };
        st.orphans_due = Instant::now() + every;
        true
    }

    /// Looks for orphans in the regions of the configured stacks.
    pub async fn check_orphans(&self) {
        let (regions, known): (BTreeSet<String>, BTreeSet<String>) = {
            let st = self.state();
            (
                st.stacks
                    .values()
                    .map(|e| e.stack.spec.region.clone())
                    .collect(),
                st.stacks.keys().cloned().collect(),
            )
        };
        let stats = CallStats::default();
        let (orphans, error) = self
            .inner
            .engine
            .orphans(&regions, &known, true, &stats)
            .await;
        if let Some(e) = &error {
            tracing::warn!(error = %e, "looking for orphaned resources failed");
        }
        let stacks: BTreeSet<String> = orphans.iter().map(|o| o.stack.clone()).collect();
        if !stacks.is_empty() {
            tracing::warn!(
                stacks = %stacks.iter().cloned().collect::<Vec<_>>().join(", "),
                resources = orphans.len(),
                "resources of stacks that are not in the configuration are left as they are (GET /orphans; `presta-reconciler destroy --stack NAME` removes them)"
            );
        }
        self.inner.metrics.set_orphans(&orphans);
        let mut st = self.state();
        st.orphans = OrphanStatus {
            orphans,
            stacks: stacks.into_iter().collect(),
            checked_at: Some(rfc3339(SystemTime::now())),
            error,
            help: HELP.into(),
        };
    }

    /// The last search's result.
    pub fn orphans(&self) -> OrphanStatus {
        let st = self.state();
        let mut out = st.orphans.clone();
        out.help = HELP.into();
        out
    }
}

const HELP: &str = "resources tagged managed-by=presta-reconciler whose stack is not in the configuration; they are never deleted by the daemon: put the stack back in the configuration, or remove it with `presta-reconciler destroy --stack NAME --confirm NAME --region REGION`";
