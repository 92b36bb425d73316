//! Notifications (`notifications`): a durable outbox. A notice is a row created in the
//! transaction of the business change that causes it (with its delivery job: see
//! `jobs::kinds::notifications::notify`); the `notification` job moves its state:
//!
//! `queued` → `sending` (committed before the provider is asked) → `sent` | `failed` — or
//! `queued` → `skipped` (opted out, no chat or e-mail, a blocked bot or a refused mailbox, too
//! late to matter). The dedup key makes a notice once: one reminder per lesson and member, one
//! receipt per payment, one copy of a broadcast per recipient and channel.
//!
//! Texts are Russian, times Europe/Moscow ([`render`]); a notice stores its template and
//! parameters, and is rendered when sent.
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::{
    page::{self, Cte, PageRequest},
    DomainError, Page,
};

crate::text_enum! {
    pub enum Channel {
        Telegram = "telegram",
        Email = "email",
    }
}

crate::text_enum! {
    pub enum NotificationState {
        Queued = "queued",
        Sending = "sending",
        Sent = "sent",
        Failed = "failed",
        Skipped = "skipped",
    }
}

crate::text_enum! {
    pub enum Template {
        LessonReminder = "lesson_reminder",
        LessonCancelled = "lesson_cancelled",
        LessonMoved = "lesson_moved",
        SubscriptionEnding = "subscription_ending",
        SubscriptionEnded = "subscription_ended",
        PaymentReceived = "payment_received",
        ExportReady = "export_ready",
        Broadcast = "broadcast",
    }
}

/// Who a notice is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    Client(Uuid),
    User(Uuid),
}

/// A notice to create. `channel: None` = the recipient's preferred channel when created: a
/// client's Telegram chat when linked, not blocked and not opted out, else e-mail (a user:
/// e-mail). `dedup_key` names the event for this recipient (and channel, when given): a
/// second notice with the same key is not created.
#[derive(Debug, Clone)]
pub struct NewNotice {
    pub recipient: Recipient,
    pub channel: Option<Channel>,
    pub template: Template,
    pub params: Value,
    pub dedup_key: String,
    /// Not delivered by then → `skipped` (a reminder after the lesson began).
    pub not_after: Option<DateTime<Utc>>,
}

/// Stores notices as `queued` (those whose dedup key is new) and returns the ids created, in
/// the caller's transaction. Set-based: one statement whatever the number.
pub async fn insert(
    conn: &mut PgConnection,
    notices: &[NewNotice],
) -> Result<Vec<Uuid>, DomainError> {
    if notices.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(notices.len());
    let mut clients = Vec::with_capacity(notices.len());
    let mut users = Vec::with_capacity(notices.len());
    let mut channels = Vec::with_capacity(notices.len());
    let mut templates = Vec::with_capacity(notices.len());
    let mut params = Vec::with_capacity(notices.len());
    let mut keys = Vec::with_capacity(notices.len());
    let mut not_after = Vec::with_capacity(notices.len());
    for n in notices {
        ids.push(Uuid::new_v4());
        let (c, u) = match n.recipient {
            Recipient::Client(id) => (Some(id), None),
            Recipient::User(id) => (None, Some(id)),
        };
        clients.push(c);
        users.push(u);
        channels.push(n.channel.map(|c| c.as_str()));
        templates.push(n.template.as_str());
        params.push(n.params.clone());
        keys.push(n.dedup_key.as_str());
        not_after.push(n.not_after);
    }
    Ok(sqlx::query_scalar(
        "insert into notifications
             (id, client_id, user_id, channel, template, params, dedup_key, not_after)
         select n.id, n.client_id, n.user_id,
                coalesce(n.channel,
                         case when c.telegram_chat_id is not null and c.notify_telegram
                                   and c.telegram_blocked_at is null then 'telegram'
                              else 'email' end),
                n.template, n.params, n.key, n.not_after
         from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::jsonb[],
                     $7::text[], $8::timestamptz[])
              as n(id, client_id, user_id, channel, template, params, key, not_after)
         left join clients c on c.id = n.client_id
         on conflict (dedup_key) do nothing
         returning id",
    )
    .bind(&ids)
    .bind(&clients)
    .bind(&users)
    .bind(&channels)
    .bind(&templates)
    .bind(&params)
    .bind(&keys)
    .bind(&not_after)
    .fetch_all(conn)
    .await?)
}

