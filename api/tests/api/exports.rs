//! Timesheet exports: the request enqueues, a real worker writes the .xlsx, the file is
//! downloaded over HTTP and read back cell by cell with calamine.
#![allow(clippy::unwrap_used)]

use std::{io::Cursor, sync::atomic::Ordering, time::Duration};

use crate::support::*;
use calamine::{Data, Reader, Xlsx};
use chrono::{Datelike, Duration as Days, NaiveDate, Utc, Weekday};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::time::Month;
use sqlx::PgPool;
use uuid::Uuid;
use worker::handlers::timesheet_export::workbook::CENTRE_NAME;
use worker::Registry;

const WAIT: Duration = Duration::from_secs(60);

fn nth_weekday(month: Month, weekday: Weekday, n: u32) -> NaiveDate {
    (1..=month.days())
        .map(|d| month.date(d))
        .filter(|d| d.weekday() == weekday)
        .nth(n as usize)
        .unwrap()
}

/// Two teachers (linked to user accounts), a group each, members, lessons and marks.
struct Fixture {
    month: Month,
    painting: Uuid,
    ceramics: Uuid,
    teacher1: (Uuid, String),
    teacher2: (Uuid, String),
    monday1: NaiveDate,
    monday2: NaiveDate,
    saturday: NaiveDate,
}

async fn teacher(db: &PgPool, user: Uuid, name: &str) -> Uuid {
    sqlx::query_scalar("insert into teachers (user_id, full_name) values ($1, $2) returning id")
        .bind(user)
        .bind(name)
        .fetch_one(db)
        .await
        .unwrap()
}

async fn group(db: &PgPool, name: &str, teacher: Uuid) -> Uuid {
    sqlx::query_scalar(
        "insert into study_groups (name, teacher_id, capacity) values ($1, $2, 10) returning id",
    )
    .bind(name)
    .bind(teacher)
    .fetch_one(db)
    .await
    .unwrap()
}

async fn client(db: &PgPool, last: &str, first: &str) -> Uuid {
    sqlx::query_scalar("insert into clients (last_name, first_name) values ($1, $2) returning id")
        .bind(last)
        .bind(first)
        .fetch_one(db)
        .await
        .unwrap()
}

/// A lesson at 15:00 Moscow on `day`, in the fixture's own room.
async fn lesson(db: &PgPool, group: Uuid, teacher: Uuid, day: NaiveDate, status: &str) -> Uuid {
    sqlx::query_scalar(
        "insert into lessons (kind, group_id, teacher_id, room_id, starts_at, ends_at, status)
         values ('lesson', $1, $2,
                 (select id from rooms where name = 'Тестовая студия'),
                 ($3::date + time '15:00') at time zone 'Europe/Moscow',
                 ($3::date + time '16:30') at time zone 'Europe/Moscow', $4)
         returning id",
    )
    .bind(group)
    .bind(teacher)
    .bind(day)
    .bind(status)
    .fetch_one(db)
    .await
    .unwrap()
}

async fn mark(db: &PgPool, lesson: Uuid, client: Uuid, mark: &str) {
    sqlx::query("insert into attendance (lesson_id, client_id, mark) values ($1, $2, $3)")
        .bind(lesson)
        .bind(client)
        .bind(mark)
        .execute(db)
        .await
        .unwrap();
}

