//! User administration (admins): list, create (an e-mail already taken is a 409) and change a
//! user's role, active flag and PBX extension. Deactivating a user ends their tokens at once.
use axum::{extract::State, http::StatusCode, Json};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use utoipa_axum::{router::OpenApiRouter, routes};

use shared::domain::{
    page::{fetch, page_sql, Cte},
    Page,
};

use crate::{
    auth::{create_user, hashing_slot, password_problem, CurrentUser, Role},
    http::{page, ApiError, AppJson, AppPath, AppQuery, FieldErrors},
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(update))
}

#[derive(Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct UserRow {
    id: Uuid,
    email: String,
    role: String,
    active: bool,
    /// The PBX extension calls ring first.
    extension: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
}

const USER: &str = "u.id, u.email, u.role, u.active, u.extension, u.created_at";

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
        USER,
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
#[serde(deny_unknown_fields)]
struct NewUser {
    #[schema(value_type = String, required = true, max_length = 254, pattern = r"^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:[\x21-\x3f\x41-\x7e]+@[\x21-\x2d\x2f-\x3f\x41-\x7e][\x21-\x3f\x41-\x7e]*\.[\x21-\x3f\x41-\x7e]*[\x21-\x2d\x2f-\x3f\x41-\x7e])[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$")]
    email: Option<String>,
    /// 8 to 256 characters.
    #[schema(value_type = String, required = true, min_length = 8, max_length = 256, pattern = r"^[^\u0000]*$")]
    password: Option<String>,
    #[schema(value_type = Role, required = true)]
    role: Option<String>,
    /// PBX extension (3–5 digits) that click-to-call rings first; `null` clears it.
    #[serde(default, deserialize_with = "shared::domain::nullable")]
    #[schema(value_type = Option<String>, pattern = "^[0-9]{3,5}$")]
    extension: Option<Option<String>>,
}

fn extension_problem(extension: &Option<Option<String>>) -> Option<&'static str> {
    match extension {
        Some(Some(e)) if !(3..=5).contains(&e.len()) || !e.bytes().all(|b| b.is_ascii_digit()) => {
            Some("3 to 5 digits, e.g. 101")
        }
        _ => None,
    }
}

#[utoipa::path(
    post,
    path = "/api/users",
    tag = "users",
    request_body = NewUser,
    responses((status = 201, description = "created", body = UserRow), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 409, description = "a user with this e-mail exists", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody), (status = 503, description = "no password hashing slot free (Retry-After)", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn create(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(req): AppJson<NewUser>,
) -> Result<(StatusCode, Json<UserRow>), ApiError> {
    user.require(&[Role::Admin])?;
    let mut fields = FieldErrors::new();
    let email = req.email.unwrap_or_default();
    let email = email.trim();
    if shared::domain::clients::Email::parse(email).is_none() {
        fields.insert(
            "email".into(),
            shared::domain::clients::Email::EXPECTED.into(),
        );
    }
    let password = req.password.unwrap_or_default();
    if let Some(problem) = password_problem(&password) {
        fields.insert("password".into(), problem);
    }
    let role = req.role.as_deref().and_then(Role::parse);
    if role.is_none() {
        fields.insert("role".into(), "one of admin, manager, teacher".into());
    }
    if let Some(problem) = extension_problem(&req.extension) {
        fields.insert("extension".into(), problem.into());
    }
    let Some(role) = role.filter(|_| fields.is_empty()) else {
        return Err(ApiError::Validation(fields));
    };
    let slot = hashing_slot(&app).await?;
    let id = create_user(&app.db, email, &password, role, slot).await?;
    if let Some(extension) = &req.extension {
        shared::domain::calls::set_extension(&app.db, id, extension.as_deref()).await?;
    }
    tracing::info!(created.id = %id, role = role.as_str(), "user created");
    Ok((StatusCode::CREATED, Json(fetch_user(&app, id).await?)))
}

async fn fetch_user(app: &AppState, id: Uuid) -> Result<UserRow, ApiError> {
    let sql = format!("select {USER} from users u where u.id = $1");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&app.db)
        .await?
        .ok_or(ApiError::NotFound)
}

/// What may change about a user (each field optional; `extension: null` clears it).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    #[schema(value_type = Option<Role>)]
    role: Option<String>,
    /// `false` deactivates: the user's tokens stop working at once (also after a later
    /// reactivation: they log in again).
    active: Option<bool>,
    #[serde(default, deserialize_with = "shared::domain::nullable")]
    #[schema(value_type = Option<String>, pattern = "^[0-9]{3,5}$")]
    extension: Option<Option<String>>,
}

#[utoipa::path(
    patch,
    path = "/api/users/{id}",
    tag = "users",
    params(("id" = Uuid, Path)),
    request_body = UserPatch,
    responses((status = 200, description = "the user as changed", body = UserRow), (status = 400, description = "the id is not a UUID", body = crate::http::error::ErrorBody), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "no such user", body = crate::http::error::ErrorBody), (status = 409, description = "an admin cannot demote or deactivate themselves, nor leave no active admin", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, target.id = %id))]
async fn update(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
    AppJson(req): AppJson<UserPatch>,
) -> Result<Json<UserRow>, ApiError> {
    user.require(&[Role::Admin])?;
    let mut fields = FieldErrors::new();
    let role = match req.role.as_deref() {
        None => None,
        Some(r) => match Role::parse(r) {
            Some(role) => Some(role),
            None => {
                fields.insert("role".into(), "one of admin, manager, teacher".into());
                None
            }
        },
    };
    if let Some(problem) = extension_problem(&req.extension) {
        fields.insert("extension".into(), problem.into());
    }
    if !fields.is_empty() {
        return Err(ApiError::Validation(fields));
    }
    // The last way back in must stay open: no admin locks themselves out.
    if id == user.id && (req.active == Some(false) || role.is_some_and(|r| r != Role::Admin)) {
        return Err(ApiError::Conflict(
            "an admin cannot demote or deactivate themselves; ask another admin".into(),
        ));
    }
    let mut tx = app.db.begin().await?;
    // Changes of users' roles and active flags one at a time: two admins demoting each other
    // at once would otherwise both succeed and leave nobody to undo it.
    sqlx::query("select pg_advisory_xact_lock(hashtext('artsvao:users:admins'))")
        .execute(&mut *tx)
        .await?;
    let still_admin: bool = sqlx::query_scalar(
        "select exists (select 1 from users where id = $1 and active and role = 'admin')",
    )
    .bind(user.id)
    .fetch_one(&mut *tx)
    .await?;
    if !still_admin {
        return Err(ApiError::Forbidden);
    }
    let changed: Option<bool> = sqlx::query_scalar(
        "update users set role = coalesce($2, role), active = coalesce($3, active),
             token_version = token_version + (active and $3 is false)::int,
             updated_at = now()
         where id = $1 returning active",
    )
    .bind(id)
    .bind(role.map(Role::as_str))
    .bind(req.active)
    .fetch_optional(&mut *tx)
    .await?;
    changed.ok_or(ApiError::NotFound)?;
    let admins: i64 =
        sqlx::query_scalar("select count(*) from users where role = 'admin' and active")
            .fetch_one(&mut *tx)
            .await?;
    if admins == 0 {
        return Err(ApiError::Conflict(
            "this would leave no active admin".into(),
        ));
    }
    if let Some(extension) = &req.extension {
        shared::domain::calls::set_extension(&mut *tx, id, extension.as_deref()).await?;
    }
    tx.commit().await?;
    tracing::info!(role = ?role.map(Role::as_str), active = ?req.active, "user changed");
    Ok(Json(fetch_user(&app, id).await?))
}
