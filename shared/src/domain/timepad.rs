//! Timepad events, orders and tickets in the CRM: upserted by their Timepad ids, set-based, a
//! page at a time (unchanged data writes nothing: each row keeps an md5 of what it stores);
//! paid buyers become clients (match-or-create by e-mail or phone, contradictions recorded as
//! conflicts); reads for the api.
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, Row};
use uuid::Uuid;

use super::{
    clients::{self, Contact, Match},
    page::{self, Cte, Page, PageRequest},
    DomainError,
};

/// Order statuses that make the buyer a participant (a valid ticket); any other status — a
/// refund (`returned`, `return_org`, `return_tp`), unpaid, booked, cancelled — withdraws them.
pub const PAID: &[&str] = &["paid", "ok", "paid_offline", "paid_ur"];

pub fn is_paid(status: &str) -> bool {
    PAID.contains(&status)
}

#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: i64,
    pub name: String,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub url: Option<String>,
    pub access: Option<String>,
}

/// Upserts a page of events; returns (new, updated) — unchanged ones write nothing.
pub async fn upsert_events(
    conn: &mut PgConnection,
    events: &[EventRow],
) -> Result<(i64, i64), DomainError> {
    let rows: Vec<bool> = sqlx::query_scalar(
        "with input as (
             select *, md5(jsonb_build_array(name, starts_at, ends_at, url, access)::text) as hash
             from unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                         $5::text[], $6::text[]) as t(id, name, starts_at, ends_at, url, access)
         )
         insert into timepad_events as e (id, name, starts_at, ends_at, url, access, hash)
         select id, name, starts_at, ends_at, url, access, hash from input
         on conflict (id) do update
         set name = excluded.name, starts_at = excluded.starts_at, ends_at = excluded.ends_at,
             url = excluded.url, access = excluded.access, hash = excluded.hash,
             updated_at = now()
         where e.hash is distinct from excluded.hash
         returning (xmax = 0)",
    )
    .bind(events.iter().map(|e| e.id).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.name.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.starts_at).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.ends_at).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.url.as_deref()).collect::<Vec<_>>())
    .bind(
        events
            .iter()
            .map(|e| e.access.as_deref())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *conn)
    .await?;
    let new = rows.iter().filter(|inserted| **inserted).count() as i64;
    Ok((new, rows.len() as i64 - new))
}

#[derive(Debug, Clone)]
pub struct TicketRow {
    pub id: i64,
    pub number: Option<String>,
    pub ticket_type: Option<String>,
    pub price_nominal: Option<crate::money::Money>,
}

#[derive(Debug, Clone)]
pub struct OrderRow {
    pub id: i64,
    pub event_id: i64,
    pub status: String,
    pub status_title: Option<String>,
    pub email: Option<String>,
    /// As typed by the buyer.
    pub phone: Option<String>,
    pub surname: Option<String>,
    pub name: Option<String>,
    pub amount: Option<crate::money::Money>,
    pub ordered_at: Option<DateTime<Utc>>,
    pub tickets: Vec<TicketRow>,
}

impl OrderRow {
    /// The buyer as a contact to match, when the order is paid and names an e-mail or a phone
    /// that parses. Missing names get placeholders (the client card can be corrected later).
    pub fn contact(&self) -> Option<Contact> {
        if !is_paid(&self.status) {
            return None;
        }
        let email = self.email.as_deref().and_then(clients::Email::parse);
        let phone = self.phone.as_deref().and_then(clients::Phone::parse);
        if email.is_none() && phone.is_none() {
            return None;
        }
        let name = |v: &Option<String>, fallback: &str| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.chars().take(clients::MAX_TEXT).collect())
                .unwrap_or_else(|| fallback.to_string())
        };
        Some(Contact {
            last_name: name(&self.surname, "Без фамилии"),
            first_name: name(&self.name, "Без имени"),
            phone,
            email,
        })
    }
}

