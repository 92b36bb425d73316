//! The `job_runs` ledger: every read and write of a job's row, its events and its artifact.
//! What `GET /api/jobs…` shows comes from here; the runtime's transitions (claim, complete,
//! reclaim, cancel) are single statements assembled here from the engine's halves in
//! [`crate::engine::sql`], so the ledger costs no extra round trip.
//!
//! Visibility: a `viewer` of `None` is an admin (sees every job), `Some(user)` sees only their
//! own.
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::domain::page::{self, Cte, Page, PageRequest};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::{engine::sql, enqueue::Requester};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRun {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub progress_percent: i16,
    pub progress_message: Option<String>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub requested_by: Option<Uuid>,
    pub cancel_requested: bool,
    pub run_after: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub has_artifact: bool,
}

impl JobRun {
    pub fn is_terminal(&self) -> bool {
        matches!(self.state.as_str(), "succeeded" | "failed" | "cancelled")
    }
}

/// The states a job moves through.
pub const STATES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];

const COLUMNS: &str = "r.id, r.kind, r.state, r.attempts, r.max_attempts, r.progress_percent,
    r.progress_message, r.result, r.error, r.requested_by, r.cancel_requested, r.run_after,
    r.created_at, r.started_at, r.finished_at,
    exists (select 1 from artifacts a where a.job_id = r.id) as has_artifact";

// ----- enqueue -----

/// Inserts ledger rows for new jobs of `kind` (ids and dedup keys pairwise) in the caller's
/// transaction; returns the ids inserted — a job whose dedup key matches a queued or running
/// job of the kind is not.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    kind: &str,
    max_attempts: u32,
    requester: &Requester,
    ids: &[String],
    keys: &[Option<String>],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "insert into job_runs (id, kind, max_attempts, requested_by, request_id, dedup_key)
         select id, $2, $3, $4, $5, key from unnest($1::text[], $6::text[]) as t(id, key)
         on conflict (kind, dedup_key) where dedup_key is not null and state in ('queued', 'running')
         do nothing
         returning id",
    )
    .bind(ids)
    .bind(kind)
    .bind(max_attempts as i32)
    .bind(requester.user_id)
    .bind(&requester.request_id)
    .bind(keys)
    .fetch_all(&mut *conn)
    .await
}

/// `(dedup key, job id)` of the queued or running jobs of `kind` holding these keys.
pub(crate) async fn open_by_dedup_key(
    conn: &mut PgConnection,
    kind: &str,
    keys: &[String],
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "select dedup_key, id from job_runs
         where kind = $1 and dedup_key = any($2) and state in ('queued', 'running')",
    )
    .bind(kind)
    .bind(keys)
    .fetch_all(&mut *conn)
    .await
}

// ----- reads -----

pub async fn get(
    db: impl PgExecutor<'_>,
    id: &str,
    viewer: Option<Uuid>,
) -> Result<Option<JobRun>, sqlx::Error> {
    let sql = format!(
        "select {COLUMNS} from job_runs r where r.id = $1 and ($2::uuid is null or r.requested_by = $2)"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(viewer)
        .fetch_optional(db)
        .await
}

#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub kind: Option<String>,
    pub state: Option<String>,
    /// Only jobs this user requested (the admin's filter; a non-admin viewer is always only
    /// themselves).
    pub requested_by: Option<Uuid>,
}

/// One page, newest first, and the total matching count.
pub async fn list(
    db: impl PgExecutor<'_>,
    viewer: Option<Uuid>,
    filter: &ListFilter,
    page: PageRequest,
) -> Result<Page<JobRun>, sqlx::Error> {
    let query = sqlx::query(page::page_sql(
        "select * from job_runs r
         where ($1::uuid is null or r.requested_by = $1)
           and ($2::text is null or r.kind = $2) and ($3::text is null or r.state = $3)
           and ($4::uuid is null or r.requested_by = $4)",
        Cte::Inline,
        "r",
        COLUMNS,
        "r.created_at desc, r.id desc",
        5,
    ))
    .bind(viewer)
    .bind(&filter.kind)
    .bind(&filter.state)
    .bind(filter.requested_by);
    page::fetch(db, query, page).await
}

/// One recorded change of a job (state, attempts or progress), in order.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobEvent {
    pub id: i64,
    pub state: String,
    pub attempts: i32,
    pub progress_percent: i16,
    pub progress_message: Option<String>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// Most events [`events_after`] returns at once.
pub const EVENTS_PAGE: i64 = 500;

