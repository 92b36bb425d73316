//! `end_subscriptions`: the daily end of subscriptions whose period is over (their left-over
//! visits burn) and the notices "ending soon" and "ended", in one transaction. Idempotent: a
//! second run the same day changes nothing (the notices' dedup keys).
use jobs::{
    kinds::{
        notifications::notify,
        subscriptions::{EndReport, EndSubscriptions, ENDING_SOON_DAYS},
    },
    JobContext, JobError, Requester,
};
use shared::domain::subscriptions;

use crate::Registry;

/// Daily at 00:05 Moscow time, just after the date changes.
pub const SCHEDULE: &str = "0 5 0 * * *";

pub fn register(registry: Registry) -> Registry {
    registry
        .register::<EndSubscriptions, _, _, _>(1, end_subscriptions)
        .schedule("end_subscriptions", SCHEDULE, EndSubscriptions {})
}

pub async fn end_subscriptions(
    _job: EndSubscriptions,
    ctx: JobContext,
) -> Result<EndReport, JobError> {
    // The change and its notices in one transaction: no ended subscription without its notice.
    let mut tx = ctx.db().begin().await?;
    ctx.fence(&mut tx).await?;
    let ended = subscriptions::end_expired(&mut *tx).await?;
    let notices = subscriptions::notices(&mut *tx, ENDING_SOON_DAYS).await?;
    let requester = Requester {
        user_id: ctx.requested_by,
        request_id: Some(ctx.id.clone()),
    };
    let enqueued = notify(&mut tx, &requester, &notices).await?;
    tx.commit().await?;
    jobs::committed(&enqueued);
    let report = EndReport {
        ended: ended.ended,
        visits_burned: ended.visits_burned,
        notices: enqueued.len() as i64,
    };
    tracing::info!(?report, "subscriptions ended");
    Ok(report)
}
