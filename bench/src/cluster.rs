//! A PostgreSQL cluster of its own (initdb into a temporary directory, as the `postgres` user
//! when running as root), so a test or the chaos run can stop and start the server. Stopped
//! and removed when dropped.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::Context;

pub struct PrivateCluster {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

impl PrivateCluster {
    /// initdb and start; panics when PostgreSQL's server binaries are not installed (tests).
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("private PostgreSQL cluster: {e:#}"))
    }

    pub fn try_start() -> anyhow::Result<Self> {
        let bin = pg_bin()?;
        let dir = std::env::temp_dir().join(format!("artsvao-pg-{}", crate::now_us()));
        std::fs::create_dir_all(&dir)?;
        if is_root() {
            run(Command::new("chown").arg("postgres:postgres").arg(&dir))?;
        }
        let data = dir.join("data");
        run(as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-N"])
            .stdout(Stdio::null()))?;
        let cluster = Self {
            port: free_port()?,
            dir,
            bin,
        };
        cluster.try_start_server()?;
        Ok(cluster)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    fn pg_ctl(&self) -> Command {
        let mut c = as_postgres(&self.bin.join("pg_ctl"));
        c.arg("-D").arg(self.dir.join("data"));
        c
    }

    pub fn start_server(&self) {
        self.try_start_server()
            .unwrap_or_else(|e| panic!("starting PostgreSQL: {e:#}"));
    }

    pub fn try_start_server(&self) -> anyhow::Result<()> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        run(self
            .pg_ctl()
            .arg("-w")
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-o", &opts, "start"])
            .stdout(Stdio::null()))
    }

    /// Fast shutdown: open sessions are disconnected, as in a crash of the server process.
    pub fn stop_server(&self) {
        self.try_stop_server()
            .unwrap_or_else(|e| panic!("stopping PostgreSQL: {e:#}"));
    }

    pub fn try_stop_server(&self) -> anyhow::Result<()> {
        run(self
            .pg_ctl()
            .args(["-w", "-m", "fast", "stop"])
            .stdout(Stdio::null()))
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

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn pg_bin() -> anyhow::Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").exists());
    found.sort();
    found
        .pop()
        .context("PostgreSQL server binaries (initdb) under /usr/lib/postgresql/*/bin")
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("{cmd:?}"))?;
    anyhow::ensure!(status.success(), "{cmd:?} failed: {status}");
    Ok(())
}
