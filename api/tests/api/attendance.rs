//! Attendance charges one visit of one valid subscription in the mark's transaction:
//! idempotent re-send, reversal, unpaid visits, FIFO choice, concurrency, lesson cancel,
//! teacher permissions and bad input.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

struct Centre {
    token: String,
    teacher_token: String,
    lesson: String,
    plan: String,
}

fn moscow_today() -> chrono::NaiveDate {
    Utc::now().with_timezone(&shared::time::MOSCOW).date_naive()
}

/// A group taught by a teacher with a login, a lesson today at 18:00 Moscow, an 8-visit plan.
async fn centre(app: &TestApp) -> Centre {
    let (_, token) = app.user("manager").await;
    let (teacher_user, teacher_token) = app.user("teacher").await;
    let room = ok(
        app,
        &token,
        "/api/rooms",
        json!({"name": "Класс", "capacity": 20}),
    )
    .await;
    let teacher = ok(
        app,
        &token,
        "/api/teachers",
        json!({"full_name": "Мария Ивановна", "user_id": teacher_user}),
    )
    .await;
    let group = ok(app, &token, "/api/groups", json!({"name": "Живопись", "teacher_id": teacher["id"], "room_id": room["id"], "capacity": 30})).await;
    let lesson = ok(
        app,
        &token,
        "/api/lessons",
        json!({"group_id": group["id"], "starts_at": format!("{}T18:00:00+03:00", moscow_today()), "duration_min": 60}),
    )
    .await;
    let plan = ok(
        app,
        &token,
        "/api/subscription-plans",
        json!({"name": "8 занятий", "visits": 8, "validity_days": 30, "price": "4000.00", "group_ids": [group["id"]]}),
    )
    .await;
    Centre {
        token,
        teacher_token,
        lesson: lesson["id"].as_str().unwrap().into(),
        plan: plan["id"].as_str().unwrap().into(),
    }
}

async fn client(app: &TestApp, c: &Centre, name: &str) -> String {
    let v = ok(
        app,
        &c.token,
        "/api/clients",
        json!({"last_name": name, "first_name": "Тест"}),
    )
    .await;
    v["id"].as_str().unwrap().into()
}

/// Sells and pays a subscription starting `begins_days_ago` days ago; returns its id.
async fn paid_subscription(
    app: &TestApp,
    c: &Centre,
    client: &str,
    plan: &str,
    begins_days_ago: i64,
) -> String {
    let begins = moscow_today() - Duration::days(begins_days_ago);
    let sale = ok(
        app,
        &c.token,
        "/api/subscriptions",
        json!({"client_id": client, "plan_id": plan, "begins_on": begins}),
    )
    .await;
    ok(
        app,
        &c.token,
        "/api/payments",
        json!({"invoice_id": sale["invoice"]["id"], "amount": "4000.00", "method": "card"}),
    )
    .await;
    sale["subscription"]["id"].as_str().unwrap().into()
}

async fn used(db: &PgPool, subscription: &str) -> i32 {
    sqlx::query_scalar("select visits_used from subscriptions where id = $1")
        .bind(Uuid::parse_str(subscription).unwrap())
        .fetch_one(db)
        .await
        .unwrap()
}

async fn mark(app: &TestApp, token: &str, lesson: &str, marks: Value) -> reqwest::Response {
    app.http
        .put(format!("{}/api/lessons/{lesson}/attendance", app.base))
        .bearer_auth(token)
        .json(&json!({"marks": marks}))
        .send()
        .await
        .unwrap()
}

