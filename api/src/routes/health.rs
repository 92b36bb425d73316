//! Liveness, readiness (database reachable within a timeout) and Prometheus metrics.
use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use serde_json::json;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/health/liveness",
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .route("/api/health/readiness", get(readiness))
        .route("/metrics", get(metrics))
}

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

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    if let Err(error) = jobs::engine::record_queue_gauges(&app.db).await {
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
