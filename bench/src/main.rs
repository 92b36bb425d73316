//! `artsvao-bench`: the queue benchmark. Uses a fresh database on the server of
//! `DATABASE_URL`, the real enqueue path and real `artsvao-testworker` processes (the production
//! worker runtime with the ledger), and prints a Markdown table.
//!
//! - drain: N no-op jobs committed at once while 1 (then 2) idle worker processes wait; time
//!   from the commit to the last job's ledger `finished_at`.
//! - pickup: 200 jobs enqueued one by one ~50 ms apart with 2 idle workers; latency from just
//!   before each enqueue's COMMIT to its handler's first line.
use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context;
use bench::{now_us, Noop};
use clap::Parser;
use jobs::{Job, Requester};
use shared::config::DbConfig;
use sqlx::PgPool;
use tokio::process::{Child, Command};

mod api_bench;
mod call_bench;
mod chaos;
mod export_bench;
mod import_bench;
mod notify_bench;
mod schedule_bench;

#[derive(Parser)]
#[command(
    name = "artsvao-bench",
    about = "ARTSVAO benchmarks: `queue` (default), `api`, `export`, `schedule`, `timepad`, `calls`, `notify`; and `chaos`"
)]
struct Args {
    /// `queue`: drain and pickup of the job runtime; `api`: CRM read paths under an open-loop
    /// load (latency and CPU per request of the api process and PostgreSQL);
    /// `export`: the timesheet export (writing alone, and the whole job in a worker process);
    /// `schedule`: bulk scheduling against a loop of single-row inserts; `timepad`: the Timepad
    /// import of 50,000 orders from the fakes; `calls`: pickup of click-to-call jobs while
    /// other queues are full; `notify`: delivery of 10,000 Telegram notices; `chaos`: the soak of
    /// the runtime under failure (a private PostgreSQL cluster, not `DATABASE_URL`).
    #[arg(default_value = "queue", value_parser = ["queue", "api", "export", "schedule", "timepad", "calls", "notify", "chaos"])]
    what: String,
    /// timepad: orders to import.
    #[arg(long, default_value_t = 50_000)]
    orders: usize,
    /// chaos: jobs to run.
    #[arg(long, default_value_t = 10_000)]
    chaos_jobs: usize,
    /// chaos: time budget in seconds.
    #[arg(long, default_value_t = 300)]
    chaos_seconds: u64,
    /// api: requests per second, sent open loop (each at its scheduled instant, whatever the
    /// answers to earlier ones); 200 is ten times the centre's busiest hour.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// api: seconds of load per scenario (after 200 warm-up requests at the same rate).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Server to use; a fresh database is created on it (and dropped afterwards).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Jobs in each drain run.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Jobs in the pickup-latency run.
    #[arg(long, default_value_t = 200)]
    pickup_jobs: usize,
    /// Spacing of the pickup jobs, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pickup_spacing_ms: u64,
    /// Keep the benchmark database.
    #[arg(long)]
    keep: bool,
}

pub(crate) struct Workers(pub(crate) Vec<Child>);

impl Workers {
    async fn start(url: &str, n: usize) -> anyhow::Result<Self> {
        Self::start_for(url, n, Noop::KIND, &[]).await
    }

