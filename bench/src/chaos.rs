//! `artsvao-bench chaos` (`scripts/chaos`): a soak of the runtime under failure. On a private
//! PostgreSQL cluster, 3 worker replicas run N `test_effect` jobs — each calls a simulated
//! provider (served here, outside PostgreSQL) through the idempotency path — while a random
//! replica is SIGKILLed and restarted every 3 s, PostgreSQL is restarted once and stopped once
//! for longer than `dead_after`. When the queue has drained it counts, from the ledger and from
//! what the provider received:
//! `chaos: jobs=N lost=L non_terminal=T duplicate_effects=D executions=E`
//! (lost: jobs that did not succeed; duplicate effects: keys the provider received more than
//! once; executions ≥ N shows the at-least-once re-runs).
use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use axum::{extract::State, routing::post, Json, Router};
use bench::{cluster::PrivateCluster, effect, Effect};
use jobs::{Job, Requester};
use serde_json::Value;
use shared::config::DbConfig;
use sqlx::PgPool;
use tokio::process::{Child, Command};

/// What the simulated provider received.
#[derive(Default)]
struct Received {
    calls: HashMap<String, u32>,
    executions: u64,
}

type Shared = Arc<Mutex<Received>>;

async fn call(State(s): State<Shared>, Json(body): Json<Value>) -> Json<Value> {
    // A provider that takes its time: in-flight calls are what a SIGKILL interrupts.
    let ms = 20 + (bench::now_us().rem_euclid(60)) as u64;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let key = body["key"].as_str().unwrap_or_default().to_string();
    if let Ok(mut r) = s.lock() {
        *r.calls.entry(key).or_default() += 1;
    }
    Json(serde_json::json!({"ok": true}))
}

async fn execution(State(s): State<Shared>) -> Json<Value> {
    if let Ok(mut r) = s.lock() {
        r.executions += 1;
    }
    Json(serde_json::json!({"ok": true}))
}

struct Replica {
    name: String,
    child: Child,
}

fn spawn_replica(
    url: &str,
    provider: SocketAddr,
    name: &str,
    logs: &std::path::Path,
) -> anyhow::Result<Replica> {
    let exe = std::env::current_exe()?.with_file_name("artsvao-testworker");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join(format!("{name}.log")))?;
    let child = Command::new(&exe)
        .env("DATABASE_URL", url)
        .env("HOSTNAME", name)
        .env("WORKER_ADDR", format!("127.0.0.1:{port}"))
        .env("WORKER_QUEUES", Effect::KIND)
        .env("WORKER_CONCURRENCY", "test_effect=8")
        .env("WORKER_HEARTBEAT_MS", "1000")
        .env("WORKER_DEAD_AFTER_MS", "5000")
        .env("DB_ACQUIRE_TIMEOUT_SECS", "3")
        .env("CHAOS_PROVIDER_URL", format!("http://{provider}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    Ok(Replica {
        name: name.to_string(),
        child,
    })
}

/// (non-terminal, not succeeded among terminal) jobs; `None` while the database is away.
async fn progress(db: &PgPool) -> Option<(i64, i64)> {
    sqlx::query_as(
        "select count(*) filter (where state in ('queued', 'running')),
                count(*) filter (where state in ('failed', 'cancelled'))
         from job_runs where kind = $1",
    )
    .bind(Effect::KIND)
    .fetch_one(db)
    .await
    .ok()
}

