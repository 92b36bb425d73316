//! The worker runtime: claims jobs per kind (LISTEN/NOTIFY wake-ups with a polling backstop),
//! runs them with a per-attempt timeout, records outcomes in batches, heartbeats, re-queues the
//! jobs of dead workers, survives database outages and shuts down gracefully.
use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures::FutureExt;
use jobs::{
    engine::{self, Claimed, Completion, Outcome},
    JobContext, JobError, Limiter,
};
use sqlx::{postgres::PgListener, PgPool};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use crate::registry::{Registered, Registry};

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

/// Logs a repeating failure once, then at most every 10 s with the count in between, so an
/// outage does not flood the log.
pub(crate) struct Throttled {
    what: &'static str,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            what,
            last: None,
            suppressed: 0,
        }
    }
    pub(crate) fn error(&mut self, error: &dyn std::fmt::Display) {
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if due {
            tracing::error!(%error, suppressed = self.suppressed, "{} failed", self.what);
            self.last = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
    }
    pub(crate) fn recovered(&mut self) {
        if self.last.take().is_some() {
            tracing::info!("{} recovered", self.what);
        }
        self.suppressed = 0;
    }
}

/// A loop that talks to the database: failures are logged throttled and followed by a capped
/// exponential wait ([`db_backoff`]); a success logs the recovery and resets the wait.
pub(crate) struct DbRetry {
    pub(crate) log: Throttled,
    failures: u32,
}

impl DbRetry {
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            log: Throttled::new(what),
            failures: 0,
        }
    }

    /// Logs `error` and waits the next backoff; false when `stop` fired meanwhile.
    pub(crate) async fn failed(
        &mut self,
        error: &(dyn std::fmt::Display + Sync),
        stop: &CancellationToken,
    ) -> bool {
        self.log.error(error);
        self.failures += 1;
        tokio::select! {
            _ = tokio::time::sleep(db_backoff(self.failures)) => true,
            _ = stop.cancelled() => false,
        }
    }

    pub(crate) fn succeeded(&mut self) {
        self.log.recovered();
        self.failures = 0;
    }
}

