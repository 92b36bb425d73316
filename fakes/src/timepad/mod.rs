//! Timepad API v1 under `/timepad`: events of the organisation and their orders, bearer-token
//! auth, `limit`/`skip` paging and the `{"response_status": …}` error envelope.

pub mod data;
mod request;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::faults::Hit;
use crate::{App, Config};
use data::{Event, EVENT_ID_BASE};
use request::{error, fail, invalid, params, Params, QueryResult, TimepadError};

pub struct Timepad {
    token: String,
    organization_id: u64,
    events: u64,
    orders: u64,
    seed: u64,
}

impl Timepad {
    pub fn new(config: &Config) -> Self {
        Self {
            token: config.timepad_token.clone(),
            organization_id: config.timepad_organization_id,
            events: config.timepad_events,
            orders: config.timepad_orders,
            seed: config.seed,
        }
    }

    fn event(&self, id: u64) -> Option<Event> {
        let index = id.checked_sub(EVENT_ID_BASE)?;
        (index < self.events).then(|| data::event(self.seed, index, self.events))
    }

    fn sold(&self, e: &Event) -> u64 {
        data::order_count(e.index, self.events, self.orders)
    }
}

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/timepad/v1/events", get(events))
        .route("/timepad/v1/events.json", get(events))
        .route("/timepad/v1/events/{event_id}", get(one_event))
        .route("/timepad/v1/events/{event_id}/orders", get(orders))
        .route(
            "/timepad/v1/events/{event_id}/orders/{order_id}",
            get(one_order),
        )
        .route("/timepad/{*rest}", axum::routing::any(not_found))
}

pub fn fault_response(status: StatusCode, _hit: &Hit) -> Response {
    let message = match status.as_u16() {
        401 => "Invalid token",
        403 => "Access denied",
        404 => "Not found",
        422 => "Validation failed",
        429 => "Too many requests",
        500 => "Internal server error",
        502 => "Bad gateway",
        503 => "Service unavailable",
        504 => "Gateway timeout",
        _ => "Request failed",
    };
    error(status, message)
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not found")
}

#[derive(PartialEq)]
enum Caller {
    Anonymous,
    Authorised,
}

/// The `Authorization: Bearer` header, or the legacy `token` query parameter.
fn authorise(tp: &Timepad, headers: &HeaderMap, params: &Params) -> Result<Caller, TimepadError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = match (header, params.get("token")) {
        (Some(h), _) => Some(h.strip_prefix("Bearer ").unwrap_or("").trim()),
        (None, Some(t)) => Some(t),
        (None, None) => None,
    };
    match token {
        None => Ok(Caller::Anonymous),
        Some(t) if t == tp.token => Ok(Caller::Authorised),
        Some(_) => Err(fail(StatusCode::UNAUTHORIZED, "Invalid token")),
    }
}

/// Handlers build the answer or bail out with an error response.
type Answer = Result<Response, TimepadError>;

async fn events(State(app): State<Arc<App>>, headers: HeaderMap, query: QueryResult) -> Response {
    list_events(&app.timepad, &headers, query).unwrap_or_else(IntoResponse::into_response)
}

fn list_events(tp: &Timepad, headers: &HeaderMap, query: QueryResult) -> Answer {
    let p = params(query)?;
    let caller = authorise(tp, headers, &p)?;
    let limit = p.bounded("limit", 10, 1, 100)?;
    let skip = p.bounded("skip", 0, 0, i64::MAX as u64)?;
    let org_ids = p.ints("organization_ids")?;
    let event_ids = p.ints("event_ids")?;
    let access: Vec<&str> = p.list("access_statuses");
    let starts_min = p.datetime("starts_at_min")?;
    let starts_max = p.datetime("starts_at_max")?;
    let mut sort = Vec::new();
    for key in p.list("sort") {
        let (desc, field) = match key.as_bytes().first() {
            Some(b'-') => (true, &key[1..]),
            Some(b'+') => (false, &key[1..]),
            _ => (false, key),
        };
        if !matches!(field, "id" | "starts_at" | "created_at" | "name") {
            return Err(invalid(
                "sort",
                "invalid",
                format!("cannot sort by {field}"),
            ));
        }
        sort.push((field, desc));
    }
    if sort.is_empty() {
        sort.push(("id", false));
    }
    // Unknown `fields` are ignored: the real API knows more of them than the fake renders.
    let fields = p.list("fields");

    let mut selected: Vec<Event> = (0..tp.events)
        .map(|i| data::event(tp.seed, i, tp.events))
        .filter(|_| {
            org_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&tp.organization_id))
        })
        .filter(|e| event_ids.as_ref().is_none_or(|ids| ids.contains(&e.id)))
        // Without a token only public events are visible.
        .filter(|e| caller == Caller::Authorised || e.access_status == "public")
        .filter(|e| access.is_empty() || access.contains(&e.access_status))
        .filter(|e| starts_min.is_none_or(|m| e.starts_at >= m))
        .filter(|e| starts_max.is_none_or(|m| e.starts_at <= m))
        .collect();
    selected.sort_by(|a, b| {
        sort.iter()
            .map(|(field, desc)| {
                let ord = match *field {
                    "starts_at" => a.starts_at.cmp(&b.starts_at),
                    "created_at" => a.created_at.cmp(&b.created_at),
                    "name" => a.name.cmp(b.name),
                    _ => a.id.cmp(&b.id),
                };
                if *desc {
                    ord.reverse()
                } else {
                    ord
                }
            })
            .find(|o| o.is_ne())
            .unwrap_or(a.id.cmp(&b.id))
    });
    let extra = |f: &str| fields.contains(&f);
    let values: Vec<Value> = selected
        .iter()
        .skip(skip as usize)
        .take(limit as usize)
        .map(|e| data::event_json(e, tp.organization_id, tp.sold(e), &extra))
        .collect();
    Ok(Json(json!({"total": selected.len(), "values": values})).into_response())
}

