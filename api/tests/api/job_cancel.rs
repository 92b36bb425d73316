//! Cancelling jobs: a queued job never runs, a running one stops at its next checkpoint.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

#[sqlx::test(migrations = false)]
async fn a_cancelled_queued_job_never_runs(db: PgPool) {
    let calls = Calls::default();
    // No worker yet: the job stays queued.
    let mut app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let (user, token) = app.user("manager").await;
    let cancelled = app.enqueue(user, Steps::new(1, 1)).await;

    let res = app
        .post(&token, &format!("/api/jobs/{cancelled}/cancel"), json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["state"], "cancelled");
    assert_eq!(body["cancel_requested"], true);

    // A job enqueued after it is run by the worker: proof the queue was processed.
    let later = app.enqueue(user, Steps::new(1, 1)).await;
    app.start_worker(test_registry(&calls));
    let done = app
        .wait_terminal(&token, &later, Duration::from_secs(10))
        .await;
    assert_eq!(done["state"], "succeeded");

    assert!(calls.of(&cancelled).is_empty(), "the cancelled job ran");
    let status: Value = app
        .get(&token, &format!("/api/jobs/{cancelled}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "cancelled");
    assert_eq!(status["attempts"], 0);
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn a_running_job_that_checks_the_flag_ends_cancelled(db: PgPool) {
    let calls = Calls::default();
    let app = TestApp::spawn(db, test_registry(&calls)).await;
    let (user, token) = app.user("manager").await;
    let id = app.enqueue(user, Steps::new(100, 100)).await;
    app.wait_running(&token, &id).await;

    let res = app
        .post(&token, &format!("/api/jobs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);

    let status = app.wait_terminal(&token, &id, Duration::from_secs(5)).await;
    assert_eq!(status["state"], "cancelled");
    assert_eq!(status["error"], "cancelled by request");
    assert!(status["progress"]["percent"].as_i64().unwrap() < 100);
    assert_eq!(calls.of(&id).len(), 1, "a cancelled job is not retried");
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn another_users_job_cannot_be_cancelled(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let (owner, _) = app.user("manager").await;
    let (_, other) = app.user("manager").await;
    let id = app.enqueue(owner, Steps::new(1, 1)).await;

    let res = app
        .post(&other, &format!("/api/jobs/{id}/cancel"), json!({}))
        .await;
    error_body(res, StatusCode::NOT_FOUND).await;
    let state: String = sqlx::query_scalar("select state from job_runs where id = $1")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(state, "queued");
    app.stop().await;
}
