//! `prune_jobs`: the daily clean-up of finished jobs (ledger rows with their events and
//! artifacts, the engine's rows), old cron ticks and dead worker registrations.
//!
//! Every batch is one short statement over at most `batch` finished rows picked with
//! `FOR UPDATE SKIP LOCKED` through the `finished_at` index: queued and running jobs are never
//! touched, so claims and completions never wait on the pruner.
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Job, JobContext, JobError};

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

/// The handler of [`PruneJobs`].
pub async fn prune_jobs(job: PruneJobs, ctx: JobContext) -> Result<PruneReport, JobError> {
    let db = ctx.db();
    let days = i32::try_from(job.retention_days).unwrap_or(i32::MAX);
    let batch = i64::from(job.batch.max(1));
    let mut report = PruneReport::default();

    let total: i64 = sqlx::query_scalar(
        "select count(*) from job_runs
         where finished_at < now() - $1 * interval '1 day'
           and state in ('succeeded', 'failed', 'cancelled')",
    )
    .bind(days)
    .fetch_one(db)
    .await?;
    loop {
        let removed: i64 = sqlx::query_scalar(
            "with doomed as (
                 select id from job_runs
                 where finished_at < now() - $1 * interval '1 day'
                   and state in ('succeeded', 'failed', 'cancelled')
                 order by finished_at
                 limit $2
                 for update skip locked
             ), engine as (
                 delete from apalis.jobs j using doomed d where j.id = d.id
             ), events as (
                 delete from job_events e using doomed d where e.job_id = d.id
             ), ledger as (
                 delete from job_runs r using doomed d where r.id = d.id returning r.id
             )
             select count(*) from ledger",
        )
        .bind(days)
        .bind(batch)
        .fetch_one(db)
        .await?;
        report.jobs_removed += removed as u64;
        report.batches += 1;
        let percent = if total > 0 {
            (report.jobs_removed * 90 / total as u64).min(90) as u8
        } else {
            90
        };
        ctx.progress(
            percent,
            format!("{} finished jobs removed", report.jobs_removed),
        )
        .await?;
        if removed < batch {
            break;
        }
    }
    // Engine rows without a ledger row (none are created that way, but never keep them forever).
    loop {
        let removed = sqlx::query(
            "delete from apalis.jobs where id in (
                 select j.id from apalis.jobs j
                 where j.status in ('Done', 'Killed') and j.done_at < now() - $1 * interval '1 day'
                   and not exists (select 1 from job_runs r where r.id = j.id)
                 limit $2 for update skip locked)",
        )
        .bind(days)
        .bind(batch)
        .execute(db)
        .await?
        .rows_affected();
        report.engine_rows_removed += removed;
        report.batches += 1;
        if (removed as i64) < batch {
            break;
        }
    }
    // Cron ticks: the latest of each schedule stays (it decides the catch-up after downtime).
    report.cron_ticks_removed = sqlx::query(
        "delete from cron_ticks c
         where c.tick_at < now() - $1 * interval '1 day'
           and c.tick_at < (select max(m.tick_at) from cron_ticks m where m.schedule = c.schedule)",
    )
    .bind(days)
    .execute(db)
    .await?
    .rows_affected();
    // Registrations of worker processes gone for a day that hold nothing.
    report.workers_removed = sqlx::query(
        "delete from apalis.workers w
         where w.last_seen < now() - interval '1 day'
           and not exists (select 1 from apalis.jobs j where j.lock_by = w.id)",
    )
    .execute(db)
    .await?
    .rows_affected();
    tracing::info!(
        ?report,
        retention_days = job.retention_days,
        "pruned finished jobs"
    );
    Ok(report)
}
