//! Attendance of a lesson: its roster (the members expected) with their marks, and marking —
//! marks and the visits they charge in one transaction (rules: `shared::domain::attendance`).
//! Managers and admins mark any lesson, anyone, any time; teachers their own lessons' rosters
//! (others only as `trial`) within the marking window (ATTENDANCE_OPENS_BEFORE_MINS,
//! ATTENDANCE_CLOSES_AFTER_HOURS).
use crate::http::AppPath;
use axum::{extract::State, Json};
use serde::Deserialize;
use shared::domain::attendance::{self, Marker, RawMark, Sheet};
use uuid::Uuid;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{CurrentUser, Role},
    http::{ApiError, AppJson},
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show, mark))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Marks {
    /// Each client once.
    #[schema(min_items = 1, max_items = 500)]
    marks: Vec<RawMark>,
}

/// A teacher sees and marks only the lessons they teach.
fn teacher_scope(user: &CurrentUser) -> Option<Uuid> {
    (user.role == Role::Teacher).then_some(user.id)
}

/// The lesson's roster — every member expected, marked or not — and anyone else marked (a
/// trial visitor), by name.
#[utoipa::path(
    get,
    path = "/api/lessons/{id}/attendance",
    tag = "attendance",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = attendance::Sheet), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, lesson.id = %id))]
async fn show(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<Sheet>, ApiError> {
    Ok(Json(
        attendance::show(&app.db, id, teacher_scope(&user)).await?,
    ))
}

#[utoipa::path(
    put,
    path = "/api/lessons/{id}/attendance",
    tag = "attendance",
    params(("id" = Uuid, Path)),
    request_body = Marks,
    responses((status = 200, description = "OK", body = attendance::Sheet), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody), (status = 409, description = "conflict (e.g. a booking clash)", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, lesson.id = %id))]
async fn mark(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
    AppJson(req): AppJson<Marks>,
) -> Result<Json<Sheet>, ApiError> {
    user.require(&[Role::Admin, Role::Manager, Role::Teacher])?;
    let marker = Marker {
        user_id: user.id,
        teacher_user: teacher_scope(&user),
        window: app.settings.marking_window,
    };
    let marks = attendance::parse_marks(&req.marks)?;
    Ok(Json(attendance::mark(&app.db, id, &marks, marker).await?))
}
