//! Typed configuration shared by every binary (flags and environment, validated at start).
use std::time::Duration;

/// Database settings. Defaults are the audit's values (pool 10, acquire 20 s, statement 10 s).
/// No `Debug`: the URL may carry a password.
#[derive(clap::Args, Clone)]
pub struct DbConfig {
    /// PostgreSQL URL; the database is created when missing.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/artsvao",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Maximum connections in the pool.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 10)]
    pub db_pool_size: u32,
    /// Seconds to wait for a free connection before answering 503 / retrying.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_SECS", default_value_t = 20)]
    pub db_acquire_timeout_secs: u64,
    /// Seconds one attempt at the first connection (and database creation) may take; later
    /// connections are bounded by the acquire timeout.
    #[arg(long, env = "DB_CONNECT_TIMEOUT_SECS", default_value_t = 10)]
    pub db_connect_timeout_secs: u64,
    /// Server-side `statement_timeout` in milliseconds for every pooled connection.
    #[arg(long, env = "DB_STATEMENT_TIMEOUT_MS", default_value_t = 10_000)]
    pub db_statement_timeout_ms: u64,
    /// Server-side `idle_in_transaction_session_timeout` in milliseconds: a connection left
    /// inside an open transaction is closed by PostgreSQL instead of holding locks.
    #[arg(
        long,
        env = "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub db_idle_in_transaction_timeout_ms: u64,
}

impl DbConfig {
    /// Settings for a given URL with every other value at its default (tests, tools).
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            database_url: url.into(),
            db_pool_size: 10,
            db_acquire_timeout_secs: 20,
            db_connect_timeout_secs: 10,
            db_statement_timeout_ms: 10_000,
            db_idle_in_transaction_timeout_ms: 60_000,
        }
    }

    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_secs(self.db_acquire_timeout_secs)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.db_connect_timeout_secs.max(1))
    }
}

/// Log output settings.
#[derive(clap::Args, Clone, Debug)]
pub struct LogConfig {
    /// `json` for one JSON object per line (production), `pretty` for a terminal.
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty", value_parser = ["json", "pretty"])]
    pub log_format: String,
}
