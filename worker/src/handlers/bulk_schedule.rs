//! `bulk_schedule`: a plan of weekly lessons expanded, checked and written in one transaction
//! (the rules and their SQL: `shared::domain::scheduling`), with progress between the steps.
//! `all_or_nothing` with any clash writes nothing; `skip_conflicts` writes the rest;
//! `dry_run` computes everything, writes in the transaction and rolls it back, so its counts
//! are exact.
use jobs::{
    kinds::scheduling::{BulkSchedule, Mode, ScheduleReport},
    JobContext, JobError,
};
use shared::domain::scheduling;

use crate::Registry;

/// One transaction each, set-based: one at a time per process is plenty.
pub fn register(registry: Registry) -> Registry {
    registry.register::<BulkSchedule, _, _, _>(1, bulk_schedule)
}

pub async fn bulk_schedule(job: BulkSchedule, ctx: JobContext) -> Result<ScheduleReport, JobError> {
    let started = std::time::Instant::now();
    let mut phases: Vec<(String, u64)> = Vec::new();
    let mark = |name: &str, phases: &mut Vec<(String, u64)>| {
        phases.push((name.to_string(), started.elapsed().as_millis() as u64));
    };
    let mut tx = ctx.db().begin().await?;
    let (occurrences, holidays_skipped) =
        scheduling::expand(&mut tx, &job.entries, job.from, job.to, &job.holidays).await?;
    mark("expanded", &mut phases);
    ctx.progress(20, format!("занятий в плане: {occurrences}"))
        .await?;

    let clashes = scheduling::clashes(&mut tx, job.plan_id).await?;
    mark("clashes", &mut phases);
    ctx.progress(50, format!("пересечений: {}", clashes.len()))
        .await?;

    let mut report = ScheduleReport {
        dry_run: job.dry_run,
        occurrences,
        holidays_skipped,
        ..ScheduleReport::default()
    };
    if job.mode == Mode::AllOrNothing && !clashes.is_empty() {
        report.clashes = clashes;
        (report.plan_lessons, report.plan_enrolments) =
            scheduling::existing(&mut tx, job.plan_id, Default::default()).await?;
        drop(tx);
        tracing::info!(
            clashes = report.clashes.len(),
            "bulk schedule refused: clashes"
        );
        return Ok(report);
    }
    // skip_conflicts: every clashing occurrence stays out (the later one of a pair in the plan).
    let skipped: Vec<String> = clashes.iter().map(|c| c.occurrence_key()).collect();
    report.clashes = clashes;
    let written = scheduling::write(&mut tx, job.plan_id, &skipped)
        .await
        .map_err(clash_error)?;
    report.lessons_created = written.lessons;
    report.enrolments_created = written.expected;
    mark("written", &mut phases);
    ctx.progress(
        90,
        format!(
            "создано занятий: {}, записей учеников: {}",
            written.lessons, written.expected
        ),
    )
    .await?;
    if job.dry_run {
        // What really exists: the dry run's own writes are rolled back.
        tx.rollback().await?;
        let mut conn = ctx.db().acquire().await?;
        (report.plan_lessons, report.plan_enrolments) =
            scheduling::existing(&mut conn, job.plan_id, Default::default()).await?;
    } else {
        (report.plan_lessons, report.plan_enrolments) =
            scheduling::existing(&mut tx, job.plan_id, written).await?;
        tx.commit().await?;
    }
    mark("committed", &mut phases);
    report.phases_ms = phases;
    tracing::info!(
        phases = ?report.phases_ms,
        lessons = report.lessons_created,
        enrolments = report.enrolments_created,
        plan_lessons = report.plan_lessons,
        clashes = report.clashes.len(),
        dry_run = job.dry_run,
        "bulk schedule done"
    );
    Ok(report)
}

/// A lesson that appeared after the clash check (a concurrent booking) violates an exclusion
/// constraint: retry, and the next attempt sees it as a clash.
fn clash_error(e: sqlx::Error) -> JobError {
    let constraint = e
        .as_database_error()
        .and_then(|d| d.constraint())
        .map(str::to_owned);
    match constraint {
        Some(c) if c.starts_with("lessons_") && c.ends_with("_no_overlap") => {
            JobError::transient(format!("a concurrent booking clashed ({c}); retrying"))
        }
        _ => e.into(),
    }
}
