//! `bulk_schedule`: a plan of weekly lessons for many groups over a period, expanded, checked
//! and written with set-based SQL in one transaction.
//!
//! - Expansion: every date of `[from, to]` whose ISO weekday is in an entry's `weekdays`, at the
//!   entry's Moscow wall-clock `start_time` (UTC+3 all year, no DST) converted to UTC; dates in
//!   `holidays` are skipped and counted.
//! - Clashes: against existing non-cancelled lessons and rentals (same room, or same teacher,
//!   overlapping half-open ranges — the rule of the exclusion constraints that also guard
//!   `POST /api/lessons`), and inside the plan (two occurrences the same day, same room or
//!   teacher, overlapping: the later entry is the clash).
//! - `all_or_nothing`: any clash → nothing written, every clash listed. `skip_conflicts`: the
//!   rest is written, the skipped occurrences listed. `dry_run`: computed, reported, rolled back.
//! - Writes: one statement — lessons by `INSERT … SELECT` from the expansion, keyed by
//!   `(plan_id, occurrence_key)` with `ON CONFLICT DO NOTHING`, and the groups' active members
//!   enrolled into exactly the lessons it inserted (`INSERT … SELECT` over its `RETURNING`).
//!   One transaction: a crash leaves nothing, and a retry (or a re-run of the same plan)
//!   creates nothing twice.
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Job, JobContext, JobError};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    AllOrNothing,
    SkipConflicts,
}

/// One line of a plan: a group's weekly lesson.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlanEntry {
    pub group_id: Uuid,
    /// ISO weekdays, 1 = Monday … 7 = Sunday.
    pub weekdays: Vec<u8>,
    /// Moscow wall-clock time.
    pub start_time: NaiveTime,
    pub duration_min: u16,
    pub room_id: Uuid,
    pub teacher_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BulkSchedule {
    /// Identifies the plan's lessons (with each occurrence's key): the idempotency key.
    pub plan_id: Uuid,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub holidays: Vec<NaiveDate>,
    pub mode: Mode,
    pub dry_run: bool,
    pub entries: Vec<PlanEntry>,
}

impl Job for BulkSchedule {
    const KIND: &'static str = "bulk_schedule";
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(5 * 60);
}

