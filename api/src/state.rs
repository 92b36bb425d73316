//! Shared application state handed to every handler.
use std::{sync::Arc, time::Duration};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use sqlx::PgPool;

use crate::{
    auth::Tokens,
    events::EventHub,
    rate_limit::{Limiter, Rate},
};

/// Request-handling settings derived from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub rate: Rate,
    pub login_rate: Rate,
    pub status_rate: Rate,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<crate::rate_limit::Cidr>,
    pub body_limit_bytes: usize,
    pub readiness_timeout: std::time::Duration,
    /// The secret Telegram sends with each webhook call; `None`: the webhook is off.
    pub telegram_webhook_secret: Option<String>,
    pub sse_per_user: usize,
    pub sse_max_life: Duration,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub password_hash_wait: Duration,
    /// `/metrics` on the main address needs this bearer token (none: not served there).
    pub metrics_token: Option<String>,
    pub cookie_secure: bool,
    /// When a teacher may mark a lesson.
    pub marking_window: shared::domain::attendance::MarkingWindow,
}

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub tokens: Arc<Tokens>,
    pub limiter: Arc<Limiter>,
    pub settings: Arc<Settings>,
    /// Tells open event streams when their job changed; caps streams per user.
    pub hub: Arc<EventHub>,
    /// Password hashing slots (argon2 is memory- and CPU-hungry): a login waits at most
    /// `password_hash_wait` for one, else 503.
    pub hashing: Arc<Semaphore>,
    /// Cancelled at shutdown: event streams end.
    pub shutdown: CancellationToken,
}
