//! The browser pages: a real headless Chromium logs in, orders a timesheet on «Мои задачи»,
//! watches it reach 100 % over SSE and downloads the file; an admin retries a failed job on
//! `/ops`; a manager is refused there. Plus the session rules over plain HTTP.
#![allow(clippy::unwrap_used)]

use std::{io::Cursor, time::Duration};

use calamine::{Reader, Xlsx};
use reqwest::{redirect::Policy, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;
use worker::Registry;

use crate::{support::*, webdriver::Browser};

const PASSWORD: &str = "correct horse battery";

async fn person(db: &PgPool, role: api::auth::Role) -> (Uuid, String) {
    let email = format!("{}-{}@artsvao.test", role.as_str(), Uuid::new_v4());
    let id = api::auth::upsert_user(db, &email, PASSWORD, role)
        .await
        .unwrap();
    (id, email)
}

/// Twelve groups of one teacher, three members each, eight held lessons each last month
/// with marks: enough groups for the export to report progress along the way.
async fn centre(db: &PgPool) -> Vec<String> {
    let month = last_month();
    sqlx::query(
        "with t as (insert into teachers (full_name) values ('Соколова Анна Петровна') returning id),
         r as (insert into rooms (name, capacity)
               select 'Мастерская ' || n, 12 from generate_series(1, 12) n returning id, name),
         g as (insert into study_groups (name, teacher_id, room_id, capacity)
               select 'Керамика — группа ' || lpad(split_part(r.name, ' ', 2), 2, '0'), t.id, r.id, 10
               from t, r
               returning id),
         c as (insert into clients (last_name, first_name, phone)
               select 'Орлов', 'Иван', '+7916' || lpad(n::text, 7, '0')
               from generate_series(1, 36) n returning id),
         m as (insert into group_members (group_id, client_id, status, joined_on)
               select g.id, c.id, 'active', $1
               from (select id, row_number() over (order by id) as k from g) g
               join (select id, row_number() over (order by id) as k from c) c
                 on (c.k - 1) / 3 + 1 = g.k
               returning group_id, client_id)
         select 1",
    )
    .bind(month.date(1))
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "insert into lessons (group_id, teacher_id, room_id, starts_at, ends_at, status)
         select g.id, g.teacher_id, g.room_id,
                (d + time '08:00' + g.k * interval '1 hour') at time zone 'Europe/Moscow',
                (d + time '08:50' + g.k * interval '1 hour') at time zone 'Europe/Moscow', 'held'
         from (select *, row_number() over (order by name) as k from study_groups) g,
              generate_series($1::date, $1::date + 27, interval '4 days') d",
    )
    .bind(month.date(1))
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "insert into attendance (lesson_id, client_id, mark)
         select l.id, m.client_id, case when abs(hashtext(l.id::text || m.client_id::text)) % 5 = 0
                                        then 'absent' else 'present' end
         from lessons l join group_members m on m.group_id = l.group_id",
    )
    .execute(db)
    .await
    .unwrap();
    sqlx::query_scalar("select name from study_groups order by name")
        .fetch_all(db)
        .await
        .unwrap()
}

async fn log_in(browser: &Browser, base: &str, email: &str) {
    browser.goto(&format!("{base}/jobs")).await;
    assert!(
        browser.url().await.ends_with("/login"),
        "no session → the login page"
    );
    browser.type_into("#email", email).await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("#login").await;
    let landed = browser
        .wait_for(
            "landing on /jobs",
            Duration::from_secs(10),
            "return location.pathname === '/jobs'",
        )
        .await;
    assert_eq!(landed, json!(true));
}

