//! The admin JSON behind `/ops`: every user's jobs filtered, retrying one failed job or all
//! of a kind (a new attempt of the same job, counted), worker replicas and cron schedules.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

async fn wait_failed(db: &PgPool, ids: &[String], attempts: i32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from job_runs where id = any($1) and state = 'failed' and attempts = $2",
        )
        .bind(ids)
        .bind(attempts)
        .fetch_one(db)
        .await
        .unwrap();
        if n == ids.len() as i64 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} of {} failed at attempt {attempts}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrations = false)]
async fn admins_list_every_users_failed_jobs_and_retry_one_or_all_of_a_kind(db: PgPool) {
    let calls = Calls::default();
    let registry = test_registry(&calls).schedule("nightly_test", "0 30 3 * * *", Steps::new(1, 1));
    let app = TestApp::spawn(db.clone(), registry).await;
    let (_, admin) = app.user("admin").await;
    let (alice, alice_token) = app.user("manager").await;
    let (bob, _) = app.user("teacher").await;
    let a1 = app.enqueue(alice, Broken).await;
    let a2 = app.enqueue(alice, Broken).await;
    let b1 = app.enqueue(bob, Broken).await;
    let ok = app.enqueue(bob, Steps::new(1, 1)).await;
    wait_failed(&db, &[a1.clone(), a2.clone(), b1.clone()], 1).await;
    app.wait_terminal(&admin, &ok, Duration::from_secs(10))
        .await;

    // Managers are not admins.
    for path in [
        "/api/admin/jobs",
        "/api/admin/workers",
        "/api/admin/cron",
        "/api/admin/overview",
    ] {
        let res = app.get(&alice_token, path).await;
        error_body(res, StatusCode::FORBIDDEN).await;
    }
    let res = app
        .post(
            &alice_token,
            &format!("/api/admin/jobs/{a1}/retry"),
            json!({}),
        )
        .await;
    error_body(res, StatusCode::FORBIDDEN).await;

    let list: Value = app
        .get(&admin, "/api/admin/jobs?state=failed&kind=test_broken")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 3, "{list}");
    let list: Value = app
        .get(
            &admin,
            &format!("/api/admin/jobs?state=failed&user_id={alice}"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 2, "{list}");
    assert!(list["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["requested_by"] == json!(alice) && j["error"].is_string()));
    let res = app
        .get(&admin, "/api/admin/jobs?state=broken&user_id=nobody")
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        e["fields"]["state"].is_string() && e["fields"]["user_id"].is_string(),
        "{e}"
    );

    // One job: queued again at once, run again (attempt 2), counted.
    let res = app
        .post(&admin, &format!("/api/admin/jobs/{a1}/retry"), json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let retried: Value = res.json().await.unwrap();
    assert_eq!(retried["max_attempts"], 2, "{retried}");
    wait_failed(&db, std::slice::from_ref(&a1), 2).await;
    assert_eq!(calls.of(&a1).len(), 2);
    // A new stream of the retried job shows its current run, to its end — not the old end.
    let body = tokio::time::timeout(
        Duration::from_secs(10),
        app.get(&admin, &format!("/api/jobs/{a1}/events"))
            .await
            .text(),
    )
    .await
    .expect("the stream did not end")
    .unwrap();
    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let seen: Vec<String> = events
        .iter()
        .map(|e| format!("{}:{}", e["state"].as_str().unwrap(), e["attempts"]))
        .collect();
    assert_eq!(seen, vec!["queued:1", "running:2", "failed:2"], "{body}");
    // Not failed → 409; unknown → 404; not a job id → 422.
    let res = app
        .post(&admin, &format!("/api/admin/jobs/{ok}/retry"), json!({}))
        .await;
    error_body(res, StatusCode::CONFLICT).await;
    let res = app
        .post(
            &admin,
            "/api/admin/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/retry",
            json!({}),
        )
        .await;
    error_body(res, StatusCode::NOT_FOUND).await;
    let res = app
        .post(&admin, "/api/admin/jobs/not-a-job/retry", json!({}))
        .await;
    error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;

    // All failed jobs of the kind.
    let res = app
        .post(
            &admin,
            "/api/admin/jobs/retry",
            json!({"kind": "test_broken", "state": "succeeded"}),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["state"].is_string(), "{e}");
    let done: Value = app
        .post(
            &admin,
            "/api/admin/jobs/retry",
            json!({"kind": "test_broken", "state": "failed"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["retried"], 3, "{done}");
    wait_failed(&db, &[a2.clone(), b1.clone()], 2).await;
    wait_failed(&db, std::slice::from_ref(&a1), 3).await;
    let counted: Vec<i32> =
        sqlx::query_scalar("select manual_retries from job_runs where id = any($1) order by id")
            .bind([a1.clone(), a2.clone(), b1.clone()])
            .fetch_all(&db)
            .await
            .unwrap();
    let mut counted = counted;
    counted.sort();
    assert_eq!(counted, vec![1, 1, 2]);

    // Worker replicas and cron schedules as the worker wrote them.
    let workers: Value = app
        .get(&admin, "/api/admin/workers")
        .await
        .json()
        .await
        .unwrap();
    let live: Vec<&Value> = workers
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["alive"] == true)
        .collect();
    assert_eq!(live.len(), 1, "{workers}");
    assert!(live[0]["kinds"]
        .as_array()
        .unwrap()
        .contains(&json!("test_broken")));
    let cron: Value = app
        .get(&admin, "/api/admin/cron")
        .await
        .json()
        .await
        .unwrap();
    let nightly = cron
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "nightly_test")
        .unwrap_or_else(|| panic!("{cron}"));
    assert_eq!(nightly["expr"], "0 30 3 * * *");
    let next: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(nightly["next_tick_at"].clone()).unwrap();
    assert!(next > chrono::Utc::now() && next < chrono::Utc::now() + chrono::Duration::days(1));

    let overview: Value = app
        .get(&admin, "/api/admin/overview")
        .await
        .json()
        .await
        .unwrap();
    let broken = overview["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "test_broken")
        .unwrap();
    assert_eq!(broken["failed_24h"], 3, "{overview}");
    assert!(broken["per_minute_5m"].as_f64().unwrap() > 0.0);
    app.stop().await;
}
