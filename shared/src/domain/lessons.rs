//! Lessons and bookings: one-off create, move, cancel, read and list by date range. Lessons and
//! approved rental days share one table under two exclusion constraints (room, teacher;
//! half-open ranges, cancelled rows excluded): double booking is refused by PostgreSQL and
//! reported as a clash listing the rows it clashes with ([`clash_error`]).
use chrono::{DateTime, Duration, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Acquire, Connection, PgConnection, PgExecutor, Postgres};
use uuid::Uuid;

use super::{
    attendance, check,
    page::{self, Cte, Page, PageRequest},
    roster, DomainError, FieldErrors,
};

crate::text_enum! {
    pub enum LessonKind { Lesson = "lesson", Rental = "rental" }
}

crate::text_enum! {
    pub enum LessonStatus { Scheduled = "scheduled", Held = "held", Cancelled = "cancelled" }
}

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lesson {
    pub id: Uuid,
    pub kind: LessonKind,
    pub group_id: Option<Uuid>,
    pub room_id: Uuid,
    pub teacher_id: Option<Uuid>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub status: LessonStatus,
    pub topic: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub const LESSON: &str = "l.id, l.kind, l.group_id, l.room_id, l.teacher_id, l.starts_at, \
     l.ends_at, l.status, l.topic, l.created_at, l.updated_at";

/// Longest lesson accepted (the table allows a day, for rentals).
pub const MAX_LESSON_MINUTES: i64 = 12 * 60;
/// Widest range a list covers.
pub const MAX_LIST_DAYS: i64 = 93;

/// A booking slot that failed to be written: whose it is (a lesson being moved), where, when.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub own_id: Option<Uuid>,
    pub room_id: Uuid,
    pub teacher_id: Option<Uuid>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// Maps a failed lesson write to a friendly error: a clash (listing the lessons it clashes
/// with, found by one more query on this error path only) or the field at fault.
pub async fn clash_error(conn: &mut PgConnection, error: sqlx::Error, slot: Slot) -> DomainError {
    let constraint = error
        .as_database_error()
        .and_then(|d| d.constraint())
        .map(str::to_owned);
    let what = match constraint.as_deref() {
        Some("lessons_room_no_overlap") => "the room is already booked at that time",
        Some("lessons_teacher_no_overlap") => "the teacher already teaches at that time",
        _ => {
            return DomainError::on_constraint(
                error,
                &[
                    ("lessons_room_id_fkey", "room_id", "no such room"),
                    ("lessons_teacher_id_fkey", "teacher_id", "no such teacher"),
                    ("lessons_group_id_fkey", "group_id", "no such group"),
                    ("lessons_time_order", "ends_at", "must be after starts_at"),
                ],
            )
        }
    };
    let clashes: Result<Vec<Lesson>, sqlx::Error> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {LESSON} from lessons l
         where l.status <> 'cancelled' and l.id is distinct from $1
           and (l.room_id = $2 or l.teacher_id = $3)
           and tstzrange(l.starts_at, l.ends_at, '[)') && tstzrange($4, $5, '[)')
         order by l.starts_at"
    )))
    .bind(slot.own_id)
    .bind(slot.room_id)
    .bind(slot.teacher_id)
    .bind(slot.starts_at)
    .bind(slot.ends_at)
    .fetch_all(conn)
    .await;
    match clashes {
        Ok(clashes) => DomainError::Clash {
            message: what.to_string(),
            clashes: serde_json::json!(clashes),
        },
        Err(e) => e.into(),
    }
}

/// A one-off lesson of a group; room and teacher default to the group's.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewLesson {
    pub group_id: Uuid,
    pub starts_at: DateTime<FixedOffset>,
    /// After `starts_at`, at most 12 hours later; give this or `duration_min`.
    pub ends_at: Option<DateTime<FixedOffset>>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 720))]
    pub duration_min: Option<i64>,
    /// Default: the group's room.
    pub room_id: Option<Uuid>,
    /// Default: the group's teacher.
    pub teacher_id: Option<Uuid>,
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 500, pattern = r"^[^\u0000]*$")
    )]
    pub topic: Option<String>,
}

/// The end of a lesson from `ends_at` or `duration_min` (exactly one), checked.
fn end_of(
    fields: &mut FieldErrors,
    starts_at: DateTime<Utc>,
    ends_at: Option<DateTime<FixedOffset>>,
    duration_min: Option<i64>,
) -> Option<DateTime<Utc>> {
    let end = match (ends_at, duration_min) {
        (Some(e), None) => e.with_timezone(&Utc),
        (None, Some(m)) if (1..=MAX_LESSON_MINUTES).contains(&m) => {
            starts_at + Duration::minutes(m)
        }
        (None, Some(_)) => {
            fields.insert(
                "duration_min".into(),
                format!("must be between 1 and {MAX_LESSON_MINUTES}"),
            );
            return None;
        }
        _ => {
            fields.insert("ends_at".into(), "give ends_at or duration_min".into());
            return None;
        }
    };
    if end <= starts_at {
        fields.insert("ends_at".into(), "must be after starts_at".into());
        None
    } else if end - starts_at > Duration::minutes(MAX_LESSON_MINUTES) {
        fields.insert("ends_at".into(), "a lesson lasts at most 12 hours".into());
        None
    } else {
        Some(end)
    }
}