#[sqlx::test(migrations = false)]
async fn in_chromium_a_manager_orders_a_timesheet_sees_it_reach_100_over_sse_and_downloads_it(
    db: PgPool,
) {
    // No worker yet: the new job's row must be on the page, queued, before anything runs.
    let mut app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let groups = centre(&db).await;
    let (_, email) = person(&db, api::auth::Role::Manager).await;
    let browser = Browser::start("timesheet").await;
    log_in(&browser, &app.base, &email).await;
    assert!(browser.page_text().await.contains("Мои задачи"));

    // The order form: last month, all groups.
    browser
        .eval(
            "document.getElementById('month').value = arguments[0]",
            json!([last_month().to_string()]),
        )
        .await;
    browser.click("#order").await;
    let job_id = browser
        .wait_for(
            "the new job's row",
            Duration::from_secs(10),
            "var r = document.querySelector('tr.job.new'); return r && r.dataset.id",
        )
        .await;
    let job_id = job_id.as_str().unwrap().to_string();
    assert!(browser.url().await.contains(&format!("job={job_id}")));
    assert_eq!(
        browser.text(&format!("#job-{job_id} .state")).await,
        "в очереди"
    );

    // Now a worker takes it; the page follows over its event stream, without reloading.
    browser
        .eval("window.loadedAt = performance.timeOrigin", json!([]))
        .await;
    app.start_worker(Registry::production(
        30,
        &worker::clients::Integrations::none(),
    ));
    let done = browser
        .wait_for(
            "the bar at 100 % with a download",
            Duration::from_secs(60),
            "var r = document.querySelector('tr.job.new');
             return r && r.dataset.state === 'succeeded' && r.querySelector('progress').value === 100
                 && r.querySelector('.pct').textContent === '100 %'
                 && !!r.querySelector('a.download') && !r.querySelector('form.cancel')",
        )
        .await;
    assert_eq!(done, json!(true));
    let events = browser
        .eval("return window.jobEvents || []", json!([]))
        .await;
    let events = events.as_array().unwrap();
    let states: Vec<&str> = events
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert!(states.contains(&"running"), "{events:?}");
    assert_eq!(states.last(), Some(&"succeeded"), "{events:?}");
    let percents: Vec<i64> = events
        .iter()
        .map(|e| e["progress"]["percent"].as_i64().unwrap())
        .collect();
    assert!(
        percents.windows(2).all(|w| w[0] <= w[1]) && percents.last() == Some(&100),
        "the bar only moves forward, to 100: {percents:?}"
    );
    let same_page = browser
        .eval(
            "return window.loadedAt === performance.timeOrigin",
            json!([]),
        )
        .await;
    assert_eq!(same_page, json!(true), "the page was not reloaded");
    let shot = browser.screenshot("jobs-page-timesheet-done").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    // The download button: a signed link, no header needed.
    browser.click(&format!("#job-{job_id} a.download")).await;
    let (name, bytes) = browser.downloaded("xlsx", Duration::from_secs(20)).await;
    assert!(name.ends_with(".xlsx"), "{name}");
    let stored: Vec<u8> = sqlx::query_scalar("select bytes from artifacts where job_id = $1")
        .bind(&job_id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(bytes, stored, "the browser saved the job's file");
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes)).unwrap();
    let sheets = book.sheet_names();
    assert_eq!(sheets.len(), groups.len() + 1, "{sheets:?}");
    let summary = book.worksheet_range(&sheets[0]).unwrap();
    let text: Vec<String> = summary.cells().map(|(_, _, c)| c.to_string()).collect();
    for group in &groups {
        assert!(
            text.iter().any(|t| t == group),
            "{group} missing from the summary"
        );
    }
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn in_chromium_an_admin_retries_a_failed_job_on_ops_and_a_manager_gets_403(db: PgPool) {
    let calls = Calls::default();
    let app = TestApp::spawn(db.clone(), test_registry(&calls)).await;
    let (_, admin) = person(&db, api::auth::Role::Admin).await;
    let (manager_id, manager) = person(&db, api::auth::Role::Manager).await;
    let id = app.enqueue(manager_id, Broken).await;
    let failed = wait_state(&db, &id, "failed", 1).await;
    assert_eq!(failed, 1);

    let browser = Browser::start("ops").await;
    log_in(&browser, &app.base, &admin).await;
    browser.goto(&format!("{}/ops", app.base)).await;
    let row = browser.text(&format!("#failed-{id}")).await;
    assert!(row.contains("the timesheet template is missing"), "{row}");
    assert!(browser.text("#kinds").await.contains("test_broken"));
    assert!(
        browser.text("#workers").await.contains("да"),
        "a live worker replica is listed"
    );
    browser.click(&format!("#failed-{id} button.retry")).await;
    let notice = browser.text("#notice").await;
    assert!(notice.contains("снова в очереди"), "{notice}");
    // A new attempt of the same job, counted: it runs (and fails) once more.
    assert_eq!(wait_state(&db, &id, "failed", 2).await, 2);
    let retries: i32 = sqlx::query_scalar("select manual_retries from job_runs where id = $1")
        .bind(&id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(retries, 1);
    assert_eq!(calls.of(&id).len(), 2);
    browser.screenshot("ops-page-after-retry").await;

    // «Повторить все ошибки» of the kind: the same job once more.
    browser.goto(&format!("{}/ops", app.base)).await;
    browser.click("tr[data-kind=\"test_broken\"] button").await;
    let notice = browser.text("#notice").await;
    assert!(notice.contains("повторено 1"), "{notice}");
    assert_eq!(wait_state(&db, &id, "failed", 3).await, 3);

    // Log out; a manager is refused the dashboard.
    browser.click("header form button").await;
    log_in(&browser, &app.base, &manager).await;
    browser.goto(&format!("{}/ops", app.base)).await;
    let text = browser.page_text().await;
    assert!(text.contains("Ошибка 403"), "{text}");
    assert!(!text.contains("Очереди"), "{text}");
    browser.close().await;
    app.stop().await;
}

/// Waits until job `id` is in `state` with `attempts`; returns the attempts.
async fn wait_state(db: &PgPool, id: &str, state: &str, attempts: i32) -> i32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (s, a): (String, i32) =
            sqlx::query_as("select state, attempts from job_runs where id = $1")
                .bind(id)
                .fetch_one(db)
                .await
                .unwrap();
        if s == state && a == attempts {
            return a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {id}: {s}/{a}, expected {state}/{attempts}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrations = false)]
