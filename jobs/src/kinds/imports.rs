//! `timepad_import` and `pyrus_sync`: imports from the providers, paged and resumable (the
//! handlers are `worker::handlers::{timepad_import, pyrus_sync}`).
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Job;

/// Imports the organisation's Timepad events and their orders: every event (the default, a
/// manager's import), only `event_ids`, or only events that start `recent_days` ago or later
/// (cron: where orders and refunds still happen, so a 30-minute tick does not re-read years
/// of history).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TimepadImport {
    #[serde(default)]
    pub event_ids: Option<Vec<i64>>,
    #[serde(default)]
    pub recent_days: Option<u32>,
}

impl TimepadImport {
    /// What cron imports every 30 minutes.
    pub const RECENT_DAYS: u32 = 60;

    pub fn recent() -> Self {
        Self {
            event_ids: None,
            recent_days: Some(Self::RECENT_DAYS),
        }
    }
}

impl Job for TimepadImport {
    const KIND: &'static str = "timepad_import";
    const MAX_ATTEMPTS: u32 = 5;
    /// Per attempt; an interrupted attempt's successor continues from the saved page.
    const TIMEOUT: Duration = Duration::from_secs(20 * 60);
    const BACKOFF_BASE: Duration = Duration::from_secs(5);

    /// One import of the same scope at a time, whoever asks (cron or a manager): asking again
    /// while it waits or runs returns it. Different scopes are different imports (a manager's
    /// import of two events must not swallow cron's, nor the other way round).
    fn dedup_key(&self) -> Option<String> {
        Some(match (&self.event_ids, self.recent_days) {
            (Some(ids), _) => {
                let mut ids = ids.clone();
                ids.sort_unstable();
                ids.dedup();
                let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
                format!("timepad:events:{}", ids.join(","))
            }
            (None, Some(days)) => format!("timepad:recent:{days}"),
            (None, None) => "timepad:all".into(),
        })
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
    /// Events whose orders Timepad refused to show (deleted, made private …): skipped.
    #[serde(default)]
    pub events_skipped: i64,
    /// Records (events, orders) Timepad sent in a shape that does not decode: skipped.
    #[serde(default)]
    pub invalid: i64,
    /// The first [`LISTED`] of both, with the reason.
    #[serde(default)]
    pub problems: Vec<Problem>,
}

/// Problems listed in a report (all are counted).
pub const LISTED: usize = 100;

/// A record an import skipped, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Problem {
    /// `event`, `order`, `task`.
    pub record: String,
    pub id: Option<i64>,
    pub reason: String,
}

impl Problem {
    /// Lists a problem while fewer than [`LISTED`] are (the reason cut to 200 characters).
    pub fn list(into: &mut Vec<Problem>, record: &str, id: Option<i64>, reason: &str) {
        if into.len() < LISTED {
            into.push(Problem {
                record: record.into(),
                id,
                reason: reason.chars().take(200).collect(),
            });
        }
    }
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

/// A task whose fields do not make a rental application (or that does not decode), and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Unmapped {
    pub task_id: Option<i64>,
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