pub async fn events_after(
    db: impl PgExecutor<'_>,
    job_id: &str,
    after: i64,
) -> Result<Vec<JobEvent>, sqlx::Error> {
    sqlx::query_as(
        "select id, state, attempts, progress_percent, progress_message, error, at
         from job_events where job_id = $1 and id > $2 order by id limit $3",
    )
    .bind(job_id)
    .bind(after)
    .bind(EVENTS_PAGE)
    .fetch_all(db)
    .await
}

/// Where a new subscriber starts reading a job's events: after the end of its last run that
/// later events follow (an admin retried the failed job), else from the beginning (0).
pub async fn current_run_start(db: impl PgExecutor<'_>, job_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "select coalesce(max(e.id), 0) from job_events e
         where e.job_id = $1 and e.state in ('succeeded', 'failed', 'cancelled')
           and exists (select 1 from job_events l where l.job_id = $1 and l.id > e.id)",
    )
    .bind(job_id)
    .fetch_one(db)
    .await
}

#[derive(Debug, sqlx::FromRow)]
pub struct Artifact {
    pub file_name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

pub async fn artifact(
    db: impl PgExecutor<'_>,
    job_id: &str,
    viewer: Option<Uuid>,
) -> Result<Option<Artifact>, sqlx::Error> {
    sqlx::query_as(
        "select a.file_name, a.content_type, a.bytes from artifacts a join job_runs r on r.id = a.job_id
         where a.job_id = $1 and ($2::uuid is null or r.requested_by = $2)",
    )
    .bind(job_id)
    .bind(viewer)
    .fetch_optional(db)
    .await
}

// ----- what a running job writes -----

/// Records progress of the run holding `lease`; returns whether a cancel was requested, or
/// `None` when that run no longer holds the job (its lease was taken over).
pub async fn progress(
    db: impl PgExecutor<'_>,
    id: &str,
    lease: Uuid,
    percent: u8,
    message: &str,
) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar(
        "update job_runs set progress_percent = $2, progress_message = $3, updated_at = now()
         where id = $1 and state = 'running' and lease = $4
         returning cancel_requested",
    )
    .bind(id)
    .bind(i16::from(percent.min(100)))
    .bind(message)
    .bind(lease)
    .fetch_optional(db)
    .await
}

/// Whether someone asked to cancel the job, for the run holding `lease`; `None` when that run
/// no longer holds the job.
pub async fn cancel_flag(
    db: impl PgExecutor<'_>,
    id: &str,
    lease: Uuid,
) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar("select cancel_requested from job_runs where id = $1 and lease = $2")
        .bind(id)
        .bind(lease)
        .fetch_optional(db)
        .await
}

/// In the caller's transaction: locks the job's ledger row if the run holding `lease` still
/// holds it, and says whether it does. Until that transaction ends nobody can take the lease
/// over (the takeover updates this row), so what the transaction writes is the lease holder's:
/// the fence a handler takes before committing an effect's key.
pub async fn hold_lease(
    conn: &mut PgConnection,
    id: &str,
    lease: Uuid,
) -> Result<bool, sqlx::Error> {
    let held: Option<i32> =
        sqlx::query_scalar("select 1 from job_runs where id = $1 and lease = $2 for share")
            .bind(id)
            .bind(lease)
            .fetch_optional(conn)
            .await?;
    Ok(held.is_some())
}

/// [`hold_lease`] that also reads the cancel flag under the lock (one statement, on the
/// caller's connection): `None` when the lease is lost, else whether a cancel was requested.
pub async fn hold_lease_reading_cancel(
    conn: &mut PgConnection,
    id: &str,
    lease: Uuid,
) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar(
        "select cancel_requested from job_runs where id = $1 and lease = $2 for share",
    )
    .bind(id)
    .bind(lease)
    .fetch_optional(conn)
    .await
}

