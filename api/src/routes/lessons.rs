//! Lessons: one-off create, move, cancel, list by date range and by room / teacher / group.
//! Double booking of a room or a teacher is refused by PostgreSQL's exclusion constraints
//! (half-open ranges, cancelled lessons excluded) and reported as 409 with the clashing lessons.
use crate::http::AppPath;
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    Json,
};
use chrono::{DateTime, FixedOffset, Utc};
use jobs::kinds::notifications::notify;
use serde::Deserialize;
use shared::domain::{
    lessons::{self, Lesson, Move, NewLesson},
    notifications::{lesson_notices, Template},
    FieldErrors, Page,
};
use uuid::Uuid;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::CurrentUser,
    http::{page, requester, ApiError, AppJson, AppQuery},
    routes::directory::WRITERS,
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, move_lesson))
        .routes(routes!(cancel))
}

/// Creates a lesson (and its roster: the group's members); the group's defaults are read by
/// the same statement.
#[utoipa::path(
    post,
    path = "/api/lessons",
    tag = "lessons",
    request_body = lessons::NewLesson,
    responses((status = 201, description = "OK", body = lessons::Lesson), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 409, description = "conflict (e.g. a booking clash)", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn create(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(req): AppJson<NewLesson>,
) -> Result<(StatusCode, Json<Lesson>), ApiError> {
    user.require(WRITERS)?;
    let lesson = lessons::create(&app.db, &req).await?;
    tracing::info!(lesson.id = %lesson.id, "lesson created");
    Ok((StatusCode::CREATED, Json(lesson)))
}

/// Moves a scheduled lesson (time, room, teacher) or changes its topic. Without a new end, a
/// lesson moved in time keeps its length.
#[utoipa::path(
    patch,
    path = "/api/lessons/{id}",
    tag = "lessons",
    params(("id" = Uuid, Path)),
    request_body = lessons::Move,
    responses((status = 200, description = "OK", body = lessons::Lesson), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody), (status = 409, description = "conflict (e.g. a booking clash)", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, lesson.id = %id))]
async fn move_lesson(
    State(app): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    AppPath(id): AppPath<Uuid>,
    AppJson(req): AppJson<Move>,
) -> Result<Json<Lesson>, ApiError> {
    user.require(WRITERS)?;
    // The move and the notices of its roster in one transaction.
    let mut tx = app.db.begin().await?;
    let before = lessons::fetch_for_update(&mut tx, id).await?;
    let lesson = lessons::move_lesson(&mut tx, id, &req).await?;
    let mut enqueued = Vec::new();
    if lesson.starts_at != before.starts_at || lesson.room_id != before.room_id {
        let notices =
            lesson_notices(&mut tx, id, Template::LessonMoved, Some(before.starts_at)).await?;
        enqueued = notify(&mut tx, &requester(&user, &headers), &notices).await?;
    }
    tx.commit().await?;
    jobs::committed(&enqueued);
    tracing::info!(notices = enqueued.len(), "lesson moved");
    Ok(Json(lesson))
}

/// Cancels a lesson: its slot is freed for other bookings and every visit charged for it is
/// given back, in one transaction.
#[utoipa::path(
    post,
    path = "/api/lessons/{id}/cancel",
    tag = "lessons",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = lessons::Lesson), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, lesson.id = %id))]
async fn cancel(
    State(app): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<Lesson>, ApiError> {
    user.require(WRITERS)?;
    // The cancellation and the notices of its roster in one transaction.
    let mut tx = app.db.begin().await?;
    let (lesson, released) = lessons::cancel(&mut *tx, id).await?;
    let notices = lesson_notices(&mut tx, id, Template::LessonCancelled, None).await?;
    let enqueued = notify(&mut tx, &requester(&user, &headers), &notices).await?;
    tx.commit().await?;
    jobs::committed(&enqueued);
    tracing::info!(released, notices = enqueued.len(), "lesson cancelled");
    Ok(Json(lesson))
}

#[utoipa::path(
    get,
    path = "/api/lessons/{id}",
    tag = "lessons",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = lessons::Lesson), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id, lesson.id = %id))]
async fn show(
    State(app): State<AppState>,
    _user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<Lesson>, ApiError> {
    Ok(Json(lessons::fetch(&app.db, id).await?))
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
    params(("from" = DateTime<Utc>, Query, description = "RFC 3339"), ("to" = DateTime<Utc>, Query, description = "RFC 3339, after from, at most 93 days after it"), ("room_id" = Option<Uuid>, Query), ("teacher_id" = Option<Uuid>, Query), ("group_id" = Option<Uuid>, Query), ("cancelled" = Option<bool>, Query), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::http::Paged<lessons::Lesson>), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id))]
async fn list(
    State(app): State<AppState>,
    _user: CurrentUser,
    AppQuery(q): AppQuery<LessonQuery>,
) -> Result<Json<Page<Lesson>>, ApiError> {
    let page = page(q.limit, q.offset)?;
    let (Some(from), Some(to)) = (q.from, q.to) else {
        let mut fields = FieldErrors::new();
        for (name, missing) in [("from", q.from.is_none()), ("to", q.to.is_none())] {
            if missing {
                fields.insert(name.into(), "required (RFC 3339 date-time)".into());
            }
        }
        return Err(ApiError::Validation(fields));
    };
    let filter = lessons::ListFilter {
        from: from.with_timezone(&Utc),
        to: to.with_timezone(&Utc),
        room_id: q.room_id,
        teacher_id: q.teacher_id,
        group_id: q.group_id,
        cancelled: q.cancelled.unwrap_or(false),
    };
    Ok(Json(lessons::list(&app.db, &filter, page).await?))
}
