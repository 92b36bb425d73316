//! Click-to-call: `POST /api/calls` stores the request and queues the `call` job in one
//! transaction and answers at once (the phone rings from the worker, never from the request);
//! `GET /api/calls` and `/api/calls/{id}` show what became of calls. Managers and admins ring
//! any client, teachers the clients of their groups (and see their own calls).
use crate::http::AppPath;
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    Json,
};
use jobs::kinds::calls::Call as CallJob;
use serde::{Deserialize, Serialize};
use shared::domain::{
    calls::{self, Call, CallFilter, CallState},
    Page,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    auth::{CurrentUser, Role},
    http::{page, requester, status_url, ApiError, AppJson, AppQuery},
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request, list))
        .routes(routes!(show))
}

const CALLERS: &[Role] = &[Role::Admin, Role::Manager, Role::Teacher];

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallRequest {
    client_id: Uuid,
    /// Another of the client's numbers (their guardian's); default: the client's phone.
    #[serde(default)]
    phone: Option<String>,
}

/// `202 {job_id, status_url, call_id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CallAccepted {
    pub job_id: String,
    pub status_url: String,
    pub call_id: Uuid,
}

/// Rings a client from the caller's extension (a job: the answer comes at once; the call's
/// state is at `/api/calls/{call_id}`, the job's at `status_url`). Never twice for one click:
/// a request with the `Idempotency-Key` of an earlier one, or for the same number within 30 s
/// of a call that did not fail, answers that call instead of ringing again.
#[utoipa::path(
    post,
    path = "/api/calls",
    tag = "calls",
    request_body = CallRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "the same key again answers the same call (1–200 characters)")),
    responses((status = 202, description = "queued (or the call this request repeats)", body = CallAccepted), (status = 400, description = "malformed JSON", body = crate::http::error::ErrorBody), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this, or not for this client", body = crate::http::error::ErrorBody), (status = 404, description = "no such client", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named (`extension` when the caller has none)", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn request(
    State(app): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    AppJson(req): AppJson<CallRequest>,
) -> Result<(StatusCode, Json<CallAccepted>), ApiError> {
    user.require(CALLERS)?;
    let key = idempotency_key(&headers)?;
    let mut tx = app.db.begin().await?;
    let plan = calls::plan(
        &mut tx,
        user.id,
        user.role == Role::Teacher,
        req.client_id,
        req.phone.as_deref(),
    )
    .await?;
    if let Some((call_id, job_id)) = calls::repeated(&mut tx, &plan, key.as_deref()).await? {
        tx.commit().await?;
        tracing::info!(call.id = %call_id, job.id = %job_id, "call request repeated: the earlier call answers");
        return Ok((
            StatusCode::ACCEPTED,
            Json(CallAccepted {
                status_url: status_url(&job_id),
                job_id,
                call_id,
            }),
        ));
    }
    let call_id = Uuid::new_v4();
    let enqueued =
        jobs::enqueue(&mut tx, &requester(&user, &headers), &CallJob { call_id }).await?;
    calls::insert(&mut tx, call_id, &plan, &enqueued.job_id, key.as_deref()).await?;
    tx.commit().await?;
    jobs::committed(std::slice::from_ref(&enqueued));
    tracing::info!(call.id = %call_id, job.id = %enqueued.job_id, client.id = %req.client_id, "call requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(CallAccepted {
            status_url: status_url(&enqueued.job_id),
            job_id: enqueued.job_id,
            call_id,
        }),
    ))
}

/// The `Idempotency-Key` header, if any: 1–200 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(v) if (1..=200).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(v.to_string()))
        }
        _ => Err(ApiError::field(
            "Idempotency-Key",
            "1 to 200 visible ASCII characters",
        )),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    client_id: Option<Uuid>,
    user_id: Option<Uuid>,
    state: Option<CallState>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Call requests, newest first (a client card's call history: `?client_id=`). Teachers see
/// their own calls.
#[utoipa::path(
    get,
    path = "/api/calls",
    tag = "calls",
    params(("client_id" = Option<Uuid>, Query), ("user_id" = Option<Uuid>, Query), ("state" = Option<CallState>, Query), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::http::Paged<Call>), (status = 400, description = "a query parameter that does not parse", body = crate::http::error::ErrorBody), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn list(
    State(app): State<AppState>,
    user: CurrentUser,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<Json<Page<Call>>, ApiError> {
    user.require(CALLERS)?;
    let page = page(q.limit, q.offset)?;
    let user_id = if user.role == Role::Teacher {
        Some(user.id)
    } else {
        q.user_id
    };
    let filter = CallFilter {
        client_id: q.client_id,
        user_id,
        state: q.state,
    };
    Ok(Json(calls::list(&app.db, &filter, page).await?))
}

/// One call request: its state (`unknown` says the phone may have rung), Novofon's call id,
/// the reason it failed.
#[utoipa::path(
    get,
    path = "/api/calls/{id}",
    tag = "calls",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = Call), (status = 400, description = "a path parameter that does not parse", body = crate::http::error::ErrorBody), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "not found (or another teacher's)", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, call.id = %id))]
async fn show(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<Call>, ApiError> {
    user.require(CALLERS)?;
    let call = calls::get(&app.db, id).await?;
    if user.role == Role::Teacher && call.user_id != user.id {
        return Err(ApiError::NotFound);
    }
    Ok(Json(call))
}
