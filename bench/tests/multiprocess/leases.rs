//! A run that lost its lease writes nothing, with real processes: a replica paused past
//! `dead_after` (SIGSTOP) wakes to find its job re-run elsewhere and stores nothing; after an
//! outage longer than `dead_after`, a replica whose own connection comes back late does not
//! get its running jobs re-run by the replica that came back first.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bench::{ArtifactAfter, Sleep};
use jobs::Job;
use sqlx::PgPool;

use crate::support::*;

const FAST: [(&str, &str); 2] = [
    ("WORKER_HEARTBEAT_MS", "1000"),
    ("WORKER_DEAD_AFTER_MS", "5000"),
];

async fn holder(db: &PgPool, id: &str) -> Option<String> {
    sqlx::query_scalar(
        "select split_part(lock_by, ':', 1) from apalis.jobs where id = $1 and status = 'Running'",
    )
    .bind(id)
    .fetch_one(db)
    .await
    .unwrap()
}

#[sqlx::test(migrations = false)]
async fn a_replica_paused_past_dead_after_wakes_to_a_lost_lease_and_stores_nothing(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let (a, b) = tokio::join!(
        WorkerProc::start(&url, "replica-a", free_port(), &FAST),
        WorkerProc::start(&url, "replica-b", free_port(), &FAST),
    );
    // Both steady (healthy for dead_after) before anything happens.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let id = enqueue(&db, &[ArtifactAfter { ms: 8_000 }]).await.remove(0);
    let host = wait_for("the job running", Duration::from_secs(10), || async {
        holder(&db, &id).await
    })
    .await;
    let (paused, other) = if host == "replica-a" {
        (&a, &b)
    } else {
        (&b, &a)
    };

    paused.signal("STOP");
    let t = Instant::now();
    // Re-run elsewhere: re-queued after dead_after, claimed by the other replica, done.
    let status: (String, i32, Option<serde_json::Value>) =
        wait_for("the re-run succeeded", Duration::from_secs(30), || async {
            let row: (String, i32, Option<serde_json::Value>) =
                sqlx::query_as("select state, attempts, result from job_runs where id = $1")
                    .bind(&id)
                    .fetch_one(&db)
                    .await
                    .unwrap();
            (row.0 == "succeeded").then_some(row)
        })
        .await;
    assert_eq!(status.1, 2, "the re-run is the second attempt");
    let other_pid = other.pid();
    assert_eq!(status.2.unwrap()["pid"], other_pid);
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(t.elapsed())).await;
    paused.signal("CONT");

    // The paused run wakes after its sleep, tries to store its file and is refused.
    wait_for(
        "the paused run stopped",
        Duration::from_secs(15),
        || async { paused.log_text().contains("lease lost").then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let owner: Vec<u8> = sqlx::query_scalar("select bytes from artifacts where job_id = $1")
        .bind(&id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(owner).unwrap(),
        format!("pid {other_pid}")
    );
    let run: (String, i32) = sqlx::query_as("select state, attempts from job_runs where id = $1")
        .bind(&id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        run,
        ("succeeded".to_string(), 2),
        "the zombie changed the ledger"
    );
    let zombie_log = paused.log_text();
    assert!(
        !zombie_log
            .lines()
            .any(|l| l.contains("job succeeded") && l.contains(id.as_str())),
        "the paused run reported success:\n{zombie_log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_back_late_after_a_long_outage_keeps_its_jobs_none_runs_twice() {
    shared::telemetry::init_for_tests();
    let cluster = PrivateCluster::start();
    let direct = cluster.url("artsvao");
    // Replica a reaches PostgreSQL through a proxy the test closes for 10 s more than the
    // outage; replica b directly. Production liveness (heartbeat 3 s, dead after 15 s).
    let proxy = Proxy::start(cluster.port).await;
    let via_proxy = format!("postgres://postgres@127.0.0.1:{}/artsvao", proxy.port);
    // a runs four long jobs and is full; b, started after, idles with free slots: exactly
    // what would run a's jobs a second time if b judged a by the stale `last_seen` the
    // outage leaves behind.
    let a = WorkerProc::start(
        &via_proxy,
        "replica-a",
        free_port(),
        &[
            ("WORKER_CONCURRENCY", "test_sleep=4"),
            ("DB_ACQUIRE_TIMEOUT_SECS", "2"),
        ],
    )
    .await;
    let db = PgPool::connect(&direct).await.unwrap();
    let ids = enqueue(&db, &vec![Sleep { ms: 45_000 }; 4]).await;
    wait_for("a running all four", Duration::from_secs(10), || async {
        (running_on(&db, Sleep::KIND, "replica-a").await == 4).then_some(())
    })
    .await;
    let b = WorkerProc::start(
        &direct,
        "replica-b",
        free_port(),
        &[
            ("WORKER_CONCURRENCY", "test_sleep=8"),
            ("DB_ACQUIRE_TIMEOUT_SECS", "2"),
        ],
    )
    .await;
    db.close().await;

    proxy.close();
    cluster.stop_server();
    tokio::time::sleep(Duration::from_secs(20)).await;
    cluster.start_server();
    tokio::time::sleep(Duration::from_secs(10)).await;
    proxy.open();

    let db = PgPool::connect(&direct).await.unwrap();
    wait_for("every job succeeded", Duration::from_secs(120), || async {
        (count(&db, Sleep::KIND, "succeeded").await == 4).then_some(())
    })
    .await;
    let starts = starts_per_job(&[a.log_text(), b.log_text()], &ids);
    assert!(
        starts.iter().all(|(_, n)| *n == 1),
        "jobs started more than once: {starts:?}\n--- a\n{}\n--- b\n{}",
        a.log_text(),
        b.log_text()
    );
    let attempts: Vec<i32> = sqlx::query_scalar("select attempts from job_runs where kind = $1")
        .bind(Sleep::KIND)
        .fetch_all(&db)
        .await
        .unwrap();
    assert!(attempts.iter().all(|a| *a == 1), "{attempts:?}");
    db.close().await;
    drop((a, b));
}
