//! Authentication: argon2 password hashes, HS256 access tokens, the `CurrentUser` extractor and
//! role checks. Every route except login, health and metrics takes a `CurrentUser`.
use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use axum::{extract::FromRequestParts, http::request::Parts};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{http::ApiError, state::AppState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Manager,
    Teacher,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Manager => "manager",
            Self::Teacher => "teacher",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "manager" => Some(Self::Manager),
            "teacher" => Some(Self::Teacher),
            _ => None,
        }
    }
}

/// The authenticated caller, loaded from the database on each request (a deactivated user
/// loses access at once, whatever their token says).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CurrentUser {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    /// What every token of this user must carry (`users.token_version`): a password change or
    /// a deactivation raises it, and older tokens, sessions and links stop working at once.
    #[serde(skip)]
    #[schema(ignore)]
    pub token_version: i32,
}

impl CurrentUser {
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    /// Whose client records this user reads: a teacher only their groups' members.
    pub fn reader(&self) -> shared::domain::Reader {
        match self.role {
            Role::Teacher => shared::domain::Reader::Teacher(self.id),
            Role::Admin | Role::Manager => shared::domain::Reader::Office,
        }
    }

    /// Whose jobs this user may see: `None` = everyone's (admins).
    pub fn job_viewer(&self) -> Option<Uuid> {
        (self.role != Role::Admin).then_some(self.id)
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    /// The user's token version when issued (tokens from before this field: 0).
    #[serde(default)]
    pub ver: i32,
}

/// What a page session token says (see [`Tokens::sign_session`]).
#[derive(Debug, Serialize, Deserialize)]
struct SessionClaims {
    sub: Uuid,
    exp: i64,
    purpose: String,
    #[serde(default)]
    ver: i32,
}

const SESSION_PURPOSE: &str = "page-session";

/// How long a signed job link works.
pub const LINK_TTL_SECS: i64 = 600;
const LINK_PURPOSE: &str = "job-link";

/// A signed job link's claims (see [`Tokens::sign_link`]).
#[derive(Debug, Serialize, Deserialize)]
struct LinkClaims {
    job: String,
    sub: Uuid,
    exp: i64,
    purpose: String,
    #[serde(default)]
    ver: i32,
}

/// Signs and checks access tokens. No `Debug`: holds the secret.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub ttl_secs: i64,
}

impl Tokens {
    pub fn new(secret: &[u8], ttl_secs: i64) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl_secs,
        }
    }

    pub fn issue(&self, user: Uuid, role: Role, version: i32) -> Result<String, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            role,
            iat: now,
            exp: now + self.ttl_secs,
            ver: version,
        };
        jsonwebtoken::encode(&Header::default(), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(e.into()))
    }

    /// A link a browser can follow to job `job`'s event stream or file for `user` (an
    /// `EventSource` or a download cannot send a header): HMAC-SHA256 over the job id, the
    /// user and the expiry, valid [`LINK_TTL_SECS`]. Not an access token: it carries no role,
    /// so [`Tokens::verify`] refuses it, and it opens only that job's two routes.
    pub fn sign_link(&self, job: &str, user: &CurrentUser) -> Result<String, ApiError> {
        self.sign_link_until(
            job,
            user.id,
            user.token_version,
            chrono::Utc::now().timestamp() + LINK_TTL_SECS,
        )
    }

    /// [`Tokens::sign_link`] with an explicit expiry (unix seconds).
    pub fn sign_link_until(
        &self,
        job: &str,
        user: Uuid,
        version: i32,
        exp: i64,
    ) -> Result<String, ApiError> {
        let claims = LinkClaims {
            job: job.to_string(),
            sub: user,
            exp,
            purpose: LINK_PURPOSE.to_string(),
            ver: version,
        };
        jsonwebtoken::encode(&Header::default(), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(e.into()))
    }

    /// The pages' session (the `HttpOnly` cookie `POST /login` sets): the user and an expiry,
    /// for the pages only — it carries no role, so it is no bearer token, and the API routes
    /// never read cookies (no cross-site request can use it against them).
    pub fn sign_session(&self, user: Uuid, version: i32) -> Result<String, ApiError> {
        let claims = SessionClaims {
            sub: user,
            exp: chrono::Utc::now().timestamp() + self.ttl_secs,
            purpose: SESSION_PURPOSE.to_string(),
            ver: version,
        };
        jsonwebtoken::encode(&Header::default(), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(e.into()))
    }

    /// The user (and token version) of a valid, unexpired page session token.
    pub fn verify_session(&self, token: &str) -> Option<(Uuid, i32)> {
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.leeway = 5;
        let claims = jsonwebtoken::decode::<SessionClaims>(token, &self.decoding, &validation)
            .ok()?
            .claims;
        (claims.purpose == SESSION_PURPOSE).then_some((claims.sub, claims.ver))
    }

    /// The user (and token version) a link for `job` was signed for, if it is one, for that
    /// job, and unexpired.
    pub fn verify_link(&self, token: &str, job: &str) -> Option<(Uuid, i32)> {
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<LinkClaims>(token, &self.decoding, &validation)
            .ok()?
            .claims;
        (claims.purpose == LINK_PURPOSE && claims.job == job).then_some((claims.sub, claims.ver))
    }

    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()
            .map(|d| d.claims)
    }
}

pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let claims = bearer(parts)
            .and_then(|t| app.tokens.verify(t))
            .ok_or(ApiError::Unauthorized)?;
        CurrentUser::active(app, claims.sub, claims.ver).await
    }
}

impl CurrentUser {
    /// The active user `id` whose tokens are at `version` (401 otherwise: a deactivated user,
    /// or a token from before a password change or a deactivation, loses access at once).
    pub async fn active(app: &AppState, id: Uuid, version: i32) -> Result<Self, ApiError> {
        let row: Option<(Uuid, String, String, i32)> = sqlx::query_as(
            "select id, email, role, token_version from users where id = $1 and active",
        )
        .bind(id)
        .fetch_optional(&app.db)
        .await?;
        let (id, email, role, token_version) = row.ok_or(ApiError::Unauthorized)?;
        if token_version != version {
            return Err(ApiError::Unauthorized);
        }
        let role = Role::parse(&role).ok_or(ApiError::Unauthorized)?;
        Ok(Self {
            id,
            email,
            role,
            token_version,
        })
    }
}

/// A password hashing slot (see `AppState::hashing`), waited for at most
/// `PASSWORD_HASH_WAIT_MS`; 503 with `Retry-After: 1` when none frees up.
pub async fn hashing_slot(app: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    let wait = app.settings.password_hash_wait;
    match tokio::time::timeout(wait, app.hashing.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => {
            tracing::warn!(
                wait_ms = wait.as_millis() as u64,
                "no password hashing slot free"
            );
            Err(ApiError::Overloaded {
                message: "too many sign-ins at once; retry in a second",
                retry_after_secs: 1,
            })
        }
    }
}

/// Checks an e-mail and password: the active user (with the version its new tokens carry), or
/// 401 (an unknown e-mail costs the same hash check as a wrong password). Takes a hashing slot.
pub async fn authenticate(
    app: &AppState,
    email: &str,
    password: String,
) -> Result<CurrentUser, ApiError> {
    let row: Option<(Uuid, String, String, String, i32)> = sqlx::query_as(
        "select id, password_hash, role, email, token_version from users
         where lower(email) = lower($1) and active",
    )
    .bind(email)
    .fetch_optional(&app.db)
    .await?;
    let (hash, found) = match &row {
        Some((_, hash, ..)) => (hash.clone(), true),
        None => (DUMMY_HASH.clone(), false),
    };
    let slot = hashing_slot(app).await?;
    let ok = verify_password_holding(password, hash, Some(slot)).await && found;
    let Some((id, _, role, email, token_version)) = row.filter(|_| ok) else {
        tracing::warn!("login refused");
        return Err(ApiError::Unauthorized);
    };
    let role = Role::parse(&role).ok_or(ApiError::Unauthorized)?;
    tracing::info!(user.id = %id, "login");
    Ok(CurrentUser {
        id,
        email,
        role,
        token_version,
    })
}

