//! Runs one claimed attempt: the handler under the kind's timeout, the shutdown's hard stop and
//! its own stop (the heartbeat found its lease taken over), panics caught, the result
//! classified into an outcome for the completer — or into nothing, for a run that lost its
//! lease: it must write nothing.
use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
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
use uuid::Uuid;

use crate::registry::Registered;

/// The runs in this process, by (job id, lease): two runs of one job (a re-claim after a
/// snooze, a zombie and its successor) are two entries. The heartbeat asks the ledger whether
/// their leases still hold and stops exactly the runs that lost theirs.
#[derive(Clone, Default)]
pub(crate) struct Running(Arc<Mutex<HashMap<(String, Uuid), CancellationToken>>>);

impl Running {
    fn start(&self, id: &str, lease: Uuid) -> CancellationToken {
        let stop = CancellationToken::new();
        if let Ok(mut map) = self.0.lock() {
            map.insert((id.to_string(), lease), stop.clone());
        }
        stop
    }

    fn end(&self, id: &str, lease: Uuid) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&(id.to_string(), lease));
        }
    }

    /// `(id, lease)` of every run.
    pub(crate) fn leases(&self) -> Vec<(String, Uuid)> {
        self.0
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Stops the run of `id` under `lease` (that lease is lost); another run of the job under
    /// a newer lease is left alone.
    pub(crate) fn stop(&self, id: &str, lease: Uuid) {
        if let Ok(map) = self.0.lock() {
            if let Some(stop) = map.get(&(id.to_string(), lease)) {
                stop.cancel();
            }
        }
    }
}

/// Largest result recorded: a bigger one fails the job (a result is a summary, not a file —
/// files go to artifacts), so no outcome batch can outgrow a statement.
const MAX_RESULT_BYTES: usize = 256 * 1024;

pub(super) struct RunOne {
    pub(super) pool: PgPool,
    pub(super) registered: Registered,
    pub(super) done: mpsc::UnboundedSender<Completion>,
    pub(super) limiter: Limiter,
    pub(super) waker: Arc<Notify>,
    pub(super) hard_stop: CancellationToken,
    pub(super) running: Running,
    pub(super) job: Claimed,
}

pub(super) async fn run_one(r: RunOne) {
    let RunOne {
        pool,
        registered,
        done,
        limiter,
        waker,
        hard_stop,
        running,
        job,
    } = r;
    let spec = registered.spec;
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
            Some(Outcome::Cancelled)
        } else if attempt > max_attempts {
            tracing::warn!("attempts exhausted by lost workers");
            Some(Outcome::Failed(format!(
                "gave up after {max_attempts} attempts: the worker running it was lost"
            )))
        } else {
            let lost = running.start(&job.id, job.lease);
            let run = Run {
                pool: &pool,
                registered: &registered,
                limiter: &limiter,
                hard_stop: &hard_stop,
                lost: &lost,
            };
            let outcome = execute(run, &job, attempt, max_attempts).await;
            running.end(&job.id, job.lease);
            outcome
        };
        let Some(outcome) = outcome else {
            // The lease was lost: another run owns the job now. Nothing is recorded.
            return;
        };
        if let Outcome::Retry { delay, .. } | Outcome::Snoozed { delay, .. } = &outcome {
            // Wake this kind's dispatcher when the job is due again instead of waiting for a
            // poll.
            let waker = waker.clone();
            let delay = *delay;
            tokio::spawn(async move {
                tokio::time::sleep(delay + Duration::from_millis(5)).await;
                waker.notify_one();
            });
        }
        let _ = done.send(Completion {
            id: job.id.clone(),
            lease: job.lease,
            outcome,
        });
    }
    .instrument(span)
    .await
}

/// Texts go into PostgreSQL `text`, which refuses NUL: a handler's error message with one
/// would otherwise fail the outcome's write.
fn readable(message: String) -> String {
    if message.contains('\0') {
        message.replace('\0', "\u{FFFD}")
    } else {
        message
    }
}

/// What one attempt runs with.
struct Run<'a> {
    pool: &'a PgPool,
    registered: &'a Registered,
    limiter: &'a Limiter,
    hard_stop: &'a CancellationToken,
    /// Cancelled when the heartbeat finds the lease taken over.
    lost: &'a CancellationToken,
}

