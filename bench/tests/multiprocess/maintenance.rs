//! Runtime upkeep with an in-process worker runtime: the sweeper, cron catch-up after downtime
//! and pruning of finished jobs.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use bench::{Sleep, Tick};
use jobs::{kinds::maintenance::PruneJobs, Job};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use worker::{Registry, Runtime, RuntimeConfig};

fn fast() -> RuntimeConfig {
    RuntimeConfig {
        poll_interval: Duration::from_millis(200),
        heartbeat_interval: Duration::from_millis(300),
        dead_after: Duration::from_secs(5),
        shutdown_timeout: Duration::from_secs(5),
        claim_batch: 50,
    }
}

fn start(db: &PgPool, registry: Registry) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let runtime = Runtime::new(db.clone(), db.clone(), registry, fast());
    (stop.clone(), tokio::spawn(runtime.run(stop)))
}

#[sqlx::test(migrations = false)]
async fn the_sweeper_requeues_a_job_marked_running_past_its_timeout_by_a_live_worker(db: PgPool) {
    shared::telemetry::init_for_tests();
    jobs::engine::migrate(&db).await.unwrap();
    let id = enqueue(&db, &[Sleep { ms: 10 }]).await.remove(0);
    // A worker that is alive (fresh heartbeat) but whose attempt started an hour ago and never
    // reported: its outcome was lost, or its thread is wedged.
    sqlx::query(
        "insert into apalis.workers (id, worker_type, storage_name, layers, last_seen)
         values ('ghost:1:x/test_sleep', 'test_sleep', 'artsvao', '', now() + interval '1 day')",
    )
    .execute(&db)
    .await
    .unwrap();
    sqlx::query(
        "update apalis.jobs set status = 'Running', lock_by = 'ghost:1:x/test_sleep',
             lock_at = now() - interval '1 hour', attempts = 1 where id = $1",
    )
    .bind(&id)
    .execute(&db)
    .await
    .unwrap();
    sqlx::query("update job_runs set state = 'running', attempts = 1, started_at = now() - interval '1 hour' where id = $1")
        .bind(&id)
        .execute(&db)
        .await
        .unwrap();

    let (stop, run) = start(&db, bench::default_registry());
    wait_for("the stuck job re-run", Duration::from_secs(15), || async {
        (count(&db, Sleep::KIND, "succeeded").await == 1).then_some(())
    })
    .await;
    stop.cancel();
    run.await.unwrap();
    let attempts: i32 = sqlx::query_scalar("select attempts from job_runs where id = $1")
        .bind(&id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(attempts, 2, "the stuck attempt counts");
    let swept: Option<String> = sqlx::query_scalar(
        "select error from job_events where job_id = $1 and error like 'stuck past its run timeout%'",
    )
    .bind(&id)
    .fetch_optional(&db)
    .await
    .unwrap();
    assert!(swept.is_some(), "the ledger says why it was re-queued");
}

#[sqlx::test(migrations = false)]
async fn a_scheduler_back_from_downtime_does_not_flood_the_missed_ticks(db: PgPool) {
    shared::telemetry::init_for_tests();
    jobs::engine::migrate(&db).await.unwrap();
    let every_second = || {
        bench::default_registry()
            .with_cron_overrides(&[("test_tick".into(), "* * * * * *".into())])
            .unwrap()
    };
    let (stop, run) = start(&db, every_second());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.cancel();
    run.await.unwrap();
    let down_at = chrono::Utc::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let up_at = chrono::Utc::now();
    let (stop, run) = start(&db, every_second());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.cancel();
    run.await.unwrap();

    // About four ticks fell in the downtime; at most the latest of them is run on return
    // (exactly which one is decided by `first_target`, unit-tested in worker::cron).
    let during: Vec<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "select tick_at from cron_ticks where schedule = 'test_tick'
         and tick_at > $1 and tick_at < $2 order by tick_at",
    )
    .bind(down_at)
    .bind(up_at)
    .fetch_all(&db)
    .await
    .unwrap();
    assert!(
        during.len() <= 1,
        "missed ticks flooded on return: {during:?}"
    );
    if let Some(t) = during.first() {
        assert!(
            *t > up_at - chrono::Duration::seconds(1),
            "only the latest missed tick"
        );
    }
    let after: i64 = sqlx::query_scalar(
        "select count(*) from cron_ticks where schedule = 'test_tick' and tick_at >= $1",
    )
    .bind(up_at)
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(after >= 1, "ticks resumed after the downtime");
    let ticks: i64 = sqlx::query_scalar("select count(*) from cron_ticks")
        .fetch_one(&db)
        .await
        .unwrap();
    let jobs: i64 = sqlx::query_scalar("select count(*) from job_runs where kind = $1")
        .bind(Tick::KIND)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(ticks, jobs, "one job per recorded tick");
    assert!(
        ticks >= 4,
        "ticks ran before and after the downtime: {ticks}"
    );
}

