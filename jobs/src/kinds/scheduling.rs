//! `bulk_schedule`: a plan of weekly lessons for many groups over a period (the rules are
//! `shared::domain::scheduling`).
use std::time::Duration;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
pub use shared::domain::scheduling::{Clash, Mode, PlanEntry};
use uuid::Uuid;

use crate::Job;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BulkSchedule {
    /// Identifies the plan's lessons (with each occurrence's key): the idempotency key.
    pub plan_id: Uuid,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub holidays: Vec<NaiveDate>,
    pub mode: Mode,
    pub dry_run: bool,
    pub entries: Vec<PlanEntry>,
}

impl Job for BulkSchedule {
    const KIND: &'static str = "bulk_schedule";
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(5 * 60);
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScheduleReport {
    pub dry_run: bool,
    /// Lessons written by this run (a dry run: that would be written).
    pub lessons_created: i64,
    /// Roster rows of those lessons: the groups' members expected at them.
    pub enrolments_created: i64,
    /// What exists of this plan after the run, whichever run wrote it (a re-run that created
    /// nothing still shows the plan's lessons and rosters here).
    #[serde(default)]
    pub plan_lessons: i64,
    #[serde(default)]
    pub plan_enrolments: i64,
    pub occurrences: i64,
    pub holidays_skipped: i64,
    /// Occurrences not written because of a clash (`skip_conflicts`), or every clash that
    /// stopped the plan (`all_or_nothing`).
    pub clashes: Vec<Clash>,
    /// Milliseconds since the start at the end of each phase (expanded, clashes, written,
    /// committed): where a slow plan spends its time.
    #[serde(default)]
    pub phases_ms: Vec<(String, u64)>,
}
