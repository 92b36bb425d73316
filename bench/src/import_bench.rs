//! `artsvao-bench timepad`: the Timepad import of 50,000 orders (200 events) from the fakes
//! with no injected latency, run as the real `timepad_import` job in a worker process (release
//! build): run time from the ledger, orders/s, the worker's peak RSS. The rate limit is lifted
//! for the run (`WORKER_RATE_LIMITS=timepad=100000/1s`): the figure is the import's own speed.
use std::{process::Stdio, time::Duration};

use anyhow::Context;
use jobs::{kinds::imports::TimepadImport, Job};
use sqlx::PgPool;
use tokio::process::{Child, Command};

use crate::Workers;

/// Starts `artsvao-fakes` (built next to this binary) with `args` on free ports; returns the
/// process (killed when dropped) and its HTTP base URL.
pub(crate) async fn start_fakes(args: &[&str]) -> anyhow::Result<(Child, String)> {
    let exe = std::env::current_exe()?.with_file_name("artsvao-fakes");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let smtp = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let fakes = Command::new(&exe)
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--smtp-addr", &format!("127.0.0.1:{smtp}")])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} (scripts/bench builds it)", exe.display()))?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok((fakes, format!("http://127.0.0.1:{port}")))
}

pub async fn run(db: &PgPool, url: &str, orders: usize) -> anyhow::Result<()> {
    let events = (orders / 250).max(1).to_string();
    let (mut fakes, base) = start_fakes(&[
        "--timepad-events",
        &events,
        "--timepad-orders",
        &orders.to_string(),
    ])
    .await?;
    let base = format!("{base}/timepad");
    let env = [
        ("TIMEPAD_URL", base.as_str()),
        ("TIMEPAD_TOKEN", "fakes-timepad-token"),
        ("TIMEPAD_ORGANIZATION_ID", "123456"),
        ("WORKER_RATE_LIMITS", "timepad=100000/1s"),
    ];
    let workers = Workers::start_for(url, 1, TimepadImport::KIND, &env).await?;
    let pid = workers
        .0
        .first()
        .and_then(|c| c.id())
        .ok_or_else(|| anyhow::anyhow!("worker pid"))?;
    let (idle, _) = crate::export_bench::rss_mb(pid)?;
    let (ms, result) = crate::run_job(db, &TimepadImport::default()).await?;
    let (_, peak) = crate::export_bench::rss_mb(pid)?;
    // A second run over unchanged data: every order read and compared, nothing written.
    let (again_ms, _) = crate::run_job(db, &TimepadImport::default()).await?;
    workers.stop().await;
    let _ = fakes.kill().await;
    let imported = result["orders"]["new"].as_i64().unwrap_or_default();
    println!(
        "Timepad import from the fakes: {} events, {imported} orders, {} pages; clients created {}, matched {}, conflicts {}",
        result["events"]["new"], result["pages"], result["clients"]["created"],
        result["clients"]["matched"], result["clients"]["conflicts"]
    );
    println!();
    println!("| measurement | value | target |");
    println!("|---|---:|---:|");
    println!("| first import: run time (ledger) | **{:.0} ms** | |", ms);
    println!(
        "| first import: orders/s | **{:.0}** | ≥ 5,000 |",
        imported as f64 / (ms / 1000.0)
    );
    println!(
        "| second import of unchanged data: run time; orders/s | {:.0} ms; {:.0} | |",
        again_ms,
        imported as f64 / (again_ms / 1000.0)
    );
    println!(
        "| worker peak RSS (VmHWM); idle RSS before | **{peak:.0} MB**; {idle:.0} MB | ≤ 100 MB |"
    );
    Ok(())
}
