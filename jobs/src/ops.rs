//! What operations sees and does across every user's jobs: per-kind queue figures, running jobs
//! with their worker, worker replicas, cron schedules, rate-limit keys, and retrying failed
//! jobs. The api's `/ops` page and `/api/admin/*` read through here.
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::engine::INSERT_CHANNEL;

/// One kind's queue at a glance.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KindStats {
    pub kind: String,
    pub queued: i64,
    pub running: i64,
    pub failed_24h: i64,
    /// Age of the oldest job due now (0 when none waits).
    pub oldest_queued_secs: f64,
    /// Jobs finished (any outcome) in the last 5 minutes, per minute.
    pub per_minute_5m: f64,
}

/// Per kind: queued, running, failed in the last 24 h, oldest due age, throughput over 5 min.
/// One pass over the open jobs (partial index) and the last day's finished ones
/// (`finished_at` index).
pub async fn kind_stats(db: &PgPool) -> Result<Vec<KindStats>, sqlx::Error> {
    sqlx::query_as(
        "select kind,
                count(*) filter (where state = 'queued') as queued,
                count(*) filter (where state = 'running') as running,
                count(*) filter (where state = 'failed' and finished_at > now() - interval '24 hours')
                    as failed_24h,
                coalesce(extract(epoch from now() - min(coalesce(run_after, created_at))
                    filter (where state = 'queued' and coalesce(run_after, created_at) <= now())
                )::float8, 0) as oldest_queued_secs,
                (count(*) filter (where finished_at > now() - interval '5 minutes'))::float8 / 5
                    as per_minute_5m
         from job_runs
         where state in ('queued', 'running') or finished_at > now() - interval '24 hours'
         group by kind order by kind",
    )
    .fetch_all(db)
    .await
}

/// A job running now and the worker holding it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunningJob {
    pub id: String,
    pub kind: String,
    pub attempts: i32,
    pub progress_percent: i16,
    pub worker: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
}

/// The running jobs, longest running first (at most `limit`).
pub async fn running(db: &PgPool, limit: i64) -> Result<Vec<RunningJob>, sqlx::Error> {
    sqlx::query_as(
        "select r.id, r.kind, r.attempts, r.progress_percent, j.lock_by as worker,
                coalesce(j.lock_at, r.started_at) as started_at
         from job_runs r left join apalis.jobs j on j.id = r.id
         where r.state = 'running'
         order by coalesce(j.lock_at, r.started_at) nulls last limit $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}

/// A worker replica (a process), from the engine's registrations (`{process}/{kind}`).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerReplica {
    pub process: String,
    pub kinds: Vec<String>,
    pub last_heartbeat: DateTime<Utc>,
    /// Heartbeat within `alive_within` (a cleanly stopped replica shows its stop as 1970).
    pub alive: bool,
    /// Jobs it holds now.
    pub running: i64,
}

/// Replicas seen in the last day, newest heartbeat first.
pub async fn workers(
    db: &PgPool,
    alive_within: Duration,
) -> Result<Vec<WorkerReplica>, sqlx::Error> {
    sqlx::query_as(
        "with w as (
             select regexp_replace(id, '/[^/]*$', '') as process, worker_type, last_seen, id
             from apalis.workers
             where last_seen > now() - interval '1 day' or last_seen = 'epoch'
         )
         select w.process, array_agg(w.worker_type order by w.worker_type) as kinds,
                max(w.last_seen) as last_heartbeat,
                max(w.last_seen) > now() - $1::interval as alive,
                (select count(*) from apalis.jobs j
                 where j.lock_by = any(array_agg(w.id)) and j.status = 'Running') as running
         from w group by w.process
         order by max(w.last_seen) desc, w.process limit 200",
    )
    .bind(format!("{} milliseconds", alive_within.as_millis()))
    .fetch_all(db)
    .await
}

/// A cron schedule as the replicas last wrote it, with its latest tick.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CronSchedule {
    pub name: String,
    pub expr: String,
    pub next_tick_at: Option<DateTime<Utc>>,
    pub last_tick_at: Option<DateTime<Utc>>,
    pub last_job_id: Option<String>,
    pub last_job_state: Option<String>,
    /// When a replica last wrote this row (start or tick).
    pub updated_at: DateTime<Utc>,
}

pub async fn cron(db: &PgPool) -> Result<Vec<CronSchedule>, sqlx::Error> {
    sqlx::query_as(
        "select s.name, s.expr, s.next_tick_at, t.tick_at as last_tick_at, t.job_id as last_job_id,
                r.state as last_job_state, s.updated_at
         from cron_schedules s
         left join lateral (select tick_at, job_id from cron_ticks c where c.schedule = s.name
                            order by tick_at desc limit 1) t on true
         left join job_runs r on r.id = t.job_id
         order by s.name",
    )
    .fetch_all(db)
    .await
}

/// Records a schedule a replica drives and its next tick (every replica writes the same).
pub async fn record_schedule(
    db: &PgPool,
    name: &str,
    expr: &str,
    next: Option<DateTime<Utc>>,
    by: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into cron_schedules (name, expr, next_tick_at, updated_by) values ($1, $2, $3, $4)
         on conflict (name) do update set expr = excluded.expr, next_tick_at = excluded.next_tick_at,
             updated_by = excluded.updated_by, updated_at = now()",
    )
    .bind(name)
    .bind(expr)
    .bind(next)
    .bind(by)
    .execute(db)
    .await?;
    Ok(())
}

/// A global rate-limit key (`jobs::limiter`): when its next slot is free.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RateKey {
    pub key: String,
    pub next_free_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

