//! Study groups and their members: enrol (active while seats are free, else waitlisted),
//! unenrol (the first waitlisted member takes the seat). Managers and admins write; every role
//! reads.
use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::CurrentUser,
    error::{ApiError, AppJson, AppQuery, FieldErrors},
    routes::{
        directory::{check_name, WRITERS},
        nullable, paged, paged_sql, Page,
    },
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update))
        .routes(routes!(members, enrol))
        .routes(routes!(unenrol))
}

#[derive(Serialize, sqlx::FromRow, utoipa::ToSchema)]
struct Group {
    id: Uuid,
    name: String,
    teacher_id: Uuid,
    room_id: Option<Uuid>,
    capacity: i32,
    status: String,
    absence_charge: String,
    active_members: i64,
    waitlisted: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A group with its member counts, from `g` (a `study_groups` row source).
const GROUP: &str = "g.id, g.name, g.teacher_id, g.room_id, g.capacity, g.status, \
     g.absence_charge, \
     (select count(*) from group_members m where m.group_id = g.id and m.status = 'active') \
         as active_members, \
     (select count(*) from group_members m where m.group_id = g.id and m.status = 'waitlist') \
         as waitlisted, \
     g.created_at, g.updated_at";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct GroupPatch {
    name: Option<String>,
    teacher_id: Option<Uuid>,
    #[serde(default, deserialize_with = "nullable")]
    room_id: Option<Option<Uuid>>,
    capacity: Option<i32>,
    status: Option<String>,
    absence_charge: Option<String>,
}

impl GroupPatch {
    fn check(&self, creating: bool) -> Result<(), ApiError> {
        let mut fields = FieldErrors::new();
        match &self.name {
            Some(name) => check_name(&mut fields, "name", name, 200),
            None if creating => {
                fields.insert("name".into(), "required".into());
            }
            None => {}
        }
        if creating && self.teacher_id.is_none() {
            fields.insert("teacher_id".into(), "required".into());
        }
        match self.capacity {
            Some(c) if !(1..=1000).contains(&c) => {
                fields.insert("capacity".into(), "must be between 1 and 1000".into());
            }
            None if creating => {
                fields.insert("capacity".into(), "required".into());
            }
            _ => {}
        }
        if let Some(s) = &self.status {
            if !["open", "closed", "archived"].contains(&s.as_str()) {
                fields.insert("status".into(), "one of open, closed, archived".into());
            }
        }
        if let Some(s) = &self.absence_charge {
            if !["none", "unexcused", "all"].contains(&s.as_str()) {
                fields.insert(
                    "absence_charge".into(),
                    "one of none, unexcused, all".into(),
                );
            }
        }
        if fields.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(fields))
        }
    }
}

const GROUP_CONSTRAINTS: &[(&str, &str, &str)] = &[
    (
        "study_groups_teacher_id_fkey",
        "teacher_id",
        "no such teacher",
    ),
    ("study_groups_room_id_fkey", "room_id", "no such room"),
];

#[utoipa::path(
    post,
    path = "/api/groups",
    tag = "groups",
    request_body = GroupPatch,
    responses((status = 201, description = "OK", body = Group), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn create(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(req): AppJson<GroupPatch>,
) -> Result<(StatusCode, Json<Group>), ApiError> {
    user.require(WRITERS)?;
    req.check(true)?;
    let group: Group = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "with g as (
             insert into study_groups (name, teacher_id, room_id, capacity, status, absence_charge)
             values ($1, $2, $3, $4, coalesce($5, 'open'), coalesce($6, 'none'))
             returning *
         )
         select {GROUP} from g"
    )))
    .bind(req.name.as_deref().map(str::trim))
    .bind(req.teacher_id)
    .bind(req.room_id.flatten())
    .bind(req.capacity)
    .bind(&req.status)
    .bind(&req.absence_charge)
    .fetch_one(&app.db)
    .await
    .map_err(|e| ApiError::on_constraint(e, GROUP_CONSTRAINTS))?;
    Ok((StatusCode::CREATED, Json(group)))
}

#[utoipa::path(
    patch,
    path = "/api/groups/{id}",
    tag = "groups",
    params(("id" = Uuid, Path)),
    request_body = GroupPatch,
    responses((status = 200, description = "OK", body = Group), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, group.id = %id))]