async fn marked(app: &TestApp, token: &str, lesson: &str, marks: Value) -> Value {
    let res = mark(app, token, lesson, marks).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

#[sqlx::test(migrations = false)]
async fn present_charges_one_visit_resend_is_idempotent_and_absent_gives_it_back(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let c = centre(&app).await;
    let anna = client(&app, &c, "Анна").await;
    let boris = client(&app, &c, "Борис").await;
    let sub = paid_subscription(&app, &c, &anna, &c.plan, 1).await;

    let res = marked(
        &app,
        &c.token,
        &c.lesson,
        json!([{"client_id": anna, "mark": "present"}, {"client_id": boris, "mark": "present"}]),
    )
    .await;
    let by_client = |v: &Value, id: &str| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["client_id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_client(&res, &anna)["subscription_id"], sub.as_str());
    assert_eq!(by_client(&res, &anna)["unpaid"], false);
    // No subscription: the mark is saved, the visit is unpaid.
    assert_eq!(by_client(&res, &boris)["mark"], "present");
    assert_eq!(by_client(&res, &boris)["unpaid"], true);
    assert_eq!(used(&db, &sub).await, 1);

    marked(
        &app,
        &c.token,
        &c.lesson,
        json!([{"client_id": anna, "mark": "present"}]),
    )
    .await;
    assert_eq!(
        used(&db, &sub).await,
        1,
        "re-sending the same mark charges nothing"
    );

    let res = marked(
        &app,
        &c.token,
        &c.lesson,
        json!([{"client_id": anna, "mark": "absent"}]),
    )
    .await;
    assert_eq!(by_client(&res, &anna)["subscription_id"], Value::Null);
    assert_eq!(
        used(&db, &sub).await,
        0,
        "present → absent gives the visit back"
    );
    marked(
        &app,
        &c.token,
        &c.lesson,
        json!([{"client_id": anna, "mark": "free"}]),
    )
    .await;
    assert_eq!(used(&db, &sub).await, 0, "a free visit charges nothing");
    marked(
        &app,
        &c.token,
        &c.lesson,
        json!([{"client_id": anna, "mark": "present"}]),
    )
    .await;
    assert_eq!(used(&db, &sub).await, 1);

    // Cancelling the lesson gives every charged visit back.
    ok(
        &app,
        &c.token,
        &format!("/api/lessons/{}/cancel", c.lesson),
        json!({}),
    )
    .await;
    assert_eq!(used(&db, &sub).await, 0);
    let res = mark(
        &app,
        &c.token,
        &c.lesson,
        json!([{"client_id": anna, "mark": "present"}]),
    )
    .await;
    error_body(res, StatusCode::CONFLICT).await;
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn the_subscription_ending_first_is_charged_and_invalid_ones_never(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let c = centre(&app).await;
    let anna = client(&app, &c, "Анна").await;
    let later = paid_subscription(&app, &c, &anna, &c.plan, 1).await;
    let sooner = paid_subscription(&app, &c, &anna, &c.plan, 10).await;
    // Not paid (inactive) and for another group: never charged.
    let other_group = ok(&app, &c.token, "/api/groups", json!({"name": "Лепка", "teacher_id": sqlx::query_scalar::<_, Uuid>("select teacher_id from study_groups limit 1").fetch_one(&db).await.unwrap(), "capacity": 5})).await;
    let other_plan = ok(&app, &c.token, "/api/subscription-plans", json!({"name": "Лепка 4", "visits": 4, "validity_days": 60, "price": "4000.00", "group_ids": [other_group["id"]]})).await;
    let other = paid_subscription(&app, &c, &anna, other_plan["id"].as_str().unwrap(), 20).await;
    ok(&app, &c.token, "/api/subscriptions", json!({"client_id": anna, "plan_id": c.plan, "begins_on": moscow_today() - Duration::days(25)})).await;

    marked(
        &app,
        &c.token,
        &c.lesson,
        json!([{"client_id": anna, "mark": "present"}]),
    )
    .await;
    assert_eq!(
        (
            used(&db, &sooner).await,
            used(&db, &later).await,
            used(&db, &other).await
        ),
        (1, 0, 0)
    );
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn twenty_concurrent_marks_of_the_same_client_charge_one_visit(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let c = centre(&app).await;
    let anna = client(&app, &c, "Анна").await;
    let sub = paid_subscription(&app, &c, &anna, &c.plan, 1).await;
    let requests = (0..20).map(|_| {
        mark(
            &app,
            &c.token,
            &c.lesson,
            json!([{"client_id": anna, "mark": "present"}]),
        )
    });
    for res in futures::future::join_all(requests).await {
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(used(&db, &sub).await, 1);
    app.stop().await;
}

/// Enrols `client` in the centre's group since 30 days ago; returns the group and its teacher.
async fn enrolled(app: &TestApp, c: &Centre, db: &PgPool, client: &str) -> (Uuid, Uuid) {
    let (group, teacher): (Uuid, Uuid) =
        sqlx::query_as("select id, teacher_id from study_groups where name = 'Живопись'")
            .fetch_one(db)
            .await
            .unwrap();
    ok(
        app,
        &c.token,
        &format!("/api/groups/{group}/members"),
        json!({"client_id": client, "joined_on": moscow_today() - Duration::days(30)}),
    )
    .await;
    (group, teacher)
}

/// A lesson of the centre's group starting `hours_from_now` hours from now.
async fn lesson_at(app: &TestApp, c: &Centre, db: &PgPool, hours_from_now: i64) -> String {
    let group: Uuid = sqlx::query_scalar("select id from study_groups where name = 'Живопись'")
        .fetch_one(db)
        .await
        .unwrap();
    let starts = (Utc::now() + Duration::hours(hours_from_now)).to_rfc3339();
    let lesson = ok(
        app,
        &c.token,
        "/api/lessons",
        json!({"group_id": group, "starts_at": starts, "duration_min": 60}),
    )
    .await;
    lesson["id"].as_str().unwrap().into()
}

/// A teacher marks only their own lessons, only the lesson's roster (a visitor only as
/// `trial`), only from its start to seven days after; the office corrects at any time.
#[sqlx::test(migrations = false)]
async fn teachers_mark_their_rosters_within_the_window_and_bad_marks_are_named(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let c = centre(&app).await;
    let anna = client(&app, &c, "Анна").await;
    let bob = client(&app, &c, "Борис").await;
    enrolled(&app, &c, &db, &anna).await;
    // Lessons created after the enrolment expect Anna, started or not. The started one began
    // yesterday: a start two hours ago would clash with today's 18:00 lesson between 19:00
    // and 21:00 Moscow, whenever the test runs then.
    let started = lesson_at(&app, &c, &db, -26).await;
    let last_week = lesson_at(&app, &c, &db, -8 * 24).await;
    let tomorrow = lesson_at(&app, &c, &db, 26).await;

    marked(
        &app,
        &c.teacher_token,
        &started,
        json!([{"client_id": anna, "mark": "present"}]),
    )
    .await;
    let res = mark(
        &app,
        &c.teacher_token,
        &started,
        json!([{"client_id": anna, "mark": "present"}, {"client_id": bob, "mark": "present"}]),
    )
    .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        e["fields"]["marks[1].client_id"]
            .as_str()
            .unwrap()
            .starts_with("not on this lesson's roster"),
        "{e}"
    );
    // Boris is nobody's pupil: not even as a trial visitor (the teacher would learn his name).
    let res = mark(
        &app,
        &c.teacher_token,
        &started,
        json!([{"client_id": bob, "mark": "trial"}]),
    )
    .await;
    error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    // A pupil of another of her groups comes to try this one.
    let teacher: Uuid = sqlx::query_scalar("select id from teachers")
        .fetch_one(&db)
        .await
        .unwrap();
    let other_group = ok(
        &app,
        &c.token,
        "/api/groups",
        json!({"name": "Графика", "teacher_id": teacher, "capacity": 10}),
    )
    .await;
    ok(
        &app,
        &c.token,
        &format!(
            "/api/groups/{}/members",
            other_group["id"].as_str().unwrap()
        ),
        json!({"client_id": bob}),
    )
    .await;
    let sheet = marked(
        &app,
        &c.teacher_token,
        &started,
        json!([{"client_id": bob, "mark": "trial"}]),
    )
    .await;
    assert_eq!(sheet["total"], 2);
    // A visitor the office put on the sheet: the teacher re-sends the whole sheet.
    let carol = client(&app, &c, "Вера").await;
    marked(
        &app,
        &c.token,
        &started,
        json!([{"client_id": carol, "mark": "free"}]),
    )
    .await;
    let sheet = marked(
        &app,
        &c.teacher_token,
        &started,
        json!([{"client_id": anna, "mark": "present"}, {"client_id": bob, "mark": "trial"},
               {"client_id": carol, "mark": "free"}]),
    )
    .await;
    assert_eq!(sheet["total"], 3);
    for (lesson, says) in [(&tomorrow, "opens at"), (&last_week, "closed at")] {
        let res = mark(
            &app,
            &c.teacher_token,
            lesson,
            json!([{"client_id": anna, "mark": "present"}]),
        )
        .await;
        let e = error_body(res, StatusCode::CONFLICT).await;
        assert!(e["message"].as_str().unwrap().contains(says), "{e}");
    }
    // The office corrects any lesson, any client.
    marked(
        &app,
        &c.token,
        &last_week,
        json!([{"client_id": anna, "mark": "present"}, {"client_id": bob, "mark": "free"}]),
    )
    .await;
    // The teacher still reads last week's sheet (reading is not marking).
    let res = app
        .get(
            &c.teacher_token,
            &format!("/api/lessons/{last_week}/attendance"),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    let (_, stranger) = app.user("teacher").await;
    let res = mark(
        &app,
        &stranger,
        &started,
        json!([{"client_id": anna, "mark": "absent"}]),
    )
    .await;
    error_body(res, StatusCode::FORBIDDEN).await;

    let res = mark(
        &app,
        &c.token,
        &c.lesson,
        json!([{"client_id": anna, "mark": "here"}, {"client_id": anna, "mark": "absent"}]),
    )
    .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        e["fields"]["marks[0].mark"].is_string() && e["fields"]["marks[1].client_id"].is_string(),
        "{e}"
    );
    let res = mark(
        &app,
        &c.token,
        &c.lesson,
        json!([{"client_id": Uuid::new_v4(), "mark": "present"}]),
    )
    .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["marks"].is_string());
    let res = mark(
        &app,
        &c.token,
        &Uuid::new_v4().to_string(),
        json!([{"client_id": anna, "mark": "present"}]),
    )
    .await;
    error_body(res, StatusCode::NOT_FOUND).await;
    let marks: i64 = sqlx::query_scalar("select count(*) from attendance")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(marks, 5, "rejected requests wrote nothing");
    app.stop().await;
}

/// A group's new teacher takes over its coming lessons (and marks them) while the old one
/// keeps the lessons they gave; a clash with the new teacher's timetable refuses the change;
/// no teacher opens an archived group's sheet; a teacher never turns a visitor into a
/// charged visit.
#[sqlx::test(migrations = false)]
async fn a_new_teacher_takes_over_the_coming_lessons_and_visitors_stay_visitors(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let c = centre(&app).await;
    let anna = client(&app, &c, "Анна").await;
    let bob = client(&app, &c, "Борис").await;
    let (group, maria) = enrolled(&app, &c, &db, &anna).await;
    let started = lesson_at(&app, &c, &db, -26).await;
    let coming = lesson_at(&app, &c, &db, 50).await;

    // The office put Boris on the sheet as a free visitor: the teacher may re-send that mark,
    // not turn it into a visit charged to whatever subscription he holds.
    marked(
        &app,
        &c.token,
        &started,
        json!([{"client_id": bob, "mark": "free"}]),
    )
    .await;
    let res = mark(
        &app,
        &c.teacher_token,
        &started,
        json!([{"client_id": anna, "mark": "present"}, {"client_id": bob, "mark": "present"}]),
    )
    .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["marks[1].client_id"].is_string(), "{e}");
    marked(
        &app,
        &c.teacher_token,
        &started,
        json!([{"client_id": anna, "mark": "present"}, {"client_id": bob, "mark": "free"}]),
    )
    .await;

    // Pyotr takes the group over.
    let (pyotr_user, pyotr_token) = app.user("teacher").await;
    let pyotr = ok(
        &app,
        &c.token,
        "/api/teachers",
        json!({"full_name": "Пётр Сергеевич", "user_id": pyotr_user}),
    )
    .await;
    let pyotr = pyotr["id"].as_str().unwrap().to_string();
    let res = app
        .patch(
            &c.token,
            &format!("/api/groups/{group}"),
            json!({"teacher_id": pyotr}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let teacher_of = |lesson: String| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, Uuid>("select teacher_id from lessons where id = $1::uuid")
                .bind(lesson)
                .fetch_one(&db)
                .await
                .unwrap()
                .to_string()
        }
    };
    assert_eq!(teacher_of(coming.clone()).await, pyotr);
    assert_eq!(teacher_of(started.clone()).await, maria.to_string());
    let sheet = |token: String, lesson: String| {
        let app = &app;
        async move {
            app.get(&token, &format!("/api/lessons/{lesson}/attendance"))
                .await
                .status()
        }
    };
    assert_eq!(
        sheet(pyotr_token.clone(), coming.clone()).await,
        StatusCode::OK
    );
    assert_eq!(
        sheet(c.teacher_token.clone(), coming.clone()).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        sheet(c.teacher_token.clone(), started.clone()).await,
        StatusCode::OK,
        "Maria still reads the sheet of the lesson she gave"
    );

    // Maria now teaches another group at the time of the coming lesson: handing the group
    // back to her would double-book her, so nothing changes.
    let room = ok(
        &app,
        &c.token,
        "/api/rooms",
        json!({"name": "Мастерская", "capacity": 10}),
    )
    .await;
    let other = ok(
        &app,
        &c.token,
        "/api/groups",
        json!({"name": "Графика", "teacher_id": maria, "room_id": room["id"], "capacity": 10}),
    )
    .await;
    let coming_starts: chrono::DateTime<Utc> =
        sqlx::query_scalar("select starts_at from lessons where id = $1::uuid")
            .bind(&coming)
            .fetch_one(&db)
            .await
            .unwrap();
    ok(
        &app,
        &c.token,
        "/api/lessons",
        json!({"group_id": other["id"], "starts_at": coming_starts.to_rfc3339(), "duration_min": 60}),
    )
    .await;
    let res = app
        .patch(
            &c.token,
            &format!("/api/groups/{group}"),
            json!({"teacher_id": maria, "capacity": 5}),
        )
        .await;
    let e = error_body(res, StatusCode::CONFLICT).await;
    assert!(
        e["message"].as_str().unwrap().contains("new teacher"),
        "{e}"
    );
    let (teacher, capacity): (Uuid, i32) =
        sqlx::query_as("select teacher_id, capacity from study_groups where id = $1")
            .bind(group)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!((teacher.to_string(), capacity), (pyotr.clone(), 30));
    assert_eq!(teacher_of(coming.clone()).await, pyotr);

    // Archived, the group's sheets are the office's alone.
    let res = app
        .patch(
            &c.token,
            &format!("/api/groups/{group}"),
            json!({"status": "archived"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        sheet(pyotr_token, coming.clone()).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(sheet(c.token.clone(), coming).await, StatusCode::OK);
    app.stop().await;
}
