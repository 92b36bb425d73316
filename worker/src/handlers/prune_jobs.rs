//! `prune_jobs`: the daily clean-up of finished jobs (ledger rows with their events and
//! artifacts, the engine's rows), old cron ticks and dead worker registrations.
//!
//! Every batch is one short statement over at most `batch` finished rows picked with
//! `FOR UPDATE SKIP LOCKED` through the `finished_at` index: queued and running jobs are never
//! touched, so claims and completions never wait on the pruner.
use jobs::{
    engine,
    kinds::maintenance::{PruneJobs, PruneReport},
    ledger, JobContext, JobError,
};

use crate::Registry;

/// `prune_jobs` runs daily at 03:30 Moscow time, when the centre is closed.
pub const SCHEDULE: &str = "0 30 3 * * *";

pub fn register(registry: Registry, retention_days: u32) -> Registry {
    registry
        .register::<PruneJobs, _, _, _>(1, prune_jobs)
        .schedule(
            "prune_jobs",
            SCHEDULE,
            PruneJobs {
                retention_days,
                ..PruneJobs::default()
            },
        )
}

pub async fn prune_jobs(job: PruneJobs, ctx: JobContext) -> Result<PruneReport, JobError> {
    let db = ctx.db();
    let days = i32::try_from(job.retention_days).unwrap_or(i32::MAX);
    let batch = i64::from(job.batch.max(1));
    let mut report = PruneReport::default();

    let total = ledger::count_finished(db, days).await?;
    loop {
        let removed = ledger::prune_finished(db, days, batch).await?;
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
    loop {
        let removed = ledger::prune_engine_orphans(db, days, batch).await?;
        report.engine_rows_removed += removed;
        report.batches += 1;
        if (removed as i64) < batch {
            break;
        }
    }
    report.cron_ticks_removed = crate::cron::prune_ticks(db, days).await?;
    report.workers_removed = engine::prune_workers(db).await?;
    super::import_cursor::prune(db).await?;
    tracing::info!(
        ?report,
        retention_days = job.retention_days,
        "pruned finished jobs"
    );
    Ok(report)
}
