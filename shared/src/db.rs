//! The PostgreSQL pool (timeouts, transaction hygiene), database creation and app migrations.
use std::{str::FromStr, time::Duration};

use sqlx::{
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
    ConnectOptions, Connection, PgPool,
};

use crate::config::DbConfig;

/// The application's migrations (`migrations/`). The queue engine's migrations are run by
/// `jobs::migrate`, which calls this too: use that from binaries and tests.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid DATABASE_URL: {0}")]
    InvalidUrl(String),
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Connection options with the server-side timeouts every session must carry.
pub fn connect_options(
    config: &DbConfig,
    application_name: &str,
) -> Result<PgConnectOptions, DbError> {
    let options = PgConnectOptions::from_str(&config.database_url)
        .map_err(|e| DbError::InvalidUrl(e.to_string()))?;
    Ok(options
        .application_name(application_name)
        .options([
            (
                "statement_timeout",
                format!("{}ms", config.db_statement_timeout_ms),
            ),
            (
                "idle_in_transaction_session_timeout",
                format!("{}ms", config.db_idle_in_transaction_timeout_ms),
            ),
        ])
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1)))
}

/// Creates the database named in the URL when it does not exist. Safe to race with another
/// process doing the same.
pub async fn ensure_database(config: &DbConfig) -> Result<(), DbError> {
    let options = PgConnectOptions::from_str(&config.database_url)
        .map_err(|e| DbError::InvalidUrl(e.to_string()))?;
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = options.database("postgres").connect().await?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        // The name is quoted as an identifier above; CREATE DATABASE takes no bind parameters.
        let statement = sqlx::AssertSqlSafe(format!("create database {quoted}"));
        match sqlx::query(statement).execute(&mut admin).await {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // 42P04 duplicate_database / 23505: another process created it first.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42P04") | Some("23505")) => {}
            Err(e) => return Err(e.into()),
        }
    }
    admin.close().await.ok();
    Ok(())
}

/// Attempts at the first connection of a process (the audit's settings: 5 tries, waits of 2,
/// 4, 8 and 16 s between them): a database that is still starting (a compose stack coming up
/// together, a failover) is waited for instead of the process exiting at once.
pub const START_TRIES: u32 = 5;
pub const START_BACKOFF: Duration = Duration::from_secs(2);

/// Creates the database if needed and connects, retrying as [`START_TRIES`] says; each attempt
/// is bounded by `DB_CONNECT_TIMEOUT_SECS` (later connections of the pool by the acquire
/// timeout).
pub async fn connect_at_start(
    config: &DbConfig,
    application_name: &str,
) -> Result<PgPool, DbError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let tried = tokio::time::timeout(config.connect_timeout(), async {
            ensure_database(config).await?;
            connect(config, application_name).await
        })
        .await
        .unwrap_or_else(|_| Err(DbError::Sqlx(sqlx::Error::PoolTimedOut)));
        match tried {
            Ok(pool) => return Ok(pool),
            Err(DbError::InvalidUrl(e)) => return Err(DbError::InvalidUrl(e)),
            Err(error) if attempt < START_TRIES => {
                let wait = START_BACKOFF * 2u32.pow(attempt - 1);
                tracing::warn!(%error, attempt, wait_s = wait.as_secs(), "database not reachable yet; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// A pool with the configured size and timeouts. A connection that comes back to the pool
/// still inside a transaction (a cancelled `begin`) is closed instead of reused.
pub async fn connect(config: &DbConfig, application_name: &str) -> Result<PgPool, DbError> {
    let options = connect_options(config, application_name)?;
    Ok(pool_options(config).connect_with(options).await?)
}

/// Like [`connect`] but does not open a connection until first use: a process can start (and
/// report not-ready) while PostgreSQL is down.
pub fn connect_lazy(config: &DbConfig, application_name: &str) -> Result<PgPool, DbError> {
    let options = connect_options(config, application_name)?;
    Ok(pool_options(config).connect_lazy_with(options))
}

/// [`connect_lazy`] with extra session settings (`name`, `value`) on every connection.
pub fn connect_lazy_with_settings(
    config: &DbConfig,
    application_name: &str,
    settings: &[(&str, &str)],
) -> Result<PgPool, DbError> {
    let options = connect_options(config, application_name)?.options(settings.iter().copied());
    Ok(pool_options(config).connect_lazy_with(options))
}

fn pool_options(config: &DbConfig) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(config.db_pool_size)
        .acquire_timeout(config.acquire_timeout())
        .idle_timeout(Duration::from_secs(300))
        .after_release(|conn, _meta| {
            Box::pin(async move {
                if conn.is_in_transaction() {
                    tracing::warn!("connection released inside a transaction; closing it");
                    return Ok(false);
                }
                Ok(true)
            })
        })
}

/// Runs the application's migrations under sqlx's advisory lock. The engine's migrations share
/// the `_sqlx_migrations` table, so versions applied by the other migrator are ignored.
pub async fn migrate_app(pool: &PgPool) -> Result<(), DbError> {
    let mut migrator = Migrator::with_migrations(MIGRATOR.migrations.to_vec());
    migrator.set_ignore_missing(true);
    migrator.run(pool).await?;
    Ok(())
}

/// Checks the database answers within `timeout` (readiness probes).
pub async fn ping(pool: &PgPool, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, sqlx::query("select 1").execute(pool)).await,
        Ok(Ok(_))
    )
}
