//! Room rental applications from outside organisations: create, list, approve (books the room
//! for every day of the period, set-based, refused with 409 listing every clash), reject.
//! Managers and admins only (rules: `shared::domain::rentals`).
use crate::http::AppPath;
use axum::{extract::State, http::StatusCode, Json};
use serde::Deserialize;
use shared::domain::{
    rentals::{self, Application, ApplicationStatus, NewApplication},
    Page,
};
use uuid::Uuid;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::CurrentUser,
    http::{page, query_value, ApiError, AppJson, AppQuery},
    routes::directory::WRITERS,
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show))
        .routes(routes!(approve))
        .routes(routes!(reject))
}

#[utoipa::path(
    post,
    path = "/api/rental-applications",
    tag = "rentals",
    request_body = rentals::NewApplication,
    responses((status = 201, description = "OK", body = rentals::Application), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn create(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(req): AppJson<NewApplication>,
) -> Result<(StatusCode, Json<Application>), ApiError> {
    user.require(WRITERS)?;
    Ok((
        StatusCode::CREATED,
        Json(rentals::create(&app.db, req).await?),
    ))
}

#[utoipa::path(
    get,
    path = "/api/rental-applications/{id}",
    tag = "rentals",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = rentals::Application), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, application.id = %id))]
async fn show(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<Application>, ApiError> {
    user.require(WRITERS)?;
    Ok(Json(rentals::fetch(&app.db, id).await?))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/rental-applications",
    tag = "rentals",
    params(("status" = inline(Option<rentals::ApplicationStatus>), Query), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::http::Paged<rentals::Application>), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn list(
    State(app): State<AppState>,
    user: CurrentUser,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<Json<Page<Application>>, ApiError> {
    user.require(WRITERS)?;
    let page = page(q.limit, q.offset)?;
    let status = query_value::<ApplicationStatus>("status", q.status.as_deref())?;
    Ok(Json(rentals::list(&app.db, status, page).await?))
}

/// Approves a new application: one INSERT … SELECT books every day; any clash refuses the
/// whole approval (409 listing every clashing booking) and nothing is booked.
#[utoipa::path(
    post,
    path = "/api/rental-applications/{id}/approve",
    tag = "rentals",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = rentals::Application), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody), (status = 409, description = "conflict (e.g. a booking clash)", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, application.id = %id))]
async fn approve(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<Application>, ApiError> {
    user.require(WRITERS)?;
    Ok(Json(rentals::approve(&app.db, id, user.id).await?))
}

#[utoipa::path(
    post,
    path = "/api/rental-applications/{id}/reject",
    tag = "rentals",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = rentals::Application), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody), (status = 409, description = "conflict (e.g. a booking clash)", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, application.id = %id))]
async fn reject(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<Application>, ApiError> {
    user.require(WRITERS)?;
    Ok(Json(rentals::reject(&app.db, id, user.id).await?))
}
