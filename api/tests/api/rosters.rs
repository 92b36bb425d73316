//! Who is expected at a lesson: every path that creates lessons or changes membership keeps
//! the roster, and the attendance sheet lists it with the marks.
use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::support::*;

async fn sheet(app: &TestApp, token: &str, lesson: &Value) -> Vec<(String, bool, Value)> {
    let res = app
        .get(
            token,
            &format!("/api/lessons/{}/attendance", lesson["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["total"], body["items"].as_array().unwrap().len());
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["full_name"].as_str().unwrap().to_string(),
                i["expected"].as_bool().unwrap(),
                i["mark"].clone(),
            )
        })
        .collect()
}

#[sqlx::test(migrations = false)]
async fn every_path_keeps_the_roster_and_the_sheet_lists_expected_members_with_their_marks(
    db: PgPool,
) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, token) = app.user("manager").await;
    let room = ok(
        &app,
        &token,
        "/api/rooms",
        json!({"name": "Зал", "capacity": 20}),
    )
    .await;
    let teacher = ok(
        &app,
        &token,
        "/api/teachers",
        json!({"full_name": "Петрова Анна"}),
    )
    .await;
    let group = ok(
        &app,
        &token,
        "/api/groups",
        json!({"name": "Хор", "teacher_id": teacher["id"], "room_id": room["id"], "capacity": 2}),
    )
    .await;
    let gid = group["id"].as_str().unwrap().to_string();
    let mut clients = Vec::new();
    for name in ["Антонова", "Борисова", "Волкова", "Гусева"] {
        let c = ok(
            &app,
            &token,
            "/api/clients",
            json!({"last_name": name, "first_name": "Ольга"}),
        )
        .await;
        clients.push(c["id"].as_str().unwrap().to_string());
    }
    let (a, b, c, d) = (&clients[0], &clients[1], &clients[2], &clients[3]);
    for client in [a, b] {
        ok(
            &app,
            &token,
            &format!("/api/groups/{gid}/members"),
            json!({"client_id": client}),
        )
        .await;
    }
    let today = shared::time::today();
    let lesson_on = |day: chrono::NaiveDate| json!({"group_id": gid, "starts_at": format!("{day}T18:00:00+03:00"), "duration_min": 60});
    // A single lesson expects the group's active members…
    let tomorrow = ok(
        &app,
        &token,
        "/api/lessons",
        lesson_on(today + Duration::days(1)),
    )
    .await;
    assert_eq!(
        sheet(&app, &token, &tomorrow).await,
        vec![
            ("Антонова Ольга".into(), true, Value::Null),
            ("Борисова Ольга".into(), true, Value::Null),
        ]
    );
    // …on the lesson's day: members who joined today were not members yesterday.
    let yesterday = ok(
        &app,
        &token,
        "/api/lessons",
        lesson_on(today - Duration::days(1)),
    )
    .await;
    assert!(sheet(&app, &token, &yesterday).await.is_empty());

    // The group is full: a third client waits and is not expected.
    let waiting = ok(
        &app,
        &token,
        &format!("/api/groups/{gid}/members"),
        json!({"client_id": c}),
    )
    .await;
    assert_eq!(waiting["status"], "waitlist");
    assert_eq!(sheet(&app, &token, &tomorrow).await.len(), 2);

    // A leaves today: off tomorrow's roster; C takes the seat and joins it.
    let res = app
        .http
        .delete(format!("{}/api/groups/{gid}/members/{a}", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let left: Value = res.json().await.unwrap();
    assert_eq!(left["promoted_from_waitlist"].as_str(), Some(c.as_str()));
    assert_eq!(
        sheet(&app, &token, &tomorrow).await,
        vec![
            ("Борисова Ольга".into(), true, Value::Null),
            ("Волкова Ольга".into(), true, Value::Null),
        ]
    );

    // Marks show next to the roster; a trial visitor appears too, not expected.
    let res = app
        .http
        .put(format!(
            "{}/api/lessons/{}/attendance",
            app.base,
            tomorrow["id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .json(&json!({"marks": [{"client_id": b, "mark": "present"},
                                {"client_id": d, "mark": "trial"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let put: Value = res.json().await.unwrap();
    assert_eq!(put["total"], 3, "{put}");
    assert_eq!(
        sheet(&app, &token, &tomorrow).await,
        vec![
            ("Борисова Ольга".into(), true, json!("present")),
            ("Волкова Ольга".into(), true, Value::Null),
            ("Гусева Ольга".into(), false, json!("trial")),
        ]
    );

    // Leaving never removes someone already marked (the record of the lesson stays).
    let res = app
        .http
        .delete(format!("{}/api/groups/{gid}/members/{b}", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let names: Vec<String> = sheet(&app, &token, &tomorrow)
        .await
        .into_iter()
        .map(|l| l.0)
        .collect();
    assert!(names.contains(&"Борисова Ольга".to_string()), "{names:?}");
    app.stop().await;
}
