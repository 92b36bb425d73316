//! Bulk scheduling: the plan is validated by the api, expanded and written by a real worker.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use chrono::{Datelike, Duration as Days, NaiveDate, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;
use worker::Registry;

const WAIT: Duration = Duration::from_secs(60);

struct Centre {
    rooms: Vec<Uuid>,
    teachers: Vec<Uuid>,
    groups: Vec<Uuid>,
}

/// `n` rooms, teachers and groups (group i: teacher i, room i), 4 active members each plus one
/// on the waitlist.
async fn centre(db: &PgPool, n: usize) -> Centre {
    let mut c = Centre {
        rooms: vec![],
        teachers: vec![],
        groups: vec![],
    };
    for i in 0..n {
        let room: Uuid =
            sqlx::query_scalar("insert into rooms (name, capacity) values ($1, 20) returning id")
                .bind(format!("Зал {i}"))
                .fetch_one(db)
                .await
                .unwrap();
        let teacher: Uuid =
            sqlx::query_scalar("insert into teachers (full_name) values ($1) returning id")
                .bind(format!("Преподаватель {i}"))
                .fetch_one(db)
                .await
                .unwrap();
        let group: Uuid = sqlx::query_scalar(
            "insert into study_groups (name, teacher_id, room_id, capacity)
             values ($1, $2, $3, 10) returning id",
        )
        .bind(format!("Группа {i}"))
        .bind(teacher)
        .bind(room)
        .fetch_one(db)
        .await
        .unwrap();
        sqlx::query(
            "with c as (
                 insert into clients (last_name, first_name)
                 select 'Ученик', 'N' || g from generate_series(1, 5) g returning id
             )
             insert into group_members (group_id, client_id, status)
             select $1, id, case when row_number() over () = 5 then 'waitlist' else 'active' end
             from c",
        )
        .bind(group)
        .execute(db)
        .await
        .unwrap();
        c.rooms.push(room);
        c.teachers.push(teacher);
        c.groups.push(group);
    }
    c
}

/// The first and last day of next month (Moscow calendar).
fn next_month() -> (NaiveDate, NaiveDate) {
    let today = Utc::now().with_timezone(&shared::time::MOSCOW).date_naive();
    let first = (today.with_day(1).unwrap() + Days::days(32))
        .with_day(1)
        .unwrap();
    let last = (first + Days::days(32)).with_day(1).unwrap() - Days::days(1);
    (first, last)
}

fn entry(c: &Centre, i: usize, weekdays: &[u8], start: &str) -> Value {
    json!({"group_id": c.groups[i], "weekdays": weekdays, "start_time": start,
           "duration_min": 90, "room_id": c.rooms[i], "teacher_id": c.teachers[i]})
}

async fn run_plan(app: &TestApp, token: &str, plan: Value) -> Value {
    let res = app.post(token, "/api/schedules/bulk", plan).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let id = res.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = app.wait_terminal(token, &id, WAIT).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    done["result"].clone()
}

