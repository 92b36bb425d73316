//! `artsvao-worker`: runs background jobs.
use clap::Parser;
use worker::{Registry, WorkerConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = WorkerConfig::parse();
    shared::telemetry::init(&config.log);
    shared::metrics::handle();
    let shutdown = shared::shutdown::on_signal();
    if let Err(error) = worker::run(
        config.clone(),
        Registry::production(config.retention_days),
        shutdown,
    )
    .await
    {
        tracing::error!(error = %format!("{error:#}"), "worker stopped with an error");
        std::process::exit(1);
    }
    Ok(())
}
