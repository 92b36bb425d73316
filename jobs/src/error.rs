//! How a job attempt ends when it does not succeed.
use std::time::Duration;

/// How an attempt ends when it does not succeed: transient errors are retried with backoff,
/// permanent ones fail the job at once with a message a person can read, `Cancelled` ends it
/// as cancelled, `Snooze` puts it back in the queue for a while without using an attempt, and
/// `LeaseLost` stops a run whose job was taken over (it records nothing).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{message}")]
    Transient {
        message: String,
        /// The remote side asked us to wait this long (`Retry-After`): the job snoozes that
        /// long instead of using an attempt.
        retry_after: Option<Duration>,
    },
    #[error("{0}")]
    Permanent(String),
    #[error("cancelled by request")]
    Cancelled,
    /// Wait `delay` (a rate limit's next slot, a provider's `Retry-After`), then run again;
    /// the attempt is not counted.
    #[error("waiting {delay:?}: {reason}")]
    Snooze { reason: String, delay: Duration },
    /// This run no longer holds the job (its worker was declared lost and the job re-queued,
    /// maybe running elsewhere): it must stop and write nothing.
    #[error("the job's lease was lost: it was re-queued and may run elsewhere")]
    LeaseLost,
}

impl JobError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(message: impl Into<String>, delay: Duration) -> Self {
        Self::Transient {
            message: message.into(),
            retry_after: Some(delay),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent(message.into())
    }

    pub fn snooze(reason: impl Into<String>, delay: Duration) -> Self {
        Self::Snooze {
            reason: reason.into(),
            delay,
        }
    }
}

impl From<sqlx::Error> for JobError {
    /// Data and constraint errors (SQLSTATE classes 22 and 23) will fail the same way again;
    /// everything else (connection, timeout, serialization) may pass on a retry.
    fn from(error: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &error {
            if let Some(code) = db.code() {
                if code.starts_with("22") || code.starts_with("23") {
                    return Self::Permanent(format!("database rejected the data: {db}"));
                }
            }
        }
        Self::transient(format!("database error: {error}"))
    }
}

impl From<shared::domain::DomainError> for JobError {
    /// A rule that refuses will refuse again: permanent, with the rule's words. The database
    /// is classified as above.
    fn from(error: shared::domain::DomainError) -> Self {
        use shared::domain::DomainError as D;
        match error {
            D::Database(db) => db.into(),
            other => Self::Permanent(other.to_string()),
        }
    }
}

impl From<crate::enqueue::EnqueueError> for JobError {
    /// A job that enqueues others (notices, their deliveries): the database as above, a
    /// payload that does not encode is permanent.
    fn from(error: crate::enqueue::EnqueueError) -> Self {
        use crate::enqueue::EnqueueError as E;
        match error {
            E::Database(db) => db.into(),
            E::Encode(e) => Self::Permanent(format!("cannot encode a job: {e}")),
            E::Engine(e) => Self::transient(format!("queue engine: {e}")),
        }
    }
}