/// Stores the job's downloadable file (one per job; a retry replaces it) if the run holding
/// `lease` still holds the job — checked under a lock on its ledger row, so a run that lost
/// its lease can never overwrite the file of the run that replaced it. Returns false when the
/// lease is lost (nothing written).
pub async fn store_artifact(
    db: impl PgExecutor<'_>,
    id: &str,
    lease: Uuid,
    file_name: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> Result<bool, sqlx::Error> {
    let stored = sqlx::query(
        "with holder as (select id from job_runs where id = $1 and lease = $5 for share)
         insert into artifacts (job_id, file_name, content_type, bytes)
         select id, $2, $3, $4 from holder
         on conflict (job_id) do update
         set file_name = excluded.file_name, content_type = excluded.content_type,
             bytes = excluded.bytes, created_at = now()",
    )
    .bind(id)
    .bind(file_name)
    .bind(content_type)
    .bind(bytes)
    .bind(lease)
    .execute(db)
    .await?;
    Ok(stored.rows_affected() == 1)
}

/// Of the given runs `(id, lease)`, those whose lease is no longer held (re-queued while this
/// process could not beat, and maybe running elsewhere).
pub async fn lost_leases(
    db: impl PgExecutor<'_>,
    held: &[(String, Uuid)],
) -> Result<Vec<(String, Uuid)>, sqlx::Error> {
    let (ids, leases): (Vec<String>, Vec<Uuid>) = held.iter().cloned().unzip();
    sqlx::query_as(
        "select h.id, h.lease from unnest($1::text[], $2::uuid[]) as h(id, lease)
         left join job_runs r on r.id = h.id
         where r.lease is distinct from h.lease",
    )
    .bind(&ids)
    .bind(&leases)
    .fetch_all(db)
    .await
}

// ----- the runtime's transitions -----

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
    /// This claim's token: every write of the run is fenced on it.
    pub lease: Uuid,
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
    run_at: Option<DateTime<Utc>>,
    lease: Option<Uuid>,
}

/// Claims up to `limit` due jobs of `kind` for `worker` (`FOR UPDATE SKIP LOCKED`), marks them
/// running in the engine and the ledger, in one statement.
pub async fn claim(
    pool: &PgPool,
    worker: &str,
    kind: &str,
    limit: usize,
) -> Result<Vec<Claimed>, sqlx::Error> {
    claim_where(pool, worker, kind, limit, None).await
}

/// Claims the job `id` of `kind` for `worker` if it is due (tests run one handler this way).
pub async fn claim_one(
    pool: &PgPool,
    worker: &str,
    kind: &str,
    id: &str,
) -> Result<Option<Claimed>, sqlx::Error> {
    Ok(claim_where(pool, worker, kind, 1, Some(id)).await?.pop())
}

async fn claim_where(
    pool: &PgPool,
    worker: &str,
    kind: &str,
    limit: usize,
    only: Option<&str>,
) -> Result<Vec<Claimed>, sqlx::Error> {
    // Engine rows and ledger rows come back as separate rows of one result (`from_engine`)
    // and are merged here: joining the two CTEs made the planner rescan one per row.
    let statement = format!(
        "with {claim}, ledger as (
             update job_runs r
             set state = 'running', attempts = c.attempts, started_at = coalesce(r.started_at, now()),
                 run_after = null, lease = c.lease, updated_at = now()
             from claimed c
             where r.id = c.id and r.state <> 'cancelled'
             returning r.id, r.cancel_requested, r.requested_by, r.request_id
         )
         select true as from_engine, c.id, c.job as payload, c.attempts as attempt, c.max_attempts,
                false as cancel_requested, null::uuid as requested_by, null::text as request_id,
                c.run_at, c.lease
         from claimed c
         union all
         select false, l.id, null, 0, 0, l.cancel_requested, l.requested_by, l.request_id, null, null
         from ledger l",
        claim = sql::CLAIM
    );
    let rows: Vec<ClaimRow> = sqlx::query_as(sqlx::AssertSqlSafe(statement))
        .bind(worker)
        .bind(kind)
        .bind(limit as i64)
        .bind(only)
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
                lease: e.lease.unwrap_or_default(),
                id: e.id,
            }
        })
        .collect())
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
    /// Waiting for a rate limit or a provider's `Retry-After`: back in the queue until
    /// `delay` has passed, the attempt not counted.
    Snoozed {
        reason: String,
        delay: Duration,
    },
    /// Not run to the end through no fault of the job (shutdown): back to the queue, the
    /// attempt not counted.
    Released,
}

