//! The runtime with real worker processes: crash recovery (SIGKILL, also with an immediate
//! restart under the same settings), graceful shutdown (SIGTERM), cron across replicas and the
//! global rate limiter across replicas. Production timings (heartbeat 3 s, dead after 15 s).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::support::*;
use bench::{Limited, Sleep, Tick};
use chrono::{Timelike, Utc};
use jobs::Job;
use sqlx::PgPool;

const SLEEP: &str = Sleep::KIND;

/// One replica named `replica-a` running `test_sleep` `concurrency` at a time.
async fn replica_a(url: &str, concurrency: &str) -> WorkerProc {
    let env = format!("test_sleep={concurrency}");
    WorkerProc::start(
        url,
        "replica-a",
        free_port(),
        &[("WORKER_CONCURRENCY", env.as_str())],
    )
    .await
}

async fn all_succeeded(db: &PgPool, kind: &str, n: i64, within: Duration) {
    wait_for("every job succeeded", within, || async {
        (count(db, kind, "succeeded").await == n).then_some(())
    })
    .await;
}

async fn count_with_attempts(db: &PgPool, kind: &str, attempts: i32) -> i64 {
    sqlx::query_scalar("select count(*) from job_runs where kind = $1 and attempts = $2")
        .bind(kind)
        .bind(attempts)
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn jobs_of_a_sigkilled_worker_are_run_by_the_other_replica_within_30s(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let env = [("WORKER_CONCURRENCY", "test_sleep=4")];
    let (a, b) = tokio::join!(
        WorkerProc::start(&url, "replica-a", free_port(), &env),
        WorkerProc::start(&url, "replica-b", free_port(), &env),
    );
    let (mut a, _b) = (a, b);
    enqueue(&db, &vec![Sleep { ms: 3000 }; 8]).await;
    wait_for("both replicas busy", Duration::from_secs(10), || async {
        (running_on(&db, SLEEP, "replica-a").await > 0
            && running_on(&db, SLEEP, "replica-b").await > 0)
            .then_some(())
    })
    .await;
    let killed = running_on(&db, SLEEP, "replica-a").await;

    a.kill().await;
    let t = Instant::now();
    all_succeeded(&db, SLEEP, 8, Duration::from_secs(30)).await;
    let took = t.elapsed();
    assert!(took <= Duration::from_secs(30), "took {took:?}");
    // The attempt lost with the process counts; each killed job ran once more.
    assert_eq!(count_with_attempts(&db, SLEEP, 2).await, killed);
    assert_eq!(count_with_attempts(&db, SLEEP, 1).await, 8 - killed);
}

#[sqlx::test(migrations = false)]
async fn jobs_of_a_sigkilled_worker_restarted_at_once_with_the_same_settings_succeed_within_30s(
    db: PgPool,
) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let mut a = replica_a(&url, "4").await;
    enqueue(&db, &vec![Sleep { ms: 2000 }; 4]).await;
    wait_for("all four running", Duration::from_secs(10), || async {
        (running_on(&db, SLEEP, "replica-a").await == 4).then_some(())
    })
    .await;

    a.kill().await;
    let t = Instant::now();
    // Same host name, same port, same settings: a container restart.
    let _a2 = a.restart_same().await;
    all_succeeded(&db, SLEEP, 4, Duration::from_secs(30)).await;
    let took = t.elapsed();
    assert!(took <= Duration::from_secs(30), "took {took:?}");
    assert_eq!(count_with_attempts(&db, SLEEP, 2).await, 4);
}

