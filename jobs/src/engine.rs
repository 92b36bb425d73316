//! The queue engine boundary: everything that knows apalis-postgres and its `apalis` schema.
//!
//! We use apalis-postgres 1.0 as the storage layer — its schema and migrations, its transactional
//! `push_tasks`, its insert trigger that NOTIFYs `apalis::job::insert` — and drive it with our
//! own claim / complete / heartbeat statements instead of apalis' worker state machine, which
//! has the traps measured in `reference/apalis-postgres-findings.md` (a worker that dies on the
//! first DB error, heartbeats and acks that only happen between fetches, no durable backoff).
//! Each statement below also moves the `job_runs` ledger in the same round trip.
use std::time::Duration;

use apalis_core::task::{builder::TaskBuilder, task_id::TaskId};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use ulid::Ulid;
use uuid::Uuid;

use crate::enqueue::EnqueueError;

/// Session settings of the engine's own pool (claims, outcomes, heartbeats). Every engine
/// statement touches a few rows by primary key; with the statistics of a queue that churns,
/// the planner sometimes estimated "1 row" and joined a whole-table sequential scan against
/// the batch (measured: 208 ms instead of 41 ms for 500 outcomes over 20,000 rows, growing with
/// the table). Sequential scans are never right for these statements, so they are ruled out.
///
/// `synchronous_commit = off` (this pool only): a claim or an outcome committed in the last
/// few hundred milliseconds before a PostgreSQL crash may be lost. Either way the job runs
/// again (back to pending, or re-queued by the sweeper), which the at-least-once contract
/// already allows, and handlers record their side effects through the handler pool, which
/// keeps synchronous commits. It saves a WAL flush per claim and per outcome batch.
pub const SESSION_SETTINGS: &[(&str, &str)] =
    &[("enable_seqscan", "off"), ("synchronous_commit", "off")];

/// The channel apalis' insert trigger notifies, payload `{"job_type": .., "id": ..}`.
pub const INSERT_CHANNEL: &str = "apalis::job::insert";

/// Applies the engine's migrations, then the application's, each under sqlx's advisory lock.
/// Both share `_sqlx_migrations`, so each ignores versions that belong to the other.
pub async fn migrate(pool: &PgPool) -> Result<(), shared::db::DbError> {
    let mut engine = apalis_postgres::PostgresStorage::migrations();
    engine.set_ignore_missing(true);
    engine.run(pool).await?;
    shared::db::migrate_app(pool).await
}

/// Inserts engine rows for already-ledgered jobs, in the caller's transaction.
pub(crate) async fn push(
    conn: &mut PgConnection,
    kind: &str,
    max_attempts: u32,
    jobs: Vec<(String, Vec<u8>)>,
) -> Result<(), EnqueueError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut tasks = Vec::with_capacity(jobs.len());
    for (id, payload) in jobs {
        let ulid = Ulid::from_string(&id).map_err(|e| EnqueueError::Engine(e.to_string()))?;
        tasks.push(
            TaskBuilder::new(payload)
                .task_id(TaskId::from_ulid(ulid))
                .max_attempts(max_attempts as usize)
                .build(),
        );
    }
    apalis_postgres::queries::push_tasks(conn, kind, tasks)
        .await
        .map_err(|e| EnqueueError::Engine(e.to_string()))
}

/// A job claimed by a worker for one attempt.
#[derive(Debug)]
pub struct Claimed {
    pub id: String,
    pub payload: Vec<u8>,
    /// 1-based number of this attempt (crashed attempts count).
    pub attempt: i32,
    pub max_attempts: i32,
    pub cancel_requested: bool,
    pub requested_by: Option<Uuid>,
    pub request_id: Option<String>,
}

