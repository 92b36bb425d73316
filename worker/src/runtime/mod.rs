//! The worker runtime: claims jobs per kind (LISTEN/NOTIFY wake-ups with a polling backstop),
//! runs them with a per-attempt timeout, records outcomes in batches, heartbeats, re-queues the
//! jobs of dead workers, survives database outages and shuts down gracefully. One file per
//! loop: [`dispatch`] (claim), [`execute`] (run one attempt), [`completer`] (record outcomes),
//! [`heartbeat`] (liveness and re-queueing), [`listen`] (wake-ups).
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use jobs::{engine, ledger::Completion, Limiter};
use sqlx::PgPool;
use tokio::sync::{mpsc, Notify};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::registry::Registry;

mod completer;
mod db_retry;
mod dispatch;
mod execute;
mod heartbeat;
mod listen;

pub(crate) use db_retry::{db_backoff, DbRetry, Throttled};

/// How long the last outcomes may take to be written at shutdown, after the running jobs.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Timing of the runtime. Defaults: poll 1 s, heartbeat 3 s, a worker unseen for 15 s is dead
/// (its jobs re-run elsewhere well within 30 s), shutdown waits 30 s for running jobs.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub poll_interval: Duration,
    pub heartbeat_interval: Duration,
    pub dead_after: Duration,
    pub shutdown_timeout: Duration,
    /// Most jobs claimed in one statement (also bounded by free slots).
    pub claim_batch: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(3),
            dead_after: Duration::from_secs(15),
            shutdown_timeout: Duration::from_secs(30),
            claim_batch: 100,
        }
    }
}

/// Shared view of the runtime's health for the readiness probe.
#[derive(Debug, Default)]
pub struct Health {
    db_ok: AtomicBool,
}

impl Health {
    pub fn db_ok(&self) -> bool {
        self.db_ok.load(Ordering::Relaxed)
    }
    fn set_db_ok(&self, ok: bool) {
        self.db_ok.store(ok, Ordering::Relaxed);
    }
}

pub struct Runtime {
    pool: PgPool,
    engine_pool: PgPool,
    registry: Registry,
    config: RuntimeConfig,
    process: String,
    health: Arc<Health>,
    limiter: Limiter,
}

impl Runtime {
    /// `pool` serves handlers; `engine_pool` (a separate, small pool) serves claims,
    /// completions and heartbeats, so busy handlers cannot starve the queue machinery.
    pub fn new(
        pool: PgPool,
        engine_pool: PgPool,
        registry: Registry,
        config: RuntimeConfig,
    ) -> Self {
        shared::metrics::handle();
        let pool_for_limiter = pool.clone();
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
        let process = format!("{host}:{}:{}", std::process::id(), ulid::Ulid::generate());
        Self {
            pool,
            engine_pool,
            registry,
            config,
            process,
            health: Arc::new(Health::default()),
            limiter: Limiter::new(pool_for_limiter),
        }
    }

    /// Sets the global rate limiter handed to every job (`ctx.limiter()`).
    pub fn with_limiter(mut self, limiter: Limiter) -> Self {
        self.limiter = limiter;
        self
    }

