//! Telegram Bot API under `/telegram/bot<token>/<method>`: `sendMessage`, `getMe`, webhook
//! methods and `getUpdates`, with Telegram's `{"ok": false, "error_code", "description"}` errors.
//!
//! Chat conventions: a chat id whose absolute value ends in `403` (or one blocked through
//! `POST /_fakes/telegram/blocked`) has blocked the bot; ending in `404` is "chat not found";
//! a negative id ending in `301` is a group upgraded to a supergroup (`migrate_to_chat_id`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::faults::Hit;
use crate::seed::{Draw, Person, Stream};
use crate::{App, Config};

const MAX_TEXT: usize = 4096;

pub struct Telegram {
    token: String,
    bot_id: u64,
    seed: u64,
    next_message_id: AtomicU64,
    blocked: Mutex<HashSet<i64>>,
    webhook: Mutex<String>,
}

impl Telegram {
    pub fn new(config: &Config) -> Self {
        let bot_id = config
            .telegram_bot_token
            .split(':')
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or(123_456_789);
        Self {
            token: config.telegram_bot_token.clone(),
            bot_id,
            seed: config.seed,
            next_message_id: AtomicU64::new(1),
            blocked: Mutex::new(HashSet::new()),
            webhook: Mutex::new(String::new()),
        }
    }

    pub fn set_blocked(&self, chat_id: i64, blocked: bool) {
        let mut set = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        if blocked {
            set.insert(chat_id);
        } else {
            set.remove(&chat_id);
        }
    }

    pub fn unblock_all(&self) {
        self.blocked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn is_blocked(&self, chat_id: i64) -> bool {
        chat_id.unsigned_abs() % 1000 == 403
            || self
                .blocked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&chat_id)
    }

    fn bot(&self) -> Value {
        json!({"id": self.bot_id, "is_bot": true, "first_name": "АРТСВАО", "username": "artsvao_fakes_bot"})
    }
}

pub fn routes() -> Router<Arc<App>> {
    // One catch-all: `{bot}/{method}` and a catch-all cannot share a position in the router.
    Router::new().route("/telegram/{*rest}", any(call))
}

fn failure(status: StatusCode, description: &str) -> Response {
    let body = json!({"ok": false, "error_code": status.as_u16(), "description": description});
    (status, Json(body)).into_response()
}

fn ok(result: Value) -> Response {
    Json(json!({"ok": true, "result": result})).into_response()
}

pub fn fault_response(status: StatusCode, hit: &Hit) -> Response {
    if status == StatusCode::TOO_MANY_REQUESTS {
        let after = hit.retry_after();
        let body = json!({"ok": false, "error_code": 429,
            "description": format!("Too Many Requests: retry after {after}"),
            "parameters": {"retry_after": after}});
        return (status, Json(body)).into_response();
    }
    let description = match status.as_u16() {
        400 => "Bad Request: chat not found",
        401 => "Unauthorized",
        403 => "Forbidden: bot was blocked by the user",
        404 => "Not Found",
        409 => "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
        502 => "Bad Gateway",
        _ => "Internal Server Error",
    };
    failure(status, description)
}