/// Claims up to `limit` due jobs of `kind` for `worker` (`FOR UPDATE SKIP LOCKED`), marks them
/// running in the engine and the ledger, in one statement.
///
/// The `= any(array(..))` condition makes the planner fetch the claimed rows by primary key;
/// joining the CTE alone got a hash join over a sequential scan of the whole table (5–6 ms per
/// 20,000 rows, growing with every finished job kept). See also [`SESSION_SETTINGS`].
pub async fn claim(
    pool: &PgPool,
    worker: &str,
    kind: &str,
    limit: usize,
) -> Result<Vec<Claimed>, sqlx::Error> {
    // Engine rows and ledger rows come back as separate rows of one result (`from_engine`)
    // and are merged here: joining the two CTEs made the planner rescan one per row.
    let rows: Vec<ClaimRow> = sqlx::query_as(
        "with next as (
             select id from apalis.jobs
             where job_type = $2 and run_at <= now()
               and (status = 'Pending' or (status = 'Failed' and attempts < max_attempts))
             order by priority desc, run_at
             limit $3
             for update skip locked
         ), claimed as (
             update apalis.jobs j
             set status = 'Running', lock_by = $1, lock_at = now(), attempts = j.attempts + 1
             from next where j.id = next.id and j.id = any(array(select id from next))
             returning j.id, j.job, j.attempts, j.max_attempts, j.run_at
         ), ledger as (
             update job_runs r
             set state = 'running', attempts = c.attempts, started_at = coalesce(r.started_at, now()),
                 run_after = null, updated_at = now()
             from claimed c
             where r.id = c.id and r.state <> 'cancelled'
             returning r.id, r.cancel_requested, r.requested_by, r.request_id
         )
         select true as from_engine, c.id, c.job as payload, c.attempts as attempt, c.max_attempts,
                false as cancel_requested, null::uuid as requested_by, null::text as request_id,
                c.run_at
         from claimed c
         union all
         select false, l.id, null, 0, 0, l.cancel_requested, l.requested_by, l.request_id, null
         from ledger l",
    )
    .bind(worker)
    .bind(kind)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    let mut ledger: std::collections::HashMap<String, ClaimRow> = std::collections::HashMap::new();
    let mut engine = Vec::with_capacity(rows.len() / 2);
    for row in rows {
        if row.from_engine {
            engine.push(row);
        } else {
            ledger.insert(row.id.clone(), row);
        }
    }
    engine.sort_by_key(|r| r.run_at);
    Ok(engine
        .into_iter()
        .map(|e| {
            let l = ledger.remove(&e.id);
            Claimed {
                payload: e.payload.unwrap_or_default(),
                attempt: e.attempt,
                max_attempts: e.max_attempts,
                // No ledger row to run under (cancelled meanwhile): treat as cancelled.
                cancel_requested: l.as_ref().is_none_or(|l| l.cancel_requested),
                requested_by: l.as_ref().and_then(|l| l.requested_by),
                request_id: l.and_then(|l| l.request_id),
                id: e.id,
            }
        })
        .collect())
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    from_engine: bool,
    id: String,
    payload: Option<Vec<u8>>,
    attempt: i32,
    max_attempts: i32,
    cancel_requested: bool,
    requested_by: Option<Uuid>,
    request_id: Option<String>,
    run_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// How one attempt ended, as the runtime reports it to [`complete`].
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded(Value),
    /// Run again after `delay`; the ledger shows `queued` with the error and `run_after`.
    Retry {
        error: String,
        delay: Duration,
    },
    Failed(String),
    Cancelled,
    /// Not run to the end through no fault of the job (shutdown): back to the queue, the
    /// attempt not counted.
    Released,
}

#[derive(Debug, Clone)]
pub struct Completion {
    pub id: String,
    /// The attempt that ended: with the lease owner it fences late reports (a re-queued job
    /// claimed again by the same process is a new attempt).
    pub attempt: i32,
    pub outcome: Outcome,
}

