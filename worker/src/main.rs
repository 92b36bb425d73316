//! `artsvao-worker`: runs background jobs.
use worker::Registry;

#[tokio::main]
async fn main() {
    worker::main_with(|config| {
        let integrations = worker::clients::Integrations::from_config(&config.integrations);
        for line in integrations.describe() {
            tracing::info!("{line}");
        }
        Registry::production(config.retention_days, &integrations)
    })
    .await;
}
