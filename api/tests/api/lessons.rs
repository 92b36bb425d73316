//! Lessons: no double booking of a room or a teacher (409 naming the clashing lesson),
//! back-to-back allowed, cancelled lessons free their slot, moves checked the same way, bad
//! input named, lists by range and filter.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

struct Fixture {
    token: String,
    rooms: [String; 2],
    teachers: [String; 2],
    groups: [String; 2],
}

async fn post_ok(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let res = app.post(token, path, body).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{path}: {body}");
    body
}

/// Two rooms, two teachers, group 0 (teacher 0, room 0) and group 1 (teacher 1, room 1).
async fn fixture(app: &TestApp) -> Fixture {
    let (_, token) = app.user("manager").await;
    let mut rooms = Vec::new();
    let mut teachers = Vec::new();
    let mut groups = Vec::new();
    for i in 0..2 {
        let room = post_ok(
            app,
            &token,
            "/api/rooms",
            json!({"name": format!("Зал {i}"), "capacity": 20}),
        )
        .await;
        let teacher = post_ok(
            app,
            &token,
            "/api/teachers",
            json!({"full_name": format!("Педагог {i}")}),
        )
        .await;
        let group = post_ok(
            app,
            &token,
            "/api/groups",
            json!({"name": format!("Группа {i}"), "teacher_id": teacher["id"], "room_id": room["id"], "capacity": 10}),
        )
        .await;
        rooms.push(room["id"].as_str().unwrap().to_string());
        teachers.push(teacher["id"].as_str().unwrap().to_string());
        groups.push(group["id"].as_str().unwrap().to_string());
    }
    Fixture {
        token,
        rooms: rooms.try_into().unwrap(),
        teachers: teachers.try_into().unwrap(),
        groups: groups.try_into().unwrap(),
    }
}

async fn lesson(app: &TestApp, f: &Fixture, body: Value) -> reqwest::Response {
    app.post(&f.token, "/api/lessons", body).await
}

