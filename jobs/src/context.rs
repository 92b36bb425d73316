//! What a running job can see and do besides its payload: ids, attempt, progress reports
//! (which double as cancellation checkpoints) and the database.
use sqlx::PgPool;
use uuid::Uuid;

use crate::{ledger, limiter::Limiter, JobError};

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
    db: PgPool,
    limiter: Limiter,
}

impl JobContext {
    pub fn new(
        id: String,
        kind: &'static str,
        attempt: u32,
        max_attempts: u32,
        requested_by: Option<Uuid>,
        request_id: Option<String>,
        db: PgPool,
    ) -> Self {
        Self {
            id,
            kind,
            attempt,
            max_attempts,
            requested_by,
            request_id,
            limiter: Limiter::new(db.clone()),
            db,
        }
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
        match ledger::progress(&self.db, &self.id, self.attempt, percent, &message).await? {
            Some(true) => Err(JobError::Cancelled),
            _ => Ok(()),
        }
    }

    /// Whether someone asked to cancel this job (a cheap primary-key read).
    pub async fn is_cancel_requested(&self) -> Result<bool, JobError> {
        Ok(ledger::cancel_requested(&self.db, &self.id).await?)
    }

    /// `Err(JobError::Cancelled)` when a cancel was requested: `ctx.check_cancelled().await?`.
    pub async fn check_cancelled(&self) -> Result<(), JobError> {
        if self.is_cancel_requested().await? {
            Err(JobError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Stores the job's downloadable file (one per job; a retry replaces it).
    pub async fn store_artifact(
        &self,
        file_name: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<(), JobError> {
        ledger::store_artifact(&self.db, &self.id, file_name, content_type, bytes).await?;
        Ok(())
    }
}