/// Records the delivery job of each notice (same transaction as [`insert`]).
pub async fn set_jobs(
    conn: &mut PgConnection,
    ids: &[Uuid],
    job_ids: &[String],
) -> Result<(), DomainError> {
    sqlx::query(
        "update notifications n set job_id = j.job_id
         from unnest($1::uuid[], $2::text[]) as j(id, job_id) where n.id = j.id",
    )
    .bind(ids)
    .bind(job_ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// A notice as managers see it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Notification {
    pub id: Uuid,
    pub client_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub channel: Channel,
    pub template: Template,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub params: Value,
    pub state: NotificationState,
    /// Times a send began.
    pub attempts: i32,
    /// The chat id or e-mail address it went to.
    pub address: Option<String>,
    /// Telegram's `message_id`, or the e-mail's `Message-ID`.
    pub provider_message_id: Option<String>,
    pub error: Option<String>,
    pub job_id: Option<String>,
    pub not_after: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub sending_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "n.id, n.client_id, n.user_id, n.channel, n.template, n.params, n.state, \
     n.attempts, n.address, n.provider_message_id, n.error, n.job_id, n.not_after, \
     n.created_at, n.sending_at, n.finished_at";

/// Notices as shown: one still `queued` or `sending` whose delivery job ended without
/// recording an outcome (a person cancelled the waiting job, its attempts ran out before a
/// send, or the job is gone: pruned after its retention) shows what became of it — `skipped` / `failed` "not sent", or `failed` "may have been
/// delivered" if a send had begun.
const SHOWN: &str = "
    select n.id, n.client_id, n.user_id, n.channel, n.template, n.params,
           coalesce(e.state, n.state) as state, n.attempts, n.address, n.provider_message_id,
           coalesce(e.error, n.error) as error, n.job_id, n.not_after, n.created_at,
           n.sending_at, coalesce(n.finished_at, e.ended_at) as finished_at
    from notifications n
    left join job_runs j on j.id = n.job_id
    left join lateral (
        select case when n.state = 'queued' and j.state = 'cancelled' then 'skipped'
                    else 'failed' end as state,
               case when n.state = 'sending'
                    then 'the delivery ended after the send began: the message may have been delivered'
                    when j.state = 'cancelled' then 'cancelled by a person: not sent'
                    else 'the delivery ended before sending: not sent — ' || coalesce(j.error, '')
               end as error,
               j.finished_at as ended_at
        where n.state in ('queued', 'sending')
          and (j.state in ('succeeded', 'failed', 'cancelled')
               or (j.id is null and n.created_at < now() - interval '1 day'))
    ) e on true";

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Notification, DomainError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from ({SHOWN} where n.id = $1) n"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(DomainError::NotFound)
}

/// Filters of the list; all optional.
#[derive(Debug, Clone, Default)]
pub struct NotificationFilter {
    pub client_id: Option<Uuid>,
    pub state: Option<NotificationState>,
    pub channel: Option<Channel>,
}

/// Notices, newest first.
pub async fn list(
    db: impl PgExecutor<'_>,
    filter: &NotificationFilter,
    page: PageRequest,
) -> Result<Page<Notification>, DomainError> {
    let matched = format!(
        "select * from ({SHOWN} where ($1::uuid is null or n.client_id = $1)
                                  and ($3::text is null or n.channel = $3)) n
         where $2::text is null or n.state = $2"
    );
    let query = sqlx::query(page::page_sql(
        &matched,
        Cte::Inline,
        "n",
        COLUMNS,
        "n.created_at desc, n.id",
        4,
    ))
    .bind(filter.client_id)
    .bind(filter.state)
    .bind(filter.channel);
    Ok(page::fetch(db, query, page).await?)
}

/// What the delivery job needs to know about a notice and its recipient, read without a lock
/// (the state changes below re-check under one).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    pub id: Uuid,
    pub client_id: Option<Uuid>,
    pub channel: Channel,
    pub template: Template,
    pub params: Value,
    pub state: NotificationState,
    pub attempts: i32,
    pub address: Option<String>,
    /// `not_after` has passed.
    pub too_late: bool,
    /// The recipient's name ("Анна Иванова"), for the greeting.
    pub name: Option<String>,
    pub chat_id: Option<i64>,
    pub email: Option<String>,
    /// Why the channel cannot be used for this recipient now, if it cannot.
    pub unusable: Option<String>,
    /// The channel's circuit breaker is closed with no failure counted (or has no row): no
    /// need to ask it, nor to report a success.
    pub breaker_clean: bool,
}

