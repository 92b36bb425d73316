//! Operations for admins across every user: jobs (filter, retry one or all failed of a kind),
//! worker replicas, cron schedules and the queue overview the `/ops` page shows.
use crate::http::AppPath;
use std::time::Duration;

use axum::{extract::State, http::StatusCode, Json};
use jobs::{
    breaker::BreakerState,
    ledger::{self, ListFilter},
    ops::{self, CronSchedule, KindStats, RateKey, Retry, RunningJob, WorkerReplica},
};
use serde::{Deserialize, Serialize};
use shared::domain::{FieldErrors, Page};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    auth::{CurrentUser, Role},
    http::{page, ApiError, AppJson, AppQuery},
    routes::jobs::{parse_id, JobStatus},
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(retry_one))
        .routes(routes!(retry_kind))
        .routes(routes!(workers))
        .routes(routes!(cron))
        .routes(routes!(overview))
}

/// A replica whose heartbeat is older than this is shown as not alive (the runtime's default
/// `dead_after`).
pub const ALIVE_WITHIN: Duration = Duration::from_secs(30);
/// Most failed jobs one "retry all" request puts back (the rest: ask again).
pub const RETRY_BATCH: i64 = 1000;

#[derive(Deserialize)]
struct JobsQuery {
    state: Option<String>,
    kind: Option<String>,
    user_id: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Every user's jobs, newest first.
#[utoipa::path(
    get,
    path = "/api/admin/jobs",
    tag = "admin",
    params(("state" = inline(Option<super::jobs::JobStateParam>), Query), ("kind" = Option<String>, Query), ("user_id" = Option<Uuid>, Query, description = "who requested it"), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::http::Paged<JobStatus>), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "admins only", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn list_jobs(
    State(app): State<AppState>,
    user: CurrentUser,
    AppQuery(q): AppQuery<JobsQuery>,
) -> Result<Json<Page<JobStatus>>, ApiError> {
    user.require(&[Role::Admin])?;
    let mut fields = FieldErrors::new();
    let page = page(q.limit, q.offset).map_err(|e| {
        if let ApiError::Validation(f) = e {
            fields.extend(f);
        }
    });
    if let Some(state) = &q.state {
        if !ledger::STATES.contains(&state.as_str()) {
            fields.insert(
                "state".into(),
                format!("one of {}", ledger::STATES.join(", ")),
            );
        }
    }
    let requested_by = match q.user_id.as_deref().map(Uuid::parse_str) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            fields.insert("user_id".into(), "a user id (UUID)".into());
            None
        }
    };
    let (Ok(page), true) = (page, fields.is_empty()) else {
        return Err(ApiError::Validation(fields));
    };
    let filter = ListFilter {
        kind: q.kind,
        state: q.state,
        requested_by,
    };
    let runs = ledger::list(&app.db, None, &filter, page).await?;
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

/// Puts one failed job back in the queue: a new attempt of the same job (its attempts and
/// `manual_retries` count it). The shared part of the JSON route and the `/ops` form.
pub async fn retry_job(app: &AppState, admin: &CurrentUser, id: &str) -> Result<(), ApiError> {
    admin.require(&[Role::Admin])?;
    let id = parse_id(id)?;
    match ops::retry(&app.db, &id).await? {
        Retry::Queued => {
            tracing::info!(job.id = %id, admin.id = %admin.id, "failed job retried by an admin");
            Ok(())
        }
        Retry::NotFound => Err(ApiError::NotFound),
        Retry::NotFailed(state) => Err(ApiError::Conflict(format!(
            "only failed jobs are retried; this one is {state}"
        ))),
        Retry::Duplicate(other) => Err(ApiError::Conflict(format!(
            "the same work is already queued or running (job: {other})"
        ))),
        Retry::Gone => Err(ApiError::Conflict(
            "the job's queue entry is missing (pruned) or not failed; request the work again"
                .into(),
        )),
    }
}

#[utoipa::path(
    post,
    path = "/api/admin/jobs/{id}/retry",
    tag = "admin",
    params(("id" = String, Path)),
    responses((status = 202, description = "queued again", body = JobStatus), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "admins only", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody), (status = 409, description = "not failed, pruned, or the same work is already queued", body = crate::http::error::ErrorBody), (status = 422, description = "invalid id", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, job.id = %id))]
