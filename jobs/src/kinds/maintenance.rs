//! `prune_jobs`: the daily clean-up of finished jobs (ledger rows with their events and
//! artifacts, the engine's rows), old cron ticks and dead worker registrations.
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Job;

/// Default retention of finished jobs.
pub const DEFAULT_RETENTION_DAYS: u32 = 14;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PruneJobs {
    /// Finished jobs older than this many days are removed.
    pub retention_days: u32,
    /// Rows per statement.
    #[serde(default = "default_batch")]
    pub batch: u32,
}

fn default_batch() -> u32 {
    1000
}

impl Default for PruneJobs {
    fn default() -> Self {
        Self {
            retention_days: DEFAULT_RETENTION_DAYS,
            batch: default_batch(),
        }
    }
}

impl Job for PruneJobs {
    const KIND: &'static str = "prune_jobs";
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(30 * 60);

    /// One pruning at a time, whoever triggers it.
    fn dedup_key(&self) -> Option<String> {
        Some("prune".into())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PruneReport {
    pub jobs_removed: u64,
    pub engine_rows_removed: u64,
    pub cron_ticks_removed: u64,
    pub workers_removed: u64,
    pub batches: u64,
}
