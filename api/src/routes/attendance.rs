//! Attendance marks and the visit they charge, in one transaction.
//!
//! Which marks charge a visit: `present` always; `absent` when the group charges unexcused
//! absences (`absence_charge` = `unexcused` or `all`); `excused` only with `all`; `free` and
//! `trial` never. A charge takes one visit of exactly one valid subscription — active, its plan
//! covers the lesson's group, the lesson's Moscow date within its period and outside its
//! freeze, visits left — the one ending first. Re-sending the same marks changes nothing;
//! a mark that stops charging gives its visit back. The lesson row is locked for the
//! transaction, so concurrent requests for a lesson apply one after the other and a client is
//! never charged twice for it; a subscription's last visit is guarded by its own UPDATE.
use std::collections::HashSet;

use axum::{
    extract::{Path, State},
    Json,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{CurrentUser, Role},
    error::{ApiError, AppJson, FieldErrors},
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show, mark))
}

pub const MARKS: &[&str] = &["present", "absent", "excused", "free", "trial"];

/// Whether `mark` takes a visit under the group's absence rule.
pub fn charges(mark: &str, absence_charge: &str) -> bool {
    match mark {
        "present" => true,
        "absent" => absence_charge != "none",
        "excused" => absence_charge == "all",
        _ => false,
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Marks {
    marks: Vec<MarkIn>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MarkIn {
    client_id: Uuid,
    mark: String,
}

#[derive(Serialize, sqlx::FromRow, utoipa::ToSchema)]
struct MarkOut {
    client_id: Uuid,
    mark: String,
    subscription_id: Option<Uuid>,
    /// The mark should take a visit but no valid subscription could pay for it.
    unpaid: bool,
    marked_at: DateTime<Utc>,
}

/// status, group, start, the group's absence rule, the teacher's user.
type LessonRow = (
    String,
    Option<Uuid>,
    DateTime<Utc>,
    Option<String>,
    Option<Uuid>,
);

struct LessonLock {
    status: String,
    group_id: Option<Uuid>,
    date: NaiveDate,
    absence_charge: String,
}

/// Locks the lesson for this transaction and checks the caller may mark it: managers and
/// admins any lesson, a teacher only their own.
async fn lock_lesson(
    tx: &mut sqlx::PgConnection,
    user: &CurrentUser,
    id: Uuid,
) -> Result<LessonLock, ApiError> {
    let row: Option<LessonRow> = sqlx::query_as(
        "select l.status, l.group_id, l.starts_at, g.absence_charge, t.user_id
             from lessons l
             left join study_groups g on g.id = l.group_id
             left join teachers t on t.id = l.teacher_id
             where l.id = $1 and l.kind = 'lesson'
             for update of l",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let (status, group_id, starts_at, absence_charge, teacher_user) =
        row.ok_or(ApiError::NotFound)?;
    if user.role == Role::Teacher && teacher_user != Some(user.id) {
        return Err(ApiError::Forbidden);
    }
    Ok(LessonLock {
        status,
        group_id,
        date: starts_at.with_timezone(&shared::time::MOSCOW).date_naive(),
        absence_charge: absence_charge.unwrap_or_else(|| "none".into()),
    })
}

async fn current_marks(
    db: impl sqlx::PgExecutor<'_>,
    id: Uuid,
    absence_charge: &str,
) -> Result<Vec<MarkOut>, ApiError> {
    let rows: Vec<(Uuid, String, Option<Uuid>, DateTime<Utc>)> = sqlx::query_as(
        "select client_id, mark, subscription_id, marked_at from attendance
         where lesson_id = $1 order by client_id",
    )
    .bind(id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(client_id, mark, subscription_id, marked_at)| MarkOut {
            unpaid: subscription_id.is_none() && charges(&mark, absence_charge),
            client_id,
            mark,
            subscription_id,
            marked_at,
        })
        .collect())
}

#[utoipa::path(
    get,
    path = "/api/lessons/{id}/attendance",
    tag = "attendance",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = crate::routes::Paged<MarkOut>), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, lesson.id = %id))]
async fn show(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, ApiError> {
    let mut tx = app.db.begin().await?;
    let lesson = lock_lesson(&mut tx, &user, id).await?;
    let marks = current_marks(&mut *tx, id, &lesson.absence_charge).await?;
    tx.commit().await?;
    Ok(Json(
        json!({"lesson_id": id, "items": marks, "total": marks.len()}),
    ))
}

#[utoipa::path(
    put,
    path = "/api/lessons/{id}/attendance",
    tag = "attendance",
    params(("id" = Uuid, Path)),
    request_body = Marks,
    responses((status = 200, description = "OK", body = crate::routes::Paged<MarkOut>), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody), (status = 409, description = "conflict (e.g. a booking clash)", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, lesson.id = %id))]
