//! Novofon Call API 2.0 (JSON-RPC, reference §2.3): `start.employee_call` rings the employee's
//! extension first, then connects the client. Errors come as HTTP 200 with a JSON-RPC `error`
//! whose `data.mnemonic` says what it is; only what tells whether a call may have been placed
//! matters here, so the answer is classified into [`Dialled`].
use std::time::Duration;

use jobs::JobContext;
use serde::Deserialize;
use serde_json::json;

use super::http::{CallError, Service, Timeouts};

pub struct Novofon {
    pub service: Service,
    access_token: String,
    /// The caller id the client sees (the account's own number, E.164 digits).
    virtual_number: String,
}

/// How a `start.employee_call` ended, as far as ringing twice is concerned.
#[derive(Debug)]
pub enum Dialled {
    /// Novofon took the call: its `call_session_id`.
    Placed { call_session_id: i64 },
    /// Refused before anything rang (a wrong number, no such employee, a blacklisted
    /// contact…): the provider's words.
    Refused { message: String },
    /// Not taken, nothing rang, try later: a connection never made, HTTP 429 or
    /// `limit_exceeded` (with how long to wait).
    NotTaken {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The request may have reached Novofon and the call may be ringing: a timeout after
    /// sending, a broken answer, a 5xx, `internal_error`. Never retried.
    Unknown { message: String },
}

#[derive(Deserialize)]
struct RpcAnswer {
    result: Option<RpcResult>,
    error: Option<RpcError>,
}

#[derive(Deserialize)]
struct RpcResult {
    data: Option<CallData>,
}

#[derive(Deserialize)]
struct CallData {
    call_session_id: i64,
}

#[derive(Deserialize)]
struct RpcError {
    code: i64,
    message: Option<String>,
    data: Option<RpcErrorData>,
}

#[derive(Deserialize, Default)]
struct RpcErrorData {
    mnemonic: Option<String>,
    field: Option<String>,
    params: Option<serde_json::Value>,
}

/// JSON-RPC codes that mean "not now" rather than "no": the limit, and nothing else (an
/// internal error may have placed the call).
const LIMIT_EXCEEDED: i64 = -32029;
const INTERNAL_ERROR: i64 = -32603;

impl Novofon {
    pub fn new(
        url: &str,
        access_token: &str,
        virtual_number: &str,
        timeouts: Timeouts,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            service: Service::new("novofon", url, "novofon", timeouts)?.with_secret(access_token),
            access_token: access_token.to_string(),
            virtual_number: virtual_number.trim_start_matches('+').to_string(),
        })
    }

    /// Lease check and the global `novofon` rate-limit slot (or a snooze): before the caller
    /// records that it is dialling.
    pub async fn prepare(&self, ctx: &JobContext) -> Result<(), CallError> {
        self.service.prepare(ctx).await
    }

    /// Rings `extension`, then connects `contact` (E.164 with or without `+`). `external_id`
    /// is the CRM's call request id: Novofon hands it back in its call events. Call after
    /// [`Novofon::prepare`].
    pub async fn employee_call(
        &self,
        ctx: &JobContext,
        external_id: &str,
        extension: &str,
        contact: &str,
    ) -> Result<Dialled, CallError> {
        // Novofon identifies the employee by id; the centre's PBX numbers its employees by
        // extension, so the extension is both (README: a cabinet that differs needs a map).
        let employee_id: u64 = extension.parse().unwrap_or_default();
        let body = json!({
            "jsonrpc": "2.0",
            "id": external_id,
            "method": "start.employee_call",
            "params": {
                "access_token": self.access_token,
                "first_call": "employee",
                "switch_at_once": true,
                "show_virtual_phone_number": false,
                "virtual_phone_number": self.virtual_number,
                "contact": contact.trim_start_matches('+'),
                "direction": "out",
                "external_id": external_id,
                "employee": {"id": employee_id, "phone_number": extension},
            }
        });
        let request = self.service.post(&self.service.base).json(&body);
        let response = match self.service.execute(ctx, request, |_| false).await {
            Ok(r) => r,
            Err(CallError::Unsent { message, .. }) => {
                return Ok(Dialled::NotTaken {
                    message,
                    retry_after: None,
                })
            }
            Err(CallError::Throttled { retry_after, .. }) => {
                return Ok(Dialled::NotTaken {
                    message: "Novofon asked to slow down (HTTP 429)".into(),
                    retry_after: Some(retry_after),
                })
            }
            Err(CallError::Refused { status, body, .. }) => {
                // A 4xx of the HTTP layer: the request was turned away before the PBX.
                return Ok(Dialled::Refused {
                    message: format!("HTTP {status}: {}", rpc_message(&body)),
                });
            }
            Err(CallError::Transient { message, .. }) => return Ok(Dialled::Unknown { message }),
            Err(e) => return Err(e),
        };
        let answer: RpcAnswer = match self.service.json(response).await {
            Ok(a) => a,
            // The call went out; what came back cannot be read.
            Err(e) => {
                return Ok(Dialled::Unknown {
                    message: e.to_string(),
                })
            }
        };
        Ok(classify(answer))
    }
}