pub async fn run(jobs: usize, budget: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let cluster = PrivateCluster::try_start()?;
    let url = cluster.url("artsvao_chaos");
    let received: Shared = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let provider = listener.local_addr()?;
    let app = Router::new()
        .route("/calls", post(call))
        .route("/executions", post(execution))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut config = DbConfig::for_url(&url);
    config.db_acquire_timeout_secs = 3;
    let db = shared::db::connect_at_start(&config, "artsvao-chaos").await?;
    jobs::engine::migrate(&db).await?;
    sqlx::query(effect::TABLE).execute(&db).await?;
    let logs = PathBuf::from("target/chaos-logs");
    std::fs::create_dir_all(&logs)?;
    println!("chaos: {jobs} jobs, 3 replicas, logs in {}", logs.display());

    let mut replicas = Vec::new();
    for i in 0..3 {
        replicas.push(spawn_replica(
            &url,
            provider,
            &format!("replica-{i}"),
            &logs,
        )?);
    }
    let payloads: Vec<Effect> = (0..jobs as u64).map(|n| Effect { n }).collect();
    for chunk in payloads.chunks(1000) {
        let mut tx = db.begin().await?;
        jobs::enqueue_many(&mut tx, &Requester::system(), chunk).await?;
        tx.commit().await?;
    }
    let enqueued = Instant::now();

    let mut kills = 0;
    let mut restarted_pg = false;
    let mut outage_done = false;
    let mut tick = tokio::time::interval(Duration::from_secs(3));
    tick.tick().await;
    loop {
        tick.tick().await;
        let t = enqueued.elapsed();
        // A random replica: SIGKILL, then the same replica started again at once.
        let victim = (bench::now_us().unsigned_abs() as usize) % replicas.len();
        let name = replicas[victim].name.clone();
        let _ = replicas[victim].child.start_kill();
        let _ = replicas[victim].child.wait().await;
        replicas[victim] = spawn_replica(&url, provider, &name, &logs)?;
        kills += 1;
        println!("chaos: t={:.0}s SIGKILL {name}, restarted", t.as_secs_f64());
        if !restarted_pg && t >= Duration::from_secs(6) {
            cluster.try_stop_server()?;
            cluster.try_start_server()?;
            restarted_pg = true;
            println!("chaos: t={:.0}s PostgreSQL restarted", t.as_secs_f64());
        }
        if !outage_done && t >= Duration::from_secs(15) {
            cluster.try_stop_server()?;
            println!(
                "chaos: t={:.0}s PostgreSQL stopped for 8 s (dead_after is 5 s)",
                t.as_secs_f64()
            );
            tokio::time::sleep(Duration::from_secs(8)).await;
            cluster.try_start_server()?;
            outage_done = true;
        }
        if let Some((open, _)) = progress(&db).await {
            if open == 0 && outage_done {
                break;
            }
        }
        if started.elapsed() > budget {
            println!("chaos: time budget reached before the queue drained");
            break;
        }
    }
    // Let the last outcomes land, then stop the replicas.
    let deadline = Instant::now() + Duration::from_secs(30);
    while progress(&db).await.is_none_or(|(open, _)| open > 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for r in &mut replicas {
        let _ = r.child.start_kill();
        let _ = r.child.wait().await;
    }
    let (non_terminal, lost): (i64, i64) = progress(&db)
        .await
        .context("reading the ledger at the end")?;
    let in_ledger: i64 = sqlx::query_scalar("select count(*) from job_runs where kind = $1")
        .bind(Effect::KIND)
        .fetch_one(&db)
        .await?;
    let unknown: i64 = sqlx::query_scalar(
        "select count(*) from job_runs where kind = $1 and result->>'effect' = 'unknown'",
    )
    .bind(Effect::KIND)
    .fetch_one(&db)
    .await?;
    let (duplicates, effects, executions) = {
        let r = received
            .lock()
            .map_err(|_| anyhow::anyhow!("provider state poisoned"))?;
        (
            r.calls.values().filter(|n| **n > 1).count(),
            r.calls.len(),
            r.executions,
        )
    };
    let lost = lost + (jobs as i64 - in_ledger);
    let missing = jobs as i64 - effects as i64;
    println!(
        "chaos: {kills} kills, 1 PostgreSQL restart, 1 outage; {:.0} s; provider received {effects} distinct calls; {unknown} jobs ended 'effect unknown' (their worker died between committing the key and learning the call's fate: never repeated), of which {missing} never reached the provider (at most once, by design)",
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        missing <= unknown,
        "{missing} effects missing but only {unknown} jobs say their effect is unknown"
    );
    println!(
        "chaos: jobs={jobs} lost={lost} non_terminal={non_terminal} duplicate_effects={duplicates} executions={executions}"
    );
    db.close().await;
    anyhow::ensure!(
        lost == 0 && non_terminal == 0 && duplicates == 0,
        "chaos found lost, unfinished or duplicated work"
    );
    Ok(())
}
