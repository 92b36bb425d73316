//! Season tickets: plans, the sale of a subscription (with its invoice, in one transaction),
//! payments (an invoice paid in full activates its subscription), freezes, and reads.
//! Managers and admins write; every role reads.
use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::CurrentUser,
    error::{ApiError, AppJson, AppQuery, FieldErrors},
    routes::{
        directory::{check_name, WRITERS},
        paged, paged_sql, Page,
    },
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_plans, create_plan))
        .routes(routes!(list_subscriptions, sell))
        .routes(routes!(show_subscription))
        .routes(routes!(freeze))
        .routes(routes!(list_invoices))
        .routes(routes!(pay))
}

fn today() -> NaiveDate {
    Utc::now().with_timezone(&shared::time::MOSCOW).date_naive()
}

fn validation(fields: FieldErrors) -> Result<(), ApiError> {
    if fields.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(fields))
    }
}

// ----- plans -----

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewPlan {
    name: String,
    /// Null or absent: unlimited visits.
    visits: Option<i32>,
    validity_days: i32,
    /// In roubles, e.g. "4500.00" or 4500.
    price: f64,
    group_ids: Vec<Uuid>,
    #[serde(default)]
    max_freeze_days: i32,
}

#[utoipa::path(
    post,
    path = "/api/subscription-plans",
    tag = "subscriptions",
    request_body = NewPlan,
    responses((status = 201, description = "OK", body = serde_json::Value), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn create_plan(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(req): AppJson<NewPlan>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    user.require(WRITERS)?;
    let mut fields = FieldErrors::new();
    check_name(&mut fields, "name", &req.name, 200);
    if req.visits.is_some_and(|v| !(1..=365).contains(&v)) {
        fields.insert(
            "visits".into(),
            "between 1 and 365, or null for unlimited".into(),
        );
    }
    if !(1..=730).contains(&req.validity_days) {
        fields.insert("validity_days".into(), "between 1 and 730".into());
    }
    if !(0.0..=10_000_000.0).contains(&req.price) || !req.price.is_finite() {
        fields.insert("price".into(), "between 0 and 10000000".into());
    }
    if req.group_ids.is_empty() || req.group_ids.len() > 1000 {
        fields.insert("group_ids".into(), "between 1 and 1000 groups".into());
    }
    if !(0..=365).contains(&req.max_freeze_days) {
        fields.insert("max_freeze_days".into(), "between 0 and 365".into());
    }
    validation(fields)?;
    let plan: Value = sqlx::query_scalar(
        "with p as (
             insert into subscription_plans (name, visits, validity_days, price, max_freeze_days)
             values ($1, $2, $3, round($4::numeric, 2), $5) returning *
         ), g as (
             insert into plan_groups (plan_id, group_id)
             select p.id, g from p, unnest($6::uuid[]) as g on conflict do nothing
         )
         select jsonb_build_object('id', p.id, 'name', p.name, 'visits', p.visits,
                    'validity_days', p.validity_days, 'price', p.price::text,
                    'max_freeze_days', p.max_freeze_days, 'group_ids', $6::uuid[],
                    'active', p.active)
         from p",
    )
    .bind(req.name.trim())
    .bind(req.visits)
    .bind(req.validity_days)
    .bind(req.price)
    .bind(req.max_freeze_days)
    .bind(&req.group_ids)
    .fetch_one(&app.db)
    .await
    .map_err(|e| {
        ApiError::on_constraint(
            e,
            &[(
                "plan_groups_group_id_fkey",
                "group_ids",
                "a group does not exist",
            )],
        )
    })?;
    Ok((StatusCode::CREATED, Json(plan)))
}

#[derive(Deserialize)]
struct PageQuery {
    client_id: Option<Uuid>,
    limit: Option<i64>,
    offset: Option<i64>,
}

impl PageQuery {
    fn page(&self) -> Result<(i64, i64), ApiError> {
        Page {
            limit: self.limit,
            offset: self.offset,
        }
        .validate()
    }
}

