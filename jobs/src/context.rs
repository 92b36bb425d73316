//! What a running job can see and do besides its payload: ids, attempt, progress reports
//! (which double as cancellation checkpoints) and the database.
use sqlx::PgPool;
use uuid::Uuid;

use crate::{limiter::Limiter, JobError};

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
        let cancel: Option<bool> = sqlx::query_scalar(
            "update job_runs set progress_percent = $2, progress_message = $3, updated_at = now()
             where id = $1 and state = 'running' and attempts = $4
             returning cancel_requested",
        )
        .bind(&self.id)
        .bind(i16::from(percent.min(100)))
        .bind(message.into())
        .bind(self.attempt as i32)
        .fetch_optional(&self.db)
        .await?;
        match cancel {
            Some(true) => Err(JobError::Cancelled),
            _ => Ok(()),
        }
    }

    /// Whether someone asked to cancel this job (a cheap primary-key read).
    pub async fn is_cancel_requested(&self) -> Result<bool, JobError> {
        let cancel: Option<bool> =
            sqlx::query_scalar("select cancel_requested from job_runs where id = $1")
                .bind(&self.id)
                .fetch_optional(&self.db)
                .await?;
        Ok(cancel.unwrap_or(false))
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
        sqlx::query(
            "insert into artifacts (job_id, file_name, content_type, bytes) values ($1, $2, $3, $4)
             on conflict (job_id) do update
             set file_name = excluded.file_name, content_type = excluded.content_type,
                 bytes = excluded.bytes, created_at = now()",
        )
        .bind(&self.id)
        .bind(file_name)
        .bind(content_type)
        .bind(bytes)
        .execute(&self.db)
        .await?;
        Ok(())
    }
}
