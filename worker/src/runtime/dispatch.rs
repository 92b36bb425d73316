//! The claim loop of one kind: wait for a free slot, claim as many due jobs as there are free
//! slots (one statement), start them; when the queue is empty, sleep until a NOTIFY, a local
//! wake-up or the poll interval.
use std::sync::Arc;

use jobs::{ledger, Limiter};
use sqlx::PgPool;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    execute::{run_one, RunOne, Running},
    DbRetry, Health, RuntimeConfig,
};
use crate::registry::Registered;

pub(super) struct Dispatch {
    pub(super) pool: PgPool,
    pub(super) engine_pool: PgPool,
    pub(super) worker: String,
    pub(super) waker: Arc<Notify>,
    pub(super) registered: Registered,
    pub(super) config: RuntimeConfig,
    pub(super) health: Arc<Health>,
    pub(super) done: mpsc::UnboundedSender<ledger::Completion>,
    pub(super) limiter: Limiter,
    pub(super) jobs: TaskTracker,
    pub(super) hard_stop: CancellationToken,
    pub(super) running: Running,
}

/// One loop per kind: wait for a free slot, claim as many jobs as there are free slots, start
/// them; when the queue is empty, sleep until a NOTIFY, a local wake-up or the poll interval.
pub(super) async fn dispatch(ctx: Dispatch, shutdown: CancellationToken) {
    let kind = ctx.registered.spec.kind;
    let slots = Arc::new(Semaphore::new(ctx.registered.concurrency));
    let mut retry = DbRetry::new("claiming jobs");
    loop {
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => return },
            _ = shutdown.cancelled() => return,
        };
        let mut permits = vec![first];
        while permits.len() < ctx.config.claim_batch {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        if shutdown.is_cancelled() {
            return;
        }
        let wanted = permits.len();
        match ledger::claim(&ctx.engine_pool, &ctx.worker, kind, wanted).await {
            Ok(claimed) => {
                retry.succeeded();
                ctx.health.set_db_ok(true);
                let got = claimed.len();
                for job in claimed {
                    let Some(permit) = permits.pop() else { break };
                    let run = run_one(RunOne {
                        pool: ctx.pool.clone(),
                        registered: ctx.registered.clone(),
                        done: ctx.done.clone(),
                        limiter: ctx.limiter.clone(),
                        waker: ctx.waker.clone(),
                        hard_stop: ctx.hard_stop.clone(),
                        running: ctx.running.clone(),
                        job,
                    });
                    ctx.jobs.spawn(async move {
                        run.await;
                        drop(permit);
                    });
                }
                drop(permits);
                if got < wanted {
                    tokio::select! {
                        _ = ctx.waker.notified() => {}
                        _ = tokio::time::sleep(ctx.config.poll_interval) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
            Err(error) => {
                drop(permits);
                ctx.health.set_db_ok(false);
                if !retry.failed(&error, &shutdown).await {
                    return;
                }
            }
        }
    }
}
