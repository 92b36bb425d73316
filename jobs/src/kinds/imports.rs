//! `timepad_import` and `pyrus_sync`: imports from the providers, paged and resumable (the
//! handlers are `worker::handlers::{timepad_import, pyrus_sync}`).
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Job;

/// Imports the organisation's Timepad events and their orders (only `event_ids` when given).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TimepadImport {
    #[serde(default)]
    pub event_ids: Option<Vec<i64>>,
}

impl Job for TimepadImport {
    const KIND: &'static str = "timepad_import";
    const MAX_ATTEMPTS: u32 = 5;
    /// Per attempt; an interrupted attempt's successor continues from the saved page.
    const TIMEOUT: Duration = Duration::from_secs(20 * 60);
    const BACKOFF_BASE: Duration = Duration::from_secs(5);

    /// One Timepad import at a time, whoever asks (cron or a manager).
    fn dedup_key(&self) -> Option<String> {
        Some("timepad".into())
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NewUpdated {
    pub new: i64,
    pub updated: i64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrderCounts {
    pub new: i64,
    pub updated: i64,
    /// Seen again unchanged: nothing written.
    pub skipped: i64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientCounts {
    pub created: i64,
    pub matched: i64,
    /// The e-mail and the phone point at different clients: recorded, not guessed.
    pub conflicts: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TimepadReport {
    pub events: NewUpdated,
    pub orders: OrderCounts,
    pub clients: ClientCounts,
    /// Pages fetched by this job (over all its attempts).
    pub pages: i64,
    /// Events whose orders Timepad no longer serves (deleted meanwhile): skipped.
    #[serde(default)]
    pub events_gone: i64,
}

/// Syncs the Pyrus form's tasks into rental applications.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PyrusSync {}

impl Job for PyrusSync {
    const KIND: &'static str = "pyrus_sync";
    const MAX_ATTEMPTS: u32 = 5;
    const TIMEOUT: Duration = Duration::from_secs(20 * 60);
    const BACKOFF_BASE: Duration = Duration::from_secs(5);

    fn dedup_key(&self) -> Option<String> {
        Some("pyrus".into())
    }
}

/// A task whose fields do not make a rental application, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Unmapped {
    pub task_id: i64,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PyrusReport {
    pub tasks: i64,
    pub created: i64,
    pub updated: i64,
    /// Seen again unchanged, or already decided in the CRM: nothing written.
    pub unchanged: i64,
    pub unmapped: i64,
    /// The first 100 unmapped tasks with their problems.
    pub unmapped_tasks: Vec<Unmapped>,
    pub pages: i64,
}
