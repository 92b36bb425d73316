//! Teachers (optionally linked to a login) and rooms. Managers and admins write; every role
//! reads.
use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{CurrentUser, Role},
    error::{ApiError, AppJson, AppQuery, FieldErrors},
    routes::{clients::normalize_phone, nullable, paged, paged_sql, Page},
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

fn done(fields: FieldErrors) -> Result<(), ApiError> {
    if fields.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(fields))
    }
}

/// Trimmed non-empty text of at most `max` characters, or the problem.
pub(crate) fn check_name(fields: &mut FieldErrors, field: &str, value: &str, max: usize) {
    let n = value.trim().chars().count();
    if n == 0 {
        fields.insert(field.into(), "required".into());
    } else if n > max {
        fields.insert(field.into(), format!("at most {max} characters"));
    }
}

// ----- teachers -----

#[derive(Serialize, sqlx::FromRow, utoipa::ToSchema)]
struct Teacher {
    id: Uuid,
    user_id: Option<Uuid>,
    full_name: String,
    phone: Option<String>,
    email: Option<String>,
    active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const TEACHER: &str = "id, user_id, full_name, phone, email, active, created_at, updated_at";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TeacherPatch {
    full_name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    user_id: Option<Option<Uuid>>,
    active: Option<bool>,
}

impl TeacherPatch {
    /// Validates and normalises in place; `creating` requires the name.
    fn check(&mut self, creating: bool) -> Result<(), ApiError> {
        let mut fields = FieldErrors::new();
        match &self.full_name {
            Some(name) => check_name(&mut fields, "full_name", name, 200),
            None if creating => {
                fields.insert("full_name".into(), "required".into());
            }
            None => {}
        }
        if let Some(Some(phone)) = &self.phone {
            match normalize_phone(phone) {
                Some(p) => self.phone = Some(Some(p)),
                None => {
                    fields.insert(
                        "phone".into(),
                        "expected a phone number like +7 916 123-45-67".into(),
                    );
                }
            }
        }
        if let Some(Some(email)) = &self.email {
            if !email.contains('@') || email.contains(' ') {
                fields.insert("email".into(), "expected an e-mail address".into());
            }
        }
        done(fields)
    }
}

const TEACHER_CONSTRAINTS: &[(&str, &str, &str)] = &[
    ("teachers_user_id_fkey", "user_id", "no such user"),
    (
        "teachers_user_unique",
        "user_id",
        "this user is already linked to a teacher",
    ),
];

#[utoipa::path(
    post,
    path = "/api/teachers",
    tag = "teachers",
    request_body = TeacherPatch,
    responses((status = 201, description = "OK", body = Teacher), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn create_teacher(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(mut req): AppJson<TeacherPatch>,
) -> Result<(StatusCode, Json<Teacher>), ApiError> {
    user.require(WRITERS)?;
    req.check(true)?;
    let teacher: Teacher = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into teachers (full_name, phone, email, user_id, active)
         values ($1, $2, $3, $4, coalesce($5, true)) returning {TEACHER}"
    )))
    .bind(req.full_name.as_deref().map(str::trim))
    .bind(req.phone.flatten())
    .bind(req.email.flatten())
    .bind(req.user_id.flatten())
    .bind(req.active)
    .fetch_one(&app.db)
    .await
    .map_err(|e| ApiError::on_constraint(e, TEACHER_CONSTRAINTS))?;
    Ok((StatusCode::CREATED, Json(teacher)))
}

#[utoipa::path(
    patch,
    path = "/api/teachers/{id}",
    tag = "teachers",
    params(("id" = Uuid, Path)),
    request_body = TeacherPatch,
    responses((status = 200, description = "OK", body = Teacher), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, teacher.id = %id))]
async fn update_teacher(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
    AppJson(mut req): AppJson<TeacherPatch>,
) -> Result<Json<Teacher>, ApiError> {
    user.require(WRITERS)?;
    req.check(false)?;
    let teacher: Option<Teacher> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "update teachers set
             full_name = coalesce($2, full_name),
             phone = case when $3 then $4 else phone end,
             email = case when $5 then $6 else email end,
             user_id = case when $7 then $8 else user_id end,
             active = coalesce($9, active),
             updated_at = now()
         where id = $1 returning {TEACHER}"
    )))
    .bind(id)
    .bind(req.full_name.as_deref().map(str::trim))
    .bind(req.phone.is_some())
    .bind(req.phone.flatten())
    .bind(req.email.is_some())
    .bind(req.email.flatten())
    .bind(req.user_id.is_some())
    .bind(req.user_id.flatten())
    .bind(req.active)
    .fetch_optional(&app.db)
    .await
    .map_err(|e| ApiError::on_constraint(e, TEACHER_CONSTRAINTS))?;
    teacher.map(Json).ok_or(ApiError::NotFound)
}

#[utoipa::path(
    get,
    path = "/api/teachers/{id}",
    tag = "teachers",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = Teacher), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id, teacher.id = %id))]
async fn show_teacher(
    State(app): State<AppState>,
    _user: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Teacher>, ApiError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {TEACHER} from teachers where id = $1"
    )))
    .bind(id)
    .fetch_optional(&app.db)
    .await?
    .map(Json)
    .ok_or(ApiError::NotFound)
}