/// A clash: `entry` (index in the plan) at `starts_at` against an existing lesson or rental
/// (`existing_lesson_id`) or another entry of the plan (`with_entry`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, sqlx::FromRow)]
pub struct Clash {
    pub entry: i32,
    pub group_id: Uuid,
    pub starts_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teacher_id: Option<Uuid>,
    pub existing_lesson_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub with_entry: Option<i32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScheduleReport {
    pub dry_run: bool,
    /// Lessons written by this run (a dry run: that would be written).
    pub lessons_created: i64,
    pub enrolments_created: i64,
    pub occurrences: i64,
    pub holidays_skipped: i64,
    /// Occurrences not written because of a clash (`skip_conflicts`), or every clash that
    /// stopped the plan (`all_or_nothing`).
    pub clashes: Vec<Clash>,
    /// Milliseconds since the start at the end of each phase (expanded, clashes, written,
    /// committed): where a slow plan spends its time.
    #[serde(default)]
    pub phases_ms: Vec<(String, u64)>,
}

/// Occurrences of the plan in a temp table `plan_occ` (dropped at commit).
const EXPAND: &str = "
create temp table plan_occ on commit drop as
select (e.idx - 1)::int as entry, e.group_id, e.room_id, e.teacher_id, d::date as day,
       (d::date + e.start_time) at time zone 'Europe/Moscow' as starts_at,
       (d::date + e.start_time) at time zone 'Europe/Moscow'
           + make_interval(mins => e.duration) as ends_at,
       (e.idx - 1) || ':' || d::date as occurrence_key,
       d::date = any($9::date[]) as holiday,
       false as skip
from unnest($1::uuid[], $2::int[], $3::time[], $4::int[], $5::uuid[], $6::uuid[])
         with ordinality as e(group_id, mask, start_time, duration, room_id, teacher_id, idx)
cross join generate_series($7::date, $8::date, interval '1 day') d
where (e.mask >> extract(isodow from d)::int) & 1 = 1";

/// Clashes with existing lessons and rentals (room, then teacher: each side can use its
/// exclusion constraint's GiST index), then inside the plan (same day, same room or teacher).
const CLASHES: &str = "
select o.entry, o.group_id, o.starts_at, o.room_id, null::uuid as teacher_id,
       l.id as existing_lesson_id, null::int as with_entry
from plan_occ o join lessons l
  on l.room_id = o.room_id and l.status <> 'cancelled' and l.plan_id is distinct from $1
 and tstzrange(l.starts_at, l.ends_at, '[)') && tstzrange(o.starts_at, o.ends_at, '[)')
where not o.holiday
union all
select o.entry, o.group_id, o.starts_at, null, o.teacher_id, l.id, null
from plan_occ o join lessons l
  on l.teacher_id = o.teacher_id and l.status <> 'cancelled' and l.plan_id is distinct from $1
 and tstzrange(l.starts_at, l.ends_at, '[)') && tstzrange(o.starts_at, o.ends_at, '[)')
where not o.holiday
union all
select b.entry, b.group_id, b.starts_at,
       case when a.room_id = b.room_id then b.room_id end,
       case when a.room_id <> b.room_id then b.teacher_id end,
       null, a.entry
from plan_occ a join plan_occ b
  on a.day = b.day and a.entry < b.entry
 and (a.room_id = b.room_id or a.teacher_id = b.teacher_id)
 and a.starts_at < b.ends_at and b.starts_at < a.ends_at
where not a.holiday and not b.holiday
order by 1, 3";

pub async fn bulk_schedule(job: BulkSchedule, ctx: JobContext) -> Result<ScheduleReport, JobError> {
    let started = std::time::Instant::now();
    let mut phases: Vec<(String, u64)> = Vec::new();
    let mark = |name: &str, phases: &mut Vec<(String, u64)>| {
        phases.push((name.to_string(), started.elapsed().as_millis() as u64));
    };
    let mut tx = ctx.db().begin().await?;
    let masks: Vec<i32> = job
        .entries
        .iter()
        .map(|e| e.weekdays.iter().fold(0i32, |m, d| m | (1 << d)))
        .collect();
    let occurrences = sqlx::query(EXPAND)
        .bind(job.entries.iter().map(|e| e.group_id).collect::<Vec<_>>())
        .bind(&masks)
        .bind(job.entries.iter().map(|e| e.start_time).collect::<Vec<_>>())
        .bind(
            job.entries
                .iter()
                .map(|e| i32::from(e.duration_min))
                .collect::<Vec<_>>(),
        )
        .bind(job.entries.iter().map(|e| e.room_id).collect::<Vec<_>>())
        .bind(job.entries.iter().map(|e| e.teacher_id).collect::<Vec<_>>())
        .bind(job.from)
        .bind(job.to)
        .bind(&job.holidays)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i64;
    sqlx::query("analyze plan_occ").execute(&mut *tx).await?;
    let holidays_skipped: i64 = sqlx::query_scalar("select count(*) from plan_occ where holiday")
        .fetch_one(&mut *tx)
        .await?;
    mark("expanded", &mut phases);
    ctx.progress(20, format!("занятий в плане: {occurrences}"))
        .await?;

    let clashes: Vec<Clash> = sqlx::query_as(CLASHES)
        .bind(job.plan_id)
        .fetch_all(&mut *tx)
        .await?;
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
        tracing::info!(
            clashes = report.clashes.len(),
            "bulk schedule refused: clashes"
        );
        return Ok(report);
    }
    // skip_conflicts: every clashing occurrence stays out (the later one of a pair in the plan).
    let skipped: Vec<String> = clashes
        .iter()
        .map(|c| {
            format!(
                "{}:{}",
                c.entry,
                c.starts_at
                    .with_timezone(&shared::time::MOSCOW)
                    .date_naive()
            )
        })
        .collect();
    sqlx::query("update plan_occ set skip = true where occurrence_key = any($1)")
        .bind(&skipped)
        .execute(&mut *tx)
        .await?;
    report.clashes = clashes;

    // Lessons and the enrolments of exactly the lessons this run inserted, in one statement: a
    // re-run inserts no lesson, hence no enrolment, so the enrolments need no ON CONFLICT.
    let (lessons, enrolments): (i64, i64) = sqlx::query_as(
        "with new as (
             insert into lessons (kind, group_id, room_id, teacher_id, starts_at, ends_at,
                                  status, plan_id, occurrence_key)
             select 'lesson', o.group_id, o.room_id, o.teacher_id, o.starts_at, o.ends_at,
                    'scheduled', $1, o.occurrence_key
             from plan_occ o where not o.holiday and not o.skip
             on conflict (plan_id, occurrence_key) where plan_id is not null do nothing
             returning id, group_id
         ), enrolled as (
             insert into lesson_enrolments (lesson_id, client_id)
             select n.id, m.client_id
             from new n join group_members m on m.group_id = n.group_id and m.status = 'active'
             returning 1
         )
         select (select count(*) from new), (select count(*) from enrolled)",
    )
    .bind(job.plan_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(clash_error)?;
    report.lessons_created = lessons;
    report.enrolments_created = enrolments;
    mark("written", &mut phases);
    ctx.progress(
        90,
        format!("создано занятий: {lessons}, записей учеников: {enrolments}"),
    )
    .await?;
    if job.dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    mark("committed", &mut phases);
    report.phases_ms = phases;
    tracing::info!(
        phases = ?report.phases_ms,
        lessons = report.lessons_created,
        enrolments = report.enrolments_created,
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
