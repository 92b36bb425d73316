//! Multi-process test harness: real `artsvao-testworker` processes (the production worker
//! runtime plus test kinds) over a fresh database, signals, logs, and a private PostgreSQL
//! cluster for outage tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    future::Future,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    time::{Duration, Instant},
};

use jobs::{Job, Requester};
use sqlx::PgPool;
use tokio::process::{Child, Command};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// URL of the database behind `pool` (a fresh `sqlx::test` database), for child processes.
pub fn db_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let base = base.rsplit_once('/').map(|(b, _)| b).unwrap_or(&base);
    let db = pool.connect_options().get_database().unwrap().to_string();
    format!("{base}/{db}")
}

fn log_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("process-logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One worker process. Killed when dropped.
pub struct WorkerProc {
    pub child: Child,
    pub host: String,
    pub addr: String,
    pub log: PathBuf,
    db_url: String,
    env: Vec<(String, String)>,
}

impl WorkerProc {
    /// Starts `artsvao-testworker` as replica `host` on `port` with extra env; waits until it
    /// answers readiness.
    pub async fn start(db_url: &str, host: &str, port: u16, env: &[(&str, &str)]) -> Self {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut p = Self::spawn(db_url, host, &format!("127.0.0.1:{port}"), env);
        p.wait_ready().await;
        p
    }

    /// Starts the process without waiting for it to be ready.
    pub fn launch(db_url: &str, host: &str, port: u16, env: &[(&str, &str)]) -> Self {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::spawn(db_url, host, &format!("127.0.0.1:{port}"), env)
    }

    fn spawn(db_url: &str, host: &str, addr: &str, env: Vec<(String, String)>) -> Self {
        let db = db_url.rsplit('/').next().unwrap();
        let log = log_dir().join(format!("{db}-{host}-{}.log", ulid_like()));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_artsvao-testworker"))
            .env("DATABASE_URL", db_url)
            .env("HOSTNAME", host)
            .env("WORKER_ADDR", addr)
            .env("RUST_LOG", "info,sqlx=warn")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Self {
            child,
            host: host.into(),
            addr: addr.into(),
            log,
            db_url: db_url.into(),
            env,
        }
    }

    pub async fn wait_ready(&mut self) {
        let http = reqwest::Client::new();
        let url = format!("http://{}/api/health/readiness", self.addr);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "worker {} exited early ({status}): {}",
                    self.host,
                    self.log_text()
                );
            }
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "worker {} never ready",
                self.host
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// SIGKILL, and wait until the process is gone.
    pub async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    /// Sends a signal by name (`STOP`, `CONT`, …).
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// SIGTERM (graceful shutdown).
    pub fn term(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("worker {} did not exit within {within:?}", self.host))
            .unwrap()
    }

    /// The same replica started again at once: same host name, port and settings.
    pub async fn restart_same(&self) -> Self {
        let mut p = Self::spawn(&self.db_url, &self.host, &self.addr, self.env.clone());
        p.wait_ready().await;
        p
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_lines(&self) -> usize {
        self.log_text().lines().count()
    }
}

fn ulid_like() -> String {
    format!("{}", bench::now_us())
}

