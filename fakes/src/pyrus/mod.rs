//! Pyrus API v4 under `/pyrus`: `/auth` issuing expiring access tokens, the form register
//! (`/v4/forms/{id}/register`, streamed), and Pyrus' `{"error_code", "error"}` errors.

pub mod data;
mod register;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::faults::Hit;
use crate::seed::mix;
use crate::{App, Config};

/// Tokens alive per user: issuing one more revokes the oldest, as Pyrus does (the real limit is
/// not published).
pub const MAX_TOKENS: u64 = 20;
/// Pyrus' published rate limit, reported in `X-RateLimit-*` (not enforced; use a 429 fault).
const RATE_LIMIT: u64 = 5000;
const RATE_WINDOW: Duration = Duration::from_secs(600);

pub struct Pyrus {
    login: String,
    security_key: String,
    ttl: Duration,
    pub(crate) form_id: u64,
    pub(crate) tasks: u64,
    pub(crate) seed: u64,
    /// Signs tokens so made-up ones are `invalid_token`; differs per process.
    secret: u64,
    issued: AtomicU64,
    /// Tokens with a sequence number up to this are expired (`/_fakes/pyrus/expire-tokens`).
    expired_up_to: AtomicU64,
    window: Mutex<(Instant, u64)>,
}

/// Pyrus' error body with its HTTP status.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error_code": code, "error": message}))).into_response()
}

/// A refused token, answered as 401 with Pyrus' error code.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub(crate) struct Unauthorised {
    code: &'static str,
    message: &'static str,
}

impl IntoResponse for Unauthorised {
    fn into_response(self) -> Response {
        error(StatusCode::UNAUTHORIZED, self.code, self.message)
    }
}

pub fn fault_response(status: StatusCode, hit: &Hit) -> Response {
    let (code, message) = match status.as_u16() {
        400 => ("validation_error", "Validation error"),
        401 => (
            "expired_token",
            "The authorization token has expired. Please get a new token.",
        ),
        403 => ("access_denied_form", "Access to the form is denied"),
        404 => ("not_found", "Not found"),
        429 => (
            "too_many_requests",
            "You have reached the limit of requests per 10 minutes",
        ),
        _ => ("server_error", "Internal server error"),
    };
    let mut response = error(status, code, message);
    if status == StatusCode::TOO_MANY_REQUESTS {
        let headers = response.headers_mut();
        headers.insert("x-ratelimit-limit", HeaderValue::from(RATE_LIMIT));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(0));
        headers.insert("x-ratelimit-reset", HeaderValue::from(hit.retry_after()));
    }
    response
}

impl Pyrus {
    pub fn new(config: &Config) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        Self {
            login: config.pyrus_login.clone(),
            security_key: config.pyrus_security_key.clone(),
            ttl: Duration::from_secs(config.pyrus_token_ttl_secs),
            form_id: config.pyrus_form_id,
            tasks: config.pyrus_tasks,
            seed: config.seed,
            secret: mix(nanos ^ config.seed),
            issued: AtomicU64::new(0),
            expired_up_to: AtomicU64::new(0),
            window: Mutex::new((Instant::now(), 0)),
        }
    }

    fn mac(&self, seq: u64, issued_ms: u64) -> u64 {
        mix(self.secret ^ mix(seq) ^ mix(issued_ms.rotate_left(17)))
    }

    fn issue(&self) -> String {
        let seq = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let issued_ms = now_ms();
        format!("fkp.{seq}.{issued_ms}.{:016x}", self.mac(seq, issued_ms))
    }

    /// Every token issued so far answers `expired_token` from now on.
    pub fn expire_tokens(&self) {
        self.expired_up_to
            .store(self.issued.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Checks `Authorization: Bearer <token>` the way the API does.
    pub(crate) fn authorise(&self, headers: &HeaderMap) -> Result<(), Unauthorised> {
        let unauthorised = |code, message| Err(Unauthorised { code, message });
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return unauthorised(
                "token_not_specified",
                "Authorization token is not specified.",
            );
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        let parts: Vec<&str> = token.split('.').collect();
        let parsed = match parts.as_slice() {
            ["fkp", seq, ms, mac] => seq
                .parse::<u64>()
                .ok()
                .zip(ms.parse::<u64>().ok())
                .filter(|(seq, ms)| format!("{:016x}", self.mac(*seq, *ms)) == *mac),
            _ => None,
        };
        let Some((seq, issued_ms)) = parsed else {
            return unauthorised("invalid_token", "Authorization token is invalid.");
        };
        let age = Duration::from_millis(now_ms().saturating_sub(issued_ms));
        if age >= self.ttl || seq <= self.expired_up_to.load(Ordering::SeqCst) {
            return unauthorised(
                "expired_token",
                "The authorization token has expired. Please get a new token.",
            );
        }
        if seq + MAX_TOKENS <= self.issued.load(Ordering::SeqCst) {
            return unauthorised("revoked_token", "Authorization token has been revoked.");
        }
        Ok(())
    }

    /// `X-RateLimit-*` as Pyrus reports them: 5000 requests per 10-minute window.
    pub(crate) fn rate_headers(&self, headers: &mut HeaderMap) {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if window.0.elapsed() >= RATE_WINDOW {
            *window = (Instant::now(), 0);
        }
        window.1 += 1;
        let reset = RATE_WINDOW.saturating_sub(window.0.elapsed()).as_secs();
        headers.insert("x-ratelimit-limit", HeaderValue::from(RATE_LIMIT));
        headers.insert(
            "x-ratelimit-remaining",
            HeaderValue::from(RATE_LIMIT.saturating_sub(window.1)),
        );
        headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        // Cloud accounts host (`accounts.pyrus.com/api/v4/auth`) and the older `api.pyrus.com/v4/auth`.
        .route("/pyrus/auth", post(auth_post))
        .route("/pyrus/api/v4/auth", post(auth_post))
        .route("/pyrus/v4/auth", post(auth_post).get(auth_get))
        .route(
            "/pyrus/v4/forms/{form_id}/register",
            get(register::get).post(register::post),
        )
        .route("/pyrus/{*rest}", any(not_found))
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "Not found")
}

/// `person_id` (several accounts per e-mail) is accepted and ignored: one account per login here.
#[derive(Deserialize)]
struct Credentials {
    login: Option<String>,
    security_key: Option<String>,
}

async fn auth_post(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    match serde_json::from_slice::<Credentials>(&body) {
        Ok(credentials) => auth(&app.pyrus, &headers, credentials),
        Err(_) => error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "Invalid JSON in the request body.",
        ),
    }
}

async fn auth_get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(credentials): Query<Credentials>,
) -> Response {
    auth(&app.pyrus, &headers, credentials)
}

fn auth(pyrus: &Pyrus, headers: &HeaderMap, credentials: Credentials) -> Response {
    let (Some(login), Some(key)) = (credentials.login, credentials.security_key) else {
        return error(
            StatusCode::BAD_REQUEST,
            "required_parameter_missing",
            "login and security_key are required.",
        );
    };
    if login != pyrus.login || key != pyrus.security_key {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "Invalid login/security key",
        );
    }
    // Clients must use the returned api_url, so point it back at this fake.
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8900");
    Json(json!({
        "access_token": pyrus.issue(),
        "api_url": format!("http://{host}/pyrus/v4/"),
        "files_url": format!("http://{host}/pyrus/files/"),
    }))
    .into_response()
}