async fn the_page_session_opens_pages_only_and_forms_refuse_other_origins(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (user, email) = person(&db, api::auth::Role::Manager).await;
    let (other, _) = person(&db, api::auth::Role::Manager).await;
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let base = &app.base;

    let res = http.get(format!("{base}/jobs")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/login");

    let res = http
        .post(format!("{base}/login"))
        .form(&[("email", email.as_str()), ("password", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Неверная почта или пароль"));

    let res = http
        .post(format!("{base}/login"))
        .form(&[("email", email.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/jobs");
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let token = pair.split_once('=').unwrap().1.to_string();

    let res = http
        .get(format!("{base}/jobs"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("Заказать табель"));
    // Odd query strings are read leniently, never an error page.
    let res = http
        .get(format!("{base}/jobs?job=a&job=b&error=%FF&x"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // The cookie opens no API route, neither as a cookie nor as a bearer token.
    let res = http
        .get(format!("{base}/api/jobs"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = http
        .get(format!("{base}/api/jobs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // A form posted from another origin is refused; a bad month comes back as a message.
    let res = http
        .post(format!("{base}/jobs/timesheet"))
        .header("cookie", &pair)
        .header("origin", "http://evil.example")
        .form(&[
            ("month", last_month().to_string().as_str()),
            ("scope", "all"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = http
        .post(format!("{base}/jobs/timesheet"))
        .header("cookie", &pair)
        .form(&[("month", "октябрь"), ("scope", "all")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("/jobs?error="), "{location}");
    let res = http
        .get(format!("{base}{location}"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert!(res.text().await.unwrap().contains("YYYY-MM"));
    let none: i64 = sqlx::query_scalar("select count(*) from job_runs")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(none, 0, "nothing was ordered");

    // Another user's job is not there for this session.
    let theirs = app.enqueue(other, Steps::new(1, 1)).await;
    let res = http
        .get(format!("{base}/jobs/{theirs}/status"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let mine = app.enqueue(user, Steps::new(1, 1)).await;
    let status: Value = http
        .get(format!("{base}/jobs/{mine}/status"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(status["events_url"].as_str().unwrap().contains("?sig="));

    // Whatever a job's texts hold is shown as text, on «Мои задачи» and on /ops.
    let hostile = ulid::Ulid::generate().to_string();
    sqlx::query(
        "insert into job_runs (id, kind, state, max_attempts, requested_by, error, progress_message,
                               finished_at)
         values ($1, 'timesheet_export', 'failed', 1, $2, '<script>alert(1)</script>',
                 '\"><img src=x onerror=alert(2)>', now())",
    )
    .bind(&hostile)
    .bind(user)
    .execute(&db)
    .await
    .unwrap();
    let page = http
        .get(format!("{base}/jobs"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let page = page.text().await.unwrap();
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>alert") && !page.contains("<img src=x"));
    let (_, admin) = person(&db, api::auth::Role::Admin).await;
    let res = http
        .post(format!("{base}/login"))
        .form(&[("email", admin.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let admin_pair = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let ops = http
        .get(format!("{base}/ops"))
        .header("cookie", &admin_pair)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(ops.contains(&format!("failed-{hostile}")), "{ops}");
    assert!(!ops.contains("<script>alert"), "{ops}");

    // Logging out clears the cookie.
    let res = http
        .post(format!("{base}/logout"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert!(res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
}

#[sqlx::test(migrations = false)]
async fn the_login_form_shares_the_strict_login_limit(db: PgPool) {
    let app = TestApp::spawn_with(
        db.clone(),
        None,
        api_config(&["--login-rate-limit", "3/60s"]),
    )
    .await;
    let (_, email) = person(&db, api::auth::Role::Manager).await;
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let res = http
            .post(format!("{}/login", app.base))
            .form(&[("email", email.as_str()), ("password", "guess")])
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, vec![401, 401, 401, 429]);
}
