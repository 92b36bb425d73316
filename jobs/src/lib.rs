//! The contract between the api and the worker: what a job is and every kind's payload
//! (`kinds`), how it is enqueued (inside the caller's transaction), the `job_runs` ledger (all
//! its reads and writes), the queue engine boundary and the global rate limiter. Nothing here
//! renders a file or calls a service: that is the worker's `handlers`.
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

pub mod breaker;
pub mod context;
pub mod engine;
pub mod enqueue;
pub mod error;
pub mod kinds;
pub mod ledger;
pub mod limiter;
pub mod ops;
pub mod testing;

pub use context::JobContext;
pub use enqueue::{committed, enqueue, enqueue_alone, enqueue_many, Enqueued, Requester};
pub use error::JobError;
pub use limiter::{Limiter, Permit, Rate};

/// A unit of background work. Payloads are imperative nouns (`TimesheetExport`).
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stable queue name stored in the database: never rename.
    const KIND: &'static str;
    /// Attempts before the job is failed for good (a crash or lost lease counts as one).
    const MAX_ATTEMPTS: u32 = 5;
    /// Run time allowed for one attempt; past it the attempt is stopped and retried.
    const TIMEOUT: Duration;
    /// First retry delay; doubles each attempt (with jitter) up to [`Job::BACKOFF_CAP`].
    const BACKOFF_BASE: Duration = Duration::from_secs(2);
    const BACKOFF_CAP: Duration = Duration::from_secs(600);

    /// Same key while a job of this kind is queued or running => the existing job is returned.
    fn dedup_key(&self) -> Option<String> {
        None
    }
}

/// What the worker runtime needs to know about a kind, without its payload type.
#[derive(Debug, Clone, Copy)]
pub struct KindSpec {
    pub kind: &'static str,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl KindSpec {
    pub fn of<J: Job>() -> Self {
        Self {
            kind: J::KIND,
            max_attempts: J::MAX_ATTEMPTS,
            timeout: J::TIMEOUT,
            backoff_base: J::BACKOFF_BASE,
            backoff_cap: J::BACKOFF_CAP,
        }
    }

    /// Delay before attempt `attempt + 1` after attempt `attempt` failed: exponential with
    /// "equal jitter" (half fixed, half random), so waits grow from one attempt to the next and
    /// retries of many jobs that failed together spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let full = self
            .backoff_base
            .saturating_mul(1u32 << exp)
            .min(self.backoff_cap);
        let half = full / 2;
        let jitter = half.mul_f64(rand::random::<f64>());
        half + jitter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let spec = KindSpec {
            kind: "t",
            max_attempts: 10,
            timeout: Duration::from_secs(1),
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(10),
        };
        for _ in 0..100 {
            let (a, b, c) = (spec.backoff(1), spec.backoff(2), spec.backoff(3));
            assert!(a >= Duration::from_secs(1) && a <= Duration::from_secs(2));
            assert!(b >= Duration::from_secs(2) && b <= Duration::from_secs(4));
            assert!(c >= Duration::from_secs(4) && c <= Duration::from_secs(8));
            assert!(spec.backoff(30) <= Duration::from_secs(10));
        }
    }
}
