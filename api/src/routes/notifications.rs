//! Notifications: managers read the outbox (`GET /api/notifications`, `/{id}`), send a message
//! to a group or a lesson's roster (`POST /api/notifications/broadcast` → 202: a `broadcast`
//! job creates one notice per member and channel), and create the one-time code that links a
//! client's Telegram chat (`POST /api/clients/{id}/telegram-link`). The bot's webhook
//! (`POST /api/webhooks/telegram`, checked by its secret-token header) takes `/start <code>`.
use crate::http::AppPath;
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    Json,
};
use chrono::{DateTime, Utc};
use jobs::kinds::notifications::Broadcast;
use serde::{Deserialize, Serialize};
use shared::domain::{
    notifications::{self, Channel, Notification, NotificationFilter, NotificationState},
    Page,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    auth::{CurrentUser, Role},
    http::{enqueue_for, page, Accepted, ApiError, AppJson, AppQuery},
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(broadcast))
        .routes(routes!(telegram_link))
        .routes(routes!(telegram_webhook))
}

const MANAGERS: &[Role] = &[Role::Admin, Role::Manager];

#[derive(Deserialize)]
struct ListQuery {
    client_id: Option<Uuid>,
    state: Option<NotificationState>,
    channel: Option<Channel>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Notifications, newest first (a client card's: `?client_id=`).
#[utoipa::path(
    get,
    path = "/api/notifications",
    tag = "notifications",
    params(("client_id" = Option<Uuid>, Query), ("state" = Option<NotificationState>, Query), ("channel" = Option<Channel>, Query), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::http::Paged<Notification>), (status = 400, description = "a query parameter that does not parse", body = crate::http::error::ErrorBody), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn list(
    State(app): State<AppState>,
    user: CurrentUser,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<Json<Page<Notification>>, ApiError> {
    user.require(MANAGERS)?;
    let page = page(q.limit, q.offset)?;
    let filter = NotificationFilter {
        client_id: q.client_id,
        state: q.state,
        channel: q.channel,
    };
    Ok(Json(notifications::list(&app.db, &filter, page).await?))
}

/// One notification: its state, where it went, the provider's message id, why it failed or
/// was skipped.
#[utoipa::path(
    get,
    path = "/api/notifications/{id}",
    tag = "notifications",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = Notification), (status = 400, description = "a path parameter that does not parse", body = crate::http::error::ErrorBody), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, notification.id = %id))]
async fn show(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<Notification>, ApiError> {
    user.require(MANAGERS)?;
    Ok(Json(notifications::get(&app.db, id).await?))
}

/// The longest broadcast text (Telegram takes 4096 characters; the greeting and signature
/// need the rest).
const MAX_TEXT: usize = 3500;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastRequest {
    /// The active members of this group…
    #[serde(default)]
    group_id: Option<Uuid>,
    /// …or the roster of this lesson (exactly one of the two).
    #[serde(default)]
    lesson_id: Option<Uuid>,
    /// 1–3500 characters (not only spaces).
    #[schema(
        min_length = 1,
        max_length = 3500,
        pattern = r"^[^\u0000]*[^\u0000\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    text: String,
    /// One or both of `telegram`, `email`: each recipient gets the message on each.
    #[schema(min_items = 1, max_items = 2)]
    channels: Vec<Channel>,
}

/// Sends a message to a group's members or a lesson's roster (a job: 202 with its status URL;
/// the job creates one notification per recipient and channel, each delivered on its own).
#[utoipa::path(
    post,
    path = "/api/notifications/broadcast",
    tag = "notifications",
    request_body = BroadcastRequest,
    responses((status = 202, description = "queued", body = Accepted), (status = 400, description = "malformed JSON", body = crate::http::error::ErrorBody), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "no such group or lesson", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn broadcast(
    State(app): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    AppJson(req): AppJson<BroadcastRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    user.require(MANAGERS)?;
    // Counted as sent (the schema's maxLength), sent trimmed.
    let text = req.text.trim().to_string();
    if text.is_empty() || req.text.chars().count() > MAX_TEXT {
        return Err(ApiError::field("text", "1 to 3500 characters"));
    }
    if text.contains('\0') {
        return Err(ApiError::field("text", "must not contain NUL characters"));
    }
    if req.group_id.is_some() == req.lesson_id.is_some() {
        return Err(ApiError::field(
            "group_id",
            "give exactly one of group_id and lesson_id",
        ));
    }
    let mut channels = req.channels.clone();
    channels.sort_by_key(|c| c.as_str());
    channels.dedup();
    if channels.is_empty() || req.channels.len() > 2 {
        return Err(ApiError::field(
            "channels",
            "one or both of telegram, email",
        ));
    }
    let exists: bool = sqlx::query_scalar(
        "select exists (select 1 from study_groups where id = $1)
             or exists (select 1 from lessons where id = $2)",
    )
    .bind(req.group_id)
    .bind(req.lesson_id)
    .fetch_one(&app.db)
    .await?;
    if !exists {
        return Err(ApiError::NotFound);
    }
    let job = Broadcast {
        group_id: req.group_id,
        lesson_id: req.lesson_id,
        text,
        channels,
    };
    let enqueued = enqueue_for(&app, &user, &headers, &job).await?;
    tracing::info!(job.id = %enqueued.job_id, "broadcast requested");
    Ok(Accepted::for_job(&enqueued))
}

/// `201 {code, start_command, expires_at}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TelegramLink {
    pub code: String,
    /// What the client sends to the bot: `/start <code>` (a `t.me/<bot>?start=<code>` link
    /// sends it in one tap).
    pub start_command: String,
    pub expires_at: DateTime<Utc>,
}

/// Creates a one-time code (valid an hour) that links the client's Telegram chat when the
/// client sends `/start <code>` to the centre's bot.
#[utoipa::path(
    post,
    path = "/api/clients/{id}/telegram-link",
    tag = "notifications",
    params(("id" = Uuid, Path)),
    responses((status = 201, description = "created", body = TelegramLink), (status = 400, description = "a path parameter that does not parse", body = crate::http::error::ErrorBody), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "no such client", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, client.id = %id))]
