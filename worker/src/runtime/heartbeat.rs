//! The heartbeat: keeps this process's worker rows alive and re-queues the jobs of workers
//! that stopped beating (and of attempts stuck past their timeout).
use std::{collections::HashMap, sync::Arc, time::Duration};

use jobs::{engine, ledger};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Health, RuntimeConfig, Throttled};

#[allow(clippy::too_many_arguments)]
pub(super) async fn heartbeat(
    pool: PgPool,
    process: String,
    kinds: Vec<&'static str>,
    stuck_after: Vec<(&'static str, Duration)>,
    config: RuntimeConfig,
    health: Arc<Health>,
    wakers: Arc<HashMap<&'static str, Arc<Notify>>>,
    stop: CancellationToken,
) {
    let mut log = Throttled::new("worker heartbeat");
    let mut tick = tokio::time::interval(config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let beat = async {
            if !engine::heartbeat(&pool, &process).await? {
                engine::register_worker(&pool, &process, &kinds).await?;
            }
            ledger::reclaim_orphans(&pool, config.dead_after, &stuck_after).await
        };
        match beat.await {
            Ok(reclaimed) => {
                health.set_db_ok(true);
                log.recovered();
                if !reclaimed.is_empty() {
                    tracing::warn!(count = reclaimed.len(), jobs = ?reclaimed, "re-queued jobs of lost workers or stuck past their timeout");
                    wakers.values().for_each(|w| w.notify_one());
                }
            }
            Err(error) => {
                health.set_db_ok(false);
                log.error(&error);
            }
        }
    }
}
