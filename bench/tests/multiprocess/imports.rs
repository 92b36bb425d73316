//! Imports as jobs against the fakes, with real processes (`artsvao-fakes`, worker replicas,
//! the api over real HTTP): a hanging Timepad, a throttling Timepad, a worker killed mid-import,
//! a second import of unchanged data, a Pyrus token refused mid-sync, 20,000 Pyrus tasks, and
//! a cron tick seen by two replicas.
#![allow(clippy::unwrap_used)]

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use jobs::kinds::imports::{PyrusSync, TimepadImport};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::support::*;

const FAST: [(&str, &str); 2] = [
    ("WORKER_HEARTBEAT_MS", "1000"),
    ("WORKER_DEAD_AFTER_MS", "5000"),
];

fn at(r: &Value) -> DateTime<Utc> {
    r["at"].as_str().unwrap().parse().unwrap()
}

async fn seed_rooms(db: &PgPool) {
    sqlx::query(
        "insert into rooms (name, capacity) select 'Кабинет ' || n, 20 from generate_series(1, 30) n",
    )
    .execute(db)
    .await
    .unwrap();
}

/// The first paid order of the fake's first event with an e-mail and a phone: a CRM client
/// is given that e-mail and another that phone. Returns (order id, e-mail's client, phone's client).
async fn ambiguous_buyer(db: &PgPool, fakes: &FakesProc) -> (i64, uuid::Uuid, uuid::Uuid) {
    use shared::domain::clients::{Email, Phone};
    let orders: Value = reqwest::Client::new()
        .get(format!(
            "{}/timepad/v1/events/2845100/orders?limit=250",
            fakes.base
        ))
        .bearer_auth("fakes-timepad-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (id, email, phone) = orders["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["status"]["name"] == "paid")
        .find_map(|o| {
            let email = Email::parse(o["mail"].as_str()?)?;
            let phone = Phone::parse(o["answers"]["phone"].as_str()?)?;
            Some((o["id"].as_i64()?, email, phone))
        })
        .expect("a paid order with an e-mail and a phone");
    let mut ids = Vec::new();
    for (last, first, phone, email) in [
        ("Ермакова", "Зоя", None, Some(email.as_str().to_string())),
        ("Ермаков", "Яков", Some(phone.as_str().to_string()), None),
    ] {
        // Whoever already holds the contact in the demo data lets go of it first.
        sqlx::query("update clients set email = null where lower(email) = $1")
            .bind(email.as_deref().unwrap_or(""))
            .execute(db)
            .await
            .unwrap();
        sqlx::query("update clients set phone = null where phone = $1")
            .bind(phone.as_deref().unwrap_or(""))
            .execute(db)
            .await
            .unwrap();
        let id: uuid::Uuid = sqlx::query_scalar(
            "insert into clients (last_name, first_name, phone, email) values ($1, $2, $3, $4)
             returning id",
        )
        .bind(last)
        .bind(first)
        .bind(phone)
        .bind(email)
        .fetch_one(db)
        .await
        .unwrap();
        ids.push(id);
    }
    // The request log starts after this look.
    fakes.reset().await;
    (id, ids[0], ids[1])
}

#[sqlx::test(migrations = false)]
async fn a_hanging_timepad_times_out_is_retried_and_the_api_stays_fast(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let fakes = FakesProc::start(&["--timepad-events", "3", "--timepad-orders", "30"]).await;
    fakes
        .fault(json!({"service": "timepad", "fault": "hang", "times": 1}))
        .await;
    let _worker = worker_with(
        &url,
        "replica-a",
        &fakes.worker_env(),
        &[
            ("TIMEPAD_TIMEOUT_MS", "1500"),
            ("WORKER_RATE_LIMITS", "timepad=100/1s"),
        ],
    )
    .await;
    let api = ApiProc::start(&url).await;
    let http = reqwest::Client::new();
    let id = enqueue(&db, &[TimepadImport::default()]).await.remove(0);

    // While the first attempt waits on the hanging Timepad, the api answers as usual.
    wait_for("the import running", Duration::from_secs(10), || async {
        (job_row(&db, &id).await.0 == "running").then_some(())
    })
    .await;
    for path in ["/api/health/readiness", "/api/clients?search=Иван"] {
        for _ in 0..5 {
            let t = Instant::now();
            let res = http
                .get(format!("{}{path}", api.base))
                .bearer_auth(&api.token)
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success(), "{path}: {}", res.status());
            assert!(
                t.elapsed() < Duration::from_millis(500),
                "{path} took {:?}",
                t.elapsed()
            );
        }
    }
    let (state, attempts, result, _, _) = job_done(&db, &id, Duration::from_secs(40)).await;
    assert_eq!(state, "succeeded");
    assert_eq!(attempts, 2, "the hung attempt failed and the next one ran");
    assert_eq!(result.unwrap()["events"]["new"], 3);
    // The first attempt ended on the configured timeout, not later.
    let errors: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "select coalesce(error, ''), at from job_events where job_id = $1 order by id",
    )
    .bind(&id)
    .fetch_all(&db)
    .await
    .unwrap();
    let started = errors.iter().find(|e| e.0.is_empty()).map(|e| e.1);
    let timed_out = errors
        .iter()
        .find(|e| e.0.contains("timed out after"))
        .unwrap_or_else(|| panic!("no timeout recorded: {errors:?}"));
    let took = timed_out.1 - started.unwrap();
    assert!(
        took >= chrono::Duration::milliseconds(1400) && took < chrono::Duration::seconds(5),
        "the hung attempt ended after {took}"
    );
    let hung = &fakes.requests("timepad").await[0];
    assert!(hung["status"].is_null(), "{hung}");
}

