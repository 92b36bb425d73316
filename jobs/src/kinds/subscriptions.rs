//! `end_subscriptions`: the daily job that ends subscriptions whose period is over and notifies
//! their clients ("ending soon", "ended").
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Job;

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
    /// Notices created: "ending soon" and "ended", one per subscription.
    pub notices: i64,
}