/// A JSON-RPC answer (HTTP 200) as far as ringing is concerned. `limit_exceeded` always waits
/// (its hint, else a minute: the limits are per minute and per day) — it never spends an
/// attempt.
fn classify(answer: RpcAnswer) -> Dialled {
    match (answer.result, answer.error) {
        (Some(RpcResult { data: Some(d) }), None) => Dialled::Placed {
            call_session_id: d.call_session_id,
        },
        (_, Some(e)) if e.code == LIMIT_EXCEEDED => Dialled::NotTaken {
            message: describe(&e),
            retry_after: Some(
                e.data
                    .as_ref()
                    .and_then(|d| d.params.as_ref())
                    .and_then(|p| p.get("retry_after").or_else(|| p.get("minute_reset")))
                    .and_then(serde_json::Value::as_u64)
                    .map_or(Duration::from_secs(60), |s| {
                        Duration::from_secs(s.clamp(1, 300))
                    }),
            ),
        },
        (_, Some(e)) if e.code == INTERNAL_ERROR => Dialled::Unknown {
            message: describe(&e),
        },
        (_, Some(e)) => Dialled::Refused {
            message: describe(&e),
        },
        _ => Dialled::Unknown {
            message: "Novofon answered neither a call session nor an error".into(),
        },
    }
}

/// "Employee not found (employee_not_found, employee.phone_number)".
fn describe(e: &RpcError) -> String {
    let data = e.data.as_ref();
    let mnemonic = data.and_then(|d| d.mnemonic.as_deref()).unwrap_or("error");
    let mut s = format!(
        "{} ({mnemonic}",
        e.message.as_deref().unwrap_or("Novofon refused the call")
    );
    if let Some(field) = data.and_then(|d| d.field.as_deref()) {
        s.push_str(", ");
        s.push_str(field);
    }
    s.push(')');
    s.chars().take(300).collect()
}

/// The JSON-RPC error inside an HTTP error body, if there is one; else the body.
fn rpc_message(body: &str) -> String {
    serde_json::from_str::<RpcAnswer>(body)
        .ok()
        .and_then(|a| a.error)
        .map(|e| describe(&e))
        .unwrap_or_else(|| body.chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_described_in_the_providers_words() {
        let e: RpcError = serde_json::from_value(json!({
            "code": -32602, "message": "Employee with id 999 not found",
            "data": {"mnemonic": "employee_not_found", "field": "employee.id"}
        }))
        .unwrap();
        assert_eq!(
            describe(&e),
            "Employee with id 999 not found (employee_not_found, employee.id)"
        );
        let body = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32029,"message":"Limit per minute has been exceeded","data":{"mnemonic":"limit_exceeded"}}}"#;
        assert_eq!(
            rpc_message(body),
            "Limit per minute has been exceeded (limit_exceeded)"
        );
        assert_eq!(rpc_message("<html>"), "<html>");
    }

    fn answer(v: serde_json::Value) -> Dialled {
        classify(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn answers_are_sorted_by_whether_the_phone_may_ring() {
        let placed = answer(json!({"jsonrpc": "2.0", "id": "x",
            "result": {"data": {"call_session_id": 237859081},
                       "metadata": {"limits": {"minute_remaining": 99}}}}));
        assert!(matches!(
            placed,
            Dialled::Placed {
                call_session_id: 237859081
            }
        ));
        // The real shape of a throttled call: HTTP 200, -32029, no hint → a minute, no attempt.
        let limited = answer(
            json!({"jsonrpc": "2.0", "id": "x", "error": {"code": -32029,
            "message": "Limit per minute has been exceeded",
            "data": {"mnemonic": "limit_exceeded"}}}),
        );
        let Dialled::NotTaken { retry_after, .. } = limited else {
            panic!("{limited:?}")
        };
        assert_eq!(retry_after, Some(Duration::from_secs(60)));
        let hinted = answer(json!({"error": {"code": -32029, "message": "m",
            "data": {"mnemonic": "limit_exceeded", "params": {"retry_after": 7}}}}));
        assert!(
            matches!(hinted, Dialled::NotTaken { retry_after: Some(d), .. } if d == Duration::from_secs(7))
        );
        // An internal error may have placed the call; a refusal did not ring.
        let internal = answer(json!({"error": {"code": -32603, "message": "Internal error"}}));
        assert!(matches!(internal, Dialled::Unknown { .. }));
        let refused = answer(
            json!({"error": {"code": -32602, "message": "Employee not found",
            "data": {"mnemonic": "employee_not_found"}}}),
        );
        assert!(matches!(refused, Dialled::Refused { .. }));
        assert!(matches!(
            answer(json!({"result": {}})),
            Dialled::Unknown { .. }
        ));
    }
}
