//! `pyrus_sync`: the Pyrus form's tasks become rental applications, upserted by task id. The
//! register is read in pages of [`PAGE`] tasks keyed by task id (`id > last`), each page parsed
//! as a stream and written in one transaction with the cursor (under the lease's fence), so a
//! retry or a crash continues after the last written task. A task whose fields do not make an
//! application is counted and listed in the result, never fatal. Triggered by cron (hourly)
//! and by `POST /api/imports/pyrus`.
use std::sync::Arc;

use chrono::{NaiveDate, NaiveTime};
use jobs::{
    kinds::imports::{PyrusReport, PyrusSync, Unmapped},
    JobContext, JobError,
};
use serde::{Deserialize, Serialize};
use shared::domain::rentals::{self, NewApplication};
use uuid::Uuid;

use super::import_cursor;
use crate::{
    clients::{
        disabled,
        pyrus::{Pyrus, Task},
        Integrations,
    },
    Registry,
};

/// Hourly, on the hour (Moscow time, seconds first).
pub const SCHEDULE: &str = "0 0 * * * *";
/// Tasks per register request.
pub const PAGE: u32 = 1000;
/// Unmapped tasks listed in the result (all are counted).
const LISTED: usize = 100;

pub fn register(registry: Registry, integrations: &Integrations) -> Registry {
    let pyrus = integrations.pyrus.clone();
    registry
        .register::<PyrusSync, _, _, _>(1, move |job, ctx| {
            let pyrus = pyrus.clone();
            async move {
                match pyrus {
                    Ok(p) => sync(job, ctx, p).await,
                    Err(why) => Err(disabled("Pyrus", &why)),
                }
            }
        })
        .schedule("pyrus_sync", SCHEDULE, PyrusSync::default())
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Cursor {
    after: Option<i64>,
    report: PyrusReport,
}

/// The form's field ids (reference §3.2, as the form of the centre is laid out).
mod field {
    pub const ORGANISATION: i64 = 1;
    pub const CONTACT: i64 = 2;
    pub const PHONE: i64 = 3;
    pub const EMAIL: i64 = 4;
    pub const ROOM: i64 = 5;
    pub const DATE: i64 = 6;
    pub const START: i64 = 7;
    pub const END: i64 = 8;
    pub const COMMENT: i64 = 12;
}

fn text(task: &Task, id: i64) -> Option<String> {
    task.field(id)
        .and_then(serde_json::Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The catalog item's first value (`{"values": ["Кабинет 20"], …}`).
fn catalog(task: &Task, id: i64) -> Option<String> {
    task.field(id)?
        .get("values")?
        .as_array()?
        .first()?
        .as_str()
        .map(str::to_string)
}

/// A task as an application (its room still as a name), or what is missing.
fn read(task: &Task) -> Result<(String, NewApplication), Vec<String>> {
    let mut problems = Vec::new();
    let mut need = |v: Option<String>, what: &str| {
        if v.is_none() {
            problems.push(format!("no {what}"));
        }
        v.unwrap_or_default()
    };
    let organisation = need(text(task, field::ORGANISATION), "organisation");
    let contact_name = need(text(task, field::CONTACT), "contact name");
    let room = need(catalog(task, field::ROOM), "room");
    let date = text(task, field::DATE).and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok());
    let start = text(task, field::START).and_then(|t| NaiveTime::parse_from_str(&t, "%H:%M").ok());
    let end = text(task, field::END).and_then(|t| NaiveTime::parse_from_str(&t, "%H:%M").ok());
    if date.is_none() {
        problems.push("no rental date (YYYY-MM-DD)".into());
    }
    if start.is_none() || end.is_none() {
        problems.push("no start or end time (HH:MM)".into());
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let (date, start, end) = (
        date.unwrap_or_default(),
        start.unwrap_or_default(),
        end.unwrap_or_default(),
    );
    Ok((
        room,
        NewApplication {
            organisation,
            contact_name,
            contact_phone: text(task, field::PHONE),
            contact_email: text(task, field::EMAIL),
            room_id: Uuid::nil(),
            date_from: date,
            date_to: date,
            time_from: start,
            time_to: end,
            comment: text(task, field::COMMENT),
        },
    ))
}

fn unmapped(report: &mut PyrusReport, task_id: i64, problems: Vec<String>) {
    report.unmapped += 1;
    if report.unmapped_tasks.len() < LISTED {
        report.unmapped_tasks.push(Unmapped { task_id, problems });
    }
}

pub async fn sync(
    _job: PyrusSync,
    ctx: JobContext,
    pyrus: Arc<Pyrus>,
) -> Result<PyrusReport, JobError> {
    let mut cursor: Cursor = import_cursor::load(ctx.db(), &ctx.id)
        .await?
        .unwrap_or_default();
    loop {
        let mut tasks: Vec<Task> = Vec::new();
        let got = pyrus
            .register_page(&ctx, cursor.after, PAGE, |t| tasks.push(t))
            .await?;
        let mut next = cursor.clone();
        next.report.pages += 1;
        next.report.tasks += got as i64;
        next.after = tasks.iter().map(|t| t.id).max().or(cursor.after);

        let mut read_ok = Vec::new();
        for task in &tasks {
            match read(task) {
                Ok((room, app)) => read_ok.push((task.id, room, app)),
                Err(problems) => unmapped(&mut next.report, task.id, problems),
            }
        }
        drop(tasks);
        let rooms: Vec<String> = read_ok.iter().map(|r| r.1.clone()).collect();
        let room_ids = rentals::rooms_by_name(ctx.db(), &rooms).await?;
        let mut apps = Vec::with_capacity(read_ok.len());
        for (task_id, room, mut app) in read_ok {
            let Some(room_id) = room_ids.get(&room.to_lowercase()) else {
                unmapped(
                    &mut next.report,
                    task_id,
                    vec![format!("room {room:?} is not a room of the centre")],
                );
                continue;
            };
            app.room_id = *room_id;
            match app.check() {
                Ok(()) => apps.push((task_id, app)),
                Err(shared::domain::DomainError::Invalid(fields)) => unmapped(
                    &mut next.report,
                    task_id,
                    fields
                        .into_iter()
                        .map(|(f, p)| format!("{f}: {p}"))
                        .collect(),
                ),
                Err(e) => return Err(e.into()),
            }
        }
        let mut tx = ctx.db().begin().await?;
        ctx.fence(&mut tx).await?;
        let written = rentals::upsert_imported(&mut tx, &apps).await?;
        next.report.created += written.created;
        next.report.updated += written.updated;
        next.report.unchanged += written.unchanged;
        import_cursor::save(&mut tx, &ctx.id, &next).await?;
        tx.commit().await?;
        cursor = next;
        ctx.progress(
            50,
            format!(
                "задач: {}; заявок новых: {}, изменённых: {}",
                cursor.report.tasks, cursor.report.created, cursor.report.updated
            ),
        )
        .await?;
        if got < PAGE as usize {
            break;
        }
    }
    import_cursor::clear(ctx.db(), &ctx.id).await?;
    tracing::info!(
        tasks = cursor.report.tasks,
        created = cursor.report.created,
        unmapped = cursor.report.unmapped,
        "pyrus sync done"
    );
    Ok(cursor.report)
}
