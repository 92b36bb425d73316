//! Lessons: one-off create, move, cancel, list by date range and by room / teacher / group.
//! Double booking of a room or a teacher is refused by PostgreSQL's exclusion constraints
//! (half-open ranges, cancelled lessons excluded) and reported as 409 with the clashing lessons.
use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use chrono::{DateTime, Duration, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::CurrentUser,
    error::{ApiError, AppJson, AppQuery, FieldErrors},
    routes::{directory::WRITERS, page_rows, page_rows_sql, Cte, Page},
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, move_lesson))
        .routes(routes!(cancel))
}

#[derive(Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
struct Lesson {
    id: Uuid,
    kind: String,
    group_id: Option<Uuid>,
    room_id: Uuid,
    teacher_id: Option<Uuid>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    status: String,
    topic: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const LESSON: &str = "id, kind, group_id, room_id, teacher_id, starts_at, ends_at, status, topic, \
     created_at, updated_at";

/// Longest lesson accepted (the table allows a day, for rentals).
const MAX_LESSON_MINUTES: i64 = 12 * 60;

/// Maps a failed lesson write to a friendly error: a clash (409 listing the lessons it clashes
/// with, found by one more query on this error path only) or the field at fault.
async fn write_error(
    app: &AppState,
    error: sqlx::Error,
    slot: (
        Option<Uuid>,
        Uuid,
        Option<Uuid>,
        DateTime<Utc>,
        DateTime<Utc>,
    ),
) -> ApiError {
    let constraint = error
        .as_database_error()
        .and_then(|d| d.constraint())
        .map(str::to_owned);
    let (own_id, room_id, teacher_id, starts_at, ends_at) = slot;
    let what = match constraint.as_deref() {
        Some("lessons_room_no_overlap") => "the room is already booked at that time",
        Some("lessons_teacher_no_overlap") => "the teacher already teaches at that time",
        _ => {
            return ApiError::on_constraint(
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
        "select {LESSON} from lessons
         where status <> 'cancelled' and id is distinct from $1
           and (room_id = $2 or teacher_id = $3)
           and tstzrange(starts_at, ends_at, '[)') && tstzrange($4, $5, '[)')
         order by starts_at"
    )))
    .bind(own_id)
    .bind(room_id)
    .bind(teacher_id)
    .bind(starts_at)
    .bind(ends_at)
    .fetch_all(&app.db)
    .await;
    match clashes {
        Ok(clashes) => ApiError::Clash {
            message: what.to_string(),
            clashes: json!(clashes),
        },
        Err(e) => e.into(),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewLesson {
    group_id: Uuid,
    starts_at: DateTime<FixedOffset>,
    ends_at: Option<DateTime<FixedOffset>>,
    duration_min: Option<i64>,
    /// Default: the group's room.
    room_id: Option<Uuid>,
    /// Default: the group's teacher.
    teacher_id: Option<Uuid>,
    topic: Option<String>,
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

/// Creates a lesson; the group's defaults (room, teacher) are read by the same statement.
#[utoipa::path(
    post,
    path = "/api/lessons",
    tag = "lessons",
    request_body = NewLesson,
    responses((status = 201, description = "OK", body = Lesson), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 409, description = "conflict (e.g. a booking clash)", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn create(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(req): AppJson<NewLesson>,
) -> Result<(StatusCode, Json<Lesson>), ApiError> {
    user.require(WRITERS)?;
    let mut fields = FieldErrors::new();
    let starts_at = req.starts_at.with_timezone(&Utc);
    let ends_at = end_of(&mut fields, starts_at, req.ends_at, req.duration_min);
    if req.topic.as_ref().is_some_and(|t| t.chars().count() > 500) {
        fields.insert("topic".into(), "at most 500 characters".into());
    }
    let Some(ends_at) = ends_at.filter(|_| fields.is_empty()) else {
        return Err(ApiError::Validation(fields));
    };
    // One round trip: the group (and its default room and teacher) is read by the insert.
    let created: Result<Option<(Lesson, bool)>, sqlx::Error> =
        sqlx::query_as::<_, LessonWithFlag>(sqlx::AssertSqlSafe(format!(
            "with g as (select id, room_id, teacher_id, status from study_groups where id = $1),
             ins as (
                 insert into lessons (group_id, room_id, teacher_id, starts_at, ends_at, topic)
                 select g.id, coalesce($2, g.room_id), coalesce($3, g.teacher_id), $4, $5, $6
                 from g where g.status <> 'archived' and coalesce($2, g.room_id) is not null
                 returning {LESSON}
             )
             select ins.*, true as inserted from ins
             union all
             select null, null, g.id, g.room_id, g.teacher_id, null, null, g.status, null, null,
                    null, false from g where not exists (select 1 from ins)"
        )))
        .bind(req.group_id)
        .bind(req.room_id)
        .bind(req.teacher_id)
        .bind(starts_at)
        .bind(ends_at)
        .bind(req.topic.as_deref().map(str::trim))
        .fetch_optional(&app.db)
        .await
        .map(|row| row.map(LessonWithFlag::split));
    let group_defaults = (req.room_id, req.teacher_id);
    match created {
        Ok(Some((lesson, true))) => {
            tracing::info!(lesson.id = %lesson.id, "lesson created");
            Ok((StatusCode::CREATED, Json(lesson)))
        }
        Ok(Some((group, false))) if group.status == "archived" => {
            Err(ApiError::field("group_id", "the group is archived"))
        }
        Ok(Some(_)) => Err(ApiError::field(
            "room_id",
            "required: the group has no default room",
        )),
        Ok(None) => Err(ApiError::field("group_id", "no such group")),
        Err(e) => {
            // Error path only: resolve the group's defaults to name the clashing lessons.
            let defaults: Option<(Option<Uuid>, Uuid)> =
                sqlx::query_as("select room_id, teacher_id from study_groups where id = $1")
                    .bind(req.group_id)
                    .fetch_optional(&app.db)
                    .await?;
            let room = group_defaults
                .0
                .or(defaults.and_then(|d| d.0))
                .unwrap_or_default();
            let teacher = group_defaults.1.or(defaults.map(|d| d.1));
            Err(write_error(&app, e, (None, room, teacher, starts_at, ends_at)).await)
        }
    }
}

/// A lesson row plus whether it was inserted (else: the group's row, to say why not).
#[derive(sqlx::FromRow)]
struct LessonWithFlag {
    id: Option<Uuid>,
    kind: Option<String>,
    group_id: Option<Uuid>,
    room_id: Option<Uuid>,
    teacher_id: Option<Uuid>,
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    status: Option<String>,
    topic: Option<String>,
    created_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
    inserted: bool,
}

impl LessonWithFlag {
    fn split(self) -> (Lesson, bool) {
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        (
            Lesson {
                id: self.id.unwrap_or_default(),
                kind: self.kind.unwrap_or_default(),
                group_id: self.group_id,
                room_id: self.room_id.unwrap_or_default(),
                teacher_id: self.teacher_id,
                starts_at: self.starts_at.unwrap_or(epoch),
                ends_at: self.ends_at.unwrap_or(epoch),
                status: self.status.unwrap_or_default(),
                topic: self.topic,
                created_at: self.created_at.unwrap_or(epoch),
                updated_at: self.updated_at.unwrap_or(epoch),
            },
            self.inserted,
        )
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Move {
    starts_at: Option<DateTime<FixedOffset>>,
    ends_at: Option<DateTime<FixedOffset>>,
    duration_min: Option<i64>,
    room_id: Option<Uuid>,
    teacher_id: Option<Uuid>,
    topic: Option<String>,
}

/// Moves a scheduled lesson (time, room, teacher) or changes its topic. Without a new end, a
/// lesson moved in time keeps its length.
#[utoipa::path(
    patch,
    path = "/api/lessons/{id}",
    tag = "lessons",
    params(("id" = Uuid, Path)),
    request_body = Move,
    responses((status = 200, description = "OK", body = Lesson), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody), (status = 409, description = "conflict (e.g. a booking clash)", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, lesson.id = %id))]
async fn move_lesson(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
    AppJson(req): AppJson<Move>,
) -> Result<Json<Lesson>, ApiError> {
    user.require(WRITERS)?;
    let current = fetch(&app, id).await?;
    if current.status != "scheduled" {
        return Err(ApiError::Conflict(format!(
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
    let Some(ends_at) = ends_at.filter(|_| fields.is_empty()) else {
        return Err(ApiError::Validation(fields));
    };
    let room_id = req.room_id.unwrap_or(current.room_id);
    let teacher_id = req.teacher_id.or(current.teacher_id);
    let moved: Result<Option<Lesson>, sqlx::Error> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "update lessons set starts_at = $2, ends_at = $3, room_id = $4, teacher_id = $5,
             topic = coalesce($6, topic), updated_at = now()
         where id = $1 and status = 'scheduled' returning {LESSON}"
    )))
    .bind(id)
    .bind(starts_at)
    .bind(ends_at)
    .bind(room_id)
    .bind(teacher_id)
    .bind(req.topic.as_deref().map(str::trim))
    .fetch_optional(&app.db)
    .await;
    match moved {
        Ok(Some(lesson)) => Ok(Json(lesson)),
        Ok(None) => Err(ApiError::Conflict("the lesson changed meanwhile".into())),
        Err(e) => {
            Err(write_error(&app, e, (Some(id), room_id, teacher_id, starts_at, ends_at)).await)
        }
    }
}

/// Cancels a lesson: its slot is freed for other bookings and every visit charged for it is
/// given back, in one transaction.
#[utoipa::path(
    post,
    path = "/api/lessons/{id}/cancel",
    tag = "lessons",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = Lesson), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, lesson.id = %id))]
async fn cancel(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Lesson>, ApiError> {
    user.require(WRITERS)?;
    let mut tx = app.db.begin().await?;
    let lesson: Option<Lesson> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "update lessons set status = 'cancelled', updated_at = now()
         where id = $1 returning {LESSON}"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let lesson = lesson.ok_or(ApiError::NotFound)?;
    let released = super::attendance::release_lesson(&mut tx, id).await?;
    tx.commit().await?;
    tracing::info!(released, "lesson cancelled");
    Ok(Json(lesson))
}

async fn fetch(app: &AppState, id: Uuid) -> Result<Lesson, ApiError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {LESSON} from lessons where id = $1"
    )))
    .bind(id)
    .fetch_optional(&app.db)
    .await?
    .ok_or(ApiError::NotFound)
}

