//! Retrying the database from a loop without flooding the log during an outage.
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Logs a repeating failure once, then at most every 10 s with the count in between, so an
/// outage does not flood the log.
pub(crate) struct Throttled {
    what: &'static str,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            what,
            last: None,
            suppressed: 0,
        }
    }
    pub(crate) fn error(&mut self, error: &dyn std::fmt::Display) {
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if due {
            tracing::error!(%error, suppressed = self.suppressed, "{} failed", self.what);
            self.last = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
    }
    pub(crate) fn recovered(&mut self) {
        if self.last.take().is_some() {
            tracing::info!("{} recovered", self.what);
        }
        self.suppressed = 0;
    }
}

/// A loop that talks to the database: failures are logged throttled and followed by a capped
/// exponential wait ([`db_backoff`]); a success logs the recovery and resets the wait.
pub(crate) struct DbRetry {
    pub(crate) log: Throttled,
    failures: u32,
}

impl DbRetry {
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            log: Throttled::new(what),
            failures: 0,
        }
    }

    /// Logs `error` and waits the next backoff; false when `stop` fired meanwhile.
    pub(crate) async fn failed(
        &mut self,
        error: &(dyn std::fmt::Display + Sync),
        stop: &CancellationToken,
    ) -> bool {
        self.log.error(error);
        self.failures += 1;
        tokio::select! {
            _ = tokio::time::sleep(db_backoff(self.failures)) => true,
            _ = stop.cancelled() => false,
        }
    }

    pub(crate) fn succeeded(&mut self) {
        self.log.recovered();
        self.failures = 0;
    }
}

/// Capped exponential delay for retrying the database: 100 ms doubling to 5 s.
pub(crate) fn db_backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(5))
}
