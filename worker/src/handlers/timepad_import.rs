//! `timepad_import`: pages through the organisation's events (100 a page) and, after each
//! page of events, those events' orders (250 a page); every page is written — upserts by
//! Timepad ids, paid buyers matched to clients — in one transaction with the cursor that says
//! where the import stands, under the lease's fence. A retry or a crash continues from the
//! next page (committed pages are never fetched again), and unchanged data writes nothing. The
//! cursor holds at most one page of event ids, whatever the history's size. An attempt close to
//! its timeout snoozes at a page boundary (no attempt used) instead of being cut off, so an
//! import of any size finishes. Records that do not decode and events whose orders Timepad
//! refuses are skipped and reported, never fatal. Triggered by cron (every 30 minutes, events
//! of the last 60 days and later) and by `POST /api/imports/timepad`.
use std::{sync::Arc, time::Duration};

use chrono::Utc;
use jobs::{
    kinds::imports::{Problem, TimepadImport, TimepadReport},
    JobContext, JobError,
};
use serde::{Deserialize, Serialize};
use shared::domain::timepad::{self as domain, EventRow, OrderRow, TicketRow};

use super::import_cursor;
use crate::{
    clients::{
        clean_text, disabled,
        http::CallError,
        money,
        timepad::{Event, EventOrders, Order, Timepad, EVENTS_PAGE, ORDERS_PAGE},
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
        .schedule("timepad_import", SCHEDULE, TimepadImport::recent())
}

/// Left of an attempt's timeout when it stops at a page boundary and snoozes: more than a
/// page takes (an HTTP timeout and the write).
const DEADLINE_MARGIN: Duration = Duration::from_secs(90);

/// Where the import stands; saved with every page.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Cursor {
    /// Events listed so far: the `skip` of the next page of events.
    events_skip: u64,
    /// No page of events is left.
    events_done: bool,
    /// How many events Timepad says there are (for the progress).
    events_total: Option<u64>,
    /// The highest event id seen: a page that does not go past it means Timepad ignored
    /// `skip` (the list is in id order), which must not loop.
    last_event: Option<i64>,
    /// The current page of events (at most 100 ids), the one whose orders are being read,
    /// and how many of its orders were read.
    batch: Vec<i64>,
    event_pos: usize,
    orders_skip: u64,
    /// The first order id of the last page of the current event (a repeat means `skip` was
    /// ignored).
    first_order: Option<i64>,
    /// The window's edge (`recent_days` before the import began), fixed for the whole import
    /// so the positions in the list of events stay put across attempts.
    since: Option<chrono::DateTime<Utc>>,
    /// The import finished: a run after a crash that lost the outcome returns the report.
    #[serde(default)]
    done: bool,
    report: TimepadReport,
}

fn event_row(e: &Event) -> EventRow {
    EventRow {
        id: e.id,
        name: clean_text(&e.name, 1000).unwrap_or_else(|| format!("Событие {}", e.id)),
        starts_at: e.starts_at.map(|t| t.with_timezone(&Utc)),
        ends_at: e.ends_at.map(|t| t.with_timezone(&Utc)),
        url: e.url.as_deref().and_then(|u| clean_text(u, 2000)),
        access: e.access_status.as_deref().and_then(|a| clean_text(a, 100)),
    }
}

/// An amount of order `order`, or `None` — logged when Timepad sent something that is not a
/// plain decimal (an exponent, an object): the order is still imported, without the amount.
fn logged_money(
    order: i64,
    field: &str,
    raw: Option<&serde_json::value::RawValue>,
) -> Option<shared::money::Money> {
    let amount = money(raw);
    if let (None, Some(raw)) = (amount, raw) {
        if raw.get() != "null" {
            tracing::warn!(
                order.id = order,
                field,
                raw = raw.get(),
                "a Timepad amount that is not a plain decimal was left empty"
            );
        }
    }
    amount
}

