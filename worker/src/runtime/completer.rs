//! Records outcomes in batches: whatever accumulated while the previous batch was written
//! goes in the next one (no added latency when idle, few transactions under load).
use std::time::Duration;

use jobs::ledger::{self, Completion};
use sqlx::PgPool;
use tokio::sync::mpsc;

use super::Throttled;

/// Records outcomes in batches: whatever accumulated while the previous batch was written
/// goes in the next one (no added latency when idle, few transactions under load). A failed
/// write is retried with capped backoff; the outcomes stay in memory meanwhile.
pub(super) async fn completer(
    pool: PgPool,
    process: String,
    mut rx: mpsc::UnboundedReceiver<Completion>,
) {
    use backon::{ExponentialBuilder, Retryable};
    let mut log = Throttled::new("recording job outcomes");
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 1000 {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let completions = batch;
        {
            let write = || async { ledger::complete(&pool, &process, &completions).await };
            let result = write
                .retry(
                    ExponentialBuilder::default()
                        .with_min_delay(Duration::from_millis(100))
                        .with_max_delay(Duration::from_secs(5))
                        .with_max_times(60)
                        .with_jitter(),
                )
                .notify(|error, _| log.error(error))
                .await;
            match result {
                Ok(_) => log.recovered(),
                Err(error) => tracing::error!(
                    %error,
                    lost = completions.len(),
                    "giving up recording outcomes; the jobs will re-run after their lease expires"
                ),
            }
        }
    }
}