#[utoipa::path(
    get,
    path = "/api/subscription-plans",
    tag = "subscriptions",
    params(("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = serde_json::Value), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id))]
async fn list_plans(
    State(app): State<AppState>,
    _user: CurrentUser,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = q.page()?;
    let (total, items): (i64, Value) = sqlx::query_as(
        "select (select count(*) from subscription_plans where active),
                coalesce((select jsonb_agg(p) from (
                    select p.id, p.name, p.visits, p.validity_days, p.price::text as price,
                           p.max_freeze_days, p.active,
                           array(select group_id from plan_groups g where g.plan_id = p.id
                                 order by group_id) as group_ids
                    from subscription_plans p where p.active
                    order by p.name, p.id limit $1 offset $2) p), '[]')",
    )
    .bind(limit)
    .bind(offset)
    .fetch_one(&app.db)
    .await?;
    Ok(Json(json!({"items": items, "total": total})))
}

// ----- subscriptions -----

#[derive(Serialize, sqlx::FromRow, utoipa::ToSchema)]
struct Subscription {
    id: Uuid,
    client_id: Uuid,
    plan_id: Uuid,
    visits_total: Option<i32>,
    visits_used: i32,
    visits_left: Option<i32>,
    visits_burned: i32,
    begins_on: NaiveDate,
    ends_on: NaiveDate,
    freeze_from: Option<NaiveDate>,
    freeze_to: Option<NaiveDate>,
    /// inactive (not paid), active, frozen (today within the freeze), ended.
    status: String,
    price: String,
    created_at: DateTime<Utc>,
}

/// A subscription as the API shows it, from `s`; `$today` is the Moscow date for `frozen`.
const SUBSCRIPTION: &str = "s.id, s.client_id, s.plan_id, s.visits_total, s.visits_used, \
     s.visits_total - s.visits_used as visits_left, s.visits_burned, s.begins_on, s.ends_on, \
     s.freeze_from, s.freeze_to, \
     case when s.status = 'active' and s.freeze_from is not null \
               and current_date_msk() between s.freeze_from and s.freeze_to then 'frozen' \
          else s.status end as status, \
     s.price::text as price, s.created_at";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Sale {
    client_id: Uuid,
    plan_id: Uuid,
    /// Default: today (Moscow).
    begins_on: Option<NaiveDate>,
}

/// Sells a subscription: the subscription (inactive until paid) and its invoice, in one
/// transaction, by one statement.
#[utoipa::path(
    post,
    path = "/api/subscriptions",
    tag = "subscriptions",
    request_body = Sale,
    responses((status = 201, description = "{subscription, invoice}", body = serde_json::Value), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn sell(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(req): AppJson<Sale>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    user.require(WRITERS)?;
    let begins_on = req.begins_on.unwrap_or_else(today);
    if begins_on < today() - Duration::days(31) {
        return Err(ApiError::field("begins_on", "at most a month in the past"));
    }
    let row: Option<(Subscription, Value)> = sqlx::query_as::<_, SaleRow>(sqlx::AssertSqlSafe(
        format!(
            "with p as (select * from subscription_plans where id = $2 and active),
             s as (
                 insert into subscriptions (client_id, plan_id, visits_total, begins_on, ends_on, price)
                 select $1, p.id, p.visits, $3, $3 + p.validity_days - 1, p.price from p
                 returning *
             ), i as (
                 insert into invoices (client_id, subscription_id, amount)
                 select s.client_id, s.id, s.price from s
                 returning id, amount::text as amount, status
             )
             select {SUBSCRIPTION},
                    jsonb_build_object('id', i.id, 'amount', i.amount, 'status', i.status) as invoice
             from s, i"
        ),
    ))
    .bind(req.client_id)
    .bind(req.plan_id)
    .bind(begins_on)
    .fetch_optional(&app.db)
    .await
    .map_err(|e| {
        ApiError::on_constraint(
            e,
            &[("subscriptions_client_id_fkey", "client_id", "no such client")],
        )
    })?
    .map(|r| (r.subscription, r.invoice));
    let (subscription, invoice) =
        row.ok_or_else(|| ApiError::field("plan_id", "no such active plan"))?;
    tracing::info!(subscription.id = %subscription.id, "subscription sold");
    Ok((
        StatusCode::CREATED,
        Json(json!({"subscription": subscription, "invoice": invoice})),
    ))
}

#[derive(sqlx::FromRow)]
struct SaleRow {
    #[sqlx(flatten)]
    subscription: Subscription,
    invoice: Value,
}

async fn fetch_subscription(
    db: impl sqlx::PgExecutor<'_>,
    id: Uuid,
) -> Result<Subscription, ApiError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {SUBSCRIPTION} from subscriptions s where s.id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(ApiError::NotFound)
}

#[utoipa::path(
    get,
    path = "/api/subscriptions/{id}",
    tag = "subscriptions",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = Subscription), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id, subscription.id = %id))]
