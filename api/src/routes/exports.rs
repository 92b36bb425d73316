//! Exports as jobs: the request validates and enqueues, a worker writes the file, the browser
//! polls `status_url` and downloads `GET /api/jobs/{id}/artifact`.
use axum::{extract::State, http::HeaderMap, http::StatusCode, Json};
use jobs::kinds::exports::TimesheetExport;
use serde::Deserialize;
use shared::time::Month;
use uuid::Uuid;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{CurrentUser, Role},
    http::{enqueue_for, Accepted, ApiError, AppJson, FieldErrors},
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(timesheets))
}

/// How far back a timesheet may be exported, in months (older months are archived paper).
pub const MONTHS_BACK: i32 = 24;
/// How far ahead (next month's planned lessons).
pub const MONTHS_AHEAD: i32 = 1;
/// Most groups in one request.
pub const MAX_GROUPS: usize = 1000;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimesheetRequest {
    /// `YYYY-MM`, at most 24 months back and 1 month ahead (Moscow calendar).
    #[schema(example = "2026-10", pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")]
    pub month: String,
    /// The groups; null or absent = every group (of the caller, for a teacher).
    #[serde(default)]
    #[schema(min_items = 1, max_items = 1000)]
    pub group_ids: Option<Vec<Uuid>>,
    /// Only groups taught by this teacher. Teachers may name only themselves.
    #[serde(default)]
    pub teacher_id: Option<Uuid>,
}

/// Checks a month string against the allowed window around `today`'s month.
pub fn check_month(raw: &str, today: chrono::NaiveDate) -> Result<Month, String> {
    let month = Month::parse(raw).ok_or("a month as YYYY-MM")?;
    let now = Month::of(today).index();
    if month.index() < now - MONTHS_BACK {
        return Err(format!("at most {MONTHS_BACK} months back"));
    }
    if month.index() > now + MONTHS_AHEAD {
        return Err(format!("at most {MONTHS_AHEAD} month ahead"));
    }
    Ok(month)
}

/// The monthly attendance timesheet (табель) as an `.xlsx` built by a worker. The same request
/// by the same user while its job is queued or running returns that job.
#[utoipa::path(
    post,
    path = "/api/exports/timesheets",
    tag = "exports",
    request_body = TimesheetRequest,
    responses((status = 202, description = "queued (or the identical queued/running job)", body = Accepted), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "a teacher account not linked to a teacher", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn timesheets(
    State(app): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    AppJson(body): AppJson<TimesheetRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let enqueued = order_timesheet(&app, &user, &headers, body).await?;
    Ok(Accepted::for_job(&enqueued))
}

/// Checks a timesheet request for `user` and enqueues it (or finds the identical open job):
/// the JSON route and the "Мои задачи" page's form both come here.
pub async fn order_timesheet(
    app: &AppState,
    user: &CurrentUser,
    headers: &HeaderMap,
    body: TimesheetRequest,
) -> Result<jobs::Enqueued, ApiError> {
    let mut fields = FieldErrors::new();
    let today = shared::time::today();
    let month = check_month(&body.month, today)
        .map_err(|e| fields.insert("month".into(), e))
        .ok();
    let mut group_ids = body.group_ids.clone();
    if let Some(ids) = group_ids.as_mut() {
        // Counted as sent, as the schema's maxItems counts them; repeats then merge.
        if ids.is_empty() {
            fields.insert(
                "group_ids".into(),
                "at least one group, or null for all".into(),
            );
        } else if ids.len() > MAX_GROUPS {
            fields.insert("group_ids".into(), format!("at most {MAX_GROUPS} groups"));
        }
        ids.sort();
        ids.dedup();
    }

    let ids = group_ids.clone().unwrap_or_default();
    let shared::domain::groups::Ownership {
        own_teacher,
        missing,
        foreign,
        teacher_exists,
    } = shared::domain::groups::ownership(&app.db, user.id, &ids, body.teacher_id).await?;
    let mut teacher_id = body.teacher_id;
    if !teacher_exists {
        fields.insert("teacher_id".into(), "no such teacher".into());
    }
    if !missing.is_empty() {
        fields.insert(
            "group_ids".into(),
            format!("no such groups: {}", join(&missing)),
        );
    }
    if user.role == Role::Teacher {
        let Some(own) = own_teacher else {
            return Err(ApiError::Forbidden);
        };
        if teacher_id.is_some_and(|t| t != own) {
            fields.insert(
                "teacher_id".into(),
                "teachers export their own groups only".into(),
            );
        }
        teacher_id = Some(own);
        if !foreign.is_empty() && missing.is_empty() {
            fields.insert(
                "group_ids".into(),
                format!("not your groups: {}", join(&foreign)),
            );
        }
    }
    let Some(month) = month.filter(|_| fields.is_empty()) else {
        return Err(ApiError::Validation(fields));
    };

    let job = TimesheetExport {
        month,
        group_ids,
        teacher_id,
        requested_by: user.id,
    };
    let enqueued = enqueue_for(app, user, headers, &job).await?;
    tracing::info!(job.id = %enqueued.job_id, deduplicated = enqueued.deduplicated, month = %job.month, "timesheet export requested");
    Ok(enqueued)
}

fn join(ids: &[Uuid]) -> String {
    ids.iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_checked_against_a_window_around_today() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        assert!(check_month("2026-11", today).is_ok());
        assert!(check_month("2026-12", today).is_ok());
        assert!(check_month("2024-11", today).is_ok());
        assert_eq!(
            check_month("2027-01", today).unwrap_err(),
            "at most 1 month ahead"
        );
        assert_eq!(
            check_month("2024-10", today).unwrap_err(),
            "at most 24 months back"
        );
        assert_eq!(
            check_month("октябрь", today).unwrap_err(),
            "a month as YYYY-MM"
        );
    }
}
