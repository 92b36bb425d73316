//! `artsvao-bench export`: the timesheet export over the demo centre (300 groups, ~8,000
//! member rows, last month's lessons and marks).
//!
//! - in process: loading the data, and writing the workbook from data already in memory (all
//!   groups, and one group), median of several runs;
//! - the whole job in a real worker process (`artsvao-testworker`, production runtime): run
//!   time from the ledger (`started_at` → `finished_at`: load, write, store the artifact) and
//!   the process's peak RSS (`VmHWM`), next to its RSS when idle.
use std::time::{Duration, Instant};

use chrono::{Datelike, Utc};
use jobs::{kinds::exports::TimesheetExport, Job};
use shared::time::Month;
use sqlx::PgPool;
use uuid::Uuid;
use worker::handlers::timesheet_export::{self as timesheets, Timesheet};

use crate::Workers;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `VmRSS` and `VmHWM` (peak) of a process, in MB.
pub(crate) fn rss_mb(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .unwrap_or_default()
            / 1024.0
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

struct Figures {
    write_all: f64,
    write_one: f64,
    job_all: f64,
    job_one: f64,
    idle_rss: f64,
    peak_rss: f64,
}

async fn measure(db: &PgPool, url: &str, sheet: &Timesheet) -> anyhow::Result<Figures> {
    let mut writes = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        timesheets::write_workbook(sheet)?;
        writes.push(ms(t.elapsed()));
    }
    let one = Timesheet {
        groups: sheet.groups[..1].to_vec(),
        ..sheet.clone()
    };
    let mut one_writes = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        timesheets::write_workbook(&one)?;
        one_writes.push(ms(t.elapsed()));
    }

    let workers = Workers::start_for(url, 1, TimesheetExport::KIND, &[]).await?;
    let pid = workers
        .0
        .first()
        .and_then(|c| c.id())
        .ok_or_else(|| anyhow::anyhow!("worker pid"))?;
    let (idle_rss, _) = rss_mb(pid)?;
    let all = TimesheetExport {
        month: sheet.month,
        group_ids: None,
        teacher_id: None,
        requested_by: Uuid::nil(),
    };
    let mut job_all = Vec::new();
    for _ in 0..5 {
        job_all.push(crate::run_job(db, &all).await?.0);
    }
    let single = TimesheetExport {
        group_ids: Some(vec![sheet.groups[0].id]),
        ..all.clone()
    };
    let mut job_one = Vec::new();
    for _ in 0..10 {
        job_one.push(crate::run_job(db, &single).await?.0);
    }
    let (_, peak_rss) = rss_mb(pid)?;
    workers.stop().await;
    Ok(Figures {
        write_all: median(writes),
        write_one: median(one_writes),
        job_all: median(job_all),
        job_one: median(job_one),
        idle_rss,
        peak_rss,
    })
}

pub async fn run(db: &PgPool, url: &str) -> anyhow::Result<()> {
    let seeded = api::seed::seed_demo(db).await?;
    sqlx::query("vacuum analyze").execute(db).await?;
    let today = Utc::now().with_timezone(&shared::time::MOSCOW).date_naive();
    let month = Month::of(today.with_day(1).unwrap_or(today) - chrono::Duration::days(1));
    eprintln!(
        "demo centre: {} groups, {} memberships, {} lessons; month {}",
        seeded.groups,
        seeded.memberships,
        seeded.lessons,
        month.key()
    );

    let mut loads = Vec::new();
    let mut sheet = None;
    for _ in 0..5 {
        let t = Instant::now();
        sheet = Some(timesheets::load(db, month, None, None).await?);
        loads.push(ms(t.elapsed()));
    }
    let sheet = sheet.ok_or_else(|| anyhow::anyhow!("no data"))?;
    let rows: usize = sheet.groups.iter().map(|g| g.members.len()).sum();
    let lessons: u32 = sheet.groups.iter().map(|g| g.lessons()).sum();
    let size = timesheets::write_workbook(&sheet)?.len();

    let f = measure(db, url, &sheet).await?;

    println!(
        "Timesheet export, {} groups, {rows} member rows, {lessons} lessons, month {} ({} days); file {:.0} KB; load (4 queries, median of 5): {:.0} ms",
        sheet.groups.len(),
        month.key(),
        month.days(),
        size as f64 / 1024.0,
        median(loads)
    );
    println!();
    println!("| measurement | median | runs | target |");
    println!("|---|---:|---:|---:|");
    println!(
        "| write the workbook from memory, all groups | **{:.0} ms** | 5 | ≤ 300 ms |",
        f.write_all
    );
    println!(
        "| write the workbook from memory, 1 group | {:.1} ms | 20 | |",
        f.write_one
    );
    println!(
        "| whole job in a worker process, all groups (load, write, store) | **{:.0} ms** | 5 | ≤ 1,000 ms |",
        f.job_all
    );
    println!(
        "| whole job in a worker process, 1 group | **{:.1} ms** | 10 | ≤ 30 ms |",
        f.job_one
    );
    println!(
        "| worker peak RSS (VmHWM) after the 15 jobs; idle RSS before | **{:.0} MB**; {:.0} MB | | ≤ 100 MB |",
        f.peak_rss, f.idle_rss
    );
    Ok(())
}
