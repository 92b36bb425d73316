//! User administration (admins only): list users and create or update one.
use axum::{extract::State, http::StatusCode, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{upsert_user, CurrentUser, Role},
    error::{ApiError, AppJson, AppQuery, FieldErrors},
    routes::Page,
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
    created_at: chrono::DateTime<chrono::Utc>,
}

#[utoipa::path(
    get,
    path = "/api/users",
    tag = "users",
    params(("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::routes::Paged<UserRow>), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn list(
    State(app): State<AppState>,
    user: CurrentUser,
    AppQuery(page): AppQuery<Page>,
) -> Result<Json<serde_json::Value>, ApiError> {
    user.require(&[Role::Admin])?;
    let (limit, offset) = page.validate()?;
    let total: i64 = sqlx::query_scalar("select count(*) from users")
        .fetch_one(&app.db)
        .await?;
    let items: Vec<UserRow> = sqlx::query_as(
        "select id, email, role, active, created_at from users order by email limit $1 offset $2",
    )
    .bind(limit)
    .bind(offset)
    .fetch_all(&app.db)
    .await?;
    Ok(Json(json!({"items": items, "total": total})))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct NewUser {
    email: Option<String>,
    password: Option<String>,
    role: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/users",
    tag = "users",
    request_body = NewUser,
    responses((status = 201, description = "OK", body = serde_json::Value), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
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
    let Some(role) = role.filter(|_| fields.is_empty()) else {
        return Err(ApiError::Validation(fields));
    };
    let id = upsert_user(&app.db, &email, &password, role).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "email": email.trim(), "role": role})),
    ))
}