/// The notice `id` and its recipient's addresses on its channel.
pub async fn delivery(db: impl PgExecutor<'_>, id: Uuid) -> Result<Delivery, DomainError> {
    sqlx::query_as(
        "select n.id, n.client_id, n.channel, n.template, n.params, n.state, n.attempts,
                n.address, coalesce(n.not_after < now(), false) as too_late,
                c.first_name || ' ' || c.last_name as name,
                c.telegram_chat_id as chat_id, coalesce(c.email, u.email) as email,
                case
                    when n.channel = 'telegram' and n.user_id is not null
                        then 'staff get notices by e-mail, not Telegram'
                    when n.channel = 'telegram' and not c.notify_telegram
                        then 'the client opted out of Telegram'
                    when n.channel = 'telegram' and c.telegram_chat_id is null
                        then 'the client has not linked a Telegram chat'
                    when n.channel = 'telegram' and c.telegram_blocked_at is not null
                        then 'the client blocked the bot'
                    when n.channel = 'email' and c.id is not null and not c.notify_email
                        then 'the client opted out of e-mail'
                    when n.channel = 'email' and coalesce(c.email, u.email) is null
                        then 'no e-mail address'
                    when n.channel = 'email' and c.email_bad_address = c.email
                        then 'the mailbox was refused: ' || coalesce(c.email_bad_reason, '')
                    when n.template in ('lesson_reminder', 'lesson_moved')
                         and not exists (select 1 from lessons l
                                         where l.id = (n.params->>'lesson_id')::uuid
                                           and l.status = 'scheduled'
                                           and l.starts_at = (n.params->>'starts_at')::timestamptz)
                        then 'the lesson was cancelled or moved since: this notice is out of date' 
                    when n.user_id is not null and not u.active then 'the user is deactivated'
                end as unusable,
                coalesce(b.state = 'closed' and b.failures = 0, true) as breaker_clean
         from notifications n
         left join clients c on c.id = n.client_id
         left join users u on u.id = n.user_id
         left join circuit_breakers b on b.key = n.channel
         where n.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(DomainError::NotFound)
}

/// What [`start_sending`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begun {
    /// Committed: `sending`, the send may go out.
    Sending,
    /// The job's run no longer holds `lease`: nothing written.
    LeaseLost,
    /// A person asked to cancel the job: nothing written.
    CancelRequested,
    /// The notice was not in the expected state: nothing written.
    Moved,
}

/// `from` (`queued`, or `sending` for an e-mail sent again) → `sending` to `address` (a send
/// begins: `attempts` + 1) — one autocommitted statement, fenced: only while job `job_id`'s run
/// holds `lease` (its ledger row is locked for share until the commit, so a takeover waits)
/// and no cancel was requested. It must commit before the provider is asked.
pub async fn start_sending(
    db: impl PgExecutor<'_>,
    id: Uuid,
    from: NotificationState,
    address: &str,
    job_id: &str,
    lease: Uuid,
) -> Result<Begun, DomainError> {
    let (cancel, moved): (Option<bool>, bool) = sqlx::query_as(
        "with run as (
             select cancel_requested from job_runs where id = $4 and lease = $5 for share
         ), moved as (
             update notifications
             set state = 'sending', attempts = attempts + 1, address = $3, sending_at = now(),
                 error = null, updated_at = now()
             where id = $1 and state = $2
               and exists (select 1 from run where not cancel_requested)
             returning 1
         )
         select (select cancel_requested from run), exists (select 1 from moved)",
    )
    .bind(id)
    .bind(from)
    .bind(address)
    .bind(job_id)
    .bind(lease)
    .fetch_one(db)
    .await?;
    Ok(match (cancel, moved) {
        (None, _) => Begun::LeaseLost,
        (Some(true), _) => Begun::CancelRequested,
        (Some(false), true) => Begun::Sending,
        (Some(false), false) => Begun::Moved,
    })
}

