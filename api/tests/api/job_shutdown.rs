//! Graceful worker shutdown: running jobs finish within the grace period, the rest are released.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::support::*;
use sqlx::PgPool;

async fn ledger(db: &PgPool, id: &str) -> (String, i32) {
    sqlx::query_as("select state, attempts from job_runs where id = $1")
        .bind(id)
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn a_job_running_at_shutdown_finishes_before_the_worker_stops(db: PgPool) {
    let calls = Calls::default();
    let app = TestApp::spawn(db.clone(), test_registry(&calls)).await;
    let (user, token) = app.user("manager").await;
    let id = app.enqueue(user, Steps::new(5, 200)).await;
    app.wait_running(&token, &id).await;

    app.stop().await;

    let (state, attempts) = ledger(&db, &id).await;
    assert_eq!((state.as_str(), attempts), ("succeeded", 1));
}

#[sqlx::test(migrations = false)]
async fn a_job_still_running_after_the_grace_period_is_released_to_the_queue_uncounted(db: PgPool) {
    let calls = Calls::default();
    let app = TestApp::spawn(db.clone(), test_registry(&calls)).await;
    let (user, token) = app.user("manager").await;
    let id = app.enqueue(user, Steps::new(100, 200)).await;
    app.wait_running(&token, &id).await;

    let started = Instant::now();
    app.stop().await; // grace period of the test runtime: 5 s
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(10),
        "stopped in {took:?}"
    );

    let (state, attempts) = ledger(&db, &id).await;
    assert_eq!(
        (state.as_str(), attempts),
        ("queued", 0),
        "a released attempt is not counted"
    );
    let (status, engine_attempts, lock_by): (String, i32, Option<String>) =
        sqlx::query_as("select status, attempts, lock_by from apalis.jobs where id = $1")
            .bind(&id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(status, "Pending");
    assert_eq!(engine_attempts, 0, "a released attempt is not counted");
    assert!(lock_by.is_none());
}