/// What a page of orders changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrdersWritten {
    pub new: i64,
    pub updated: i64,
    /// Unchanged since the last import: nothing written.
    pub skipped: i64,
    pub clients_created: i64,
    pub clients_matched: i64,
    pub conflicts: i64,
}

/// The input of a page of orders as rows `i` with the md5 of what is stored (`hash`), from
/// the arrays `$1..$11`.
/// The hash covers every stored field (a JSON array: a null is not an empty string, and a
/// value moving between fields changes it) and the order's tickets (`$12`, their fields).
/// Amounts enter the hash as they did when they were floats (`amount::float8`, and
/// [`ticket_digest`]): the stored hashes stay valid, so an upgrade does not make every order
/// look changed and re-match its buyer. Only the change detector sees that form; the amounts
/// stored are exact.
const ORDERS_INPUT: &str = "
    select id, event_id, status, status_title, email, phone, surname, name, amount, ordered_at,
           tickets,
           md5(jsonb_build_array(event_id, status, status_title, email, phone, surname, name,
                                 amount::float8, ordered_at, tickets, ticket_digest)::text)
               as hash
    from (select id, event_id, status, status_title, email, phone, surname, name,
                 (kopecks / 100.0)::numeric(12, 2) as amount, ordered_at, tickets, ticket_digest
          from unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                      $6::text[], $7::text[], $8::text[], $9::bigint[], $10::timestamptz[],
                      $11::int[], $12::text[])
               as t(id, event_id, status, status_title, email, phone, surname, name, kopecks,
                    ordered_at, tickets, ticket_digest)) t";

/// An order's tickets as one text, for its hash, in the form it had when prices were floats
/// (`500.0`; see [`ORDERS_INPUT`]): a change detector, not arithmetic on money.
fn ticket_digest(order: &OrderRow) -> String {
    let as_before = |m: crate::money::Money| m.kopecks() as f64 / 100.0;
    serde_json::json!(order
        .tickets
        .iter()
        .map(|t| (
            t.id,
            &t.number,
            &t.ticket_type,
            t.price_nominal.map(as_before)
        ))
        .collect::<Vec<_>>())
    .to_string()
}