    /// Unique per process start, so a restarted container never inherits a dead lease.
    pub fn process_id(&self) -> &str {
        &self.process
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Runs until `shutdown` is cancelled, then drains: running jobs get `shutdown_timeout`
    /// (counted from the signal) to finish, the rest are released back to the queue; the last
    /// outcomes get [`FLUSH_TIMEOUT`] more to be written. Nothing is lost: whatever is not
    /// recorded runs again after its lease expires.
    pub async fn run(self, shutdown: CancellationToken) {
        let kinds = self.registry.kinds();
        tracing::info!(process = %self.process, ?kinds, "worker runtime starting");
        let wakers: Arc<HashMap<&'static str, Arc<Notify>>> = Arc::new(
            kinds
                .iter()
                .map(|k| (*k, Arc::new(Notify::new())))
                .collect(),
        );
        for kind in &kinds {
            // Zero until the first scrape says otherwise: a drained kind shows 0, not nothing.
            metrics::gauge!("jobs_queued", "kind" => *kind).set(0.0);
        }

        self.register_until_ok(&shutdown).await;

        let (done_tx, done_rx) = mpsc::unbounded_channel::<Completion>();
        let background = CancellationToken::new();
        let give_up_outcomes = CancellationToken::new();
        let completer = tokio::spawn(completer::completer(
            self.engine_pool.clone(),
            done_rx,
            give_up_outcomes.clone(),
        ));
        let running = execute::Running::default();
        // The sweeper re-queues a job of a kind run here when it is still marked running past
        // its timeout plus the dead-worker delay (the runtime itself stops attempts at the
        // timeout, so only a lost outcome or a wedged thread gets there).
        let stuck_after: Vec<(&'static str, Duration)> = self
            .registry
            .kinds
            .iter()
            .map(|k| (k.spec.kind, k.spec.timeout + self.config.dead_after))
            .collect();
        let heartbeat = tokio::spawn(heartbeat::heartbeat(
            heartbeat::Heartbeat {
                pool: self.engine_pool.clone(),
                process: self.process.clone(),
                kinds: kinds.clone(),
                stuck_after,
                config: self.config.clone(),
                health: self.health.clone(),
                wakers: wakers.clone(),
                running: running.clone(),
            },
            background.clone(),
        ));
        let listener = tokio::spawn(listen::listen(
            self.engine_pool.clone(),
            wakers.clone(),
            background.clone(),
        ));

        let crons: Vec<_> = self
            .registry
            .schedules
            .iter()
            .cloned()
            .map(|s| {
                tokio::spawn(crate::cron::run_schedule(
                    self.pool.clone(),
                    s,
                    self.process_id().to_string(),
                    shutdown.clone(),
                ))
            })
            .collect();

        let jobs = TaskTracker::new();
        let hard_stop = CancellationToken::new();
        let mut dispatchers = Vec::new();
        for registered in self.registry.kinds.iter().cloned() {
            let ctx = dispatch::Dispatch {
                pool: self.pool.clone(),
                engine_pool: self.engine_pool.clone(),
                worker: engine::worker_name(&self.process, registered.spec.kind),
                waker: wakers[registered.spec.kind].clone(),
                registered,
                config: self.config.clone(),
                health: self.health.clone(),
                done: done_tx.clone(),
                limiter: self.limiter.clone(),
                jobs: jobs.clone(),
                hard_stop: hard_stop.clone(),
                running: running.clone(),
            };
            dispatchers.push(tokio::spawn(dispatch::dispatch(ctx, shutdown.clone())));
        }
        drop(done_tx);

        shutdown.cancelled().await;
        let deadline = tokio::time::Instant::now() + self.config.shutdown_timeout;
        tracing::info!("stopping: no new jobs; waiting for running ones");
        for d in dispatchers.into_iter().chain(crons) {
            // A dispatcher or a cron tick waiting on the database must not eat the grace.
            if tokio::time::timeout_at(deadline, d).await.is_err() {
                tracing::warn!("a claim loop did not stop in time");
            }
        }
        jobs.close();
        if tokio::time::timeout_at(deadline, jobs.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                still_running = jobs.len(),
                "shutdown timeout reached; releasing unfinished jobs to the queue"
            );
            hard_stop.cancel();
            jobs.wait().await;
        }
        // Every sender is gone once the jobs finished: the completer flushes and returns —
        // within the flush bound, even with the database away or a statement hanging.
        let mut completer = completer;
        if tokio::time::timeout(FLUSH_TIMEOUT, &mut completer)
            .await
            .is_err()
        {
            give_up_outcomes.cancel();
            if tokio::time::timeout(Duration::from_secs(1), &mut completer)
                .await
                .is_err()
            {
                tracing::error!("outcomes still unwritten at the flush deadline; those jobs run again after their lease expires");
                completer.abort();
            }
        }
        background.cancel();
        for (name, mut task) in [("heartbeat", heartbeat), ("listener", listener)] {
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                tracing::warn!("the {name} did not stop in time; aborted");
                task.abort();
            }
        }
        let deregister = engine::deregister_worker(&self.engine_pool, &self.process, &kinds);
        match tokio::time::timeout(Duration::from_secs(2), deregister).await {
            Ok(Ok(())) => {}
            _ => tracing::warn!("could not mark worker rows dead; they expire by heartbeat"),
        }
        tracing::info!("worker runtime stopped");
    }

    async fn register_until_ok(&self, shutdown: &CancellationToken) {
        let mut retry = DbRetry::new("worker registration");
        loop {
            match engine::register_worker(&self.engine_pool, &self.process, &self.registry.kinds())
                .await
            {
                Ok(()) => {
                    self.health.set_db_ok(true);
                    retry.succeeded();
                    return;
                }
                Err(error) => {
                    self.health.set_db_ok(false);
                    if !retry.failed(&error, shutdown).await {
                        return;
                    }
                }
            }
        }
    }
}