async fn update(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
    AppJson(req): AppJson<GroupPatch>,
) -> Result<Json<Group>, ApiError> {
    user.require(WRITERS)?;
    req.check(false)?;
    let group: Option<Group> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "with g as (
             update study_groups set
                 name = coalesce($2, name), teacher_id = coalesce($3, teacher_id),
                 room_id = case when $4 then $5 else room_id end,
                 capacity = coalesce($6, capacity), status = coalesce($7, status),
                 absence_charge = coalesce($8, absence_charge), updated_at = now()
             where id = $1 returning *
         )
         select {GROUP} from g"
    )))
    .bind(id)
    .bind(req.name.as_deref().map(str::trim))
    .bind(req.teacher_id)
    .bind(req.room_id.is_some())
    .bind(req.room_id.flatten())
    .bind(req.capacity)
    .bind(&req.status)
    .bind(&req.absence_charge)
    .fetch_optional(&app.db)
    .await
    .map_err(|e| ApiError::on_constraint(e, GROUP_CONSTRAINTS))?;
    group.map(Json).ok_or(ApiError::NotFound)
}

#[utoipa::path(
    get,
    path = "/api/groups/{id}",
    tag = "groups",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = Group), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id, group.id = %id))]
async fn show(
    State(app): State<AppState>,
    _user: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Group>, ApiError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {GROUP} from study_groups g where g.id = $1"
    )))
    .bind(id)
    .fetch_optional(&app.db)
    .await?
    .map(Json)
    .ok_or(ApiError::NotFound)
}

#[derive(Deserialize)]
struct GroupQuery {
    teacher_id: Option<Uuid>,
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/groups",
    tag = "groups",
    params(("teacher_id" = Option<Uuid>, Query), ("status" = Option<String>, Query), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::routes::Paged<Group>), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id))]
async fn list(
    State(app): State<AppState>,
    _user: CurrentUser,
    AppQuery(q): AppQuery<GroupQuery>,
) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = Page {
        limit: q.limit,
        offset: q.offset,
    }
    .validate()?;
    let row = sqlx::query_as(paged_sql(
        "select * from study_groups
         where ($1::uuid is null or teacher_id = $1) and ($2::text is null or status = $2)",
        "g",
        GROUP,
        "g.name, g.id",
        3,
    ))
    .bind(q.teacher_id)
    .bind(&q.status)
    .bind(limit)
    .bind(offset)
    .fetch_one(&app.db)
    .await?;
    Ok(paged(row))
}

// ----- members -----

#[derive(Serialize, sqlx::FromRow, utoipa::ToSchema)]
struct Member {
    client_id: Uuid,
    full_name: String,
    status: String,
    joined_on: Option<NaiveDate>,
    left_on: Option<NaiveDate>,
}

#[derive(Deserialize)]
struct MembersQuery {
    /// `current` (default: active and waitlisted), `active`, `waitlist`, `left`, `all`.
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/groups/{id}/members",
    tag = "groups",
    params(("id" = Uuid, Path), ("status" = Option<String>, Query, description = "current (default), active, waitlist, left, all"), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::routes::Paged<Member>), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id, group.id = %id))]
async fn members(
    State(app): State<AppState>,
    _user: CurrentUser,
    Path(id): Path<Uuid>,
    AppQuery(q): AppQuery<MembersQuery>,
) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = Page {
        limit: q.limit,
        offset: q.offset,
    }
    .validate()?;
    let status = q.status.as_deref().unwrap_or("current");
    if !["current", "active", "waitlist", "left", "all"].contains(&status) {
        return Err(ApiError::field(
            "status",
            "one of current, active, waitlist, left, all",
        ));
    }
    let row: Option<(i64, Value)> = sqlx::query_as(
        "with g as (select id from study_groups where id = $1),
         matched as (
             select m.client_id, c.last_name || ' ' || c.first_name
                        || coalesce(' ' || c.middle_name, '') as full_name,
                    m.status, m.joined_on, m.left_on, m.created_at
             from group_members m join clients c on c.id = m.client_id
             where m.group_id = $1
               and ($2 = 'all' or m.status = $2
                    or ($2 = 'current' and m.status in ('active', 'waitlist')))
         )
         select (select count(*) from matched),
                coalesce((select json_agg(p) from (
                    select client_id, full_name, status, joined_on, left_on from matched
                    order by status, case when status = 'waitlist' then created_at end, full_name
                    limit $3 offset $4) p), '[]')
         from g",
    )
    .bind(id)
    .bind(status)
    .bind(limit)
    .bind(offset)
    .fetch_optional(&app.db)
    .await?;
    let (total, items) = row.ok_or(ApiError::NotFound)?;
    Ok(Json(json!({"items": items, "total": total})))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Enrol {
    client_id: Uuid,
    /// Defaults to today (Moscow).
    joined_on: Option<NaiveDate>,
}