async fn fixture(app: &TestApp) -> Fixture {
    let db = &app.db;
    let month = last_month();
    let teacher1 = app.user("teacher").await;
    let teacher2 = app.user("teacher").await;
    sqlx::query("insert into rooms (name, capacity) values ('Тестовая студия', 12)")
        .execute(db)
        .await
        .unwrap();
    let t1 = teacher(db, teacher1.0, "Репина Ирина Ильинична").await;
    let t2 = teacher(db, teacher2.0, "Глинкин Михаил").await;
    let painting = group(db, "Живопись", t1).await;
    let ceramics = group(db, "Керамика", t2).await;
    let anna = client(db, "Андреева", "Анна").await;
    let boris = client(db, "Борисов", "Борис").await;
    let vera = client(db, "Волкова", "Вера").await;
    let dmitry = client(db, "Дмитриев", "Дмитрий").await; // a trial visitor, not a member
    for c in [anna, boris, vera] {
        sqlx::query(
            "insert into group_members (group_id, client_id, status, joined_on)
             values ($1, $2, 'active', $3)",
        )
        .bind(painting)
        .bind(c)
        .bind(month.first_day() - Days::days(30))
        .execute(db)
        .await
        .unwrap();
    }
    let monday1 = nth_weekday(month, Weekday::Mon, 0);
    let monday2 = nth_weekday(month, Weekday::Mon, 1);
    let saturday = nth_weekday(month, Weekday::Sat, 0);
    let l1 = lesson(db, painting, t1, monday1, "held").await;
    let l2 = lesson(db, painting, t1, monday2, "held").await;
    let l3 = lesson(db, painting, t1, saturday, "held").await;
    // Cancelled: its day is not a lesson day and its mark counts for nothing.
    let cancelled = lesson(db, painting, t1, monday1 + Days::days(1), "cancelled").await;
    mark(db, cancelled, anna, "present").await;
    for (l, c, m) in [
        (l1, anna, "present"),
        (l1, boris, "absent"),
        (l1, vera, "excused"),
        (l2, anna, "present"),
        (l2, boris, "present"),
        (l2, vera, "absent"),
        (l2, dmitry, "trial"),
        (l3, anna, "free"),
    ] {
        mark(db, l, c, m).await;
    }
    Fixture {
        month,
        painting,
        ceramics,
        teacher1,
        teacher2,
        monday1,
        monday2,
        saturday,
    }
}

async fn export(app: &TestApp, token: &str, body: Value) -> String {
    let res = app.post(token, "/api/exports/timesheets", body).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let accepted: Value = res.json().await.unwrap();
    let id = accepted["job_id"].as_str().unwrap().to_string();
    assert_eq!(accepted["status_url"], format!("/api/jobs/{id}"));
    id
}

