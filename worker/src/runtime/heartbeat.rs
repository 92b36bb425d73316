//! The heartbeat: keeps this process's worker rows alive, stops the runs of this process whose
//! lease was taken over, and re-queues the jobs of workers that stopped beating (and of
//! attempts stuck past their timeout).
//!
//! A worker declares others lost only after it has itself been healthy — beating without a gap
//! — for `dead_after`. After a database outage longer than `dead_after`, every worker's
//! `last_seen` is stale only because nobody could write it; the first replica back must not
//! re-queue the jobs of a replica whose reconnect lags a few seconds (those jobs are still
//! running there). Likewise a process that was paused (SIGSTOP, a frozen VM) sees a gap and
//! waits again before judging anyone.
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use jobs::{engine, ledger};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{execute::Running, Health, RuntimeConfig, Throttled};

pub(super) struct Heartbeat {
    pub(super) pool: PgPool,
    pub(super) process: String,
    pub(super) kinds: Vec<&'static str>,
    /// Per kind: how long a job may stay running before the sweeper re-queues it.
    pub(super) stuck_after: Vec<(&'static str, Duration)>,
    pub(super) config: RuntimeConfig,
    pub(super) health: Arc<Health>,
    pub(super) wakers: Arc<HashMap<&'static str, Arc<Notify>>>,
    pub(super) running: Running,
}

/// Tracks how long this worker has been continuously healthy.
#[derive(Debug, Default)]
pub(crate) struct Steadiness {
    since: Option<Instant>,
    last_ok: Option<Instant>,
}

impl Steadiness {
    /// A successful beat at `now`; a gap of more than `max_gap` since the previous one (a
    /// pause) starts the count again.
    pub(crate) fn ok(&mut self, now: Instant, max_gap: Duration) {
        let continuous = self
            .last_ok
            .is_some_and(|t| now.saturating_duration_since(t) <= max_gap);
        if !continuous || self.since.is_none() {
            self.since = Some(now);
        }
        self.last_ok = Some(now);
    }

    pub(crate) fn failed(&mut self) {
        self.since = None;
        self.last_ok = None;
    }

    /// Healthy without a break for at least `d`.
    pub(crate) fn for_at_least(&self, now: Instant, d: Duration) -> bool {
        self.since
            .is_some_and(|s| now.saturating_duration_since(s) >= d)
    }
}

pub(super) async fn heartbeat(hb: Heartbeat, stop: CancellationToken) {
    let mut log = Throttled::new("worker heartbeat");
    let mut tick = tokio::time::interval(hb.config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let max_gap = hb.config.heartbeat_interval * 2 + Duration::from_millis(500);
    let mut steady = Steadiness::default();
    let mut waiting_logged = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let started = Instant::now();
        let beat = async {
            if !engine::heartbeat(&hb.pool, &hb.process, &hb.kinds).await? {
                engine::register_worker(&hb.pool, &hb.process, &hb.kinds).await?;
            }
            let held = hb.running.leases();
            if held.is_empty() {
                Ok(Vec::new())
            } else {
                ledger::lost_leases(&hb.pool, &held).await
            }
        };
        let lost = match beat.await {
            Ok(lost) => lost,
            Err(error) => {
                hb.health.set_db_ok(false);
                steady.failed();
                log.error(&error);
                continue;
            }
        };
        hb.health.set_db_ok(true);
        log.recovered();
        steady.ok(started, max_gap);
        for (id, lease) in &lost {
            tracing::warn!(job.id = %id, "this run's lease was taken over; stopping it");
            hb.running.stop(id, *lease);
        }
        if !steady.for_at_least(Instant::now(), hb.config.dead_after) {
            if !waiting_logged {
                tracing::info!(
                    dead_after_ms = hb.config.dead_after.as_millis() as u64,
                    "not judging other workers until this one has been healthy for dead_after"
                );
                waiting_logged = true;
            }
            continue;
        }
        waiting_logged = false;
        match ledger::reclaim_orphans(&hb.pool, hb.config.dead_after, &hb.stuck_after).await {
            Ok(reclaimed) => {
                if !reclaimed.is_empty() {
                    tracing::warn!(count = reclaimed.len(), jobs = ?reclaimed, "re-queued jobs of lost workers or stuck past their timeout");
                    hb.wakers.values().for_each(|w| w.notify_one());
                }
            }
            // Not a failed beat: the beat itself succeeded (reclaim skips what others lock).
            Err(error) => log.error(&error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_steady_only_after_beating_without_a_gap() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let gap = Duration::from_secs(7);
        let mut steady = Steadiness::default();
        steady.ok(s(0), gap);
        assert!(!steady.for_at_least(s(3), Duration::from_secs(15)));
        for t in (3..=15).step_by(3) {
            steady.ok(s(t), gap);
        }
        assert!(steady.for_at_least(s(15), Duration::from_secs(15)));
        // A pause (SIGSTOP for 20 s): the count starts again.
        steady.ok(s(35), gap);
        assert!(!steady.for_at_least(s(35), Duration::from_secs(15)));
        // A failed beat (database unreachable) too.
        steady.ok(s(38), gap);
        steady.failed();
        steady.ok(s(41), gap);
        assert!(!steady.for_at_least(s(50), Duration::from_secs(15)));
        assert!(steady.for_at_least(s(56), Duration::from_secs(15)));
    }
}
