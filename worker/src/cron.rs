//! Cron: schedules declared in code (overridable by `WORKER_CRON`), evaluated in Moscow time,
//! run by every worker replica.
//!
//! Exactly once across replicas: a tick enqueues its job only in the transaction whose
//! `INSERT INTO cron_ticks (schedule, tick_at) .. ON CONFLICT DO NOTHING` wins; `tick_at` is the
//! tick's computed time (not the replica's clock), so every replica names it identically and the
//! losers find the row and do nothing.
//!
//! Downtime: at start a replica looks at the schedule's last recorded tick. If ticks were missed
//! since then, it enqueues only the latest missed one (one catch-up, never a flood); a schedule
//! that has never ticked starts with its next tick. A tick whose enqueue fails (database down)
//! is retried with capped backoff; if the next tick passes meanwhile, the newer one replaces it.
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{registry::Scheduled, runtime::DbRetry};

/// First tick strictly after `t`.
fn next_tick(s: &Scheduled, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    s.schedule
        .as_ref()?
        .after(&t.with_timezone(&shared::time::MOSCOW))
        .next()
        .map(|d| d.with_timezone(&Utc))
}

/// Latest tick at or before `t`.
fn prev_tick(s: &Scheduled, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let just_after = t + chrono::Duration::milliseconds(1);
    s.schedule
        .as_ref()?
        .after(&just_after.with_timezone(&shared::time::MOSCOW))
        .next_back()
        .map(|d| d.with_timezone(&Utc))
}

/// The first tick a starting scheduler fires, and whether it is a catch-up: the latest tick
/// missed since the last recorded one (only one, however many were missed), else the next one.
/// A schedule that never ticked has nothing to catch up.
fn first_target(
    s: &Scheduled,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, bool)> {
    match (last, prev_tick(s, now)) {
        (Some(last), Some(prev)) if prev > last => Some((prev, true)),
        _ => next_tick(s, now).map(|t| (t, false)),
    }
}

/// Enqueues the tick's job unless another replica already did. Returns the new job id.
async fn fire(
    pool: &PgPool,
    s: &Scheduled,
    tick: DateTime<Utc>,
) -> Result<Option<String>, jobs::enqueue::EnqueueError> {
    let mut tx = pool.begin().await?;
    let won = sqlx::query(
        "insert into cron_ticks (schedule, tick_at) values ($1, $2) on conflict do nothing",
    )
    .bind(&s.name)
    .bind(tick)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !won {
        return Ok(None);
    }
    let requester = jobs::Requester {
        user_id: None,
        request_id: Some(format!("cron:{}:{}", s.name, tick.to_rfc3339())),
    };
    let enqueued = (s.fire)(&mut tx, requester).await?;
    sqlx::query("update cron_ticks set job_id = $3 where schedule = $1 and tick_at = $2")
        .bind(&s.name)
        .bind(tick)
        .bind(&enqueued.job_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    jobs::committed(std::slice::from_ref(&enqueued));
    Ok(Some(enqueued.job_id))
}

/// Removes ticks older than `days` days, keeping each schedule's latest (it decides the
/// catch-up after downtime). Returns how many.
pub async fn prune_ticks(pool: &PgPool, days: i32) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "delete from cron_ticks c
         where c.tick_at < now() - $1 * interval '1 day'
           and c.tick_at < (select max(m.tick_at) from cron_ticks m where m.schedule = c.schedule)",
    )
    .bind(days)
    .execute(pool)
    .await?
    .rows_affected())
}

async fn last_recorded(pool: &PgPool, name: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar("select max(tick_at) from cron_ticks where schedule = $1")
        .bind(name)
        .fetch_one(pool)
        .await
}

/// Sleeps until wall-clock `t` (re-checking, so a clock step never fires a tick early).
async fn sleep_until(t: DateTime<Utc>, stop: &CancellationToken) -> bool {
    loop {
        let Ok(left) = (t - Utc::now()).to_std() else {
            return true;
        };
        if left.is_zero() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(left.min(Duration::from_secs(60))) => {}
            _ = stop.cancelled() => return false,
        }
    }
}

