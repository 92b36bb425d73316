//! Notifications: `notification` delivers one notice (a `notifications` row) through Telegram
//! or e-mail; `broadcast` creates the notices of a manager's message to a group or a lesson;
//! `lesson_reminders` (cron) creates the reminders due. Handlers: `worker::handlers::notify`.
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::domain::notifications::{self, Channel, NewNotice};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{enqueue::EnqueueError, enqueue_many, Enqueued, Job, Requester};

/// Delivers the notice `notification_id` — sent at most once, whatever happens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeliverNotification {
    pub notification_id: Uuid,
}

impl Job for DeliverNotification {
    const KIND: &'static str = "notification";
    /// Spent by transient failures (SMTP 4xx, 5xx, connections); rate limits and an open
    /// breaker snooze instead.
    const MAX_ATTEMPTS: u32 = 10;
    /// One send under the provider's timeout plus a short rate-limit wait.
    const TIMEOUT: Duration = Duration::from_secs(60);
    const BACKOFF_BASE: Duration = Duration::from_secs(5);
    const BACKOFF_CAP: Duration = Duration::from_secs(30 * 60);

    fn dedup_key(&self) -> Option<String> {
        Some(format!("notification:{}", self.notification_id))
    }
}

/// What a delivered notice's job shows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeliveryReport {
    pub notification_id: Uuid,
    pub state: String,
    pub provider_message_id: Option<String>,
    pub reason: Option<String>,
}

/// A manager's message to the members of a group or the roster of a lesson.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Broadcast {
    pub group_id: Option<Uuid>,
    pub lesson_id: Option<Uuid>,
    pub text: String,
    pub channels: Vec<Channel>,
}

impl Job for Broadcast {
    const KIND: &'static str = "broadcast";
    const TIMEOUT: Duration = Duration::from_secs(120);
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BroadcastReport {
    pub recipients: usize,
    pub notifications: usize,
}

/// Creates the lesson reminders that are due (cron).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LessonReminders {}

impl Job for LessonReminders {
    const KIND: &'static str = "lesson_reminders";
    const TIMEOUT: Duration = Duration::from_secs(5 * 60);

    fn dedup_key(&self) -> Option<String> {
        Some("reminders".into())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemindersReport {
    pub created: usize,
}

/// Creates `notices` (those whose dedup key is new) and enqueues the delivery of each, in the
/// caller's transaction — the one of the business change that causes them. Returns the jobs
/// enqueued (pass them to [`crate::committed`] after the commit).
pub async fn notify(
    conn: &mut PgConnection,
    requester: &Requester,
    notices: &[NewNotice],
) -> Result<Vec<Enqueued>, EnqueueError> {
    let ids = notifications::insert(&mut *conn, notices)
        .await
        .map_err(stored)?;
    let jobs: Vec<DeliverNotification> = ids
        .iter()
        .map(|&notification_id| DeliverNotification { notification_id })
        .collect();
    let enqueued = enqueue_many(&mut *conn, requester, &jobs).await?;
    let job_ids: Vec<String> = enqueued.iter().map(|e| e.job_id.clone()).collect();
    notifications::set_jobs(&mut *conn, &ids, &job_ids)
        .await
        .map_err(stored)?;
    Ok(enqueued)
}

/// The outbox's statements fail only as database errors.
fn stored(e: shared::domain::DomainError) -> EnqueueError {
    match e {
        shared::domain::DomainError::Database(e) => EnqueueError::Database(e),
        other => EnqueueError::Engine(other.to_string()),
    }
}