async fn download(app: &TestApp, token: &str, id: &str) -> Xlsx<Cursor<Vec<u8>>> {
    let res = app.get(token, &format!("/api/jobs/{id}/artifact")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = res.bytes().await.unwrap().to_vec();
    Xlsx::new(Cursor::new(bytes)).unwrap()
}

fn s(v: &str) -> Data {
    Data::String(v.to_string())
}

fn n(v: f64) -> Data {
    Data::Float(v)
}

fn cell(range: &calamine::Range<Data>, row: u32, col: u32) -> Data {
    range.get_value((row, col)).cloned().unwrap_or(Data::Empty)
}

fn registry() -> Registry {
    Registry::production(30, &worker::clients::Integrations::none())
}

#[sqlx::test(migrations = false)]
async fn the_exported_timesheet_matches_the_attendance_cell_by_cell(db: PgPool) {
    let app = TestApp::spawn(db, registry()).await;
    let f = fixture(&app).await;
    let (_, manager) = app.user("manager").await;
    let id = export(
        &app,
        &manager,
        json!({"month": f.month.key(), "group_ids": [f.painting]}),
    )
    .await;
    let done = app.wait_terminal(&manager, &id, WAIT).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["progress"]["percent"], 100);
    assert_eq!(done["result"]["groups"], 1);
    assert_eq!(done["result"]["members"], 4);
    assert_eq!(done["result"]["lessons"], 3);
    let file_name = format!("tabel_{}.xlsx", f.month.key());
    assert_eq!(done["result"]["file_name"], file_name.as_str());
    assert!(
        done["artifact_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("/api/jobs/{id}/artifact?sig=")),
        "{done}"
    );
    // The progress as written to the ledger, replayed by the SSE stream (which ends by itself).
    let res = app.get(&manager, &format!("/api/jobs/{id}/events")).await;
    let sse = tokio::time::timeout(WAIT, res.text())
        .await
        .unwrap()
        .unwrap();
    let progress: Vec<Value> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).unwrap()["progress"].clone())
        .collect();
    for (percent, message) in [
        (90, "записано групп: 1 из 1"),
        (90, "записано групп: 1 из 1; сжатие"),
    ] {
        assert!(
            progress.contains(&json!({"percent": percent, "message": message})),
            "{progress:?}"
        );
    }

    // The download's headers.
    let res = app.get(&manager, &format!("/api/jobs/{id}/artifact")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let disposition = res.headers()["content-disposition"].to_str().unwrap();
    assert!(
        disposition.contains(&format!("filename=\"{file_name}\""))
            && disposition.contains(&format!("filename*=UTF-8''{file_name}")),
        "{disposition}"
    );
    let length: usize = res.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(length, res.bytes().await.unwrap().len());

    let mut book = download(&app, &manager, &id).await;
    assert_eq!(book.sheet_names(), vec!["Сводка", "Живопись"]);

    let sheet = book.worksheet_range("Живопись").unwrap();
    // Header block.
    assert_eq!(cell(&sheet, 0, 0), s("ТАБЕЛЬ учёта посещаемости занятий"));
    assert_eq!(cell(&sheet, 1, 1), s("Учреждение"));
    assert_eq!(cell(&sheet, 1, 2), s(CENTRE_NAME));
    assert_eq!(cell(&sheet, 2, 2), s("Живопись"));
    assert_eq!(cell(&sheet, 3, 1), s("Преподаватель"));
    assert_eq!(cell(&sheet, 3, 2), s("Репина Ирина Ильинична"));
    assert_eq!(cell(&sheet, 4, 2), s(&f.month.title()));
    // Column headers: day numbers and weekdays, then the totals.
    let days = f.month.days();
    let col = |d: NaiveDate| 1 + d.day();
    let totals = 2 + days;
    assert_eq!(cell(&sheet, 6, 0), s("№"));
    assert_eq!(cell(&sheet, 6, 2), n(1.0));
    assert_eq!(cell(&sheet, 6, 1 + days), n(f64::from(days)));
    assert_eq!(cell(&sheet, 7, col(f.monday1)), s("Пн"));
    assert_eq!(cell(&sheet, 7, col(f.saturday)), s("Сб"));
    assert_eq!(cell(&sheet, 6, totals), s("Посещено"));
    assert_eq!(cell(&sheet, 6, totals + 1), s("Пропущено всего"));
    assert_eq!(
        cell(&sheet, 6, totals + 2),
        s("в т. ч. по уважительной причине")
    );

    // Rows by name; the trial visitor is listed too.
    let names: Vec<Data> = (8..12).map(|r| cell(&sheet, r, 1)).collect();
    assert_eq!(
        names,
        vec![
            s("Андреева Анна"),
            s("Борисов Борис"),
            s("Волкова Вера"),
            s("Дмитриев Дмитрий")
        ]
    );
    // Per row: the marks by day, then visits / absences / of which excused.
    type Row<'a> = (&'a [(NaiveDate, &'a str)], [f64; 3]);
    let expected: [Row; 4] = [
        (
            &[(f.monday1, "+"), (f.monday2, "+"), (f.saturday, "+")],
            [3.0, 0.0, 0.0],
        ),
        (&[(f.monday1, "Н"), (f.monday2, "+")], [1.0, 1.0, 0.0]),
        (&[(f.monday1, "У"), (f.monday2, "Н")], [0.0, 2.0, 1.0]),
        (&[(f.monday2, "+")], [1.0, 0.0, 0.0]),
    ];
    let sunday = nth_weekday(f.month, Weekday::Sun, 1);
    let tuesday = f.monday1 + Days::days(1); // only a cancelled lesson that day
    for (i, (marks, sums)) in expected.iter().enumerate() {
        let row = 8 + i as u32;
        assert_eq!(cell(&sheet, row, 0), n((i + 1) as f64));
        for (day, symbol) in *marks {
            assert_eq!(cell(&sheet, row, col(*day)), s(symbol), "row {row}, {day}");
        }
        let marked: Vec<NaiveDate> = marks.iter().map(|(d, _)| *d).collect();
        for lesson_day in [f.monday1, f.monday2, f.saturday] {
            if !marked.contains(&lesson_day) {
                assert_eq!(cell(&sheet, row, col(lesson_day)), Data::Empty);
            }
        }
        assert_eq!(cell(&sheet, row, col(sunday)), s("В"), "weekend, row {row}");
        assert_eq!(cell(&sheet, row, col(tuesday)), Data::Empty, "row {row}");
        for (k, v) in sums.iter().enumerate() {
            assert_eq!(cell(&sheet, row, totals + k as u32), n(*v), "row {row}");
        }
    }
    // Per-day totals: clients present.
    assert_eq!(cell(&sheet, 12, 1), s("Присутствовало"));
    assert_eq!(cell(&sheet, 12, col(f.monday1)), n(1.0));
    assert_eq!(cell(&sheet, 12, col(f.monday2)), n(3.0));
    assert_eq!(cell(&sheet, 12, col(f.saturday)), n(1.0));
    assert_eq!(cell(&sheet, 12, col(tuesday)), Data::Empty);
    assert_eq!(cell(&sheet, 12, totals), n(5.0));
    assert_eq!(cell(&sheet, 12, totals + 1), n(3.0));
    assert_eq!(cell(&sheet, 12, totals + 2), n(1.0));

    let summary = book.worksheet_range("Сводка").unwrap();
    assert_eq!(cell(&summary, 2, 1), s(&f.month.title()));
    let row: Vec<Data> = (0..8).map(|c| cell(&summary, 6, c)).collect();
    assert_eq!(
        row,
        vec![
            s("Живопись"),
            s("Репина Ирина Ильинична"),
            n(4.0),
            n(3.0),
            n(5.0),
            n(3.0),
            n(1.0),
            n(0.625)
        ]
    );
    assert_eq!(cell(&summary, 7, 0), s("Итого"));
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn teachers_export_only_their_own_groups_and_download_only_their_own_files(db: PgPool) {
    let app = TestApp::spawn(db, registry()).await;
    let f = fixture(&app).await;
    let (_, teacher1) = &f.teacher1;
    let (_, teacher2) = &f.teacher2;
    let month = f.month.key();

    let res = app
        .post(
            teacher1,
            "/api/exports/timesheets",
            json!({"month": month, "group_ids": [f.ceramics]}),
        )
        .await;
    let error = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        error["fields"]["group_ids"]
            .as_str()
            .unwrap()
            .contains(&f.ceramics.to_string()),
        "{error}"
    );
    let t2: Uuid = sqlx::query_scalar("select teacher_id from study_groups where id = $1")
        .bind(f.ceramics)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let res = app
        .post(
            teacher1,
            "/api/exports/timesheets",
            json!({"month": month, "teacher_id": t2}),
        )
        .await;
    let error = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(error["fields"]["teacher_id"].is_string(), "{error}");

    // All of a teacher's groups: only their own.
    let id = export(&app, teacher1, json!({"month": month})).await;
    let done = app.wait_terminal(teacher1, &id, WAIT).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let book = download(&app, teacher1, &id).await;
    assert_eq!(book.sheet_names(), vec!["Сводка", "Живопись"]);

    // Someone else's file: not found, for another teacher and for a manager alike.
    let (_, manager) = app.user("manager").await;
    for token in [teacher2, &manager] {
        let res = app.get(token, &format!("/api/jobs/{id}/artifact")).await;
        error_body(res, StatusCode::NOT_FOUND).await;
    }
    let (_, admin) = app.user("admin").await;
    download(&app, &admin, &id).await;

    // A teacher who left (record inactive, login still open) exports nothing.
    sqlx::query("update teachers set active = false where id = $1")
        .bind(t2)
        .execute(&app.db)
        .await
        .unwrap();
    let res = app
        .post(teacher2, "/api/exports/timesheets", json!({"month": month}))
        .await;
    error_body(res, StatusCode::FORBIDDEN).await;
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn bad_export_requests_are_422_naming_the_field(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let (_, manager) = app.user("manager").await;
    let today = Utc::now().with_timezone(&shared::time::MOSCOW).date_naive();
    let far_back = Month::of(today - Days::days(31 * 25)).key();
    let ahead = Month::of(today).next().next().key();
    let unknown = Uuid::new_v4();
    for (body, field) in [
        (json!({"month": "2026-13"}), "month"),
        (json!({"month": "октябрь"}), "month"),
        (json!({"month": far_back}), "month"),
        (json!({"month": ahead}), "month"),
        (json!({}), "month"),
        (
            json!({"month": last_month().key(), "group_ids": [unknown]}),
            "group_ids",
        ),
        (
            json!({"month": last_month().key(), "group_ids": []}),
            "group_ids",
        ),
        (
            json!({"month": last_month().key(), "teacher_id": unknown}),
            "teacher_id",
        ),
        (
            json!({"month": last_month().key(), "group_ids": "all"}),
            "group_ids",
        ),
        (
            json!({"month": last_month().key(), "format": "pdf"}),
            "format",
        ),
    ] {
        let res = app
            .post(&manager, "/api/exports/timesheets", body.clone())
            .await;
        let error = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(error["fields"][field].is_string(), "{body}: {error}");
    }
    // Counted as sent (the schema's maxItems), though all are one existing group.
    let teacher = ok(
        &app,
        &manager,
        "/api/teachers",
        json!({"full_name": "Олег"}),
    )
    .await;
    let group = ok(
        &app,
        &manager,
        "/api/groups",
        json!({"name": "Гитара", "teacher_id": teacher["id"], "capacity": 8}),
    )
    .await;
    let res = app
        .post(
            &manager,
            "/api/exports/timesheets",
            json!({"month": last_month().key(), "group_ids": vec![&group["id"]; 1001]}),
        )
        .await;
    let error = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        error["fields"]["group_ids"], "at most 1000 groups",
        "{error}"
    );
    let jobs: i64 = sqlx::query_scalar("select count(*) from job_runs")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(jobs, 0, "nothing enqueued");
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn the_same_request_while_queued_returns_the_same_job(db: PgPool) {
    // No worker: the first job stays queued.
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let f = fixture(&app).await;
    let (_, manager) = app.user("manager").await;
    let (_, other) = app.user("manager").await;
    let month = f.month.key();
    let first = export(
        &app,
        &manager,
        json!({"month": month, "group_ids": [f.painting, f.ceramics]}),
    )
    .await;
    let again = export(
        &app,
        &manager,
        json!({"month": month, "group_ids": [f.ceramics, f.painting, f.ceramics]}),
    )
    .await;
    assert_eq!(first, again);
    let different = export(&app, &manager, json!({"month": month})).await;
    assert_ne!(first, different);
    let someone_else = export(
        &app,
        &other,
        json!({"month": month, "group_ids": [f.painting, f.ceramics]}),
    )
    .await;
    assert_ne!(first, someone_else);
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn a_month_without_lessons_exports_a_valid_file_saying_so(db: PgPool) {
    let app = TestApp::spawn(db, registry()).await;
    let f = fixture(&app).await;
    let (_, manager) = app.user("manager").await;
    let empty = Month::of(f.month.first_day() - Days::days(100)).key();
    let id = export(&app, &manager, json!({"month": empty})).await;
    let done = app.wait_terminal(&manager, &id, WAIT).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["result"]["lessons"], 0);
    // "Your export is ready": one e-mail notice to the user who asked, keyed by the job.
    let (user, channel, template): (Option<Uuid>, String, String) =
        sqlx::query_as("select user_id, channel, template from notifications where dedup_key = $1")
            .bind(format!("export_ready:{id}"))
            .fetch_one(&app.db)
            .await
            .unwrap();
    let manager_id: Uuid = sqlx::query_scalar("select requested_by from job_runs where id = $1")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(
        (user, channel.as_str(), template.as_str()),
        (Some(manager_id), "email", "export_ready")
    );
    let mut book = download(&app, &manager, &id).await;
    assert_eq!(book.sheet_names(), vec!["Сводка", "Живопись", "Керамика"]);
    let summary = book.worksheet_range("Сводка").unwrap();
    assert_eq!(cell(&summary, 10, 0), s("В этом месяце занятий не было."));
    let sheet = book.worksheet_range("Живопись").unwrap();
    // The members joined later: nobody to list that month.
    assert_eq!(cell(&sheet, 8, 1), s("Нет участников"));
    assert_eq!(cell(&sheet, 9, 1), s("Присутствовало"));
    assert_eq!(cell(&sheet, 11, 1), s("В этом месяце занятий не было."));

    // No groups at all in scope: still a file, saying so.
    let (teacher_user, teacher) = app.user("teacher").await;
    teacher_linked(&app.db, teacher_user).await;
    let id = export(&app, &teacher, json!({"month": empty})).await;
    let done = app.wait_terminal(&teacher, &id, WAIT).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let mut book = download(&app, &teacher, &id).await;
    assert_eq!(book.sheet_names(), vec!["Сводка"]);
    let summary = book.worksheet_range("Сводка").unwrap();
    assert_eq!(cell(&summary, 8, 0), s("Нет групп для табеля."));
    app.stop().await;
}

async fn teacher_linked(db: &PgPool, user: Uuid) -> Uuid {
    teacher(db, user, "Новый Преподаватель").await
}

#[sqlx::test(migrations = false)]
async fn cancelling_a_running_export_stops_it_between_groups_without_a_file(db: PgPool) {
    let app = TestApp::spawn(db.clone(), registry()).await;
    api::seed::seed_demo(&db).await.unwrap();
    let (_, manager) = app.user("manager").await;
    let month = Month::of(Utc::now().with_timezone(&shared::time::MOSCOW).date_naive());
    // Hold the export inside its data load (deterministically running) by locking a table it
    // reads; cancel; let it go. Its first checkpoint comes after the first group: it must stop
    // there, between group 1 and group 2, whatever the timing.
    let mut lock = db.begin().await.unwrap();
    sqlx::query("lock table attendance in access exclusive mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    let id = export(&app, &manager, json!({"month": month.key()})).await;
    app.wait_running(&manager, &id).await;
    let res = app
        .post(&manager, &format!("/api/jobs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(
        res.status(),
        StatusCode::ACCEPTED,
        "a running job stops at a checkpoint"
    );
    lock.rollback().await.unwrap();

    let done = app.wait_terminal(&manager, &id, WAIT).await;
    assert_eq!(done["state"], "cancelled", "{done}");
    assert_eq!(done["progress"]["percent"], 10, "{done}");
    assert_eq!(
        done["progress"]["message"], "записано групп: 1 из 300",
        "{done}"
    );
    assert_eq!(done["artifact_url"], Value::Null);
    let res = app.get(&manager, &format!("/api/jobs/{id}/artifact")).await;
    error_body(res, StatusCode::NOT_FOUND).await;
    let files: i64 = sqlx::query_scalar("select count(*) from artifacts")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(files, 0);
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn loading_the_data_takes_four_queries_whatever_the_number_of_groups(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    api::seed::seed_demo(&db).await.unwrap();
    let f = fixture(&app).await;
    let (count, _guard) = count_statements();
    for groups in [
        Some(vec![f.painting]),
        Some(vec![f.painting, f.ceramics]),
        None,
    ] {
        let before = count.load(Ordering::SeqCst);
        let sheet = worker::handlers::timesheet_export::load(&db, f.month, groups.as_deref(), None)
            .await
            .unwrap();
        assert_eq!(count.load(Ordering::SeqCst) - before, 4, "{groups:?}");
        assert!(!sheet.groups.is_empty());
        if groups.is_none() {
            assert!(sheet.groups.len() >= 300, "{}", sheet.groups.len());
        }
    }
    app.stop().await;
}
