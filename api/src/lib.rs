//! The api: a thin axum service over PostgreSQL. It validates, writes rows and enqueues jobs
//! in one transaction, and serves job status; it never calls an external service.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use shared::config::{DbConfig, LogConfig};
use tokio_util::sync::CancellationToken;

pub mod auth;
pub mod http;
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
    /// General request limit per client IP and per user (the audit's 100/60s).
    #[arg(long, env = "RATE_LIMIT", default_value = "100/60s")]
    pub rate_limit: Rate,
    /// Login attempts per client IP.
    #[arg(long, env = "LOGIN_RATE_LIMIT", default_value = "10/60s")]
    pub login_rate_limit: Rate,
    /// Job status reads (polling, SSE) per client IP and per user.
    #[arg(long, env = "STATUS_RATE_LIMIT", default_value = "600/60s")]
    pub status_rate_limit: Rate,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 1024 * 1024)]
    pub body_limit_bytes: usize,
    /// The secret token Telegram sends with every webhook call (`setWebhook`'s
    /// `secret_token`); unset: `POST /api/webhooks/telegram` answers 404.
    #[arg(long, env = "TELEGRAM_WEBHOOK_SECRET", hide_env_values = true)]
    pub telegram_webhook_secret: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(clap::Subcommand, Clone)]
pub enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Create a user, or update the password, role and active flag of an existing one.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
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
            body_limit_bytes: self.body_limit_bytes,
            readiness_timeout: Duration::from_secs(2),
            telegram_webhook_secret: self
                .telegram_webhook_secret
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        }
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
    Ok(AppState {
        db,
        tokens: Arc::new(auth::Tokens::new(config.jwt_secret()?, config.jwt_ttl_secs)),
        limiter: Arc::new(rate_limit::Limiter::default()),
        settings: Arc::new(config.settings()),
    })
}

/// Serves until `shutdown`, finishing in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = routes::router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
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
