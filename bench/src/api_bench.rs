//! `artsvao-bench api`: the CRM read paths under an open-loop load, and the CPU each request
//! costs in the api and in PostgreSQL.
//!
//! Data: the demo centre (`api::seed::seed_demo`: rooms, teachers, groups, two months of
//! lessons) plus generated clients up to 100,000. The api is the release `artsvao-api` built
//! next to this binary, run as its own process on a free local port (rate limits lifted,
//! warn-level JSON logs on this process's stderr), so that its CPU time can be read from
//! `/proc` apart from the load generator's.
//!
//! Why open loop: the retired target (p99 ≤ 20 ms with 50 closed-loop connections) kept 50
//! requests in flight however fast the server was, so on 2 shared cores it measured the queue
//! in front of the CPU rather than what a user waits. Here requests arrive on a timetable, as
//! people's clicks do whether or not the server is busy: `--rate` per second (default 200, ten
//! times the centre's busiest hour) for `--seconds` (default 30), after 200 warm-up requests at
//! the same rate (they also open the connections, client- and pool-side). Request `i` belongs
//! to the instant `t0 + i / rate` and is started then as its own task, never waiting for
//! earlier ones.
//!
//! Latency runs from the scheduled instant to the last byte of the body. A request that left
//! late (the generator or its runtime behind, tokio's 1 ms timer) carries that delay, and a
//! stall shows in every request scheduled during it: no coordinated omission. The notes under
//! the table give the generator's own lag so that it can be told apart. p50 / p99 / max are
//! over the successful requests; non-2xx answers and transport errors are counted in their own
//! column and never stop the run.
//!
//! CPU per request: utime + stime (`/proc/<pid>/stat`, clock ticks) read just before a
//! scenario's first scheduled instant and after its last response, divided by the requests
//! scheduled:
//! - api: the `artsvao-api` process, all threads;
//! - PostgreSQL: the backends of the api's pool, i.e. the `pg_stat_activity` rows of the bench
//!   database whose `application_name` is `artsvao-api` (the name `api::connect_and_migrate`
//!   gives the pool). A backend counts only when present in both reads: one opened or closed
//!   during the run is missed, and the notes say how many there were. The postmaster, WAL
//!   writer, checkpointer, autovacuum and the bench's own connection are not counted. A pid
//!   is read only when this machine's `/proc` shows a process whose title names the bench
//!   database (a server in a container or on another host has pids of its own): otherwise the
//!   column says n/a.
//!
//! A tick is 10 ms at the usual `CLK_TCK` of 100: under 2 µs per request over 6,000 requests.
use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::Context;
use sqlx::PgPool;
use tokio::time::Instant;

use crate::percentile;

const SECRET: &str = "benchmark-secret-that-is-long-enough-for-hs256-0123";
/// The `application_name` of the api's pool (`api::connect_and_migrate`).
const API_APPLICATION: &str = "artsvao-api";
const WARM_UP: usize = 200;

pub async fn run(db: &PgPool, url: &str, rate: f64, seconds: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        rate.is_finite() && rate > 0.0,
        "--rate must be a positive number of requests per second"
    );
    let requests = ((rate * seconds as f64).round() as usize).max(1);
    // Before the seeding: what else the machine is doing (other builds, tests).
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    seed(db).await?;
    let token = token(db).await?;
    // Every request may need a connection of its own while earlier ones are still out.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(30))
        .build()?;
    let api = ApiProcess::start(url, &http).await?;
    let clk_tck = clock_ticks_per_second();
    let database: String = sqlx::query_scalar("select current_database()")
        .fetch_one(db)
        .await?;

    println!(
        "| scenario | rate | requests | errors | p50 | p99 | max | api CPU/req | PG CPU/req | total CPU/req |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut notes = Vec::new();
    for scenario in scenarios() {
        let load = Load {
            http: &http,
            base: &api.base,
            token: &token,
            paths: &scenario.paths,
            rate,
        };
        load.run(WARM_UP).await;
        let before = Snapshot::take(db, api.pid(), &database).await?;
        let outcomes = load.run(requests).await;
        let after = Snapshot::take(db, api.pid(), &database).await?;
        let cpu = Cpu::between(&before, &after, clk_tck, requests);
        let result = Measured::from(outcomes);
        println!(
            "| {} | {rate}/s | {requests} | {} | {} | {} | {} | {} | {} | {} |",
            scenario.name,
            result.errors_cell(),
            ms_cell(result.p50),
            ms_cell(result.p99),
            ms_cell(result.max),
            ms_cell(Some(cpu.api_ms)),
            ms_cell(cpu.pg_ms),
            ms_cell(cpu.pg_ms.map(|pg| pg + cpu.api_ms)),
        );
        notes.push(format!(
            "- {}: {}; {}",
            scenario.short,
            result.note(),
            cpu.note()
        ));
    }
    api.stop().await;

    println!();
    for note in notes {
        println!("{note}");
    }
    println!();
    println!("{}", machine_facts(db, clk_tck, load_before.trim()).await?);
    Ok(())
}

