//! The HTTP front door of every fake service: logs the request, applies the fault that hits it,
//! and records the status answered.

use std::sync::Arc;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::faults::{FaultKind, Hit, HOLD_LIMIT};
use crate::log::{body_value, Received};
use crate::net::Conn;
use crate::{novofon, pyrus, telegram, timepad, App, Service};

/// Request bodies above this are refused; no real client of these APIs sends more.
const MAX_BODY: usize = 8 * 1024 * 1024;

pub async fn gate(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let Some(service) = Service::from_path(req.uri().path()) else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let path = parts.uri.path().to_string();
    let id = app.log.record(Received {
        service,
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        body: body_value(&bytes),
    });
    let local = service.local_path(&path);
    let hit = app.faults.take(service, &[&path, &local], None);
    let conn = parts
        .extensions
        .get::<ConnectInfo<Conn>>()
        .map(|c| c.0.clone());
    let req = Request::from_parts(parts, Body::from(bytes.clone()));

    let Some(hit) = hit else {
        return answered(&app, id, next.run(req).await);
    };
    app.log.faulted(id, hit.kind.name());
    tracing::info!(service = service.as_str(), %path, fault = hit.kind.name(), "fault hit");
    match hit.kind {
        FaultKind::Latency => {
            // A real server finishes a request it received even if its client leaves while
            // it is slow: the work runs in its own task, not in the connection's future.
            let latency = hit.latency;
            let app = app.clone();
            let work = tokio::spawn(async move {
                tokio::time::sleep(latency).await;
                answered(&app, id, next.run(req).await)
            });
            work.await
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        FaultKind::Status => answered(&app, id, fault_response(service, &hit, &bytes)),
        FaultKind::Drop => cut(conn),
        FaultKind::Hang => {
            tokio::time::sleep(HOLD_LIMIT).await;
            cut(conn)
        }
        FaultKind::TimeoutAfterReceive => {
            // The work happens (and its side effects are kept); only the answer is lost.
            drop(next.run(req).await);
            tokio::time::sleep(HOLD_LIMIT).await;
            cut(conn)
        }
    }
}

fn answered(app: &App, id: u64, response: Response) -> Response {
    app.log.answered(id, response.status().as_u16());
    response
}

/// Closes the connection; the response returned is never written.
fn cut(conn: Option<Conn>) -> Response {
    match conn {
        Some(conn) => conn.kill(),
        None => tracing::warn!("no connection handle: a drop fault answers 502 instead"),
    }
    StatusCode::BAD_GATEWAY.into_response()
}

/// The service's own error answer for a `status` fault, with `Retry-After` on 429 (and whenever
/// the fault names `retry_after_s`).
fn fault_response(service: Service, hit: &Hit, request_body: &Bytes) -> Response {
    let status = StatusCode::from_u16(hit.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match service {
        Service::Timepad => timepad::fault_response(status, hit),
        Service::Pyrus => pyrus::fault_response(status, hit),
        Service::Novofon => novofon::fault_response(status, hit, request_body),
        Service::Telegram => telegram::fault_response(status, hit),
        Service::Smtp => status.into_response(),
    };
    if status == StatusCode::TOO_MANY_REQUESTS || hit.retry_after_s.is_some() {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from(hit.retry_after()),
        );
    }
    response
}
