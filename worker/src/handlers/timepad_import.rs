//! `timepad_import`: pages through the organisation's events (100 a page) and each event's
//! orders (250 a page); every page is written — upserts by Timepad ids, paid buyers matched to
//! clients — in one transaction with the cursor that says where the import stands, under the
//! lease's fence. A retry or a crash continues from the next page (committed pages are never
//! fetched again), and unchanged data writes nothing. Triggered by cron (every 30 minutes) and
//! by `POST /api/imports/timepad`.
use std::sync::Arc;

use chrono::Utc;
use jobs::{
    kinds::imports::{TimepadImport, TimepadReport},
    JobContext, JobError,
};
use serde::{Deserialize, Serialize};
use shared::domain::timepad::{self as domain, EventRow, OrderRow, TicketRow};

use super::import_cursor;
use crate::{
    clients::{
        disabled,
        http::CallError,
        timepad::{Event, Order, Page, Timepad, EVENTS_PAGE, ORDERS_PAGE},
        Integrations,
    },
    Registry,
};

/// Every 30 minutes (Moscow time, seconds first).
pub const SCHEDULE: &str = "0 0,30 * * * *";

pub fn register(registry: Registry, integrations: &Integrations) -> Registry {
    let timepad = integrations.timepad.clone();
    registry
        .register::<TimepadImport, _, _, _>(1, move |job, ctx| {
            let timepad = timepad.clone();
            async move {
                match timepad {
                    Ok(t) => import(job, ctx, t).await,
                    Err(why) => Err(disabled("Timepad", &why)),
                }
            }
        })
        .schedule("timepad_import", SCHEDULE, TimepadImport::default())
}

/// Where the import stands; saved with every page.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Cursor {
    /// Events listed so far (the events phase is over when `events_done`).
    events: Vec<i64>,
    events_skip: u64,
    events_done: bool,
    /// The event whose orders are being read, and how many of them were read.
    event_pos: usize,
    orders_skip: u64,
    report: TimepadReport,
}

fn event_row(e: &Event) -> EventRow {
    EventRow {
        id: e.id,
        name: e.name.chars().take(1000).collect(),
        starts_at: e.starts_at.map(|t| t.with_timezone(&Utc)),
        ends_at: e.ends_at.map(|t| t.with_timezone(&Utc)),
        url: e.url.clone(),
        access: e.access_status.clone(),
    }
}

fn order_row(event_id: i64, o: &Order) -> OrderRow {
    let text = |v: Option<&str>| v.map(|s| s.chars().take(500).collect::<String>());
    OrderRow {
        id: o.id,
        event_id,
        status: o.status.name.clone(),
        status_title: text(o.status.title.as_deref()),
        email: text(o.mail.as_deref().or(o.answer("mail"))),
        phone: text(o.answer("phone")),
        surname: text(o.answer("surname")),
        name: text(o.answer("name")),
        amount: o.payment.as_ref().and_then(|p| p.amount),
        ordered_at: o.created_at.map(|t| t.with_timezone(&Utc)),
        tickets: o
            .tickets
            .iter()
            .map(|t| TicketRow {
                id: t.id,
                number: t.number.clone(),
                ticket_type: t.ticket_type.as_ref().and_then(|tt| tt.name.clone()),
                price_nominal: t.price_nominal,
            })
            .collect(),
    }
}

/// A page of orders being fetched in the background; dropping it stops the fetch.
struct Prefetch {
    event_id: i64,
    skip: u64,
    task: tokio::task::JoinHandle<Result<Page<Order>, CallError>>,
}

impl Prefetch {
    fn start(timepad: &Arc<Timepad>, ctx: &JobContext, event_id: i64, skip: u64) -> Self {
        let (timepad, ctx) = (timepad.clone(), ctx.clone());
        let task = tokio::spawn(async move { timepad.orders(&ctx, event_id, skip).await });
        Self {
            event_id,
            skip,
            task,
        }
    }

