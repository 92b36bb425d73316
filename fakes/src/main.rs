//! `artsvao-fakes`: parses the configuration, starts telemetry and serves until Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use fakes::Config;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let running = match fakes::start(config).await {
        Ok(running) => running,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        () = running.wait() => {
            tracing::error!("a listener stopped");
            ExitCode::FAILURE
        }
        result = tokio::signal::ctrl_c() => {
            if let Err(error) = result {
                tracing::error!(%error, "cannot wait for Ctrl-C");
            }
            tracing::info!("stopping");
            ExitCode::SUCCESS
        }
    }
}