#[sqlx::test(migrations = false)]
async fn pruning_removes_finished_jobs_past_retention_with_their_files_in_batches(db: PgPool) {
    shared::telemetry::init_for_tests();
    jobs::engine::migrate(&db).await.unwrap();
    let old = enqueue(&db, &vec![Sleep { ms: 1 }; 5]).await;
    let recent = enqueue(&db, &vec![Sleep { ms: 1 }; 2]).await;
    let (stop, run) = start(&db, bench::default_registry());
    wait_for("all ran", Duration::from_secs(10), || async {
        (count(&db, Sleep::KIND, "succeeded").await == 7).then_some(())
    })
    .await;
    stop.cancel();
    run.await.unwrap();
    let stuck_old = enqueue(&db, &[Sleep { ms: 1 }]).await.remove(0);
    for id in &old {
        sqlx::query("insert into artifacts (job_id, file_name, content_type, bytes) values ($1, 'a.txt', 'text/plain', 'x')")
            .bind(id)
            .execute(&db)
            .await
            .unwrap();
    }
    // Five finished 20 days ago; one still queued although created 20 days ago.
    sqlx::query("update job_runs set finished_at = now() - interval '20 days' where id = any($1)")
        .bind(&old)
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("update job_runs set created_at = now() - interval '20 days' where id = $1")
        .bind(&stuck_old)
        .execute(&db)
        .await
        .unwrap();

    let prune = enqueue(
        &db,
        &[PruneJobs {
            retention_days: 14,
            batch: 2,
        }],
    )
    .await
    .remove(0);
    let (stop, run) = start(
        &db,
        bench::default_registry()
            .only(&["prune_jobs".into()])
            .unwrap(),
    );
    wait_for("prune done", Duration::from_secs(10), || async {
        (count(&db, PruneJobs::KIND, "succeeded").await == 1).then_some(())
    })
    .await;
    stop.cancel();
    run.await.unwrap();

    let report: serde_json::Value = sqlx::query_scalar("select result from job_runs where id = $1")
        .bind(&prune)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(report["jobs_removed"], 5);
    assert!(
        report["batches"].as_u64().unwrap() >= 3,
        "batches of 2: {report}"
    );
    let left = |table: &'static str| {
        let db = db.clone();
        let ids = old.clone();
        async move {
            let sql = format!(
                "select count(*) from {table} where {} = any($1)",
                if table == "artifacts" || table == "job_events" {
                    "job_id"
                } else {
                    "id"
                }
            );
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                .bind(ids)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    for table in ["job_runs", "apalis.jobs", "artifacts", "job_events"] {
        assert_eq!(left(table).await, 0, "{table} rows of pruned jobs");
    }
    let kept: i64 =
        sqlx::query_scalar("select count(*) from job_runs where id = any($1) or id = $2")
            .bind(&recent)
            .bind(&stuck_old)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(kept, 3, "recent and unfinished jobs stay");
    let engine_kept: i64 = sqlx::query_scalar("select count(*) from apalis.jobs where id = $1")
        .bind(&stuck_old)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(engine_kept, 1);
}
