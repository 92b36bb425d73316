//! The api: a thin axum service over PostgreSQL. It validates, writes rows and enqueues jobs
//! in one transaction, and serves job status; it never calls an external service.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use shared::config::{DbConfig, LogConfig};
use tokio_util::sync::CancellationToken;

pub mod auth;
pub mod events;
pub mod http;
pub mod pages;
pub mod rate_limit;
pub mod routes;
pub mod seed;
pub mod state;

use rate_limit::Rate;
pub use state::{AppState, Settings};

#[derive(clap::Parser, Clone)]
#[command(name = "artsvao-api", about = "ARTSVAO CRM HTTP API")]
pub struct ApiConfig {
    #[command(flatten)]
    pub db: DbConfig,
    #[command(flatten)]
    pub log: LogConfig,
    /// Address to listen on.
    #[arg(long, env = "API_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// HS256 signing secret for access tokens, at least 32 bytes.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Access token lifetime in seconds.
    #[arg(long, env = "JWT_TTL_SECS", default_value_t = 12 * 3600)]
    pub jwt_ttl_secs: i64,
    /// General request limit per user (logged in) or per client address (anonymous).
    #[arg(long, env = "RATE_LIMIT", default_value = "100/60s")]
    pub rate_limit: Rate,
    /// Login attempts per client address.
    #[arg(long, env = "LOGIN_RATE_LIMIT", default_value = "10/60s")]
    pub login_rate_limit: Rate,
    /// Job status reads (polling, SSE) per user or per client address.
    #[arg(long, env = "STATUS_RATE_LIMIT", default_value = "600/60s")]
    pub status_rate_limit: Rate,
    /// Proxies (CIDRs, comma-separated, e.g. `10.0.0.0/8,fd00::/8`) whose `X-Forwarded-For`
    /// names the client for the per-address limits; unset: the peer address counts.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<rate_limit::Cidr>,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 1024 * 1024)]
    pub body_limit_bytes: usize,
    /// The secret token Telegram sends with every webhook call (`setWebhook`'s
    /// `secret_token`); unset: `POST /api/webhooks/telegram` answers 404.
    #[arg(long, env = "TELEGRAM_WEBHOOK_SECRET", hide_env_values = true)]
    pub telegram_webhook_secret: Option<String>,
    /// Open job event streams (SSE) one user may hold per api process; more answer 429.
    #[arg(long, env = "SSE_PER_USER", default_value_t = 5)]
    pub sse_per_user: usize,
    /// An event stream ends after this many seconds; the browser reconnects and resumes
    /// after the last event id it got (a bound on what one connection can hold).
    #[arg(long, env = "SSE_MAX_LIFE_SECS", default_value_t = 300)]
    pub sse_max_life_secs: u64,
    /// A client must send a request's headers within this many seconds (slow-loris guard).
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,
    /// A request must be answered within this many seconds (503 otherwise); event streams
    /// are exempt (they have SSE_MAX_LIFE_SECS).
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// After SIGTERM, open connections get this many seconds to finish before the process
    /// exits anyway (event streams end at once; a reconnect goes to another replica).
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", default_value_t = 10)]
    pub shutdown_timeout_secs: u64,
    /// Password hashes (argon2, ~19 MiB and tens of ms of CPU each) computed at once; default
    /// the number of cores.
    #[arg(long, env = "PASSWORD_HASH_CONCURRENCY")]
    pub password_hash_concurrency: Option<usize>,
    /// How long a login waits for a hashing slot before 503 + Retry-After.
    #[arg(long, env = "PASSWORD_HASH_WAIT_MS", default_value_t = 2000)]
    pub password_hash_wait_ms: u64,
    /// Also serve `/metrics` (without a token) on this internal address, e.g. `0.0.0.0:9100`
    /// inside a container network; empty = none.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Serve `/metrics` on API_ADDR to `Authorization: Bearer <token>`; unset or empty: not
    /// served on API_ADDR at all (404).
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Mark the pages' session cookie `Secure` (set it behind HTTPS; plain-HTTP development
    /// would lose the cookie).
    #[arg(long, env = "COOKIE_SECURE", default_value_t = false)]
    pub cookie_secure: bool,
    /// A teacher may mark a lesson from this many minutes before its start…
    #[arg(long, env = "ATTENDANCE_OPENS_BEFORE_MINS", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(..=10_080))]
    pub attendance_opens_before_mins: u32,
    /// …until this many hours after it, at most a year (managers and admins correct marks at
    /// any time).
    #[arg(long, env = "ATTENDANCE_CLOSES_AFTER_HOURS", default_value_t = 7 * 24,
          value_parser = clap::value_parser!(u32).range(..=8_784))]
    pub attendance_closes_after_hours: u32,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(clap::Subcommand, Clone)]
pub enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Create a user, or update the password, role and active flag of an existing one (a
    /// password set here revokes the user's earlier tokens).
    CreateUser {
        #[arg(long)]
        email: String,
        /// The password on the command line (visible in `ps` and shell history: prefer
        /// `--password-stdin`).
        #[arg(
            long,
            required_unless_present = "password_stdin",
            conflicts_with = "password_stdin"
        )]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long, value_parser = ["admin", "manager", "teacher"])]
        role: String,
        /// The PBX extension (3–5 digits) click-to-call rings first.
        #[arg(long)]
        extension: Option<String>,
    },
    /// Fill an empty database with a realistic demo centre (rooms, teachers, groups, clients,
    /// two months of lessons with attendance, subscriptions, rentals) and print the counts.
    SeedDemo,
    /// Create the database if missing and apply migrations, then exit.
    Migrate,
}

