//! The notification routes without a worker: what causes notices (a payment, a cancelled or
//! moved lesson) writes them and their delivery jobs in its own transaction; the broadcast
//! request; the outbox lists; linking a Telegram chat through the webhook. (Delivery against
//! the fake Telegram and SMTP runs with real processes in
//! `bench/tests/multiprocess/notifications.rs`.)
#![allow(clippy::unwrap_used)]

use jobs::{
    kinds::notifications::{Broadcast, DeliverNotification},
    testing::assert_enqueued,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::*;

/// A group with a room and two members on the roster of one lesson tomorrow; the first has a
/// Telegram chat, the second only an e-mail. Returns (group, lesson, clients).
async fn group_with_lesson(app: &TestApp, token: &str, db: &PgPool) -> (Uuid, Uuid, Vec<Uuid>) {
    let teacher = ok(
        app,
        token,
        "/api/teachers",
        json!({"full_name": "Петрова Мария"}),
    )
    .await;
    let room = ok(
        app,
        token,
        "/api/rooms",
        json!({"name": "ауд. 12", "capacity": 20}),
    )
    .await;
    let group = ok(
        app,
        token,
        "/api/groups",
        json!({"name": "Хор", "teacher_id": teacher["id"], "room_id": room["id"], "capacity": 10}),
    )
    .await;
    let group_id: Uuid = group["id"].as_str().unwrap().parse().unwrap();
    let mut clients = Vec::new();
    for (i, chat) in [(0, Some(42_i64)), (1, None)] {
        let id: Uuid = sqlx::query_scalar(
            "insert into clients (last_name, first_name, email, telegram_chat_id)
             values ($1, 'Анна', $2, $3) returning id",
        )
        .bind(format!("Участникова{i}"))
        .bind(format!("member{i}@example.ru"))
        .bind(chat)
        .fetch_one(db)
        .await
        .unwrap();
        let res = app
            .post(
                token,
                &format!("/api/groups/{group_id}/members"),
                json!({"client_id": id}),
            )
            .await;
        assert!(res.status().is_success(), "{}", res.text().await.unwrap());
        clients.push(id);
    }
    let starts = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let lesson = ok(
        app,
        token,
        "/api/lessons",
        json!({"group_id": group_id, "room_id": room["id"], "teacher_id": teacher["id"],
               "starts_at": starts, "duration_min": 45}),
    )
    .await;
    (
        group_id,
        lesson["id"].as_str().unwrap().parse().unwrap(),
        clients,
    )
}

async fn notices(db: &PgPool) -> Vec<(String, String, Uuid, String)> {
    sqlx::query_as(
        "select template, channel, client_id, state from notifications
         where client_id is not null order by template, channel",
    )
    .fetch_all(db)
    .await
    .unwrap()
}

#[sqlx::test(migrations = false)]
async fn changes_write_their_notices_and_jobs_in_their_own_transaction(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, manager) = app.user("manager").await;
    let (_, lesson, clients) = group_with_lesson(&app, &manager, &db).await;

    // Moving the lesson: each member on the roster gets a notice on their preferred channel
    // (Telegram when linked, else e-mail), each with its delivery job.
    let later = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let res = app
        .patch(
            &manager,
            &format!("/api/lessons/{lesson}"),
            json!({"starts_at": later}),
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let moved = notices(&db).await;
    assert_eq!(
        moved,
        vec![
            (
                "lesson_moved".into(),
                "email".into(),
                clients[1],
                "queued".into()
            ),
            (
                "lesson_moved".into(),
                "telegram".into(),
                clients[0],
                "queued".into()
            ),
        ]
    );
    let id: Uuid = sqlx::query_scalar(
        "select id from notifications where client_id = $1 and template = 'lesson_moved'",
    )
    .bind(clients[0])
    .fetch_one(&db)
    .await
    .unwrap();
    let (job_id, _) =
        assert_enqueued::<DeliverNotification>(&db, |j| j.notification_id == id).await;
    let stored: String = sqlx::query_scalar("select job_id from notifications where id = $1")
        .bind(id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stored, job_id);

    // A person cancels the waiting delivery: the notice shows `skipped`, not queued forever.
    let res = app
        .post(&manager, &format!("/api/jobs/{job_id}/cancel"), json!({}))
        .await;
    assert!(res.status().is_success());
    let shown: Value = app
        .get(&manager, &format!("/api/notifications/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["state"], "skipped", "{shown}");
    assert!(
        shown["error"].as_str().unwrap().contains("cancelled"),
        "{shown}"
    );
    let skipped: Value = app
        .get(&manager, "/api/notifications?state=skipped")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(skipped["total"], 1, "{skipped}");

    // A move that fails (a clash) writes nothing, notices included.
    let before = notices(&db).await.len();
    let res = app
        .patch(
            &manager,
            &format!("/api/lessons/{lesson}"),
            json!({"duration_min": 0}),
        )
        .await;
    assert_eq!(res.status(), 422);
    assert_eq!(notices(&db).await.len(), before);

    // Cancelling: one "cancelled" notice per member; cancelling again adds none.
    for _ in 0..2 {
        let res = app
            .post(
                &manager,
                &format!("/api/lessons/{lesson}/cancel"),
                json!({}),
            )
            .await;
        assert_eq!(res.status(), 200);
    }
    let cancelled: Vec<_> = notices(&db)
        .await
        .into_iter()
        .filter(|n| n.0 == "lesson_cancelled")
        .collect();
    assert_eq!(cancelled.len(), 2);

    // The list and one notice, for managers.
    let list: Value = app
        .get(
            &manager,
            &format!("/api/notifications?client_id={}", clients[0]),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 2, "{list}");
    let one: Value = app
        .get(&manager, &format!("/api/notifications/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["template"], "lesson_moved");
    assert_eq!(one["state"], "skipped");
    let res = app.get(&manager, "/api/notifications?state=lost").await;
    assert_eq!(res.status(), 422);
    let (_, teacher) = app.user("teacher").await;
    assert_eq!(app.get(&teacher, "/api/notifications").await.status(), 403);
}

#[sqlx::test(migrations = false)]
async fn a_broadcast_is_checked_and_queued_as_a_job(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, manager) = app.user("manager").await;
    let (group, lesson, _) = group_with_lesson(&app, &manager, &db).await;
    for (body, field) in [
        (
            json!({"group_id": group, "text": " ", "channels": ["telegram"]}),
            "text",
        ),
        (
            json!({"group_id": group, "text": "a\u{0}b", "channels": ["telegram"]}),
            "text",
        ),
        (
            json!({"group_id": group, "text": "x".repeat(3501), "channels": ["telegram"]}),
            "text",
        ),
        (
            json!({"text": "Привет", "channels": ["telegram"]}),
            "group_id",
        ),
        (
            json!({"group_id": group, "lesson_id": lesson, "text": "Привет", "channels": ["email"]}),
            "group_id",
        ),
        (
            json!({"group_id": group, "text": "Привет", "channels": []}),
            "channels",
        ),
    ] {
        let res = app
            .post(&manager, "/api/notifications/broadcast", body.clone())
            .await;
        let error = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(error["fields"][field].is_string(), "{body}: {error}");
    }
    let res = app
        .post(
            &manager,
            "/api/notifications/broadcast",
            json!({"group_id": group, "text": "Привет", "channels": ["pigeon"]}),
        )
        .await;
    assert_eq!(res.status(), 422);
    let res = app
        .post(
            &manager,
            "/api/notifications/broadcast",
            json!({"group_id": Uuid::new_v4(), "text": "Привет", "channels": ["email"]}),
        )
        .await;
    assert_eq!(res.status(), 404);
    // Two channels at most, as the schema's maxItems says; a repeat within them counts once.
    let res = app
        .post(
            &manager,
            "/api/notifications/broadcast",
            json!({"lesson_id": lesson, "text": "Концерт в субботу", "channels": ["telegram", "email", "telegram"]}),
        )
        .await;
    let error = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(error["fields"]["channels"].is_string(), "{error}");
    let res = app
        .post(
            &manager,
            "/api/notifications/broadcast",
            json!({"group_id": group, "text": "Привет", "channels": ["email", "email"]}),
        )
        .await;
    assert_eq!(res.status(), 202);
    let (_, job) = assert_enqueued::<Broadcast>(&db, |b| b.group_id == Some(group)).await;
    assert_eq!(job.channels.len(), 1, "channels deduplicated");
    let res = app
        .post(
            &manager,
            "/api/notifications/broadcast",
            json!({"lesson_id": lesson, "text": "Концерт в субботу", "channels": ["telegram", "email"]}),
        )
        .await;
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    let (job_id, job) = assert_enqueued::<Broadcast>(&db, |b| b.lesson_id == Some(lesson)).await;
    assert_eq!(body["job_id"], job_id);
    assert_eq!(job.text, "Концерт в субботу");
    assert_eq!(job.channels.len(), 2);
}

#[sqlx::test(migrations = false)]
async fn the_bot_webhook_links_a_chat_by_a_one_time_code(db: PgPool) {
    let app = TestApp::spawn_with(
        db.clone(),
        None,
        api_config(&["--telegram-webhook-secret", "hook-secret-1"]),
    )
    .await;
    let (_, manager) = app.user("manager").await;
    let client: Uuid = sqlx::query_scalar(
        "insert into clients (last_name, first_name, telegram_blocked_at)
         values ('Связкина', 'Анна', now()) returning id",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let res = app
        .post(
            &manager,
            &format!("/api/clients/{}/telegram-link", Uuid::new_v4()),
            json!({}),
        )
        .await;
    assert_eq!(res.status(), 404);
    let link = ok(
        &app,
        &manager,
        &format!("/api/clients/{client}/telegram-link"),
        json!({}),
    )
    .await;
    let code = link["code"].as_str().unwrap().to_string();
    assert_eq!(link["start_command"], format!("/start {code}"));

    let hook = |secret: Option<&'static str>, body: Value| {
        let mut req = reqwest::Client::new()
            .post(format!("{}/api/webhooks/telegram", app.base))
            .json(&body);
        if let Some(s) = secret {
            req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        req.send()
    };
    let update = |text: &str| {
        json!({"update_id": 1, "message": {"message_id": 5, "chat": {"id": 777001, "type": "private"},
               "text": text}})
    };
    assert_eq!(
        hook(None, update(&format!("/start {code}")))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        hook(Some("wrong"), update(&format!("/start {code}")))
            .await
            .unwrap()
            .status(),
        401
    );
    let linked = |db: &PgPool| {
        let db = db.clone();
        async move {
            sqlx::query_as::<_, (Option<i64>, bool)>(
                "select telegram_chat_id, telegram_blocked_at is not null from clients where id = $1",
            )
            .bind(client)
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    assert_eq!(linked(&db).await, (None, true));
    // Any other update is taken (200) and changes nothing.
    let res = hook(Some("hook-secret-1"), update("привет")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(linked(&db).await, (None, true));
    // A code PostgreSQL could not even store (a NUL) is no code: 200, nothing linked.
    let res = hook(Some("hook-secret-1"), update("/start 0123456789abcde\u{0}"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = hook(Some("hook-secret-1"), update(&format!("/start {code}")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        linked(&db).await,
        (Some(777001), false),
        "linked, and no longer blocked"
    );
    // The code is used: another chat cannot take it.
    let res = hook(
        Some("hook-secret-1"),
        json!({"update_id": 2, "message": {"chat": {"id": 999}, "text": format!("/start {code}")}}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(linked(&db).await, (Some(777001), false));

    // Without a configured secret the webhook does not exist.
    let off = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let res = reqwest::Client::new()
        .post(format!("{}/api/webhooks/telegram", off.base))
        .header("X-Telegram-Bot-Api-Secret-Token", "hook-secret-1")
        .json(&update("/start x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[sqlx::test(migrations = false)]
async fn a_payment_notifies_its_client_once(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, manager) = app.user("manager").await;
    let client: Uuid = sqlx::query_scalar(
        "insert into clients (last_name, first_name, email) values ('Платёжкина', 'Анна', 'pay@example.ru')
         returning id",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let invoice: Uuid = sqlx::query_scalar(
        "insert into invoices (client_id, amount) values ($1, 4000) returning id",
    )
    .bind(client)
    .fetch_one(&db)
    .await
    .unwrap();
    for amount in ["1000", "3000.00"] {
        ok(
            &app,
            &manager,
            "/api/payments",
            json!({"invoice_id": invoice, "amount": amount, "method": "card"}),
        )
        .await;
    }
    let receipts: Vec<(String, Value)> = sqlx::query_as(
        "select channel, params from notifications where template = 'payment_received'
         order by created_at",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(receipts.len(), 2);
    assert_eq!(receipts[0].0, "email");
    assert_eq!(receipts[0].1["amount"], "1000.00");
    assert_eq!(receipts[1].1["amount"], "3000.00");
    // An overpayment is refused: no receipt.
    let res = app
        .post(
            &manager,
            "/api/payments",
            json!({"invoice_id": invoice, "amount": "1", "method": "card"}),
        )
        .await;
    assert!(res.status().is_client_error());
    let n: i64 = sqlx::query_scalar("select count(*) from notifications")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(n, 2);
}

/// Delivery skips what cannot or may not be sent, with the reason, and sends nothing: an
/// opt-out, no chat, no e-mail (the in-process worker has no provider configured, and the
/// skip comes before the provider is even needed).
#[sqlx::test(migrations = false)]
async fn opted_out_or_unreachable_recipients_are_skipped_with_the_reason(db: PgPool) {
    let registry = worker::Registry::production(30, &worker::clients::Integrations::none());
    let app = TestApp::spawn(db.clone(), registry).await;
    let clients: Vec<Uuid> = sqlx::query_scalar(
        "insert into clients (last_name, first_name, telegram_chat_id, notify_telegram, email)
         values ('Отпискина', 'Анна', 42, false, 'a@example.ru'),
                ('Безчатова', 'Анна', null, true, 'b@example.ru'),
                ('Безпочтова', 'Анна', null, true, null)
         returning id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let notices: Vec<shared::domain::notifications::NewNotice> = [
        (clients[0], "telegram"),
        (clients[1], "telegram"),
        (clients[2], "email"),
    ]
    .iter()
    .map(
        |(client, channel)| shared::domain::notifications::NewNotice {
            recipient: shared::domain::notifications::Recipient::Client(*client),
            channel: Some(channel.parse().unwrap()),
            template: shared::domain::notifications::Template::Broadcast,
            params: json!({"text": "Привет"}),
            dedup_key: format!("test:{client}:{channel}"),
            not_after: None,
        },
    )
    .collect();
    let mut tx = db.begin().await.unwrap();
    jobs::kinds::notifications::notify(&mut tx, &jobs::Requester::system(), &notices)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let expected = [
        "the client opted out of Telegram",
        "the client has not linked a Telegram chat",
        "no e-mail address",
    ];
    for (client, reason) in clients.iter().zip(expected) {
        let (state, error, attempts): (String, Option<String>, i32) =
            wait_for_state(&db, *client).await;
        assert_eq!(state, "skipped");
        assert_eq!(error.as_deref(), Some(reason));
        assert_eq!(attempts, 0, "nothing was sent");
    }
    app.stop().await;
}

async fn wait_for_state(db: &PgPool, client: Uuid) -> (String, Option<String>, i32) {
    for _ in 0..100 {
        let row: (String, Option<String>, i32) =
            sqlx::query_as("select state, error, attempts from notifications where client_id = $1")
                .bind(client)
                .fetch_one(db)
                .await
                .unwrap();
        if row.0 != "queued" {
            return row;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the notice of {client} was never delivered or skipped");
}
