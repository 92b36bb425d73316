//! The queue engine boundary: everything that knows apalis-postgres and its `apalis` schema.
//!
//! We use apalis-postgres 1.0 as the storage layer — its schema and migrations, its jobs and
//! workers tables, the insert channel `apalis::job::insert` — and drive it with our own insert,
//! claim / complete / heartbeat statements instead of apalis' worker state machine, which
//! has the traps measured in `reference/apalis-postgres-findings.md` (a worker that dies on the
//! first DB error, heartbeats and acks that only happen between fetches, no durable backoff).
//!
//! Statements that move a job in the engine *and* in our ledger in one round trip are
//! assembled by [`crate::ledger`] from the fragments in [`sql`]: the engine's half of each
//! statement is written here, the ledger's half there, so the apalis tables are named only in
//! this file and `job_runs` only in the ledger.
use sqlx::{PgConnection, PgPool};

use crate::enqueue::EnqueueError;

/// Session settings of the engine's own pool (claims, outcomes, heartbeats). Every engine
/// statement touches a few rows by primary key; with the statistics of a queue that churns,
/// the planner sometimes estimated "1 row" and joined a whole-table sequential scan against
/// the batch (measured: 208 ms instead of 41 ms for 500 outcomes over 20,000 rows, growing with
/// the table). Sequential scans are never right for these statements, so they are ruled out.
///
/// `synchronous_commit`: with `durable` outcomes (the default, `WORKER_ENGINE_SYNC_COMMIT`)
/// every claim and outcome batch waits for its WAL flush, like any other commit. Without, a
/// claim or an outcome committed in the last few hundred milliseconds before a PostgreSQL
/// crash may be lost: the job runs again (back to pending, or re-queued by the sweeper), and
/// the lease fence stops the earlier run at its next write — safe, but re-runs after every
/// crash. Measured in the README (queue benchmark): batching makes durable outcomes cheap.
pub fn session_settings(durable: bool) -> Vec<(&'static str, &'static str)> {
    vec![
        ("enable_seqscan", "off"),
        ("synchronous_commit", if durable { "on" } else { "off" }),
    ]
}

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

/// Inserts engine rows for already-ledgered jobs, in the caller's transaction, due now by the
/// database's clock (`run_at = now()`: a client clock ahead of the server's, or rounded to the
/// second as apalis' own `push_tasks` does, would make a fresh job look scheduled for later
/// and skip the insert trigger's NOTIFY).
pub(crate) async fn push(
    conn: &mut PgConnection,
    kind: &str,
    max_attempts: u32,
    jobs: Vec<(String, Vec<u8>)>,
) -> Result<(), EnqueueError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let (ids, payloads): (Vec<String>, Vec<Vec<u8>>) = jobs.into_iter().unzip();
    sqlx::query(
        "insert into apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority)
         select id, $2, job, 'Pending', 0, $4, now(), 0
         from unnest($1::text[], $3::bytea[]) as t(id, job)",
    )
    .bind(&ids)
    .bind(kind)
    .bind(&payloads)
    .bind(max_attempts as i32)
    .execute(conn)
    .await?;
    Ok(())
}

