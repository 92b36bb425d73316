//! Authentication and authorisation: tokens, ownership of jobs, roles, login limits.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

#[sqlx::test(migrations = false)]
async fn requests_without_a_valid_token_get_401(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    for path in [
        "/api/auth/me",
        "/api/jobs",
        "/api/jobs/01JBZ8Q6N5T7X9V2K4M6P8R0S2",
        "/api/users",
    ] {
        let res = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        let err = error_body(res, StatusCode::UNAUTHORIZED).await;
        assert_eq!(err["code"], "unauthorized", "{path}");
        let res = app.get("not-a-token", path).await;
        error_body(res, StatusCode::UNAUTHORIZED).await;
    }
    // Health needs no token (metrics: see http_limits).
    for path in ["/api/health/liveness", "/api/health/readiness"] {
        let res = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn login_returns_a_bearer_token_and_me_describes_the_user(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let (id, token) = app.user("teacher").await;
    let me: Value = app.get(&token, "/api/auth/me").await.json().await.unwrap();
    assert_eq!(me["id"], id.to_string());
    assert_eq!(me["role"], "teacher");

    let res = app
        .http
        .post(format!("{}/api/auth/login", app.base))
        .json(&json!({"email": me["email"], "password": "wrong password"}))
        .send()
        .await
        .unwrap();
    error_body(res, StatusCode::UNAUTHORIZED).await;
    let res = app
        .http
        .post(format!("{}/api/auth/login", app.base))
        .json(&json!({"email": "nobody@artsvao.test", "password": "whatever"}))
        .send()
        .await
        .unwrap();
    error_body(res, StatusCode::UNAUTHORIZED).await;

    // A deactivated user loses access at once, token or not.
    sqlx::query("update users set active = false where id = $1")
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();
    error_body(
        app.get(&token, "/api/auth/me").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn another_users_job_is_404_but_an_admin_sees_it(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let (owner, owner_token) = app.user("manager").await;
    let (_, other_token) = app.user("manager").await;
    let (_, admin_token) = app.user("admin").await;
    let id = app.enqueue(owner, Steps::new(1, 1)).await;

    assert_eq!(
        app.get(&owner_token, &format!("/api/jobs/{id}"))
            .await
            .status(),
        StatusCode::OK
    );
    error_body(
        app.get(&other_token, &format!("/api/jobs/{id}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    error_body(
        app.get(&other_token, &format!("/api/jobs/{id}/events"))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let listed: Value = app
        .get(&other_token, "/api/jobs")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["total"], 0);
    let seen: Value = app
        .get(&admin_token, &format!("/api/jobs/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["requested_by"], owner.to_string());
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn a_teacher_calling_an_admin_only_route_gets_403(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let (_, teacher) = app.user("teacher").await;
    let (_, admin) = app.user("admin").await;

    let err = error_body(app.get(&teacher, "/api/users").await, StatusCode::FORBIDDEN).await;
    assert_eq!(err["code"], "forbidden");
    let res = app
        .post(
            &teacher,
            "/api/users",
            json!({"email": "x@y.z", "password": "12345678", "role": "admin"}),
        )
        .await;
    error_body(res, StatusCode::FORBIDDEN).await;
    let count: i64 = sqlx::query_scalar("select count(*) from users where email = 'x@y.z'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 0);

    let res = app
        .post(
            &admin,
            "/api/users",
            json!({"email": "x@y.z", "password": "12345678", "role": "manager"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let users: Value = app
        .get(&admin, "/api/users?limit=10")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(users["total"], 3);
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn too_many_requests_get_429_with_retry_after_but_status_polling_is_not_throttled(
    db: PgPool,
) {
    let config = api_config(&[
        "--rate-limit",
        "5/60s",
        "--login-rate-limit",
        "3/60s",
        "--status-rate-limit",
        "600/60s",
    ]);
    let app = TestApp::spawn_with(db, None, config).await;
    let (user, token) = app.user("manager").await; // one login
    let id = app.enqueue(user, Steps::new(1, 1)).await;

    for _ in 0..5 {
        assert_eq!(
            app.get(&token, "/api/auth/me").await.status(),
            StatusCode::OK
        );
    }
    let res = app.get(&token, "/api/auth/me").await;
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    let err = error_body(res, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(err["code"], "rate_limited");

    // A browser polling job status once a second for two minutes stays within its bucket.
    for _ in 0..120 {
        assert_eq!(
            app.get(&token, &format!("/api/jobs/{id}")).await.status(),
            StatusCode::OK
        );
    }
    // Login is stricter: two more attempts pass, the next is refused.
    for expected in [
        StatusCode::UNAUTHORIZED,
        StatusCode::UNAUTHORIZED,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        let res = app
            .http
            .post(format!("{}/api/auth/login", app.base))
            .json(&json!({"email": "guess@artsvao.test", "password": "guess"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), expected);
    }
    app.stop().await;
}