fn checked_topic(fields: &mut FieldErrors, topic: &Option<String>) {
    if topic.as_ref().is_some_and(|t| t.chars().count() > 500) {
        fields.insert("topic".into(), "at most 500 characters".into());
    }
}

/// A lesson row plus whether it was inserted (else: the group's row, to say why not).
#[derive(sqlx::FromRow)]
struct Inserted {
    inserted: bool,
    id: Option<Uuid>,
    group_status: Option<String>,
}

/// Creates a lesson and its roster in one transaction; the group's defaults (room, teacher)
/// are read by the insert itself.
pub async fn create(
    db: impl Acquire<'_, Database = Postgres>,
    req: &NewLesson,
) -> Result<Lesson, DomainError> {
    let mut fields = FieldErrors::new();
    let starts_at = req.starts_at.with_timezone(&Utc);
    let ends_at = end_of(&mut fields, starts_at, req.ends_at, req.duration_min);
    checked_topic(&mut fields, &req.topic);
    let Some(ends_at) = ends_at.filter(|_| fields.is_empty()) else {
        return Err(DomainError::Invalid(fields));
    };
    let mut conn = db.acquire().await?;
    let mut tx = Connection::begin(&mut *conn).await?;
    // Membership changes lock the group row for update: a lesson created meanwhile must see
    // the roster they leave (or they see the lesson), never neither.
    sqlx::query("select 1 from study_groups where id = $1 for share")
        .bind(req.group_id)
        .execute(&mut *tx)
        .await?;
    let created: Result<Option<Inserted>, sqlx::Error> = sqlx::query_as(
        "with g as (select id, room_id, teacher_id, status from study_groups where id = $1),
         ins as (
             insert into lessons (group_id, room_id, teacher_id, starts_at, ends_at, topic)
             select g.id, coalesce($2, g.room_id), coalesce($3, g.teacher_id), $4, $5, $6
             from g where g.status <> 'archived' and coalesce($2, g.room_id) is not null
             returning id
         )
         select true as inserted, ins.id, null::text as group_status from ins
         union all
         select false, null, g.status from g where not exists (select 1 from ins)",
    )
    .bind(req.group_id)
    .bind(req.room_id)
    .bind(req.teacher_id)
    .bind(starts_at)
    .bind(ends_at)
    .bind(req.topic.as_deref().map(str::trim))
    .fetch_optional(&mut *tx)
    .await;
    match created {
        Ok(Some(Inserted {
            inserted: true,
            id: Some(id),
            ..
        })) => {
            roster::fill_new_lessons(&mut tx, &[id]).await?;
            let lesson = fetch(&mut *tx, id).await?;
            tx.commit().await?;
            Ok(lesson)
        }
        Ok(Some(row)) if row.group_status.as_deref() == Some("archived") => {
            Err(DomainError::field("group_id", "the group is archived"))
        }
        Ok(Some(_)) => Err(DomainError::field(
            "room_id",
            "required: the group has no default room",
        )),
        Ok(None) => Err(DomainError::field("group_id", "no such group")),
        Err(e) => {
            tx.rollback().await?;
            // Error path only: resolve the group's defaults to name the clashing lessons.
            let defaults: Option<(Option<Uuid>, Uuid)> =
                sqlx::query_as("select room_id, teacher_id from study_groups where id = $1")
                    .bind(req.group_id)
                    .fetch_optional(&mut *conn)
                    .await?;
            let slot = Slot {
                own_id: None,
                room_id: req
                    .room_id
                    .or(defaults.and_then(|d| d.0))
                    .unwrap_or_default(),
                teacher_id: req.teacher_id.or(defaults.map(|d| d.1)),
                starts_at,
                ends_at,
            };
            Err(clash_error(&mut conn, e, slot).await)
        }
    }
}

/// Moves a scheduled lesson (time, room, teacher) or changes its topic. Without a new end, a
/// lesson moved in time keeps its length.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Move {
    pub starts_at: Option<DateTime<FixedOffset>>,
    /// After `starts_at`, at most 12 hours later; not together with `duration_min`.
    pub ends_at: Option<DateTime<FixedOffset>>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 720))]
    pub duration_min: Option<i64>,
    pub room_id: Option<Uuid>,
    pub teacher_id: Option<Uuid>,
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 500, pattern = r"^[^\u0000]*$")
    )]
    pub topic: Option<String>,
}

