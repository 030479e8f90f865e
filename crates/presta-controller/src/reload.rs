//! A new configuration: stacks added, changed or removed (nothing in AWS is deleted because a
//! stack left the file), and a refused reload.

use std::sync::Arc;
use std::time::SystemTime;
use tokio::time::Instant;

use presta_spec::Stack;

use crate::scheduler::seen_with_resources;
use crate::status::ConfigStatus;
use crate::time::rfc3339;
use crate::{Controller, Entry};

impl Controller {
    /// Replaces the configuration: new stacks run at once, changed ones get a run (a
    /// follow-up if running), removed ones are no longer reconciled. Nothing in AWS is
    /// deleted because a stack left the file.
    pub fn set_stacks(&self, stacks: Vec<Stack>, sources: Vec<String>) {
        let now = Instant::now();
        let mut st = self.state();
        let mut seen = std::collections::BTreeSet::new();
        let incoming: std::collections::BTreeSet<String> =
            stacks.iter().map(|s| s.name().to_string()).collect();
        // Stacks about to leave the configuration that were seen with resources: a new stack
        // appearing in the same reload may be one of them renamed.
        let leaving: Vec<String> = st
            .stacks
            .iter()
            .filter(|(k, e)| !incoming.contains(*k) && seen_with_resources(e))
            .map(|(k, e)| format!("`{k}` in {}", e.stack.spec.region))
            .collect();
        for s in stacks {
            let name = s.name().to_string();
            seen.insert(name.clone());
            match st.stacks.get_mut(&name) {
                Some(e) if *e.stack == s => {}
                Some(e) => {
                    if e.stack.spec.region != s.spec.region && seen_with_resources(e) {
                        e.presumed_existing = Some(format!(
                            "the stack was seen in {} before this configuration moved it to {}",
                            e.stack.spec.region, s.spec.region
                        ));
                    }
                    e.stack = Arc::new(s);
                    if e.running {
                        e.follow_up = true;
                    } else {
                        e.due = now;
                    }
                }
                None => {
                    let mut e = Entry::new(Arc::new(s), now);
                    if !leaving.is_empty() {
                        e.presumed_existing = Some(format!(
                            "it appeared as {} left the configuration: a renamed stack?",
                            leaving.join(", ")
                        ));
                    }
                    st.stacks.insert(name, e);
                }
            }
        }
        let removed: Vec<String> = st
            .stacks
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for name in &removed {
            st.stacks.remove(name);
            self.inner.metrics.forget_stack(name);
        }
        if !removed.is_empty() {
            tracing::warn!(stacks = %removed.join(", "), "stacks dropped from the configuration: no longer reconciled; their AWS resources are kept and reported as orphaned (GET /orphans)");
            st.orphans_due = now;
        }
        self.inner
            .metrics
            .stacks_configured
            .set(st.stacks.len() as f64);
        st.config = ConfigStatus {
            sources,
            loaded_at: Some(rfc3339(SystemTime::now())),
            last_reload_error: None,
        };
        drop(st);
        self.inner.wake.notify_one();
    }

    /// Records a refused reload (the running configuration stays).
    pub fn reload_refused(&self, message: String) {
        self.state().config.last_reload_error = Some(message);
    }
}
