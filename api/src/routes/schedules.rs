//! Bulk scheduling as a job: the request checks the plan and enqueues `bulk_schedule`; the
//! worker expands it and writes the lessons (see `jobs::scheduling`).
use axum::{extract::State, http::HeaderMap, http::StatusCode, Json};
use chrono::{NaiveDate, Timelike};
use jobs::kinds::scheduling::{BulkSchedule, Mode, PlanEntry};
use serde::Deserialize;
use uuid::Uuid;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::CurrentUser,
    http::{enqueue_for, Accepted, ApiError, AppJson, FieldErrors},
    routes::directory::WRITERS,
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(bulk))
}

/// Most entries in one plan.
pub const MAX_ENTRIES: usize = 1000;
/// Longest plan, in days (one year, a leap year included).
pub const MAX_DAYS: i64 = 366;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    #[schema(example = "2026-09-01")]
    from: NaiveDate,
    /// Not before `from`; a plan covers at most 366 days.
    #[schema(example = "2027-05-31")]
    to: NaiveDate,
    /// Dates to skip (a plan's days at most: 366).
    #[serde(default)]
    #[schema(max_items = 366)]
    holidays: Vec<NaiveDate>,
    /// `all_or_nothing` (default) or `skip_conflicts`.
    #[serde(default)]
    #[schema(value_type = Option<shared::domain::scheduling::Mode>)]
    mode: Option<String>,
    #[serde(default)]
    dry_run: bool,
    #[schema(min_items = 1, max_items = 1000)]
    entries: Vec<EntryRequest>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryRequest {
    group_id: Uuid,
    /// ISO weekdays, 1 = Monday … 7 = Sunday (a repeat counts once).
    #[schema(min_items = 1, max_items = 7, minimum = 1, maximum = 7)]
    weekdays: Vec<i64>,
    /// `HH:MM`, Moscow time.
    #[schema(example = "18:30", pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    start_time: String,
    /// The lesson must end by midnight.
    #[schema(minimum = 1, maximum = 720)]
    duration_min: i64,
    room_id: Uuid,
    teacher_id: Uuid,
}

/// Checks the plan's shape; returns the entries as the job takes them (ids not yet checked).
fn check(req: &PlanRequest, fields: &mut FieldErrors) -> Vec<PlanEntry> {
    if req.to < req.from {
        fields.insert("to".into(), "must not be before from".into());
    } else if (req.to - req.from).num_days() + 1 > MAX_DAYS {
        fields.insert(
            "to".into(),
            format!("a plan covers at most {MAX_DAYS} days"),
        );
    }
    if req
        .mode
        .as_deref()
        .is_some_and(|m| !["all_or_nothing", "skip_conflicts"].contains(&m))
    {
        fields.insert("mode".into(), "all_or_nothing or skip_conflicts".into());
    }
    if req.holidays.len() as i64 > MAX_DAYS {
        fields.insert("holidays".into(), format!("at most {MAX_DAYS} dates"));
    }
    if req.entries.is_empty() {
        fields.insert("entries".into(), "at least one entry".into());
    } else if req.entries.len() > MAX_ENTRIES {
        fields.insert("entries".into(), format!("at most {MAX_ENTRIES} entries"));
    }
    let mut out = Vec::with_capacity(req.entries.len());
    for (i, e) in req.entries.iter().enumerate() {
        let mut bad = |field: &str, problem: &str| {
            fields.insert(format!("entries[{i}].{field}"), problem.to_string());
        };
        let mut weekdays: Vec<u8> = Vec::new();
        if e.weekdays.is_empty()
            || e.weekdays.len() > 7
            || e.weekdays.iter().any(|d| !(1..=7).contains(d))
        {
            bad("weekdays", "one or more of 1 (Monday) … 7 (Sunday)");
        } else {
            weekdays = e.weekdays.iter().map(|&d| d as u8).collect();
            weekdays.sort_unstable();
            weekdays.dedup();
        }
        let start = shared::domain::scheduling::parse_hh_mm(&e.start_time);
        if start.is_none() {
            bad("start_time", "HH:MM");
        }
        let minutes_left = start.map_or(24 * 60, |t| {
            24 * 60 - i64::from(t.num_seconds_from_midnight() / 60)
        });
        if !(1..=12 * 60).contains(&e.duration_min) {
            bad("duration_min", "between 1 and 720");
        } else if e.duration_min > minutes_left {
            bad("duration_min", "the lesson must end by midnight");
        }
        if let Some(start_time) = start {
            out.push(PlanEntry {
                group_id: e.group_id,
                weekdays,
                start_time,
                duration_min: e.duration_min.clamp(1, 720) as u16,
                room_id: e.room_id,
                teacher_id: e.teacher_id,
            });
        }
    }
    out
}

/// Schedules weekly lessons for many groups over a period (at most a year, 1,000 entries) as a
/// `bulk_schedule` job. The result lists `lessons_created`, `enrolments_created`, `clashes`,
/// `holidays_skipped`.
#[utoipa::path(
    post,
    path = "/api/schedules/bulk",
    tag = "lessons",
    request_body = PlanRequest,
    responses((status = 202, description = "queued", body = Accepted), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named (entries[i].field)", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn bulk(
    State(app): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    AppJson(req): AppJson<PlanRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    user.require(WRITERS)?;
    let mut fields = FieldErrors::new();
    let entries = check(&req, &mut fields);
    if !fields.is_empty() {
        return Err(ApiError::Validation(fields));
    }
    // One round trip: the index of every entry naming a missing group, room or teacher.
    let missing = shared::domain::scheduling::missing_references(&app.db, &entries).await?;
    for (i, field) in missing {
        let what = field.trim_end_matches("_id");
        fields.insert(format!("entries[{i}].{field}"), format!("no such {what}"));
    }
    if !fields.is_empty() {
        return Err(ApiError::Validation(fields));
    }

    let job = BulkSchedule {
        plan_id: Uuid::new_v4(),
        from: req.from,
        to: req.to,
        holidays: req.holidays,
        mode: match req.mode.as_deref() {
            Some("skip_conflicts") => Mode::SkipConflicts,
            _ => Mode::AllOrNothing,
        },
        dry_run: req.dry_run,
        entries,
    };
    let enqueued = enqueue_for(&app, &user, &headers, &job).await?;
    tracing::info!(job.id = %enqueued.job_id, plan.id = %job.plan_id, entries = job.entries.len(), "bulk schedule requested");
    Ok(Accepted::for_job(&enqueued))
}
