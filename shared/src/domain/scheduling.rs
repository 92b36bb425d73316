//! Bulk scheduling: a plan of weekly lessons for many groups over a period, expanded, checked
//! and written with set-based SQL, in the caller's transaction (the `bulk_schedule` job runs
//! the steps with progress between them).
//!
//! - [`expand`]: every date of `[from, to]` whose ISO weekday is in an entry's `weekdays`, at
//!   the entry's Moscow wall-clock `start_time` (UTC+3 all year, no DST) converted to UTC;
//!   dates in `holidays` are skipped and counted. Into a temp table dropped at commit.
//! - [`clashes`]: against existing non-cancelled lessons and rentals (same room, or same
//!   teacher, overlapping half-open ranges — the rule of the exclusion constraints that also
//!   guard single lessons), and inside the plan (two occurrences the same day, same room or
//!   teacher, overlapping: the later entry is the clash).
//! - [`write`]: one statement — lessons by `INSERT … SELECT` from the expansion, keyed by
//!   `(plan_id, occurrence_key)` with `ON CONFLICT DO NOTHING`, and the rosters of exactly the
//!   lessons it inserted ([`super::roster::fill_new_lessons_sql`] over its `RETURNING`). A
//!   retry (or a re-run of the same plan) creates nothing twice.
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::{roster, DomainError};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Any clash: nothing is written, every clash is listed.
    AllOrNothing,
    /// The clashing occurrences are skipped (and listed), the rest is written.
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

/// A wall-clock time written `HH:MM`: two digits each, nothing around them (chrono alone
/// would also take `9:0` or ` 09:00`, which the documented pattern does not).
pub fn parse_hh_mm(s: &str) -> Option<NaiveTime> {
    let b = s.as_bytes();
    let shaped =
        b.len() == 5 && b[2] == b':' && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit());
    shaped
        .then(|| NaiveTime::parse_from_str(s, "%H:%M").ok())
        .flatten()
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

impl Clash {
    /// The key of the clashing occurrence (`entry:date`).
    pub fn occurrence_key(&self) -> String {
        format!(
            "{}:{}",
            self.entry,
            crate::time::moscow_date(self.starts_at)
        )
    }
}

/// For each entry naming a group, room or teacher that does not exist: `(index, field)`.
/// One query whatever the number of entries.
pub async fn missing_references(
    db: impl PgExecutor<'_>,
    entries: &[PlanEntry],
) -> Result<Vec<(i32, String)>, DomainError> {
    Ok(sqlx::query_as(
        "select (e.i - 1)::int, f.field
         from unnest($1::uuid[], $2::uuid[], $3::uuid[]) with ordinality as e(g, r, t, i)
         cross join lateral (values
             ('group_id', not exists (select 1 from study_groups where id = e.g)),
             ('room_id', not exists (select 1 from rooms where id = e.r)),
             ('teacher_id', not exists (select 1 from teachers where id = e.t))) as f(field, bad)
         where f.bad
         order by 1, 2",
    )
    .bind(entries.iter().map(|e| e.group_id).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.room_id).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.teacher_id).collect::<Vec<_>>())
    .fetch_all(db)
    .await?)
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

/// Expands the plan into `plan_occ`; returns (occurrences, of which holidays).
pub async fn expand(
    tx: &mut PgConnection,
    entries: &[PlanEntry],
    from: NaiveDate,
    to: NaiveDate,
    holidays: &[NaiveDate],
) -> Result<(i64, i64), DomainError> {
    let masks: Vec<i32> = entries
        .iter()
        .map(|e| e.weekdays.iter().fold(0i32, |m, d| m | (1 << d)))
        .collect();
    let occurrences = sqlx::query(EXPAND)
        .bind(entries.iter().map(|e| e.group_id).collect::<Vec<_>>())
        .bind(&masks)
        .bind(entries.iter().map(|e| e.start_time).collect::<Vec<_>>())
        .bind(
            entries
                .iter()
                .map(|e| i32::from(e.duration_min))
                .collect::<Vec<_>>(),
        )
        .bind(entries.iter().map(|e| e.room_id).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.teacher_id).collect::<Vec<_>>())
        .bind(from)
        .bind(to)
        .bind(holidays)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i64;
    sqlx::query("analyze plan_occ").execute(&mut *tx).await?;
    let holidays: i64 = sqlx::query_scalar("select count(*) from plan_occ where holiday")
        .fetch_one(&mut *tx)
        .await?;
    Ok((occurrences, holidays))
}

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

/// Every clash of the expanded plan (lessons of the same plan, from an earlier run, are not
/// clashes: they are this plan).
pub async fn clashes(tx: &mut PgConnection, plan_id: Uuid) -> Result<Vec<Clash>, DomainError> {
    Ok(sqlx::query_as(CLASHES)
        .bind(plan_id)
        .fetch_all(&mut *tx)
        .await?)
}

/// What [`write`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub lessons: i64,
    /// Roster rows of the new lessons (members expected).
    pub expected: i64,
}

/// Writes the plan's lessons except holidays and the `skipped` occurrences, and their rosters,
/// in one statement. A booking that appeared after the clash check fails the statement with
/// an exclusion violation (the caller retries; the next check reports it).
pub async fn write(
    tx: &mut PgConnection,
    plan_id: Uuid,
    skipped: &[String],
) -> Result<Written, sqlx::Error> {
    sqlx::query("update plan_occ set skip = true where occurrence_key = any($1)")
        .bind(skipped)
        .execute(&mut *tx)
        .await?;
    // As for a single lesson: the groups' membership cannot change under the rosters written.
    sqlx::query(
        "select 1 from study_groups where id in (select distinct group_id from plan_occ)
         order by id for share",
    )
    .execute(&mut *tx)
    .await?;
    // A re-run inserts no lesson, hence no roster row, so the rosters need no ON CONFLICT.
    let sql = format!(
        "with new as (
             insert into lessons (kind, group_id, room_id, teacher_id, starts_at, ends_at,
                                  status, plan_id, occurrence_key)
             select 'lesson', o.group_id, o.room_id, o.teacher_id, o.starts_at, o.ends_at,
                    'scheduled', $1, o.occurrence_key
             from plan_occ o where not o.holiday and not o.skip
             on conflict (plan_id, occurrence_key) where plan_id is not null do nothing
             returning id, group_id, starts_at
         ), expected as (
             {} returning 1
         )
         select (select count(*) from new), (select count(*) from expected)",
        roster::fill_new_lessons_sql("new")
    );
    let (lessons, expected): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(plan_id)
        .fetch_one(&mut *tx)
        .await?;
    Ok(Written { lessons, expected })
}

/// What exists of a plan now, whoever wrote it: (lessons, roster rows). A re-run whose write
/// inserted nothing still reports what its earlier run created. `this_run` is what the caller
/// just wrote in the same transaction: when it accounts for every lesson of the plan, the
/// rosters are its own and are not counted again (that count reads every roster row).
pub async fn existing(
    conn: &mut PgConnection,
    plan_id: Uuid,
    this_run: Written,
) -> Result<(i64, i64), DomainError> {
    let lessons: i64 = sqlx::query_scalar("select count(*) from lessons where plan_id = $1")
        .bind(plan_id)
        .fetch_one(&mut *conn)
        .await?;
    if lessons == this_run.lessons {
        return Ok((lessons, this_run.expected));
    }
    let rosters: i64 = sqlx::query_scalar(
        "select count(*) from lesson_enrolments e join lessons l on l.id = e.lesson_id
         where l.plan_id = $1",
    )
    .bind(plan_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok((lessons, rosters))
}
