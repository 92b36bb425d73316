//! `artsvao-fakes`: stand-ins for Timepad, Pyrus, Novofon, Telegram and an SMTP server, with a
//! request log and fault injection, for tests, local development and benchmarks.
//!
//! Depends on nothing of the CRM: it impersonates the outside world. [`start`] runs it in-process.

pub mod admin;
pub mod config;
pub mod faults;
mod gate;
pub mod log;
pub mod net;
pub mod novofon;
pub mod pyrus;
pub mod seed;
pub mod smtp;
pub mod telegram;
pub mod timepad;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use config::Config;

/// The impersonated services, as named in the request log and in faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Timepad,
    Pyrus,
    Novofon,
    Telegram,
    Smtp,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timepad => "timepad",
            Self::Pyrus => "pyrus",
            Self::Novofon => "novofon",
            Self::Telegram => "telegram",
            Self::Smtp => "smtp",
        }
    }

    /// The HTTP service mounted at the path's first segment.
    pub fn from_path(path: &str) -> Option<Self> {
        let first = path.trim_start_matches('/').split('/').next()?;
        match first {
            "timepad" => Some(Self::Timepad),
            "pyrus" => Some(Self::Pyrus),
            "novofon" => Some(Self::Novofon),
            "telegram" => Some(Self::Telegram),
            _ => None,
        }
    }

    /// The path below the service's mount point, which faults' `path_prefix` also matches:
    /// `/v1/events` for Timepad, `/sendMessage` for Telegram (the token segment dropped).
    pub fn local_path(self, path: &str) -> String {
        let rest = path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(self.as_str()))
            .unwrap_or(path);
        if self == Self::Telegram {
            if let Some(method) = rest.trim_start_matches('/').split_once('/').map(|(_, m)| m) {
                return format!("/{method}");
            }
        }
        rest.to_string()
    }
}

/// Shared state of every fake.
pub struct App {
    pub log: log::RequestLog,
    pub faults: faults::FaultStore,
    pub timepad: timepad::Timepad,
    pub pyrus: pyrus::Pyrus,
    pub novofon: novofon::Novofon,
    pub telegram: telegram::Telegram,
}

impl App {
    pub fn new(config: &Config) -> Self {
        Self {
            log: log::RequestLog::new(config.log_capacity),
            faults: faults::FaultStore::default(),
            timepad: timepad::Timepad::new(config),
            pyrus: pyrus::Pyrus::new(config),
            novofon: novofon::Novofon::new(config),
            telegram: telegram::Telegram::new(config),
        }
    }

    /// `POST /_fakes/reset`: faults, the request log and Telegram's blocked chats.
    pub fn reset(&self) {
        self.faults.clear();
        self.log.clear();
        self.telegram.unblock_all();
    }
}

/// All HTTP routes: the four services behind the logging/fault gate, the admin routes beside it.
pub fn router(app: Arc<App>) -> Router {
    let services = Router::new()
        .merge(timepad::routes())
        .merge(pyrus::routes())
        .merge(novofon::routes())
        .merge(telegram::routes())
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            gate::gate,
        ));
    services.merge(admin::routes()).with_state(app)
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started instance: bound addresses and the tasks serving them.
pub struct Running {
    pub http_addr: SocketAddr,
    pub smtp_addr: SocketAddr,
    pub app: Arc<App>,
    http: JoinHandle<()>,
    smtp: JoinHandle<()>,
}

impl Running {
    /// Resolves when a server task ends (they run until the process exits).
    pub async fn wait(self) {
        let (http, smtp) = (self.http, self.smtp);
        tokio::select! {
            _ = http => {}
            _ = smtp => {}
        }
    }

    /// Stops serving (open connections are dropped with the runtime).
    pub fn abort(&self) {
        self.http.abort();
        self.smtp.abort();
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

/// Binds both listeners and serves them on the current runtime.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let http_listener = bind("http", config.http_addr).await?;
    let smtp_listener = bind("smtp", config.smtp_addr).await?;
    let local = |l: &TcpListener, what, addr| {
        l.local_addr()
            .map_err(|source| StartError::Bind { what, addr, source })
    };
    let http_addr = local(&http_listener, "http", config.http_addr)?;
    let smtp_addr = local(&smtp_listener, "smtp", config.smtp_addr)?;

    let app = Arc::new(App::new(&config));
    let make_service = router(app.clone()).into_make_service_with_connect_info::<net::Conn>();
    let http = tokio::spawn(async move {
        let listener = net::KillableListener::new(http_listener);
        if let Err(error) = axum::serve(listener, make_service).await {
            tracing::error!(%error, "http server stopped");
        }
    });
    let smtp = tokio::spawn(smtp::serve(smtp_listener, app.clone()));
    tracing::info!(%http_addr, %smtp_addr, "artsvao-fakes listening");
    Ok(Running {
        http_addr,
        smtp_addr,
        app,
        http,
        smtp,
    })
}
