//! Retries, permanent failures and timeouts, observed through `GET /api/jobs/{id}`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use sqlx::PgPool;

#[sqlx::test(migrations = false)]
async fn a_job_failing_twice_then_succeeding_takes_three_attempts_with_growing_waits(db: PgPool) {
    let calls = Calls::default();
    let app = TestApp::spawn(db, test_registry(&calls)).await;
    let (user, token) = app.user("manager").await;

    let id = app.enqueue(user, Flaky { fail_times: 2 }).await;
    let status = app
        .wait_terminal(&token, &id, Duration::from_secs(20))
        .await;

    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["attempts"], 3);
    assert_eq!(status["max_attempts"], 5);
    assert_eq!(status["result"]["attempt"], 3);
    assert_eq!(status["progress"]["percent"], 100);
    let attempts = calls.of(&id);
    assert_eq!(
        attempts.iter().map(|a| a.0).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let first_wait = attempts[1].1 - attempts[0].1;
    let second_wait = attempts[2].1 - attempts[1].1;
    // Backoff base 400 ms with equal jitter: wait 1 in [200, 400] ms, wait 2 in [400, 800] ms.
    assert!(
        first_wait >= Duration::from_millis(200),
        "first wait {first_wait:?}"
    );
    assert!(
        second_wait >= Duration::from_millis(400),
        "second wait {second_wait:?}"
    );
    assert!(
        second_wait > first_wait,
        "waits must grow: {first_wait:?} then {second_wait:?}"
    );

    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "jobs_enqueued_total",
        "jobs_started_total",
        "jobs_retried_total",
        "jobs_succeeded_total",
        "job_run_seconds_bucket",
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(name) && l.contains("kind=\"test_flaky\"")),
            "{name} missing:\n{metrics}"
        );
    }
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn a_retry_waiting_for_backoff_is_shown_as_queued_with_the_last_error(db: PgPool) {
    let calls = Calls::default();
    let app = TestApp::spawn(db, test_registry(&calls)).await;
    let (user, token) = app.user("manager").await;

    let id = app.enqueue(user, Flaky { fail_times: 1 }).await;
    let waiting = app
        .wait_until(&token, &id, Duration::from_secs(10), |s| {
            s["error"].is_string() || s["state"] == "succeeded"
        })
        .await;

    if waiting["state"] == "queued" {
        assert_eq!(waiting["attempts"], 1);
        assert_eq!(waiting["error"], "flaky failure on attempt 1");
        assert!(waiting["next_attempt_at"].is_string(), "{waiting}");
    }
    let done = app
        .wait_terminal(&token, &id, Duration::from_secs(10))
        .await;
    assert_eq!(done["state"], "succeeded");
    assert_eq!(done["attempts"], 2);
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn a_permanent_failure_fails_at_once_with_a_readable_error(db: PgPool) {
    let calls = Calls::default();
    let app = TestApp::spawn(db, test_registry(&calls)).await;
    let (user, token) = app.user("manager").await;

    let id = app.enqueue(user, Broken).await;
    let status = app
        .wait_terminal(&token, &id, Duration::from_secs(10))
        .await;

    assert_eq!(status["state"], "failed");
    assert_eq!(status["attempts"], 1);
    assert_eq!(status["error"], "the timesheet template is missing");
    assert!(status["finished_at"].is_string());
    // Give a buggy runtime the chance to retry, then check it did not.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(calls.of(&id).len(), 1);
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn a_job_over_its_timeout_is_stopped_retried_and_failed_after_max_attempts(db: PgPool) {
    let calls = Calls::default();
    let app = TestApp::spawn(db, test_registry(&calls)).await;
    let (user, token) = app.user("manager").await;

    let id = app.enqueue(user, Sleepy { millis: 5_000 }).await;
    let status = app
        .wait_terminal(&token, &id, Duration::from_secs(10))
        .await;

    assert_eq!(status["state"], "failed", "{status}");
    assert_eq!(status["attempts"], 2);
    let error = status["error"].as_str().unwrap();
    assert!(error.contains("timed out after 0.3 s"), "{error}");
    assert!(error.contains("gave up after 2 attempts"), "{error}");
    // Each attempt was cut at its timeout, far before the 5 s sleep would end.
    let started =
        chrono::DateTime::parse_from_rfc3339(status["started_at"].as_str().unwrap()).unwrap();
    let finished =
        chrono::DateTime::parse_from_rfc3339(status["finished_at"].as_str().unwrap()).unwrap();
    assert!(
        (finished - started).num_milliseconds() < 3_000,
        "ran {} ms",
        (finished - started).num_milliseconds()
    );
    assert_eq!(calls.of(&id).len(), 2);
    app.stop().await;
}
