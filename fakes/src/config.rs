//! Command-line and environment configuration: addresses, accepted credentials, data sizes.
//!
//! No `Debug`: the struct holds the credentials the fakes accept.

use std::net::SocketAddr;

use clap::Parser;

#[derive(Parser, Clone)]
#[command(
    name = "artsvao-fakes",
    version,
    about = "Stand-ins for Timepad, Pyrus, Novofon, Telegram and an SMTP server (tests, development, benchmarks)"
)]
pub struct Config {
    /// HTTP address serving /timepad, /pyrus, /novofon, /telegram and the /_fakes admin routes.
    #[arg(long, env = "FAKES_HTTP_ADDR", default_value = "127.0.0.1:8900")]
    pub http_addr: SocketAddr,

    /// SMTP sink address (plain SMTP, no TLS).
    #[arg(long, env = "FAKES_SMTP_ADDR", default_value = "127.0.0.1:2525")]
    pub smtp_addr: SocketAddr,

    /// Seed of the generated data: the same seed always yields the same events, orders and tasks.
    #[arg(long, env = "FAKES_SEED", default_value_t = 1)]
    pub seed: u64,

    /// Requests kept in the request log (the oldest are dropped first).
    #[arg(long, env = "FAKES_LOG_CAPACITY", default_value_t = 200_000)]
    pub log_capacity: usize,

    /// Bearer token Timepad accepts.
    #[arg(
        long,
        env = "FAKES_TIMEPAD_TOKEN",
        default_value = "fakes-timepad-token"
    )]
    pub timepad_token: String,

    /// Organisation that owns the generated events.
    #[arg(long, env = "FAKES_TIMEPAD_ORGANIZATION_ID", default_value_t = 123_456)]
    pub timepad_organization_id: u64,

    /// Number of Timepad events.
    #[arg(long, env = "FAKES_TIMEPAD_EVENTS", default_value_t = 10)]
    pub timepad_events: u64,

    /// Number of Timepad orders, spread over the events.
    #[arg(long, env = "FAKES_TIMEPAD_ORDERS", default_value_t = 300)]
    pub timepad_orders: u64,

    /// Pyrus login (`/auth` body `login`).
    #[arg(long, env = "FAKES_PYRUS_LOGIN", default_value = "bot@artsvao.example")]
    pub pyrus_login: String,

    /// Pyrus security key (`/auth` body `security_key`).
    #[arg(
        long,
        env = "FAKES_PYRUS_SECURITY_KEY",
        default_value = "fakes-pyrus-security-key"
    )]
    pub pyrus_security_key: String,

    /// Lifetime of a Pyrus access token; afterwards the API answers 401 `expired_token`.
    #[arg(long, env = "FAKES_PYRUS_TOKEN_TTL_SECS", default_value_t = 3600)]
    pub pyrus_token_ttl_secs: u64,

    /// Pyrus form holding the rental applications.
    #[arg(long, env = "FAKES_PYRUS_FORM_ID", default_value_t = 321)]
    pub pyrus_form_id: u64,

    /// Number of Pyrus tasks (rental applications) in the form.
    #[arg(long, env = "FAKES_PYRUS_TASKS", default_value_t = 200)]
    pub pyrus_tasks: u64,

    /// Novofon Call API `params.access_token` accepted.
    #[arg(
        long,
        env = "FAKES_NOVOFON_ACCESS_TOKEN",
        default_value = "fakes-novofon-access-token"
    )]
    pub novofon_access_token: String,

    /// Telegram bot token accepted in `/telegram/bot<token>/<method>`.
    #[arg(
        long,
        env = "FAKES_TELEGRAM_BOT_TOKEN",
        default_value = "123456789:AAFakeTelegramTokenForArtsvaoTests1"
    )]
    pub telegram_bot_token: String,
}