/// Enrols a client: `active` while the group has free seats, else `waitlist`. The group row is
/// locked first, so concurrent enrolments see each other's seats (no overbooking).
#[utoipa::path(
    post,
    path = "/api/groups/{id}/members",
    tag = "groups",
    params(("id" = Uuid, Path)),
    request_body = Enrol,
    responses((status = 201, description = "enrolled: active, or waitlist when full", body = Member), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, group.id = %id))]
async fn enrol(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
    AppJson(req): AppJson<Enrol>,
) -> Result<(StatusCode, Json<Member>), ApiError> {
    user.require(WRITERS)?;
    let mut tx = app.db.begin().await?;
    let group: Option<String> =
        sqlx::query_scalar("select status from study_groups where id = $1 for update")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    match group.as_deref() {
        None => return Err(ApiError::NotFound),
        Some("open") => {}
        Some(_) => {
            return Err(ApiError::field(
                "group",
                "the group is not open for enrolment",
            ))
        }
    }
    let today = Utc::now().with_timezone(&shared::time::MOSCOW).date_naive();
    let member: Member = sqlx::query_as(
        "with seat as (
             select g.capacity > (select count(*) from group_members m
                                  where m.group_id = g.id and m.status = 'active') as free
             from study_groups g where g.id = $1
         ), ins as (
             insert into group_members (group_id, client_id, status, joined_on)
             select $1, $2, case when seat.free then 'active' else 'waitlist' end,
                    case when seat.free then $3::date end
             from seat
             returning client_id, status, joined_on, left_on
         )
         select ins.client_id, c.last_name || ' ' || c.first_name
                    || coalesce(' ' || c.middle_name, '') as full_name,
                ins.status, ins.joined_on, ins.left_on
         from ins join clients c on c.id = ins.client_id",
    )
    .bind(id)
    .bind(req.client_id)
    .bind(req.joined_on.unwrap_or(today))
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| {
        ApiError::on_constraint(
            e,
            &[
                (
                    "group_members_client_id_fkey",
                    "client_id",
                    "no such client",
                ),
                (
                    "group_members_current",
                    "client_id",
                    "already a member or on the waitlist",
                ),
            ],
        )
    })?;
    tx.commit().await?;
    tracing::info!(client.id = %member.client_id, status = %member.status, "client enrolled");
    Ok((StatusCode::CREATED, Json(member)))
}

#[derive(Deserialize)]
struct Unenrol {
    /// Defaults to today (Moscow).
    left_on: Option<NaiveDate>,
}

/// Ends a membership (or leaves the waitlist); a freed seat goes to the first waitlisted client.
#[utoipa::path(
    delete,
    path = "/api/groups/{id}/members/{client_id}",
    tag = "groups",
    params(("id" = Uuid, Path), ("client_id" = Uuid, Path), ("left_on" = Option<NaiveDate>, Query)),
    responses((status = 200, description = "OK", body = serde_json::Value), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, group.id = %id, client.id = %client_id))]
async fn unenrol(
    State(app): State<AppState>,
    user: CurrentUser,
    Path((id, client_id)): Path<(Uuid, Uuid)>,
    AppQuery(q): AppQuery<Unenrol>,
) -> Result<Json<Value>, ApiError> {
    user.require(WRITERS)?;
    let today = Utc::now().with_timezone(&shared::time::MOSCOW).date_naive();
    let left_on = q.left_on.unwrap_or(today);
    let mut tx = app.db.begin().await?;
    sqlx::query("select 1 from study_groups where id = $1 for update")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(ApiError::NotFound)?;
    let left = sqlx::query(
        "update group_members set status = 'left', left_on = $3, updated_at = now()
         where group_id = $1 and client_id = $2 and status in ('active', 'waitlist')",
    )
    .bind(id)
    .bind(client_id)
    .bind(left_on)
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        ApiError::on_constraint(
            e,
            &[(
                "group_members_dates",
                "left_on",
                "before the day the client joined",
            )],
        )
    })?;
    if left.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    let promoted: Option<Uuid> = sqlx::query_scalar(
        "update group_members set status = 'active', joined_on = $2, updated_at = now()
         where id = (
             select m.id from group_members m join study_groups g on g.id = m.group_id
             where m.group_id = $1 and m.status = 'waitlist'
               and g.capacity > (select count(*) from group_members a
                                 where a.group_id = $1 and a.status = 'active')
             order by m.created_at limit 1)
         returning client_id",
    )
    .bind(id)
    .bind(left_on)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(
        json!({"left": client_id, "promoted_from_waitlist": promoted}),
    ))
}