/// The demo centre plus generated clients up to 100,000 (20 surnames, both genders' forms,
/// phone numbers +7903 followed by the client's number).
async fn seed(db: &PgPool) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
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
    // Progress for the person running the bench; stdout holds only the table.
    eprintln!(
        "data ready in {:.1} s: {clients} clients, {} lessons",
        started.elapsed().as_secs_f64(),
        seeded.lessons
    );
    Ok(())
}

/// A manager's access token, signed here with the secret the api process is given. It carries
/// the user's current `token_version`, which the api checks on every request.
async fn token(db: &PgPool) -> anyhow::Result<String> {
    let role = api::auth::Role::Manager;
    let user = api::auth::upsert_user(db, "bench@artsvao.local", "benchmark password", role)
        .await
        .map_err(|e| anyhow::anyhow!("creating the bench user: {e}"))?;
    let version: i32 = sqlx::query_scalar("select token_version from users where id = $1")
        .bind(user)
        .fetch_one(db)
        .await?;
    api::auth::Tokens::new(SECRET.as_bytes(), 3600)
        .issue(user, role, version)
        .map_err(|e| anyhow::anyhow!("signing the bench token: {e}"))
}

struct Scenario {
    name: &'static str,
    short: &'static str,
    /// Used in turn, request `i` getting `paths[i % len]`.
    paths: Vec<String>,
}

fn scenarios() -> Vec<Scenario> {
    let search = |terms: &[&str]| -> Vec<String> {
        terms
            .iter()
            .map(|s| format!("/api/clients?search={s}&limit=50"))
            .collect()
    };
    // Monday of the current week, Moscow.
    let today = chrono::Utc::now()
        .with_timezone(&shared::time::MOSCOW)
        .date_naive();
    let monday = today
        - chrono::Duration::days(i64::from(
            chrono::Datelike::weekday(&today).num_days_from_monday(),
        ));
    let week = format!(
        "/api/lessons?from={monday}T00:00:00%2B03:00&to={}T00:00:00%2B03:00&limit=200",
        monday + chrono::Duration::days(7)
    );
    vec![
        Scenario {
            name: "floor: GET /api/health/liveness (no token, no database)",
            short: "floor",
            paths: vec!["/api/health/liveness".to_string()],
        },
        Scenario {
            name: "baseline: GET /api/auth/me (token check + one primary-key read)",
            short: "baseline",
            paths: vec!["/api/auth/me".to_string()],
        },
        Scenario {
            name: "clients: surname search (~5,000 matches of 100,000), limit 50",
            short: "surname search",
            paths: search(&["Иванов", "Петрова", "Сидоров", "Кузнецова", "Смирнов"]),
        },
        Scenario {
            name: "clients: phone fragment (a few matches), limit 50",
            short: "phone fragment",
            paths: search(&[
                "903 000 12",
                "0004567",
                "903 001 99",
                "9030077",
                "903 009 1",
            ]),
        },
        Scenario {
            name: "lessons: one week, all rooms (≈ 600), limit 200",
            short: "lessons",
            paths: vec![week],
        },
    ]
}

/// One scenario's open-loop load on the api.
struct Load<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    token: &'a str,
    paths: &'a [String],
    rate: f64,
}

/// What became of one request: `latency` from its scheduled instant to the end of its body,
/// `lag` from that instant to the moment its task began.
struct Outcome {
    latency: Duration,
    lag: Duration,
    error: Option<String>,
}

