//! Records outcomes in batches: whatever accumulated while the previous batch was written goes
//! in the next one (no added latency when idle, few transactions under load).
//!
//! One bad outcome fails one job, never a batch: a write the database refuses for what it
//! contains (SQLSTATE classes 22, 23, 54 — a NUL in a result, say) is split in halves until
//! the offender is alone, and that job is recorded as failed with a readable error while the
//! others are recorded as they are; a batch that times out is split too. Every other refusal
//! (connection, pool, shutdown, a failover to a read-only standby, a migration under way) is
//! retried with capped backoff and never given up while the process runs; only at shutdown,
//! past the flush deadline, are unwritten outcomes left (those jobs run again after their
//! lease expires). Outcomes whose lease was taken over are fenced by the write
//! itself and counted (`jobs_outcomes_fenced_total`).
use jobs::ledger::{self, Completion, Outcome};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{db_backoff, Throttled};

/// Most outcomes written by one statement.
const BATCH: usize = 1000;

pub(super) async fn completer(
    pool: PgPool,
    mut rx: mpsc::UnboundedReceiver<Completion>,
    give_up: CancellationToken,
) {
    let mut log = Throttled::new("recording job outcomes");
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        record(&pool, batch, &give_up, &mut log).await;
    }
}

/// What a refused outcome write means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The database refuses what the batch carries (SQLSTATE 22 data, 23 constraint, 54
    /// program limits): find the offender and fail that job alone.
    Content,
    /// The statement ran out of time (57014): maybe the batch is too big; split it, and retry
    /// a single outcome.
    Timeout,
    /// Anything else — connection, pool, shutdown, failover to a read-only standby, a
    /// migration in progress: the same write will pass later; retry, never give up.
    Unavailable,
}

pub(crate) fn classify(error: &sqlx::Error) -> Refusal {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if ["22", "23", "54"]
                .iter()
                .any(|class| code.starts_with(class))
            {
                Refusal::Content
            } else if code == "57014" {
                Refusal::Timeout
            } else {
                Refusal::Unavailable
            }
        }
        _ => Refusal::Unavailable,
    }
}

async fn record(
    pool: &PgPool,
    batch: Vec<Completion>,
    give_up: &CancellationToken,
    log: &mut Throttled,
) {
    let mut pending = vec![batch];
    let mut failures = 0u32;
    while let Some(part) = pending.pop() {
        match ledger::complete(pool, &part).await {
            Ok(recorded) => {
                log.recovered();
                failures = 0;
                let fenced = part.len() - recorded.len();
                if fenced > 0 {
                    metrics::counter!("jobs_outcomes_fenced_total").increment(fenced as u64);
                    let ids: Vec<&str> = part
                        .iter()
                        .map(|c| c.id.as_str())
                        .filter(|id| !recorded.iter().any(|r| r == id))
                        .collect();
                    tracing::warn!(
                        jobs = ?ids,
                        "outcomes discarded: these runs no longer held their jobs (re-queued)"
                    );
                }
            }
            Err(error)
                if classify(&error) == Refusal::Unavailable
                    || (classify(&error) == Refusal::Timeout && part.len() == 1) =>
            {
                log.error(&error);
                failures += 1;
                pending.push(part);
                let wait = tokio::select! {
                    _ = tokio::time::sleep(db_backoff(failures)) => true,
                    _ = give_up.cancelled() => false,
                };
                if !wait {
                    let ids: Vec<&str> = pending.iter().flatten().map(|c| c.id.as_str()).collect();
                    tracing::error!(
                        %error,
                        jobs = ?ids,
                        "shutting down with outcomes unwritten (database unavailable); these jobs run again after their lease expires"
                    );
                    return;
                }
            }
            Err(error) if part.len() > 1 => {
                tracing::warn!(%error, outcomes = part.len(), "an outcome batch was refused; splitting it to find the offender");
                metrics::counter!("jobs_outcome_batches_split_total").increment(1);
                let mut part = part;
                let second = part.split_off(part.len() / 2);
                pending.push(second);
                pending.push(part);
            }
            Err(error) => {
                let Some(c) = part.into_iter().next() else {
                    continue;
                };
                tracing::error!(job.id = %c.id, %error, "the job's outcome was refused; recording it as failed");
                metrics::counter!("jobs_outcomes_refused_total").increment(1);
                let message = format!("the job's outcome could not be stored: {error}")
                    .replace('\0', "\u{FFFD}");
                let failed = Completion {
                    outcome: Outcome::Failed(message),
                    ..c
                };
                if let Err(error) = ledger::complete(pool, std::slice::from_ref(&failed)).await {
                    if classify(&error) != Refusal::Content {
                        pending.push(vec![failed]);
                    } else {
                        tracing::error!(job.id = %failed.id, %error, "could not record the failure either; the job runs again after its lease expires");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_trouble_is_retried() {
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), Refusal::Unavailable);
        assert_eq!(
            classify(&sqlx::Error::Io(std::io::Error::other("reset"))),
            Refusal::Unavailable
        );
    }
}
