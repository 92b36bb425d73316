//! Runs one claimed attempt: the handler under the kind's timeout (and the shutdown's hard
//! stop), panics caught, the result classified into an outcome for the completer.
use std::{
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::FutureExt;
use jobs::{
    ledger::{Claimed, Completion, Outcome},
    JobContext, JobError, Limiter,
};
use sqlx::PgPool;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::registry::Registered;

pub(super) struct RunOne {
    pub(super) pool: PgPool,
    pub(super) registered: Registered,
    pub(super) done: mpsc::UnboundedSender<Completion>,
    pub(super) limiter: Limiter,
    pub(super) waker: Arc<Notify>,
    pub(super) hard_stop: CancellationToken,
    pub(super) job: Claimed,
}

pub(super) async fn run_one(r: RunOne) {
    let spec = r.registered.spec;
    let job = r.job;
    let attempt = job.attempt.max(1) as u32;
    let max_attempts = job.max_attempts.max(1) as u32;
    // ERROR level: the span (and its ids) stays on every line whatever the log filter.
    let span = tracing::error_span!(
        "job",
        job.id = %job.id,
        job.kind = spec.kind,
        attempt,
        request_id = job.request_id.as_deref().unwrap_or(""),
    );
    async move {
        let outcome = if job.cancel_requested {
            tracing::info!("cancel requested before start");
            Outcome::Cancelled
        } else if attempt > max_attempts {
            tracing::warn!("attempts exhausted by lost workers");
            Outcome::Failed(format!(
                "gave up after {max_attempts} attempts: the worker running it was lost"
            ))
        } else {
            execute(
                &r.pool,
                &r.limiter,
                &r.registered,
                &job,
                attempt,
                max_attempts,
                &r.hard_stop,
            )
            .await
        };
        if let Outcome::Retry { delay, .. } = &outcome {
            // Wake this kind's dispatcher when the retry is due instead of waiting for a poll.
            let waker = r.waker.clone();
            let delay = *delay;
            tokio::spawn(async move {
                tokio::time::sleep(delay + Duration::from_millis(5)).await;
                waker.notify_one();
            });
        }
        let _ = r.done.send(Completion {
            id: job.id.clone(),
            attempt: job.attempt,
            outcome,
        });
    }
    .instrument(span)
    .await
}

async fn execute(
    pool: &PgPool,
    limiter: &Limiter,
    registered: &Registered,
    job: &Claimed,
    attempt: u32,
    max_attempts: u32,
    hard_stop: &CancellationToken,
) -> Outcome {
    let spec = registered.spec;
    let ctx = JobContext::new(
        job.id.clone(),
        spec.kind,
        attempt,
        max_attempts,
        job.requested_by,
        job.request_id.clone(),
        pool.clone(),
    )
    .with_limiter(limiter.clone());
    metrics::counter!("jobs_started_total", "kind" => spec.kind).increment(1);
    tracing::info!("job started");
    let started = Instant::now();
    let handler = AssertUnwindSafe((registered.handler)(job.payload.clone(), ctx)).catch_unwind();
    let result = tokio::select! {
        r = tokio::time::timeout(spec.timeout, handler) => r,
        _ = hard_stop.cancelled() => {
            tracing::warn!("released unfinished at shutdown");
            return Outcome::Released;
        }
    };
    let elapsed = started.elapsed();
    metrics::histogram!("job_run_seconds", "kind" => spec.kind).record(elapsed.as_secs_f64());
    let error = match result {
        Ok(Ok(Ok(value))) => {
            metrics::counter!("jobs_succeeded_total", "kind" => spec.kind).increment(1);
            tracing::info!(elapsed_ms = elapsed.as_millis() as u64, "job succeeded");
            return Outcome::Succeeded(value);
        }
        Ok(Ok(Err(error))) => error,
        Ok(Err(_panic)) => {
            JobError::permanent("the job handler panicked (a bug); see the worker log")
        }
        Err(_elapsed) => JobError::transient(format!(
            "attempt timed out after {} s",
            spec.timeout.as_secs_f64()
        )),
    };
    match error {
        JobError::Cancelled => {
            metrics::counter!("jobs_cancelled_total", "kind" => spec.kind).increment(1);
            tracing::info!("job cancelled");
            Outcome::Cancelled
        }
        JobError::Permanent(message) => {
            metrics::counter!("jobs_failed_total", "kind" => spec.kind).increment(1);
            tracing::error!(error = %message, "job failed permanently");
            Outcome::Failed(message)
        }
        JobError::Transient {
            message,
            retry_after,
        } => {
            if attempt >= max_attempts {
                metrics::counter!("jobs_failed_total", "kind" => spec.kind).increment(1);
                tracing::error!(error = %message, "job failed: attempts exhausted");
                Outcome::Failed(format!("{message} (gave up after {attempt} attempts)"))
            } else {
                let delay = spec.backoff(attempt).max(retry_after.unwrap_or_default());
                metrics::counter!("jobs_retried_total", "kind" => spec.kind).increment(1);
                tracing::warn!(error = %message, delay_ms = delay.as_millis() as u64, "job will be retried");
                Outcome::Retry {
                    error: message,
                    delay,
                }
            }
        }
    }
}