#[sqlx::test(migrations = false)]
async fn a_throttling_timepad_is_waited_for_without_using_an_attempt(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let fakes = FakesProc::start(&["--timepad-events", "3", "--timepad-orders", "30"]).await;
    fakes
        .fault(
            json!({"service": "timepad", "path_prefix": "/timepad/v1/events", "fault": "status",
                      "status": 429, "retry_after_s": 3, "times": 1}),
        )
        .await;
    let _worker = worker_with(
        &url,
        "replica-a",
        &fakes.worker_env(),
        &[("WORKER_RATE_LIMITS", "timepad=100/1s")],
    )
    .await;
    let id = enqueue(&db, &[TimepadImport::default()]).await.remove(0);
    let (state, attempts, _, _, snoozes) = job_done(&db, &id, Duration::from_secs(30)).await;
    assert_eq!(state, "succeeded");
    assert_eq!(attempts, 1, "waiting for Timepad used an attempt");
    assert_eq!(snoozes, 1);
    let requests = fakes.requests("timepad").await;
    assert_eq!(requests[0]["status"], 429);
    let waited = at(&requests[1]) - at(&requests[0]);
    assert!(
        waited >= chrono::Duration::seconds(3),
        "came back after {waited}"
    );
}

#[sqlx::test(migrations = false)]
async fn an_event_whose_orders_timepad_refuses_is_skipped_and_reported(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let fakes = FakesProc::start(&["--timepad-events", "3", "--timepad-orders", "30"]).await;
    // The second event's orders: 403 with Timepad's own error, every time.
    fakes
        .fault(
            json!({"service": "timepad", "path_prefix": "/timepad/v1/events/2845101/orders",
                      "fault": "status", "status": 403}),
        )
        .await;
    let _worker = worker_with(
        &url,
        "replica-a",
        &fakes.worker_env(),
        &[("WORKER_RATE_LIMITS", "timepad=100/1s")],
    )
    .await;
    let id = enqueue(&db, &[TimepadImport::default()]).await.remove(0);
    let (state, attempts, result, error, _) = job_done(&db, &id, Duration::from_secs(30)).await;
    assert_eq!(state, "succeeded", "{error:?}");
    assert_eq!(attempts, 1);
    let result = result.unwrap();
    assert_eq!(result["events"]["new"], 3, "{result}");
    assert_eq!(result["events_skipped"], 1, "{result}");
    assert_eq!(result["problems"][0]["record"], "event", "{result}");
    assert_eq!(result["problems"][0]["id"], 2845101, "{result}");
    // The other two events' orders (order j belongs to event j % 3): 20 of 30.
    assert_eq!(result["orders"]["new"], 20, "{result}");
    let skipped_event_orders: i64 =
        sqlx::query_scalar("select count(*) from timepad_orders where event_id = 2845101")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(skipped_event_orders, 0);
}

