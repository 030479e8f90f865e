//! The lifecycle states EFS and Elastic Load Balancing report, and the one place that says
//! what each means for the reconciler (the database's are in `db_status.rs`). Kept verbatim
//! (what AWS says is what the status shows), read through these methods.

use std::fmt;

use serde::Serialize;

use crate::driver::Readiness;

/// An EFS file system's or mount target's `LifeCycleState`: `creating`, `available`,
/// `updating`, `deleting`, `deleted` or `error`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct EfsState(String);

impl EfsState {
    pub fn new(state: impl Into<String>) -> EfsState {
        EfsState(state.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Usable: mounted, written, given mount targets.
    pub fn is_available(&self) -> bool {
        self.0 == "available"
    }

    /// Whether `what` (a file system, a mount target) can be used by its dependents yet:
    /// `error` needs a person; anything else but `available` settles on its own.
    pub fn readiness(&self, what: &str) -> Readiness {
        match self.0.as_str() {
            "available" => Readiness::Ready,
            "error" => Readiness::Failed(format!("{what} is in `error`")),
            other => Readiness::Pending(other.to_string()),
        }
    }
}

/// A load balancer's state code: `provisioning`, `active`, `active_impaired` or `failed`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct LbState(String);

impl LbState {
    pub fn new(state: impl Into<String>) -> LbState {
        LbState(state.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Routing traffic (`active`, or `active_impaired`: serving, with a zone short).
    pub fn is_serving(&self) -> bool {
        matches!(self.0.as_str(), "active" | "active_impaired")
    }

    /// `failed`: AWS could not set it up; a person must look.
    pub fn is_failed(&self) -> bool {
        self.0 == "failed"
    }
}

macro_rules! verbatim {
    ($t:ty) => {
        impl From<&str> for $t {
            fn from(s: &str) -> Self {
                Self(s.to_string())
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
verbatim!(EfsState);
verbatim!(LbState);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_means_one_thing() {
        assert_eq!(EfsState::from("available").readiness("x"), Readiness::Ready);
        assert_eq!(
            EfsState::from("creating").readiness("x"),
            Readiness::Pending("creating".into())
        );
        assert!(matches!(
            EfsState::from("error").readiness("the file system"),
            Readiness::Failed(m) if m == "the file system is in `error`"
        ));
        assert!(LbState::from("active_impaired").is_serving());
        assert!(!LbState::from("provisioning").is_serving());
        assert!(LbState::from("failed").is_failed());
        assert_eq!(EfsState::from("updating").to_string(), "updating");
    }
}