/// Enqueues jobs as the system (no user).
pub async fn enqueue<J: Job>(db: &PgPool, jobs: &[J]) -> Vec<String> {
    let mut tx = db.begin().await.unwrap();
    let out = jobs::enqueue_many(&mut tx, &Requester::system(), jobs)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    out.into_iter().map(|e| e.job_id).collect()
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `within`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Number of jobs of `kind` in `state`.
pub async fn count(db: &PgPool, kind: &str, state: &str) -> i64 {
    sqlx::query_scalar("select count(*) from job_runs where kind = $1 and state = $2")
        .bind(kind)
        .bind(state)
        .fetch_one(db)
        .await
        .unwrap()
}

/// Jobs of `kind` running in processes whose host name is `host`.
pub async fn running_on(db: &PgPool, kind: &str, host: &str) -> i64 {
    sqlx::query_scalar(
        "select count(*) from apalis.jobs
         where job_type = $1 and status = 'Running' and lock_by like $2 || ':%'",
    )
    .bind(kind)
    .bind(host)
    .fetch_one(db)
    .await
    .unwrap()
}

pub use bench::cluster::PrivateCluster;

/// A TCP forwarder to a local port that a test can close (connections cut, new ones dropped
/// at once) and open again: one process's own way to PostgreSQL failing while others' works.
pub struct Proxy {
    pub port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: u16) -> Self {
        use std::sync::{atomic::AtomicBool, Arc, Mutex};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (o, c) = (open.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !o.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().unwrap().push(task);
            }
        });
        Self {
            port,
            open,
            conns,
            accept,
        }
    }

    /// Cuts every connection and refuses new ones until [`Proxy::open`].
    pub fn close(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for task in self.conns.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.close();
        self.accept.abort();
    }
}

/// How many times each job of `ids` was started, over the given worker logs ("job started"
/// lines carry the job id in their span).
pub fn starts_per_job(logs: &[String], ids: &[String]) -> Vec<(String, usize)> {
    ids.iter()
        .map(|id| {
            let n = logs
                .iter()
                .flat_map(|l| l.lines())
                .filter(|l| l.contains("job started") && l.contains(id.as_str()))
                .count();
            (id.clone(), n)
        })
        .collect()
}

/// The `artsvao-fakes` process (Timepad, Pyrus, Novofon, Telegram, SMTP impersonated), built
/// by `scripts/test` (`cargo build -p fakes`) next to the test binaries. Killed when dropped.
pub struct FakesProc {
    pub child: Child,
    pub base: String,
    /// The SMTP sink's port.
    pub smtp_port: u16,
    pub log: PathBuf,
}