#[sqlx::test(migrations = false)]
async fn sigterm_finishes_the_running_job_exits_0_and_leaves_the_queued_one_for_another_worker(
    db: PgPool,
) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let mut a = replica_a(&url, "1").await;
    let long = enqueue(&db, &[Sleep { ms: 5000 }]).await.remove(0);
    wait_for("the 5 s job running", Duration::from_secs(10), || async {
        (running_on(&db, SLEEP, "replica-a").await == 1).then_some(())
    })
    .await;
    let waiting = enqueue(&db, &[Sleep { ms: 100 }]).await.remove(0);
    tokio::time::sleep(Duration::from_secs(1)).await;

    a.term();
    let status = a.wait_exit(Duration::from_secs(40)).await;
    assert!(status.success(), "exit status {status}");
    let state = |id: String| {
        let db = db.clone();
        async move {
            sqlx::query_as::<_, (String, i32)>("select state, attempts from job_runs where id = $1")
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    assert_eq!(state(long.clone()).await, ("succeeded".into(), 1));
    assert_eq!(state(waiting.clone()).await, ("queued".into(), 0));

    let _b = WorkerProc::start(&url, "replica-b", free_port(), &[]).await;
    wait_for(
        "the queued job run by another worker",
        Duration::from_secs(10),
        || async { (state(waiting.clone()).await.0 == "succeeded").then_some(()) },
    )
    .await;
    assert!(a.log_text().contains("worker runtime stopped"));
}

#[sqlx::test(migrations = false)]
async fn a_cron_schedule_run_by_three_replicas_enqueues_each_of_5_ticks_exactly_once(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    // Five ticks a few seconds ahead, in one minute (Moscow time, as schedules are).
    let mut now = Utc::now().with_timezone(&shared::time::MOSCOW);
    if now.second() > 45 {
        tokio::time::sleep(Duration::from_secs(u64::from(61 - now.second()))).await;
        now = Utc::now().with_timezone(&shared::time::MOSCOW);
    }
    let first = now.second() + 6;
    let seconds: Vec<String> = (first..first + 5).map(|s| s.to_string()).collect();
    let expr = format!(
        "{} {} {} * * *",
        seconds.join(","),
        now.minute(),
        now.hour()
    );
    let cron = format!("test_tick={expr}");
    let env = [("WORKER_CRON", cron.as_str())];
    let (a, b, c) = tokio::join!(
        WorkerProc::start(&url, "replica-a", free_port(), &env),
        WorkerProc::start(&url, "replica-b", free_port(), &env),
        WorkerProc::start(&url, "replica-c", free_port(), &env),
    );
    let last_tick = now.with_second(first + 4).unwrap();
    let wait = (last_tick.with_timezone(&Utc) - Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_secs(2)).await;

    all_succeeded(&db, Tick::KIND, 5, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ticks: Vec<(chrono::DateTime<Utc>, Option<String>)> = sqlx::query_as(
        "select tick_at, job_id from cron_ticks where schedule = 'test_tick' order by tick_at",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(ticks.len(), 5, "{ticks:?}");
    let total: i64 = sqlx::query_scalar("select count(*) from job_runs where kind = $1")
        .bind(Tick::KIND)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(total, 5);
    for (i, (at, job)) in ticks.iter().enumerate() {
        assert_eq!(
            at.second(),
            first + i as u32,
            "ticks at the scheduled seconds"
        );
        assert!(job.is_some());
    }
    for p in [&a, &b, &c] {
        assert!(
            p.log_text().contains("cron schedule active"),
            "{}",
            p.log_text()
        );
    }
}

#[sqlx::test(migrations = false)]
async fn the_rate_limiter_shared_by_three_processes_keeps_10_per_second_in_every_window(
    db: PgPool,
) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let env = [("WORKER_RATE_LIMITS", "test=10/1s")];
    let (_a, _b, _c) = tokio::join!(
        WorkerProc::start(&url, "replica-a", free_port(), &env),
        WorkerProc::start(&url, "replica-b", free_port(), &env),
        WorkerProc::start(&url, "replica-c", free_port(), &env),
    );
    enqueue(&db, &vec![Limited { key: "test".into() }; 60]).await;
    all_succeeded(&db, Limited::KIND, 60, Duration::from_secs(30)).await;

    let results: Vec<serde_json::Value> =
        sqlx::query_scalar("select result from job_runs where kind = $1")
            .bind(Limited::KIND)
            .fetch_all(&db)
            .await
            .unwrap();
    let field = |name: &str| {
        let mut v: Vec<i64> = results.iter().map(|r| r[name].as_i64().unwrap()).collect();
        v.sort();
        v
    };
    let slots = field("slot_us");
    let acquired = field("acquired_us");
    let pids: std::collections::HashSet<i64> = field("pid").into_iter().collect();
    assert_eq!(pids.len(), 3, "all three processes acquired");
    // Slots (database time) are the limiter's promise: any 11 consecutive span at least 1 s,
    // so no 1-second window holds more than 10.
    for w in slots.windows(11) {
        assert!(
            w[10] - w[0] >= 1_000_000,
            "11 slots within {} µs",
            w[10] - w[0]
        );
    }
    // Each caller resumes at its slot, never before it (same host clock; 1 ms of rounding),
    // and late only by scheduling jitter of three busy processes on two cores.
    let mut lateness: Vec<i64> = results
        .iter()
        .map(|r| r["acquired_us"].as_i64().unwrap() - r["slot_us"].as_i64().unwrap())
        .collect();
    lateness.sort();
    assert!(
        lateness[0] >= -1_000,
        "an acquisition {} µs before its slot",
        -lateness[0]
    );
    assert!(
        lateness[59] <= 100_000,
        "an acquisition {} µs after its slot",
        lateness[59]
    );
    // 60 acquisitions at 10/s with burst 1: the ideal span from first to last is 5.9 s.
    let ideal = 5_900_000f64;
    for (what, v) in [("slots", &slots), ("acquisitions", &acquired)] {
        let span = (v[59] - v[0]) as f64;
        assert!(
            (span - ideal).abs() <= ideal * 0.10,
            "{what} span {span} µs vs ideal {ideal}"
        );
    }
}