/// Moves the notice from `from` to `to` with the provider's message id or a reason. `false`
/// if it was no longer in `from` (only one write moves a notice out of `sending`).
pub async fn finish(
    db: impl PgExecutor<'_>,
    id: Uuid,
    from: NotificationState,
    to: NotificationState,
    provider_message_id: Option<&str>,
    error: Option<&str>,
) -> Result<bool, DomainError> {
    Ok(sqlx::query(
        "update notifications
         set state = $3, provider_message_id = coalesce($4, provider_message_id), error = $5,
             finished_at = case when $3 in ('queued', 'sending') then null else now() end,
             updated_at = now()
         where id = $1 and state = $2",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .bind(provider_message_id)
    .bind(error)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// [`finish`] for what a provider answered (`from` is `sending`), committed without waiting for
/// the WAL flush (`synchronous_commit = off` for this one statement): the send is over, and a
/// PostgreSQL crash in the next few hundred milliseconds that lost this write would leave the
/// notice `sending` — which the next attempt records as "may have been delivered" (Telegram)
/// or sends again with the same Message-ID (e-mail), never a second Telegram message. Measured:
/// the delivery's two flushed commits were where its time went (`WALWrite` / `WALSync` waits).
pub async fn record_sent(
    db: impl PgExecutor<'_>,
    id: Uuid,
    to: NotificationState,
    provider_message_id: Option<&str>,
    error: Option<&str>,
) -> Result<bool, DomainError> {
    Ok(sqlx::query(
        "with lazy as (select set_config('synchronous_commit', 'off', true))
         update notifications
         set state = $2, provider_message_id = coalesce($3, provider_message_id), error = $4,
             finished_at = case when $2 in ('queued', 'sending') then null else now() end,
             updated_at = now()
         where id = $1 and state = 'sending' and exists (select 1 from lazy)",
    )
    .bind(id)
    .bind(to)
    .bind(provider_message_id)
    .bind(error)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// The client's chat blocked the bot (Telegram 403): no further Telegram notice is tried until
/// the client links a chat again. Only if the chat is still the one that refused.
pub async fn mark_chat_blocked(
    db: impl PgExecutor<'_>,
    client_id: Uuid,
    chat_id: i64,
) -> Result<(), DomainError> {
    sqlx::query(
        "update clients set telegram_blocked_at = now(), updated_at = now()
         where id = $1 and telegram_chat_id = $2 and telegram_blocked_at is null",
    )
    .bind(client_id)
    .bind(chat_id)
    .execute(db)
    .await?;
    Ok(())
}

/// A group chat became a supergroup: the client's chat id moves with it.
pub async fn migrate_chat(
    db: impl PgExecutor<'_>,
    client_id: Uuid,
    from: i64,
    to: i64,
) -> Result<(), DomainError> {
    sqlx::query(
        "update clients set telegram_chat_id = $3, updated_at = now()
         where id = $1 and telegram_chat_id = $2",
    )
    .bind(client_id)
    .bind(from)
    .bind(to)
    .execute(db)
    .await?;
    Ok(())
}

/// The relay refused the mailbox (5.1.x): no further mail to that address (a new e-mail of
/// the client is tried again). Only if the address is still the client's.
pub async fn mark_email_bad(
    db: impl PgExecutor<'_>,
    client_id: Uuid,
    email: &str,
    reason: &str,
) -> Result<(), DomainError> {
    sqlx::query(
        "update clients set email_bad_at = now(), email_bad_address = $2, email_bad_reason = $3,
                            updated_at = now()
         where id = $1 and email = $2",
    )
    .bind(client_id)
    .bind(email)
    .bind(reason)
    .execute(db)
    .await?;
    Ok(())
}

// ----- linking a Telegram chat -----

/// How long a link code is valid.
pub const LINK_CODE_TTL_MINUTES: i64 = 60;

/// A new one-time code for `client_id` (the client sends `/start <code>` to the bot).
pub async fn create_link_code(
    db: impl PgExecutor<'_>,
    client_id: Uuid,
) -> Result<(String, DateTime<Utc>), DomainError> {
    let code: String = Uuid::new_v4().simple().to_string()[..16].to_string();
    let expires_at: Option<DateTime<Utc>> = sqlx::query_scalar(
        "insert into telegram_link_codes (code, client_id, expires_at)
         select $1, c.id, now() + make_interval(mins => $3) from clients c where c.id = $2
         returning expires_at",
    )
    .bind(&code)
    .bind(client_id)
    .bind(LINK_CODE_TTL_MINUTES as i32)
    .fetch_optional(db)
    .await?;
    let expires_at = expires_at.ok_or(DomainError::NotFound)?;
    Ok((code, expires_at))
}

/// Links `chat_id` to the client of an unused, unexpired `code` (and clears a block: the
/// client wrote to the bot, so it is not blocked). The client, or `None` for a code that is
/// unknown, used or expired.
pub async fn link_chat(
    conn: &mut PgConnection,
    code: &str,
    chat_id: i64,
) -> Result<Option<Uuid>, DomainError> {
    let client: Option<Uuid> = sqlx::query_scalar(
        "update telegram_link_codes set used_at = now(), chat_id = $2
         where code = $1 and used_at is null and expires_at > now()
         returning client_id",
    )
    .bind(code)
    .bind(chat_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(client_id) = client {
        sqlx::query(
            "update clients set telegram_chat_id = $2, telegram_blocked_at = null,
                                updated_at = now()
             where id = $1",
        )
        .bind(client_id)
        .bind(chat_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(client)
}

// ----- what causes notices -----

/// Reminders for lessons starting within the next 24 hours, once per lesson, start time and
/// member on its roster (dedup `reminder:<lesson>:<client>:<start, epoch s>`: a lesson moved
/// after its reminder gets one for its new time), to be delivered before the lesson starts.
pub fn reminder_sql() -> &'static str {
    "select e.client_id, l.id as lesson_id, l.starts_at, g.name as group_name,
            r.name as room_name
     from lessons l
     join study_groups g on g.id = l.group_id
     join rooms r on r.id = l.room_id
     join lesson_enrolments e on e.lesson_id = l.id
     where l.status = 'scheduled' and l.kind = 'lesson'
       and l.starts_at > now() and l.starts_at <= now() + interval '24 hours'
       and not exists (select 1 from notifications n
                       where n.dedup_key = 'reminder:' || l.id || ':' || e.client_id || ':'
                                           || floor(extract(epoch from l.starts_at))::bigint)"
}

/// The reminders due now (see [`reminder_sql`]), as notices.
pub async fn due_reminders(
    db: impl PgExecutor<'_>,
    limit: i64,
) -> Result<Vec<NewNotice>, DomainError> {
    let rows: Vec<(Uuid, Uuid, DateTime<Utc>, String, String)> = sqlx::query_as(
        sqlx::AssertSqlSafe(format!("{} order by l.starts_at limit $1", reminder_sql())),
    )
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(client_id, lesson_id, starts_at, group, room)| NewNotice {
            recipient: Recipient::Client(client_id),
            channel: None,
            template: Template::LessonReminder,
            params: serde_json::json!({
                "lesson_id": lesson_id, "starts_at": starts_at, "group": group, "room": room,
            }),
            dedup_key: format!("reminder:{lesson_id}:{client_id}:{}", starts_at.timestamp()),
            not_after: Some(starts_at),
        })
        .collect())
}

/// The notices of a lesson's change to everyone on its roster: `LessonCancelled` (once per
/// lesson and member), or `LessonMoved` from `was_starts_at` (once per change and member: the
/// key carries the lesson's `updated_at`).
/// Delivered until the lesson (its old time, for a cancellation) begins. Call in the
/// transaction that changed the lesson, after the change.
pub async fn lesson_notices(
    conn: &mut PgConnection,
    lesson_id: Uuid,
    template: Template,
    was_starts_at: Option<DateTime<Utc>>,
) -> Result<Vec<NewNotice>, DomainError> {
    /// Client, start, group, room, the lesson's version (`updated_at`, µs).
    type Row = (Uuid, DateTime<Utc>, Option<String>, String, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "select e.client_id, l.starts_at, g.name, r.name,
                (extract(epoch from l.updated_at) * 1000000)::bigint
         from lessons l
         join lesson_enrolments e on e.lesson_id = l.id
         left join study_groups g on g.id = l.group_id
         join rooms r on r.id = l.room_id
         where l.id = $1 and l.starts_at > now()",
    )
    .bind(lesson_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(client_id, starts_at, group, room, version)| {
            let (key, not_after) = match template {
                // Each change of the lesson is its own notice (A→B, B→A, A→B: three).
                Template::LessonMoved => (
                    format!("lesson_moved:{lesson_id}:{client_id}:{version}"),
                    starts_at.min(was_starts_at.unwrap_or(starts_at)),
                ),
                _ => (
                    format!("lesson_cancelled:{lesson_id}:{client_id}"),
                    starts_at,
                ),
            };
            NewNotice {
                recipient: Recipient::Client(client_id),
                channel: None,
                template,
                params: serde_json::json!({
                    "lesson_id": lesson_id, "starts_at": starts_at, "was_starts_at": was_starts_at,
                    "group": group, "room": room,
                }),
                dedup_key: key,
                not_after: Some(not_after),
            }
        })
        .collect())
}

/// The most a broadcast reaches (the members of a group or a lesson's roster are far fewer).
pub const BROADCAST_MAX_RECIPIENTS: i64 = 5_000;

/// Recipients of a broadcast: the active members of a group, or a lesson's roster.
pub async fn broadcast_recipients(
    db: impl PgExecutor<'_>,
    group_id: Option<Uuid>,
    lesson_id: Option<Uuid>,
) -> Result<Vec<Uuid>, DomainError> {
    Ok(sqlx::query_scalar(
        "select client_id from group_members where $1::uuid is not null and group_id = $1
                                               and status = 'active'
         union
         select client_id from lesson_enrolments where $2::uuid is not null and lesson_id = $2
         order by 1 limit $3",
    )
    .bind(group_id)
    .bind(lesson_id)
    .bind(BROADCAST_MAX_RECIPIENTS)
    .fetch_all(db)
    .await?)
}

// ----- texts -----

/// A rendered notice: the e-mail subject and the text (Telegram's message, the e-mail body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
}

fn moscow(v: &Value) -> String {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| {
            t.with_timezone(&crate::time::MOSCOW)
                .format("%d.%m.%Y в %H:%M")
                .to_string()
        })
        .unwrap_or_else(|| "—".into())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => other.to_string(),
    }
}

/// The Russian text of a notice, times in Moscow time. `name` greets the recipient.
pub fn render(template: Template, params: &Value, name: Option<&str>) -> Rendered {
    let p = |k: &str| params.get(k).cloned().unwrap_or(Value::Null);
    let hello = match name {
        Some(n) if !n.trim().is_empty() => format!("Здравствуйте, {}!\n\n", n.trim()),
        _ => "Здравствуйте!\n\n".into(),
    };
    let (subject, body) = match template {
        Template::LessonReminder => (
            "Напоминание о занятии".to_string(),
            format!(
                "Напоминаем: занятие «{}» {} (Москва), {}.",
                text(&p("group")),
                moscow(&p("starts_at")),
                text(&p("room"))
            ),
        ),
        Template::LessonCancelled => (
            "Занятие отменено".to_string(),
            format!(
                "Занятие «{}» {} (Москва) отменено.",
                text(&p("group")),
                moscow(&p("starts_at"))
            ),
        ),
        Template::LessonMoved => (
            "Занятие перенесено".to_string(),
            format!(
                "Занятие «{}» перенесено с {} на {} (Москва), {}.",
                text(&p("group")),
                moscow(&p("was_starts_at")),
                moscow(&p("starts_at")),
                text(&p("room"))
            ),
        ),
        Template::SubscriptionEnding => (
            "Абонемент скоро закончится".to_string(),
            format!(
                "Ваш абонемент действует до {} включительно{}.",
                text(&p("ends_on")),
                match p("visits_left") {
                    Value::Number(n) => format!(", осталось посещений: {n}"),
                    _ => String::new(),
                }
            ),
        ),
        Template::SubscriptionEnded => (
            "Абонемент закончился".to_string(),
            format!("Срок вашего абонемента истёк {}.", text(&p("ends_on"))),
        ),
        Template::PaymentReceived => (
            "Оплата получена".to_string(),
            format!(
                "Мы получили вашу оплату: {} ₽. Спасибо!",
                text(&p("amount"))
            ),
        ),
        Template::ExportReady => (
            "Табель готов".to_string(),
            format!(
                "Файл «{}» готов. Скачать его можно на странице «Мои задачи».",
                text(&p("file_name"))
            ),
        ),
        Template::Broadcast => ("Сообщение от центра".to_string(), text(&p("text"))),
    };
    Rendered {
        subject: format!("АРТСВАО: {subject}"),
        text: format!("{hello}{body}\n\nКультурный центр АРТСВАО"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reminders_render_in_moscow_time() {
        let r = render(
            Template::LessonReminder,
            &serde_json::json!({"starts_at": "2026-12-01T15:00:00Z", "group": "Хор",
                                "room": "ауд. 12"}),
            Some("Анна Иванова"),
        );
        assert_eq!(r.subject, "АРТСВАО: Напоминание о занятии");
        assert!(
            r.text.starts_with("Здравствуйте, Анна Иванова!"),
            "{}",
            r.text
        );
        assert!(
            r.text
                .contains("занятие «Хор» 01.12.2026 в 18:00 (Москва), ауд. 12."),
            "{}",
            r.text
        );
    }

    #[test]
    fn a_broadcast_is_its_text() {
        let r = render(
            Template::Broadcast,
            &serde_json::json!({"text": "Концерт в субботу"}),
            None,
        );
        assert!(r.text.contains("Концерт в субботу"));
        assert!(r.text.starts_with("Здравствуйте!"));
    }
}
