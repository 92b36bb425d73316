//! Room rental applications from outside organisations: create, list, approve (books the room
//! for every day of the period, set-based, refused with 409 listing every clash), reject.
//! Managers and admins only.
use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::CurrentUser,
    error::{ApiError, AppJson, AppQuery, FieldErrors},
    routes::{
        clients::normalize_phone,
        directory::{check_name, WRITERS},
        paged, paged_sql, Page,
    },
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show))
        .routes(routes!(approve))
        .routes(routes!(reject))
}

/// Longest rental period, in days (the audit's loop had no limit).
pub const MAX_DAYS: i64 = 366;

#[derive(Serialize, sqlx::FromRow, utoipa::ToSchema)]
struct Application {
    id: Uuid,
    organisation: String,
    contact_name: String,
    contact_phone: Option<String>,
    contact_email: Option<String>,
    room_id: Uuid,
    date_from: NaiveDate,
    date_to: NaiveDate,
    time_from: NaiveTime,
    time_to: NaiveTime,
    status: String,
    comment: Option<String>,
    bookings: i64,
    decided_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

const APPLICATION: &str = "a.id, a.organisation, a.contact_name, a.contact_phone, \
     a.contact_email, a.room_id, a.date_from, a.date_to, a.time_from, a.time_to, a.status, \
     a.comment, (select count(*) from lessons l where l.rental_application_id = a.id \
                 and l.status <> 'cancelled') as bookings, a.decided_at, a.created_at";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewApplication {
    organisation: String,
    contact_name: String,
    contact_phone: Option<String>,
    contact_email: Option<String>,
    room_id: Uuid,
    date_from: NaiveDate,
    date_to: NaiveDate,
    /// "HH:MM", Moscow time.
    time_from: NaiveTime,
    time_to: NaiveTime,
    comment: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/rental-applications",
    tag = "rentals",
    request_body = NewApplication,
    responses((status = 201, description = "OK", body = Application), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn create(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(mut req): AppJson<NewApplication>,
) -> Result<(StatusCode, Json<Application>), ApiError> {
    user.require(WRITERS)?;
    let mut fields = FieldErrors::new();
    check_name(&mut fields, "organisation", &req.organisation, 300);
    check_name(&mut fields, "contact_name", &req.contact_name, 200);
    if let Some(phone) = &req.contact_phone {
        match normalize_phone(phone) {
            Some(p) => req.contact_phone = Some(p),
            None => {
                fields.insert(
                    "contact_phone".into(),
                    "expected a phone number like +7 916 123-45-67".into(),
                );
            }
        }
    }
    if req.date_to < req.date_from {
        fields.insert("date_to".into(), "must not be before date_from".into());
    } else if (req.date_to - req.date_from).num_days() + 1 > MAX_DAYS {
        fields.insert(
            "date_to".into(),
            format!("a rental lasts at most {MAX_DAYS} days"),
        );
    }
    if req.time_to <= req.time_from {
        fields.insert("time_to".into(), "must be after time_from".into());
    }
    if !fields.is_empty() {
        return Err(ApiError::Validation(fields));
    }
    let application: Application = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "with a as (
             insert into rental_applications (organisation, contact_name, contact_phone,
                 contact_email, room_id, date_from, date_to, time_from, time_to, comment)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) returning *
         )
         select {APPLICATION} from a"
    )))
    .bind(req.organisation.trim())
    .bind(req.contact_name.trim())
    .bind(&req.contact_phone)
    .bind(&req.contact_email)
    .bind(req.room_id)
    .bind(req.date_from)
    .bind(req.date_to)
    .bind(req.time_from)
    .bind(req.time_to)
    .bind(&req.comment)
    .fetch_one(&app.db)
    .await
    .map_err(|e| {
        ApiError::on_constraint(
            e,
            &[(
                "rental_applications_room_id_fkey",
                "room_id",
                "no such room",
            )],
        )
    })?;
    Ok((StatusCode::CREATED, Json(application)))
}

async fn fetch(db: impl sqlx::PgExecutor<'_>, id: Uuid) -> Result<Application, ApiError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {APPLICATION} from rental_applications a where a.id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(ApiError::NotFound)
}

#[utoipa::path(
    get,
    path = "/api/rental-applications/{id}",
    tag = "rentals",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = Application), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, application.id = %id))]
