//! The worker process: configuration, the job runtime, the handlers of every kind, cron and
//! the health / metrics endpoint.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use serde_json::json;
use shared::config::{DbConfig, LogConfig};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub mod clients;
pub mod cron;
pub mod handlers;
pub mod registry;
pub mod runtime;
pub mod testing;

pub use registry::Registry;
pub use runtime::{Health, Runtime, RuntimeConfig};

#[derive(clap::Parser, Clone)]
#[command(name = "artsvao-worker", about = "ARTSVAO CRM background job worker")]
pub struct WorkerConfig {
    #[command(flatten)]
    pub db: DbConfig,
    #[command(flatten)]
    pub log: LogConfig,
    /// Address of the worker's own health and metrics endpoint.
    #[arg(long, env = "WORKER_ADDR", default_value = "127.0.0.1:9090")]
    pub addr: SocketAddr,
    /// Job kinds to run, comma separated (default: all).
    #[arg(long, env = "WORKER_QUEUES", value_delimiter = ',')]
    pub queues: Vec<String>,
    /// Concurrency overrides, `kind=n` comma separated.
    #[arg(long, env = "WORKER_CONCURRENCY", value_delimiter = ',', value_parser = parse_concurrency)]
    pub concurrency: Vec<(String, usize)>,
    /// Polling backstop for new and due jobs, in milliseconds (LISTEN/NOTIFY is the fast path).
    #[arg(long, env = "WORKER_POLL_INTERVAL_MS", default_value_t = 1000)]
    pub poll_interval_ms: u64,
    /// Heartbeat interval in milliseconds.
    #[arg(long, env = "WORKER_HEARTBEAT_MS", default_value_t = 3000)]
    pub heartbeat_ms: u64,
    /// A worker unseen this long (ms) is dead and its jobs are re-queued.
    #[arg(long, env = "WORKER_DEAD_AFTER_MS", default_value_t = 15_000)]
    pub dead_after_ms: u64,
    /// Seconds running jobs get to finish after SIGTERM before they are released.
    #[arg(long, env = "WORKER_SHUTDOWN_TIMEOUT_SECS", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,
    /// Cron overrides, `name=expr` (6 fields, seconds first, Moscow time) or `name=off`,
    /// separated by `;`. Schedules: prune_jobs (default `0 30 3 * * *`).
    #[arg(long, env = "WORKER_CRON", value_delimiter = ';', value_parser = parse_cron_override)]
    pub cron: Vec<(String, String)>,
    /// Finished jobs (with their files) older than this many days are pruned daily.
    #[arg(long, env = "JOB_RETENTION_DAYS", default_value_t = jobs::kinds::maintenance::DEFAULT_RETENTION_DAYS)]
    pub retention_days: u32,
    /// Global rate-limit overrides shared by all replicas, `key=RATE[,burst=N]` separated by
    /// `;` (e.g. `telegram=30/1s;email=20/1h`). Defaults: see `jobs::limiter::DEFAULT_LIMITS`.
    #[arg(long, env = "WORKER_RATE_LIMITS", value_delimiter = ';', value_parser = jobs::limiter::parse_limit)]
    pub rate_limits: Vec<(String, jobs::Rate)>,
    /// Connections of the separate queue-engine pool (claims, outcomes, heartbeats).
    #[arg(long, env = "WORKER_ENGINE_POOL_SIZE", default_value_t = 4)]
    pub engine_pool_size: u32,
    #[command(flatten)]
    pub integrations: clients::IntegrationsConfig,
    /// Claims and outcomes wait for their WAL flush (`synchronous_commit`); `false` trades
    /// re-runs after a PostgreSQL crash for speed (see `jobs::engine::session_settings`).
    #[arg(long, env = "WORKER_ENGINE_SYNC_COMMIT", default_value_t = true, action = clap::ArgAction::Set)]
    pub engine_sync_commit: bool,
}

fn parse_concurrency(s: &str) -> Result<(String, usize), String> {
    let (kind, n) = s
        .split_once('=')
        .ok_or_else(|| format!("expected kind=n, got {s:?}"))?;
    let n: usize = n.parse().map_err(|_| format!("bad number in {s:?}"))?;
    Ok((kind.to_string(), n))
}

