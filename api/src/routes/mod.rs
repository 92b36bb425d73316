//! The HTTP surface: every route, and the layers around them (request id, tracing, body limit,
//! rate limits, JSON 404).
use axum::{
    extract::DefaultBodyLimit,
    http::{HeaderName, Request},
    middleware, Router,
};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::TraceLayer,
};

use crate::{error::ApiError, state::AppState};

pub mod attendance;
pub mod auth;
pub mod clients;
pub mod directory;
pub mod exports;
pub mod groups;
pub mod health;
pub mod jobs;
pub mod lessons;
pub mod rentals;
pub mod schedules;
pub mod subscriptions;
pub mod users;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.body_limit_bytes;
    let (routes, doc) = documented();
    let doc = std::sync::Arc::new(doc);
    routes
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::rate_limit::limit,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let request_id = request
                    .extensions()
                    .get::<RequestId>()
                    .and_then(|id| id.header_value().to_str().ok())
                    .unwrap_or("");
                tracing::error_span!(
                    "request",
                    request_id = %request_id,
                    method = %request.method(),
                    path = %request.uri().path(),
                )
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// The request id of the current request (set by the layer above), for the job ledger.
pub fn request_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// For PATCH bodies: distinguishes an absent key (`None`) from an explicit `null`
/// (`Some(None)`, clear the field). Use with `#[serde(default, deserialize_with = "nullable")]`.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(d).map(Some)
}

/// The one statement behind a list endpoint: `matched` selects the rows (its own parameters
/// come first), `columns` are the output columns over the row alias `alias`, ordered by `order`;
/// limit and offset bind as parameters `$limit_param` and the next. It returns one row —
/// `(total, items)` — even for a page past the end.
pub fn paged_sql(
    matched: &str,
    alias: &str,
    columns: &str,
    order: &str,
    limit_param: usize,
) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!(
        "with matched as ({matched})
         select (select count(*) from matched),
                coalesce((select jsonb_agg(p) from (
                    select {columns} from matched {alias}
                    order by {order} limit ${limit_param} offset ${offset}) p), '[]')",
        offset = limit_param + 1
    ))
}

/// [`paged_sql`] for the hot lists (clients, lessons): the same one statement, but the page comes
/// back as plain rows decoded by sqlx — no JSON built in PostgreSQL and parsed again here. Every
/// row carries `total`; an empty page is one row whose other columns are NULL. Decode with
/// [`page_rows`].
pub fn page_rows_sql(
    matched: &str,
    cte: Cte,
    alias: &str,
    columns: &str,
    order: &str,
    limit_param: usize,
) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!(
        "with matched as {cte} ({matched})
         select t.total, p.* from (select count(*) as total from matched) t
         left join lateral (
             select {columns} from matched {alias}
             order by {order} limit ${limit_param} offset ${offset}) p on true",
        offset = limit_param + 1,
        cte = match cte {
            Cte::Inline => "not materialized",
            Cte::Materialized => "materialized",
        }
    ))
}

/// How [`page_rows_sql`] evaluates its `matched` set.
pub enum Cte {
    /// Inlined into the count and the page: the count can be an index-only scan and the page an
    /// ordered index scan that stops at `limit`. For sets an index walks in page order.
    Inline,
    /// Computed once (e.g. by a bitmap scan), then counted and sorted: for small matched sets
    /// whose order no index gives — else the planner may walk the whole order index filtering.
    Materialized,
}

/// The total and the items of a [`page_rows_sql`]-shaped answer (`total` on every row, `id`
/// NULL on the row of an empty page).
pub fn page_rows<T>(rows: &[sqlx::postgres::PgRow]) -> Result<(i64, Vec<T>), sqlx::Error>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    use sqlx::Row;
    let total = match rows.first() {
        Some(row) => row.try_get("total")?,
        None => 0,
    };
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        if row.try_get::<Option<uuid::Uuid>, _>("id")?.is_some() {
            items.push(T::from_row(row)?);
        }
    }
    Ok((total, items))
}

/// `{items, total}` from a [`paged_sql`] row.
pub fn paged((total, items): (i64, serde_json::Value)) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"items": items, "total": total}))
}

/// Documentation schema of every list answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Paged<T> {
    items: Vec<T>,
    total: i64,
}

/// The OpenAPI 3.1 document: every route registered through `OpenApiRouter` below appears in
/// it (the router and the document come from the same calls), with the bearer scheme and the
/// error shape.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "ARTSVAO CRM API", description = "Errors: `{\"error\": {code, message, fields?, clashes?}}`"),
    modifiers(&BearerAuth),
    components(schemas(crate::error::ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Every route, and the OpenAPI document describing them.
pub fn documented() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi;
    utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::routes())
        .merge(auth::routes())
        .merge(jobs::routes())
        .merge(users::routes())
        .merge(clients::routes())
        .merge(directory::routes())
        .merge(groups::routes())
        .merge(lessons::routes())
        .merge(attendance::routes())
        .merge(subscriptions::routes())
        .merge(rentals::routes())
        .merge(exports::routes())
        .merge(schedules::routes())
        .split_for_parts()
}

/// `{items, total}` with `limit` / `offset`, the shape of every list endpoint.
#[derive(Debug, serde::Deserialize)]
pub struct Page {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl Page {
    pub const MAX_LIMIT: i64 = 200;

    pub fn validate(&self) -> Result<(i64, i64), ApiError> {
        let limit = self.limit.unwrap_or(50);
        let offset = self.offset.unwrap_or(0);
        let mut fields = crate::error::FieldErrors::new();
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            fields.insert(
                "limit".into(),
                format!("must be between 1 and {}", Self::MAX_LIMIT),
            );
        }
        if offset < 0 {
            fields.insert("offset".into(), "must not be negative".into());
        }
        if fields.is_empty() {
            Ok((limit, offset))
        } else {
            Err(ApiError::Validation(fields))
        }
    }
}