fn order_row(event_id: i64, o: &Order) -> OrderRow {
    let text = |v: Option<&str>| v.and_then(|s| clean_text(s, 500));
    OrderRow {
        id: o.id,
        event_id,
        status: clean_text(&o.status.name, 100).unwrap_or_else(|| "unknown".into()),
        status_title: text(o.status.title.as_deref()),
        email: text(o.mail.as_deref().or(o.answer("mail"))),
        phone: text(o.answer("phone")),
        surname: text(o.answer("surname")),
        name: text(o.answer("name")),
        amount: logged_money(
            o.id,
            "amount",
            o.payment.as_ref().and_then(|p| p.amount.as_deref()),
        ),
        ordered_at: o.created_at.map(|t| t.with_timezone(&Utc)),
        tickets: o
            .tickets
            .iter()
            .map(|t| TicketRow {
                id: t.id,
                number: text(t.number.as_deref()),
                ticket_type: text(t.ticket_type.as_ref().and_then(|tt| tt.name.as_deref())),
                price_nominal: logged_money(o.id, "price_nominal", t.price_nominal.as_deref()),
            })
            .collect(),
    }
}

/// A page of orders being fetched in the background; dropping it stops the fetch.
struct Prefetch {
    event_id: i64,
    skip: u64,
    task: tokio::task::JoinHandle<Result<EventOrders, CallError>>,
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

