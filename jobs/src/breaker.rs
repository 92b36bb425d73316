//! Circuit breakers shared by every worker replica, kept in PostgreSQL (`circuit_breakers`, one
//! row per key, e.g. `telegram`, `email`).
//!
//! `closed`: calls go through; each transient failure adds one to `failures`, a success resets
//! it. At `threshold` consecutive failures the breaker opens for `pause`: calls do not go out,
//! their jobs snooze until `open_until` (no attempt used, nothing failed or lost). When the
//! pause is over, one run takes the probe (`half_open`, held until `probe_until` so a probe
//! that died is retaken) and its outcome decides: a success closes the breaker, a failure opens
//! it for another pause. Other runs keep snoozing meanwhile.
//!
//! The hot path (closed) is one primary-key read; writes happen only on failures and on the
//! first success after them.
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

/// Breaker settings (the same for every replica: they come from the same configuration).
#[derive(Debug, Clone, Copy)]
pub struct Breaker {
    /// Consecutive transient failures that open the breaker.
    pub threshold: u32,
    /// How long it stays open before a probe.
    pub pause: Duration,
    /// How long a probe may take before another run may probe instead.
    pub probe_timeout: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            threshold: 5,
            pause: Duration::from_secs(60),
            probe_timeout: Duration::from_secs(60),
        }
    }
}

/// What a call may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead.
    Closed,
    /// Go ahead as the one probe: report the outcome.
    Probe,
    /// Do not call: come back after `wait`.
    Open { wait: Duration },
}

/// A breaker's row, for `/metrics`, readiness and the ops page.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct BreakerState {
    pub key: String,
    pub state: String,
    pub failures: i32,
    pub opened_at: Option<DateTime<Utc>>,
    pub open_until: Option<DateTime<Utc>>,
}

fn micros(d: Duration) -> i64 {
    d.as_micros().min(i64::MAX as u128) as i64
}

impl Breaker {
    /// May a call of `key` go out now?
    pub async fn admit(&self, db: &PgPool, key: &str) -> Result<Admission, sqlx::Error> {
        let row: Option<(String, i64)> = sqlx::query_as(
            "select state,
                    (extract(epoch from greatest(coalesce(case state when 'open' then open_until
                                                                     else probe_until end,
                                                          now()) - now(),
                                                 interval '0')) * 1000000)::bigint
             from circuit_breakers where key = $1",
        )
        .bind(key)
        .fetch_optional(db)
        .await?;
        let (state, wait_us) = match row {
            None => return Ok(Admission::Closed),
            Some((state, _)) if state == "closed" => return Ok(Admission::Closed),
            Some(row) => row,
        };
        if wait_us > 0 {
            // Open and pausing, or a probe is out: come back when it should be decided.
            let wait = Duration::from_micros(wait_us as u64);
            let wait = if state == "half_open" {
                wait.min(Duration::from_secs(2))
            } else {
                wait
            };
            // Spread the waiters (up to a quarter more, at most 5 s): they do not all come
            // back in the same instant when the pause ends.
            let spread = (wait / 4).min(Duration::from_secs(5));
            let jitter = spread.mul_f64(rand::random::<f64>());
            return Ok(Admission::Open {
                wait: (wait + jitter).max(Duration::from_millis(50)),
            });
        }
        // The pause is over (or the probe's time ran out): one run wins the probe.
        let won = sqlx::query(
            "update circuit_breakers
             set state = 'half_open', probe_until = now() + $2 * interval '1 microsecond',
                 updated_at = now()
             where key = $1
               and ((state = 'open' and open_until <= now())
                    or (state = 'half_open' and probe_until <= now()))",
        )
        .bind(key)
        .bind(micros(self.probe_timeout))
        .execute(db)
        .await?
        .rows_affected()
            == 1;
        Ok(if won {
            tracing::info!(
                breaker = key,
                "circuit breaker half-open: this call is the probe"
            );
            Admission::Probe
        } else {
            Admission::Open {
                wait: Duration::from_millis(500 + rand::random::<u64>() % 1000),
            }
        })
    }

    /// The probe of `key` will not call after all (it must wait for a rate-limit slot): another
    /// run may probe at once.
    pub async fn release_probe(&self, db: &PgPool, key: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "update circuit_breakers set probe_until = now(), updated_at = now()
             where key = $1 and state = 'half_open'",
        )
        .bind(key)
        .execute(db)
        .await?;
        Ok(())
    }

    /// A call of `key` succeeded: the breaker closes (a write only if it was not clean).
    pub async fn success(&self, db: &PgPool, key: &str) -> Result<(), sqlx::Error> {
        let closed = sqlx::query(
            "update circuit_breakers
             set state = 'closed', failures = 0, probe_until = null, updated_at = now()
             where key = $1 and (state <> 'closed' or failures > 0)
             returning opened_at",
        )
        .bind(key)
        .execute(db)
        .await?
        .rows_affected();
        if closed > 0 {
            tracing::info!(breaker = key, "circuit breaker closed");
            metrics::gauge!("circuit_breaker_open", "key" => key.to_string()).set(0.0);
        }
        Ok(())
    }

    /// A call of `key` failed transiently: counts it, and opens the breaker at the threshold
    /// (or when the probe failed). Returns whether the breaker is open now.
    pub async fn failure(&self, db: &PgPool, key: &str) -> Result<bool, sqlx::Error> {
        let (state, opened_now): (String, bool) = sqlx::query_as(
            "insert into circuit_breakers as b (key, failures, state, opened_at, open_until)
             select $1, 1, s, case when s = 'open' then now() end,
                    case when s = 'open' then now() + $3 * interval '1 microsecond' end
             from (select case when $2 <= 1 then 'open' else 'closed' end as s) x
             on conflict (key) do update
                 set failures = b.failures + 1,
                     state = case when b.state = 'half_open' or b.failures + 1 >= $2
                                  then 'open' else b.state end,
                     opened_at = case when b.state <> 'open'
                                           and (b.state = 'half_open' or b.failures + 1 >= $2)
                                      then now() else b.opened_at end,
                     open_until = case when b.state <> 'open'
                                            and (b.state = 'half_open' or b.failures + 1 >= $2)
                                       then now() + $3 * interval '1 microsecond'
                                       else b.open_until end,
                     probe_until = null,
                     updated_at = now()
             returning state, coalesce(opened_at = now(), false)",
        )
        .bind(key)
        .bind(self.threshold.max(1) as i32)
        .bind(micros(self.pause))
        .fetch_one(db)
        .await?;
        if opened_now {
            tracing::warn!(
                breaker = key,
                pause_s = self.pause.as_secs(),
                "circuit breaker opened"
            );
            metrics::gauge!("circuit_breaker_open", "key" => key.to_string()).set(1.0);
            metrics::counter!("circuit_breaker_opened_total", "key" => key.to_string())
                .increment(1);
        }
        Ok(state == "open")
    }
}

/// Every breaker's state (a row appears at the first failure).
pub async fn states(db: &PgPool) -> Result<Vec<BreakerState>, sqlx::Error> {
    sqlx::query_as(
        "select key, state, failures, opened_at, open_until from circuit_breakers order by key",
    )
    .fetch_all(db)
    .await
}
