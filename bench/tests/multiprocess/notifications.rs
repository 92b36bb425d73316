//! Notifications with real processes (`artsvao-fakes` as Telegram and the SMTP relay, worker
//! replicas, the `artsvao-api` binary): reminders through three replicas under Telegram's
//! limits, a broadcast survived by a SIGKILL, Telegram's 429 and 403, SMTP 451 / 550 5.1.1,
//! the circuit breaker, and e-mail at a slow pace.
#![allow(clippy::unwrap_used)]

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use chrono::{DateTime, Utc};
use jobs::kinds::notifications::LessonReminders;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::*;

const FAST: [(&str, &str); 3] = [
    ("WORKER_HEARTBEAT_MS", "1000"),
    ("WORKER_DEAD_AFTER_MS", "5000"),
    NO_REMINDERS,
];
/// The centres below have lessons within 24 hours: the reminders' cron would add notices to
/// tests that are not about reminders.
const NO_REMINDERS: (&str, &str) = ("WORKER_CRON", "lesson_reminders=off");

/// A group with a room, `members` clients (chat ids `7_000_001 + 10 i`: none ends in 403 or
/// 404, which the fake answers as blocked or missing; e-mails
/// `member{i}@example.ru`) enrolled in `lessons` lessons starting 2, 3, 4… hours from now.
/// Returns (group, clients, lessons).
async fn centre(db: &PgPool, members: usize, lessons: usize) -> (Uuid, Vec<Uuid>, Vec<Uuid>) {
    let teacher: Uuid = sqlx::query_scalar(
        "insert into teachers (full_name) values ('Петрова Мария') returning id",
    )
    .fetch_one(db)
    .await
    .unwrap();
    let room: Uuid = sqlx::query_scalar(
        "insert into rooms (name, capacity) values ('ауд. 12', 30) returning id",
    )
    .fetch_one(db)
    .await
    .unwrap();
    let group: Uuid = sqlx::query_scalar(
        "insert into study_groups (name, teacher_id, room_id, capacity)
         values ('Хор', $1, $2, 1000) returning id",
    )
    .bind(teacher)
    .bind(room)
    .fetch_one(db)
    .await
    .unwrap();
    let clients: Vec<Uuid> = sqlx::query_scalar(
        "insert into clients (last_name, first_name, telegram_chat_id, email)
         select 'Участникова' || n, 'Анна', 7000001 + n * 10, 'member' || n || '@example.ru'
         from generate_series(0, $1 - 1) n order by n returning id",
    )
    .bind(members as i32)
    .fetch_all(db)
    .await
    .unwrap();
    sqlx::query(
        "insert into group_members (group_id, client_id, status, joined_on)
         select $1, c, 'active', current_date from unnest($2::uuid[]) c",
    )
    .bind(group)
    .bind(&clients)
    .execute(db)
    .await
    .unwrap();
    let lesson_ids: Vec<Uuid> = sqlx::query_scalar(
        "insert into lessons (group_id, room_id, teacher_id, starts_at, ends_at)
         select $1, $2, $3, now() + make_interval(hours => 2 + k), now() + make_interval(hours => 2 + k, mins => 45)
         from generate_series(0, $4 - 1) k returning id",
    )
    .bind(group)
    .bind(room)
    .bind(teacher)
    .bind(lessons as i32)
    .fetch_all(db)
    .await
    .unwrap();
    sqlx::query(
        "insert into lesson_enrolments (lesson_id, client_id)
         select l, c from unnest($1::uuid[]) l, unnest($2::uuid[]) c",
    )
    .bind(&lesson_ids)
    .bind(&clients)
    .execute(db)
    .await
    .unwrap();
    (group, clients, lesson_ids)
}

