//! `artsvao-testworker`: the production worker (same runtime, configuration and kinds) with the
//! benchmark / test job kinds added. Used by `artsvao-bench` and the multi-process tests only.
use clap::Parser;
use worker::WorkerConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = WorkerConfig::parse();
    shared::telemetry::init(&config.log);
    shared::metrics::handle();
    let shutdown = shared::shutdown::on_signal();
    if let Err(error) = worker::run(config, bench::registry(), shutdown).await {
        tracing::error!(error = %format!("{error:#}"), "worker stopped with an error");
        std::process::exit(1);
    }
    Ok(())
}
