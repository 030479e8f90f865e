//! The database's status as RDS reports it, and the one place that says what each status
//! means: ready, serving the shop (online operations), coming and going on its own, being
//! deleted, or failed (a person must look). The health verdict, the waits, the rotation and
//! the driver's readiness all read it from here.

use serde::Serialize;

/// What a status means for the reconciler and for the shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DbState {
    /// `available`: usable, and changes may be made.
    Available,
    /// An online operation (backup, modification, maintenance): the shop works.
    Serving,
    /// Starting, rebooting, being created: the shop is briefly impaired.
    Transitional,
    /// Being deleted.
    Deleting,
    /// A state that needs a person (failed, incompatible, storage full, ...).
    Failed,
    /// A status this version does not know: treated as settling.
    Other,
}

/// An RDS instance status, kept verbatim (`backing-up`), with its [`DbState`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct DbStatus(String);

const SERVING: &[&str] = &[
    "backing-up",
    "modifying",
    "configuring-enhanced-monitoring",
    "configuring-iam-database-auth",
    "configuring-log-exports",
    "maintenance",
    "upgrading",
    "storage-optimization",
    "renaming",
    "resetting-master-credentials",
];
const TRANSITIONAL: &[&str] = &["rebooting", "starting", "creating"];
const FAILED: &[&str] = &[
    "failed",
    "incompatible-parameters",
    "incompatible-network",
    "incompatible-restore",
    "incompatible-option-group",
    "storage-full",
    "inaccessible-encryption-credentials",
];

impl DbStatus {
    pub fn new(status: impl Into<String>) -> DbStatus {
        DbStatus(status.into())
    }

    /// AWS's word for it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn state(&self) -> DbState {
        let s = self.0.as_str();
        match s {
            "available" => DbState::Available,
            "deleting" => DbState::Deleting,
            _ if SERVING.contains(&s) => DbState::Serving,
            _ if TRANSITIONAL.contains(&s) => DbState::Transitional,
            _ if FAILED.contains(&s) => DbState::Failed,
            _ => DbState::Other,
        }
    }

    /// `available`.
    pub fn is_available(&self) -> bool {
        self.state() == DbState::Available
    }

    /// The shop can use the database (available, or an online operation).
    pub fn serves(&self) -> bool {
        matches!(self.state(), DbState::Available | DbState::Serving)
    }
}

impl std::fmt::Display for DbStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<&str> for DbStatus {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_has_one_meaning() {
        let state = |s: &str| DbStatus::new(s).state();
        assert_eq!(state("available"), DbState::Available);
        assert_eq!(state("backing-up"), DbState::Serving);
        assert_eq!(state("modifying"), DbState::Serving);
        assert_eq!(state("creating"), DbState::Transitional);
        assert_eq!(state("rebooting"), DbState::Transitional);
        assert_eq!(state("deleting"), DbState::Deleting);
        assert_eq!(state("storage-full"), DbState::Failed);
        assert_eq!(state("incompatible-parameters"), DbState::Failed);
        assert_eq!(state("something-new"), DbState::Other);
        assert!(DbStatus::new("modifying").serves());
        assert!(!DbStatus::new("modifying").is_available());
        assert!(!DbStatus::new("stopped").serves());
    }
}
