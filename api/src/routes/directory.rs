//! Teachers (optionally linked to a login) and rooms. Managers and admins write; every role
//! reads.
use crate::http::AppPath;
use axum::{extract::State, http::StatusCode, Json};
use serde::Deserialize;
use shared::domain::{
    directory::{self, Room, RoomFilter, RoomPatch, RoomStatus, Teacher, TeacherPatch},
    Page,
};
use uuid::Uuid;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{CurrentUser, Role},
    http::{page, query_value, ApiError, AppJson, AppQuery},
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_teachers, create_teacher))
        .routes(routes!(show_teacher, update_teacher))
        .routes(routes!(list_rooms, create_room))
        .routes(routes!(show_room, update_room))
}

pub(crate) const WRITERS: &[Role] = &[Role::Admin, Role::Manager];

// ----- teachers -----

#[utoipa::path(
    post,
    path = "/api/teachers",
    tag = "teachers",
    request_body = directory::NewTeacher,
    responses((status = 201, description = "OK", body = directory::Teacher), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn create_teacher(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(req): AppJson<TeacherPatch>,
) -> Result<(StatusCode, Json<Teacher>), ApiError> {
    user.require(WRITERS)?;
    Ok((
        StatusCode::CREATED,
        Json(directory::create_teacher(&app.db, req).await?),
    ))
}

#[utoipa::path(
    patch,
    path = "/api/teachers/{id}",
    tag = "teachers",
    params(("id" = Uuid, Path)),
    request_body = directory::TeacherPatch,
    responses((status = 200, description = "OK", body = directory::Teacher), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, teacher.id = %id))]
async fn update_teacher(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
    AppJson(req): AppJson<TeacherPatch>,
) -> Result<Json<Teacher>, ApiError> {
    user.require(WRITERS)?;
    Ok(Json(directory::update_teacher(&app.db, id, req).await?))
}

#[utoipa::path(
    get,
    path = "/api/teachers/{id}",
    tag = "teachers",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = directory::Teacher), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id, teacher.id = %id))]
async fn show_teacher(
    State(app): State<AppState>,
    _user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<Teacher>, ApiError> {
    Ok(Json(directory::teacher(&app.db, id).await?))
}

#[derive(Deserialize)]
struct TeacherQuery {
    /// `true` (default) only active ones.
    active: Option<bool>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/teachers",
    tag = "teachers",
    params(("active" = Option<bool>, Query), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::http::Paged<directory::Teacher>), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id))]
async fn list_teachers(
    State(app): State<AppState>,
    _user: CurrentUser,
    AppQuery(q): AppQuery<TeacherQuery>,
) -> Result<Json<Page<Teacher>>, ApiError> {
    let page = page(q.limit, q.offset)?;
    Ok(Json(
        directory::teachers(&app.db, Some(q.active.unwrap_or(true)), page).await?,
    ))
}

// ----- rooms -----

#[utoipa::path(
    post,
    path = "/api/rooms",
    tag = "rooms",
    request_body = directory::NewRoom,
    responses((status = 201, description = "OK", body = directory::Room), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn create_room(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(req): AppJson<RoomPatch>,
) -> Result<(StatusCode, Json<Room>), ApiError> {
    user.require(WRITERS)?;
    Ok((
        StatusCode::CREATED,
        Json(directory::create_room(&app.db, req).await?),
    ))
}

#[utoipa::path(
    patch,
    path = "/api/rooms/{id}",
    tag = "rooms",
    params(("id" = Uuid, Path)),
    request_body = directory::RoomPatch,
    responses((status = 200, description = "OK", body = directory::Room), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, room.id = %id))]
async fn update_room(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
    AppJson(req): AppJson<RoomPatch>,
) -> Result<Json<Room>, ApiError> {
    user.require(WRITERS)?;
    Ok(Json(directory::update_room(&app.db, id, req).await?))
}

#[utoipa::path(
    get,
    path = "/api/rooms/{id}",
    tag = "rooms",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = directory::Room), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id, room.id = %id))]
async fn show_room(
    State(app): State<AppState>,
    _user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<Room>, ApiError> {
    Ok(Json(directory::room(&app.db, id).await?))
}

#[derive(Deserialize)]
struct RoomQuery {
    /// `active` (default), `archived` or `all`.
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/rooms",
    tag = "rooms",
    params(("status" = inline(Option<directory::RoomFilter>), Query, description = "default active"), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::http::Paged<directory::Room>), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id))]
async fn list_rooms(
    State(app): State<AppState>,
    _user: CurrentUser,
    AppQuery(q): AppQuery<RoomQuery>,
) -> Result<Json<Page<Room>>, ApiError> {
    let page = page(q.limit, q.offset)?;
    let status = match query_value("status", q.status.as_deref())?.unwrap_or(RoomFilter::Active) {
        RoomFilter::Active => Some(RoomStatus::Active),
        RoomFilter::Archived => Some(RoomStatus::Archived),
        RoomFilter::All => None,
    };
    Ok(Json(directory::rooms(&app.db, status, page).await?))
}
