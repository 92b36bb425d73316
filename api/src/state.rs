//! Shared application state handed to every handler.
use std::sync::Arc;

use sqlx::PgPool;

use crate::{
    auth::Tokens,
    rate_limit::{Limiter, Rate},
};

/// Request-handling settings derived from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub rate: Rate,
    pub login_rate: Rate,
    pub status_rate: Rate,
    pub body_limit_bytes: usize,
    pub readiness_timeout: std::time::Duration,
    /// The secret Telegram sends with each webhook call; `None`: the webhook is off.
    pub telegram_webhook_secret: Option<String>,
}

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub tokens: Arc<Tokens>,
    pub limiter: Arc<Limiter>,
    pub settings: Arc<Settings>,
}