impl Load<'_> {
    /// Sends `n` requests at `rate` per second, each started at its own instant as its own task,
    /// and waits for all of them.
    async fn run(&self, n: usize) -> Vec<Outcome> {
        // Instant 0 a little ahead, so that the first request is not late by this set-up.
        let t0 = Instant::now() + Duration::from_millis(20);
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let at = t0 + Duration::from_secs_f64(i as f64 / self.rate);
            tokio::time::sleep_until(at).await;
            let request = self
                .http
                .get(format!("{}{}", self.base, self.paths[i % self.paths.len()]))
                .bearer_auth(self.token);
            tasks.push(tokio::spawn(async move {
                let lag = at.elapsed();
                let error = match request.send().await {
                    Err(e) => Some(format!("{:#}", anyhow::Error::from(e))),
                    Ok(response) => {
                        let status = response.status();
                        match response.bytes().await {
                            Err(e) => Some(format!("body: {:#}", anyhow::Error::from(e))),
                            Ok(_) if !status.is_success() => Some(format!("HTTP {status}")),
                            Ok(_) => None,
                        }
                    }
                };
                Outcome {
                    latency: at.elapsed(),
                    lag,
                    error,
                }
            }));
        }
        let mut outcomes = Vec::with_capacity(n);
        for task in tasks {
            outcomes.push(task.await.unwrap_or_else(|e| Outcome {
                latency: Duration::ZERO,
                lag: Duration::ZERO,
                error: Some(format!("request task: {e}")),
            }));
        }
        outcomes
    }
}

/// Latencies of the successful requests (ms, sorted), the generator's lag, the errors.
struct Measured {
    p50: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
    lag_p99: f64,
    lag_max: f64,
    errors: usize,
    first_error: Option<String>,
}

impl From<Vec<Outcome>> for Measured {
    fn from(outcomes: Vec<Outcome>) -> Self {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut ok: Vec<f64> = outcomes
            .iter()
            .filter(|o| o.error.is_none())
            .map(|o| ms(o.latency))
            .collect();
        ok.sort_by(f64::total_cmp);
        let mut lags: Vec<f64> = outcomes.iter().map(|o| ms(o.lag)).collect();
        lags.sort_by(f64::total_cmp);
        let errors = outcomes.iter().filter(|o| o.error.is_some()).count();
        let first_error = outcomes.into_iter().find_map(|o| o.error);
        let at = |p: f64| (!ok.is_empty()).then(|| percentile(&ok, p));
        Self {
            p50: at(0.5),
            p99: at(0.99),
            max: ok.last().copied(),
            lag_p99: if lags.is_empty() {
                0.0
            } else {
                percentile(&lags, 0.99)
            },
            lag_max: lags.last().copied().unwrap_or_default(),
            errors,
            first_error,
        }
    }
}

impl Measured {
    /// Bold when there were errors, so that such a run cannot pass for a clean one.
    fn errors_cell(&self) -> String {
        match self.errors {
            0 => "0".to_string(),
            n => format!("**{n}**"),
        }
    }

    fn note(&self) -> String {
        let mut note = format!(
            "generator lag (a request's start after its instant) p99 {:.2} ms, max {:.2} ms",
            self.lag_p99, self.lag_max
        );
        if let Some(error) = &self.first_error {
            note.push_str(&format!("; {} errors, the first: {error}", self.errors));
        }
        note
    }
}

fn ms_cell(ms: Option<f64>) -> String {
    match ms {
        Some(ms) if ms < 10.0 => format!("{ms:.2} ms"),
        Some(ms) => format!("{ms:.1} ms"),
        None => "n/a".to_string(),
    }
}

/// CPU time so far, in clock ticks, of the api, of the api's PostgreSQL backends (by pid) and
/// of this process (the load generator).
struct Snapshot {
    api: u64,
    generator: u64,
    backends: HashMap<u32, u64>,
    /// Backends `pg_stat_activity` listed for the api, readable in `/proc` or not.
    listed: usize,
}

impl Snapshot {
    async fn take(db: &PgPool, api_pid: u32, database: &str) -> anyhow::Result<Self> {
        let pids: Vec<i32> = sqlx::query_scalar(
            "select pid from pg_stat_activity
             where application_name = $1 and datname = current_database()",
        )
        .bind(API_APPLICATION)
        .fetch_all(db)
        .await?;
        let backends = pids
            .iter()
            .filter_map(|&pid| {
                let pid = u32::try_from(pid).ok()?;
                is_backend_of(pid, database).then_some(())?;
                Some((pid, cpu_ticks(pid)?))
            })
            .collect();
        Ok(Self {
            api: cpu_ticks(api_pid)
                .with_context(|| format!("reading /proc/{api_pid}/stat of artsvao-api"))?,
            generator: cpu_ticks(std::process::id()).unwrap_or_default(),
            backends,
            listed: pids.len(),
        })
    }
}

/// CPU per request between two snapshots, in ms.
struct Cpu {
    api_ms: f64,
    /// None when the api had backends but none could be counted (not visible in `/proc`, or
    /// none present in both reads).
    pg_ms: Option<f64>,
    generator_ms: f64,
    counted: usize,
    appeared: usize,
    vanished: usize,
    unreadable: usize,
}