impl Outcome {
    fn parts(&self) -> (&'static str, Option<Value>, Option<String>, i64) {
        match self {
            Self::Succeeded(v) => ("succeeded", Some(v.clone()), None, 0),
            Self::Retry { error, delay } => {
                ("retry", None, Some(error.clone()), delay.as_millis() as i64)
            }
            Self::Failed(e) => ("failed", None, Some(e.clone()), 0),
            Self::Cancelled => ("cancelled", None, Some("cancelled by request".into()), 0),
            Self::Snoozed { reason, delay } => (
                "snoozed",
                None,
                Some(reason.clone()),
                delay.as_millis() as i64,
            ),
            Self::Released => ("released", None, None, 0),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Completion {
    pub id: String,
    /// The claim's token: the outcome is recorded only if that claim still holds the job.
    pub lease: Uuid,
    pub outcome: Outcome,
}

/// Records many outcomes in one statement. Rows whose lease the reporting run no longer holds
/// (re-queued after a lost heartbeat, and maybe running elsewhere) are left alone: the other
/// run owns them. Returns the ids that were recorded.
pub async fn complete(
    pool: &PgPool,
    completions: &[Completion],
) -> Result<Vec<String>, sqlx::Error> {
    let n = completions.len();
    let mut ids = Vec::with_capacity(n);
    let mut outcomes = Vec::with_capacity(n);
    let mut results: Vec<Option<Value>> = Vec::with_capacity(n);
    let mut errors: Vec<Option<String>> = Vec::with_capacity(n);
    let mut delays = Vec::with_capacity(n);
    let mut leases = Vec::with_capacity(n);
    for c in completions {
        let (name, result, error, delay) = c.outcome.parts();
        ids.push(c.id.clone());
        leases.push(c.lease);
        outcomes.push(name);
        results.push(result);
        errors.push(error);
        delays.push(delay);
    }
    let statement = format!(
        "with {eng}
         update job_runs r
         set state = case eng.outcome when 'succeeded' then 'succeeded' when 'retry' then 'queued'
                                      when 'released' then 'queued' when 'snoozed' then 'queued'
                                      when 'cancelled' then 'cancelled' else 'failed' end,
             attempts = eng.attempts,
             result = eng.result,
             error = case when eng.outcome in ('released', 'snoozed') then r.error else eng.error end,
             progress_percent = case when eng.outcome = 'succeeded' then 100 else r.progress_percent end,
             progress_message = case when eng.outcome = 'snoozed' then eng.error
                                     else r.progress_message end,
             snoozes = r.snoozes + (eng.outcome = 'snoozed')::int,
             run_after = case when eng.outcome in ('retry', 'snoozed') then eng.run_at else null end,
             finished_at = case when eng.outcome in ('retry', 'released', 'snoozed') then null
                                else now() end,
             lease = null,
             updated_at = now()
         from eng
         where r.id = eng.id
         returning r.id",
        eng = sql::COMPLETE
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(statement))
        .bind(&ids)
        .bind(&outcomes)
        .bind(&results)
        .bind(&errors)
        .bind(&delays)
        .bind(&leases)
        .fetch_all(pool)
        .await
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
    // Ledger rows are locked after their engine rows, skipping rows others hold: a run holding
    // its ledger row (`ctx.fence`, maybe paused mid-transaction) delays its own re-queue to a
    // later beat instead of blocking this statement (and this worker's heartbeat) on it.
    let statement = format!(
        "with {stale}, ledger_locked as (
             select r.id from job_runs r where r.id in (select id from stale)
             for update skip locked
         ), {requeue}
         update job_runs r
         set state = 'queued', error = q.reason || ' during attempt ' || r.attempts || '; re-queued',
             lease = null, updated_at = now()
         from requeued q where r.id = q.id and r.state = 'running'
         returning r.id, q.reason",
        stale = sql::RECLAIM_STALE,
        requeue = sql::REQUEUE
    );
    sqlx::query_as(sqlx::AssertSqlSafe(statement))
        .bind(format!("{} milliseconds", dead_after.as_millis()))
        .bind(&kinds)
        .bind(&limits)
        .fetch_all(pool)
        .await
}

/// Cancels a job for `user` (`None` = admin, any job). A queued job is cancelled at once; a
/// running one gets its cancel flag set and ends `cancelled` at its next checkpoint.
/// Returns the state after the request, or `None` when the job is not visible. The engine row
/// is locked before the ledger row, the order of every statement touching both.
pub async fn cancel(
    pool: &PgPool,
    id: &str,
    user: Option<Uuid>,
) -> Result<Option<String>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let engine_status: Option<String> = sqlx::query_scalar(sql::LOCK_ONE)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let state: Option<String> = sqlx::query_scalar(
        "update job_runs set cancel_requested = true, updated_at = now()
         where id = $1 and ($2::uuid is null or requested_by = $2)
         returning state",
    )
    .bind(id)
    .bind(user)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(mut state) = state else {
        return Ok(None);
    };
    let waiting = matches!(engine_status.as_deref(), Some("Pending" | "Failed"));
    if state == "queued" && waiting {
        // Only if no worker holds it: otherwise it is running and sees the flag.
        let killed = sqlx::query(sql::KILL_QUEUED)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if killed.rows_affected() == 1 {
            sqlx::query(
                "update job_runs set state = 'cancelled', finished_at = now(), run_after = null,
                     error = 'cancelled by request', lease = null, updated_at = now()
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

// ----- retention -----

/// Finished jobs older than `days` days, up to `batch` per call: the ledger row, its events
/// and its artifact, with the engine row, in one statement through the `finished_at` index
/// (queued and running jobs are never touched; rows another transaction holds are skipped,
/// engine row first, as everywhere). Returns how many it removed; fewer than `batch` with
/// skipped rows means a later call finds them again.
pub async fn prune_finished(pool: &PgPool, days: i32, batch: i64) -> Result<i64, sqlx::Error> {
    let statement = format!(
        "with candidates as (
             select id from job_runs
             where finished_at < now() - $1 * interval '1 day'
               and state in ('succeeded', 'failed', 'cancelled')
             order by finished_at
             limit $2
         ), {lock}, doomed as (
             select r.id from job_runs r
             where r.id in (select id from engine_locked union all select id from engine_missing)
             for update skip locked
         ), engine as ({delete}), events as (
             delete from job_events e using doomed d where e.job_id = d.id
         ), ledger as (
             delete from job_runs r using doomed d where r.id = d.id returning r.id
         )
         select count(*) from ledger",
        lock = sql::lock_ids("candidates"),
        delete = sql::delete_ids("doomed")
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(statement))
        .bind(days)
        .bind(batch)
        .fetch_one(pool)
        .await
}

/// How many finished jobs [`prune_finished`] would remove.
pub async fn count_finished(pool: &PgPool, days: i32) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "select count(*) from job_runs
         where finished_at < now() - $1 * interval '1 day'
           and state in ('succeeded', 'failed', 'cancelled')",
    )
    .bind(days)
    .fetch_one(pool)
    .await
}

/// Finished engine rows without a ledger row older than `days` (none are created that way,
/// but never keep them forever), up to `batch` per call.
pub async fn prune_engine_orphans(
    pool: &PgPool,
    days: i32,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let statement = format!(
        "with {orphans} {delete}",
        orphans = sql::finished_orphans("exists (select 1 from job_runs r where r.id = j.id)"),
        delete = sql::delete_ids("orphans")
    );
    Ok(sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(days)
        .bind(batch)
        .execute(pool)
        .await?
        .rows_affected())
}

// ----- gauges -----

/// Queue depth and age of the oldest due job, per kind (for `/metrics`).
#[derive(Debug, sqlx::FromRow)]
pub struct QueueStats {
    pub kind: String,
    pub queued: i64,
    pub oldest_age_seconds: f64,
}

pub async fn queue_stats(db: impl PgExecutor<'_>) -> Result<Vec<QueueStats>, sqlx::Error> {
    sqlx::query_as(
        "select kind, count(*) as queued,
                coalesce(extract(epoch from now() - min(coalesce(run_after, created_at))
                    filter (where coalesce(run_after, created_at) <= now()))::float8, 0)
                    as oldest_age_seconds
         from job_runs where state = 'queued' group by kind order by kind",
    )
    .fetch_all(db)
    .await
}

/// Refreshes the queue gauges (depth and oldest due age per kind) from the ledger; called on
/// each `/metrics` scrape of the api and the worker. A kind shown before and absent now (its
/// queue drained) is set to 0 rather than keeping its last value.
pub async fn record_queue_gauges(db: impl PgExecutor<'_>) -> Result<(), sqlx::Error> {
    static SHOWN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let stats = queue_stats(db).await?;
    let mut shown = SHOWN.lock().unwrap_or_else(|e| e.into_inner());
    for kind in shown.iter() {
        if !stats.iter().any(|s| &s.kind == kind) {
            metrics::gauge!("jobs_queued", "kind" => kind.clone()).set(0.0);
            metrics::gauge!("jobs_oldest_queued_age_seconds", "kind" => kind.clone()).set(0.0);
        }
    }
    for s in stats {
        if !shown.contains(&s.kind) {
            shown.push(s.kind.clone());
        }
        metrics::gauge!("jobs_queued", "kind" => s.kind.clone()).set(s.queued as f64);
        metrics::gauge!("jobs_oldest_queued_age_seconds", "kind" => s.kind)
            .set(s.oldest_age_seconds);
    }
    Ok(())
}