pub async fn move_lesson(
    conn: &mut PgConnection,
    id: Uuid,
    req: &Move,
) -> Result<Lesson, DomainError> {
    // Locked (in the caller's transaction, if any): the teacher and room kept are current.
    let current = fetch_for_update(&mut *conn, id).await?;
    if current.status != LessonStatus::Scheduled {
        return Err(DomainError::Conflict(format!(
            "a {} lesson cannot be changed",
            current.status
        )));
    }
    let mut fields = FieldErrors::new();
    let starts_at = req
        .starts_at
        .map_or(current.starts_at, |s| s.with_timezone(&Utc));
    let ends_at = if req.ends_at.is_none() && req.duration_min.is_none() {
        Some(starts_at + (current.ends_at - current.starts_at))
    } else {
        end_of(&mut fields, starts_at, req.ends_at, req.duration_min)
    };
    checked_topic(&mut fields, &req.topic);
    let Some(ends_at) = ends_at.filter(|_| fields.is_empty()) else {
        return Err(DomainError::Invalid(fields));
    };
    let room_id = req.room_id.unwrap_or(current.room_id);
    let teacher_id = req.teacher_id.or(current.teacher_id);
    // A savepoint when the caller's transaction is open: a clash is read after rolling back
    // to it, so the caller's transaction stays usable.
    let mut attempt = sqlx::Connection::begin(&mut *conn).await?;
    let moved: Result<Option<Lesson>, sqlx::Error> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "update lessons l set starts_at = $2, ends_at = $3, room_id = $4, teacher_id = $5,
             topic = coalesce($6, topic), updated_at = now()
         where id = $1 and status = 'scheduled' returning {LESSON}"
    )))
    .bind(id)
    .bind(starts_at)
    .bind(ends_at)
    .bind(room_id)
    .bind(teacher_id)
    .bind(req.topic.as_deref().map(str::trim))
    .fetch_optional(&mut *attempt)
    .await;
    match moved {
        Ok(Some(lesson)) => {
            attempt.commit().await?;
            Ok(lesson)
        }
        Ok(None) => Err(DomainError::Conflict("the lesson changed meanwhile".into())),
        Err(e) => {
            attempt.rollback().await?;
            let slot = Slot {
                own_id: Some(id),
                room_id,
                teacher_id,
                starts_at,
                ends_at,
            };
            Err(clash_error(conn, e, slot).await)
        }
    }
}

/// Cancels a lesson: its slot is freed for other bookings and every visit charged for it is
/// given back, in one transaction. Returns the lesson and the number of visits given back.
pub async fn cancel(
    db: impl Acquire<'_, Database = Postgres>,
    id: Uuid,
) -> Result<(Lesson, u64), DomainError> {
    let mut tx = db.begin().await?;
    let lesson: Option<Lesson> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "update lessons l set status = 'cancelled', updated_at = now()
         where id = $1 returning {LESSON}"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let lesson = lesson.ok_or(DomainError::NotFound)?;
    let released = attendance::release_lesson(&mut tx, id).await?;
    tx.commit().await?;
    Ok((lesson, released))
}

pub async fn fetch(db: impl PgExecutor<'_>, id: Uuid) -> Result<Lesson, DomainError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {LESSON} from lessons l where l.id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(DomainError::NotFound)
}

/// [`fetch`], the row locked until the transaction ends: what a change reads first, so that
/// a concurrent change (a group's new teacher taking the lesson over) is not written back.
pub async fn fetch_for_update(conn: &mut PgConnection, id: Uuid) -> Result<Lesson, DomainError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {LESSON} from lessons l where l.id = $1 for update"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(DomainError::NotFound)
}

/// Which lessons a list shows: those overlapping `[from, to)`.
#[derive(Debug, Clone)]
pub struct ListFilter {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub room_id: Option<Uuid>,
    pub teacher_id: Option<Uuid>,
    pub group_id: Option<Uuid>,
    pub cancelled: bool,
}

/// Lessons overlapping the range (at most [`MAX_LIST_DAYS`]), in time order; page and total in
/// one statement.
pub async fn list(
    db: impl PgExecutor<'_>,
    f: &ListFilter,
    page: PageRequest,
) -> Result<Page<Lesson>, DomainError> {
    let mut fields = FieldErrors::new();
    if f.to <= f.from {
        fields.insert("to".into(), "must be after from".into());
    } else if f.to - f.from > Duration::days(MAX_LIST_DAYS) {
        fields.insert(
            "to".into(),
            format!("a range of at most {MAX_LIST_DAYS} days"),
        );
    }
    check(fields)?;
    // `starts_at > from - 24 h` bounds the index range from below too (no row is longer than
    // 24 hours), so the scan does not grow with the history before `from`.
    let query = sqlx::query(page::page_sql(
        "select * from lessons
         where starts_at < $2 and starts_at > $1 - interval '24 hours' and ends_at > $1
           and ($3::uuid is null or room_id = $3)
           and ($4::uuid is null or teacher_id = $4)
           and ($5::uuid is null or group_id = $5)
           and ($6 or status <> 'cancelled')",
        Cte::Inline,
        "l",
        LESSON,
        "l.starts_at, l.room_id, l.id",
        7,
    ))
    .bind(f.from)
    .bind(f.to)
    .bind(f.room_id)
    .bind(f.teacher_id)
    .bind(f.group_id)
    .bind(f.cancelled);
    Ok(page::fetch(db, query, page).await?)
}
