//! User administration (admins only): list users and create or update one.
use axum::{extract::State, http::StatusCode, routing::get, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::{
    auth::{upsert_user, CurrentUser, Role},
    error::{ApiError, AppJson, AppQuery, FieldErrors},
    routes::Page,
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/users", get(list).post(create))
}

#[derive(Serialize, sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    role: String,
    active: bool,
    created_at: chrono::DateTime<chrono::Utc>,
}

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

#[derive(Deserialize)]
struct NewUser {
    email: Option<String>,
    password: Option<String>,
    role: Option<String>,
}

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