async fn telegram_link(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
) -> Result<(StatusCode, Json<TelegramLink>), ApiError> {
    user.require(MANAGERS)?;
    let (code, expires_at) = notifications::create_link_code(&app.db, id).await?;
    Ok((
        StatusCode::CREATED,
        Json(TelegramLink {
            start_command: format!("/start {code}"),
            code,
            expires_at,
        }),
    ))
}

/// The parts of a Telegram update the bot uses.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct Update {
    #[serde(default)]
    update_id: i64,
    /// Any JSON: an update the bot does not use is answered 200 all the same (Telegram
    /// would repeat anything else).
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    message: Option<serde_json::Value>,
}

/// Telegram's webhook: `/start <code>` from a chat links it to the code's client. Answers 200
/// to every update it was sent (Telegram repeats anything else); 401 without the secret token
/// header `X-Telegram-Bot-Api-Secret-Token`; 404 when no secret is configured (the webhook is
/// off).
#[utoipa::path(
    post,
    path = "/api/webhooks/telegram",
    tag = "notifications",
    request_body = Update,
    params(("X-Telegram-Bot-Api-Secret-Token" = String, Header, description = "TELEGRAM_WEBHOOK_SECRET")),
    responses((status = 200, description = "taken"), (status = 400, description = "malformed JSON", body = crate::http::error::ErrorBody), (status = 401, description = "missing or wrong secret token", body = crate::http::error::ErrorBody), (status = 404, description = "the webhook is not configured", body = crate::http::error::ErrorBody), (status = 422, description = "not an update", body = crate::http::error::ErrorBody)),
)]
#[tracing::instrument(skip_all)]
async fn telegram_webhook(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = body?;
    let Some(secret) = app.settings.telegram_webhook_secret.as_deref() else {
        return Err(ApiError::NotFound);
    };
    let given = headers
        .get("x-telegram-bot-api-secret-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !constant_time_eq(given, secret.as_bytes()) {
        return Err(ApiError::Unauthorized);
    }
    // Telegram's text, whatever it holds (a NUL too: it is read, never stored), so not
    // `AppJson`, which refuses NUL for the routes that store what they get.
    let update: Update = crate::http::extract::read_json_unstored(&body)?;
    let message = update.message.unwrap_or_default();
    let chat_id = message.pointer("/chat/id").and_then(|v| v.as_i64());
    let text = message.get("text").and_then(|v| v.as_str()).unwrap_or("");
    let code = text
        .strip_prefix("/start")
        .map(str::trim)
        // Codes are 16 hex digits (`create_link_code`): anything else links nothing.
        .filter(|c| c.len() == 16 && c.bytes().all(|b| b.is_ascii_hexdigit()));
    if let (Some(chat_id), Some(code)) = (chat_id, code) {
        let mut tx = app.db.begin().await?;
        let linked = notifications::link_chat(&mut tx, code, chat_id).await?;
        tx.commit().await?;
        match linked {
            Some(client) => {
                tracing::info!(update_id = update.update_id, client.id = %client, "telegram chat linked")
            }
            None => {
                tracing::info!(
                    update_id = update.update_id,
                    "telegram /start with an unknown or used code"
                )
            }
        }
    }
    Ok(Json(serde_json::json!({"ok": true})))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