/// Records many outcomes of one worker process in one statement. Rows whose lease the process
/// no longer holds (re-queued after a lost heartbeat) are left alone: the other run owns them.
/// Returns the ids that were recorded.
pub async fn complete(
    pool: &PgPool,
    process: &str,
    completions: &[Completion],
) -> Result<Vec<String>, sqlx::Error> {
    let n = completions.len();
    let mut ids = Vec::with_capacity(n);
    let mut outcomes = Vec::with_capacity(n);
    let mut results: Vec<Option<Value>> = Vec::with_capacity(n);
    let mut errors: Vec<Option<String>> = Vec::with_capacity(n);
    let mut delays = Vec::with_capacity(n);
    let mut attempts = Vec::with_capacity(n);
    for c in completions {
        ids.push(c.id.clone());
        attempts.push(c.attempt);
        let (name, result, error, delay) = match &c.outcome {
            Outcome::Succeeded(v) => ("succeeded", Some(v.clone()), None, 0i64),
            Outcome::Retry { error, delay } => {
                ("retry", None, Some(error.clone()), delay.as_millis() as i64)
            }
            Outcome::Failed(e) => ("failed", None, Some(e.clone()), 0),
            Outcome::Cancelled => ("cancelled", None, Some("cancelled by request".into()), 0),
            Outcome::Released => ("released", None, None, 0),
        };
        outcomes.push(name);
        results.push(result);
        errors.push(error);
        delays.push(delay);
    }
    let done: Vec<String> = sqlx::query_scalar(
        "with eng as (
             update apalis.jobs j
             set status = case o.outcome when 'succeeded' then 'Done' when 'retry' then 'Failed'
                                         when 'released' then 'Pending' else 'Killed' end,
                 run_at = case when o.outcome = 'retry'
                               then now() + o.delay_ms * interval '1 millisecond' else j.run_at end,
                 attempts = case when o.outcome = 'released' then greatest(j.attempts - 1, 0)
                                 else j.attempts end,
                 lock_by = null,
                 done_at = case when o.outcome in ('retry', 'released') then null else now() end,
                 last_result = case when o.outcome = 'succeeded' then jsonb_build_object('Ok', o.result)
                                    else jsonb_build_object('Err', o.error) end
             from unnest($1::text[], $2::text[], $3::jsonb[], $4::text[], $5::bigint[], $7::int[])
                 as o(id, outcome, result, error, delay_ms, attempt)
             where j.id = o.id and j.lock_by = $6 || '/' || j.job_type and j.status = 'Running'
               and j.attempts = o.attempt
             returning j.id, j.attempts, j.run_at, o.outcome, o.result, o.error
         )
         update job_runs r
         set state = case eng.outcome when 'succeeded' then 'succeeded' when 'retry' then 'queued'
                                      when 'released' then 'queued' when 'cancelled' then 'cancelled'
                                      else 'failed' end,
             attempts = eng.attempts,
             result = eng.result,
             error = case when eng.outcome = 'released' then r.error else eng.error end,
             progress_percent = case when eng.outcome = 'succeeded' then 100 else r.progress_percent end,
             run_after = case when eng.outcome = 'retry' then eng.run_at else null end,
             finished_at = case when eng.outcome in ('retry', 'released') then null else now() end,
             updated_at = now()
         from eng
         where r.id = eng.id
         returning r.id",
    )
    .bind(&ids)
    .bind(&outcomes)
    .bind(&results)
    .bind(&errors)
    .bind(&delays)
    .bind(process)
    .bind(&attempts)
    .fetch_all(pool)
    .await?;
    Ok(done)
}

/// Registers one engine worker row per kind for this process, all named `{process}/{kind}`.
pub async fn register_worker(
    pool: &PgPool,
    process: &str,
    kinds: &[&str],
) -> Result<(), sqlx::Error> {
    let names: Vec<String> = kinds.iter().map(|k| worker_name(process, k)).collect();
    let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
    sqlx::query(
        "insert into apalis.workers (id, worker_type, storage_name, layers, last_seen)
         select id, kind, 'artsvao', '', now() from unnest($1::text[], $2::text[]) as t(id, kind)
         on conflict (id) do update set last_seen = now()",
    )
    .bind(&names)
    .bind(&kinds)
    .execute(pool)
    .await?;
    Ok(())
}

pub fn worker_name(process: &str, kind: &str) -> String {
    format!("{process}/{kind}")
}

/// Marks every worker row of this process alive. Returns false when the rows are gone.
pub async fn heartbeat(pool: &PgPool, process: &str) -> Result<bool, sqlx::Error> {
    let updated =
        sqlx::query("update apalis.workers set last_seen = now() where id like $1 || '/%'")
            .bind(process)
            .execute(pool)
            .await?;
    Ok(updated.rows_affected() > 0)
}

/// Marks this process's worker rows dead (at clean shutdown), so nobody waits for them.
pub async fn deregister_worker(pool: &PgPool, process: &str) -> Result<(), sqlx::Error> {
    sqlx::query("update apalis.workers set last_seen = 'epoch' where id like $1 || '/%'")
        .bind(process)
        .execute(pool)
        .await?;
    Ok(())
}