/// Capped exponential delay for retrying the database: 100 ms doubling to 5 s.
pub(crate) fn db_backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(5))
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

    /// Runs until `shutdown` is cancelled, then drains: running jobs get `shutdown_timeout` to
    /// finish, the rest are released back to the queue; nothing is lost.
    pub async fn run(self, shutdown: CancellationToken) {
        let kinds = self.registry.kinds();
        tracing::info!(process = %self.process, ?kinds, "worker runtime starting");
        let wakers: Arc<HashMap<&'static str, Arc<Notify>>> = Arc::new(
            kinds
                .iter()
                .map(|k| (*k, Arc::new(Notify::new())))
                .collect(),
        );

        self.register_until_ok(&shutdown).await;

        let (done_tx, done_rx) = mpsc::unbounded_channel::<Completion>();
        let background = CancellationToken::new();
        let completer = tokio::spawn(completer(
            self.engine_pool.clone(),
            self.process.clone(),
            done_rx,
        ));
        // The sweeper re-queues a job of a kind run here when it is still marked running past
        // its timeout plus the dead-worker delay (the runtime itself stops attempts at the
        // timeout, so only a lost outcome or a wedged thread gets there).
        let stuck_after: Vec<(&'static str, Duration)> = self
            .registry
            .kinds
            .iter()
            .map(|k| (k.spec.kind, k.spec.timeout + self.config.dead_after))
            .collect();
        let heartbeat = tokio::spawn(heartbeat(
            self.engine_pool.clone(),
            self.process.clone(),
            kinds.clone(),
            stuck_after,
            self.config.clone(),
            self.health.clone(),
            wakers.clone(),
            background.clone(),
        ));
        let listener = tokio::spawn(listen(
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
                    shutdown.clone(),
                ))
            })
            .collect();

        let jobs = TaskTracker::new();
        let hard_stop = CancellationToken::new();
        let mut dispatchers = Vec::new();
        for registered in self.registry.kinds.iter().cloned() {
            let ctx = Dispatch {
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
            };
            dispatchers.push(tokio::spawn(dispatch(ctx, shutdown.clone())));
        }
        drop(done_tx);

        shutdown.cancelled().await;
        tracing::info!("stopping: no new jobs; waiting for running ones");
        for d in dispatchers.into_iter().chain(crons) {
            let _ = d.await;
        }
        jobs.close();
        if tokio::time::timeout(self.config.shutdown_timeout, jobs.wait())
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
        // Every sender is gone once the jobs finished: the completer flushes and returns.
        let _ = completer.await;
        background.cancel();
        let _ = heartbeat.await;
        let _ = listener.await;
        if let Err(error) = engine::deregister_worker(&self.engine_pool, &self.process).await {
            tracing::warn!(%error, "could not mark worker rows dead; they expire by heartbeat");
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

struct Dispatch {
    pool: PgPool,
    engine_pool: PgPool,
    worker: String,
    waker: Arc<Notify>,
    registered: Registered,
    config: RuntimeConfig,
    health: Arc<Health>,
    done: mpsc::UnboundedSender<Completion>,
    limiter: Limiter,
    jobs: TaskTracker,
    hard_stop: CancellationToken,
}

/// One loop per kind: wait for a free slot, claim as many jobs as there are free slots, start
/// them; when the queue is empty, sleep until a NOTIFY, a local wake-up or the poll interval.
async fn dispatch(ctx: Dispatch, shutdown: CancellationToken) {
    let kind = ctx.registered.spec.kind;
    let slots = Arc::new(Semaphore::new(ctx.registered.concurrency));
    let mut retry = DbRetry::new("claiming jobs");
    loop {
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => return },
            _ = shutdown.cancelled() => return,
        };
        let mut permits = vec![first];
        while permits.len() < ctx.config.claim_batch {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        if shutdown.is_cancelled() {
            return;
        }
        let wanted = permits.len();
        match engine::claim(&ctx.engine_pool, &ctx.worker, kind, wanted).await {
            Ok(claimed) => {
                retry.succeeded();
                ctx.health.set_db_ok(true);
                let got = claimed.len();
                for job in claimed {
                    let Some(permit) = permits.pop() else { break };
                    let run = run_one(RunOne {
                        pool: ctx.pool.clone(),
                        registered: ctx.registered.clone(),
                        done: ctx.done.clone(),
                        limiter: ctx.limiter.clone(),
                        waker: ctx.waker.clone(),
                        hard_stop: ctx.hard_stop.clone(),
                        job,
                    });
                    ctx.jobs.spawn(async move {
                        run.await;
                        drop(permit);
                    });
                }
                drop(permits);
                if got < wanted {
                    tokio::select! {
                        _ = ctx.waker.notified() => {}
                        _ = tokio::time::sleep(ctx.config.poll_interval) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
            Err(error) => {
                drop(permits);
                ctx.health.set_db_ok(false);
                if !retry.failed(&error, &shutdown).await {
                    return;
                }
            }
        }
    }
}

struct RunOne {
    pool: PgPool,
    registered: Registered,
    done: mpsc::UnboundedSender<Completion>,
    limiter: Limiter,
    waker: Arc<Notify>,
    hard_stop: CancellationToken,
    job: Claimed,
}

async fn run_one(r: RunOne) {
    let spec = r.registered.spec;
    let job = r.job;
    let attempt = job.attempt.max(1) as u32;
    let max_attempts = job.max_attempts.max(1) as u32;
    // ERROR level: the span (and its ids) stays on every line whatever the log filter.
    let span = tracing::error_span!(
        "job",
        job.id = %job.id,
        job.kind = spec.kind,
        attempt,
        request_id = job.request_id.as_deref().unwrap_or(""),
    );
    async move {
        let outcome = if job.cancel_requested {
            tracing::info!("cancel requested before start");
            Outcome::Cancelled
        } else if attempt > max_attempts {
            tracing::warn!("attempts exhausted by lost workers");
            Outcome::Failed(format!(
                "gave up after {max_attempts} attempts: the worker running it was lost"
            ))
        } else {
            execute(
                &r.pool,
                &r.limiter,
                &r.registered,
                &job,
                attempt,
                max_attempts,
                &r.hard_stop,
            )
            .await
        };
        if let Outcome::Retry { delay, .. } = &outcome {
            // Wake this kind's dispatcher when the retry is due instead of waiting for a poll.
            let waker = r.waker.clone();
            let delay = *delay;
            tokio::spawn(async move {
                tokio::time::sleep(delay + Duration::from_millis(5)).await;
                waker.notify_one();
            });
        }
        let _ = r.done.send(Completion {
            id: job.id.clone(),
            attempt: job.attempt,
            outcome,
        });
    }
    .instrument(span)
    .await
}

async fn execute(
    pool: &PgPool,
    limiter: &Limiter,
    registered: &Registered,
    job: &Claimed,
    attempt: u32,
    max_attempts: u32,
    hard_stop: &CancellationToken,
) -> Outcome {
    let spec = registered.spec;
    let ctx = JobContext::new(
        job.id.clone(),
        spec.kind,
        attempt,
        max_attempts,
        job.requested_by,
        job.request_id.clone(),
        pool.clone(),
    )
    .with_limiter(limiter.clone());
    metrics::counter!("jobs_started_total", "kind" => spec.kind).increment(1);
    tracing::info!("job started");
    let started = Instant::now();
    let handler = AssertUnwindSafe((registered.handler)(job.payload.clone(), ctx)).catch_unwind();
    let result = tokio::select! {
        r = tokio::time::timeout(spec.timeout, handler) => r,
        _ = hard_stop.cancelled() => {
            tracing::warn!("released unfinished at shutdown");
            return Outcome::Released;
        }
    };
    let elapsed = started.elapsed();
    metrics::histogram!("job_run_seconds", "kind" => spec.kind).record(elapsed.as_secs_f64());
    let error = match result {
        Ok(Ok(Ok(value))) => {
            metrics::counter!("jobs_succeeded_total", "kind" => spec.kind).increment(1);
            tracing::info!(elapsed_ms = elapsed.as_millis() as u64, "job succeeded");
            return Outcome::Succeeded(value);
        }
        Ok(Ok(Err(error))) => error,
        Ok(Err(_panic)) => {
            JobError::permanent("the job handler panicked (a bug); see the worker log")
        }
        Err(_elapsed) => JobError::transient(format!(
            "attempt timed out after {} s",
            spec.timeout.as_secs_f64()
        )),
    };
    match error {
        JobError::Cancelled => {
            metrics::counter!("jobs_cancelled_total", "kind" => spec.kind).increment(1);
            tracing::info!("job cancelled");
            Outcome::Cancelled
        }
        JobError::Permanent(message) => {
            metrics::counter!("jobs_failed_total", "kind" => spec.kind).increment(1);
            tracing::error!(error = %message, "job failed permanently");
            Outcome::Failed(message)
        }
        JobError::Transient {
            message,
            retry_after,
        } => {
            if attempt >= max_attempts {
                metrics::counter!("jobs_failed_total", "kind" => spec.kind).increment(1);
                tracing::error!(error = %message, "job failed: attempts exhausted");
                Outcome::Failed(format!("{message} (gave up after {attempt} attempts)"))
            } else {
                let delay = spec.backoff(attempt).max(retry_after.unwrap_or_default());
                metrics::counter!("jobs_retried_total", "kind" => spec.kind).increment(1);
                tracing::warn!(error = %message, delay_ms = delay.as_millis() as u64, "job will be retried");
                Outcome::Retry {
                    error: message,
                    delay,
                }
            }
        }
    }
}

/// Records outcomes in batches: whatever accumulated while the previous batch was written
/// goes in the next one (no added latency when idle, few transactions under load). A failed
/// write is retried with capped backoff; the outcomes stay in memory meanwhile.
async fn completer(pool: PgPool, process: String, mut rx: mpsc::UnboundedReceiver<Completion>) {
    use backon::{ExponentialBuilder, Retryable};
    let mut log = Throttled::new("recording job outcomes");
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 1000 {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let completions = batch;
        {
            let write = || async { engine::complete(&pool, &process, &completions).await };
            let result = write
                .retry(
                    ExponentialBuilder::default()
                        .with_min_delay(Duration::from_millis(100))
                        .with_max_delay(Duration::from_secs(5))
                        .with_max_times(60)
                        .with_jitter(),
                )
                .notify(|error, _| log.error(error))
                .await;
            match result {
                Ok(_) => log.recovered(),
                Err(error) => tracing::error!(
                    %error,
                    lost = completions.len(),
                    "giving up recording outcomes; the jobs will re-run after their lease expires"
                ),
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn heartbeat(
    pool: PgPool,
    process: String,
    kinds: Vec<&'static str>,
    stuck_after: Vec<(&'static str, Duration)>,
    config: RuntimeConfig,
    health: Arc<Health>,
    wakers: Arc<HashMap<&'static str, Arc<Notify>>>,
    stop: CancellationToken,
) {
    let mut log = Throttled::new("worker heartbeat");
    let mut tick = tokio::time::interval(config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let beat = async {
            if !engine::heartbeat(&pool, &process).await? {
                engine::register_worker(&pool, &process, &kinds).await?;
            }
            engine::reclaim_orphans(&pool, config.dead_after, &stuck_after).await
        };
        match beat.await {
            Ok(reclaimed) => {
                health.set_db_ok(true);
                log.recovered();
                if !reclaimed.is_empty() {
                    tracing::warn!(count = reclaimed.len(), jobs = ?reclaimed, "re-queued jobs of lost workers or stuck past their timeout");
                    wakers.values().for_each(|w| w.notify_one());
                }
            }
            Err(error) => {
                health.set_db_ok(false);
                log.error(&error);
            }
        }
    }
}

/// Wakes the dispatcher of a kind when a job of that kind is inserted. Reconnects with capped
/// backoff; after a reconnect every kind is woken (notifications may have been missed).
async fn listen(
    pool: PgPool,
    wakers: Arc<HashMap<&'static str, Arc<Notify>>>,
    stop: CancellationToken,
) {
    #[derive(serde::Deserialize)]
    struct Insert {
        job_type: String,
    }
    let mut retry = DbRetry::new("LISTEN for new jobs");
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(engine::INSERT_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            l = connected => match l {
                Ok(l) => l,
                Err(error) => {
                    if retry.failed(&error, &stop).await {
                        continue;
                    }
                    return;
                }
            },
            _ = stop.cancelled() => return,
        };
        retry.succeeded();
        wakers.values().for_each(|w| w.notify_one());
        loop {
            let next = tokio::select! {
                n = listener.try_recv() => n,
                _ = stop.cancelled() => return,
            };
            match next {
                Ok(Some(n)) => {
                    if let Ok(insert) = serde_json::from_str::<Insert>(n.payload()) {
                        if let Some(w) = wakers.get(insert.job_type.as_str()) {
                            w.notify_one();
                        }
                    }
                }
                // Connection lost: sqlx reconnects on the next call; wake everyone meanwhile.
                Ok(None) => wakers.values().for_each(|w| w.notify_one()),
                Err(error) => {
                    retry.log.error(&error);
                    break;
                }
            }
        }
    }
}
