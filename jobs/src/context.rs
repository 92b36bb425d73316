//! What a running job can see and do besides its payload: ids, attempt, progress reports
//! (which double as cancellation checkpoints), the database, the global rate limiter and the
//! lease. Every write of the run is fenced on its lease: once the job was taken over (its
//! worker declared lost, the job re-queued), these calls fail with `JobError::LeaseLost`,
//! which stops the handler (`?`) and writes nothing.
use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{
    ledger,
    limiter::{Limiter, Permit},
    JobError,
};

/// Handed to every handler invocation. Cheap to clone.
#[derive(Clone, Debug)]
pub struct JobContext {
    pub id: String,
    pub kind: &'static str,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub max_attempts: u32,
    pub requested_by: Option<Uuid>,
    pub request_id: Option<String>,
    /// This claim's token (see the module comment).
    pub lease: Uuid,
    /// When the attempt's run timeout ends.
    pub deadline: Instant,
    db: PgPool,
    limiter: Limiter,
}

impl JobContext {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        kind: &'static str,
        attempt: u32,
        max_attempts: u32,
        requested_by: Option<Uuid>,
        request_id: Option<String>,
        lease: Uuid,
        timeout: Duration,
        db: PgPool,
    ) -> Self {
        Self {
            id,
            kind,
            attempt,
            max_attempts,
            requested_by,
            request_id,
            lease,
            deadline: Instant::now() + timeout,
            limiter: Limiter::new(db.clone()),
            db,
        }
    }

    /// Time left before the attempt's run timeout.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Takes a slot of the global rate limit `key` if one comes within `max_wait` (and before
    /// this attempt's timeout, less a second for the work itself), sleeping until it;
    /// otherwise snoozes the job until the next free slot, reserving nothing it will not use.
    pub async fn acquire(&self, key: &str, max_wait: Duration) -> Result<Permit, JobError> {
        let within = max_wait.min(self.remaining().saturating_sub(Duration::from_secs(1)));
        Ok(self.limiter.acquire_within(key, within).await?)
    }

    /// Gives the handler the process's global rate limiter (configured limits).
    pub fn with_limiter(mut self, limiter: Limiter) -> Self {
        self.limiter = limiter;
        self
    }

    /// The global (all replicas) rate limiter: `ctx.limiter().acquire("telegram").await?`.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    pub fn db(&self) -> &PgPool {
        &self.db
    }

    /// Records progress (0–100 and a message) for pollers and SSE subscribers. It is also a
    /// cancellation checkpoint: when a cancel was requested it returns `JobError::Cancelled`,
    /// which the handler propagates with `?`.
    pub async fn progress(&self, percent: u8, message: impl Into<String>) -> Result<(), JobError> {
        let message = message.into();
        match ledger::progress(&self.db, &self.id, self.lease, percent, &message).await? {
            Some(true) => Err(JobError::Cancelled),
            Some(false) => Ok(()),
            None => Err(JobError::LeaseLost),
        }
    }

    /// Whether someone asked to cancel this job (a primary-key read); `LeaseLost` when the
    /// job was taken over.
    pub async fn is_cancel_requested(&self) -> Result<bool, JobError> {
        ledger::cancel_flag(&self.db, &self.id, self.lease)
            .await?
            .ok_or(JobError::LeaseLost)
    }

    /// `Err(JobError::Cancelled)` when a cancel was requested: `ctx.check_cancelled().await?`.
    pub async fn check_cancelled(&self) -> Result<(), JobError> {
        if self.is_cancel_requested().await? {
            Err(JobError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// `Err(LeaseLost)` unless this run still holds the job: the outbound client asks before
    /// each external call.
    pub async fn check_lease(&self) -> Result<(), JobError> {
        self.is_cancel_requested().await.map(|_| ())
    }

    /// In the handler's own transaction, before it commits the key of an external effect:
    /// locks the job's ledger row if this run still holds the lease (`LeaseLost` otherwise).
    /// The takeover cannot happen until that transaction ends, so a key it commits is this
    /// run's.
    pub async fn fence(&self, tx: &mut PgConnection) -> Result<(), JobError> {
        if ledger::hold_lease(tx, &self.id, self.lease).await? {
            Ok(())
        } else {
            Err(JobError::LeaseLost)
        }
    }

    /// [`JobContext::fence`] that also tells whether a cancel was requested, read under the
    /// same lock on the caller's connection (a handler holding a transaction must not wait
    /// for a second pool connection: with as many runs as connections, that starves the pool).
    pub async fn fence_reading_cancel(&self, tx: &mut PgConnection) -> Result<bool, JobError> {
        ledger::hold_lease_reading_cancel(tx, &self.id, self.lease)
            .await?
            .ok_or(JobError::LeaseLost)
    }

    /// Stores the job's downloadable file (one per job; a retry replaces it). Fenced: a run
    /// that lost its lease stores nothing (`LeaseLost`).
    pub async fn store_artifact(
        &self,
        file_name: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<(), JobError> {
        if ledger::store_artifact(
            &self.db,
            &self.id,
            self.lease,
            file_name,
            content_type,
            bytes,
        )
        .await?
        {
            Ok(())
        } else {
            Err(JobError::LeaseLost)
        }
    }
}
