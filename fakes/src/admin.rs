//! Admin routes under `/_fakes`: read the request log, register faults, reset, and poke service
//! state (blocked Telegram chats, expired Pyrus tokens). Not logged and never faulted.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use crate::faults::FaultSpec;
use crate::{App, Service};

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/_fakes/health",
            get(|| async { Json(json!({"ok": true})) }),
        )
        .route("/_fakes/requests", get(requests))
        .route(
            "/_fakes/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/_fakes/reset", post(reset))
        .route("/_fakes/telegram/blocked", post(block_chat))
        .route("/_fakes/pyrus/expire-tokens", post(expire_tokens))
}

/// Admin errors in the project's shape: `{"error": {"code", "message", "fields"?}}`.
struct AdminError {
    message: String,
    fields: BTreeMap<&'static str, String>,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": "validation_failed", "message": self.message});
        if !self.fields.is_empty() {
            error["fields"] = json!(self.fields);
        }
        (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
    }
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(|e| AdminError {
        message: format!("invalid JSON body: {e}"),
        fields: BTreeMap::new(),
    })
}

#[derive(Deserialize)]
struct RequestsQuery {
    service: Option<Service>,
    method: Option<String>,
}

async fn requests(
    State(app): State<Arc<App>>,
    query: Result<Query<RequestsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AdminError> {
    let Query(query) = query.map_err(|e| AdminError {
        message: e.body_text(),
        fields: BTreeMap::from([(
            "service",
            "expected timepad|pyrus|novofon|telegram|smtp".to_string(),
        )]),
    })?;
    let items: Vec<_> = app
        .log
        .entries(query.service)
        .into_iter()
        .filter(|e| query.method.as_deref().is_none_or(|m| e.method == m))
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

async fn list_faults(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(json!({ "items": app.faults.list() }))
}

async fn add_fault(State(app): State<Arc<App>>, body: Bytes) -> Result<Response, AdminError> {
    let spec: FaultSpec = parse(&body)?;
    let problems = spec.problems();
    if !problems.is_empty() {
        return Err(AdminError {
            message: "the fault is not consistent".to_string(),
            fields: problems.into_iter().collect(),
        });
    }
    let fault = app.faults.add(spec);
    tracing::info!(
        id = fault.id,
        service = fault.spec.service.as_str(),
        fault = fault.spec.fault.name(),
        "fault added"
    );
    Ok((StatusCode::CREATED, Json(fault)).into_response())
}

async fn clear_faults(State(app): State<Arc<App>>) -> StatusCode {
    app.faults.clear();
    StatusCode::NO_CONTENT
}

async fn reset(State(app): State<Arc<App>>) -> StatusCode {
    app.reset();
    tracing::info!("faults, request log and blocked chats reset");
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct BlockChat {
    chat_id: i64,
    /// `false` unblocks.
    #[serde(default = "yes")]
    blocked: bool,
}

fn yes() -> bool {
    true
}

async fn block_chat(State(app): State<Arc<App>>, body: Bytes) -> Result<StatusCode, AdminError> {
    let req: BlockChat = parse(&body)?;
    app.telegram.set_blocked(req.chat_id, req.blocked);
    Ok(StatusCode::NO_CONTENT)
}

async fn expire_tokens(State(app): State<Arc<App>>) -> StatusCode {
    app.pyrus.expire_tokens();
    StatusCode::NO_CONTENT
}