async fn count(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn a_month_of_three_groups_twice_a_week_lands_on_the_right_moscow_times_once(db: PgPool) {
    let app = TestApp::spawn(
        db.clone(),
        Registry::production(30, &worker::clients::Integrations::none()),
    )
    .await;
    let (_, token) = app.user("manager").await;
    let c = centre(&db, 3).await;
    let (from, to) = next_month();
    let holiday = (0..7)
        .map(|d| from + Days::days(d))
        .find(|d| d.weekday().number_from_monday() == 2)
        .unwrap(); // the first Tuesday
    let plan = json!({
        "from": from, "to": to, "holidays": [holiday],
        "entries": [entry(&c, 0, &[2, 4], "18:30"), entry(&c, 1, &[1, 3], "10:00"),
                    entry(&c, 2, &[6, 7], "21:00")],
    });
    let result = run_plan(&app, &token, plan.clone()).await;

    // The expected occurrences, computed here from the calendar.
    let mut expected: Vec<(Uuid, String)> = Vec::new();
    let mut day = from;
    while day <= to {
        let wd = day.weekday().number_from_monday();
        for (i, (days, utc)) in [
            (&[2u32, 4][..], "15:30:00"),
            (&[1, 3][..], "07:00:00"),
            (&[6, 7][..], "18:00:00"),
        ]
        .iter()
        .enumerate()
        {
            if days.contains(&wd) && day != holiday {
                expected.push((c.groups[i], format!("{day} {utc}+00")));
            }
        }
        day += Days::days(1);
    }
    expected.sort();
    let mut got: Vec<(Uuid, String)> = sqlx::query_as(
        "select group_id, to_char(starts_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00'
         from lessons where plan_id is not null",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    got.sort();
    assert_eq!(got, expected);
    let n = expected.len() as i64;
    assert_eq!(result["lessons_created"], n);
    assert_eq!(result["holidays_skipped"], 1);
    assert_eq!(result["clashes"], json!([]));
    // 90 minutes; 4 active members each (the waitlisted one is not enrolled).
    assert_eq!(
        count(&db, "select count(*) from lessons where plan_id is not null and ends_at - starts_at <> interval '90 minutes'").await,
        0
    );
    assert_eq!(result["enrolments_created"], n * 4);
    assert_eq!(
        count(&db, "select count(*) from lesson_enrolments").await,
        n * 4
    );

    // The same plan again (a retry of the same job): nothing new.
    let plan_id: Uuid =
        sqlx::query_scalar("select plan_id from lessons where plan_id is not null limit 1")
            .fetch_one(&db)
            .await
            .unwrap();
    let (user, _) = app.user("manager").await;
    let payload: jobs::kinds::scheduling::BulkSchedule = serde_json::from_value(json!({
        "plan_id": plan_id, "from": from, "to": to, "holidays": [holiday],
        "mode": "all_or_nothing", "dry_run": false,
        "entries": plan["entries"].as_array().unwrap().iter().map(|e| {
            let mut e = e.clone();
            e["start_time"] = json!(format!("{}:00", e["start_time"].as_str().unwrap()));
            e
        }).collect::<Vec<_>>(),
    }))
    .unwrap();
    let again = app.enqueue(user, payload).await;
    let (_, admin) = app.user("admin").await;
    let done = app.wait_terminal(&admin, &again, WAIT).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["result"]["lessons_created"], 0);
    assert_eq!(done["result"]["enrolments_created"], 0);
    // The re-run says what exists of the plan, whichever run wrote it.
    assert_eq!(done["result"]["plan_lessons"], n);
    assert_eq!(done["result"]["plan_enrolments"], n * 4);
    assert_eq!(
        done["result"]["clashes"],
        json!([]),
        "its own lessons are no clash"
    );
    assert_eq!(count(&db, "select count(*) from lessons").await, n);
    assert_eq!(
        count(&db, "select count(*) from lesson_enrolments").await,
        n * 4
    );
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn one_clash_stops_all_or_nothing_and_skip_conflicts_writes_the_rest(db: PgPool) {
    let app = TestApp::spawn(
        db.clone(),
        Registry::production(30, &worker::clients::Integrations::none()),
    )
    .await;
    let (_, token) = app.user("manager").await;
    let c = centre(&db, 2).await;
    let (from, _) = next_month();
    let to = from + Days::days(13); // two weeks: every weekday twice
    let monday = (0..7)
        .map(|d| from + Days::days(d))
        .find(|d| d.weekday().number_from_monday() == 1)
        .unwrap();
    // Another group's lesson already holds room 0 on the first Monday evening.
    let existing = app
        .post(
            &token,
            "/api/lessons",
            json!({"group_id": c.groups[1], "room_id": c.rooms[0],
                   "starts_at": format!("{monday}T19:00:00+03:00"), "duration_min": 60}),
        )
        .await;
    assert_eq!(existing.status(), StatusCode::CREATED);
    let existing: Value = existing.json().await.unwrap();
    let plan = |mode: &str| {
        json!({"from": from, "to": to, "mode": mode,
               "entries": [entry(&c, 0, &[1, 3], "18:30")]})
    };

    let result = run_plan(&app, &token, plan("all_or_nothing")).await;
    assert_eq!(result["lessons_created"], 0);
    let clashes = result["clashes"].as_array().unwrap();
    assert_eq!(clashes.len(), 1, "{result}");
    assert_eq!(clashes[0]["entry"], 0);
    assert_eq!(clashes[0]["room_id"], json!(c.rooms[0]));
    assert_eq!(clashes[0]["existing_lesson_id"], existing["id"]);
    assert_eq!(
        clashes[0]["starts_at"],
        format!("{monday}T15:30:00Z"),
        "{result}"
    );
    assert_eq!(
        count(&db, "select count(*) from lessons").await,
        1,
        "nothing written"
    );

    let result = run_plan(&app, &token, plan("skip_conflicts")).await;
    assert_eq!(result["lessons_created"], 3, "{result}");
    assert_eq!(result["clashes"].as_array().unwrap().len(), 1);
    assert_eq!(count(&db, "select count(*) from lessons").await, 4);

    // One clash rule: a single lesson on top of a planned one is refused by the same constraint.
    let wednesday = monday + Days::days(2);
    let res = app
        .post(
            &token,
            "/api/lessons",
            json!({"group_id": c.groups[1], "room_id": c.rooms[0],
                   "starts_at": format!("{wednesday}T19:00:00+03:00"), "duration_min": 60}),
        )
        .await;
    let error = error_body(res, StatusCode::CONFLICT).await;
    let planned: Uuid = sqlx::query_scalar(
        "select id from lessons where plan_id is not null and starts_at = $1::timestamptz",
    )
    .bind(format!("{wednesday}T15:30:00Z"))
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(error.to_string().contains(&planned.to_string()), "{error}");

    // A dry run computes and writes nothing.
    let dry = json!({"from": from + Days::days(14), "to": to + Days::days(14), "dry_run": true,
                     "entries": [entry(&c, 1, &[2], "12:00")]});
    let result = run_plan(&app, &token, dry).await;
    assert_eq!(result["dry_run"], true);
    assert_eq!(result["lessons_created"], 2);
    assert_eq!(result["enrolments_created"], 8);
    assert_eq!(count(&db, "select count(*) from lessons").await, 4);
    // Rosters: 3 planned lessons of group 0 and the single lesson of group 1, 4 members each.
    assert_eq!(
        count(&db, "select count(*) from lesson_enrolments").await,
        16
    );
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn clashes_inside_the_plan_are_reported(db: PgPool) {
    let app = TestApp::spawn(
        db.clone(),
        Registry::production(30, &worker::clients::Integrations::none()),
    )
    .await;
    let (_, token) = app.user("manager").await;
    let c = centre(&db, 2).await;
    let (from, _) = next_month();
    let to = from + Days::days(6);
    // Entry 1 puts group 1 into room 0 at an overlapping time on Wednesdays.
    let mut second = entry(&c, 1, &[3], "19:00");
    second["room_id"] = json!(c.rooms[0]);
    let plan = json!({"from": from, "to": to, "mode": "skip_conflicts",
                      "entries": [entry(&c, 0, &[3], "18:30"), second]});
    let result = run_plan(&app, &token, plan).await;
    let clashes = result["clashes"].as_array().unwrap();
    assert_eq!(clashes.len(), 1, "{result}");
    assert_eq!(clashes[0]["entry"], 1);
    assert_eq!(clashes[0]["with_entry"], 0);
    assert_eq!(clashes[0]["room_id"], json!(c.rooms[0]));
    assert_eq!(clashes[0]["existing_lesson_id"], Value::Null);
    assert_eq!(result["lessons_created"], 1, "the first entry is kept");
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn oversized_or_malformed_plans_are_422_naming_the_entry_and_field(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, token) = app.user("manager").await;
    let c = centre(&db, 1).await;
    let e = entry(&c, 0, &[1], "10:00");
    let many: Vec<Value> = (0..1001).map(|_| e.clone()).collect();
    let mut bad = e.clone();
    bad["weekdays"] = json!([0, 8]);
    bad["start_time"] = json!("25:00");
    let mut sloppy = e.clone();
    sloppy["start_time"] = json!(" 9:30");
    let mut late = e.clone();
    late["start_time"] = json!("23:00");
    late["duration_min"] = json!(90);
    let mut missing = e.clone();
    missing["room_id"] = json!(Uuid::new_v4());
    let mut eight_days = e.clone();
    eight_days["weekdays"] = json!([1, 2, 3, 4, 5, 6, 7, 1]);
    let holidays: Vec<String> = (0..367).map(|_| "2027-01-07".to_string()).collect();
    for (plan, fields) in [
        (
            json!({"from": "2027-01-01", "to": "2027-01-31", "holidays": holidays,
                   "entries": [e, eight_days]}),
            vec!["holidays", "entries[1].weekdays"],
        ),
        (
            json!({"from": "2027-01-01", "to": "2027-01-31", "entries": many}),
            vec!["entries"],
        ),
        (
            json!({"from": "2027-01-01", "to": "2028-12-31", "entries": [e]}),
            vec!["to"],
        ),
        (
            json!({"from": "2027-01-01", "to": "2027-01-31", "entries": [e, bad, late, missing]}),
            vec![
                "entries[1].weekdays",
                "entries[1].start_time",
                "entries[2].duration_min",
            ],
        ),
        (
            json!({"from": "2027-01-01", "to": "2027-01-31", "entries": [e, sloppy]}),
            vec!["entries[1].start_time"],
        ),
        (
            json!({"from": "2027-01-01", "to": "2027-01-31", "entries": [e, missing]}),
            vec!["entries[1].room_id"],
        ),
        (
            json!({"from": "2027-01-01", "to": "2027-01-31", "mode": "maybe", "entries": [e]}),
            vec!["mode"],
        ),
        (
            json!({"from": "2027-01-01", "to": "2027-01-31", "entries": []}),
            vec!["entries"],
        ),
        (json!({"from": "2027-01-01", "entries": [e]}), vec!["to"]),
    ] {
        let res = app.post(&token, "/api/schedules/bulk", plan).await;
        let error = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        for field in fields {
            assert!(error["fields"][field].is_string(), "{field}: {error}");
        }
    }
    let (_, teacher) = app.user("teacher").await;
    let res = app
        .post(
            &teacher,
            "/api/schedules/bulk",
            json!({"from": "2027-01-01", "to": "2027-01-31", "entries": [e]}),
        )
        .await;
    error_body(res, StatusCode::FORBIDDEN).await;
    assert_eq!(count(&db, "select count(*) from job_runs").await, 0);
    app.stop().await;
}
