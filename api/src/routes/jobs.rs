//! Job status for browsers: one job, a user's jobs, cancel, a live SSE stream and the
//! artifact download. Reads only our ledger (`job_runs`), never the engine's tables.
use crate::http::AppPath;
use std::convert::Infallible;

use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    Json,
};
use futures::Stream;
use jobs::ledger::{self, JobRun, ListFilter};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shared::domain::{FieldErrors, Page};

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::CurrentUser,
    http::{page, status_url, ApiError, AppQuery},
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(cancel))
        .routes(routes!(events))
        .routes(routes!(artifact))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Progress {
    pub percent: i16,
    pub message: Option<String>,
}

/// The status JSON of a job.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobStatus {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub progress: Progress,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub requested_by: Option<uuid::Uuid>,
    pub cancel_requested: bool,
    pub next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub status_url: String,
    /// The Server-Sent Events stream, with a signature (`sig`, 10 minutes) that stands in for
    /// the header an `EventSource` cannot send.
    pub events_url: String,
    /// The job's file (null without one), signed the same way for a plain download link.
    pub artifact_url: Option<String>,
}

impl JobStatus {
    /// The status of `r` as `user` sees it, its links signed for that user.
    pub fn of(r: JobRun, app: &AppState, user: &CurrentUser) -> Result<Self, ApiError> {
        let sig = app.tokens.sign_link(&r.id, user)?;
        Ok(Self {
            status_url: status_url(&r.id),
            events_url: format!("/api/jobs/{}/events?sig={sig}", r.id),
            artifact_url: r
                .has_artifact
                .then(|| format!("/api/jobs/{}/artifact?sig={sig}", r.id)),
            progress: Progress {
                percent: r.progress_percent,
                message: r.progress_message,
            },
            id: r.id,
            kind: r.kind,
            state: r.state,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            result: r.result,
            error: r.error,
            requested_by: r.requested_by,
            cancel_requested: r.cancel_requested,
            next_attempt_at: r.run_after,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        })
    }
}

/// `?sig=`: a signed job link (see `JobStatus::events_url`).
#[derive(Deserialize)]
struct LinkQuery {
    sig: Option<String>,
}

/// Who reads a job's events or file: the bearer token's user, else the user a valid signed
/// link for exactly this job was made for (401 otherwise: expired, forged, another job's).
async fn link_viewer(
    app: &AppState,
    bearer: Result<CurrentUser, ApiError>,
    sig: Option<&str>,
    id: &str,
) -> Result<CurrentUser, ApiError> {
    // A link is a JWT (base64url parts and dots): anything else is a malformed parameter,
    // whoever sends it (as the document's pattern says).
    let jwt_shaped = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    };
    if sig.is_some_and(|s| !jwt_shaped(s)) {
        return Err(ApiError::field("sig", "a signed link (base64url and dots)"));
    }
    if let Ok(user) = bearer {
        return Ok(user);
    }
    let Some(sig) = sig else {
        return Err(ApiError::Unauthorized);
    };
    let sig = Some(sig);
    let id = parse_id(id)?;
    let (user, version) = sig
        .and_then(|s| app.tokens.verify_link(s, &id))
        .ok_or(ApiError::Unauthorized)?;
    CurrentUser::active(app, user, version).await
}

/// Job ids are ULIDs; anything else is a 422 naming `id`.
pub(crate) fn parse_id(id: &str) -> Result<String, ApiError> {
    ulid::Ulid::from_string(id)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::field("id", "expected a job id (26-character ULID)"))
}

async fn load(app: &AppState, user: &CurrentUser, id: &str) -> Result<JobRun, ApiError> {
    let id = parse_id(id)?;
    ledger::get(&app.db, &id, user.job_viewer())
        .await?
        .ok_or(ApiError::NotFound)
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = JobStatus), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, job.id = %id))]
async fn show(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<String>,
) -> Result<Json<JobStatus>, ApiError> {
    let run = load(&app, &user, &id).await?;
    Ok(Json(JobStatus::of(run, &app, &user)?))
}

/// A job's state as the `state` query parameters take it (`ledger::STATES`).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum JobStateParam {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