async fn mark(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
    AppJson(req): AppJson<Marks>,
) -> Result<Json<Value>, ApiError> {
    user.require(&[Role::Admin, Role::Manager, Role::Teacher])?;
    let mut fields = FieldErrors::new();
    if req.marks.is_empty() || req.marks.len() > 500 {
        fields.insert("marks".into(), "between 1 and 500 marks".into());
    }
    let mut seen = HashSet::new();
    for (i, m) in req.marks.iter().enumerate() {
        if !MARKS.contains(&m.mark.as_str()) {
            fields.insert(
                format!("marks[{i}].mark"),
                format!("one of {}", MARKS.join(", ")),
            );
        }
        if !seen.insert(m.client_id) {
            fields.insert(format!("marks[{i}].client_id"), "marked twice".into());
        }
    }
    if !fields.is_empty() {
        return Err(ApiError::Validation(fields));
    }
    let clients: Vec<Uuid> = req.marks.iter().map(|m| m.client_id).collect();
    let marks: Vec<String> = req.marks.iter().map(|m| m.mark.clone()).collect();

    let mut tx = app.db.begin().await?;
    let lesson = lock_lesson(&mut tx, &user, id).await?;
    if lesson.status == "cancelled" {
        return Err(ApiError::Conflict(
            "the lesson is cancelled; nobody can be marked".into(),
        ));
    }
    // Save the marks; learn which visit each client had charged before.
    let before: Vec<(Uuid, String, Option<Uuid>)> = sqlx::query_as(
        "with input as (select * from unnest($2::uuid[], $3::text[]) as i(client_id, mark)),
         old as (select client_id, subscription_id from attendance
                 where lesson_id = $1 and client_id = any($2)),
         saved as (
             insert into attendance (lesson_id, client_id, mark, marked_by)
             select $1, client_id, mark, $4 from input
             on conflict (lesson_id, client_id) do update
                 set mark = excluded.mark, marked_by = excluded.marked_by,
                     marked_at = case when attendance.mark = excluded.mark
                                      then attendance.marked_at else now() end
             returning client_id
         )
         select i.client_id, i.mark, o.subscription_id
         from input i left join old o on o.client_id = i.client_id
         where exists (select 1 from saved s where s.client_id = i.client_id)",
    )
    .bind(id)
    .bind(&clients)
    .bind(&marks)
    .bind(user.id)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| {
        ApiError::on_constraint(
            e,
            &[(
                "attendance_client_id_fkey",
                "marks",
                "a client does not exist",
            )],
        )
    })?;

    let mut release = Vec::new();
    let mut charge = Vec::new();
    for (client, mark, charged) in &before {
        match (charged, charges(mark, &lesson.absence_charge)) {
            (Some(sub), false) => release.push((*client, *sub)),
            (None, true) => charge.push(*client),
            _ => {}
        }
    }
    if !release.is_empty() {
        let (rc, rs): (Vec<Uuid>, Vec<Uuid>) = release.into_iter().unzip();
        sqlx::query(
            "with given_back as (
                 update subscriptions s set visits_used = s.visits_used - 1, updated_at = now()
                 from unnest($2::uuid[]) as r(id) where s.id = r.id
                 returning s.id
             )
             update attendance set subscription_id = null
             where lesson_id = $1 and client_id = any($3)",
        )
        .bind(id)
        .bind(&rs)
        .bind(&rc)
        .execute(&mut *tx)
        .await?;
    }
    if let (false, Some(group_id)) = (charge.is_empty(), lesson.group_id) {
        // Candidates are locked first (a client's subscriptions), then each client's first
        // valid one is charged; the UPDATE re-checks visits left against the locked row.
        sqlx::query(
            "select s.id from subscriptions s where s.client_id = any($1) and s.status = 'active'
             order by s.id for update",
        )
        .bind(&charge)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "with pick as (
                 select distinct on (s.client_id) s.id, s.client_id
                 from subscriptions s
                 join plan_groups pg on pg.plan_id = s.plan_id and pg.group_id = $3
                 where s.client_id = any($2) and s.status = 'active'
                   and $4::date between s.begins_on and s.ends_on
                   and not (s.freeze_from is not null and $4::date between s.freeze_from and s.freeze_to)
                   and (s.visits_total is null or s.visits_used < s.visits_total)
                 order by s.client_id, s.ends_on, s.id
             ), charged as (
                 update subscriptions s set visits_used = s.visits_used + 1, updated_at = now()
                 from pick
                 where s.id = pick.id and (s.visits_total is null or s.visits_used < s.visits_total)
                 returning s.id, pick.client_id
             )
             update attendance a set subscription_id = c.id
             from charged c where a.lesson_id = $1 and a.client_id = c.client_id",
        )
        .bind(id)
        .bind(&charge)
        .bind(group_id)
        .bind(lesson.date)
        .execute(&mut *tx)
        .await?;
    }
    let marks = current_marks(&mut *tx, id, &lesson.absence_charge).await?;
    tx.commit().await?;
    Ok(Json(
        json!({"lesson_id": id, "items": marks, "total": marks.len()}),
    ))
}

/// Gives back every visit charged for a lesson (the lesson is being cancelled), in the
/// caller's transaction.
pub async fn release_lesson(
    tx: &mut sqlx::PgConnection,
    lesson_id: Uuid,
) -> Result<u64, sqlx::Error> {
    let released = sqlx::query(
        "with charged as (
             select subscription_id, count(*) as n from attendance
             where lesson_id = $1 and subscription_id is not null group by subscription_id
         ), given_back as (
             update subscriptions s set visits_used = s.visits_used - c.n, updated_at = now()
             from charged c where s.id = c.subscription_id
         )
         update attendance set subscription_id = null
         where lesson_id = $1 and subscription_id is not null",
    )
    .bind(lesson_id)
    .execute(&mut *tx)
    .await?;
    Ok(released.rows_affected())
}
