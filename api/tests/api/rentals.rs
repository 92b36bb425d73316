//! Rental applications: bounded periods, approval booking every day set-based, refused as a
//! whole with every clash listed.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

fn application(room: &Value, from: &str, to: &str) -> Value {
    json!({"organisation": "ООО «Театр»", "contact_name": "Ирина", "contact_phone": "8 903 000-00-01",
           "room_id": room["id"], "date_from": from, "date_to": to,
           "time_from": "10:00", "time_to": "12:00"})
}

#[sqlx::test(migrations = false)]
async fn a_rental_longer_than_366_days_or_inverted_is_422_naming_the_field(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, token) = app.user("manager").await;
    let room = ok(
        &app,
        &token,
        "/api/rooms",
        json!({"name": "Большой зал", "capacity": 200}),
    )
    .await;
    let res = app
        .post(
            &token,
            "/api/rental-applications",
            application(&room, "2027-01-01", "2028-02-04"),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(e["fields"]["date_to"], "a rental lasts at most 366 days");
    let mut bad = application(&room, "2027-01-10", "2027-01-01");
    bad["time_to"] = json!("09:00");
    bad["contact_phone"] = json!("000");
    let res = app.post(&token, "/api/rental-applications", bad).await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    for field in ["date_to", "time_to", "contact_phone"] {
        assert!(e["fields"][field].is_string(), "{field}: {e}");
    }
    // Times are written HH:MM, as documented (chrono alone would take `9:0`).
    let mut sloppy = application(&room, "2027-01-01", "2027-01-01");
    sloppy["time_from"] = json!("9:0");
    let res = app.post(&token, "/api/rental-applications", sloppy).await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(e["fields"]["time_from"], "expected HH:MM", "{e}");
    let count: i64 = sqlx::query_scalar("select count(*) from rental_applications")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(count, 0);
    let (_, teacher) = app.user("teacher").await;
    let res = app
        .post(
            &teacher,
            "/api/rental-applications",
            application(&room, "2027-01-01", "2027-01-02"),
        )
        .await;
    error_body(res, StatusCode::FORBIDDEN).await;
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn approval_clashing_with_a_lesson_is_409_listing_it_and_books_nothing(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, token) = app.user("manager").await;
    let room = ok(
        &app,
        &token,
        "/api/rooms",
        json!({"name": "Большой зал", "capacity": 200}),
    )
    .await;
    let teacher = ok(
        &app,
        &token,
        "/api/teachers",
        json!({"full_name": "Педагог"}),
    )
    .await;
    let group = ok(&app, &token, "/api/groups", json!({"name": "Балет", "teacher_id": teacher["id"], "room_id": room["id"], "capacity": 10})).await;
    // 11:30–12:30 Moscow on the 3rd overlaps the rental's 10:00–12:00.
    let lesson = ok(&app, &token, "/api/lessons", json!({"group_id": group["id"], "starts_at": "2027-03-03T11:30:00+03:00", "duration_min": 60})).await;
    let a = ok(
        &app,
        &token,
        "/api/rental-applications",
        application(&room, "2027-03-01", "2027-03-07"),
    )
    .await;
    let id = a["id"].as_str().unwrap();

    let res = app
        .post(
            &token,
            &format!("/api/rental-applications/{id}/approve"),
            json!({}),
        )
        .await;
    let e = error_body(res, StatusCode::CONFLICT).await;
    assert_eq!(e["clashes"].as_array().unwrap().len(), 1, "{e}");
    assert_eq!(e["clashes"][0]["lesson_id"], lesson["id"]);
    let booked: i64 = sqlx::query_scalar("select count(*) from lessons where kind = 'rental'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(booked, 0, "nothing booked");
    let still: Value = app
        .get(&token, &format!("/api/rental-applications/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(still["status"], "new");

    // Move the lesson out of the window: approval books all 7 days, 07:00–09:00 UTC.
    let res = app
        .patch(
            &token,
            &format!("/api/lessons/{}", lesson["id"].as_str().unwrap()),
            json!({"starts_at": "2027-03-03T12:00:00+03:00"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let approved = ok(
        &app,
        &token,
        &format!("/api/rental-applications/{id}/approve"),
        json!({}),
    )
    .await;
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["bookings"], 7);
    let first: (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "select starts_at, ends_at from lessons where kind = 'rental' order by starts_at limit 1",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(first.0.to_rfc3339(), "2027-03-01T07:00:00+00:00");
    assert_eq!(first.1.to_rfc3339(), "2027-03-01T09:00:00+00:00");
    // The booked room now refuses a lesson in the window.
    let res = app.post(&token, "/api/lessons", json!({"group_id": group["id"], "starts_at": "2027-03-05T10:30:00+03:00", "duration_min": 30})).await;
    error_body(res, StatusCode::CONFLICT).await;
    let res = app
        .post(
            &token,
            &format!("/api/rental-applications/{id}/approve"),
            json!({}),
        )
        .await;
    error_body(res, StatusCode::CONFLICT).await;
    app.stop().await;
}