#[derive(Deserialize)]
struct ListQuery {
    kind: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/jobs",
    tag = "jobs",
    params(("kind" = Option<String>, Query), ("state" = inline(Option<JobStateParam>), Query), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::http::Paged<JobStatus>), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn list(
    State(app): State<AppState>,
    user: CurrentUser,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<Json<Page<JobStatus>>, ApiError> {
    let mut fields = FieldErrors::new();
    let page = match page(q.limit, q.offset) {
        Ok(p) => Some(p),
        Err(ApiError::Validation(f)) => {
            fields.extend(f);
            None
        }
        Err(e) => return Err(e),
    };
    if let Some(state) = &q.state {
        if !ledger::STATES.contains(&state.as_str()) {
            fields.insert(
                "state".into(),
                format!("one of {}", ledger::STATES.join(", ")),
            );
        }
    }
    let Some(page) = page.filter(|_| fields.is_empty()) else {
        return Err(ApiError::Validation(fields));
    };
    // Everyone lists their own jobs; admins reach others' jobs by id.
    let filter = ListFilter {
        kind: q.kind,
        state: q.state,
        requested_by: None,
    };
    let runs = ledger::list(&app.db, Some(user.id), &filter, page).await?;
    let items = runs
        .items
        .into_iter()
        .map(|r| JobStatus::of(r, &app, &user))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(Page {
        items,
        total: runs.total,
    }))
}

#[utoipa::path(
    post,
    path = "/api/jobs/{id}/cancel",
    tag = "jobs",
    params(("id" = String, Path)),
    responses((status = 202, description = "cancel requested", body = JobStatus), (status = 200, description = "already finished: nothing to cancel", body = JobStatus), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, job.id = %id))]
async fn cancel(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<String>,
) -> Result<(StatusCode, Json<JobStatus>), ApiError> {
    let id = parse_id(&id)?;
    let state = ledger::cancel(&app.db, &id, user.job_viewer())
        .await?
        .ok_or(ApiError::NotFound)?;
    tracing::info!(%state, "cancel requested");
    let run = ledger::get(&app.db, &id, user.job_viewer())
        .await?
        .ok_or(ApiError::NotFound)?;
    let status = if run.is_terminal() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(JobStatus::of(run, &app, &user)?)))
}

/// Server-Sent Events: each recorded change of the job (state, attempts, progress) in order,
/// as `event: job` with the status JSON; the stream ends after a terminal state, after
/// `SSE_MAX_LIFE_SECS` (the browser reconnects with `Last-Event-ID` and resumes) and at
/// shutdown. A user holds at most `SSE_PER_USER` streams per api process (429 beyond). New
/// events are found by the process's one hub ([`crate::events`]), not a poll per stream.
#[utoipa::path(
    get,
    path = "/api/jobs/{id}/events",
    tag = "jobs",
    params(("id" = String, Path), ("sig" = Option<String>, Query, pattern = r"^[A-Za-z0-9_.-]*$", description = "the signed link of the status JSON's `events_url`, instead of the bearer header"), ("Last-Event-ID" = Option<String>, Header, description = "resume after this event id")),
    responses((status = 200, description = "text/event-stream of job status events until a terminal state"), (status = 401, description = "no or invalid bearer token or signed link", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody), (status = 429, description = "the user already holds the most streams allowed", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(job.id = %id))]
