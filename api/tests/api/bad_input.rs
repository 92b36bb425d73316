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

#[sqlx::test(migrations = false)]
async fn no_input_makes_a_500_nul_paging_path_types_and_methods(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, admin) = app.user("admin").await;

    // NUL in a query value, in a body field (nested too) and in a key: 422 naming it.
    let res = app.get(&admin, "/api/clients?search=%00").await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["search"].is_string(), "{e}");
    let res = app
        .post(
            &admin,
            "/api/clients",
            json!({"last_name": "Ив\u{0}анов", "first_name": "Иван", "phone": "+79161234567"}),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["last_name"].is_string(), "{e}");
    let res = app
        .post(
            &admin,
            "/api/notifications/broadcast",
            json!({"group_id": uuid::Uuid::new_v4(), "text": "a", "channels": ["tele\u{0}gram"]}),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["channels[0]"].is_string(), "{e}");
    let clients: i64 = sqlx::query_scalar("select count(*) from clients")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(clients, 0, "nothing was written");
    // Without a token too, and beside a field the typed read would skip.
    let res = app
        .http
        .post(format!("{}/api/auth/login", app.base))
        .json(&json!({"email": "a\u{0}b", "password": "p"}))
        .send()
        .await
        .unwrap();
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["email"].is_string(), "{e}");
    let res = app
        .http
        .post(format!("{}/api/auth/login", app.base))
        .header("content-type", "application/json")
        .body(r#"{"x": 1e400, "email": "a\u0000b", "password": "p"}"#)
        .send()
        .await
        .unwrap();
    error_body(res, StatusCode::BAD_REQUEST).await;
    // A date with an expanded year (chrono parses it; arithmetic on it would overflow).
    let res = app
        .post(
            &admin,
            "/api/lessons",
            json!({"group_id": uuid::Uuid::new_v4(), "starts_at": "+262143-12-31T23:30:00Z",
                   "duration_min": 60}),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["starts_at"].is_string(), "{e}");
    // The login page's form: a 422 page, not a 500.
    let res = app
        .http
        .post(format!("{}/login", app.base))
        .form(&[("email", "a\u{0}b"), ("password", "p")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Paging that overflows: 422 naming the field, on every kind of list.
    for path in [
        "/api/clients?search=Иванов&offset=9223372036854775807",
        "/api/clients?offset=99999999999999999999",
        "/api/clients?limit=-9223372036854775808",
        "/api/jobs?offset=9223372036854775807",
    ] {
        let res = app.get(&admin, path).await;
        let status = res.status();
        let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(
            e["fields"]["offset"].is_string()
                || e["fields"]["limit"].is_string()
                || e["fields"]["query"].is_string(),
            "{path}: {status} {e}"
        );
    }

    // A path id of the wrong type: 400 in the error shape; an unknown method: 405 in it.
    let res = app.get(&admin, "/api/clients/not-a-uuid").await;
    let e = error_body(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(e["code"], "bad_request");
    let res = app.get(&admin, "/api/groups/12/members").await;
    error_body(res, StatusCode::BAD_REQUEST).await;
    let res = app
        .http
        .delete(format!("{}/api/clients", app.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let e = error_body(res, StatusCode::METHOD_NOT_ALLOWED).await;
    assert_eq!(e["code"], "method_not_allowed");
}

#[sqlx::test(migrations = false)]
async fn a_cancelled_statement_is_503_with_retry_after(db: PgPool) {
    // statement_timeout and a cancel both end a statement with SQLSTATE 57014: a statement
    // waiting behind a lock is cancelled the way the timeout would.
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, admin) = app.user("admin").await;
    let mut blocker = db.begin().await.unwrap();
    sqlx::query("lock table clients in access exclusive mode")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let request = tokio::spawn({
        let http = app.http.clone();
        let url = format!("{}/api/clients?search=Ив", app.base);
        async move { http.get(url).bearer_auth(admin).send().await.unwrap() }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let cancelled: i64 = sqlx::query_scalar(
            "select count(*) from (select pg_cancel_backend(pid) from pg_stat_activity
             where datname = current_database() and wait_event_type = 'Lock'
               and query ilike '%clients%') c",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if cancelled > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the request never waited on the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let res = request.await.unwrap();
    assert!(res.headers().contains_key("retry-after"));
    let e = error_body(res, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(e["code"], "overloaded", "{e}");
    blocker.rollback().await.unwrap();
}
