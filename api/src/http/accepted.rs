//! What endpoints that enqueue answer: `202 {job_id, status_url}`, and the helper that
//! enqueues a job for the caller.
use axum::{
    http::{HeaderMap, StatusCode},
    Json,
};
use serde::Serialize;

use super::{error::ApiError, request_id};
use crate::{auth::CurrentUser, state::AppState};

/// `202 {job_id, status_url}`: the answer of every endpoint that enqueues.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub job_id: String,
    pub status_url: String,
}

impl Accepted {
    pub fn for_job(job: &jobs::Enqueued) -> (StatusCode, Json<Self>) {
        (
            StatusCode::ACCEPTED,
            Json(Self {
                job_id: job.job_id.clone(),
                status_url: status_url(&job.job_id),
            }),
        )
    }
}

pub fn status_url(id: &str) -> String {
    format!("/api/jobs/{id}")
}

/// Who asked: the caller and the request's id, for the ledger.
pub fn requester(user: &CurrentUser, headers: &HeaderMap) -> jobs::Requester {
    jobs::Requester {
        user_id: Some(user.id),
        request_id: request_id(headers),
    }
}

/// Enqueues a job that needs no rows of its own, for the caller (owner) with the request's id,
/// in a transaction of its own (ledger and engine rows together). Endpoints that also write
/// rows call `jobs::enqueue` inside their own transaction instead.
pub async fn enqueue_for<J: jobs::Job>(
    app: &AppState,
    user: &CurrentUser,
    headers: &HeaderMap,
    job: &J,
) -> Result<jobs::Enqueued, ApiError> {
    Ok(jobs::enqueue_alone(&app.db, &requester(user, headers), job).await?)
}