#[sqlx::test(migrations = false)]
async fn an_import_killed_midway_resumes_from_its_saved_page_and_a_second_one_changes_nothing(
    db: PgPool,
) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    // 120 events: two pages of events, each followed by its events' orders.
    let fakes = FakesProc::start(&["--timepad-events", "120", "--timepad-orders", "5000"]).await;
    // The demo CRM (some buyers are its clients), and a buyer made ambiguous on purpose: their
    // e-mail belongs to one client and their phone to another.
    api::seed::seed_demo(&db).await.unwrap();
    let (conflicted, email_owner, phone_owner) = ambiguous_buyer(&db, &fakes).await;
    let crm_until: DateTime<Utc> = sqlx::query_scalar("select max(created_at) from clients")
        .fetch_one(&db)
        .await
        .unwrap();
    let mut extra = FAST.to_vec();
    extra.push(("WORKER_RATE_LIMITS", "timepad=10/1s"));
    let mut worker = worker_with(&url, "replica-a", &fakes.worker_env(), &extra).await;
    let id = enqueue(&db, &[TimepadImport::default()]).await.remove(0);
    wait_for("20 pages written", Duration::from_secs(30), || async {
        let pages: Option<i64> = sqlx::query_scalar(
            "select (cursor->'report'->>'pages')::bigint from import_cursors where job_id = $1",
        )
        .bind(&id)
        .fetch_optional(&db)
        .await
        .unwrap();
        (pages.unwrap_or(0) >= 20).then_some(())
    })
    .await;
    worker.kill().await;
    let _restarted = worker.restart_same().await;
    let (state, attempts, result, _, _) = job_done(&db, &id, Duration::from_secs(90)).await;
    assert_eq!(state, "succeeded", "{result:?}");
    assert_eq!(attempts, 2);
    let result = result.unwrap();
    assert_eq!(result["pages"], 122, "{result}");
    assert_eq!(result["orders"]["new"], 5000, "{result}");
    let orders: i64 = sqlx::query_scalar("select count(*) from timepad_orders")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(orders, 5000);

    // Resumed from the saved page: a page was fetched twice at most (the one in flight when
    // the worker died), every other page once.
    let requests = fakes.requests("timepad").await;
    let mut fetched: HashMap<String, usize> = HashMap::new();
    for r in &requests {
        *fetched
            .entry(format!("{}?{}", r["path"], r["query"]))
            .or_default() += 1;
    }
    let twice: Vec<&String> = fetched
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect();
    assert!(
        twice.len() <= 1,
        "pages fetched again after the restart: {twice:?}"
    );
    assert!(fetched.values().all(|n| *n <= 2), "{fetched:?}");
    let mut pages: Vec<&String> = fetched.keys().collect();
    pages.sort();
    assert_eq!(fetched.len(), 122, "distinct pages requested: {pages:?}");

    // No client twice (same name and the same phone or e-mail); every paid buyer with a
    // contact is a client or a recorded conflict.
    let duplicated: i64 = sqlx::query_scalar(
        "select count(*) from (select name_key, coalesce(phone, ''), coalesce(lower(email), '')
                               from clients group by 1, 2, 3 having count(*) > 1) d",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(duplicated, 0);
    let clients = &result["clients"];
    assert!(clients["created"].as_i64().unwrap() > 1000, "{result}");
    assert!(clients["matched"].as_i64().unwrap() > 0, "{result}");
    let unlinked: i64 = sqlx::query_scalar(
        "select count(*) from timepad_orders o
         where o.participant and o.client_id is null
           and (o.email is not null or o.phone is not null)
           and not exists (select 1 from import_conflicts c
                           where c.source = 'timepad_order' and c.external_id = o.id::text)",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    // (a buyer whose only contact does not parse stays unlinked: a handful)
    assert!(
        unlinked < 50,
        "{unlinked} paid buyers neither linked nor in conflict"
    );
    // The ambiguous buyer is a recorded conflict naming both clients, linked to neither.
    let (client_id, candidates): (Option<uuid::Uuid>, Vec<uuid::Uuid>) = sqlx::query_as(
        "select o.client_id, c.candidates from timepad_orders o
         join import_conflicts c on c.source = 'timepad_order' and c.external_id = o.id::text
         where o.id = $1",
    )
    .bind(conflicted)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(client_id, None);
    let mut expected = vec![email_owner, phone_owner];
    expected.sort();
    assert_eq!(candidates, expected, "{result}");
    assert!(clients["conflicts"].as_i64().unwrap() >= 1, "{result}");
    // Buyers who are demo clients were matched, not created again.
    let matched_demo: i64 = sqlx::query_scalar(
        "select count(distinct o.client_id) from timepad_orders o
         join clients c on c.id = o.client_id and c.created_at <= $1",
    )
    .bind(crm_until)
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(matched_demo > 100, "{matched_demo} demo clients matched");

    // The same data again: nothing new, nothing updated.
    let again = enqueue(&db, &[TimepadImport::default()]).await.remove(0);
    let (state, _, result, _, _) = job_done(&db, &again, Duration::from_secs(60)).await;
    assert_eq!(state, "succeeded");
    let result = result.unwrap();
    assert_eq!(
        result["events"],
        json!({"new": 0, "updated": 0}),
        "{result}"
    );
    assert_eq!(result["orders"]["new"], 0, "{result}");
    assert_eq!(result["orders"]["updated"], 0, "{result}");
    assert_eq!(result["orders"]["skipped"], 5000, "{result}");
    assert_eq!(result["clients"]["created"], 0, "{result}");
}