async fn show_subscription(
    State(app): State<AppState>,
    _user: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Subscription>, ApiError> {
    Ok(Json(fetch_subscription(&app.db, id).await?))
}

#[utoipa::path(
    get,
    path = "/api/subscriptions",
    tag = "subscriptions",
    params(("client_id" = Option<Uuid>, Query), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::routes::Paged<Subscription>), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id))]
async fn list_subscriptions(
    State(app): State<AppState>,
    _user: CurrentUser,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = q.page()?;
    let row = sqlx::query_as(paged_sql(
        "select * from subscriptions where $1::uuid is null or client_id = $1",
        "s",
        SUBSCRIPTION,
        "s.ends_on desc, s.id",
        2,
    ))
    .bind(q.client_id)
    .bind(limit)
    .bind(offset)
    .fetch_one(&app.db)
    .await?;
    Ok(paged(row))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Freeze {
    from: NaiveDate,
    to: NaiveDate,
}

/// Freezes an active subscription from a date (today or later: never retroactive) to a date;
/// its end moves by the freeze's length. One freeze per subscription, at most the plan's
/// `max_freeze_days`.
#[utoipa::path(
    post,
    path = "/api/subscriptions/{id}/freeze",
    tag = "subscriptions",
    params(("id" = Uuid, Path)),
    request_body = Freeze,
    responses((status = 200, description = "OK", body = Subscription), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody), (status = 409, description = "conflict (e.g. a booking clash)", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, subscription.id = %id))]
async fn freeze(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
    AppJson(req): AppJson<Freeze>,
) -> Result<Json<Subscription>, ApiError> {
    user.require(WRITERS)?;
    let mut fields = FieldErrors::new();
    if req.from < today() {
        fields.insert("from".into(), "a freeze cannot start in the past".into());
    }
    if req.to < req.from {
        fields.insert("to".into(), "must not be before from".into());
    }
    validation(fields)?;
    let days = (req.to - req.from).num_days() + 1;
    let mut tx = app.db.begin().await?;
    let current: Option<(String, Option<NaiveDate>, NaiveDate, i32)> = sqlx::query_as(
        "select s.status, s.freeze_from, s.ends_on, p.max_freeze_days
         from subscriptions s join subscription_plans p on p.id = s.plan_id
         where s.id = $1 for update of s",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let (status, frozen_before, ends_on, max_days) = current.ok_or(ApiError::NotFound)?;
    if status != "active" {
        return Err(ApiError::Conflict(format!(
            "only an active subscription can be frozen (this one is {status})"
        )));
    }
    if frozen_before.is_some() {
        return Err(ApiError::Conflict(
            "this subscription was already frozen".into(),
        ));
    }
    if days > i64::from(max_days) {
        return Err(ApiError::field(
            "to",
            format!("the plan allows at most {max_days} days of freeze"),
        ));
    }
    if req.from > ends_on {
        return Err(ApiError::field("from", "after the subscription ends"));
    }
    sqlx::query(
        "update subscriptions set freeze_from = $2, freeze_to = $3,
             ends_on = ends_on + $4::int, updated_at = now()
         where id = $1",
    )
    .bind(id)
    .bind(req.from)
    .bind(req.to)
    .bind(days as i32)
    .execute(&mut *tx)
    .await?;
    let subscription = fetch_subscription(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(Json(subscription))
}

// ----- invoices and payments -----

const INVOICE: &str = "i.id, i.client_id, i.subscription_id, i.amount::text as amount, i.status, \
     coalesce((select sum(p.amount) from payments p where p.invoice_id = i.id), 0)::text as paid, \
     i.created_at, i.paid_at";

#[utoipa::path(
    get,
    path = "/api/invoices",
    tag = "invoices",
    params(("client_id" = Option<Uuid>, Query), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = serde_json::Value), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id))]