/// A well-formed token is `<digits>:<30+ of [A-Za-z0-9_-]>`; Telegram answers 404 to anything
/// else and 401 to a well-formed token it does not know.
fn well_formed(token: &str) -> bool {
    token.split_once(':').is_some_and(|(id, secret)| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && secret.len() >= 30
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

async fn call(
    State(app): State<Arc<App>>,
    Path(rest): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let tg = &app.telegram;
    let Some((bot, method)) = rest.split_once('/').filter(|(_, m)| !m.contains('/')) else {
        return failure(StatusCode::NOT_FOUND, "Not Found");
    };
    let token = bot.strip_prefix("bot");
    if token != Some(tg.token.as_str()) {
        return if token.is_some_and(well_formed) {
            failure(StatusCode::UNAUTHORIZED, "Unauthorized")
        } else {
            failure(StatusCode::NOT_FOUND, "Not Found")
        };
    }
    let params = params(uri.query(), &headers, &body);
    match method.to_ascii_lowercase().as_str() {
        "getme" => ok(tg.bot()),
        "sendmessage" => send_message(tg, &params),
        "setwebhook" => {
            let url = params.get("url").map(text).unwrap_or_default();
            *tg.webhook.lock().unwrap_or_else(|e| e.into_inner()) = url.clone();
            let description = if url.is_empty() {
                "Webhook was deleted"
            } else {
                "Webhook was set"
            };
            Json(json!({"ok": true, "result": true, "description": description})).into_response()
        }
        "deletewebhook" => {
            tg.webhook.lock().unwrap_or_else(|e| e.into_inner()).clear();
            Json(json!({"ok": true, "result": true, "description": "Webhook was deleted"}))
                .into_response()
        }
        "getwebhookinfo" => {
            let url = tg.webhook.lock().unwrap_or_else(|e| e.into_inner()).clone();
            ok(
                json!({"url": url, "has_custom_certificate": false, "pending_update_count": 0, "max_connections": 40}),
            )
        }
        "getupdates" => {
            if tg
                .webhook
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
            {
                ok(json!([]))
            } else {
                failure(StatusCode::CONFLICT, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first")
            }
        }
        _ => failure(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parameters from the query string and a JSON or form-encoded body (multipart is not parsed).
fn params(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Map<String, Value> {
    let mut params = Map::new();
    for (k, v) in urlencoded(query.unwrap_or_default()) {
        params.insert(k, Value::String(v));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        for (k, v) in urlencoded(&String::from_utf8_lossy(body)) {
            params.insert(k, Value::String(v));
        }
    } else if let Ok(Value::Object(json)) = serde_json::from_slice(body) {
        params.extend(json);
    }
    params
}

fn urlencoded(input: &str) -> Vec<(String, String)> {
    fn hex(b: Option<&u8>) -> Option<u8> {
        b.and_then(|b| (*b as char).to_digit(16)).map(|d| d as u8)
    }
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                    (Some(high), Some(low)) => {
                        out.push(high * 16 + low);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    input
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

enum Chat {
    Id(i64),
    Username(String),
}

fn send_message(tg: &Telegram, p: &Map<String, Value>) -> Response {
    let chat = match p.get("chat_id") {
        None | Some(Value::Null) => {
            return failure(StatusCode::BAD_REQUEST, "Bad Request: chat_id is empty")
        }
        Some(Value::Number(n)) => n.as_i64().map(Chat::Id),
        Some(Value::String(s)) if s.starts_with('@') && s.len() > 1 => {
            Some(Chat::Username(s.clone()))
        }
        Some(Value::String(s)) => s.trim().parse().ok().map(Chat::Id),
        Some(_) => None,
    };
    let Some(chat) = chat else {
        return failure(StatusCode::BAD_REQUEST, "Bad Request: chat not found");
    };
    let message = p.get("text").map(text).unwrap_or_default();
    if message.trim().is_empty() {
        return failure(
            StatusCode::BAD_REQUEST,
            "Bad Request: message text is empty",
        );
    }
    if let Some(mode) = p.get("parse_mode").map(text) {
        if !matches!(mode.as_str(), "" | "HTML" | "Markdown" | "MarkdownV2") {
            return failure(
                StatusCode::BAD_REQUEST,
                &format!("Bad Request: unsupported parse_mode \"{mode}\""),
            );
        }
    }
    let chat_json = match &chat {
        Chat::Id(id) => {
            let tail = id.unsigned_abs() % 1000;
            if tg.is_blocked(*id) {
                return failure(
                    StatusCode::FORBIDDEN,
                    "Forbidden: bot was blocked by the user",
                );
            }
            if tail == 404 {
                return failure(StatusCode::BAD_REQUEST, "Bad Request: chat not found");
            }
            if tail == 301 && *id < 0 && *id > -1_000_000_000_000 {
                let body = json!({"ok": false, "error_code": 400,
                    "description": "Bad Request: group chat was upgraded to a supergroup chat",
                    "parameters": {"migrate_to_chat_id": -1_000_000_000_000 + id}});
                return (StatusCode::BAD_REQUEST, Json(body)).into_response();
            }
            chat_of(tg.seed, *id)
        }
        Chat::Username(name) => {
            let hash = name
                .bytes()
                .fold(0, |h, b| crate::seed::mix(h ^ u64::from(b)));
            let id = -1_000_000_000_000 - (hash % 1_000_000_000) as i64;
            json!({"id": id, "title": name.trim_start_matches('@'), "username": name.trim_start_matches('@'), "type": "channel"})
        }
    };
    if message.chars().count() > MAX_TEXT {
        return failure(StatusCode::BAD_REQUEST, "Bad Request: message is too long");
    }
    let message_id = tg.next_message_id.fetch_add(1, Ordering::SeqCst);
    ok(json!({
        "message_id": message_id,
        "from": tg.bot(),
        "chat": chat_json,
        "date": chrono::Utc::now().timestamp(),
        "text": message,
    }))
}

fn chat_of(seed: u64, id: i64) -> Value {
    if id > 0 {
        let person = Person::random(&mut Draw::new(seed, Stream::Telegram, id as u64));
        json!({"id": id, "first_name": person.name, "last_name": person.surname, "type": "private"})
    } else if id <= -1_000_000_000_000 {
        json!({"id": id, "title": "Родители студии", "type": "supergroup"})
    } else {
        json!({"id": id, "title": "Группа студии", "type": "group"})
    }
}