    async fn take(mut self) -> Result<EventOrders, CallError> {
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

/// Writes `next` as the import's position (with whatever the caller wrote in `tx`) and
/// commits: the page is done.
async fn commit(
    ctx: &JobContext,
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    next: &Cursor,
) -> Result<(), JobError> {
    import_cursor::save(&mut tx, &ctx.id, next).await?;
    tx.commit().await?;
    Ok(())
}

/// Opens a page's transaction: fenced, so only the run holding the lease writes a page.
async fn page_tx(ctx: &JobContext) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, JobError> {
    let mut tx = ctx.db().begin().await?;
    ctx.fence(&mut tx).await?;
    Ok(tx)
}

fn progress_message(c: &Cursor) -> (u8, String) {
    let seen = c.events_skip.saturating_sub(c.batch.len() as u64) + c.event_pos as u64;
    let total = c.events_total.unwrap_or(c.events_skip).max(1);
    let percent = (99 * seen.min(total) / total) as u8;
    let r = &c.report;
    (
        percent,
        format!(
            "событий: {seen} из {total}; заказов: {}",
            r.orders.new + r.orders.updated + r.orders.skipped
        ),
    )
}

pub async fn import(
    job: TimepadImport,
    ctx: JobContext,
    timepad: Arc<Timepad>,
) -> Result<TimepadReport, JobError> {
    let mut cursor: Cursor = import_cursor::load(ctx.db(), &ctx.id)
        .await?
        .unwrap_or_default();
    if cursor.done {
        return Ok(cursor.report);
    }
    if cursor.report.pages > 0 {
        tracing::info!(
            pages = cursor.report.pages,
            events_skip = cursor.events_skip,
            "timepad import resumes from its saved page"
        );
    }
    if cursor.report.pages == 0 {
        cursor.since = job
            .recent_days
            .map(|days| Utc::now() - chrono::Duration::days(i64::from(days)));
    }
    let starts_at_min = cursor.since;
    // The next page of orders is fetched while this one is written (it is only used once
    // this one is committed, so the cursor stays exact): the import runs at the speed of the
    // slower of the two, not of their sum.
    let mut prefetched: Option<Prefetch> = None;
    loop {
        if ctx.remaining() < DEADLINE_MARGIN {
            tracing::info!(
                pages = cursor.report.pages,
                "timepad import pauses before its attempt's timeout"
            );
            return Err(JobError::snooze(
                "продолжит с сохранённой страницы",
                Duration::from_secs(1),
            ));
        }
        let mut next = cursor.clone();
        next.report.pages += 1;

        if cursor.event_pos >= cursor.batch.len() {
            if cursor.events_done {
                break;
            }
            let page = timepad
                .events(
                    &ctx,
                    cursor.events_skip,
                    job.event_ids.as_deref(),
                    starts_at_min,
                )
                .await?;
            let first = page.values.iter().map(|e| e.id).min();
            if let (Some(first), Some(last)) = (first, cursor.last_event) {
                if first <= last {
                    return Err(JobError::permanent(format!(
                        "Timepad answered events already read (id {first} after {last}) for skip={}: it ignored the paging",
                        cursor.events_skip
                    )));
                }
            }
            for (id, reason) in &page.invalid {
                tracing::warn!(event.id = ?id, %reason, "timepad event skipped: it does not decode");
                next.report.invalid += 1;
                Problem::list(&mut next.report.problems, "event", *id, reason);
            }
            let rows: Vec<EventRow> = page.values.iter().map(event_row).collect();
            next.events_total = page.total.or(next.events_total);
            next.events_skip += page.received;
            next.events_done =
                page.received < EVENTS_PAGE || page.total.is_some_and(|t| next.events_skip >= t);
            next.last_event = page.values.iter().map(|e| e.id).max().or(next.last_event);
            next.batch = rows.iter().map(|e| e.id).collect();
            next.event_pos = 0;
            next.orders_skip = 0;
            next.first_order = None;
            let mut tx = page_tx(&ctx).await?;
            let (new, updated) = domain::upsert_events(&mut tx, &rows).await?;
            next.report.events.new += new;
            next.report.events.updated += updated;
            commit(&ctx, tx, &next).await?;
        } else {
            let event_id = cursor.batch[cursor.event_pos];
            let skip = cursor.orders_skip;
            let fetched = match prefetched.take() {
                Some(p) if p.event_id == event_id && p.skip == skip => p.take().await?,
                _ => timepad.orders(&ctx, event_id, skip).await?,
            };
            let page = match fetched {
                EventOrders::Page(page) => page,
                EventOrders::Refused { status, message } => {
                    tracing::warn!(event.id = event_id, status, %message, "timepad refused this event's orders; skipped");
                    next.event_pos += 1;
                    next.orders_skip = 0;
                    next.first_order = None;
                    next.report.events_skipped += 1;
                    Problem::list(
                        &mut next.report.problems,
                        "event",
                        Some(event_id),
                        &format!("HTTP {status}: {message}"),
                    );
                    commit(&ctx, page_tx(&ctx).await?, &next).await?;
                    cursor = next;
                    continue;
                }
            };
            let first = page.values.iter().map(|o| o.id).min();
            if skip > 0 && first.is_some() && first == cursor.first_order {
                return Err(JobError::permanent(format!(
                    "Timepad answered the same orders of event {event_id} for skip={skip}: it ignored the paging"
                )));
            }
            let more =
                page.received >= ORDERS_PAGE && page.total.is_none_or(|t| skip + page.received < t);
            if more {
                next.orders_skip += page.received;
                next.first_order = first;
            } else {
                next.event_pos += 1;
                next.orders_skip = 0;
                next.first_order = None;
            }
            if let Some(&next_event) = next.batch.get(next.event_pos) {
                prefetched = Some(Prefetch::start(
                    &timepad,
                    &ctx,
                    next_event,
                    next.orders_skip,
                ));
            }
            for (id, reason) in &page.invalid {
                tracing::warn!(event.id = event_id, order.id = ?id, %reason, "timepad order skipped: it does not decode");
                next.report.invalid += 1;
                Problem::list(&mut next.report.problems, "order", *id, reason);
            }
            let rows: Vec<OrderRow> = page.values.iter().map(|o| order_row(event_id, o)).collect();
            let mut tx = page_tx(&ctx).await?;
            let written = domain::upsert_orders(&mut tx, &rows).await?;
            let r = &mut next.report;
            r.orders.new += written.new;
            r.orders.updated += written.updated;
            r.orders.skipped += written.skipped;
            r.clients.created += written.clients_created;
            r.clients.matched += written.clients_matched;
            r.clients.conflicts += written.conflicts;
            commit(&ctx, tx, &next).await?;
        }
        cursor = next;
        let (percent, message) = progress_message(&cursor);
        ctx.progress(percent, message).await?;
    }
    cursor.done = true;
    commit(&ctx, page_tx(&ctx).await?, &cursor).await?;
    tracing::info!(report = ?cursor.report, "timepad import done");
    Ok(cursor.report)
}