/// Hashes a password with argon2id (default parameters) on a blocking thread.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    hash_password_holding(password, None).await
}

/// [`hash_password`], the hashing `slot` held by the blocking thread itself: a request whose
/// client hangs up frees it only when the hash is done, not when the request is dropped.
pub async fn hash_password_holding(
    password: String,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing failed: {e}")))
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
}

/// Checks a password against a stored hash on a blocking thread.
pub async fn verify_password(password: String, hash: String) -> bool {
    verify_password_holding(password, hash, None).await
}

/// [`verify_password`] holding the hashing `slot` on the blocking thread (see
/// [`hash_password_holding`]).
pub async fn verify_password_holding(
    password: String,
    hash: String,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
) -> bool {
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A hash of a random password, verified against when the email is unknown so that a wrong
/// email and a wrong password take the same time.
pub static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(Uuid::new_v4().to_string().as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
});

/// Creates a user; an e-mail already taken (any case) is a 409, never a silent password reset.
pub async fn create_user(
    db: &sqlx::PgPool,
    email: &str,
    password: &str,
    role: Role,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Result<Uuid, ApiError> {
    let hash = hash_password_holding(password.to_string(), Some(slot)).await?;
    let id: Option<Uuid> = sqlx::query_scalar(
        "insert into users (email, password_hash, role) values ($1, $2, $3)
         on conflict (lower(email)) do nothing
         returning id",
    )
    .bind(email.trim())
    .bind(hash)
    .bind(role.as_str())
    .fetch_optional(db)
    .await?;
    id.ok_or_else(|| {
        ApiError::Conflict(
            "a user with this e-mail exists; change it with PATCH /api/users/{id}".into(),
        )
    })
}

/// Sets a new password for `user` whose token is at `version` and raises the version: every
/// token, page session and signed link issued before stops working at once. A token revoked
/// meanwhile (a concurrent change won) changes nothing: 401. Returns the new version.
pub async fn set_password(
    db: &sqlx::PgPool,
    user: &CurrentUser,
    password: &str,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Result<i32, ApiError> {
    let hash = hash_password_holding(password.to_string(), Some(slot)).await?;
    let version: Option<i32> = sqlx::query_scalar(
        "update users set password_hash = $2, token_version = token_version + 1,
             updated_at = now()
         where id = $1 and active and token_version = $3 returning token_version",
    )
    .bind(user.id)
    .bind(hash)
    .bind(user.token_version)
    .fetch_optional(db)
    .await?;
    version.ok_or(ApiError::Unauthorized)
}

/// The stored hash of an active user (for checking a current password).
pub async fn password_hash(db: &sqlx::PgPool, user: Uuid) -> Result<String, ApiError> {
    sqlx::query_scalar("select password_hash from users where id = $1 and active")
        .bind(user)
        .fetch_optional(db)
        .await?
        .ok_or(ApiError::Unauthorized)
}

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest (argon2 would take any length: bound the work an input can ask for).
pub const MAX_PASSWORD_CHARS: usize = 256;

/// A new password's problem, if any.
pub fn password_problem(password: &str) -> Option<String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        Some(format!("at least {MIN_PASSWORD_CHARS} characters"))
    } else if n > MAX_PASSWORD_CHARS {
        Some(format!("at most {MAX_PASSWORD_CHARS} characters"))
    } else {
        None
    }
}

/// Creates a user or updates the password, role and active flag of an existing one (by email):
/// the operator's `create-user` command (a password change there revokes tokens too).
pub async fn upsert_user(
    db: &sqlx::PgPool,
    email: &str,
    password: &str,
    role: Role,
) -> Result<Uuid, ApiError> {
    let hash = hash_password(password.to_string()).await?;
    let id: Uuid = sqlx::query_scalar(
        "insert into users (email, password_hash, role) values ($1, $2, $3)
         on conflict (lower(email)) do update
         set password_hash = excluded.password_hash, role = excluded.role, active = true,
             token_version = users.token_version + 1, updated_at = now()
         returning id",
    )
    .bind(email.trim())
    .bind(hash)
    .bind(role.as_str())
    .fetch_one(db)
    .await?;
    Ok(id)
}
