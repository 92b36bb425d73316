//! `artsvao-bench calls`: pickup of click-to-call jobs while other queues are full. Two
//! release worker processes run the `call` and `timesheet_export` kinds over the demo centre;
//! 1,000 real `timesheet_export` jobs (last month, 20+ groups each, busy on both cores) are
//! queued first, then 200 calls are requested one by one 50 ms apart — each a `call_requests`
//! row and its job in one transaction, as the api writes them — then a burst of 40 at once
//! (more than the 2 × 8 call slots), all dialled against the fake Novofon (rate limit lifted:
//! the figure is the queue's). Pickup = the ledger's `started_at − created_at` of each call
//! job (database clock).
use std::time::{Duration, Instant};

use chrono::{Datelike, Utc};
use jobs::{
    kinds::{calls::Call, exports::TimesheetExport},
    Job, Requester,
};
use shared::domain::calls::{self, CallPlan};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{percentile, Workers};

/// Calls in the burst: more than two processes' call slots.
const BURST: usize = 40;

/// Waits until every job of `ids` succeeded; their pickups in ms, sorted.
async fn pickups(db: &PgPool, ids: &[String]) -> anyhow::Result<Vec<f64>> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let rows: Vec<Option<f64>> = sqlx::query_scalar(
            "select extract(epoch from started_at - created_at)::float8 * 1000
             from job_runs where id = any($1) and state = 'succeeded'",
        )
        .bind(ids)
        .fetch_all(db)
        .await?;
        if rows.len() == ids.len() {
            let mut v: Vec<f64> = rows.into_iter().flatten().collect();
            v.sort_by(f64::total_cmp);
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < deadline, "calls did not all succeed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Requests a call of `user` to `client` as the api does; its job id.
async fn request(db: &PgPool, user: Uuid, client: Uuid) -> anyhow::Result<String> {
    let mut tx = db.begin().await?;
    let plan: CallPlan = calls::plan(&mut tx, user, false, client, None).await?;
    let call_id = Uuid::new_v4();
    let job = jobs::enqueue(&mut tx, &Requester::system(), &Call { call_id }).await?;
    calls::insert(&mut tx, call_id, &plan, &job.job_id, None).await?;
    tx.commit().await?;
    Ok(job.job_id)
}

pub async fn run(db: &PgPool, url: &str, calls_n: usize, backlog: usize) -> anyhow::Result<()> {
    let seeded = api::seed::seed_demo(db).await?;
    sqlx::query("vacuum analyze").execute(db).await?;
    let (mut fakes, base) = crate::import_bench::start_fakes(&[]).await?;
    let novofon = format!("{base}/novofon/v4.0");
    let env = [
        ("NOVOFON_URL", novofon.as_str()),
        ("NOVOFON_ACCESS_TOKEN", "fakes-novofon-access-token"),
        ("NOVOFON_VIRTUAL_NUMBER", "74993720692"),
        ("WORKER_RATE_LIMITS", "novofon=100000/1s"),
    ];
    let queues = format!("{},{}", Call::KIND, TimesheetExport::KIND);
    let workers = Workers::start_for(url, 2, &queues, &env).await?;

    // A caller with an extension, and a client per call.
    let user: Uuid = sqlx::query_scalar(
        "insert into users (email, password_hash, role, extension)
         values ('bench-caller@artsvao.local', 'x', 'manager', '101') returning id",
    )
    .fetch_one(db)
    .await?;
    let clients: Vec<Uuid> = sqlx::query_scalar(
        "insert into clients (last_name, first_name, phone)
         select 'Звонкова' || n, 'Анна', '+7917' || lpad(n::text, 7, '0')
         from generate_series(1, $1) n returning id",
    )
    .bind((calls_n + BURST) as i32)
    .fetch_all(db)
    .await?;

    // The export queue, full: real timesheets of the demo centre, each of a distinct set of
    // 20+ groups (distinct sets, so no export joins another by its dedup key).
    let groups: Vec<Uuid> = sqlx::query_scalar("select id from study_groups order by name")
        .fetch_all(db)
        .await?;
    anyhow::ensure!(!groups.is_empty(), "the demo centre has no groups");
    let today = Utc::now().with_timezone(&shared::time::MOSCOW).date_naive();
    let month =
        shared::time::Month::of(today.with_day(1).unwrap_or(today) - chrono::Duration::days(1));
    let exports: Vec<TimesheetExport> = (0..backlog)
        .map(|k| TimesheetExport {
            month,
            group_ids: Some(
                (0..20 + k / groups.len())
                    .map(|j| groups[(k + j) % groups.len()])
                    .collect(),
            ),
            teacher_id: None,
            requested_by: user,
        })
        .collect();
    let mut tx = db.begin().await?;
    jobs::enqueue_many(&mut tx, &Requester::system(), &exports).await?;
    tx.commit().await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let queued_at_start: i64 =
        sqlx::query_scalar("select count(*) from job_runs where kind = $1 and state = 'queued'")
            .bind(TimesheetExport::KIND)
            .fetch_one(db)
            .await?;

    let mut spaced_ids = Vec::with_capacity(calls_n);
    for client in &clients[..calls_n] {
        let started = Instant::now();
        spaced_ids.push(request(db, user, *client).await?);
        tokio::time::sleep(Duration::from_millis(50).saturating_sub(started.elapsed())).await;
    }
    let spaced = pickups(db, &spaced_ids).await?;
    let burst_ids: Vec<String> =
        futures::future::try_join_all(clients[calls_n..].iter().map(|c| request(db, user, *c)))
            .await?;
    let burst = pickups(db, &burst_ids).await?;
    let (exported, still_queued): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where state = 'succeeded'),
                count(*) filter (where state = 'queued')
         from job_runs where kind = $1",
    )
    .bind(TimesheetExport::KIND)
    .fetch_one(db)
    .await?;
    workers.stop().await;
    let _ = fakes.kill().await;
    let placed: i64 =
        sqlx::query_scalar("select count(*) from call_requests where state = 'placed'")
            .fetch_one(db)
            .await?;
    println!(
        "Call pickup over the demo centre ({} groups): {backlog} timesheet exports queued first \
         ({queued_at_start} still queued when the calls began, {exported} done and \
         {still_queued} still queued at the end); {calls_n} calls 50 ms apart, \
         then {BURST} at once; {placed} placed; 2 worker processes",
        seeded.groups
    );
    println!();
    println!("| measurement | calls 50 ms apart | burst of {BURST} | target |");
    println!("|---|---:|---:|---:|");
    for (name, p) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
        let (bold, target) = if name == "p99" {
            ("**", "≤ 50 ms")
        } else {
            ("", "")
        };
        println!(
            "| pickup {name} | {bold}{:.1} ms{bold} | {:.1} ms | {target} |",
            percentile(&spaced, p),
            percentile(&burst, p),
        );
    }
    Ok(())
}
