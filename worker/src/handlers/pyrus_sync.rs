//! `pyrus_sync`: the Pyrus form's tasks become rental applications, upserted by task id. The
//! register is read in pages of [`PAGE`] tasks keyed by task id (`id > last`), each page parsed
//! as a stream and written in one transaction with the cursor (under the lease's fence), so a
//! retry or a crash continues after the last written task. A task whose fields do not make an
//! application (or that does not decode) is counted and listed in the result, never fatal. An
//! attempt close to its timeout snoozes between pages instead of being cut off. Triggered by
//! cron (hourly) and by `POST /api/imports/pyrus`.
use std::{sync::Arc, time::Duration};

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
        clean_text, disabled,
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
const LISTED: usize = jobs::kinds::imports::LISTED;
/// Left of an attempt's timeout when it stops between pages and snoozes.
const DEADLINE_MARGIN: Duration = Duration::from_secs(90);

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
    /// The sync finished: a run after a crash that lost the outcome returns the report.
    #[serde(default)]
    done: bool,
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

/// A text field, cleaned (no NULs or control characters) and cut to 2,000 characters (the
/// application's own check then applies its limits).
fn text(task: &Task, id: i64) -> Option<String> {
    task.field(id)
        .and_then(serde_json::Value::as_str)
        .and_then(|s| clean_text(s, 2000))
}

/// The catalog item's first value (`{"values": ["Кабинет 20"], …}`).
fn catalog(task: &Task, id: i64) -> Option<String> {
    task.field(id)?
        .get("values")?
        .as_array()?
        .first()?
        .as_str()
        .and_then(|s| clean_text(s, 200))
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

fn unmapped(report: &mut PyrusReport, task_id: Option<i64>, problems: Vec<String>) {
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
    if cursor.done {
        return Ok(cursor.report);
    }
    loop {
        if ctx.remaining() < DEADLINE_MARGIN {
            return Err(JobError::snooze(
                "продолжит после последней записанной задачи",
                Duration::from_secs(1),
            ));
        }
        let mut tasks: Vec<Task> = Vec::new();
        let mut broken: Vec<(Option<i64>, String)> = Vec::new();
        let got = pyrus
            .register_page(&ctx, cursor.after, PAGE, |item| match item {
                Ok(t) => tasks.push(t),
                Err(e) => broken.push(e),
            })
            .await?;
        let mut next = cursor.clone();
        next.report.pages += 1;
        next.report.tasks += got as i64;
        let highest = tasks
            .iter()
            .map(|t| t.id)
            .chain(broken.iter().filter_map(|b| b.0))
            .max();
        if got >= PAGE as usize && highest.is_none_or(|h| Some(h) <= cursor.after) {
            return Err(JobError::permanent(format!(
                "Pyrus answered a full page without a task after {:?}: it ignored the id filter",
                cursor.after
            )));
        }
        next.after = highest.max(cursor.after);
        for (id, reason) in broken {
            tracing::warn!(task.id = ?id, %reason, "pyrus task skipped");
            unmapped(
                &mut next.report,
                id,
                vec![reason.chars().take(200).collect()],
            );
        }

        let mut read_ok = Vec::new();
        for task in &tasks {
            match read(task) {
                Ok((room, app)) => read_ok.push((task.id, room, app)),
                Err(problems) => unmapped(&mut next.report, Some(task.id), problems),
            }
        }
        drop(tasks);
        let rooms: Vec<String> = read_ok.iter().map(|r| r.1.clone()).collect();
        let room_ids = rentals::rooms_by_name(ctx.db(), &rooms).await?;
        let mut apps = Vec::with_capacity(read_ok.len());
        for (task_id, room, mut app) in read_ok {
            let Some(room_id) = room_ids.get(&room) else {
                let shown: String = room.chars().take(100).collect();
                unmapped(
                    &mut next.report,
                    Some(task_id),
                    vec![format!("room {shown:?} is not a room of the centre")],
                );
                continue;
            };
            app.room_id = *room_id;
            match app.check() {
                Ok(()) => apps.push((task_id, app)),
                Err(shared::domain::DomainError::Invalid(fields)) => unmapped(
                    &mut next.report,
                    Some(task_id),
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
    cursor.done = true;
    let mut tx = ctx.db().begin().await?;
    ctx.fence(&mut tx).await?;
    import_cursor::save(&mut tx, &ctx.id, &cursor).await?;
    tx.commit().await?;
    tracing::info!(
        tasks = cursor.report.tasks,
        created = cursor.report.created,
        unmapped = cursor.report.unmapped,
        "pyrus sync done"
    );
    Ok(cursor.report)
}
