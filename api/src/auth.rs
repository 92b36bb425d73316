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
}

impl CurrentUser {
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
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
}

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

    pub fn issue(&self, user: Uuid, role: Role) -> Result<String, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            role,
            iat: now,
            exp: now + self.ttl_secs,
        };
        jsonwebtoken::encode(&Header::default(), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(e.into()))
    }

    /// A link a browser can follow to job `job`'s event stream or file for `user` (an
    /// `EventSource` or a download cannot send a header): HMAC-SHA256 over the job id, the
    /// user and the expiry, valid [`LINK_TTL_SECS`]. Not an access token: it carries no role,
    /// so [`Tokens::verify`] refuses it, and it opens only that job's two routes.
    pub fn sign_link(&self, job: &str, user: Uuid) -> Result<String, ApiError> {
        self.sign_link_until(job, user, chrono::Utc::now().timestamp() + LINK_TTL_SECS)
    }

    /// [`Tokens::sign_link`] with an explicit expiry (unix seconds).
    pub fn sign_link_until(&self, job: &str, user: Uuid, exp: i64) -> Result<String, ApiError> {
        let claims = LinkClaims {
            job: job.to_string(),
            sub: user,
            exp,
            purpose: LINK_PURPOSE.to_string(),
        };
        jsonwebtoken::encode(&Header::default(), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(e.into()))
    }

    /// The user a link for `job` was signed for, if it is one, for that job, and unexpired.
    pub fn verify_link(&self, token: &str, job: &str) -> Option<Uuid> {
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<LinkClaims>(token, &self.decoding, &validation)
            .ok()?
            .claims;
        (claims.purpose == LINK_PURPOSE && claims.job == job).then_some(claims.sub)
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
        CurrentUser::active(app, claims.sub).await
    }
}

impl CurrentUser {
    /// The active user `id` (401 if there is none: deactivated users lose access at once).
    pub async fn active(app: &AppState, id: Uuid) -> Result<Self, ApiError> {
        let row: Option<(Uuid, String, String)> =
            sqlx::query_as("select id, email, role from users where id = $1 and active")
                .bind(id)
                .fetch_optional(&app.db)
                .await?;
        let (id, email, role) = row.ok_or(ApiError::Unauthorized)?;
        let role = Role::parse(&role).ok_or(ApiError::Unauthorized)?;
        Ok(Self { id, email, role })
    }
}

/// Hashes a password with argon2id (default parameters) on a blocking thread.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
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
    tokio::task::spawn_blocking(move || {
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

/// Creates a user or updates the password, role and active flag of an existing one (by email).
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
             updated_at = now()
         returning id",
    )
    .bind(email.trim())
    .bind(hash)
    .bind(role.as_str())
    .fetch_one(db)
    .await?;
    Ok(id)
}