async fn execute(r: Run<'_>, job: &Claimed, attempt: u32, max_attempts: u32) -> Option<Outcome> {
    let spec = r.registered.spec;
    let ctx = JobContext::new(
        job.id.clone(),
        spec.kind,
        attempt,
        max_attempts,
        job.requested_by,
        job.request_id.clone(),
        job.lease,
        spec.timeout,
        r.pool.clone(),
    )
    .with_limiter(r.limiter.clone());
    metrics::counter!("jobs_started_total", "kind" => spec.kind).increment(1);
    tracing::info!("job started");
    let started = Instant::now();
    let handler = AssertUnwindSafe((r.registered.handler)(job.payload.clone(), ctx)).catch_unwind();
    let result = tokio::select! {
        r = tokio::time::timeout(spec.timeout, handler) => r,
        _ = r.hard_stop.cancelled() => {
            tracing::warn!("released unfinished at shutdown");
            return Some(Outcome::Released);
        }
        _ = r.lost.cancelled() => Ok(Ok(Err(JobError::LeaseLost))),
    };
    let elapsed = started.elapsed();
    metrics::histogram!("job_run_seconds", "kind" => spec.kind).record(elapsed.as_secs_f64());
    let error = match result {
        Ok(Ok(Ok(value))) if value.to_string().len() > MAX_RESULT_BYTES => {
            JobError::permanent(format!(
                "the job's result is larger than {MAX_RESULT_BYTES} bytes (a bug: results are summaries; files are artifacts)"
            ))
        }
        Ok(Ok(Ok(value))) => {
            metrics::counter!("jobs_succeeded_total", "kind" => spec.kind).increment(1);
            tracing::info!(elapsed_ms = elapsed.as_millis() as u64, "job succeeded");
            return Some(Outcome::Succeeded(value));
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
    Some(match error {
        JobError::Cancelled => {
            metrics::counter!("jobs_cancelled_total", "kind" => spec.kind).increment(1);
            tracing::info!("job cancelled");
            Outcome::Cancelled
        }
        JobError::LeaseLost => {
            metrics::counter!("jobs_lease_lost_total", "kind" => spec.kind).increment(1);
            tracing::warn!("lease lost: the job was re-queued and may run elsewhere; this run stops and records nothing");
            return None;
        }
        JobError::Snooze { reason, delay } => {
            metrics::counter!("jobs_snoozed_total", "kind" => spec.kind).increment(1);
            tracing::info!(%reason, delay_ms = delay.as_millis() as u64, "job snoozed");
            Outcome::Snoozed {
                reason: readable(reason),
                delay,
            }
        }
        JobError::Permanent(message) => {
            metrics::counter!("jobs_failed_total", "kind" => spec.kind).increment(1);
            tracing::error!(error = %message, "job failed permanently");
            Outcome::Failed(readable(message))
        }
        // The provider said when to come back: wait that long, no attempt used.
        JobError::Transient {
            message,
            retry_after: Some(delay),
        } => {
            metrics::counter!("jobs_snoozed_total", "kind" => spec.kind).increment(1);
            tracing::info!(error = %message, delay_ms = delay.as_millis() as u64, "job snoozed: the provider asked to wait");
            Outcome::Snoozed {
                reason: readable(message),
                delay,
            }
        }
        JobError::Transient {
            message,
            retry_after: None,
        } => {
            let message = readable(message);
            if attempt >= max_attempts {
                metrics::counter!("jobs_failed_total", "kind" => spec.kind).increment(1);
                tracing::error!(error = %message, "job failed: attempts exhausted");
                Outcome::Failed(format!("{message} (gave up after {attempt} attempts)"))
            } else {
                let delay = spec.backoff(attempt);
                metrics::counter!("jobs_retried_total", "kind" => spec.kind).increment(1);
                tracing::warn!(error = %message, delay_ms = delay.as_millis() as u64, "job will be retried");
                Outcome::Retry {
                    error: message,
                    delay,
                }
            }
        }
    })
}