#[utoipa::path(
    get,
    path = "/api/lessons/{id}",
    tag = "lessons",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = Lesson), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id, lesson.id = %id))]
async fn show(
    State(app): State<AppState>,
    _user: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Lesson>, ApiError> {
    Ok(Json(fetch(&app, id).await?))
}

#[derive(Deserialize)]
struct LessonQuery {
    from: Option<DateTime<FixedOffset>>,
    to: Option<DateTime<FixedOffset>>,
    room_id: Option<Uuid>,
    teacher_id: Option<Uuid>,
    group_id: Option<Uuid>,
    /// Include cancelled lessons (default false).
    cancelled: Option<bool>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Lessons overlapping `[from, to)` (at most 93 days), in time order; page and total in one
/// statement.
#[utoipa::path(
    get,
    path = "/api/lessons",
    tag = "lessons",
    params(("from" = String, Query, description = "RFC 3339"), ("to" = String, Query, description = "RFC 3339, at most 93 days after from"), ("room_id" = Option<Uuid>, Query), ("teacher_id" = Option<Uuid>, Query), ("group_id" = Option<Uuid>, Query), ("cancelled" = Option<bool>, Query), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::routes::Paged<Lesson>), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id))]
async fn list(
    State(app): State<AppState>,
    _user: CurrentUser,
    AppQuery(q): AppQuery<LessonQuery>,
) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = Page {
        limit: q.limit,
        offset: q.offset,
    }
    .validate()?;
    let mut fields = FieldErrors::new();
    let (Some(from), Some(to)) = (q.from, q.to) else {
        for (name, v) in [("from", q.from.is_none()), ("to", q.to.is_none())] {
            if v {
                fields.insert(name.into(), "required (RFC 3339 date-time)".into());
            }
        }
        return Err(ApiError::Validation(fields));
    };
    let (from, to) = (from.with_timezone(&Utc), to.with_timezone(&Utc));
    if to <= from {
        return Err(ApiError::field("to", "must be after from"));
    }
    if to - from > Duration::days(93) {
        return Err(ApiError::field("to", "a range of at most 93 days"));
    }
    // `starts_at > from - 24 h` bounds the index range from below too (no row is longer than
    // 24 hours), so the scan does not grow with the history before `from`.
    let rows = sqlx::query(page_rows_sql(
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
    .bind(from)
    .bind(to)
    .bind(q.room_id)
    .bind(q.teacher_id)
    .bind(q.group_id)
    .bind(q.cancelled.unwrap_or(false))
    .bind(limit)
    .bind(offset)
    .fetch_all(&app.db)
    .await?;
    let (total, items) = page_rows::<Lesson>(&rows)?;
    Ok(Json(json!({"items": items, "total": total})))
}