async fn retry_one(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<String>,
) -> Result<(StatusCode, Json<JobStatus>), ApiError> {
    retry_job(&app, &user, &id).await?;
    let id = parse_id(&id)?;
    let run = ledger::get(&app.db, &id, None)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((StatusCode::ACCEPTED, Json(JobStatus::of(run, &app, &user)?)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryKind {
    /// The job kind, e.g. `timesheet_export`.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000]*[^\u0000\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    kind: String,
    /// Only `failed`.
    #[schema(value_type = OnlyFailed)]
    state: String,
}

/// The one state a batch retry takes.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum OnlyFailed {
    Failed,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RetriedKind {
    pub retried: i64,
    /// Failed jobs of the kind still failed (beyond the batch, held by another transaction,
    /// or whose work is already queued again under the same dedup key).
    pub still_failed: i64,
}

/// Retries the failed jobs of a kind (up to 1,000 per request). Shared with `/ops`.
pub async fn retry_all(
    app: &AppState,
    admin: &CurrentUser,
    kind: &str,
) -> Result<RetriedKind, ApiError> {
    admin.require(&[Role::Admin])?;
    // Counted as sent (the schema's maxLength), used trimmed.
    if kind.trim().is_empty() || kind.chars().count() > 100 {
        return Err(ApiError::field("kind", "a job kind"));
    }
    let kind = kind.trim();
    let Some((retried, still_failed)) = ops::retry_kind(&app.db, kind, RETRY_BATCH).await? else {
        return Err(ApiError::Conflict(
            "some of this work was queued again at the same moment; nothing was retried, ask again"
                .into(),
        ));
    };
    tracing::info!(kind, retried, still_failed, admin.id = %admin.id, "failed jobs of a kind retried by an admin");
    Ok(RetriedKind {
        retried,
        still_failed,
    })
}

#[utoipa::path(
    post,
    path = "/api/admin/jobs/retry",
    tag = "admin",
    request_body = RetryKind,
    responses((status = 202, description = "queued again", body = RetriedKind), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "admins only", body = crate::http::error::ErrorBody), (status = 409, description = "the same work was queued again at the same moment; ask again", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn retry_kind(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(body): AppJson<RetryKind>,
) -> Result<(StatusCode, Json<RetriedKind>), ApiError> {
    user.require(&[Role::Admin])?;
    if body.state != "failed" {
        return Err(ApiError::field("state", "only \"failed\" jobs are retried"));
    }
    let done = retry_all(&app, &user, &body.kind).await?;
    Ok((StatusCode::ACCEPTED, Json(done)))
}

#[utoipa::path(
    get,
    path = "/api/admin/workers",
    tag = "admin",
    responses((status = 200, description = "worker replicas seen in the last day", body = Vec<WorkerReplica>), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "admins only", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn workers(
    State(app): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<WorkerReplica>>, ApiError> {
    user.require(&[Role::Admin])?;
    Ok(Json(ops::workers(&app.db, ALIVE_WITHIN).await?))
}

#[utoipa::path(
    get,
    path = "/api/admin/cron",
    tag = "admin",
    responses((status = 200, description = "cron schedules with their last and next tick", body = Vec<CronSchedule>), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "admins only", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn cron(
    State(app): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<CronSchedule>>, ApiError> {
    user.require(&[Role::Admin])?;
    Ok(Json(ops::cron(&app.db).await?))
}

/// Everything the `/ops` page shows, in one read.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Overview {
    pub kinds: Vec<KindStats>,
    pub running: Vec<RunningJob>,
    pub workers: Vec<WorkerReplica>,
    pub cron: Vec<CronSchedule>,
    pub rate_limits: Vec<RateKey>,
    #[schema(value_type = Vec<Object>)]
    pub breakers: Vec<BreakerState>,
    /// The latest failed jobs of every user, newest first (at most 50).
    pub failed: Vec<JobStatus>,
}

pub async fn read_overview(app: &AppState, admin: &CurrentUser) -> Result<Overview, ApiError> {
    admin.require(&[Role::Admin])?;
    let failed = ledger::list(
        &app.db,
        None,
        &ListFilter {
            state: Some("failed".into()),
            ..Default::default()
        },
        shared::domain::page::PageRequest::default(),
    )
    .await?
    .items
    .into_iter()
    .map(|r| JobStatus::of(r, app, admin))
    .collect::<Result<Vec<_>, _>>()?;
    Ok(Overview {
        kinds: ops::kind_stats(&app.db).await?,
        running: ops::running(&app.db, 100).await?,
        workers: ops::workers(&app.db, ALIVE_WITHIN).await?,
        cron: ops::cron(&app.db).await?,
        rate_limits: ops::rate_keys(&app.db, 100).await?,
        breakers: jobs::breaker::states(&app.db).await?,
        failed,
    })
}

#[utoipa::path(
    get,
    path = "/api/admin/overview",
    tag = "admin",
    responses((status = 200, description = "per-kind queues, running jobs, workers, cron, rate-limit keys, breakers, failed jobs", body = Overview), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "admins only", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn overview(
    State(app): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Overview>, ApiError> {
    Ok(Json(read_overview(&app, &user).await?))
}
