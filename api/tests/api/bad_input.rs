//! Bad input gets a 4xx with the JSON error shape and changes nothing.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test(migrations = false)]
async fn malformed_json_is_400_with_the_error_shape(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let (_, admin) = app.user("admin").await;
    let res = app
        .http
        .post(format!("{}/api/users", app.base))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    let err = error_body(res, StatusCode::BAD_REQUEST).await;
    assert!(
        err["message"].as_str().unwrap().contains("malformed JSON"),
        "{err}"
    );

    let res = app
        .http
        .post(format!("{}/api/auth/login", app.base))
        .body("email=a")
        .send()
        .await
        .unwrap();
    error_body(res, StatusCode::BAD_REQUEST).await;

    // A wrongly typed field is named (serde's path), not reported as the whole body.
    let res = app.post(&admin, "/api/users", json!({"email": 5})).await;
    let err = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(err["fields"]["email"].is_string(), "{err}");
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn invalid_fields_are_named_in_a_422(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let (_, admin) = app.user("admin").await;
    let res = app
        .post(
            &admin,
            "/api/users",
            json!({"email": "nope", "password": "short", "role": "janitor"}),
        )
        .await;
    let err = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(err["code"], "validation_failed");
    for field in ["email", "password", "role"] {
        assert!(err["fields"][field].is_string(), "{field} missing in {err}");
    }
    let res = app.get(&admin, "/api/jobs?limit=0&state=exploded").await;
    let err = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        err["fields"]["limit"].is_string() && err["fields"]["state"].is_string(),
        "{err}"
    );
    let res = app.get(&admin, "/api/jobs?limit=abc").await;
    error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    let users: i64 = sqlx::query_scalar("select count(*) from users")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(users, 1, "nothing written");
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn an_unknown_job_id_format_is_422_and_an_unknown_id_is_404(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let (_, token) = app.user("manager").await;
    for path in [
        "/api/jobs/not-a-job-id",
        "/api/jobs/123/events",
        "/api/jobs/x/artifact",
    ] {
        let err = error_body(
            app.get(&token, path).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert!(err["fields"]["id"].is_string(), "{path}: {err}");
    }
    let err = error_body(
        app.post(&token, "/api/jobs/zzz/cancel", json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(err["fields"]["id"].is_string());
    error_body(
        app.get(&token, "/api/jobs/01JBZ8Q6N5T7X9V2K4M6P8R0S2")
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    error_body(
        app.get(&token, "/api/no-such-route").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn an_oversized_body_is_413_and_nothing_is_written(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&["--body-limit-bytes", "4096"])).await;
    let (_, admin) = app.user("admin").await;
    let huge = "x".repeat(10_000);
    let res = app
        .post(
            &admin,
            "/api/users",
            json!({"email": "big@artsvao.test", "password": huge, "role": "manager"}),
        )
        .await;
    let err = error_body(res, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(err["code"], "payload_too_large");
    let users: i64 = sqlx::query_scalar("select count(*) from users")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(users, 1);
    app.stop().await;
}
