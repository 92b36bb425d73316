//! The queue engine boundary: everything that knows apalis-postgres and its `apalis` schema.
//!
//! We use apalis-postgres 1.0 as the storage layer — its schema and migrations, its transactional
//! `push_tasks`, its insert trigger that NOTIFYs `apalis::job::insert` — and drive it with our
//! own claim / complete / heartbeat statements instead of apalis' worker state machine, which
//! has the traps measured in `reference/apalis-postgres-findings.md` (a worker that dies on the
//! first DB error, heartbeats and acks that only happen between fetches, no durable backoff).
//!
//! Statements that move a job in the engine *and* in our ledger in one round trip are
//! assembled by [`crate::ledger`] from the fragments in [`sql`]: the engine's half of each
//! statement is written here, the ledger's half there, so the apalis tables are named only in
//! this file and `job_runs` only in the ledger.
use apalis_core::task::{builder::TaskBuilder, task_id::TaskId};
use sqlx::{PgConnection, PgPool};
use ulid::Ulid;

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

/// The engine's halves of the combined statements (see the module comment). Each is one or
/// more CTEs; the names and output columns they define are their interface.
pub(crate) mod sql {
    /// `next`, `claimed`: up to `$3` due jobs of kind `$2` (only job `$4` when it is not null)
    /// locked (`FOR UPDATE SKIP LOCKED`) and marked running for worker `$1` with
    /// `attempts + 1`. `claimed` yields `id, job, attempts, max_attempts, run_at`.
    ///
    /// The `= any(array(..))` condition makes the planner fetch the claimed rows by primary
    /// key; joining the CTE alone got a hash join over a sequential scan of the whole table
    /// (5–6 ms per 20,000 rows, growing with every finished job kept).
    pub const CLAIM: &str = "
        next as (
            select id from apalis.jobs
            where job_type = $2 and run_at <= now() and ($4::text is null or id = $4)
              and (status = 'Pending' or (status = 'Failed' and attempts < max_attempts))
            order by priority desc, run_at
            limit $3
            for update skip locked
        ), claimed as (
            update apalis.jobs j
            set status = 'Running', lock_by = $1, lock_at = now(), attempts = j.attempts + 1
            from next where j.id = next.id and j.id = any(array(select id from next))
            returning j.id, j.job, j.attempts, j.max_attempts, j.run_at
        )";

    /// `eng`: the outcomes `unnest($1 ids, $2 outcomes, $3 results, $4 errors, $5 delay_ms,
    /// $7 attempts)` of process `$6` written to the engine rows it still holds (lease owner and
    /// attempt match: a late report of a re-queued job changes nothing). Yields
    /// `id, attempts, run_at, outcome, result, error`.
    pub const COMPLETE: &str = "
        eng as (
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
        )";

    /// `limits`, `stale`, `requeued`: jobs held by workers unseen for `$1` (an interval), or of
    /// the kinds `$2` locked longer than their `$3` milliseconds, put back to pending.
    /// `requeued` yields `id, reason`.
    pub const RECLAIM: &str = "
        limits as (
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
        )";

    /// Kills job `$1` if no worker holds it (pending or waiting for a retry); one row or none.
    pub const KILL_QUEUED: &str = "
        update apalis.jobs set status = 'Killed', done_at = now(),
            last_result = '{\"Err\": \"cancelled by request\"}'
        where id = $1 and status in ('Pending', 'Failed')";

    /// Deletes the engine rows whose ids the CTE `ids` (column `id`) lists.
    pub fn delete_ids(cte: &str) -> String {
        format!("delete from apalis.jobs j using {cte} d where j.id = d.id")
    }

    /// `orphans`: up to `$2` finished engine rows older than `$1` days whose id fails the
    /// condition `has_ledger_row` (a SQL boolean over `j.id`), locked.
    pub fn finished_orphans(has_ledger_row: &str) -> String {
        format!(
            "orphans as (
                 select j.id from apalis.jobs j
                 where j.status in ('Done', 'Killed') and j.done_at < now() - $1 * interval '1 day'
                   and not ({has_ledger_row})
                 limit $2 for update skip locked
             )"
        )
    }
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

/// Removes registrations of worker processes gone for a day that hold nothing.
pub async fn prune_workers(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "delete from apalis.workers w
         where w.last_seen < now() - interval '1 day'
           and not exists (select 1 from apalis.jobs j where j.lock_by = w.id)",
    )
    .execute(pool)
    .await?
    .rows_affected())
}

/// The payloads of the jobs of `kind` still waiting (pending or waiting for a retry), oldest
/// first: what tests assert was enqueued.
pub async fn queued_payloads(
    pool: &PgPool,
    kind: &str,
) -> Result<Vec<(String, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as(
        "select id, job from apalis.jobs
         where job_type = $1 and status in ('Pending', 'Failed') order by run_at, id",
    )
    .bind(kind)
    .fetch_all(pool)
    .await
}