async fn events(
    State(app): State<AppState>,
    bearer: Result<CurrentUser, ApiError>,
    AppPath(id): AppPath<String>,
    AppQuery(link): AppQuery<LinkQuery>,
    headers: axum::http::HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let user = link_viewer(&app, bearer, link.sig.as_deref(), &id).await?;
    let run = load(&app, &user, &id).await?;
    let Some(subscription) = app.hub.subscribe(user.id, &run.id) else {
        tracing::warn!(user.id = %user.id, cap = app.settings.sse_per_user, "SSE: too many streams for this user");
        return Err(ApiError::TooManyRequests {
            retry_after_secs: 5,
        });
    };
    // A reconnecting EventSource sends the last id it saw: resume after it.
    // A reconnect resumes after the last id it saw; a new stream starts with the job's
    // current run (after the end of an earlier run an admin retried).
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map(|v| v.max(0));
    let after = match resume {
        Some(after) => after,
        None => ledger::current_run_start(&app.db, &run.id).await?,
    };
    struct Cursor {
        db: sqlx::PgPool,
        id: String,
        after: i64,
        pending: std::collections::VecDeque<ledger::JobEvent>,
        /// The last read filled a page: read on without waiting.
        more: bool,
        done: bool,
        first: bool,
        /// The job had ended when the stream opened: once its events are read, nothing more
        /// comes (a stream resumed after the last one ends at once).
        ended: bool,
        /// Woken by the hub; dropped with the stream, freeing the user's slot.
        subscription: crate::events::Subscription,
        until: tokio::time::Instant,
        stop: tokio_util::sync::CancellationToken,
    }
    let cursor = Cursor {
        db: app.db.clone(),
        id: run.id,
        after,
        pending: Default::default(),
        more: false,
        done: false,
        first: true,
        ended: matches!(run.state.as_str(), "succeeded" | "failed" | "cancelled"),
        subscription,
        until: tokio::time::Instant::now() + app.settings.sse_max_life,
        stop: app.shutdown.clone(),
    };
    let stream = futures::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(e) = c.pending.pop_front() {
                c.after = e.id;
                let terminal = matches!(e.state.as_str(), "succeeded" | "failed" | "cancelled");
                // The end, unless later events follow (an admin retried the job).
                if terminal && c.pending.is_empty() && !c.more {
                    c.done = true;
                }
                let data = json!({
                    "id": c.id, "state": e.state, "attempts": e.attempts,
                    "progress": {"percent": e.progress_percent, "message": e.progress_message},
                    "error": e.error, "at": e.at,
                });
                let event = Event::default()
                    .event("job")
                    .id(e.id.to_string())
                    .data(data.to_string());
                return Some((Ok(event), c));
            }
            if c.done || c.stop.is_cancelled() {
                return None;
            }
            if !c.first && !c.more {
                tokio::select! {
                    _ = c.subscription.wake.notified() => {}
                    _ = tokio::time::sleep(crate::events::FALLBACK) => {}
                    // The browser reconnects and resumes after the last id it got.
                    _ = tokio::time::sleep_until(c.until) => return None,
                    _ = c.stop.cancelled() => return None,
                }
            }
            c.first = false;
            match ledger::events_after(&c.db, &c.id, c.after).await {
                Ok(events) if events.is_empty() && c.ended => return None,
                Ok(events) => {
                    c.more = events.len() as i64 >= ledger::EVENTS_PAGE;
                    c.pending.extend(events);
                }
                Err(error) => {
                    tracing::warn!(%error, job.id = %c.id, "SSE: cannot read job events; closing stream");
                    return None;
                }
            }
        }
    });
    // A comment every 15 s keeps proxies from closing an idle stream.
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}/artifact",
    tag = "jobs",
    params(("id" = String, Path), ("sig" = Option<String>, Query, pattern = r"^[A-Za-z0-9_.-]*$", description = "the signed link of the status JSON's `artifact_url`, instead of the bearer header")),
    responses((status = 200, description = "the job's file"), (status = 401, description = "no or invalid bearer token or signed link", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(job.id = %id))]
async fn artifact(
    State(app): State<AppState>,
    bearer: Result<CurrentUser, ApiError>,
    AppPath(id): AppPath<String>,
    AppQuery(link): AppQuery<LinkQuery>,
) -> Result<Response, ApiError> {
    let user = link_viewer(&app, bearer, link.sig.as_deref(), &id).await?;
    let id = parse_id(&id)?;
    let file = ledger::artifact(&app.db, &id, user.job_viewer())
        .await?
        .ok_or(ApiError::NotFound)?;
    let disposition = format!(
        "attachment; filename=\"{}\"; filename*=UTF-8''{}",
        file.file_name
            .replace(['"', '\\'], "_")
            .chars()
            .filter(char::is_ascii)
            .collect::<String>(),
        percent_encode(&file.file_name)
    );
    let mut response = file.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&file.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// RFC 5987 encoding for the UTF-8 file name (Cyrillic names of timesheets).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