/// Puts back in the queue (1) the jobs held by workers unseen for `dead_after` (crashed or
/// partitioned processes) and (2) the jobs of the given kinds still marked running longer than
/// their limit although their worker is alive (a lost outcome, a wedged attempt: the sweeper).
/// The attempt they were on stays counted; a late report from the old attempt is fenced off by
/// [`complete`]. Returns the ids with the reason.
pub async fn reclaim_orphans(
    pool: &PgPool,
    dead_after: Duration,
    stuck_after: &[(&str, Duration)],
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let kinds: Vec<&str> = stuck_after.iter().map(|(k, _)| *k).collect();
    let limits: Vec<i64> = stuck_after
        .iter()
        .map(|(_, d)| d.as_millis() as i64)
        .collect();
    sqlx::query_as(
        "with limits as (
             select * from unnest($2::text[], $3::bigint[]) as l(kind, stuck_ms)
         ), stale as (
             select j.id,
                    case when exists (select 1 from apalis.workers w
                                      where w.id = j.lock_by and w.last_seen > now() - $1::interval)
                         then 'stuck past its run timeout' else 'worker lost' end as reason
             from apalis.jobs j
             where j.status in ('Running', 'Queued') and j.lock_by is not null
               and (not exists (select 1 from apalis.workers w
                                where w.id = j.lock_by and w.last_seen > now() - $1::interval)
                    or exists (select 1 from limits l
                               where l.kind = j.job_type
                                 and j.lock_at < now() - l.stuck_ms * interval '1 millisecond'))
             for update of j skip locked
         ), requeued as (
             update apalis.jobs j set status = 'Pending', lock_by = null, lock_at = null
             from stale where j.id = stale.id
             returning j.id, stale.reason
         )
         update job_runs r
         set state = 'queued', error = q.reason || ' during attempt ' || r.attempts || '; re-queued',
             updated_at = now()
         from requeued q where r.id = q.id and r.state = 'running'
         returning r.id, q.reason",
    )
    .bind(format!("{} milliseconds", dead_after.as_millis()))
    .bind(&kinds)
    .bind(&limits)
    .fetch_all(pool)
    .await
}

/// Cancels a job for `user` (`None` = admin, any job). A queued job is cancelled at once; a
/// running one gets its cancel flag set and ends `cancelled` at its next checkpoint.
/// Returns the state after the request, or `None` when the job is not visible.
pub async fn cancel(
    pool: &PgPool,
    id: &str,
    user: Option<Uuid>,
) -> Result<Option<String>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let state: Option<String> = sqlx::query_scalar(
        "update job_runs set cancel_requested = true, updated_at = now()
         where id = $1 and ($2::uuid is null or requested_by = $2)
         returning state",
    )
    .bind(id)
    .bind(user)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(state) = state else {
        return Ok(None);
    };
    let mut state = state;
    if state == "queued" {
        // Only if no worker holds it: otherwise it is running and sees the flag.
        let killed = sqlx::query(
            "update apalis.jobs set status = 'Killed', done_at = now(),
                 last_result = '{\"Err\": \"cancelled by request\"}'
             where id = $1 and status in ('Pending', 'Failed')",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if killed.rows_affected() == 1 {
            sqlx::query(
                "update job_runs set state = 'cancelled', finished_at = now(), run_after = null,
                     error = 'cancelled by request', updated_at = now()
                 where id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            state = "cancelled".into();
        }
    }
    tx.commit().await?;
    Ok(Some(state))
}

/// Queue depth and age of the oldest due job, per kind (for `/metrics`).
#[derive(Debug, sqlx::FromRow)]
pub struct QueueStats {
    pub kind: String,
    pub queued: i64,
    pub oldest_age_seconds: f64,
}

pub async fn queue_stats(pool: &PgPool) -> Result<Vec<QueueStats>, sqlx::Error> {
    sqlx::query_as(
        "select kind, count(*) as queued,
                coalesce(extract(epoch from now() - min(coalesce(run_after, created_at))
                    filter (where coalesce(run_after, created_at) <= now()))::float8, 0)
                    as oldest_age_seconds
         from job_runs where state = 'queued' group by kind order by kind",
    )
    .fetch_all(pool)
    .await
}

/// Refreshes the queue gauges (depth and oldest due age per kind) from the ledger; called on
/// each `/metrics` scrape of the api and the worker.
pub async fn record_queue_gauges(pool: &PgPool) -> Result<(), sqlx::Error> {
    for s in queue_stats(pool).await? {
        metrics::gauge!("jobs_queued", "kind" => s.kind.clone()).set(s.queued as f64);
        metrics::gauge!("jobs_oldest_queued_age_seconds", "kind" => s.kind)
            .set(s.oldest_age_seconds);
    }
    Ok(())
}
