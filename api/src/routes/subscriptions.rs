//! Season tickets: plans, the sale of a subscription (with its invoice), payments (an invoice
//! paid in full activates its subscription), freezes, and reads (rules:
//! `shared::domain::subscriptions`). Managers and admins write; every role reads.
use crate::http::AppPath;
use axum::{extract::State, http::StatusCode, Json};
use chrono::NaiveDate;
use serde::Deserialize;
use shared::domain::{
    subscriptions::{self, Invoice, NewPayment, NewPlan, Payment, Plan, Sale, Subscription},
    Page,
};
use uuid::Uuid;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::CurrentUser,
    http::{page, ApiError, AppJson, AppQuery},
    routes::directory::WRITERS,
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

#[derive(Deserialize)]
struct PageQuery {
    client_id: Option<Uuid>,
    limit: Option<i64>,
    offset: Option<i64>,
}

// ----- plans -----

#[utoipa::path(
    post,
    path = "/api/subscription-plans",
    tag = "subscriptions",
    request_body = subscriptions::NewPlan,
    responses((status = 201, description = "OK", body = subscriptions::Plan), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn create_plan(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(req): AppJson<NewPlan>,
) -> Result<(StatusCode, Json<Plan>), ApiError> {
    user.require(WRITERS)?;
    Ok((
        StatusCode::CREATED,
        Json(subscriptions::create_plan(&app.db, &req).await?),
    ))
}

#[utoipa::path(
    get,
    path = "/api/subscription-plans",
    tag = "subscriptions",
    params(("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::http::Paged<subscriptions::Plan>), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %_user.id))]
async fn list_plans(
    State(app): State<AppState>,
    _user: CurrentUser,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<Page<Plan>>, ApiError> {
    let page = page(q.limit, q.offset)?;
    Ok(Json(subscriptions::plans(&app.db, page).await?))
}

// ----- subscriptions -----

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SaleRequest {
    client_id: Uuid,
    plan_id: Uuid,
    /// Default: today (Moscow).
    begins_on: Option<NaiveDate>,
}

/// Sells a subscription: the subscription (inactive until paid; a free plan's is active at
/// once) and its invoice, in one transaction, by one statement.
#[utoipa::path(
    post,
    path = "/api/subscriptions",
    tag = "subscriptions",
    request_body = SaleRequest,
    responses((status = 201, description = "the subscription and its invoice", body = subscriptions::Sale), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn sell(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(req): AppJson<SaleRequest>,
) -> Result<(StatusCode, Json<Sale>), ApiError> {
    user.require(WRITERS)?;
    let begins_on = req.begins_on.unwrap_or_else(shared::time::today);
    let sale = subscriptions::sell(&app.db, req.client_id, req.plan_id, begins_on).await?;
    tracing::info!(subscription.id = %sale.subscription.id, "subscription sold");
    Ok((StatusCode::CREATED, Json(sale)))
}

#[utoipa::path(
    get,
    path = "/api/subscriptions/{id}",
    tag = "subscriptions",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = subscriptions::Subscription), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 404, description = "not found (or, to a teacher, not of their groups' members)", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, subscription.id = %id))]
async fn show_subscription(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<Subscription>, ApiError> {
    let subscription = subscriptions::fetch(&app.db, id).await?;
    if !user
        .reader()
        .sees_client(&app.db, subscription.client_id)
        .await?
    {
        return Err(ApiError::NotFound);
    }
    Ok(Json(subscription))
}

#[utoipa::path(
    get,
    path = "/api/subscriptions",
    tag = "subscriptions",
    params(("client_id" = Option<Uuid>, Query), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::http::Paged<subscriptions::Subscription>), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn list_subscriptions(
    State(app): State<AppState>,
    user: CurrentUser,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<Page<Subscription>>, ApiError> {
    let page = page(q.limit, q.offset)?;
    Ok(Json(
        subscriptions::list(&app.db, q.client_id, user.reader(), page).await?,
    ))
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
    responses((status = 200, description = "OK", body = subscriptions::Subscription), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody), (status = 409, description = "conflict (e.g. a booking clash)", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, subscription.id = %id))]
async fn freeze(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
    AppJson(req): AppJson<Freeze>,
) -> Result<Json<Subscription>, ApiError> {
    user.require(WRITERS)?;
    Ok(Json(
        subscriptions::freeze(&app.db, id, req.from, req.to).await?,
    ))
}

// ----- invoices and payments -----

#[utoipa::path(
    get,
    path = "/api/invoices",
    tag = "invoices",
    params(("client_id" = Option<Uuid>, Query), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::http::Paged<subscriptions::Invoice>), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this (teachers)", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn list_invoices(
    State(app): State<AppState>,
    user: CurrentUser,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<Page<Invoice>>, ApiError> {
    // Money is the office's business, not a teacher's.
    user.require(WRITERS)?;
    let page = page(q.limit, q.offset)?;
    Ok(Json(
        subscriptions::invoices(&app.db, q.client_id, page).await?,
    ))
}

/// Records a payment. An invoice paid in full becomes `paid` and activates its subscription,
/// in the same transaction; overpaying is refused.
#[utoipa::path(
    post,
    path = "/api/payments",
    tag = "payments",
    request_body = subscriptions::NewPayment,
    responses((status = 201, description = "OK", body = subscriptions::Payment), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 409, description = "conflict (e.g. a booking clash)", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn pay(
    State(app): State<AppState>,
    user: CurrentUser,
    headers: axum::http::HeaderMap,
    AppJson(req): AppJson<NewPayment>,
) -> Result<(StatusCode, Json<Payment>), ApiError> {
    user.require(WRITERS)?;
    // The payment and the client's receipt notice in one transaction.
    let mut tx = app.db.begin().await?;
    let payment = subscriptions::pay(&mut *tx, &req, user.id).await?;
    let notices = subscriptions::payment_notice(&mut *tx, &payment, req.amount).await?;
    let enqueued = jobs::kinds::notifications::notify(
        &mut tx,
        &crate::http::requester(&user, &headers),
        &notices,
    )
    .await?;
    tx.commit().await?;
    jobs::committed(&enqueued);
    Ok((StatusCode::CREATED, Json(payment)))
}
