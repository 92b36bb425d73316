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

/// A PostgreSQL cluster of its own (initdb into a temporary directory, as the `postgres` user
/// when running as root), so a test can stop and start the server. Stopped when dropped.
pub struct PrivateCluster {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

impl PrivateCluster {
    pub fn start() -> Self {
        let bin = pg_bin();
        let dir = std::env::temp_dir().join(format!("artsvao-pg-{}", bench::now_us()));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            run(std::process::Command::new("chown")
                .args(["postgres:postgres", dir.to_str().unwrap()]));
        }
        let data = dir.join("data");
        run(as_postgres(&bin.join("initdb"))
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-N",
            ])
            .stdout(Stdio::null()));
        let cluster = Self {
            port: free_port(),
            dir,
            bin,
        };
        cluster.start_server();
        cluster
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    fn pg_ctl(&self) -> std::process::Command {
        let mut c = as_postgres(&self.bin.join("pg_ctl"));
        c.args(["-D", self.dir.join("data").to_str().unwrap()]);
        c
    }

    pub fn start_server(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.to_str().unwrap()
        );
        run(self
            .pg_ctl()
            .args([
                "-w",
                "-l",
                self.dir.join("server.log").to_str().unwrap(),
                "-o",
                &opts,
                "start",
            ])
            .stdout(Stdio::null()));
    }

    /// Fast shutdown: open sessions are disconnected, as in a crash of the server process.
    pub fn stop_server(&self) {
        run(self
            .pg_ctl()
            .args(["-w", "-m", "fast", "stop"])
            .stdout(Stdio::null()));
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self
            .pg_ctl()
            .args(["-w", "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn as_postgres(program: &std::path::Path) -> std::process::Command {
    if is_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        std::process::Command::new(program)
    }
}

fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").exists());
    found.sort();
    found
        .pop()
        .expect("PostgreSQL server binaries (initdb) under /usr/lib/postgresql/*/bin")
}

fn run(cmd: &mut std::process::Command) {
    let status = cmd.status().unwrap();
    assert!(status.success(), "{cmd:?} failed: {status}");
}
