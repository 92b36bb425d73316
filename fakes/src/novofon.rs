//! Novofon 2.0 Call API under `/novofon` (JSON-RPC 2.0, HTTP 200 for every JSON-RPC answer):
//! `start.employee_call` with the real error codes and mnemonics and `result.metadata.limits`.
//!
//! Employees: any 3-5 digit extension (`employee.phone_number`) is an employee, except `999`,
//! which — like `employee.id` 999 — answers `employee_not_found`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Json, Router};
use chrono::{Timelike, Utc};
use serde_json::{json, Map, Value};

use crate::faults::Hit;
use crate::{App, Config};

/// Points per minute/day the fake reports (charged by successful calls only, never enforced).
const MINUTE_LIMIT: u64 = 100;
const DAY_LIMIT: u64 = 10_000;
const FIRST_CALL_SESSION_ID: u64 = 237_859_081;
/// The extension that is never an employee.
pub const UNKNOWN_EMPLOYEE: &str = "999";

const KNOWN_PARAMS: &[&str] = &[
    "access_token",
    "first_call",
    "switch_at_once",
    "early_switching",
    "media_file_id",
    "show_virtual_phone_number",
    "virtual_phone_number",
    "contact",
    "direction",
    "external_id",
    "dtmf_string",
    "contact_message",
    "employee_message",
    "employee",
];

pub struct Novofon {
    access_token: String,
    next_session: AtomicU64,
    /// (minute index, calls in it, Moscow day index, calls in it).
    usage: Mutex<(i64, u64, i64, u64)>,
}

impl Novofon {
    pub fn new(config: &Config) -> Self {
        Self {
            access_token: config.novofon_access_token.clone(),
            next_session: AtomicU64::new(FIRST_CALL_SESSION_ID),
            usage: Mutex::new((0, 0, 0, 0)),
        }
    }

    /// Charges one successful call and returns `result.metadata`.
    fn charge(&self) -> Value {
        let now = Utc::now();
        let secs = now.timestamp();
        let msk = secs + 3 * 3600;
        let (minute, day) = (secs / 60, msk / 86_400);
        let mut u = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        if u.0 != minute {
            u.0 = minute;
            u.1 = 0;
        }
        if u.2 != day {
            u.2 = day;
            u.3 = 0;
        }
        u.1 += 1;
        u.3 += 1;
        json!({"limits": {
            "day_limit": DAY_LIMIT, "day_remaining": DAY_LIMIT.saturating_sub(u.3),
            "day_reset": 86_400 - msk.rem_euclid(86_400),
            "minute_limit": MINUTE_LIMIT, "minute_remaining": MINUTE_LIMIT.saturating_sub(u.1),
            "minute_reset": 60 - i64::from(now.second()),
        }})
    }
}

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/novofon", post(call_api))
        .route("/novofon/v4.0", post(call_api))
        .route("/novofon/{*rest}", any(|| async { StatusCode::NOT_FOUND }))
}

/// A JSON-RPC error: `error {code, message, data {mnemonic, field, value, params, extended_helper}}`.
struct RpcError {
    code: i64,
    mnemonic: &'static str,
    message: String,
    field: Option<String>,
    value: Value,
}

impl RpcError {
    fn new(code: i64, mnemonic: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            mnemonic,
            message: message.into(),
            field: None,
            value: Value::Null,
        }
    }

    fn on(mut self, field: &str, value: &Value) -> Self {
        self.field = Some(field.to_string());
        self.value = value.clone();
        self
    }

    fn body(&self, id: &Value) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "error": {
            "code": self.code, "message": self.message,
            "data": {"mnemonic": self.mnemonic, "field": self.field, "value": self.value,
                     "params": {}, "extended_helper": null},
        }})
    }
}

fn missing(field: &str) -> RpcError {
    RpcError::new(
        -32602,
        "required_parameter_missed",
        format!("Required parameter {field} is missed"),
    )
    .on(field, &Value::Null)
}

fn wrong_type(field: &str, value: &Value) -> RpcError {
    RpcError::new(-32602, "data_type_error", "Data supplied is of wrong type").on(field, value)
}

fn invalid_value(field: &str, value: &Value) -> RpcError {
    RpcError::new(
        -32602,
        "invalid_parameter_value",
        format!("Invalid value of parameter {field}"),
    )
    .on(field, value)
}

pub fn fault_response(status: StatusCode, hit: &Hit, request: &Bytes) -> Response {
    let id = serde_json::from_slice::<Value>(request)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .unwrap_or(Value::Null);
    let error = match status.as_u16() {
        429 => RpcError::new(
            -32029,
            "limit_exceeded",
            "Limit per minute has been exceeded",
        ),
        401 => RpcError::new(-32001, "auth_error", "Authorization error"),
        403 => RpcError::new(-32003, "forbidden", "Access forbidden"),
        s if s >= 500 => RpcError::new(-32603, "internal_error", "Internal error"),
        _ => RpcError::new(-32600, "invalid_request", "Invalid request"),
    };
    let mut body = error.body(&id);
    if status == StatusCode::TOO_MANY_REQUESTS {
        body["error"]["data"]["params"] =
            json!({"limit_type": "minute", "retry_after": hit.retry_after()});
    }
    (status, Json(body)).into_response()
}

