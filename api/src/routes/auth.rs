//! `POST /api/auth/login` (email + password → bearer token) and `GET /api/auth/me`.
use axum::{extract::State, Json};
use serde::{Deserialize, Serialize};

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{
        authenticate, hashing_slot, password_hash, password_problem, set_password,
        verify_password_holding, CurrentUser,
    },
    http::{ApiError, AppJson, FieldErrors},
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(me))
        .routes(routes!(change_password))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    #[schema(value_type = String, required = true, min_length = 1, pattern = r"^[^\u0000]*[^\u0000\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$")]
    pub email: Option<String>,
    #[schema(value_type = String, required = true, min_length = 1, pattern = r"^[^\u0000]*$")]
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
    let user = authenticate(&app, &email, password).await?;
    Ok(Json(TokenResponse {
        access_token: app.tokens.issue(user.id, user.role, user.token_version)?,
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// Must match the current password (else 422 naming it).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 256, pattern = r"^[^\u0000]*$")]
    pub current_password: Option<String>,
    /// 8 to 256 characters.
    #[schema(value_type = String, required = true, min_length = 8, max_length = 256, pattern = r"^[^\u0000]*$")]
    pub new_password: Option<String>,
}

/// Changes the caller's own password. Every token, page session and signed link issued before
/// stops working at once (this request's token too): the answer carries a new token.
#[utoipa::path(
    post,
    path = "/api/auth/password",
    tag = "auth",
    request_body = PasswordChange,
    responses((status = 200, description = "changed; a new token (older ones are revoked)", body = TokenResponse), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named (a wrong current password is `current_password`)", body = crate::http::error::ErrorBody), (status = 503, description = "no password hashing slot free (Retry-After)", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn change_password(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(req): AppJson<PasswordChange>,
) -> Result<Json<TokenResponse>, ApiError> {
    let mut fields = FieldErrors::new();
    let current = req.current_password.unwrap_or_default();
    let new = req.new_password.unwrap_or_default();
    if current.is_empty() || current.chars().count() > crate::auth::MAX_PASSWORD_CHARS {
        fields.insert("current_password".into(), "required".into());
    }
    if let Some(problem) = password_problem(&new) {
        fields.insert("new_password".into(), problem);
    }
    if !fields.is_empty() {
        return Err(ApiError::Validation(fields));
    }
    let hash = password_hash(&app.db, user.id).await?;
    let slot = hashing_slot(&app).await?;
    if !verify_password_holding(current, hash, Some(slot)).await {
        tracing::warn!("password change refused: wrong current password");
        return Err(ApiError::field("current_password", "does not match"));
    }
    let slot = hashing_slot(&app).await?;
    let version = set_password(&app.db, &user, &new, slot).await?;
    tracing::info!("password changed; earlier tokens revoked");
    Ok(Json(TokenResponse {
        access_token: app.tokens.issue(user.id, user.role, version)?,
        token_type: "Bearer",
        expires_in: app.tokens.ttl_secs,
    }))
}
