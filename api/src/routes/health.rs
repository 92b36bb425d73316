//! Liveness, readiness (database reachable within a timeout) and Prometheus metrics.
use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{http::ApiError, state::AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(liveness))
        .routes(routes!(readiness))
        .routes(routes!(metrics))
}

#[utoipa::path(
    get,
    path = "/api/health/liveness",
    tag = "health",
    responses((status = 200, description = "process up")),
)]
async fn liveness() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(
    get,
    path = "/api/health/readiness",
    tag = "health",
    responses((status = 200, description = "database reachable"), (status = 503, description = "database unavailable", body = crate::http::error::ErrorBody)),
)]
async fn readiness(State(app): State<AppState>) -> impl IntoResponse {
    if shared::db::ping(&app.db, app.settings.readiness_timeout).await {
        (StatusCode::OK, Json(json!({"status": "ready"}))).into_response()
    } else {
        tracing::warn!("readiness: database unreachable");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "5")],
            Json(json!({"status": "unavailable", "database": false})),
        )
            .into_response()
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "Prometheus metrics"), (status = 401, description = "METRICS_TOKEN is set and the bearer token is not it", body = crate::http::error::ErrorBody), (status = 404, description = "METRICS_TOKEN is not set: not served on this address (see METRICS_ADDR)", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = &app.settings.metrics_token else {
        return ApiError::NotFound.into_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        return ApiError::Unauthorized.into_response();
    }
    render(&app).await
}

/// The router of the internal metrics address: `/metrics` without a token, and health.
pub fn internal(app: AppState) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|State(app): State<AppState>| async move { render(&app).await }),
        )
        .route("/api/health/liveness", axum::routing::get(liveness))
        .fallback(|| async { ApiError::NotFound })
        .with_state(app)
}

/// How long the queue gauges read from the database are reused: scrapes from several
/// Prometheus servers (or a refreshing person) cost one query per this period.
const GAUGES_FRESH_FOR: Duration = Duration::from_secs(5);

async fn render(app: &AppState) -> Response {
    static READ_AT: Mutex<Option<Instant>> = Mutex::new(None);
    let stale = {
        let mut at = READ_AT.lock().unwrap_or_else(|e| e.into_inner());
        let stale = at.is_none_or(|t| t.elapsed() >= GAUGES_FRESH_FOR);
        if stale {
            // Claimed before reading: concurrent scrapes do not all query.
            *at = Some(Instant::now());
        }
        stale
    };
    if stale {
        if let Err(error) = jobs::ledger::record_queue_gauges(&app.db).await {
            tracing::warn!(%error, "cannot read queue gauges");
        }
    }
    metrics::gauge!("sse_streams_open").set(app.hub.open_streams() as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared::metrics::handle().render(),
    )
        .into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