    /// `n` worker processes running the job kinds `queues` (comma-separated), with `env` added.
    pub(crate) async fn start_for(
        url: &str,
        n: usize,
        queues: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let bin: PathBuf = exe.with_file_name("artsvao-testworker");
        let mut children = Vec::new();
        let mut ports = Vec::new();
        for i in 0..n {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let child = Command::new(&bin)
                .env("DATABASE_URL", url)
                .env("HOSTNAME", format!("bench-{i}"))
                .env("WORKER_ADDR", format!("127.0.0.1:{port}"))
                .env("WORKER_QUEUES", queues)
                .envs(env.iter().copied())
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            children.push(child);
            ports.push(port);
        }
        let http = reqwest_lite::Client;
        for port in ports {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !http.ready(port).await {
                anyhow::ensure!(Instant::now() < deadline, "worker on {port} never ready");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Let the idle dispatchers settle into their wait.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(Self(children))
    }

    pub(crate) async fn stop(mut self) {
        for c in &mut self.0 {
            if let Some(pid) = c.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
        }
        for c in &mut self.0 {
            let _ = tokio::time::timeout(Duration::from_secs(40), c.wait()).await;
        }
    }
}

/// Readiness probe over a raw TCP connection (keeps the benchmark free of an HTTP client).
mod reqwest_lite {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub struct Client;

    impl Client {
        pub async fn ready(&self, port: u16) -> bool {
            let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                return false;
            };
            let req = "GET /api/health/readiness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            if s.write_all(req.as_bytes()).await.is_err() {
                return false;
            }
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf).await;
            buf.starts_with(b"HTTP/1.1 200")
        }
    }
}

