//! `end_subscriptions`: the daily end of subscriptions whose period is over (their left-over
//! visits burn) and the "ending soon" notices. Both steps are idempotent: a second run the
//! same day changes nothing.
use jobs::{
    kinds::subscriptions::{EndReport, EndSubscriptions, ENDING_SOON_DAYS},
    JobContext, JobError,
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
    let ended = subscriptions::end_expired(ctx.db()).await?;
    ctx.progress(50, format!("{} subscriptions ended", ended.ended))
        .await?;
    let ending_soon_notices = subscriptions::queue_ending_soon(ctx.db(), ENDING_SOON_DAYS).await?;
    let report = EndReport {
        ended: ended.ended,
        visits_burned: ended.visits_burned,
        ending_soon_notices,
    };
    tracing::info!(?report, "subscriptions ended");
    Ok(report)
}
