//! User administration (admins only): list users and create or update one.
use axum::{extract::State, http::StatusCode, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use utoipa_axum::{router::OpenApiRouter, routes};

use shared::domain::{
    page::{fetch, page_sql, Cte},
    Page,
};

use crate::{
    auth::{upsert_user_holding, CurrentUser, Role},
    http::{page, ApiError, AppJson, AppQuery, FieldErrors},
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create))
}

#[derive(Serialize, sqlx::FromRow, utoipa::ToSchema)]
struct UserRow {
    id: Uuid,
    email: String,
    role: String,
    active: bool,
    /// The PBX extension calls ring first.
    extension: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
}

#[utoipa::path(
    get,
    path = "/api/users",
    tag = "users",
    params(("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::http::Paged<UserRow>), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn list(
    State(app): State<AppState>,
    user: CurrentUser,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<Page<UserRow>>, ApiError> {
    user.require(&[Role::Admin])?;
    let page = page(q.limit, q.offset)?;
    let query = sqlx::query(page_sql(
        "select * from users",
        Cte::Inline,
        "u",
        "u.id, u.email, u.role, u.active, u.extension, u.created_at",
        "u.email, u.id",
        1,
    ));
    Ok(Json(fetch(&app.db, query, page).await?))
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct NewUser {
    email: Option<String>,
    password: Option<String>,
    role: Option<String>,
    /// PBX extension (3–5 digits) that click-to-call rings first; `null` clears it.
    #[serde(default, deserialize_with = "shared::domain::nullable")]
    #[schema(value_type = Option<String>)]
    extension: Option<Option<String>>,
}

#[utoipa::path(
    post,
    path = "/api/users",
    tag = "users",
    request_body = NewUser,
    responses((status = 201, description = "OK", body = serde_json::Value), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody), (status = 503, description = "no password hashing slot free (Retry-After)", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn create(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(req): AppJson<NewUser>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    user.require(&[Role::Admin])?;
    let mut fields = FieldErrors::new();
    let email = req.email.unwrap_or_default();
    if !email.contains('@') || email.trim().len() < 3 {
        fields.insert("email".into(), "expected an e-mail address".into());
    }
    let password = req.password.unwrap_or_default();
    if password.chars().count() < 8 {
        fields.insert("password".into(), "at least 8 characters".into());
    }
    let role = req.role.as_deref().and_then(Role::parse);
    if role.is_none() {
        fields.insert("role".into(), "one of admin, manager, teacher".into());
    }
    if let Some(Some(e)) = &req.extension {
        if !(3..=5).contains(&e.len()) || !e.bytes().all(|b| b.is_ascii_digit()) {
            fields.insert("extension".into(), "3 to 5 digits, e.g. 101".into());
        }
    }
    let Some(role) = role.filter(|_| fields.is_empty()) else {
        return Err(ApiError::Validation(fields));
    };
    let slot = crate::auth::hashing_slot(&app).await?;
    let id = upsert_user_holding(&app.db, &email, &password, role, Some(slot)).await?;
    if let Some(extension) = &req.extension {
        shared::domain::calls::set_extension(&app.db, id, extension.as_deref()).await?;
    }
    let extension: Option<String> = sqlx::query_scalar("select extension from users where id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "email": email.trim(), "role": role, "extension": extension})),
    ))
}