#[sqlx::test(migrations = false)]
async fn a_pyrus_token_refused_midway_is_renewed_once_and_the_sync_completes(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    seed_rooms(&db).await;
    let url = db_url(&db);
    let fakes = FakesProc::start(&["--pyrus-tasks", "2500"]).await;
    // The second register page is refused with 401 expired_token.
    fakes
        .fault(
            json!({"service": "pyrus", "path_prefix": "/pyrus/v4/forms", "fault": "status",
                      "status": 401, "after_n": 1, "times": 1}),
        )
        .await;
    let _worker = worker_with(&url, "replica-a", &fakes.worker_env(), &[]).await;
    let id = enqueue(&db, &[PyrusSync {}]).await.remove(0);
    let (state, attempts, result, error, _) = job_done(&db, &id, Duration::from_secs(60)).await;
    assert_eq!(state, "succeeded", "{error:?}");
    assert_eq!(attempts, 1);
    let result = result.unwrap();
    assert_eq!(result["tasks"], 2500, "{result}");
    let created = result["created"].as_i64().unwrap();
    let unmapped = result["unmapped"].as_i64().unwrap();
    assert_eq!(created + unmapped, 2500, "{result}");
    let requests = fakes.requests("pyrus").await;
    let auths = requests
        .iter()
        .filter(|r| r["path"].as_str().unwrap().ends_with("/auth"))
        .count();
    assert_eq!(auths, 2, "one authentication, then exactly one renewal");
    let refused = requests.iter().filter(|r| r["status"] == 401).count();
    assert_eq!(refused, 1);
    let applications: i64 = sqlx::query_scalar(
        "select count(*) from rental_applications where pyrus_task_id is not null",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(applications, created);
}

#[sqlx::test(migrations = false)]
async fn twenty_thousand_pyrus_tasks_are_imported_in_bounded_memory(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    seed_rooms(&db).await;
    let url = db_url(&db);
    let fakes = FakesProc::start(&["--pyrus-tasks", "20000"]).await;
    let worker = worker_with(&url, "replica-a", &fakes.worker_env(), &[]).await;
    let t = Instant::now();
    let id = enqueue(&db, &[PyrusSync {}]).await.remove(0);
    let (state, _, result, error, _) = job_done(&db, &id, Duration::from_secs(120)).await;
    let took = t.elapsed();
    assert_eq!(state, "succeeded", "{error:?}");
    let result = result.unwrap();
    assert_eq!(result["tasks"], 20000, "{result}");
    // Broken on purpose in the fake: every 40th task.
    assert_eq!(result["unmapped"], 500, "{result}");
    assert_eq!(result["created"], 19500, "{result}");
    assert_eq!(result["unmapped_tasks"].as_array().unwrap().len(), 100);
    let rss = peak_rss_mb(worker.pid());
    eprintln!("pyrus sync of 20,000 tasks: {took:?}, worker peak RSS {rss:.0} MB");
    assert!(rss < 100.0, "worker peak RSS {rss:.0} MB");
}

#[sqlx::test(migrations = false)]
async fn a_cron_tick_seen_by_two_replicas_runs_one_import(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let fakes = FakesProc::start(&["--timepad-events", "2", "--timepad-orders", "10"]).await;
    let extra = [
        ("WORKER_CRON", "timepad_import=*/5 * * * * *"),
        ("WORKER_RATE_LIMITS", "timepad=100/1s"),
    ];
    let env = fakes.worker_env();
    let (a, b) = tokio::join!(
        worker_with(&url, "replica-a", &env, &extra),
        worker_with(&url, "replica-b", &env, &extra),
    );
    wait_for("two ticks imported", Duration::from_secs(30), || async {
        let done: i64 = sqlx::query_scalar(
            "select count(*) from job_runs where kind = 'timepad_import' and state = 'succeeded'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        (done >= 2).then_some(())
    })
    .await;
    a.term();
    b.term();
    let (ticks, jobs): (i64, i64) = sqlx::query_as(
        "select (select count(*) from cron_ticks where schedule = 'timepad_import'),
                (select count(*) from job_runs where kind = 'timepad_import')",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(ticks, jobs, "one import per tick");
    // Each import listed the events once: no tick ran twice.
    let listings = fakes
        .requests("timepad")
        .await
        .iter()
        .filter(|r| r["path"] == "/timepad/v1/events")
        .count() as i64;
    let succeeded: i64 = sqlx::query_scalar(
        "select count(*) from job_runs where kind = 'timepad_import' and state = 'succeeded'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(
        listings >= succeeded && listings <= jobs,
        "{listings} listings for {jobs} jobs"
    );
    // Cron imports the recent window, not the whole history.
    for r in fakes.requests("timepad").await {
        if r["path"] == "/timepad/v1/events" {
            assert!(
                r["query"].as_str().unwrap_or("").contains("starts_at_min="),
                "{r}"
            );
        }
    }
}
