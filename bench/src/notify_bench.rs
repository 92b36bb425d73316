//! `artsvao-bench notify`: delivery of Telegram notices by two release worker processes
//! against the fake Telegram with its limits lifted (`telegram=off`: the figure is the
//! pipeline's — outbox row, delivery job, breaker, `sending`, the HTTP call, `sent`). Notices
//! are created as the api and jobs create them, rows and delivery jobs in one transaction.
//!
//! 1. Burst: 10,000 notices created at once (500 per transaction): delivered per second.
//! 2. Paced: 2,000 more created 10 every 20 ms (500/s, under the burst's rate): the latency of
//!    each from its row's `created_at` to the moment the fake received its `sendMessage` (both
//!    clocks are this machine's). In a burst that latency is mostly the queue's length.
use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use jobs::{kinds::notifications::notify, Requester};
use serde_json::{json, Value};
use shared::domain::notifications::{Channel, NewNotice, Recipient, Template};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{percentile, Workers};

const BURST_BATCH: usize = 500;
const PACED: usize = 2_000;
const PACED_BATCH: usize = 10;
const PACED_EVERY: Duration = Duration::from_millis(20);

/// `n` clients with chats of their own (none ending in 403 / 404, which the fake answers as
/// blocked / missing), numbered from `from`.
async fn clients(db: &PgPool, from: usize, n: usize) -> anyhow::Result<Vec<(Uuid, i64)>> {
    Ok(sqlx::query_as(
        "insert into clients (last_name, first_name, telegram_chat_id)
         select 'Получаева' || k, 'Анна', 9000001 + k * 10 from generate_series($1, $2 - 1) k
         returning id, telegram_chat_id",
    )
    .bind(from as i32)
    .bind((from + n) as i32)
    .fetch_all(db)
    .await?)
}

/// Creates the notices of `batch` (rows and delivery jobs, one transaction).
async fn create(db: &PgPool, batch: &[(Uuid, i64)]) -> anyhow::Result<()> {
    let notices: Vec<NewNotice> = batch
        .iter()
        .map(|(client, _)| NewNotice {
            recipient: Recipient::Client(*client),
            channel: Some(Channel::Telegram),
            template: Template::Broadcast,
            params: json!({"text": "Концерт в субботу в 18:00"}),
            dedup_key: format!("bench:{client}"),
            not_after: None,
        })
        .collect();
    let mut tx = db.begin().await?;
    let enqueued = notify(&mut tx, &Requester::system(), &notices).await?;
    tx.commit().await?;
    jobs::committed(&enqueued);
    Ok(())
}

/// Waits until no notice is queued or sending.
async fn drained(db: &PgPool) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        let open: i64 = sqlx::query_scalar(
            "select count(*) from notifications where state in ('queued', 'sending')",
        )
        .fetch_one(db)
        .await?;
        if open == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{open} notices never sent"
        );
        // Rarely: the count itself reads the outbox the workers are writing.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn run(db: &PgPool, url: &str, n: usize) -> anyhow::Result<()> {
    let (mut fakes, base) = crate::import_bench::start_fakes(&[]).await?;
    let telegram = format!("{base}/telegram");
    let env = [
        ("TELEGRAM_URL", telegram.as_str()),
        (
            "TELEGRAM_BOT_TOKEN",
            "123456789:AAFakeTelegramTokenForArtsvaoTests1",
        ),
        ("WORKER_RATE_LIMITS", "telegram=off;telegram:chat=off"),
        ("WORKER_CRON", "lesson_reminders=off"),
    ];
    let workers = Workers::start_for(url, 2, "notification", &env).await?;

    // 1. The burst.
    let burst = clients(db, 0, n).await?;
    for batch in burst.chunks(BURST_BATCH) {
        create(db, batch).await?;
    }
    drained(db).await?;
    let (sent, first, last): (i64, DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
        "select count(*), min(created_at), max(finished_at) from notifications
         where state = 'sent'",
    )
    .fetch_one(db)
    .await?;
    let rate = sent as f64 / ((last - first).num_milliseconds() as f64 / 1000.0);

    // 2. Paced.
    let paced = clients(db, n, PACED).await?;
    let mut next = tokio::time::Instant::now();
    for batch in paced.chunks(PACED_BATCH) {
        create(db, batch).await?;
        next += PACED_EVERY;
        tokio::time::sleep_until(next).await;
    }
    drained(db).await?;
    workers.stop().await;

    let created: HashMap<Uuid, DateTime<Utc>> =
        sqlx::query_as("select client_id, created_at from notifications")
            .fetch_all(db)
            .await?
            .into_iter()
            .collect();
    let chat_of: HashMap<i64, Uuid> = burst
        .iter()
        .chain(&paced)
        .map(|(id, chat)| (*chat, *id))
        .collect();
    let paced_chats: std::collections::HashSet<i64> = paced.iter().map(|(_, c)| *c).collect();
    let log: Value = reqwest::get(format!("{base}/_fakes/requests?service=telegram"))
        .await?
        .json()
        .await?;
    let _ = fakes.kill().await;
    let (mut burst_ms, mut paced_ms) = (Vec::new(), Vec::new());
    let mut received = 0;
    for r in log["items"].as_array().cloned().unwrap_or_default() {
        let (Some(chat), Some(at)) = (r["body"]["chat_id"].as_i64(), r["at"].as_str()) else {
            continue;
        };
        received += 1;
        let at: DateTime<Utc> = at.parse()?;
        if let Some(c) = chat_of.get(&chat).and_then(|c| created.get(c)) {
            let ms = (at - *c).num_microseconds().unwrap_or(0) as f64 / 1000.0;
            if paced_chats.contains(&chat) {
                paced_ms.push(ms);
            } else {
                burst_ms.push(ms);
            }
        }
    }
    burst_ms.sort_by(f64::total_cmp);
    paced_ms.sort_by(f64::total_cmp);
    println!(
        "Telegram notices delivered by 2 worker processes to the fake Telegram, limits lifted: \
         a burst of {n} ({BURST_BATCH} per transaction), then {PACED} paced at \
         {PACED_BATCH} every {} ms; {received} requests received by the fake for {} notices",
        PACED_EVERY.as_millis(),
        n + PACED
    );
    println!();
    println!("| measurement | burst of {n} | paced, 500/s | target |");
    println!("|---|---:|---:|---:|");
    println!("| delivered/s (first created → last sent) | **{rate:.0}** | | ≥ 2,000 |");
    for (name, p) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
        let (bold, target) = if name == "p99" {
            ("**", "≤ 100 ms")
        } else {
            ("", "")
        };
        println!(
            "| created → received by the provider, {name} | {:.1} ms | {bold}{:.1} ms{bold} | {target} |",
            percentile(&burst_ms, p),
            percentile(&paced_ms, p),
        );
    }
    Ok(())
}