/// The engine's halves of the combined statements (see the module comment). Each is one or
/// more CTEs; the names and output columns they define are their interface.
pub(crate) mod sql {
    /// `next`, `claimed`: up to `$3` due jobs of kind `$2` (only job `$4` when it is not null)
    /// locked (`FOR UPDATE SKIP LOCKED`) and marked running for worker `$1` with
    /// `attempts + 1` and a new random lease token. `claimed` yields
    /// `id, job, attempts, max_attempts, run_at, lease`.
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
            set status = 'Running', lock_by = $1, lock_at = now(), attempts = j.attempts + 1,
                lease = gen_random_uuid()
            from next where j.id = next.id and j.id = any(array(select id from next))
            returning j.id, j.job, j.attempts, j.max_attempts, j.run_at, j.lease
        )";

    /// `eng`: the outcomes `unnest($1 ids, $2 outcomes, $3 results, $4 errors, $5 delay_ms,
    /// $6 leases)` written to the engine rows whose lease they still hold (a late report of a
    /// re-queued job changes nothing). `retry` waits for a later attempt; `snoozed` and
    /// `released` go back to pending without using the attempt (`snoozed` until its delay).
    /// Yields `id, attempts, run_at, outcome, result, error`.
    pub const COMPLETE: &str = "
        eng as (
            update apalis.jobs j
            set status = case o.outcome when 'succeeded' then 'Done' when 'retry' then 'Failed'
                                        when 'released' then 'Pending' when 'snoozed' then 'Pending'
                                        else 'Killed' end,
                run_at = case when o.outcome in ('retry', 'snoozed')
                              then now() + o.delay_ms * interval '1 millisecond' else j.run_at end,
                attempts = case when o.outcome in ('released', 'snoozed')
                                then greatest(j.attempts - 1, 0) else j.attempts end,
                lock_by = null,
                lease = null,
                done_at = case when o.outcome in ('retry', 'released', 'snoozed') then null
                               else now() end,
                last_result = case when o.outcome = 'succeeded' then jsonb_build_object('Ok', o.result)
                                   else jsonb_build_object('Err', o.error) end
            from unnest($1::text[], $2::text[], $3::jsonb[], $4::text[], $5::bigint[], $6::uuid[])
                as o(id, outcome, result, error, delay_ms, lease)
            where j.id = o.id and j.status = 'Running' and j.lease = o.lease
            returning j.id, j.attempts, j.run_at, o.outcome, o.result, o.error
        )";

    /// `limits`, `stale`: jobs held by workers unseen for `$1` (an interval), or of the kinds
    /// `$2` locked longer than their `$3` milliseconds, their engine rows locked (skipping
    /// rows others hold). `stale` yields `id, reason`. [`REQUEUE`] follows.
    pub const RECLAIM_STALE: &str = "
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
        )";

    /// `requeued`: the `stale` jobs whose ids the CTE `ledger_locked` lists, back to pending
    /// with no lease. Yields `id, reason`.
    pub const REQUEUE: &str = "
        requeued as (
            update apalis.jobs j set status = 'Pending', lock_by = null, lock_at = null, lease = null
            from stale where j.id = stale.id and j.id in (select id from ledger_locked)
            returning j.id, stale.reason
        )";

    /// Locks the engine row of job `$1` (first, before its ledger row: the order of every
    /// statement that touches both, so a cancel racing a claim waits instead of deadlocking).
    /// Yields its status.
    pub const LOCK_ONE: &str = "select status from apalis.jobs where id = $1 for update";

    /// Kills job `$1` if no worker holds it (pending or waiting for a retry); one row or none.
    pub const KILL_QUEUED: &str = "
        update apalis.jobs set status = 'Killed', done_at = now(), lease = null,
            last_result = '{\"Err\": \"cancelled by request\"}'
        where id = $1 and status in ('Pending', 'Failed')";

    /// `engine_locked`: of the ids in CTE `cte`, those whose engine rows this statement locks
    /// (skipping rows another transaction holds), or that have no engine row.
    pub fn lock_ids(cte: &str) -> String {
        format!(
            "engine_locked as (
                 select j.id from apalis.jobs j where j.id in (select id from {cte})
                 for update skip locked
             ), engine_missing as (
                 select d.id from {cte} d
                 where not exists (select 1 from apalis.jobs j where j.id = d.id)
             )"
        )
    }

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

/// Marks every worker row of this process alive (by primary key: a `LIKE` on the growing
/// workers table cost 20–40 ms a beat). Returns false when a row is gone.
pub async fn heartbeat(pool: &PgPool, process: &str, kinds: &[&str]) -> Result<bool, sqlx::Error> {
    let names: Vec<String> = kinds.iter().map(|k| worker_name(process, k)).collect();
    let updated = sqlx::query("update apalis.workers set last_seen = now() where id = any($1)")
        .bind(&names)
        .execute(pool)
        .await?;
    Ok(updated.rows_affected() == names.len() as u64)
}

/// Marks this process's worker rows dead (at clean shutdown), so nobody waits for them.
pub async fn deregister_worker(
    pool: &PgPool,
    process: &str,
    kinds: &[&str],
) -> Result<(), sqlx::Error> {
    let names: Vec<String> = kinds.iter().map(|k| worker_name(process, k)).collect();
    sqlx::query("update apalis.workers set last_seen = 'epoch' where id = any($1)")
        .bind(&names)
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