#[derive(Deserialize)]
struct DirectoryQuery {
    /// Teachers: `true` (default) only active ones; rooms: `active` / `archived` / `all`.
    active: Option<bool>,
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/teachers",
    tag = "teachers",
    params(("active" = Option<bool>, Query), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::routes::Paged<Teacher>), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id))]
async fn list_teachers(
    State(app): State<AppState>,
    _user: CurrentUser,
    AppQuery(q): AppQuery<DirectoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = Page {
        limit: q.limit,
        offset: q.offset,
    }
    .validate()?;
    let row = sqlx::query_as(paged_sql(
        "select * from teachers where ($1::bool is null or active = $1)",
        "t",
        TEACHER,
        "t.full_name, t.id",
        2,
    ))
    .bind(q.active.or(Some(true)))
    .bind(limit)
    .bind(offset)
    .fetch_one(&app.db)
    .await?;
    Ok(paged(row))
}

// ----- rooms -----

#[derive(Serialize, sqlx::FromRow, utoipa::ToSchema)]
struct Room {
    id: Uuid,
    name: String,
    capacity: i32,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const ROOM: &str = "id, name, capacity, status, created_at, updated_at";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RoomPatch {
    name: Option<String>,
    capacity: Option<i32>,
    status: Option<String>,
}

impl RoomPatch {
    fn check(&self, creating: bool) -> Result<(), ApiError> {
        let mut fields = FieldErrors::new();
        match &self.name {
            Some(name) => check_name(&mut fields, "name", name, 100),
            None if creating => {
                fields.insert("name".into(), "required".into());
            }
            None => {}
        }
        match self.capacity {
            Some(c) if !(1..=10_000).contains(&c) => {
                fields.insert("capacity".into(), "must be between 1 and 10000".into());
            }
            None if creating => {
                fields.insert("capacity".into(), "required".into());
            }
            _ => {}
        }
        if let Some(s) = &self.status {
            if s != "active" && s != "archived" {
                fields.insert("status".into(), "one of active, archived".into());
            }
        }
        done(fields)
    }
}

const ROOM_CONSTRAINTS: &[(&str, &str, &str)] =
    &[("rooms_name_unique", "name", "a room with this name exists")];

#[utoipa::path(
    post,
    path = "/api/rooms",
    tag = "rooms",
    request_body = RoomPatch,
    responses((status = 201, description = "OK", body = Room), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn create_room(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(req): AppJson<RoomPatch>,
) -> Result<(StatusCode, Json<Room>), ApiError> {
    user.require(WRITERS)?;
    req.check(true)?;
    let room: Room = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into rooms (name, capacity, status) values ($1, $2, coalesce($3, 'active'))
         returning {ROOM}"
    )))
    .bind(req.name.as_deref().map(str::trim))
    .bind(req.capacity)
    .bind(&req.status)
    .fetch_one(&app.db)
    .await
    .map_err(|e| ApiError::on_constraint(e, ROOM_CONSTRAINTS))?;
    Ok((StatusCode::CREATED, Json(room)))
}

#[utoipa::path(
    patch,
    path = "/api/rooms/{id}",
    tag = "rooms",
    params(("id" = Uuid, Path)),
    request_body = RoomPatch,
    responses((status = 200, description = "OK", body = Room), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, room.id = %id))]
async fn update_room(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
    AppJson(req): AppJson<RoomPatch>,
) -> Result<Json<Room>, ApiError> {
    user.require(WRITERS)?;
    req.check(false)?;
    let room: Option<Room> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "update rooms set name = coalesce($2, name), capacity = coalesce($3, capacity),
             status = coalesce($4, status), updated_at = now()
         where id = $1 returning {ROOM}"
    )))
    .bind(id)
    .bind(req.name.as_deref().map(str::trim))
    .bind(req.capacity)
    .bind(&req.status)
    .fetch_optional(&app.db)
    .await
    .map_err(|e| ApiError::on_constraint(e, ROOM_CONSTRAINTS))?;
    room.map(Json).ok_or(ApiError::NotFound)
}

#[utoipa::path(
    get,
    path = "/api/rooms/{id}",
    tag = "rooms",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = Room), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id, room.id = %id))]
async fn show_room(
    State(app): State<AppState>,
    _user: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Room>, ApiError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {ROOM} from rooms where id = $1"
    )))
    .bind(id)
    .fetch_optional(&app.db)
    .await?
    .map(Json)
    .ok_or(ApiError::NotFound)
}

#[utoipa::path(
    get,
    path = "/api/rooms",
    tag = "rooms",
    params(("status" = Option<String>, Query, description = "active (default), archived, all"), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::routes::Paged<Room>), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id))]
async fn list_rooms(
    State(app): State<AppState>,
    _user: CurrentUser,
    AppQuery(q): AppQuery<DirectoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = Page {
        limit: q.limit,
        offset: q.offset,
    }
    .validate()?;
    let status = q.status.as_deref().unwrap_or("active");
    if !["active", "archived", "all"].contains(&status) {
        return Err(ApiError::field("status", "one of active, archived, all"));
    }
    let row = sqlx::query_as(paged_sql(
        "select * from rooms where $1 = 'all' or status = $1",
        "r",
        ROOM,
        "r.name, r.id",
        2,
    ))
    .bind(status)
    .bind(limit)
    .bind(offset)
    .fetch_one(&app.db)
    .await?;
    Ok(paged(row))
}
