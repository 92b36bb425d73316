//! The user lifecycle: no silent password reset on create, changing role / active / extension,
//! changing one's own password, and tokens that end at once when they should.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

async fn login(app: &TestApp, email: &str, password: &str) -> Option<String> {
    let res = app
        .http
        .post(format!("{}/api/auth/login", app.base))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    if res.status() != StatusCode::OK {
        return None;
    }
    let body: Value = res.json().await.unwrap();
    Some(body["access_token"].as_str().unwrap().to_string())
}

#[sqlx::test(migrations = false)]
async fn creating_an_existing_email_is_409_and_changes_nothing(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let (_, admin) = app.user("admin").await;
    let created = app
        .post(
            &admin,
            "/api/users",
            json!({"email": "Olga@artsvao.test", "password": "first password", "role": "manager",
                   "extension": "105"}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["extension"], "105");
    assert_eq!(created["active"], true);
    let res = app
        .post(
            &admin,
            "/api/users",
            json!({"email": "olga@ARTSVAO.test", "password": "second password", "role": "admin"}),
        )
        .await;
    let e = error_body(res, StatusCode::CONFLICT).await;
    assert!(e["message"].as_str().unwrap().contains("exists"), "{e}");
    assert!(login(&app, "olga@artsvao.test", "first password")
        .await
        .is_some());
    assert!(login(&app, "olga@artsvao.test", "second password")
        .await
        .is_none());
    let res = app
        .post(
            &admin,
            "/api/users",
            json!({"email": "x@y.z", "password": "short", "role": "boss"}),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        e["fields"]["password"].is_string() && e["fields"]["role"].is_string(),
        "{e}"
    );
}

#[sqlx::test(migrations = false)]
async fn an_admin_changes_role_active_and_extension_and_deactivation_ends_tokens_at_once(
    db: PgPool,
) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let (admin_id, admin) = app.user("admin").await;
    let (teacher_id, teacher) = app.user("teacher").await;
    assert_eq!(
        app.get(&teacher, "/api/auth/me").await.status(),
        StatusCode::OK
    );

    let changed: Value = app
        .patch(
            &admin,
            &format!("/api/users/{teacher_id}"),
            json!({"role": "manager", "extension": "203"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (changed["role"].as_str(), changed["extension"].as_str()),
        (Some("manager"), Some("203"))
    );
    // A role change keeps the token (the role is read on each request).
    let me: Value = app
        .get(&teacher, "/api/auth/me")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "manager");

    let res = app
        .patch(
            &admin,
            &format!("/api/users/{teacher_id}"),
            json!({"active": false}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    error_body(
        app.get(&teacher, "/api/auth/me").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // Reactivated: the old token stays dead; a new login works.
    let res = app
        .patch(
            &admin,
            &format!("/api/users/{teacher_id}"),
            json!({"active": true, "extension": null}),
        )
        .await;
    let back: Value = res.json().await.unwrap();
    assert!(back["extension"].is_null(), "{back}");
    error_body(
        app.get(&teacher, "/api/auth/me").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // Bad input, unknown user, a non-UUID id, self-lockout, a non-admin.
    let res = app
        .patch(
            &admin,
            &format!("/api/users/{teacher_id}"),
            json!({"role": "boss", "extension": "1"}),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        e["fields"]["role"].is_string() && e["fields"]["extension"].is_string(),
        "{e}"
    );
    let res = app
        .patch(
            &admin,
            &format!("/api/users/{}", uuid::Uuid::new_v4()),
            json!({"active": true}),
        )
        .await;
    error_body(res, StatusCode::NOT_FOUND).await;
    let res = app
        .patch(&admin, "/api/users/not-a-uuid", json!({"active": true}))
        .await;
    error_body(res, StatusCode::BAD_REQUEST).await;
    let res = app
        .patch(
            &admin,
            &format!("/api/users/{admin_id}"),
            json!({"active": false}),
        )
        .await;
    error_body(res, StatusCode::CONFLICT).await;
    let (_, manager) = app.user("manager").await;
    let res = app
        .patch(
            &manager,
            &format!("/api/users/{teacher_id}"),
            json!({"active": false}),
        )
        .await;
    error_body(res, StatusCode::FORBIDDEN).await;
}

#[sqlx::test(migrations = false)]
async fn changing_ones_password_revokes_earlier_tokens_sessions_and_links(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let email = format!("pw-{}@artsvao.test", uuid::Uuid::new_v4());
    let user = api::auth::upsert_user(&app.db, &email, "old password 1", api::auth::Role::Manager)
        .await
        .unwrap();
    let token = login(&app, &email, "old password 1").await.unwrap();
    let second = login(&app, &email, "old password 1").await.unwrap();
    let job = app.enqueue(user, Steps::new(1, 1)).await;
    let status: Value = app
        .get(&token, &format!("/api/jobs/{job}"))
        .await
        .json()
        .await
        .unwrap();
    let link = status["events_url"].as_str().unwrap().to_string();

    let res = app
        .post(
            &token,
            "/api/auth/password",
            json!({"current_password": "wrong", "new_password": "new password 2"}),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["current_password"].is_string(), "{e}");
    let res = app
        .post(
            &token,
            "/api/auth/password",
            json!({"current_password": "old password 1", "new_password": "short"}),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["new_password"].is_string(), "{e}");

    let res = app
        .post(
            &token,
            "/api/auth/password",
            json!({"current_password": "old password 1", "new_password": "new password 2"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let fresh: Value = res.json().await.unwrap();
    let fresh = fresh["access_token"].as_str().unwrap().to_string();
    for old in [&token, &second] {
        error_body(app.get(old, "/api/auth/me").await, StatusCode::UNAUTHORIZED).await;
    }
    let res = app
        .http
        .get(format!("{}{link}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "a link signed before the change"
    );
    assert_eq!(
        app.get(&fresh, "/api/auth/me").await.status(),
        StatusCode::OK
    );
    assert!(login(&app, &email, "old password 1").await.is_none());
    assert!(login(&app, &email, "new password 2").await.is_some());
}

#[sqlx::test(migrations = false)]
async fn create_user_reads_the_password_from_stdin(db: PgPool) {
    use tokio::io::AsyncWriteExt;
    jobs::engine::migrate(&db).await.unwrap();
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let base = base.rsplit_once('/').map_or(base.as_str(), |(b, _)| b);
    let url = format!("{base}/{}", db.connect_options().get_database().unwrap());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_artsvao-api"))
        .args([
            "create-user",
            "--email",
            "stdin@artsvao.test",
            "--role",
            "teacher",
            "--password-stdin",
        ])
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"typed, not in ps 42\n").await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("stdin@artsvao.test"));
    let hash: String =
        sqlx::query_scalar("select password_hash from users where email = 'stdin@artsvao.test'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(api::auth::verify_password("typed, not in ps 42".into(), hash).await);
}

#[sqlx::test(migrations = false)]
async fn two_admins_demoting_each_other_at_once_leave_one_admin(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    for _ in 0..5 {
        let (a_id, a) = app.user("admin").await;
        let (b_id, b) = app.user("admin").await;
        sqlx::query("update users set role = 'manager' where role = 'admin' and id <> all($1)")
            .bind([a_id, b_id])
            .execute(&db)
            .await
            .unwrap();
        let (path_b, path_a) = (format!("/api/users/{b_id}"), format!("/api/users/{a_id}"));
        let (ra, rb) = tokio::join!(
            app.patch(&a, &path_b, json!({"role": "manager"})),
            app.patch(&b, &path_a, json!({"role": "manager"})),
        );
        let mut statuses = vec![ra.status().as_u16(), rb.status().as_u16()];
        statuses.sort();
        assert_eq!(statuses[0], 200, "{statuses:?}");
        assert_ne!(statuses[1], 200, "both demoted: {statuses:?}");
        let admins: i64 =
            sqlx::query_scalar("select count(*) from users where role = 'admin' and active")
                .fetch_one(&db)
                .await
                .unwrap();
        assert_eq!(admins, 1);
    }
}