impl FakesProc {
    pub async fn start(args: &[&str]) -> Self {
        let bin = sibling_bin("artsvao-fakes", "fakes");
        let port = free_port();
        let smtp_port = free_port();
        let log = log_dir().join(format!("fakes-{}.log", ulid_like()));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(&bin)
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--smtp-addr", &format!("127.0.0.1:{smtp_port}")])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http
            .get(format!("{base}/_fakes/health"))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "fakes never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child,
            base,
            smtp_port,
            log,
        }
    }

    /// The worker environment pointing at these fakes (credentials are the fakes' defaults).
    pub fn worker_env(&self) -> Vec<(String, String)> {
        let b = &self.base;
        [
            ("TIMEPAD_URL", format!("{b}/timepad")),
            ("TIMEPAD_TOKEN", "fakes-timepad-token".into()),
            ("TIMEPAD_ORGANIZATION_ID", "123456".into()),
            ("PYRUS_AUTH_URL", format!("{b}/pyrus/auth")),
            ("PYRUS_LOGIN", "bot@artsvao.example".into()),
            ("PYRUS_SECURITY_KEY", "fakes-pyrus-security-key".into()),
            ("PYRUS_FORM_ID", "321".into()),
            ("NOVOFON_URL", format!("{b}/novofon/v4.0")),
            ("NOVOFON_ACCESS_TOKEN", "fakes-novofon-access-token".into()),
            ("NOVOFON_VIRTUAL_NUMBER", "74993720692".into()),
            ("TELEGRAM_URL", format!("{b}/telegram")),
            (
                "TELEGRAM_BOT_TOKEN",
                "123456789:AAFakeTelegramTokenForArtsvaoTests1".into(),
            ),
            ("SMTP_URL", format!("smtp://127.0.0.1:{}", self.smtp_port)),
            ("SMTP_FROM", "АРТСВАО <crm@artsvao.test>".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The requests the fakes received for `service`, in order.
    pub async fn requests(&self, service: &str) -> Vec<serde_json::Value> {
        let body: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/_fakes/requests?service={service}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["items"].as_array().cloned().unwrap_or_default()
    }

    pub async fn fault(&self, fault: serde_json::Value) {
        let res = reqwest::Client::new()
            .post(format!("{}/_fakes/faults", self.base))
            .json(&fault)
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_success(),
            "fault refused: {}",
            res.text().await.unwrap()
        );
    }

    pub async fn reset(&self) {
        reqwest::Client::new()
            .post(format!("{}/_fakes/reset", self.base))
            .send()
            .await
            .unwrap();
    }
}

/// Starts a worker replica with extra environment (`pairs`) plus `env`.
pub async fn worker_with(
    db_url: &str,
    host: &str,
    env: &[(String, String)],
    extra: &[(&str, &str)],
) -> WorkerProc {
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.extend_from_slice(extra);
    WorkerProc::start(db_url, host, free_port(), &all).await
}

/// Peak resident memory (`VmHWM`) of a process, in MB.
pub fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// The real api in this process (real HTTP) on `db_url`, with a manager's token.
/// A binary built next to the test binaries (`target/<profile>/<name>`); scripts/test builds it.
fn sibling_bin(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join(name))
        .unwrap();
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p {package} --bin {name}` (scripts/test does)",
        bin.display()
    );
    bin
}

/// The real `artsvao-api` process over the test database, with a manager's bearer token (the
/// manager's PBX extension is 101). Killed when dropped.
pub struct ApiProc {
    pub child: Child,
    pub base: String,
    pub token: String,
    pub log: PathBuf,
}

impl ApiProc {
    pub async fn start(db_url: &str) -> Self {
        Self::start_with(db_url, &[]).await
    }

    /// The api with extra environment (`SSE_PER_USER`, `METRICS_ADDR`, …).
    pub async fn start_with(db_url: &str, env: &[(&str, &str)]) -> Self {
        let db = PgPool::connect(db_url).await.unwrap();
        let email = format!("manager-{}@artsvao.test", bench::now_us());
        api::auth::upsert_user(
            &db,
            &email,
            "correct horse battery",
            api::auth::Role::Manager,
        )
        .await
        .unwrap();
        let manager: uuid::Uuid = sqlx::query_scalar("select id from users where email = $1")
            .bind(&email)
            .fetch_one(&db)
            .await
            .unwrap();
        shared::domain::calls::set_extension(&db, manager, Some("101"))
            .await
            .unwrap();
        db.close().await;
        let port = free_port();
        let log = log_dir().join(format!("api-{}.log", ulid_like()));
        let file = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(sibling_bin("artsvao-api", "api"))
            .env("DATABASE_URL", db_url)
            .env("API_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "JWT_SECRET",
                "multiprocess-test-secret-long-enough-for-hs256-0123",
            )
            .env("RATE_LIMIT", "100000/60s")
            .env("STATUS_RATE_LIMIT", "100000/60s")
            .env("RUST_LOG", "info,sqlx=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "api exited early ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if let Ok(r) = http
                .get(format!("{base}/api/health/readiness"))
                .send()
                .await
            {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "api never ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let login: serde_json::Value = http
            .post(format!("{base}/api/auth/login"))
            .json(&serde_json::json!({"email": email, "password": "correct horse battery"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["access_token"].as_str().unwrap().to_string();
        Self {
            child,
            base,
            token,
            log,
        }
    }
}

/// A job's ledger row: (state, attempts, result, error, snoozes).
pub async fn job_row(
    db: &PgPool,
    id: &str,
) -> (String, i32, Option<serde_json::Value>, Option<String>, i32) {
    sqlx::query_as("select state, attempts, result, error, snoozes from job_runs where id = $1")
        .bind(id)
        .fetch_one(db)
        .await
        .unwrap()
}

/// Waits for the job to end (succeeded, failed or cancelled) and returns its row.
pub async fn job_done(
    db: &PgPool,
    id: &str,
    within: Duration,
) -> (String, i32, Option<serde_json::Value>, Option<String>, i32) {
    wait_for("the job to end", within, || async {
        let row = job_row(db, id).await;
        matches!(row.0.as_str(), "succeeded" | "failed" | "cancelled").then_some(row)
    })
    .await
}