async fn list_invoices(
    State(app): State<AppState>,
    _user: CurrentUser,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = q.page()?;
    let row = sqlx::query_as(paged_sql(
        "select * from invoices where $1::uuid is null or client_id = $1",
        "i",
        INVOICE,
        "i.created_at desc, i.id",
        2,
    ))
    .bind(q.client_id)
    .bind(limit)
    .bind(offset)
    .fetch_one(&app.db)
    .await?;
    Ok(paged(row))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Payment {
    invoice_id: Uuid,
    amount: f64,
    method: String,
}

/// Records a payment. An invoice paid in full becomes `paid` and activates its subscription,
/// in the same transaction; overpaying is refused.
#[utoipa::path(
    post,
    path = "/api/payments",
    tag = "payments",
    request_body = Payment,
    responses((status = 201, description = "OK", body = serde_json::Value), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 409, description = "conflict (e.g. a booking clash)", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn pay(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(req): AppJson<Payment>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    user.require(WRITERS)?;
    let mut fields = FieldErrors::new();
    if !(req.amount > 0.0 && req.amount <= 10_000_000.0) {
        fields.insert("amount".into(), "a positive amount".into());
    }
    if !["cash", "card", "transfer"].contains(&req.method.as_str()) {
        fields.insert("method".into(), "one of cash, card, transfer".into());
    }
    validation(fields)?;
    let mut tx = app.db.begin().await?;
    let invoice: Option<(String, f64, f64)> = sqlx::query_as(
        "select i.status, i.amount::float8,
                coalesce((select sum(p.amount) from payments p where p.invoice_id = i.id), 0)::float8
         from invoices i where i.id = $1 for update",
    )
    .bind(req.invoice_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((status, amount, paid)) = invoice else {
        return Err(ApiError::field("invoice_id", "no such invoice"));
    };
    if status != "open" {
        return Err(ApiError::Conflict(format!("the invoice is {status}")));
    }
    let amount_cents = (amount * 100.0).round() as i64;
    let paid_cents = (paid * 100.0).round() as i64;
    let pay_cents = (req.amount * 100.0).round() as i64;
    if paid_cents + pay_cents > amount_cents {
        return Err(ApiError::field(
            "amount",
            format!(
                "more than the {:.2} left to pay",
                (amount_cents - paid_cents) as f64 / 100.0
            ),
        ));
    }
    let result: Value = sqlx::query_scalar(
        "with p as (
             insert into payments (invoice_id, amount, method, created_by)
             values ($1, $2::numeric / 100, $3, $4) returning id
         ), i as (
             update invoices set status = case when $5 then 'paid' else status end,
                 paid_at = case when $5 then now() else paid_at end
             where id = $1 returning id, status, amount::text as amount
         ), s as (
             update subscriptions set status = 'active', updated_at = now()
             where $5 and id = (select subscription_id from invoices where id = $1)
               and status = 'inactive'
             returning id
         )
         select jsonb_build_object(
             'payment_id', (select id from p),
             'invoice', (select jsonb_build_object('id', id, 'status', status, 'amount', amount,
                                                   'paid', (($6::numeric) / 100)::numeric(12, 2)::text)
                         from i),
             'activated_subscription', (select id from s))",
    )
    .bind(req.invoice_id)
    .bind(pay_cents)
    .bind(&req.method)
    .bind(user.id)
    .bind(paid_cents + pay_cents == amount_cents)
    .bind(paid_cents + pay_cents)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(result)))
}
