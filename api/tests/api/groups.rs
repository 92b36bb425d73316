//! Teachers, rooms, study groups and membership: validation naming the field, capacity with a
//! waitlist (also under concurrent enrolment), promotion when a seat frees.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

async fn created(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let res = app.post(token, path, body).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{path}: {body}");
    body
}

async fn group_with_capacity(app: &TestApp, token: &str, capacity: i32) -> String {
    let teacher = created(
        app,
        token,
        "/api/teachers",
        json!({"full_name": "Анна Керн"}),
    )
    .await;
    let room = created(
        app,
        token,
        "/api/rooms",
        json!({"name": format!("Зал {}", uuid::Uuid::new_v4()), "capacity": 30}),
    )
    .await;
    let group = created(
        app,
        token,
        "/api/groups",
        json!({"name": "Хор", "teacher_id": teacher["id"], "room_id": room["id"],
               "capacity": capacity}),
    )
    .await;
    group["id"].as_str().unwrap().to_string()
}

async fn client(app: &TestApp, token: &str, n: usize) -> String {
    let c = created(
        app,
        token,
        "/api/clients",
        json!({"last_name": format!("Клиент{n}"), "first_name": "Тест"}),
    )
    .await;
    c["id"].as_str().unwrap().to_string()
}

#[sqlx::test(migrations = false)]
async fn directory_input_errors_name_the_field(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, token) = app.user("manager").await;
    let res = app
        .post(
            &token,
            "/api/rooms",
            json!({"name": "Малый зал", "capacity": "many"}),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["capacity"].is_string(), "{e}");
    let res = app
        .post(
            &token,
            "/api/rooms",
            json!({"name": "Малый зал", "capacty": 5}),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["capacty"].is_string(), "{e}");
    let res = app
        .post(&token, "/api/rooms", json!({"name": " ", "capacity": 0}))
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        e["fields"]["name"].is_string() && e["fields"]["capacity"].is_string(),
        "{e}"
    );
    created(
        &app,
        &token,
        "/api/rooms",
        json!({"name": "Малый зал", "capacity": 12}),
    )
    .await;
    let res = app
        .post(
            &token,
            "/api/rooms",
            json!({"name": "малый ЗАЛ", "capacity": 5}),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(e["fields"]["name"], "a room with this name exists");

    let res = app
        .post(
            &token,
            "/api/teachers",
            json!({"full_name": "Лев Т.", "phone": "123"}),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["phone"].is_string(), "{e}");
    let res = app
        .post(
            &token,
            "/api/groups",
            json!({"name": "Танцы", "capacity": 10,
                   "teacher_id": "00000000-0000-0000-0000-000000000001"}),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(e["fields"]["teacher_id"], "no such teacher");
    let res = app
        .post(&token, "/api/groups", json!({"name": "Танцы"}))
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["teacher_id"].is_string() && e["fields"]["capacity"].is_string());
    let groups: i64 = sqlx::query_scalar("select count(*) from study_groups")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(groups, 0);

    let (_, teacher_token) = app.user("teacher").await;
    let res = app
        .post(
            &teacher_token,
            "/api/rooms",
            json!({"name": "X", "capacity": 1}),
        )
        .await;
    error_body(res, StatusCode::FORBIDDEN).await;
    let rooms: Value = app
        .get(&teacher_token, "/api/rooms")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rooms["total"], 1);
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn a_full_group_waitlists_and_a_freed_seat_goes_to_the_first_waitlisted(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let (_, token) = app.user("manager").await;
    let group = group_with_capacity(&app, &token, 2).await;
    let path = format!("/api/groups/{group}/members");
    let mut statuses = Vec::new();
    let mut clients = Vec::new();
    for n in 0..4 {
        let c = client(&app, &token, n).await;
        let m = created(&app, &token, &path, json!({"client_id": c})).await;
        statuses.push(m["status"].as_str().unwrap().to_string());
        clients.push(c);
    }
    assert_eq!(statuses, ["active", "active", "waitlist", "waitlist"]);
    let res = app
        .post(&token, &path, json!({"client_id": clients[0]}))
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        e["fields"]["client_id"],
        "already a member or on the waitlist"
    );

    let res = app
        .http
        .delete(format!("{}{path}/{}", app.base, clients[1]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["promoted_from_waitlist"], clients[2].as_str());

    let group: Value = app
        .get(&token, &format!("/api/groups/{group}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (group["active_members"].clone(), group["waitlisted"].clone()),
        (json!(2), json!(1))
    );
    let members: Value = app
        .get(&token, &format!("{path}?status=all"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(members["total"], 4);
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn twenty_concurrent_enrolments_fill_exactly_the_capacity(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, token) = app.user("manager").await;
    let group = group_with_capacity(&app, &token, 5).await;
    let mut clients = Vec::new();
    for n in 0..20 {
        clients.push(client(&app, &token, n).await);
    }
    let path = format!("/api/groups/{group}/members");
    let requests = clients
        .iter()
        .map(|c| app.post(&token, &path, json!({"client_id": c})));
    for res in futures::future::join_all(requests).await {
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "select status, count(*) from group_members group by status order by status",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(
        counts,
        [("active".to_string(), 5), ("waitlist".to_string(), 15)]
    );
    app.stop().await;
}