/// Runs one schedule until `stop`.
pub(crate) async fn run_schedule(
    pool: PgPool,
    s: Scheduled,
    process: String,
    stop: CancellationToken,
) {
    if s.schedule.is_none() {
        return;
    }
    let mut retry = DbRetry::new("cron tick");
    let last = loop {
        match last_recorded(&pool, &s.name).await {
            Ok(last) => break last,
            Err(error) => {
                if !retry.failed(&error, &stop).await {
                    return;
                }
            }
        }
    };
    retry.succeeded();
    let Some((mut target, catch_up)) = first_target(&s, last, Utc::now()) else {
        return;
    };
    if catch_up {
        tracing::info!(schedule = %s.name, missed = %target, "catching up one missed tick");
    }
    tracing::info!(schedule = %s.name, expr = %s.expr, next = %target, "cron schedule active");
    show(&pool, &s, target, &process).await;
    loop {
        if !sleep_until(target, &stop).await {
            return;
        }
        loop {
            match fire(&pool, &s, target).await {
                Ok(Some(job_id)) => {
                    retry.succeeded();
                    tracing::info!(schedule = %s.name, tick = %target, job.id = %job_id, "cron tick enqueued");
                    break;
                }
                Ok(None) => {
                    retry.succeeded();
                    tracing::debug!(schedule = %s.name, tick = %target, "tick enqueued by another replica");
                    break;
                }
                Err(error) => {
                    if !retry.failed(&error, &stop).await {
                        return;
                    }
                    if let Some(prev) = prev_tick(&s, Utc::now()) {
                        target = target.max(prev);
                    }
                }
            }
        }
        match next_tick(
            &s,
            target.max(Utc::now() - chrono::Duration::milliseconds(1)),
        ) {
            Some(t) => target = t,
            None => return,
        }
        show(&pool, &s, target, &process).await;
    }
}

/// Writes the schedule and its next tick for the ops page (best effort: a failure only leaves
/// the page a tick behind).
async fn show(pool: &PgPool, s: &Scheduled, next: DateTime<Utc>, process: &str) {
    let write = jobs::ops::record_schedule(pool, &s.name, &s.expr, Some(next), process);
    match tokio::time::timeout(Duration::from_secs(5), write).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(schedule = %s.name, %error, "cannot record the schedule for the ops page")
        }
        Err(_) => tracing::warn!(schedule = %s.name, "recording the schedule timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registry;
    use chrono::TimeZone;

    #[test]
    fn ticks_are_moscow_wall_clock() {
        let registry = Registry::new().schedule(
            "daily",
            "0 30 3 * * *",
            jobs::kinds::maintenance::PruneJobs::default(),
        );
        let s = &registry.schedules[0];
        let t = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).single();
        let t = t.unwrap_or_default();
        // 03:30 Moscow = 00:30 UTC.
        let next = next_tick(s, t).unwrap_or_default();
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 11, 27, 0, 30, 0).unwrap());
        let prev = prev_tick(s, t).unwrap_or_default();
        assert_eq!(prev, Utc.with_ymd_and_hms(2026, 11, 26, 0, 30, 0).unwrap());
        assert_eq!(
            prev_tick(s, prev),
            Some(prev),
            "a tick at t is the latest at or before t"
        );
    }

    #[test]
    fn a_scheduler_back_from_downtime_catches_up_only_the_latest_missed_tick() {
        let registry = Registry::new().schedule(
            "every_second",
            "* * * * * *",
            jobs::kinds::maintenance::PruneJobs::default(),
        );
        let s = &registry.schedules[0];
        let at = |secs: u32, ms: i64| {
            Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, secs).unwrap()
                + chrono::Duration::milliseconds(ms)
        };
        // Last tick 10:00:00, back at 10:00:04.5: four missed, one (10:00:04) caught up.
        assert_eq!(
            first_target(s, Some(at(0, 0)), at(4, 500)),
            Some((at(4, 0), true))
        );
        // Nothing missed: the next tick.
        assert_eq!(
            first_target(s, Some(at(4, 0)), at(4, 500)),
            Some((at(5, 0), false))
        );
        // Never ticked: no catch-up.
        assert_eq!(first_target(s, None, at(4, 500)), Some((at(5, 0), false)));
    }
}