    async fn take(mut self) -> Result<Page<Order>, CallError> {
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(CallError::Transient {
                service: "timepad",
                message: format!("the page fetch stopped: {e}"),
            }),
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens a page's transaction: fenced, so only the run holding the lease writes a page.
async fn page_tx(ctx: &JobContext) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, JobError> {
    let mut tx = ctx.db().begin().await?;
    ctx.fence(&mut tx).await?;
    Ok(tx)
}

pub async fn import(
    job: TimepadImport,
    ctx: JobContext,
    timepad: Arc<Timepad>,
) -> Result<TimepadReport, JobError> {
    let mut cursor: Cursor = import_cursor::load(ctx.db(), &ctx.id)
        .await?
        .unwrap_or_default();
    if cursor.report.pages > 0 {
        tracing::info!(
            pages = cursor.report.pages,
            event_pos = cursor.event_pos,
            "timepad import resumes from its saved page"
        );
    }
    while !cursor.events_done {
        let page = timepad
            .events(&ctx, cursor.events_skip, job.event_ids.as_deref())
            .await?;
        let rows: Vec<EventRow> = page.values.iter().map(event_row).collect();
        let got = rows.len() as u64;
        let mut next = cursor.clone();
        next.events.extend(rows.iter().map(|e| e.id));
        next.events_skip += got;
        next.events_done = got < EVENTS_PAGE;
        next.report.pages += 1;
        let mut tx = page_tx(&ctx).await?;
        let (new, updated) = domain::upsert_events(&mut tx, &rows).await?;
        next.report.events.new += new;
        next.report.events.updated += updated;
        import_cursor::save(&mut tx, &ctx.id, &next).await?;
        tx.commit().await?;
        cursor = next;
        ctx.progress(5, format!("событий: {}", cursor.events.len()))
            .await?;
    }
    // The next page is fetched while this one is written (it is only used once this one is
    // committed, so the cursor stays exact): the import runs at the speed of the slower of the
    // two, not of their sum.
    let mut prefetched: Option<Prefetch> = None;
    while cursor.event_pos < cursor.events.len() {
        let event_id = cursor.events[cursor.event_pos];
        let skip = cursor.orders_skip;
        let fetched = match prefetched.take() {
            Some(p) if p.event_id == event_id && p.skip == skip => p.take().await,
            _ => timepad.orders(&ctx, event_id, skip).await,
        };
        let page = match fetched {
            Ok(p) => p,
            // Deleted in Timepad since it was listed: skip it, keep importing.
            Err(CallError::Permanent { message, .. }) if message.starts_with("HTTP 404") => {
                tracing::warn!(
                    event_id,
                    "timepad no longer serves this event's orders; skipped"
                );
                let mut next = cursor.clone();
                next.event_pos += 1;
                next.orders_skip = 0;
                next.report.events_gone += 1;
                let mut tx = page_tx(&ctx).await?;
                import_cursor::save(&mut tx, &ctx.id, &next).await?;
                tx.commit().await?;
                cursor = next;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let full = page.values.len() as u64 >= ORDERS_PAGE;
        let (next_pos, next_skip) = if full {
            (cursor.event_pos, skip + page.values.len() as u64)
        } else {
            (cursor.event_pos + 1, 0)
        };
        if let Some(&next_event) = cursor.events.get(next_pos) {
            prefetched = Some(Prefetch::start(&timepad, &ctx, next_event, next_skip));
        }
        let rows: Vec<OrderRow> = page.values.iter().map(|o| order_row(event_id, o)).collect();
        let got = rows.len() as u64;
        let mut next = cursor.clone();
        if got < ORDERS_PAGE {
            next.event_pos += 1;
            next.orders_skip = 0;
        } else {
            next.orders_skip += got;
        }
        next.report.pages += 1;
        let mut tx = page_tx(&ctx).await?;
        let written = domain::upsert_orders(&mut tx, &rows).await?;
        let r = &mut next.report;
        r.orders.new += written.new;
        r.orders.updated += written.updated;
        r.orders.skipped += written.skipped;
        r.clients.created += written.clients_created;
        r.clients.matched += written.clients_matched;
        r.clients.conflicts += written.conflicts;
        import_cursor::save(&mut tx, &ctx.id, &next).await?;
        tx.commit().await?;
        cursor = next;
        let done = cursor.event_pos.min(cursor.events.len());
        let percent = 5 + (94 * done / cursor.events.len().max(1)) as u8;
        ctx.progress(
            percent,
            format!(
                "событий: {done} из {}; заказов: {}",
                cursor.events.len(),
                cursor.report.orders.new
                    + cursor.report.orders.updated
                    + cursor.report.orders.skipped
            ),
        )
        .await?;
    }
    import_cursor::clear(ctx.db(), &ctx.id).await?;
    tracing::info!(report = ?cursor.report, "timepad import done");
    Ok(cursor.report)
}
