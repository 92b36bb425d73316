//! `POST /api/auth/login` (email + password → bearer token) and `GET /api/auth/me`.
use axum::{extract::State, Json};
use serde::{Deserialize, Serialize};

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{authenticate, CurrentUser},
    http::{ApiError, AppJson, FieldErrors},
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(me))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Login {
    pub email: Option<String>,
    pub password: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
}

#[utoipa::path(
    post,
    path = "/api/auth/login",
    tag = "auth",
    request_body = Login,
    responses((status = 200, description = "OK", body = TokenResponse), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody), (status = 503, description = "no password hashing slot free (Retry-After)", body = crate::http::error::ErrorBody)),
)]
#[tracing::instrument(skip_all)]
async fn login(
    State(app): State<AppState>,
    AppJson(req): AppJson<Login>,
) -> Result<Json<TokenResponse>, ApiError> {
    let mut fields = FieldErrors::new();
    let email = req.email.unwrap_or_default().trim().to_string();
    let password = req.password.unwrap_or_default();
    if email.is_empty() {
        fields.insert("email".into(), "required".into());
    }
    if password.is_empty() {
        fields.insert("password".into(), "required".into());
    }
    if !fields.is_empty() {
        return Err(ApiError::Validation(fields));
    }
    let (id, role) = authenticate(&app, &email, password).await?;
    Ok(Json(TokenResponse {
        access_token: app.tokens.issue(id, role)?,
        token_type: "Bearer",
        expires_in: app.tokens.ttl_secs,
    }))
}

#[utoipa::path(
    get,
    path = "/api/auth/me",
    tag = "auth",
    responses((status = 200, description = "OK", body = CurrentUser), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
async fn me(user: CurrentUser) -> Json<CurrentUser> {
    Json(user)
}
