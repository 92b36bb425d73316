//! Imports as jobs: `POST /api/imports/timepad` and `/api/imports/pyrus` queue an import
//! (while one of the same scope is queued or running, the request returns it), and the
//! imported Timepad events and orders. Managers and admins.
use crate::http::AppPath;
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    Json,
};
use jobs::kinds::imports::{PyrusSync, TimepadImport};
use serde::Deserialize;
use shared::domain::{
    timepad::{self, EventSummary, OrderView},
    Page,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::CurrentUser,
    http::{enqueue_for, page, Accepted, ApiError, AppQuery},
    routes::directory::WRITERS,
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(import_timepad))
        .routes(routes!(import_pyrus))
        .routes(routes!(events))
        .routes(routes!(orders))
}

/// Most events named in one request.
pub const MAX_EVENT_IDS: usize = 100;

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimepadRequest {
    /// Only these Timepad events (default: every event of the organisation).
    #[serde(default)]
    #[schema(min_items = 1, max_items = 100, value_type = Option<Vec<PositiveId>>)]
    event_ids: Option<Vec<i64>>,
}

/// A positive Timepad id.
struct PositiveId;

impl utoipa::PartialSchema for PositiveId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(1.0))
            .into()
    }
}

impl utoipa::ToSchema for PositiveId {}

/// Imports the organisation's Timepad events and orders (a job; cron does the same every 30
/// minutes).
#[utoipa::path(
    post,
    path = "/api/imports/timepad",
    tag = "imports",
    request_body = Option<TimepadRequest>,
    responses((status = 202, description = "queued (or the import already queued or running)", body = Accepted), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn import_timepad(
    State(app): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    user.require(WRITERS)?;
    // The body is optional: none, `null` or `{}` imports every event.
    let req: TimepadRequest =
        if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
            TimepadRequest::default()
        } else {
            crate::http::extract::read_json(&body)?
        };
    let mut ids = req.event_ids;
    if let Some(ids) = ids.as_mut() {
        // Counted as sent (the schema's maxItems), then de-duplicated.
        let sent = ids.len();
        ids.sort_unstable();
        ids.dedup();
        if sent == 0 || sent > MAX_EVENT_IDS {
            return Err(ApiError::field(
                "event_ids",
                format!("1 to {MAX_EVENT_IDS} event ids, or absent for all"),
            ));
        }
        if ids.iter().any(|id| *id <= 0) {
            return Err(ApiError::field("event_ids", "positive Timepad event ids"));
        }
    }
    let job = TimepadImport {
        event_ids: ids,
        recent_days: None,
    };
    let enqueued = enqueue_for(&app, &user, &headers, &job).await?;
    tracing::info!(job.id = %enqueued.job_id, deduplicated = enqueued.deduplicated, "timepad import requested");
    Ok(Accepted::for_job(&enqueued))
}

/// Syncs the Pyrus form's tasks into rental applications (a job; cron does the same hourly).
#[utoipa::path(
    post,
    path = "/api/imports/pyrus",
    tag = "imports",
    responses((status = 202, description = "queued (or the sync already queued or running)", body = Accepted), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn import_pyrus(
    State(app): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    user.require(WRITERS)?;
    let enqueued = enqueue_for(&app, &user, &headers, &PyrusSync {}).await?;
    tracing::info!(job.id = %enqueued.job_id, deduplicated = enqueued.deduplicated, "pyrus sync requested");
    Ok(Accepted::for_job(&enqueued))
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Imported Timepad events, latest first, with their order and participant counts.
#[utoipa::path(
    get,
    path = "/api/timepad/events",
    tag = "imports",
    params(("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::http::Paged<EventSummary>), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn events(
    State(app): State<AppState>,
    user: CurrentUser,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<Page<EventSummary>>, ApiError> {
    user.require(WRITERS)?;
    let page = page(q.limit, q.offset)?;
    Ok(Json(timepad::events(&app.db, page).await?))
}

/// The orders of an imported event: status, buyer, the client they were matched to (or a
/// conflict waiting for a person).
#[utoipa::path(
    get,
    path = "/api/timepad/events/{id}/orders",
    tag = "imports",
    params(("id" = i64, Path, description = "Timepad event id"), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::http::Paged<OrderView>), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, event.id = id))]
async fn orders(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<i64>,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<Page<OrderView>>, ApiError> {
    user.require(WRITERS)?;
    let page = page(q.limit, q.offset)?;
    Ok(Json(timepad::orders(&app.db, id, page).await?))
}