async fn show(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Application>, ApiError> {
    user.require(WRITERS)?;
    Ok(Json(fetch(&app.db, id).await?))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/rental-applications",
    tag = "rentals",
    params(("status" = Option<String>, Query), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::routes::Paged<Application>), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn list(
    State(app): State<AppState>,
    user: CurrentUser,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    user.require(WRITERS)?;
    let (limit, offset) = Page {
        limit: q.limit,
        offset: q.offset,
    }
    .validate()?;
    let row = sqlx::query_as(paged_sql(
        "select * from rental_applications where $1::text is null or status = $1",
        "a",
        APPLICATION,
        "a.created_at desc, a.id",
        2,
    ))
    .bind(&q.status)
    .bind(limit)
    .bind(offset)
    .fetch_one(&app.db)
    .await?;
    Ok(paged(row))
}

/// The days of an application as half-open UTC ranges (Moscow wall-clock window each day).
const DAYS: &str = "select a.room_id,
            ((d::date + a.time_from) at time zone 'Europe/Moscow') as starts_at,
            ((d::date + a.time_to) at time zone 'Europe/Moscow') as ends_at
     from rental_applications a,
          generate_series(a.date_from, a.date_to, interval '1 day') as d
     where a.id = $1";

/// Every existing booking of the room overlapping one of the application's days.
async fn clashes(db: impl sqlx::PgExecutor<'_>, id: Uuid) -> Result<Value, ApiError> {
    let clashes: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "with days as ({DAYS})
         select coalesce(jsonb_agg(jsonb_build_object(
                    'day_starts_at', d.starts_at, 'lesson_id', l.id, 'kind', l.kind,
                    'group_id', l.group_id, 'starts_at', l.starts_at, 'ends_at', l.ends_at)
                    order by d.starts_at, l.starts_at), '[]')
         from days d join lessons l
           on l.room_id = d.room_id and l.status <> 'cancelled'
          and tstzrange(l.starts_at, l.ends_at, '[)') && tstzrange(d.starts_at, d.ends_at, '[)')"
    )))
    .bind(id)
    .fetch_one(db)
    .await?;
    Ok(clashes)
}

/// Approves a new application: one INSERT … SELECT books every day; any clash refuses the
/// whole approval (409 listing every clashing booking) and nothing is booked.
#[utoipa::path(
    post,
    path = "/api/rental-applications/{id}/approve",
    tag = "rentals",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = Application), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody), (status = 409, description = "conflict (e.g. a booking clash)", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, application.id = %id))]
async fn approve(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Application>, ApiError> {
    user.require(WRITERS)?;
    let mut tx = app.db.begin().await?;
    let status: Option<String> =
        sqlx::query_scalar("select status from rental_applications where id = $1 for update")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    match status.as_deref() {
        None => return Err(ApiError::NotFound),
        Some("new") => {}
        Some(other) => return Err(ApiError::Conflict(format!("the application is {other}"))),
    }
    let booked = sqlx::query(sqlx::AssertSqlSafe(format!(
        "insert into lessons (kind, room_id, starts_at, ends_at, rental_application_id)
         select 'rental', days.room_id, days.starts_at, days.ends_at, $1 from ({DAYS}) days"
    )))
    .bind(id)
    .execute(&mut *tx)
    .await;
    match booked {
        Ok(done) => tracing::info!(days = done.rows_affected(), "rental booked"),
        Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("23P01") => {
            drop(tx);
            let clashes = clashes(&app.db, id).await?;
            return Err(ApiError::Clash {
                message: "the room is already booked on some of these days".into(),
                clashes,
            });
        }
        Err(e) => return Err(e.into()),
    }
    sqlx::query(
        "update rental_applications set status = 'approved', decided_by = $2, decided_at = now(),
             updated_at = now() where id = $1",
    )
    .bind(id)
    .bind(user.id)
    .execute(&mut *tx)
    .await?;
    let application = fetch(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(Json(application))
}

#[utoipa::path(
    post,
    path = "/api/rental-applications/{id}/reject",
    tag = "rentals",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = Application), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody), (status = 409, description = "conflict (e.g. a booking clash)", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, application.id = %id))]
async fn reject(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Application>, ApiError> {
    user.require(WRITERS)?;
    let updated = sqlx::query(
        "update rental_applications set status = 'rejected', decided_by = $2, decided_at = now(),
             updated_at = now() where id = $1 and status = 'new'",
    )
    .bind(id)
    .bind(user.id)
    .execute(&app.db)
    .await?;
    let application = fetch(&app.db, id).await?;
    if updated.rows_affected() == 0 {
        return Err(ApiError::Conflict(format!(
            "the application is {}",
            application.status
        )));
    }
    Ok(Json(application))
}
