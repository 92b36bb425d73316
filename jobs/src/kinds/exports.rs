//! `timesheet_export`: the monthly attendance timesheet (табель) as an `.xlsx` artifact.
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::time::Month;
use uuid::Uuid;

use crate::Job;

pub const XLSX_CONTENT_TYPE: &str =
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// What to export. `requested_by` is part of the payload so the dedup key can say "the same
/// request by the same user".
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TimesheetExport {
    /// `YYYY-MM`.
    pub month: Month,
    /// None: every group (not archived, or with lessons that month).
    pub group_ids: Option<Vec<Uuid>>,
    pub teacher_id: Option<Uuid>,
    pub requested_by: Uuid,
}

impl Job for TimesheetExport {
    const KIND: &'static str = "timesheet_export";
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(5 * 60);

    fn dedup_key(&self) -> Option<String> {
        let groups = match &self.group_ids {
            None => "all".to_string(),
            Some(ids) => {
                let mut ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
                ids.sort();
                ids.dedup();
                ids.join(",")
            }
        };
        let teacher = self.teacher_id.map(|t| t.to_string()).unwrap_or_default();
        Some(format!(
            "{}|{}|{groups}|{teacher}",
            self.requested_by, self.month
        ))
    }
}

/// The file name of a month's timesheet: `tabel_2026-10.xlsx`.
pub fn timesheet_file_name(month: Month) -> String {
    format!("tabel_{}.xlsx", month.key())
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExportReport {
    pub file_name: String,
    pub bytes: usize,
    pub groups: usize,
    pub members: usize,
    pub lessons: u32,
}