#[sqlx::test(migrations = false)]
async fn a_room_or_a_teacher_cannot_be_double_booked_but_back_to_back_is_fine(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let f = fixture(&app).await;
    // 18:00–19:30 Moscow.
    let first = lesson(&app, &f, json!({"group_id": f.groups[0], "starts_at": "2026-12-01T18:00:00+03:00", "duration_min": 90})).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["starts_at"], "2026-12-01T15:00:00Z");
    assert_eq!(
        first["room_id"],
        f.rooms[0].as_str(),
        "the group's room by default"
    );

    // Same room, overlapping, another group and teacher → room clash.
    let res = lesson(&app, &f, json!({"group_id": f.groups[1], "room_id": f.rooms[0], "starts_at": "2026-12-01T19:00:00+03:00", "duration_min": 60})).await;
    let e = error_body(res, StatusCode::CONFLICT).await;
    assert_eq!(e["message"], "the room is already booked at that time");
    assert_eq!(e["clashes"][0]["id"], first["id"]);
    // Same teacher in another room → teacher clash.
    let res = lesson(&app, &f, json!({"group_id": f.groups[0], "room_id": f.rooms[1], "starts_at": "2026-12-01T18:30:00+03:00", "ends_at": "2026-12-01T19:00:00+03:00"})).await;
    let e = error_body(res, StatusCode::CONFLICT).await;
    assert_eq!(e["message"], "the teacher already teaches at that time");
    assert_eq!(e["clashes"][0]["id"], first["id"]);
    // Back to back in the same room with the same teacher: allowed.
    let next = lesson(&app, &f, json!({"group_id": f.groups[0], "starts_at": "2026-12-01T19:30:00+03:00", "duration_min": 60})).await;
    assert_eq!(next.status(), StatusCode::CREATED);
    let next: Value = next.json().await.unwrap();

    // Moving the second lesson onto the first: 409, nothing changed.
    let res = app
        .patch(
            &f.token,
            &format!("/api/lessons/{}", next["id"].as_str().unwrap()),
            json!({"starts_at": "2026-12-01T19:00:00+03:00"}),
        )
        .await;
    error_body(res, StatusCode::CONFLICT).await;
    let unchanged: Value = app
        .get(
            &f.token,
            &format!("/api/lessons/{}", next["id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(unchanged["starts_at"], next["starts_at"]);

    // Cancelling the first frees its slot.
    let res = app
        .post(
            &f.token,
            &format!("/api/lessons/{}/cancel", first["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = lesson(&app, &f, json!({"group_id": f.groups[1], "room_id": f.rooms[0], "starts_at": "2026-12-01T18:00:00+03:00", "duration_min": 90})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let active: i64 =
        sqlx::query_scalar("select count(*) from lessons where status <> 'cancelled'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(active, 2);
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn bad_lesson_input_is_422_naming_the_field(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let f = fixture(&app).await;
    for (body, field) in [
        (
            json!({"group_id": f.groups[0], "starts_at": "tomorrow", "duration_min": 60}),
            "starts_at",
        ),
        (
            json!({"group_id": f.groups[0], "starts_at": "2026-12-01T18:00:00+03:00"}),
            "ends_at",
        ),
        (
            json!({"group_id": f.groups[0], "starts_at": "2026-12-01T18:00:00+03:00", "duration_min": 0}),
            "duration_min",
        ),
        (
            json!({"group_id": f.groups[0], "starts_at": "2026-12-01T18:00:00+03:00", "ends_at": "2026-12-01T17:00:00+03:00"}),
            "ends_at",
        ),
        (
            json!({"group_id": "00000000-0000-0000-0000-000000000001", "starts_at": "2026-12-01T18:00:00+03:00", "duration_min": 60}),
            "group_id",
        ),
        (
            json!({"group_id": f.groups[0], "room_id": "00000000-0000-0000-0000-000000000001", "starts_at": "2026-12-01T18:00:00+03:00", "duration_min": 60}),
            "room_id",
        ),
        (
            json!({"starts_at": "2026-12-01T18:00:00+03:00", "duration_min": 60}),
            "group_id",
        ),
    ] {
        let res = lesson(&app, &f, body.clone()).await;
        let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(e["fields"][field].is_string(), "{body} → {e}");
    }
    let count: i64 = sqlx::query_scalar("select count(*) from lessons")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(count, 0);
    let res = app.get(&f.token, "/api/lessons").await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["from"].is_string() && e["fields"]["to"].is_string());
    let res = app
        .get(
            &f.token,
            "/api/lessons?from=2026-01-01T00:00:00Z&to=2026-06-01T00:00:00Z",
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["to"].is_string());
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn lessons_are_listed_by_range_room_teacher_and_group(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let f = fixture(&app).await;
    for day in 1..=7 {
        for g in 0..2 {
            let starts = format!("2026-12-{day:02}T1{}:00:00+03:00", 5 + g);
            let res = lesson(
                &app,
                &f,
                json!({"group_id": f.groups[g], "starts_at": starts, "duration_min": 45}),
            )
            .await;
            assert_eq!(res.status(), StatusCode::CREATED);
        }
    }
    let (_, teacher) = app.user("teacher").await;
    let get = |q: String| {
        let app = &app;
        let teacher = teacher.clone();
        async move {
            let res = app.get(&teacher, &format!("/api/lessons?{q}")).await;
            assert_eq!(res.status(), StatusCode::OK);
            res.json::<Value>().await.unwrap()
        }
    };
    let week = "from=2026-12-01T00:00:00%2B03:00&to=2026-12-08T00:00:00%2B03:00";
    assert_eq!(get(week.to_string()).await["total"], 14);
    assert_eq!(
        get(format!("{week}&room_id={}", f.rooms[1])).await["total"],
        7
    );
    assert_eq!(
        get(format!("{week}&teacher_id={}", f.teachers[0])).await["total"],
        7
    );
    assert_eq!(
        get(format!("{week}&group_id={}", f.groups[0])).await["total"],
        7
    );
    let day =
        get("from=2026-12-03T00:00:00%2B03:00&to=2026-12-04T00:00:00%2B03:00&limit=1".into()).await;
    assert_eq!(day["total"], 2);
    assert_eq!(day["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        day["items"][0]["starts_at"].as_str().unwrap()[..16],
        *"2026-12-03T12:00"
    );
    app.stop().await;
}