pub async fn rate_keys(db: &PgPool, limit: i64) -> Result<Vec<RateKey>, sqlx::Error> {
    sqlx::query_as(
        "select key, tat as next_free_at, seen_at as last_seen_at from rate_limits
         order by seen_at desc limit $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}

/// What became of a retry request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    /// Back in the queue with one more attempt.
    Queued,
    /// No such job.
    NotFound,
    /// Only failed jobs are retried; this one is in `state`.
    NotFailed(String),
    /// The same work (dedup key) is already queued or running as that job.
    Duplicate(String),
    /// The queue entry is missing (pruned) or not in a failed state: nothing to re-run.
    Gone,
}

/// Puts failed job `id` back in the queue as a new attempt of the same job: the engine row
/// pending now with one more allowed attempt, the ledger row `queued` with `manual_retries`
/// counted (its last error kept until the attempt ends). Engine row locked first, then the
/// ledger row, as everywhere. Handlers decide for themselves what a repeated run may do (a call
/// found `unknown` is never dialled again).
pub async fn retry(pool: &PgPool, id: &str) -> Result<Retry, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let engine: Option<String> = sqlx::query_scalar(crate::engine::sql::LOCK_ONE)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let ledger: Option<(String, String, Option<String>)> =
        sqlx::query_as("select state, kind, dedup_key from job_runs where id = $1 for update")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((state, kind, dedup_key)) = ledger else {
        return Ok(Retry::NotFound);
    };
    if state != "failed" {
        return Ok(Retry::NotFailed(state));
    }
    if !matches!(engine.as_deref(), Some("Killed" | "Failed")) {
        return Ok(Retry::Gone);
    }
    if let Some(key) = &dedup_key {
        let open: Option<String> = sqlx::query_scalar(
            "select id from job_runs where kind = $1 and dedup_key = $2
               and state in ('queued', 'running') and id <> $3",
        )
        .bind(&kind)
        .bind(key)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(other) = open {
            return Ok(Retry::Duplicate(other));
        }
    }
    let ids = vec![id.to_string()];
    match requeue(&mut tx, &ids).await {
        // The same work was queued again meanwhile (a concurrent retry or enqueue of the key):
        // the unique index refused this one; nothing changed.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Ok(Retry::Duplicate("queued at the same moment".into()));
        }
        other => other?,
    }
    tx.commit().await?;
    metrics::counter!("jobs_retried_by_admin_total", "kind" => kind).increment(1);
    Ok(Retry::Queued)
}

/// Retries up to `limit` failed jobs of `kind` (newest first), skipping rows another
/// transaction holds and, among jobs of one dedup key, all but the newest (and all when that
/// work is already queued or running). Returns `(retried, failed jobs of the kind left)`, or
/// `None` when a concurrent retry or enqueue queued the same work first (nothing changed;
/// asking again skips it).
pub async fn retry_kind(
    pool: &PgPool,
    kind: &str,
    limit: i64,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let picked: Vec<String> = sqlx::query_scalar(
        "with candidates as (
             select id from job_runs where kind = $1 and state = 'failed'
             order by finished_at desc nulls last limit $2
         ), engine_locked as (
             select j.id from apalis.jobs j
             where j.id in (select id from candidates) and j.status in ('Killed', 'Failed')
             for update skip locked
         ), ledger_locked as (
             select r.id, r.dedup_key, r.finished_at from job_runs r
             where r.id in (select id from engine_locked) and r.state = 'failed'
               and (r.dedup_key is null or not exists (
                   select 1 from job_runs o where o.kind = r.kind and o.dedup_key = r.dedup_key
                     and o.state in ('queued', 'running')))
             for update skip locked
         )
         select distinct on (coalesce(dedup_key, id)) id from ledger_locked
         order by coalesce(dedup_key, id), finished_at desc nulls last",
    )
    .bind(kind)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    match requeue(&mut tx, &picked).await {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(None),
        other => other?,
    }
    let left: i64 =
        sqlx::query_scalar("select count(*) from job_runs where kind = $1 and state = 'failed'")
            .bind(kind)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    let retried = picked.len() as i64;
    if retried > 0 {
        metrics::counter!("jobs_retried_by_admin_total", "kind" => kind.to_string())
            .increment(retried as u64);
    }
    Ok(Some((retried, left)))
}

/// Moves locked failed jobs back to the queue (engine and ledger) and wakes the workers. Each
/// retry allows exactly one more attempt (`max_attempts = attempts + 1`), whatever the kind's
/// limit: an admin asks for one run, not for a new series of automatic retries.
async fn requeue(tx: &mut sqlx::PgConnection, ids: &[String]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "update apalis.jobs set status = 'Pending', run_at = now(), max_attempts = attempts + 1,
             done_at = null, lock_by = null, lock_at = null, lease = null
         where id = any($1)",
    )
    .bind(ids)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "update job_runs set state = 'queued', max_attempts = attempts + 1,
             manual_retries = manual_retries + 1, finished_at = null, started_at = null,
             run_after = now(),
             cancel_requested = false, progress_percent = 0, progress_message = null,
             lease = null, updated_at = now()
         where id = any($1)",
    )
    .bind(ids)
    .execute(&mut *tx)
    .await?;
    // Pending rows are found by polling too; the notification makes it immediate.
    sqlx::query(
        "select pg_notify($1, json_build_object('job_type', k.kind)::text)
         from (select distinct kind from job_runs where id = any($2)) k",
    )
    .bind(INSERT_CHANNEL)
    .bind(ids)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