async fn one_event(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: QueryResult,
) -> Response {
    show_event(&app.timepad, &id, &headers, query).unwrap_or_else(IntoResponse::into_response)
}

fn show_event(tp: &Timepad, id: &str, headers: &HeaderMap, query: QueryResult) -> Answer {
    let p = params(query)?;
    let caller = authorise(tp, headers, &p)?;
    let event = id
        .parse()
        .ok()
        .and_then(|id| tp.event(id))
        .filter(|e| caller == Caller::Authorised || e.access_status == "public")
        .ok_or_else(|| fail(StatusCode::NOT_FOUND, "Event not found"))?;
    let fields = p.list("fields");
    let extra = |f: &str| fields.contains(&f);
    Ok(Json(data::event_json(
        &event,
        tp.organization_id,
        tp.sold(&event),
        &extra,
    ))
    .into_response())
}

/// Orders need a token with `view_visitors`: none gives 403 "Token required".
fn orders_event(
    tp: &Timepad,
    id: &str,
    headers: &HeaderMap,
    p: &Params,
) -> Result<Event, TimepadError> {
    if authorise(tp, headers, p)? == Caller::Anonymous {
        return Err(fail(StatusCode::FORBIDDEN, "Token required"));
    }
    id.parse()
        .ok()
        .and_then(|id| tp.event(id))
        .ok_or_else(|| fail(StatusCode::NOT_FOUND, "Event not found"))
}

async fn orders(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: QueryResult,
) -> Response {
    list_orders(&app.timepad, &id, &headers, query).unwrap_or_else(IntoResponse::into_response)
}

fn list_orders(tp: &Timepad, id: &str, headers: &HeaderMap, query: QueryResult) -> Answer {
    let p = params(query)?;
    let event = orders_event(tp, id, headers, &p)?;
    let limit = p.bounded("limit", 10, 1, 250)?;
    let skip = p.bounded("skip", 0, 0, i64::MAX as u64)?;
    let count = tp.sold(&event);
    // Order k of event e is order index e + k·events.
    let index = |k: u64| event.index + k * tp.events;
    let (total, page): (u64, Vec<u64>) = match p.get("email").map(|e| e.trim().to_lowercase()) {
        None => {
            let end = count.min(skip.saturating_add(limit));
            (count, (skip..end).map(index).collect())
        }
        Some(email) => {
            let matching: Vec<u64> = (0..count)
                .map(index)
                .filter(|j| data::buyer(tp.seed, *j).email.trim().to_lowercase() == email)
                .collect();
            let page = matching
                .iter()
                .skip(skip as usize)
                .take(limit as usize)
                .copied()
                .collect();
            (matching.len() as u64, page)
        }
    };
    let values: Vec<Value> = page
        .into_iter()
        .map(|j| data::order_json(tp.seed, &event, j))
        .collect();
    Ok(Json(json!({"total": total, "values": values})).into_response())
}

async fn one_order(
    State(app): State<Arc<App>>,
    Path((event_id, order_id)): Path<(String, String)>,
    headers: HeaderMap,
    query: QueryResult,
) -> Response {
    show_order(&app.timepad, &event_id, &order_id, &headers, query)
        .unwrap_or_else(IntoResponse::into_response)
}

fn show_order(
    tp: &Timepad,
    event_id: &str,
    order_id: &str,
    headers: &HeaderMap,
    query: QueryResult,
) -> Answer {
    let p = params(query)?;
    let event = orders_event(tp, event_id, headers, &p)?;
    let not_found = || fail(StatusCode::NOT_FOUND, "Order not found");
    let order_id: u64 = order_id.parse().map_err(|_| not_found())?;
    let j = order_id
        .checked_sub(data::ORDER_ID_BASE)
        .ok_or_else(not_found)?
        / 3;
    let belongs = j < tp.orders && j % tp.events.max(1) == event.index;
    if !belongs || data::order_id(tp.seed, j) != order_id {
        return Err(not_found());
    }
    Ok(Json(data::order_json(tp.seed, &event, j)).into_response())
}
