//! `artsvao-bench api`: the CRM read paths under load. The demo centre plus clients up to
//! 100,000, the real api (in this process, release build) on a local port, N concurrent
//! keep-alive connections; per scenario p50 / p99 / max latency and throughput.
use std::time::{Duration, Instant};

use clap::Parser;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "benchmark-secret-that-is-long-enough-for-hs256-0123";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn run(
    db: &PgPool,
    url: &str,
    concurrency: usize,
    requests: usize,
) -> anyhow::Result<()> {
    let t = Instant::now();
    let seeded = api::seed::seed_demo(db).await?;
    sqlx::query(
        "insert into clients (last_name, first_name, phone)
         select (array['Иванов','Петров','Сидоров','Кузнецов','Смирнов','Васильев','Попов',
                       'Соколов','Михайлов','Новиков','Фёдоров','Морозов','Волков','Алексеев',
                       'Лебедев','Семёнов','Егоров','Павлов','Козлов','Степанов'])[1 + n % 20]
                || case when n % 2 = 0 then 'а' else '' end,
                'Клиент' || n, '+7903' || lpad(n::text, 7, '0')
         from generate_series(1, 92000) n",
    )
    .execute(db)
    .await?;
    sqlx::query("vacuum analyze clients").execute(db).await?;
    sqlx::query("analyze").execute(db).await?;
    let clients: i64 = sqlx::query_scalar("select count(*) from clients")
        .fetch_one(db)
        .await?;
    eprintln!(
        "data ready in {:.1} s: {clients} clients, {} lessons",
        t.elapsed().as_secs_f64(),
        seeded.lessons
    );

    let config = api::ApiConfig::parse_from([
        "artsvao-api",
        "--database-url",
        url,
        "--jwt-secret",
        SECRET,
        "--rate-limit",
        "100000000/60s",
        "--status-rate-limit",
        "100000000/60s",
    ]);
    let pool = shared::db::connect(&config.db, "artsvao-api").await?;
    let state = api::state(&config, pool)?;
    let user = api::auth::upsert_user(
        db,
        "bench@artsvao.local",
        "benchmark password",
        api::auth::Role::Manager,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let token = state
        .tokens
        .issue(user, api::auth::Role::Manager, 0)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let stop = CancellationToken::new();
    let server = tokio::spawn(api::serve(listener, state, stop.clone()));

    // Monday of the current week, Moscow.
    let today = chrono::Utc::now()
        .with_timezone(&shared::time::MOSCOW)
        .date_naive();
    let monday = today
        - chrono::Duration::days(i64::from(
            chrono::Datelike::weekday(&today).num_days_from_monday(),
        ));
    let week = format!(
        "from={monday}T00:00:00%2B03:00&to={}T00:00:00%2B03:00&limit=200",
        monday + chrono::Duration::days(7)
    );
    let scenarios: Vec<(&str, Vec<String>)> = vec![
        (
            "floor: GET /api/health/liveness (no token, no database)",
            vec!["/api/health/liveness".to_string()],
        ),
        (
            "baseline: GET /api/auth/me (token check + one primary-key read)",
            vec!["/api/auth/me".to_string()],
        ),
        (
            "clients: surname search (~5,000 matches of 100,000), limit 50",
            ["Иванов", "Петрова", "Сидоров", "Кузнецова", "Смирнов"]
                .iter()
                .map(|s| format!("/api/clients?search={s}&limit=50"))
                .collect(),
        ),
        (
            "clients: phone fragment (a few matches), limit 50",
            [
                "903 000 12",
                "0004567",
                "903 001 99",
                "9030077",
                "903 009 1",
            ]
            .iter()
            .map(|s| format!("/api/clients?search={s}&limit=50"))
            .collect(),
        ),
        (
            "lessons: one week, all rooms (≈ 600), limit 200",
            vec![format!("/api/lessons?{week}")],
        ),
    ];

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    println!("| scenario | requests | concurrency | p50 | p99 | max | throughput |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, paths) in scenarios {
        for warm in 0..200 {
            let path = &paths[warm % paths.len()];
            let res = http
                .get(format!("{base}{path}"))
                .bearer_auth(&token)
                .send()
                .await?;
            anyhow::ensure!(res.status().is_success(), "{path}: {}", res.status());
        }
        let started = Instant::now();
        let per_task = requests / concurrency;
        let tasks = (0..concurrency).map(|task| {
            let http = http.clone();
            let paths = paths.clone();
            let base = base.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let path = &paths[(task + i) % paths.len()];
                    let t = Instant::now();
                    let res = http
                        .get(format!("{base}{path}"))
                        .bearer_auth(&token)
                        .send()
                        .await?;
                    let ok = res.status().is_success();
                    let _ = res.bytes().await?;
                    anyhow::ensure!(ok, "{path} failed");
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                Ok::<_, anyhow::Error>(latencies)
            })
        });
        let mut all = Vec::with_capacity(requests);
        for r in futures::future::join_all(tasks).await {
            all.extend(r??);
        }
        let elapsed = started.elapsed();
        all.sort_by(f64::total_cmp);
        println!(
            "| {name} | {} | {concurrency} | {:.1} ms | {:.1} ms | {:.1} ms | {:.0} req/s |",
            all.len(),
            percentile(&all, 0.5),
            percentile(&all, 0.99),
            all[all.len() - 1],
            all.len() as f64 / elapsed.as_secs_f64()
        );
    }
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    Ok(())
}
