//! Study groups and their members: enrol (active while seats are free, else waitlisted),
//! unenrol (the first waitlisted member takes the seat). Managers and admins write; every role
//! reads.
use crate::http::AppPath;
use axum::{extract::State, http::StatusCode, Json};
use chrono::NaiveDate;
use serde::Deserialize;
use shared::domain::{
    groups::{self, Group, GroupPatch, GroupStatus, Left, Member, MemberFilter},
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
        .routes(routes!(show, update))
        .routes(routes!(members, enrol))
        .routes(routes!(unenrol))
}

#[utoipa::path(
    post,
    path = "/api/groups",
    tag = "groups",
    request_body = groups::NewGroup,
    responses((status = 201, description = "OK", body = groups::Group), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn create(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(req): AppJson<GroupPatch>,
) -> Result<(StatusCode, Json<Group>), ApiError> {
    user.require(WRITERS)?;
    Ok((
        StatusCode::CREATED,
        Json(groups::create(&app.db, req).await?),
    ))
}

#[utoipa::path(
    patch,
    path = "/api/groups/{id}",
    tag = "groups",
    params(("id" = Uuid, Path)),
    request_body = groups::GroupPatch,
    responses((status = 200, description = "OK", body = groups::Group), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody), (status = 409, description = "the new teacher already teaches at the time of one of the group's coming lessons", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, group.id = %id))]
async fn update(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
    AppJson(req): AppJson<GroupPatch>,
) -> Result<Json<Group>, ApiError> {
    user.require(WRITERS)?;
    let mut conn = app.db.acquire().await?;
    Ok(Json(groups::update(&mut conn, id, req).await?))
}

#[utoipa::path(
    get,
    path = "/api/groups/{id}",
    tag = "groups",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = groups::Group), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id, group.id = %id))]
async fn show(
    State(app): State<AppState>,
    _user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<Group>, ApiError> {
    Ok(Json(groups::fetch(&app.db, id).await?))
}

#[derive(Deserialize)]
struct GroupQuery {
    teacher_id: Option<Uuid>,
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/groups",
    tag = "groups",
    params(("teacher_id" = Option<Uuid>, Query), ("status" = inline(Option<groups::GroupStatus>), Query), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::http::Paged<groups::Group>), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id))]
async fn list(
    State(app): State<AppState>,
    _user: CurrentUser,
    AppQuery(q): AppQuery<GroupQuery>,
) -> Result<Json<Page<Group>>, ApiError> {
    let page = page(q.limit, q.offset)?;
    let status = query_value::<GroupStatus>("status", q.status.as_deref())?;
    Ok(Json(
        groups::list(&app.db, q.teacher_id, status, page).await?,
    ))
}

// ----- members -----

#[derive(Deserialize)]
struct MembersQuery {
    /// `current` (default: active and waitlisted), `active`, `waitlist`, `left`, `all`.
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/groups/{id}/members",
    tag = "groups",
    params(("id" = Uuid, Path), ("status" = inline(Option<groups::MemberFilter>), Query, description = "current (default): active and waitlisted"), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::http::Paged<groups::Member>), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "a teacher and a group they do not teach", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, group.id = %id))]
async fn members(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
    AppQuery(q): AppQuery<MembersQuery>,
) -> Result<Json<Page<Member>>, ApiError> {
    let page = page(q.limit, q.offset)?;
    let filter = query_value::<MemberFilter>("status", q.status.as_deref())?
        .unwrap_or(MemberFilter::Current);
    // A teacher reads the current rosters of the groups they teach (the group itself, its
    // name and schedule, is no secret: 403, not 404); former members are the office's.
    let current = matches!(
        filter,
        MemberFilter::Current | MemberFilter::Active | MemberFilter::Waitlist
    );
    let reader = user.reader();
    if (reader.teacher().is_some() && !current) || !reader.sees_group(&app.db, id).await? {
        return Err(ApiError::Forbidden);
    }
    Ok(Json(groups::members(&app.db, id, filter, page).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Enrol {
    client_id: Uuid,
    /// Defaults to today (Moscow).
    joined_on: Option<NaiveDate>,
}

/// Enrols a client: `active` while the group has free seats, else `waitlist`. The group row is
/// locked first, so concurrent enrolments see each other's seats (no overbooking).
#[utoipa::path(
    post,
    path = "/api/groups/{id}/members",
    tag = "groups",
    params(("id" = Uuid, Path)),
    request_body = Enrol,
    responses((status = 201, description = "enrolled: active, or waitlist when full", body = groups::Member), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, group.id = %id))]
async fn enrol(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
    AppJson(req): AppJson<Enrol>,
) -> Result<(StatusCode, Json<Member>), ApiError> {
    user.require(WRITERS)?;
    let joined_on = req.joined_on.unwrap_or_else(shared::time::today);
    let mut tx = app.db.begin().await?;
    let member = groups::enrol(&mut tx, id, req.client_id, joined_on).await?;
    tx.commit().await?;
    tracing::info!(client.id = %member.client_id, status = %member.status, "client enrolled");
    Ok((StatusCode::CREATED, Json(member)))
}

#[derive(Deserialize)]
struct Unenrol {
    /// Defaults to today (Moscow).
    left_on: Option<NaiveDate>,
}

/// Ends a membership (or leaves the waitlist); a freed seat goes to the first waitlisted client.
#[utoipa::path(
    delete,
    path = "/api/groups/{id}/members/{client_id}",
    tag = "groups",
    params(("id" = Uuid, Path), ("client_id" = Uuid, Path), ("left_on" = Option<NaiveDate>, Query)),
    responses((status = 200, description = "OK", body = groups::Left), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, group.id = %id, client.id = %client_id))]
async fn unenrol(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath((id, client_id)): AppPath<(Uuid, Uuid)>,
    AppQuery(q): AppQuery<Unenrol>,
) -> Result<Json<Left>, ApiError> {
    user.require(WRITERS)?;
    let left_on = q.left_on.unwrap_or_else(shared::time::today);
    let mut tx = app.db.begin().await?;
    let left = groups::leave(&mut tx, id, client_id, left_on).await?;
    tx.commit().await?;
    Ok(Json(left))
}