/// `POST /api/notifications/broadcast` of `text` to `group` on `channel`: 202.
async fn broadcast(api: &ApiProc, group: Uuid, text: &str, channel: &str) {
    let res = reqwest::Client::new()
        .post(format!("{}/api/notifications/broadcast", api.base))
        .bearer_auth(&api.token)
        .json(&json!({"group_id": group, "text": text, "channels": [channel]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
}

/// The `sendMessage` requests the fake answered with 200: (chat id, time received).
async fn delivered(fakes: &FakesProc) -> Vec<(i64, DateTime<Utc>)> {
    fakes
        .requests("telegram")
        .await
        .into_iter()
        .filter(|r| {
            r["path"].as_str().unwrap_or("").ends_with("/sendMessage") && r["status"] == 200
        })
        .map(|r| {
            (
                r["body"]["chat_id"].as_i64().unwrap(),
                r["at"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

async fn states(db: &PgPool) -> HashMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>("select state, count(*) from notifications group by state")
        .fetch_all(db)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn wait_settled(db: &PgPool, n: i64, within: Duration) -> HashMap<String, i64> {
    wait_for("notifications settled", within, || async {
        let s = states(db).await;
        let done: i64 = s
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "queued" | "sending"))
            .map(|(_, v)| v)
            .sum();
        (done >= n).then_some(s)
    })
    .await
}

/// The most messages in any window of `window` (by the fake's clock).
fn busiest(times: &[DateTime<Utc>], window: Duration) -> usize {
    let mut t: Vec<DateTime<Utc>> = times.to_vec();
    t.sort();
    let w = chrono::Duration::from_std(window).unwrap();
    let mut best = 0;
    let mut start = 0;
    for end in 0..t.len() {
        while t[end] - t[start] >= w {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[sqlx::test(migrations = false)]
async fn three_hundred_reminders_through_three_replicas_keep_telegram_limits(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let fakes = FakesProc::start(&[]).await;
    // 100 members × 3 lessons: 300 reminders, three to each chat.
    let (_, clients, _) = centre(&db, 100, 3).await;
    let env = fakes.worker_env();
    let (a, b, c) = tokio::join!(
        worker_with(&url, "replica-a", &env, &[]),
        worker_with(&url, "replica-b", &env, &[]),
        worker_with(&url, "replica-c", &env, &[]),
    );
    let started = std::time::Instant::now();
    enqueue(&db, &[LessonReminders {}]).await;
    let settled = wait_settled(&db, 300, Duration::from_secs(90)).await;
    let took = started.elapsed();
    assert_eq!(settled.get("sent"), Some(&300), "{settled:?}");

    let sends = delivered(&fakes).await;
    assert_eq!(sends.len(), 300, "each reminder sent once");
    let mut per_chat: HashMap<i64, Vec<DateTime<Utc>>> = HashMap::new();
    for (chat, at) in &sends {
        per_chat.entry(*chat).or_default().push(*at);
    }
    assert_eq!(per_chat.len(), clients.len());
    let times: Vec<DateTime<Utc>> = sends.iter().map(|(_, t)| *t).collect();
    let peak = busiest(&times, Duration::from_secs(1));
    let chat_peak = per_chat
        .values()
        .map(|t| busiest(t, Duration::from_secs(1)))
        .max()
        .unwrap();
    eprintln!("300 reminders in {took:?}: busiest second {peak}, busiest chat second {chat_peak}");
    assert!(peak <= 30, "{peak} messages in one second");
    assert_eq!(chat_peak, 1, "two messages to one chat within a second");
    for t in per_chat.values() {
        assert_eq!(t.len(), 3);
    }
    // Every reminder once, recorded with Telegram's message id; a second run creates none.
    let ids: i64 = sqlx::query_scalar(
        "select count(distinct provider_message_id) from notifications where state = 'sent'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(ids, 300);
    let job = enqueue(&db, &[LessonReminders {}]).await;
    let (state, _, result, _, _) = job_done(&db, &job[0], Duration::from_secs(20)).await;
    assert_eq!(
        (state.as_str(), result.unwrap()["created"].clone()),
        ("succeeded", json!(0))
    );
    drop((a, b, c));
}

#[sqlx::test(migrations = false)]
async fn a_worker_killed_during_a_broadcast_of_500_sends_each_message_once(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let fakes = FakesProc::start(&[]).await;
    let api = ApiProc::start(&url).await;
    let (group, _, _) = centre(&db, 500, 1).await;
    // Every Telegram answer takes 300 ms: sends are in flight when the kill comes.
    fakes
        .fault(json!({"service": "telegram", "fault": "latency", "latency_ms": 300}))
        .await;
    let env = fakes.worker_env();
    let mut a = worker_with(&url, "replica-a", &env, &FAST).await;
    broadcast(&api, group, "Концерт в субботу в 18:00", "telegram").await;
    // SIGKILL the only replica once 100 messages went out and others are on their way.
    wait_for(
        "100 sends and more in flight",
        Duration::from_secs(60),
        || async {
            let in_flight: i64 =
                sqlx::query_scalar("select count(*) from notifications where state = 'sending'")
                    .fetch_one(&db)
                    .await
                    .unwrap();
            (in_flight > 0 && delivered(&fakes).await.len() >= 100).then_some(())
        },
    )
    .await;
    a.kill().await;
    let b = worker_with(&url, "replica-b", &env, &FAST).await;
    let settled = wait_settled(&db, 500, Duration::from_secs(90)).await;

    let sends = delivered(&fakes).await;
    let mut per_chat: HashMap<i64, usize> = HashMap::new();
    for (chat, _) in &sends {
        *per_chat.entry(*chat).or_default() += 1;
    }
    let twice: Vec<_> = per_chat.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    assert_eq!(
        per_chat.len(),
        500,
        "every member got the message: {settled:?}"
    );
    // Notices that were in flight when the worker died: the message went out once, the row
    // says it may have been delivered rather than risking a second one.
    let unsure: i64 = sqlx::query_scalar(
        "select count(*) from notifications where state = 'failed' and error like '%may have been delivered%'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        settled.get("sent").copied().unwrap_or(0) + unsure,
        500,
        "{settled:?}"
    );
    eprintln!("broadcast with a SIGKILL: {settled:?}, in flight at the kill: {unsure}");
    assert!(
        unsure > 0,
        "the kill caught no send in flight: the window was not tested"
    );
    drop(b);
}

#[sqlx::test(migrations = false)]
async fn telegram_429_holds_the_bot_and_403_skips_without_retry(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let fakes = FakesProc::start(&[]).await;
    let api = ApiProc::start(&url).await;
    let (group, clients, _) = centre(&db, 3, 1).await;
    // The third member's chat has blocked the bot.
    sqlx::query("update clients set telegram_chat_id = 5403 where id = $1")
        .bind(clients[2])
        .execute(&db)
        .await
        .unwrap();
    fakes
        .fault(json!({"service": "telegram", "fault": "status", "status": 429, "retry_after_s": 3, "times": 1}))
        .await;
    let _w = worker_with(&url, "replica-a", &fakes.worker_env(), &[NO_REMINDERS]).await;
    broadcast(&api, group, "Репетиция переносится", "telegram").await;
    let settled = wait_settled(&db, 3, Duration::from_secs(30)).await;
    assert_eq!(settled.get("sent"), Some(&2), "{settled:?}");
    assert_eq!(settled.get("skipped"), Some(&1), "{settled:?}");

    let log = fakes.requests("telegram").await;
    let sends: Vec<&Value> = log
        .iter()
        .filter(|r| r["path"].as_str().unwrap_or("").ends_with("/sendMessage"))
        .collect();
    let throttled = sends.iter().position(|r| r["status"] == 429).unwrap();
    let at = |r: &Value| r["at"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
    let after = at(sends[throttled]) + chrono::Duration::seconds(3);
    for r in &sends[throttled + 1..] {
        assert!(
            at(r) >= after,
            "a send {} after the 429 came before retry_after",
            at(r)
        );
    }
    // 403: skipped, the chat marked blocked, asked once (the 429 may have hit it first).
    let blocked: Vec<_> = sends
        .iter()
        .filter(|r| r["body"]["chat_id"] == 5403 && r["status"] != 429)
        .collect();
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0]["status"], 403);
    let (state, error, attempts): (String, String, i32) =
        sqlx::query_as("select state, error, attempts from notifications where client_id = $1")
            .bind(clients[2])
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(state, "skipped");
    assert!(
        attempts <= 2,
        "once for the 403 (and once more if the 429 hit it first)"
    );
    assert!(error.contains("blocked"), "{error}");
    let marked: bool =
        sqlx::query_scalar("select telegram_blocked_at is not null from clients where id = $1")
            .bind(clients[2])
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(marked);
    // The throttled notice's job snoozed: no attempt spent.
    let attempts: Vec<i32> = sqlx::query_scalar(
        "select j.attempts from notifications n join job_runs j on j.id = n.job_id
         where n.state = 'sent'",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(attempts, vec![1, 1]);
}

/// Sets one client's e-mail-only notice up: its Telegram chat unlinked.
async fn email_only(db: &PgPool) {
    sqlx::query("update clients set telegram_chat_id = null")
        .execute(db)
        .await
        .unwrap();
}

#[sqlx::test(migrations = false)]
async fn smtp_451_is_retried_550_5_1_1_marks_the_address_and_the_breaker_pauses_and_recovers(
    db: PgPool,
) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let fakes = FakesProc::start(&[]).await;
    let api = ApiProc::start(&url).await;
    let (group, clients, _) = centre(&db, 8, 1).await;
    email_only(&db).await;
    let mut extra = FAST.to_vec();
    extra.extend([
        ("WORKER_RATE_LIMITS", "email=1000/1s;email:day=100000000/1d"),
        ("NOTIFY_BREAKER_PAUSE_SECS", "6"),
    ]);
    let w = worker_with(&url, "replica-a", &fakes.worker_env(), &extra).await;

    // 1. member0: the relay answers 451 once → retried and sent. member1: 550 5.1.1 → failed,
    // the address marked, never tried again.
    fakes
        .fault(json!({"service": "smtp", "stage": "rcpt", "path_prefix": "member0@", "fault": "status", "status": 451, "message": "4.7.1 Try again later", "times": 1}))
        .await;
    fakes
        .fault(json!({"service": "smtp", "stage": "rcpt", "path_prefix": "member1@", "fault": "status", "status": 550, "message": "5.1.1 User unknown"}))
        .await;
    sqlx::query("delete from group_members where client_id <> all($1)")
        .bind(&clients[..2])
        .execute(&db)
        .await
        .unwrap();
    broadcast(&api, group, "Письмо", "email").await;
    let settled = wait_settled(&db, 2, Duration::from_secs(60)).await;
    assert_eq!(settled.get("sent"), Some(&1), "{settled:?}");
    assert_eq!(settled.get("failed"), Some(&1), "{settled:?}");
    let (attempts, message_id): (i32, String) = sqlx::query_as(
        "select attempts, provider_message_id from notifications where client_id = $1",
    )
    .bind(clients[0])
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(attempts, 2, "451 then sent");
    let mails = fakes.requests("smtp").await;
    let data: Vec<&Value> = mails
        .iter()
        .filter(|m| m["method"] == "DATA" && m["status"] == 250)
        .collect();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["body"]["message_id"], message_id);
    let bad: Option<String> =
        sqlx::query_scalar("select email_bad_reason from clients where id = $1")
            .bind(clients[1])
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(bad.unwrap().contains("5.1.1"));

    // 2. The relay refuses every connection with 421: five failures open the breaker; a
    // second broadcast meanwhile waits (snoozes, nothing fails); once the relay is back, the
    // probe after the pause closes the breaker and everything is sent.
    fakes.reset().await;
    sqlx::query(
        "insert into group_members (group_id, client_id, status, joined_on)
         select $1, c, 'active', current_date from unnest($2::uuid[]) c",
    )
    .bind(group)
    .bind(&clients[2..])
    .execute(&db)
    .await
    .unwrap();
    sqlx::query("delete from group_members where client_id = any($1)")
        .bind(&clients[..2])
        .execute(&db)
        .await
        .unwrap();
    fakes
        .fault(json!({"service": "smtp", "stage": "connect", "fault": "status", "status": 421, "message": "4.7.0 Try again later"}))
        .await;
    broadcast(&api, group, "Письмо", "email").await;
    wait_for("the breaker opens", Duration::from_secs(30), || async {
        let state: Option<String> =
            sqlx::query_scalar("select state from circuit_breakers where key = 'email'")
                .fetch_optional(&db)
                .await
                .unwrap();
        (state.as_deref() == Some("open")).then_some(())
    })
    .await;
    let metrics = reqwest::get(format!("http://{}/metrics", w.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("circuit_breaker_open{key=\"email\"} 1"),
        "{metrics}"
    );
    let ready: Value = reqwest::get(format!("http://{}/api/health/readiness", w.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["breakers"][0]["state"], "open", "{ready}");
    // Sends already connecting when it opened finish failing; then nothing goes out.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let refused_while_open = fakes.requests("smtp").await.len();
    broadcast(&api, group, "Письмо", "email").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        fakes.requests("smtp").await.len(),
        refused_while_open,
        "nothing is tried while the breaker is open"
    );
    fakes.reset().await;
    let settled = wait_settled(&db, 2 + 12, Duration::from_secs(90)).await;
    assert_eq!(
        settled.get("sent"),
        Some(&(1 + 12)),
        "nothing lost: {settled:?}"
    );
    let closed: (String, i32) =
        sqlx::query_as("select state, failures from circuit_breakers where key = 'email'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(closed, ("closed".to_string(), 0), "the probe closed it");
    let log = w.log_text();
    assert!(log.contains("circuit breaker opened"));
    assert!(log.contains("this call is the probe"));
    assert!(log.contains("circuit breaker closed"));
    eprintln!("breaker: {refused_while_open} connections refused before it opened");
    assert!(
        (5..=6).contains(&refused_while_open),
        "{refused_while_open} refused"
    );
}

#[sqlx::test(migrations = false)]
async fn email_at_six_a_minute_sends_twenty_at_that_pace_without_burning_attempts(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let fakes = FakesProc::start(&[]).await;
    let api = ApiProc::start(&url).await;
    let (group, _, _) = centre(&db, 20, 1).await;
    email_only(&db).await;
    let env = fakes.worker_env();
    let slow = [
        ("WORKER_RATE_LIMITS", "email=6/1m;email:day=100000000/1d"),
        NO_REMINDERS,
    ];
    let (a, b) = tokio::join!(
        worker_with(&url, "replica-a", &env, &slow),
        worker_with(&url, "replica-b", &env, &slow),
    );
    broadcast(&api, group, "Письмо", "email").await;
    let settled = wait_settled(&db, 20, Duration::from_secs(240)).await;
    assert_eq!(settled.get("sent"), Some(&20), "{settled:?}");
    let mut times: Vec<DateTime<Utc>> = fakes
        .requests("smtp")
        .await
        .iter()
        .filter(|m| m["method"] == "DATA" && m["status"] == 250)
        .map(|m| m["at"].as_str().unwrap().parse().unwrap())
        .collect();
    times.sort();
    assert_eq!(times.len(), 20);
    let gaps: Vec<i64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .collect();
    let tightest = *gaps.iter().min().unwrap();
    eprintln!(
        "20 mails at 6/min: {:?} in all, tightest gap {tightest} ms",
        times[19] - times[0]
    );
    assert!(tightest >= 9_000, "two mails {tightest} ms apart");
    let attempts: HashSet<i32> = sqlx::query_scalar(
        "select j.attempts from notifications n join job_runs j on j.id = n.job_id",
    )
    .fetch_all(&db)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(
        attempts,
        HashSet::from([1]),
        "waiting for the limit spends no attempt"
    );
    drop((a, b));
}
