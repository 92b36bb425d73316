//! Telegram Bot API (reference §4): `sendMessage` through the one outbound client. The bot
//! token is part of every URL (`/bot<token>/<method>`), so it is a secret of the service:
//! never in a log line or a job's error. The answer is classified into [`Sent`] — only what
//! tells whether the message may have reached the chat matters.
use std::time::Duration;

use jobs::JobContext;
use serde::Deserialize;
use serde_json::json;

use super::http::{CallError, Service, Timeouts};

pub struct Telegram {
    pub service: Service,
    token: String,
}

/// How a `sendMessage` ended, as far as sending twice is concerned.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Delivered: Telegram's `message_id`.
    Delivered { message_id: i64 },
    /// 403: the user blocked the bot, was deactivated, the bot was kicked: never retried.
    Blocked { description: String },
    /// 400 with `migrate_to_chat_id`: the group became a supergroup; send there.
    Migrated { to: i64 },
    /// Another refusal (400 chat not found, message too long…): the description.
    Refused { description: String },
    /// 401 / 404: Telegram does not know the bot's token — no message can go out; the
    /// channel is down (configuration), not this message.
    BotRefused { description: String },
    /// Not sent, try later: a connection never made, a 500 or 503 (Telegram refused before
    /// sending), or 429 with how long the whole bot must wait.
    NotSent {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The request may have been sent and the message delivered: a timeout after sending, a
    /// broken or unreadable answer, a gateway's 502 / 504 (the upstream may have taken it).
    /// Never resent.
    Unknown { message: String },
}

#[derive(Deserialize)]
struct Answer {
    ok: bool,
    result: Option<MessageResult>,
    description: Option<String>,
}

#[derive(Deserialize)]
struct MessageResult {
    message_id: i64,
}

#[derive(Deserialize, Default)]
struct Refusal {
    description: Option<String>,
    parameters: Option<Parameters>,
}

#[derive(Deserialize, Default)]
struct Parameters {
    migrate_to_chat_id: Option<i64>,
}

/// Telegram allows 4096 characters after entity parsing; plain text is sent as is, cut there.
const MAX_TEXT: usize = 4096;

impl Telegram {
    pub fn new(url: &str, token: &str, timeouts: Timeouts) -> Result<Self, reqwest::Error> {
        Ok(Self {
            service: Service::new("telegram", url, "telegram", timeouts)?.with_secret(token),
            token: token.to_string(),
        })
    }

    /// Sends `text` (plain, no markup) to `chat_id`. The caller has checked its lease, taken
    /// the bot's and the chat's rate-limit slots and recorded that the send begins.
    pub async fn send_message(
        &self,
        ctx: &JobContext,
        chat_id: i64,
        text: &str,
    ) -> Result<Sent, CallError> {
        let text = cut_utf16(text, MAX_TEXT);
        let url = self.service.url(&format!("/bot{}/sendMessage", self.token));
        let request = self
            .service
            .post(&url)
            .json(&json!({"chat_id": chat_id, "text": text}));
        let response = match self.service.execute(ctx, request, |_| false).await {
            Ok(r) => r,
            Err(CallError::Unsent { message, .. }) => {
                return Ok(Sent::NotSent {
                    message,
                    retry_after: None,
                })
            }
            Err(CallError::Throttled { retry_after, .. }) => {
                return Ok(Sent::NotSent {
                    message: "Telegram asked to slow down (HTTP 429)".into(),
                    retry_after: Some(retry_after),
                })
            }
            Err(CallError::Refused { status, body, .. }) => return Ok(refusal(status, &body)),
            Err(CallError::Transient { message, .. }) => {
                // 500 / 503 are Telegram's refusals before sending; a gateway's 502 / 504, a
                // timeout or a broken connection may come after the message went out.
                let refused_before =
                    message.starts_with("HTTP 500") || message.starts_with("HTTP 503");
                return Ok(if refused_before {
                    Sent::NotSent {
                        message,
                        retry_after: None,
                    }
                } else {
                    Sent::Unknown { message }
                });
            }
            Err(e) => return Err(e),
        };
        let answer: Answer = match self.service.json(response).await {
            Ok(a) => a,
            Err(e) => {
                return Ok(Sent::Unknown {
                    message: e.to_string(),
                })
            }
        };
        Ok(match (answer.ok, answer.result) {
            (true, Some(m)) => Sent::Delivered {
                message_id: m.message_id,
            },
            _ => Sent::Unknown {
                message: format!(
                    "Telegram answered without a message: {}",
                    answer.description.unwrap_or_default()
                ),
            },
        })
    }
}

/// `text` cut to at most `max` UTF-16 code units, as Telegram counts a message's length (an
/// emoji is two).
fn cut_utf16(text: &str, max: usize) -> String {
    let mut units = 0;
    text.chars()
        .take_while(|c| {
            units += c.len_utf16();
            units <= max
        })
        .collect()
}

/// A 4xx answer (other than 429) as far as sending is concerned.
fn refusal(status: u16, body: &str) -> Sent {
    let r: Refusal = serde_json::from_str(body).unwrap_or_default();
    let description = r.description.unwrap_or_else(|| {
        format!(
            "HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        )
    });
    match (status, r.parameters.and_then(|p| p.migrate_to_chat_id)) {
        (400, Some(to)) => Sent::Migrated { to },
        (403, _) => Sent::Blocked { description },
        (401 | 404, _) => Sent::BotRefused { description },
        _ => Sent::Refused { description },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_classified_by_status_and_parameters() {
        assert_eq!(
            refusal(
                403,
                r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#
            ),
            Sent::Blocked {
                description: "Forbidden: bot was blocked by the user".into()
            }
        );
        assert_eq!(
            refusal(
                400,
                r#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001234567890}}"#
            ),
            Sent::Migrated { to: -1001234567890 }
        );
        assert_eq!(
            refusal(
                400,
                r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#
            ),
            Sent::Refused {
                description: "Bad Request: chat not found".into()
            }
        );
        assert!(
            matches!(refusal(401, "<html>"), Sent::BotRefused { description } if description.starts_with("HTTP 401"))
        );
        assert_eq!(cut_utf16("ab😀c", 3), "ab");
        assert_eq!(cut_utf16("ab😀c", 4), "ab😀");
    }
}
