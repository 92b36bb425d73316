//! `artsvao-worker`: runs background jobs.
use worker::Registry;

#[tokio::main]
async fn main() {
    worker::main_with(|config| Registry::production(config.retention_days)).await;
}
