//! `artsvao-bench schedule`: bulk scheduling of 100 groups × 2 weekly lessons over an
//! academic year (1 September – 31 May, minus holidays) with 25 members each, run as the real
//! `bulk_schedule` job in a worker process (run time from the ledger), against the audit's
//! approach in the same run: a loop of single-row inserts (a lesson, then its members one by
//! one), in one transaction.
use std::time::Instant;

use chrono::{Datelike, NaiveDate, NaiveTime};
use jobs::{
    kinds::scheduling::{BulkSchedule, Mode, PlanEntry},
    Job,
};
use sqlx::PgPool;
use uuid::Uuid;

use crate::Workers;

const GROUPS: i32 = 100;
const MEMBERS: i32 = 25;

/// The audit's way: one INSERT per lesson, then one INSERT per member of it.
async fn loop_inserts(db: &PgPool, plan: &BulkSchedule) -> anyhow::Result<(f64, i64, i64)> {
    let t = Instant::now();
    let mut tx = db.begin().await?;
    let (mut lessons, mut enrolments) = (0i64, 0i64);
    for entry in &plan.entries {
        let members: Vec<Uuid> = sqlx::query_scalar(
            "select client_id from group_members where group_id = $1 and status = 'active'",
        )
        .bind(entry.group_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut day = plan.from;
        while day <= plan.to {
            let wd = day.weekday().number_from_monday() as u8;
            if entry.weekdays.contains(&wd) && !plan.holidays.contains(&day) {
                let starts = day
                    .and_time(entry.start_time)
                    .and_local_timezone(shared::time::MOSCOW)
                    .single()
                    .ok_or_else(|| anyhow::anyhow!("time"))?;
                let id: Uuid = sqlx::query_scalar(
                    "insert into lessons (kind, group_id, room_id, teacher_id, starts_at, ends_at)
                     values ('lesson', $1, $2, $3, $4, $5) returning id",
                )
                .bind(entry.group_id)
                .bind(entry.room_id)
                .bind(entry.teacher_id)
                .bind(starts)
                .bind(starts + chrono::Duration::minutes(i64::from(entry.duration_min)))
                .fetch_one(&mut *tx)
                .await?;
                lessons += 1;
                for client in &members {
                    sqlx::query(
                        "insert into lesson_enrolments (lesson_id, client_id) values ($1, $2)",
                    )
                    .bind(id)
                    .bind(client)
                    .execute(&mut *tx)
                    .await?;
                    enrolments += 1;
                }
            }
            day += chrono::Duration::days(1);
        }
    }
    tx.commit().await?;
    Ok((t.elapsed().as_secs_f64() * 1000.0, lessons, enrolments))
}

pub async fn run(db: &PgPool, url: &str) -> anyhow::Result<()> {
    let groups = bench::plan_groups(db, GROUPS, MEMBERS).await?;
    sqlx::query("vacuum analyze").execute(db).await?;
    let (from, to) = (
        NaiveDate::from_ymd_opt(2027, 9, 1).unwrap_or_default(),
        NaiveDate::from_ymd_opt(2028, 5, 31).unwrap_or_default(),
    );
    // Winter break and public holidays.
    let mut holidays: Vec<NaiveDate> = (0..10)
        .map(|d| {
            NaiveDate::from_ymd_opt(2027, 12, 31).unwrap_or_default() + chrono::Duration::days(d)
        })
        .collect();
    holidays.extend(
        [
            (2027, 11, 4),
            (2028, 2, 23),
            (2028, 3, 8),
            (2028, 5, 1),
            (2028, 5, 9),
        ]
        .iter()
        .filter_map(|&(y, m, d)| NaiveDate::from_ymd_opt(y, m, d)),
    );
    // Two weekly lessons per group, spread over the week and the day so nothing clashes
    // (each group also has its own room and teacher).
    let entries: Vec<PlanEntry> = groups
        .iter()
        .enumerate()
        .map(|(i, &(group_id, room_id, teacher_id))| PlanEntry {
            group_id,
            weekdays: vec![1 + (i % 3) as u8, 4 + (i % 3) as u8],
            start_time: NaiveTime::from_hms_opt(10 + (i % 8) as u32, 0, 0).unwrap_or_default(),
            duration_min: 90,
            room_id,
            teacher_id,
        })
        .collect();
    let plan = BulkSchedule {
        plan_id: Uuid::new_v4(),
        from,
        to,
        holidays,
        mode: Mode::AllOrNothing,
        dry_run: false,
        entries,
    };

    let workers = Workers::start_for(url, 1, BulkSchedule::KIND, &[]).await?;
    let mut job_ms = Vec::new();
    let mut result = serde_json::Value::Null;
    for _ in 0..3 {
        let (ms, r) = crate::run_job(
            db,
            &BulkSchedule {
                plan_id: Uuid::new_v4(),
                ..plan.clone()
            },
        )
        .await?;
        job_ms.push(ms);
        result = r;
        sqlx::query("truncate lessons cascade").execute(db).await?;
    }
    workers.stop().await;
    job_ms.sort_by(f64::total_cmp);
    let job = job_ms[job_ms.len() / 2];
    let (loop_ms, lessons, enrolments) = loop_inserts(db, &plan).await?;

    println!(
        "Bulk schedule: {GROUPS} groups × 2 weekly lessons, {} – {}, {} holidays, {MEMBERS} members per group",
        plan.from,
        plan.to,
        plan.holidays.len()
    );
    println!();
    println!("| approach | lessons | enrolments | time | target |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| `bulk_schedule` job in a worker process (median of 3; ledger run time) | {} | {} | **{job:.0} ms** | ≤ 3,000 ms |",
        result["lessons_created"], result["enrolments_created"]
    );
    println!(
        "| loop of single-row inserts, one transaction (the audit's approach) | {lessons} | {enrolments} | {loop_ms:.0} ms | |"
    );
    println!("| speed-up | | | **{:.0}×** | ≥ 20× |", loop_ms / job);
    println!();
    println!(
        "Job phases, last run (ms since the start): {}",
        result["phases_ms"]
    );
    Ok(())
}
