//! Wakes the dispatcher of a kind when a job of that kind is inserted (LISTEN on the engine's
//! insert channel, one connection per process).
use std::{collections::HashMap, sync::Arc};

use jobs::engine;
use sqlx::{postgres::PgListener, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::DbRetry;

/// Wakes the dispatcher of a kind when a job of that kind is inserted. Reconnects with capped
/// backoff; after a reconnect every kind is woken (notifications may have been missed).
pub(super) async fn listen(
    pool: PgPool,
    wakers: Arc<HashMap<&'static str, Arc<Notify>>>,
    stop: CancellationToken,
) {
    #[derive(serde::Deserialize)]
    struct Insert {
        job_type: String,
    }
    let mut retry = DbRetry::new("LISTEN for new jobs");
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(engine::INSERT_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            l = connected => match l {
                Ok(l) => l,
                Err(error) => {
                    if retry.failed(&error, &stop).await {
                        continue;
                    }
                    return;
                }
            },
            _ = stop.cancelled() => return,
        };
        retry.succeeded();
        wakers.values().for_each(|w| w.notify_one());
        loop {
            let next = tokio::select! {
                n = listener.try_recv() => n,
                _ = stop.cancelled() => return,
            };
            match next {
                Ok(Some(n)) => {
                    if let Ok(insert) = serde_json::from_str::<Insert>(n.payload()) {
                        if let Some(w) = wakers.get(insert.job_type.as_str()) {
                            w.notify_one();
                        }
                    }
                }
                // Connection lost: sqlx reconnects on the next call; wake everyone meanwhile.
                Ok(None) => wakers.values().for_each(|w| w.notify_one()),
                Err(error) => {
                    retry.log.error(&error);
                    break;
                }
            }
        }
    }
}