fn bind_orders<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    orders: &'q [&'q OrderRow],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(orders.iter().map(|o| o.id).collect::<Vec<_>>())
        .bind(orders.iter().map(|o| o.event_id).collect::<Vec<_>>())
        .bind(orders.iter().map(|o| o.status.as_str()).collect::<Vec<_>>())
        .bind(
            orders
                .iter()
                .map(|o| o.status_title.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            orders
                .iter()
                .map(|o| o.email.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            orders
                .iter()
                .map(|o| o.phone.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            orders
                .iter()
                .map(|o| o.surname.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(orders.iter().map(|o| o.name.as_deref()).collect::<Vec<_>>())
        .bind(
            orders
                .iter()
                .map(|o| o.amount.map(crate::money::Money::kopecks))
                .collect::<Vec<_>>(),
        )
        .bind(orders.iter().map(|o| o.ordered_at).collect::<Vec<_>>())
        .bind(
            orders
                .iter()
                .map(|o| o.tickets.len() as i32)
                .collect::<Vec<_>>(),
        )
        .bind(orders.iter().map(|o| ticket_digest(o)).collect::<Vec<_>>())
}

/// Writes a page of orders: the ones unchanged since the last import are skipped (nothing
/// written); the paid buyers of the others are matched to clients first (one set-based round
/// of [`clients::match_or_create_many`]), so the orders — with their client — and their
/// tickets are written by one statement; conflicts are recorded. In the caller's transaction.
pub async fn upsert_orders(
    conn: &mut PgConnection,
    orders: &[OrderRow],
) -> Result<OrdersWritten, DomainError> {
    let all: Vec<&OrderRow> = orders.iter().collect();
    let unchanged: Vec<i64> = bind_orders(
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "select i.id from ({ORDERS_INPUT}) i join timepad_orders o on o.id = i.id and o.hash = i.hash"
        ))),
        &all,
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?;
    let changed: Vec<&OrderRow> = orders
        .iter()
        .filter(|o| !unchanged.contains(&o.id))
        .collect();
    let mut written = OrdersWritten {
        skipped: unchanged.len() as i64,
        ..OrdersWritten::default()
    };
    if changed.is_empty() {
        return Ok(written);
    }

    let buyers: Vec<(i64, Contact)> = changed
        .iter()
        .filter_map(|o| o.contact().map(|c| (o.id, c)))
        .collect();
    let contacts: Vec<Contact> = buyers.iter().map(|b| b.1.clone()).collect();
    let matches = if contacts.is_empty() {
        Vec::new()
    } else {
        clients::match_or_create_many(conn, &contacts).await?
    };
    let mut client_of: std::collections::HashMap<i64, Uuid> = std::collections::HashMap::new();
    let mut conflicts: (Vec<String>, Vec<serde_json::Value>, Vec<String>) =
        (Vec::new(), Vec::new(), Vec::new());
    for ((order, contact), m) in buyers.iter().zip(&matches) {
        match m {
            Match::Matched { client_id } => {
                written.clients_matched += 1;
                client_of.insert(*order, *client_id);
            }
            Match::Created { client_id } => {
                written.clients_created += 1;
                client_of.insert(*order, *client_id);
            }
            Match::Conflict { candidates } => {
                written.conflicts += 1;
                conflicts.0.push(order.to_string());
                conflicts.1.push(serde_json::json!({
                    "last_name": contact.last_name, "first_name": contact.first_name,
                    "email": contact.email, "phone": contact.phone,
                }));
                conflicts.2.push(
                    candidates
                        .iter()
                        .map(Uuid::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
        }
    }

    let tickets: Vec<(i64, &TicketRow)> = changed
        .iter()
        .flat_map(|o| o.tickets.iter().map(move |t| (o.id, t)))
        .collect();
    let inserted: Vec<bool> = bind_orders(
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "with input as ({ORDERS_INPUT}), orders as (
                 insert into timepad_orders as o (id, event_id, status, status_title, participant,
                     email, phone, surname, name, amount, ordered_at, tickets, hash, client_id)
                 select i.id, i.event_id, i.status, i.status_title, i.status = any($13), i.email,
                        i.phone, i.surname, i.name, i.amount, i.ordered_at, i.tickets, i.hash,
                        c.client_id
                 from input i
                 left join unnest($14::bigint[], $15::uuid[]) as c(order_id, client_id)
                   on c.order_id = i.id
                 on conflict (id) do update
                 set event_id = excluded.event_id, status = excluded.status,
                     status_title = excluded.status_title, participant = excluded.participant,
                     email = excluded.email, phone = excluded.phone, surname = excluded.surname,
                     name = excluded.name, amount = excluded.amount,
                     ordered_at = excluded.ordered_at, tickets = excluded.tickets,
                     hash = excluded.hash,
                     client_id = coalesce(excluded.client_id, o.client_id), updated_at = now()
                 returning id, (xmax = 0) as inserted
             ), tickets as (
                 insert into timepad_tickets (id, order_id, number, ticket_type, price_nominal)
                 select id, order_id, number, ticket_type, kopecks / 100.0
                 from unnest($16::bigint[], $17::bigint[], $18::text[], $19::text[],
                             $20::bigint[]) as t(id, order_id, number, ticket_type, kopecks)
                 on conflict (id) do update
                 set order_id = excluded.order_id, number = excluded.number,
                     ticket_type = excluded.ticket_type, price_nominal = excluded.price_nominal
             ), gone as (
                 -- Tickets a changed order no longer lists (a partial refund).
                 -- Only orders that existed have old tickets; `= any(array(…))` probes the
                 -- index (a join was planned as a scan of every ticket: 80 ms a page).
                 delete from timepad_tickets t
                 where t.order_id = any(array(select id from orders where not inserted))
                   and t.id <> all($16)
             )
             select inserted from orders"
        ))),
        &changed,
    )
    .bind(PAID)
    .bind(client_of.keys().copied().collect::<Vec<_>>())
    .bind(client_of.values().copied().collect::<Vec<_>>())
    .bind(tickets.iter().map(|t| t.1.id).collect::<Vec<_>>())
    .bind(tickets.iter().map(|t| t.0).collect::<Vec<_>>())
    .bind(
        tickets
            .iter()
            .map(|t| t.1.number.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        tickets
            .iter()
            .map(|t| t.1.ticket_type.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        tickets
            .iter()
            .map(|t| t.1.price_nominal.map(crate::money::Money::kopecks))
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?;
    written.new = inserted.iter().filter(|i| **i).count() as i64;
    written.updated = inserted.len() as i64 - written.new;

    if !conflicts.0.is_empty() {
        sqlx::query(
            "insert into import_conflicts (source, external_id, contact, candidates)
             select 'timepad_order', id, contact, string_to_array(candidates, ',')::uuid[]
             from unnest($1::text[], $2::jsonb[], $3::text[]) as c(id, contact, candidates)
             on conflict (source, external_id) do update
             set contact = excluded.contact, candidates = excluded.candidates,
                 -- A person's resolution stands unless the contradiction itself changed.
                 resolved_at = case when import_conflicts.contact = excluded.contact
                                     and import_conflicts.candidates = excluded.candidates
                                    then import_conflicts.resolved_at end",
        )
        .bind(&conflicts.0)
        .bind(&conflicts.1)
        .bind(&conflicts.2)
        .execute(&mut *conn)
        .await?;
    }
    Ok(written)
}

/// An imported event with its counts.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventSummary {
    pub id: i64,
    pub name: String,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub url: Option<String>,
    pub orders: i64,
    /// Tickets of paid orders (each a person expected at the event).
    pub participants: i64,
    pub updated_at: DateTime<Utc>,
}

/// Imported events, latest first.
pub async fn events(
    db: impl PgExecutor<'_>,
    page: PageRequest,
) -> Result<Page<EventSummary>, DomainError> {
    let query = sqlx::query(page::page_sql(
        "select * from timepad_events",
        Cte::Inline,
        "e",
        "e.id, e.name, e.starts_at, e.ends_at, e.url, \
         (select count(*) from timepad_orders o where o.event_id = e.id) as orders, \
         (select coalesce(sum(o.tickets), 0)::bigint from timepad_orders o \
          where o.event_id = e.id and o.participant) as participants, \
         e.updated_at",
        "e.starts_at desc nulls last, e.id",
        1,
    ));
    Ok(page::fetch(db, query, page).await?)
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderView {
    pub id: i64,
    pub event_id: i64,
    pub status: String,
    pub status_title: Option<String>,
    pub participant: bool,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub surname: Option<String>,
    pub name: Option<String>,
    pub amount: Option<String>,
    pub tickets: i32,
    pub client_id: Option<Uuid>,
    /// The buyer's e-mail and phone point at different clients: waiting for a person.
    pub conflict: bool,
    pub ordered_at: Option<DateTime<Utc>>,
}

/// An event's orders (NotFound when the event was never imported), by id.
pub async fn orders(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    event_id: i64,
    page: PageRequest,
) -> Result<Page<OrderView>, DomainError> {
    let mut conn = db.acquire().await?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from timepad_events where id = $1)")
            .bind(event_id)
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        return Err(DomainError::NotFound);
    }
    let query = sqlx::query(page::page_sql(
        "select * from timepad_orders where event_id = $1",
        Cte::Inline,
        "o",
        "o.id, o.event_id, o.status, o.status_title, o.participant, o.email, o.phone, \
         o.surname, o.name, o.amount::text as amount, o.tickets, o.client_id, \
         exists (select 1 from import_conflicts c where c.source = 'timepad_order' \
                 and c.external_id = o.id::text and c.resolved_at is null) as conflict, \
         o.ordered_at",
        "o.id",
        2,
    ))
    .bind(event_id);
    Ok(page::fetch(&mut *conn, query, page).await?)
}