/// Enqueues `job` and waits for it to succeed (5 minutes at most); returns its run time from
/// the ledger (`started_at` → `finished_at`, in ms) and its result.
pub(crate) async fn run_job<J: Job>(
    db: &PgPool,
    job: &J,
) -> anyhow::Result<(f64, serde_json::Value)> {
    let mut tx = db.begin().await?;
    let id = jobs::enqueue(&mut tx, &Requester::system(), job)
        .await?
        .job_id;
    tx.commit().await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let row: (
            String,
            Option<f64>,
            Option<serde_json::Value>,
            Option<String>,
        ) = sqlx::query_as(
            "select state, extract(epoch from finished_at - started_at)::float8 * 1000,
                        result, error
                 from job_runs where id = $1",
        )
        .bind(&id)
        .fetch_one(db)
        .await?;
        match row {
            (state, Some(ms), Some(result), _) if state == "succeeded" => return Ok((ms, result)),
            (state, _, _, error) if state == "failed" || state == "cancelled" => {
                anyhow::bail!("job {id} {state}: {error:?}")
            }
            _ => {}
        }
        anyhow::ensure!(Instant::now() < deadline, "job {id} did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn clear(db: &PgPool) -> anyhow::Result<()> {
    sqlx::query("truncate job_runs cascade").execute(db).await?;
    sqlx::query("delete from apalis.jobs").execute(db).await?;
    Ok(())
}

/// Drain: returns (jobs/s, seconds).
async fn drain(
    db: &PgPool,
    url: &str,
    n: usize,
    processes: usize,
    durable: bool,
) -> anyhow::Result<(f64, f64)> {
    clear(db).await?;
    let sync = if durable { "true" } else { "false" };
    let workers = Workers::start_for(
        url,
        processes,
        Noop::KIND,
        &[("WORKER_ENGINE_SYNC_COMMIT", sync)],
    )
    .await?;
    let jobs = vec![Noop {}; n];
    let mut tx = db.begin().await?;
    for chunk in jobs.chunks(5000) {
        jobs::enqueue_many(&mut tx, &Requester::system(), chunk).await?;
    }
    let t0: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("select clock_timestamp()")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done: i64 = sqlx::query_scalar(
            "select count(*) from job_runs where state = 'succeeded' and kind = $1",
        )
        .bind(Noop::KIND)
        .fetch_one(db)
        .await?;
        if done as usize >= n {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "drain did not finish: {done}/{n}"
        );
        // The end time comes from the ledger, so polling slowly costs no precision.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let end: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("select max(finished_at) from job_runs where kind = $1")
            .bind(Noop::KIND)
            .fetch_one(db)
            .await?;
    workers.stop().await;
    let secs = (end - t0).num_microseconds().unwrap_or_default() as f64 / 1e6;
    Ok((n as f64 / secs, secs))
}

/// Pickup latency: returns sorted latencies in milliseconds.
async fn pickup(db: &PgPool, url: &str, n: usize, spacing: Duration) -> anyhow::Result<Vec<f64>> {
    clear(db).await?;
    let workers = Workers::start(url, 2).await?;
    let mut sent = Vec::with_capacity(n);
    let mut tick = tokio::time::interval(spacing);
    for _ in 0..n {
        tick.tick().await;
        let mut tx = db.begin().await?;
        let e = jobs::enqueue(&mut tx, &Requester::system(), &Noop {}).await?;
        let t = now_us();
        tx.commit().await?;
        sent.push((e.job_id, t));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut latencies = Vec::with_capacity(n);
    for (id, t) in &sent {
        let started = loop {
            let r: Option<serde_json::Value> = sqlx::query_scalar(
                "select result from job_runs where id = $1 and state = 'succeeded'",
            )
            .bind(id)
            .fetch_one(db)
            .await?;
            if let Some(r) = r {
                break r["started_us"].as_i64().unwrap_or_default();
            }
            anyhow::ensure!(Instant::now() < deadline, "pickup job {id} never ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        latencies.push((started - t) as f64 / 1000.0);
    }
    workers.stop().await;
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.what == "chaos" {
        shared::telemetry::init(&shared::config::LogConfig {
            log_format: "pretty".into(),
        });
        return chaos::run(args.chaos_jobs, Duration::from_secs(args.chaos_seconds)).await;
    }
    let base = args
        .database_url
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .unwrap_or(args.database_url.clone());
    let name = format!("artsvao_bench_{}", now_us());
    let url = format!("{base}/{name}");
    let config = DbConfig::for_url(&url);
    shared::db::ensure_database(&config).await?;
    let db = shared::db::connect(&config, "artsvao-bench").await?;
    jobs::engine::migrate(&db).await?;
    // SIGINT or SIGTERM drops the running benchmark, whose child processes die with their
    // handles, and still drops its database.
    let interrupted = shared::shutdown::on_signal();
    let result = tokio::select! {
        result = bench(&args, &db, &url) => result,
        () = interrupted.cancelled() => Err(anyhow::anyhow!("interrupted")),
    };
    db.close().await;
    drop_database(&args, &name).await?;
    result
}

async fn bench(args: &Args, db: &PgPool, url: &str) -> anyhow::Result<()> {
    match args.what.as_str() {
        "queue" => {}
        "api" => return api_bench::run(db, url, args.rate, args.seconds).await,
        "export" => return export_bench::run(db, url).await,
        "timepad" => return import_bench::run(db, url, args.orders).await,
        "calls" => return call_bench::run(db, url, 200, 1000).await,
        "notify" => return notify_bench::run(db, url, 10_000).await,
        _ => return schedule_bench::run(db, url).await,
    }
    println!("| run | jobs | processes | outcomes | time | result |");
    println!("|---|---:|---:|---|---:|---|");
    for (processes, durable) in [(1, true), (2, true), (2, false)] {
        let (rate, secs) = drain(db, url, args.jobs, processes, durable).await?;
        let outcomes = if durable { "durable" } else { "async commit" };
        println!(
            "| drain | {} | {processes} | {outcomes} | {secs:.2} s | **{rate:.0} jobs/s** |",
            args.jobs
        );
    }
    let l = pickup(
        db,
        url,
        args.pickup_jobs,
        Duration::from_millis(args.pickup_spacing_ms),
    )
    .await?;
    println!(
        "| pickup | {} | 2 | durable | {} ms apart | p50 **{:.2} ms**, p99 **{:.2} ms**, max **{:.2} ms** |",
        args.pickup_jobs,
        args.pickup_spacing_ms,
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        l[l.len() - 1]
    );
    Ok(())
}

async fn drop_database(args: &Args, name: &str) -> anyhow::Result<()> {
    if !args.keep {
        let admin = sqlx::PgPool::connect(&args.database_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "drop database if exists \"{name}\" with (force)"
        )))
        .execute(&admin)
        .await?;
    }
    Ok(())
}