fn parse_cron_override(s: &str) -> Result<(String, String), String> {
    let (name, expr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected name=expr, got {s:?}"))?;
    Ok((name.trim().to_string(), expr.trim().to_string()))
}

impl WorkerConfig {
    pub fn runtime(&self) -> RuntimeConfig {
        RuntimeConfig {
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            heartbeat_interval: Duration::from_millis(self.heartbeat_ms),
            dead_after: Duration::from_millis(self.dead_after_ms),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            ..RuntimeConfig::default()
        }
    }
}

/// The body of a worker binary: configuration from flags and env, logs, metrics, then [`run`]
/// with the kinds `registry` gives for that configuration until SIGTERM / SIGINT.
pub async fn main_with(registry: impl FnOnce(&WorkerConfig) -> Registry) {
    use clap::Parser;
    let config = WorkerConfig::parse();
    shared::telemetry::init(&config.log);
    shared::metrics::handle();
    let shutdown = shared::shutdown::on_signal();
    let registry = registry(&config);
    if let Err(error) = run(config, registry, shutdown).await {
        tracing::error!(error = %format!("{error:#}"), "worker stopped with an error");
        std::process::exit(1);
    }
}

/// Connects, migrates (creating the database if needed) and runs the worker until `shutdown`.
pub async fn run(
    config: WorkerConfig,
    registry: Registry,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let registry = registry
        .only(&config.queues)
        .and_then(|r| r.with_concurrency(&config.concurrency))
        .and_then(|r| r.with_cron_overrides(&config.cron))
        .map_err(anyhow::Error::msg)?;
    registry.validate().map_err(anyhow::Error::msg)?;
    let pool = shared::db::connect_at_start(&config.db, "artsvao-worker").await?;
    jobs::engine::migrate(&pool).await?;
    let mut engine_db = config.db.clone();
    engine_db.db_pool_size = config.engine_pool_size.max(2);
    let engine_pool = shared::db::connect_lazy_with_settings(
        &engine_db,
        "artsvao-worker-engine",
        &jobs::engine::session_settings(config.engine_sync_commit),
    )?;

    let limiter = jobs::Limiter::with_defaults(pool.clone(), &config.rate_limits);
    let runtime =
        Runtime::new(pool.clone(), engine_pool, registry, config.runtime()).with_limiter(limiter);
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "worker health and metrics listening");
    let http = tokio::spawn(serve_health(
        listener,
        pool,
        runtime.health(),
        shutdown.clone(),
    ));
    runtime.run(shutdown).await;
    let _ = http.await;
    Ok(())
}

#[derive(Clone)]
struct HealthState {
    pool: PgPool,
    health: Arc<Health>,
}

/// `/api/health/liveness`, `/api/health/readiness` and `/metrics` for the worker.
pub async fn serve_health(
    listener: tokio::net::TcpListener,
    pool: PgPool,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route(
            "/api/health/liveness",
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .route("/api/health/readiness", get(readiness))
        .route("/metrics", get(metrics))
        .with_state(HealthState { pool, health });
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "worker health server failed");
    }
}

/// Ready when the database answers; the detail shows the notification channels' circuit
/// breakers (an open breaker pauses a channel, it does not make the worker unready).
async fn readiness(State(s): State<HealthState>) -> impl IntoResponse {
    let db = shared::db::ping(&s.pool, Duration::from_secs(2)).await;
    if db && s.health.db_ok() {
        let breakers = jobs::breaker::states(&s.pool).await.unwrap_or_default();
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "breakers": breakers})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "database": db})),
        )
    }
}

async fn metrics(State(s): State<HealthState>) -> impl IntoResponse {
    if let Err(error) = jobs::ledger::record_queue_gauges(&s.pool).await {
        tracing::warn!(%error, "cannot read queue gauges");
    }
    // The breakers' state as every replica sees it (it lives in PostgreSQL).
    match jobs::breaker::states(&s.pool).await {
        Ok(states) => {
            for b in states {
                let open = if b.state == "closed" { 0.0 } else { 1.0 };
                metrics::gauge!("circuit_breaker_open", "key" => b.key.clone()).set(open);
                metrics::gauge!("circuit_breaker_failures", "key" => b.key)
                    .set(f64::from(b.failures));
            }
        }
        Err(error) => tracing::warn!(%error, "cannot read circuit breakers"),
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        shared::metrics::handle().render(),
    )
}