impl Cpu {
    fn between(before: &Snapshot, after: &Snapshot, clk_tck: f64, requests: usize) -> Self {
        let per_request = |ticks: u64| ticks as f64 * 1000.0 / clk_tck / requests as f64;
        let mut pg_ticks = 0;
        let mut counted = 0;
        for (pid, start) in &before.backends {
            if let Some(end) = after.backends.get(pid) {
                pg_ticks += end.saturating_sub(*start);
                counted += 1;
            }
        }
        let unreadable =
            (before.listed - before.backends.len()).max(after.listed - after.backends.len());
        Self {
            api_ms: per_request(after.api.saturating_sub(before.api)),
            // Zero only when the api had no backend at all; else counted ones or nothing.
            pg_ms: (counted > 0 || (before.listed == 0 && after.listed == 0))
                .then(|| per_request(pg_ticks)),
            generator_ms: per_request(after.generator.saturating_sub(before.generator)),
            counted,
            appeared: after.backends.len() - counted,
            vanished: before.backends.len() - counted,
            unreadable,
        }
    }

    fn note(&self) -> String {
        let mut note = format!(
            "load generator CPU/req {:.3} ms; PostgreSQL backends counted {}",
            self.generator_ms, self.counted
        );
        for (n, what) in [
            (self.appeared, "opened during the run (not counted)"),
            (self.vanished, "closed during the run (not counted)"),
            (self.unreadable, "not visible in this machine's /proc"),
        ] {
            if n > 0 {
                note.push_str(&format!(", {n} {what}"));
            }
        }
        note
    }
}

/// utime + stime of `pid` (all its threads) in clock ticks: fields 14 and 15 of
/// `/proc/<pid>/stat`, counted after the `)` that closes the command name, which may itself
/// hold spaces and parentheses.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // The first field after the name is field 3 (the state).
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Whether `pid` is, in this machine's `/proc`, a PostgreSQL backend of `database`: its process
/// title (`postgres: 15/main: user database 127.0.0.1(port) state`) names it. A server in
/// another pid namespace reports pids that here belong to someone else, or to no one.
fn is_backend_of(pid: u32, database: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|title| String::from_utf8_lossy(&title).contains(&format!(" {database} ")))
        .unwrap_or(false)
}

/// Clock ticks per second for `/proc/<pid>/stat`, from `getconf CLK_TCK`; 100 (Linux's value
/// on every common architecture) when that cannot be run.
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
        .filter(|&ticks: &f64| ticks > 0.0)
        .unwrap_or(100.0)
}

/// The release `artsvao-api` next to this binary, serving the bench database on a free local
/// port. Dropping it kills the process (an error path); [`ApiProcess::stop`] ends it with
/// SIGTERM first.
struct ApiProcess {
    child: Child,
    base: String,
}

impl ApiProcess {
    async fn start(url: &str, http: &reqwest::Client) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?.with_file_name("artsvao-api");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(&exe)
            .env("DATABASE_URL", url)
            .env("JWT_SECRET", SECRET)
            .env("API_ADDR", format!("127.0.0.1:{port}"))
            .env("RATE_LIMIT", "100000000/60s")
            .env("STATUS_RATE_LIMIT", "100000000/60s")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            // The api logs to stdout, which here carries the table.
            .stdout(Stdio::from(std::io::stderr()))
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} (scripts/bench builds it)", exe.display()))?;
        let mut api = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let readiness = format!("{}/api/health/readiness", api.base);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = api.child.try_wait()? {
                anyhow::bail!("artsvao-api exited before it was ready: {status}");
            }
            let answer = http
                .get(&readiness)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if matches!(answer, Ok(ref r) if r.status() == reqwest::StatusCode::OK) {
                return Ok(api);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "artsvao-api on port {port} not ready after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then up to 20 s for the api's graceful shutdown; `Drop` kills it after that.
    async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The machine and the date, for the README's table.
async fn machine_facts(db: &PgPool, clk_tck: f64, load_before: &str) -> anyhow::Result<String> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown CPU", |(_, model)| model.trim());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let postgres: String = sqlx::query_scalar("show server_version")
        .fetch_one(db)
        .await?;
    Ok(format!(
        "Machine: {cores} cores (nproc), {model}, {memory_gib:.1} GiB RAM; PostgreSQL {postgres}; \
         load average before the run {load_before}; CLK_TCK {clk_tck}; finished {}.",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    ))
}