async fn call_api(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            let e = RpcError::new(-32700, "parse_error", "Parse error");
            return Json(e.body(&Value::Null)).into_response();
        }
    };
    let Some(object) = request.as_object() else {
        let e = RpcError::new(
            -32099,
            "batch_operations_not_supported",
            "Batch operations are not supported",
        );
        return Json(e.body(&Value::Null)).into_response();
    };
    let id = object.get("id").cloned().unwrap_or(Value::Null);
    let answer = match dispatch(&app.novofon, object) {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(e) => {
            tracing::debug!(mnemonic = e.mnemonic, "novofon error");
            e.body(&id)
        }
    };
    Json(answer).into_response()
}

fn dispatch(novofon: &Novofon, request: &Map<String, Value>) -> Result<Value, RpcError> {
    if request.get("jsonrpc").and_then(Value::as_str) != Some("2.0") || !request.contains_key("id")
    {
        // Notifications (no id) are not supported either.
        return Err(RpcError::new(-32600, "invalid_request", "Invalid Request"));
    }
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let params = match request.get("params") {
        Some(Value::Object(p)) => p,
        None => return Err(missing("access_token")),
        Some(other) => return Err(wrong_type("params", other)),
    };
    match method {
        "start.employee_call" => start_employee_call(novofon, params),
        _ => Err(RpcError::new(
            -32601,
            "method_not_found",
            format!("Method {method} not found"),
        )),
    }
}

fn e164(v: &str) -> bool {
    (11..=15).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit())
}

fn string<'a>(params: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, RpcError> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(field, other)),
    }
}

fn start_employee_call(novofon: &Novofon, p: &Map<String, Value>) -> Result<Value, RpcError> {
    let token = string(p, "access_token")?.ok_or_else(|| missing("access_token"))?;
    if token != novofon.access_token {
        return Err(RpcError::new(
            -32001,
            "access_token_invalid",
            "Access token is invalid",
        ));
    }
    if let Some(unknown) = p.keys().find(|k| !KNOWN_PARAMS.contains(&k.as_str())) {
        return Err(RpcError::new(
            -32602,
            "unexpected_parameters",
            format!("Unexpected parameter {unknown}"),
        )
        .on(unknown, &p[unknown]));
    }
    let first_call = string(p, "first_call")?.ok_or_else(|| missing("first_call"))?;
    if !matches!(first_call, "employee" | "contact") {
        return Err(invalid_value("first_call", &p["first_call"]));
    }
    let virtual_number =
        string(p, "virtual_phone_number")?.ok_or_else(|| missing("virtual_phone_number"))?;
    if !e164(virtual_number) {
        return Err(invalid_value(
            "virtual_phone_number",
            &p["virtual_phone_number"],
        ));
    }
    let contact = string(p, "contact")?.ok_or_else(|| missing("contact"))?;
    if !e164(contact) {
        return Err(invalid_value("contact", &p["contact"]));
    }
    if contact == virtual_number {
        return Err(RpcError::new(
            -32602,
            "own_virtual_phone_number_not_allowed",
            "Parameter contact can not contain own virtual phone number",
        )
        .on("contact", &p["contact"]));
    }
    if let Some(direction) = string(p, "direction")? {
        if !matches!(direction, "in" | "out") {
            return Err(invalid_value("direction", &p["direction"]));
        }
    }
    if string(p, "external_id").is_err() {
        return Err(wrong_type("external_id", &p["external_id"]));
    }
    for flag in [
        "switch_at_once",
        "early_switching",
        "show_virtual_phone_number",
    ] {
        if p.get(flag).is_some_and(|v| !v.is_boolean()) {
            return Err(wrong_type(flag, &p[flag]));
        }
    }
    let early = p
        .get("early_switching")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let at_once = p
        .get("switch_at_once")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if early && !(first_call == "employee" && at_once) {
        return Err(RpcError::new(
            -32602,
            "invalid_parameters_combination",
            "early_switching needs first_call=employee and switch_at_once=true",
        ));
    }
    employee(p)?;
    Ok(json!({
        "data": {"call_session_id": novofon.next_session.fetch_add(1, Ordering::SeqCst)},
        "metadata": novofon.charge(),
    }))
}

fn employee(p: &Map<String, Value>) -> Result<(), RpcError> {
    let employee = match p.get("employee") {
        None | Some(Value::Null) => return Err(missing("employee")),
        Some(Value::Object(e)) => e,
        Some(other) => return Err(wrong_type("employee", other)),
    };
    let id = match employee.get("id") {
        None | Some(Value::Null) => return Err(missing("employee.id")),
        Some(v) => v.as_u64().ok_or_else(|| wrong_type("employee.id", v))?,
    };
    let not_found = || {
        RpcError::new(
            -32602,
            "employee_not_found",
            format!("Employee with id {id} not found"),
        )
        .on("employee.id", &json!(id))
    };
    if id == 999 {
        return Err(not_found());
    }
    match employee.get("phone_number") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(ext)) if ext == UNKNOWN_EMPLOYEE => {
            Err(not_found().on("employee.phone_number", &employee["phone_number"]))
        }
        Some(Value::String(ext))
            if (3..=5).contains(&ext.len()) && ext.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok(())
        }
        Some(Value::String(number)) if e164(number) => Ok(()),
        Some(Value::String(_)) => Err(RpcError::new(
            -32602,
            "no_active_phone_number",
            "The phone number does not exist or inactive",
        )
        .on("employee.phone_number", &employee["phone_number"])),
        Some(other) => Err(wrong_type("employee.phone_number", other)),
    }
}
