//! Liveness, readiness (database reachable within a timeout) and Prometheus metrics.
use axum::{extract::State, http::StatusCode, response::IntoResponse, Json};
use serde_json::json;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::state::AppState;

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
    responses((status = 200, description = "Prometheus metrics")),
)]
async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    if let Err(error) = jobs::ledger::record_queue_gauges(&app.db).await {
        tracing::warn!(%error, "cannot read queue gauges");
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        shared::metrics::handle().render(),
    )
}