impl ApiConfig {
    /// The secret, refused when missing or shorter than 32 bytes.
    pub fn jwt_secret(&self) -> anyhow::Result<&[u8]> {
        match &self.jwt_secret {
            Some(s) if s.len() >= 32 => Ok(s.as_bytes()),
            Some(_) => anyhow::bail!("JWT_SECRET is shorter than 32 bytes; refusing to start"),
            None => anyhow::bail!(
                "JWT_SECRET is not set; refusing to start (scripts/dev generates one)"
            ),
        }
    }

    pub fn settings(&self) -> Settings {
        Settings {
            rate: self.rate_limit,
            login_rate: self.login_rate_limit,
            status_rate: self.status_rate_limit,
            trusted_proxies: self.trusted_proxies.clone(),
            body_limit_bytes: self.body_limit_bytes,
            readiness_timeout: Duration::from_secs(2),
            telegram_webhook_secret: self
                .telegram_webhook_secret
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            sse_per_user: self.sse_per_user.max(1),
            sse_max_life: Duration::from_secs(self.sse_max_life_secs.max(1)),
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs.max(1)),
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            password_hash_wait: Duration::from_millis(self.password_hash_wait_ms),
            metrics_token: self
                .metrics_token
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            cookie_secure: self.cookie_secure,
            marking_window: shared::domain::attendance::MarkingWindow {
                opens_before: chrono::Duration::minutes(self.attendance_opens_before_mins.into()),
                closes_after: chrono::Duration::hours(self.attendance_closes_after_hours.into()),
            },
        }
    }

    /// The internal metrics address, if one is set (empty counts as unset: compose passes
    /// `${METRICS_ADDR:-}`).
    pub fn metrics_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        let Some(raw) = self.metrics_addr.as_deref().map(str::trim) else {
            return Ok(None);
        };
        if raw.is_empty() {
            return Ok(None);
        }
        raw.parse().map(Some).map_err(|e| {
            anyhow::anyhow!("METRICS_ADDR {raw:?} is not an address like 0.0.0.0:9100: {e}")
        })
    }

    fn password_hash_concurrency(&self) -> usize {
        self.password_hash_concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1)
    }
}

/// Creates the database if needed (retrying while it is not reachable yet), migrates it and
/// returns a pool.
pub async fn connect_and_migrate(db: &DbConfig) -> anyhow::Result<sqlx::PgPool> {
    let pool = shared::db::connect_at_start(db, "artsvao-api")
        .await
        .context("connecting")?;
    jobs::engine::migrate(&pool).await.context("migrating")?;
    Ok(pool)
}

pub fn state(config: &ApiConfig, db: sqlx::PgPool) -> anyhow::Result<AppState> {
    // Install the metrics recorder before anything counts.
    shared::metrics::handle();
    let settings = config.settings();
    let shutdown = CancellationToken::new();
    Ok(AppState {
        tokens: Arc::new(auth::Tokens::new(config.jwt_secret()?, config.jwt_ttl_secs)),
        limiter: Arc::new(rate_limit::Limiter::default()),
        hub: Arc::new(events::EventHub::new(
            db.clone(),
            settings.sse_per_user,
            shutdown.clone(),
        )),
        hashing: Arc::new(tokio::sync::Semaphore::new(
            config.password_hash_concurrency(),
        )),
        settings: Arc::new(settings),
        shutdown,
        db,
    })
}

/// Serves until `shutdown`: stops accepting, ends event streams, gives other requests
/// `SHUTDOWN_TIMEOUT_SECS` to finish, then returns (closing what is left).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let settings = state.settings.clone();
    let streams = state.shutdown.clone();
    let router = routes::router(state);
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            streams.cancel();
        }
    });
    http::server::serve(
        listener,
        router,
        settings.header_read_timeout,
        settings.shutdown_timeout,
        shutdown,
    )
    .await
}

/// Serves `/metrics` (and the health routes) alone on the internal `METRICS_ADDR`.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let timeout = state.settings.shutdown_timeout;
    let header_timeout = state.settings.header_read_timeout;
    let router = routes::health::internal(state);
    http::server::serve(listener, router, header_timeout, timeout, shutdown).await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::ApiConfig;

    #[tokio::test]
    async fn the_api_refuses_a_missing_or_short_jwt_secret() {
        let missing = ApiConfig::parse_from(["artsvao-api"]);
        let short = ApiConfig::parse_from([
            "artsvao-api",
            "--jwt-secret",
            "only-31-bytes-long-xxxxxxxxxxxx",
        ]);
        let ok = ApiConfig::parse_from(["artsvao-api", "--jwt-secret", &"k".repeat(32)]);
        if std::env::var_os("JWT_SECRET").is_none() {
            assert!(missing.jwt_secret().is_err());
        }
        assert!(short.jwt_secret().is_err());
        assert!(ok.jwt_secret().is_ok());
        assert!(super::state(
            &short,
            sqlx::PgPool::connect_lazy("postgres://x@127.0.0.1/x").unwrap()
        )
        .is_err());
    }
}
