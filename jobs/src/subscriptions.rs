//! `end_subscriptions`: the daily job that ends subscriptions whose period is over (their
//! left-over visits burn) and queues "ending soon" notices for the notifications worker.
//!
//! A subscription ends by date only: one whose visits are used up stays active until its end
//! date, so a visit given back (a mark corrected, a lesson cancelled) can still be used.
//! Both statements are idempotent: a second run the same day changes nothing.
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Job, JobContext, JobError};

/// Days before the end date when the "ending soon" notice is queued.
pub const ENDING_SOON_DAYS: i32 = 3;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndSubscriptions {}

impl Job for EndSubscriptions {
    const KIND: &'static str = "end_subscriptions";
    const MAX_ATTEMPTS: u32 = 5;
    const TIMEOUT: Duration = Duration::from_secs(10 * 60);

    fn dedup_key(&self) -> Option<String> {
        Some("daily".into())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndReport {
    pub ended: i64,
    pub visits_burned: i64,
    pub ending_soon_notices: i64,
}

pub async fn end_subscriptions(
    _job: EndSubscriptions,
    ctx: JobContext,
) -> Result<EndReport, JobError> {
    let (ended, visits_burned): (i64, i64) = sqlx::query_as(
        "with ended as (
             update subscriptions
             set status = 'ended', ended_at = now(), updated_at = now(),
                 visits_burned = case when status = 'active' and visits_total is not null
                                      then visits_total - visits_used else 0 end
             where status in ('active', 'inactive') and ends_on < current_date_msk()
             returning visits_burned
         )
         select count(*), coalesce(sum(visits_burned), 0)::bigint from ended",
    )
    .fetch_one(ctx.db())
    .await?;
    ctx.progress(50, format!("{ended} subscriptions ended"))
        .await?;
    let ending_soon_notices = sqlx::query(
        "insert into notification_outbox (kind, client_id, subject_id, payload)
         select 'subscription_ending', s.client_id, s.id,
                jsonb_build_object('ends_on', s.ends_on,
                                   'visits_left', s.visits_total - s.visits_used)
         from subscriptions s
         where s.status = 'active'
           and s.ends_on between current_date_msk() and current_date_msk() + $1
         on conflict (kind, subject_id) do nothing",
    )
    .bind(ENDING_SOON_DAYS)
    .execute(ctx.db())
    .await?
    .rows_affected() as i64;
    let report = EndReport {
        ended,
        visits_burned,
        ending_soon_notices,
    };
    tracing::info!(?report, "subscriptions ended");
    Ok(report)
}
