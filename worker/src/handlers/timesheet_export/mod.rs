//! `timesheet_export`: how the monthly attendance timesheet (табель, after form 0504608) as an
//! `.xlsx` artifact is made — a summary sheet, then one worksheet per group ([`load`] reads
//! the month, [`workbook`] writes it).
//!
//! Conventions (reference doc §6.3), decided here:
//! - Columns are every calendar day of the month (Moscow dates). Days without a lesson of the
//!   group are shaded; a weekend day without a lesson is also marked «В» in every row. A weekend
//!   day *with* a lesson is an ordinary lesson day (the centre teaches on weekends).
//! - Marks: «+» present (also free and trial visits), «Н» absent, «У» excused. Present is «+»
//!   rather than empty (the paper form leaves it empty) so that a lesson nobody marked yet —
//!   an empty white cell — cannot be mistaken for attendance.
//! - Two lessons on one day: the cell shows «+» if the client attended either, else «Н», else
//!   «У»; the totals count every lesson.
//! - Rows: members enrolled at any time during the month (waitlist excluded), plus anyone with a
//!   mark in the group's lessons (a trial visitor), ordered by name.
//! - Totals per row: visits, absences in all, of which excused; per day: clients present.
//! - Summary sheet: per group members, lessons (cancelled excluded), visits, absences, and the
//!   attendance rate = visits ÷ (visits + absences) over the marks given.
//!
//! The data comes in four queries whatever the number of groups; worksheets are written in
//! rust_xlsxwriter's constant-memory mode (rows stream to a temp file), so memory stays bounded
//! by one row plus the loaded data. Between groups — after the first, then at most every
//! [`CHECKPOINT_EVERY`] — the job reports progress (10–90 %), which is also where a cancel
//! request stops it (no artifact is stored); a last check follows the zip.
use std::time::{Duration, Instant};

use jobs::{
    kinds::{
        exports::{timesheet_file_name, ExportReport, TimesheetExport, XLSX_CONTENT_TYPE},
        notifications::notify,
    },
    JobContext, JobError,
};
use rust_xlsxwriter::XlsxError;
use shared::domain::notifications::{Channel, NewNotice, Recipient, Template};
use uuid::Uuid;

use crate::Registry;

pub mod load;
pub mod workbook;

pub use load::{load, DayMark, GroupSheet, MemberRow, Timesheet};
pub use workbook::{write_workbook, TimesheetWriter};

/// Progress (and the cancellation check that comes with it) at most this often while writing.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// CPU-bound (xlsx writing and zip): one per process; scale with replicas.
pub fn register(registry: Registry) -> Registry {
    registry.register::<TimesheetExport, _, _, _>(1, timesheet_export)
}

pub async fn timesheet_export(
    job: TimesheetExport,
    ctx: JobContext,
) -> Result<ExportReport, JobError> {
    let month = job.month;
    let sheet = load(ctx.db(), month, job.group_ids.as_deref(), job.teacher_id).await?;
    let groups = sheet.groups.len();

    let mut writer = TimesheetWriter::new(&sheet).map_err(xlsx)?;
    let mut last = Instant::now();
    for (i, group) in sheet.groups.iter().enumerate() {
        writer.write_group(&sheet, group).map_err(xlsx)?;
        // After the first group (the first sign of life), then every CHECKPOINT_EVERY.
        if i == 0 || last.elapsed() >= CHECKPOINT_EVERY {
            let percent = 10 + (80 * (i + 1) / groups.max(1)) as u8;
            ctx.progress(percent, format!("записано групп: {} из {groups}", i + 1))
                .await?;
            last = Instant::now();
        }
    }
    ctx.progress(90, format!("записано групп: {groups} из {groups}; сжатие"))
        .await?;
    let bytes = tokio::task::spawn_blocking(move || writer.finish())
        .await
        .map_err(|e| JobError::transient(format!("writer task: {e}")))?
        .map_err(xlsx)?;
    // The last checkpoint: a cancel requested while compressing still leaves no file.
    ctx.check_cancelled().await?;
    let report = ExportReport {
        file_name: timesheet_file_name(month),
        bytes: bytes.len(),
        groups,
        members: sheet.groups.iter().map(|g| g.members.len()).sum(),
        lessons: sheet.groups.iter().map(GroupSheet::lessons).sum(),
    };
    ctx.store_artifact(&report.file_name, XLSX_CONTENT_TYPE, bytes)
        .await?;
    notify_ready(&ctx, job.requested_by, &report.file_name).await?;
    tracing::info!(?report, "timesheet exported");
    Ok(report)
}

/// "Your export is ready" to the user who asked (by e-mail; once per job, a re-run after a
/// crash finds the notice's dedup key).
async fn notify_ready(ctx: &JobContext, user: Uuid, file_name: &str) -> Result<(), JobError> {
    let notice = NewNotice {
        recipient: Recipient::User(user),
        channel: Some(Channel::Email),
        template: Template::ExportReady,
        params: serde_json::json!({"job_id": ctx.id, "file_name": file_name}),
        dedup_key: format!("export_ready:{}", ctx.id),
        not_after: None,
    };
    let requester = jobs::Requester {
        user_id: Some(user),
        request_id: Some(ctx.id.clone()),
    };
    let mut tx = ctx.db().begin().await?;
    ctx.fence(&mut tx).await?;
    let enqueued = notify(&mut tx, &requester, &[notice]).await?;
    tx.commit().await?;
    jobs::committed(&enqueued);
    Ok(())
}

fn xlsx(e: XlsxError) -> JobError {
    JobError::transient(format!("xlsx writer: {e}"))
}
