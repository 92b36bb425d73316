//! `notification`: delivers one notice — sent at most once on Telegram, at most once per
//! Message-ID by e-mail; `broadcast`: a manager's message to a group or a lesson's roster;
//! `lesson_reminders` (cron): the reminders due.
//!
//! A delivery:
//! 1. reads the notice: decided → its outcome again; found `sending` (an earlier attempt
//!    began a send and never recorded the end) → Telegram: `failed` "may have been delivered",
//!    never a second send; e-mail: sent again with the same `Message-ID`;
//! 2. skips it (with the reason) when it is too late, the recipient opted out, has no chat or
//!    e-mail, blocked the bot or had the mailbox refused;
//! 3. asks the channel's circuit breaker (open → the job snoozes until the probe);
//! 4. takes the rate-limit slots — Telegram: the bot's (30/s), then the chat's (1/s), each
//!    only if free now; e-mail: the day's (500), then the hour's (20), waiting up to 2 s — or
//!    snoozes for its turn, never sleeping past its timeout;
//! 5. commits `queued → sending` fenced on its lease, then calls the provider;
//! 6. records what came back (not fenced: once the provider answered, that is the truth
//!    whoever holds the lease now; only one write moves a notice out of `sending`).
//!
//! The window: a worker that dies after committing `sending` and before the request leaves
//! has sent nothing, yet its successor marks a Telegram notice `failed` ("may have been
//! delivered") rather than risk a second message; it is as narrow as writing one request to
//! a socket. A death after Telegram took the message and before `sent` was written is the
//! common case, and ends the same way with the message delivered once.
use std::{sync::Arc, time::Duration};

use jobs::{
    breaker::{Admission, Breaker},
    kinds::notifications::{
        notify, Broadcast, BroadcastReport, DeliverNotification, DeliveryReport, LessonReminders,
        RemindersReport,
    },
    JobContext, JobError, Requester,
};
use shared::domain::notifications::{
    self as outbox, Begun, Channel, Delivery, NewNotice, NotificationState as S, Recipient,
    Template,
};
use uuid::Uuid;

use crate::{
    clients::{
        clean_text,
        smtp::{Mailed, Mailer},
        telegram::{Sent, Telegram},
        Integrations,
    },
    Registry,
};

/// Deliveries in flight per worker process (each holds its slot for one provider call).
pub const CONCURRENCY: usize = 32;
/// Every 10 minutes: reminders for lessons within 24 hours not yet reminded.
pub const REMINDERS_SCHEDULE: &str = "0 */10 * * * *";
/// How long a delivery waits for a rate-limit slot before it snoozes instead.
const SLOT_WAIT: Duration = Duration::from_secs(2);

/// The notification channels' clients and their circuit breaker.
#[derive(Clone)]
pub struct Channels {
    telegram: Result<Arc<Telegram>, String>,
    mailer: Result<Arc<Mailer>, String>,
    breaker: Breaker,
}

pub fn register(registry: Registry, integrations: &Integrations) -> Registry {
    let channels = Channels {
        telegram: integrations.telegram.clone(),
        mailer: integrations.mailer.clone(),
        breaker: integrations.breaker,
    };
    registry
        .register::<DeliverNotification, _, _, _>(CONCURRENCY, move |job, ctx| {
            let channels = channels.clone();
            async move { deliver(job, ctx, channels).await }
        })
        .register::<Broadcast, _, _, _>(2, broadcast)
        .register::<LessonReminders, _, _, _>(1, reminders)
        .schedule("lesson_reminders", REMINDERS_SCHEDULE, LessonReminders {})
}

const MAY_HAVE_BEEN_SENT: &str = "the previous attempt stopped after the send began: the \
    message may have been delivered — not sent again";

fn report(
    id: Uuid,
    state: S,
    message_id: Option<String>,
    reason: Option<String>,
) -> DeliveryReport {
    DeliveryReport {
        notification_id: id,
        state: state.to_string(),
        provider_message_id: message_id,
        reason,
    }
}

/// Moves the notice from `from` to `to` with a reason, fenced on the lease.
async fn settle(ctx: &JobContext, id: Uuid, from: S, to: S, reason: &str) -> Result<(), JobError> {
    let mut tx = ctx.db().begin().await?;
    ctx.fence(&mut tx).await?;
    let moved = outbox::finish(&mut *tx, id, from, to, None, Some(reason)).await?;
    tx.commit().await?;
    if moved {
        tracing::info!(notification.id = %id, state = %to, %reason, "notification settled");
    }
    Ok(())
}

/// What the send came to: the state it leaves the notice in, the message id, the reason, and
/// the job's outcome.
struct Outcome {
    to: S,
    message_id: Option<String>,
    reason: Option<String>,
    result: Result<(), JobError>,
    /// What the answer says about the channel, for its circuit breaker.
    health: Health,
}

/// A provider answer as the circuit breaker counts it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Health {
    /// It answered (a delivery, a refusal of this message): the channel works.
    Up,
    /// Unreachable, a 5xx, a 4yz, no answer: one more consecutive failure.
    Down,
    /// Throttled: says nothing about the channel.
    Throttled,
}

impl Outcome {
    fn sent(message_id: String) -> Self {
        Self {
            to: S::Sent,
            message_id: Some(message_id),
            reason: None,
            result: Ok(()),
            health: Health::Up,
        }
    }
    fn end(to: S, reason: String) -> Self {
        let result = if to == S::Failed {
            Err(JobError::permanent(reason.clone()))
        } else {
            Ok(())
        };
        Self {
            to,
            message_id: None,
            reason: Some(reason),
            result,
            health: Health::Up,
        }
    }
    fn again(reason: String, error: JobError, health: Health) -> Self {
        Self {
            to: S::Queued,
            message_id: None,
            reason: Some(reason),
            result: Err(error),
            health,
        }
    }
    fn down(self) -> Self {
        Self {
            health: Health::Down,
            ..self
        }
    }
    fn neutral(self) -> Self {
        Self {
            health: Health::Throttled,
            ..self
        }
    }
}

pub async fn deliver(
    job: DeliverNotification,
    ctx: JobContext,
    channels: Channels,
) -> Result<DeliveryReport, JobError> {
    let id = job.notification_id;
    let d = outbox::delivery(ctx.db(), id).await?;
    let resend = match d.state {
        S::Queued => false,
        S::Sending if d.channel == Channel::Telegram => {
            settle(&ctx, id, S::Sending, S::Failed, MAY_HAVE_BEEN_SENT).await?;
            return Err(JobError::permanent(MAY_HAVE_BEEN_SENT));
        }
        // E-mail: the same Message-ID again (see the module comment).
        S::Sending => true,
        S::Sent | S::Skipped => {
            let n = outbox::get(ctx.db(), id).await?;
            return Ok(report(id, d.state, n.provider_message_id, n.error));
        }
        S::Failed => {
            let n = outbox::get(ctx.db(), id).await?;
            return Err(JobError::permanent(
                n.error.unwrap_or_else(|| "failed".into()),
            ));
        }
    };
    let from = if resend { S::Sending } else { S::Queued };
    let skip = if d.too_late {
        Some("too late: the notice no longer matters (its time has passed)".to_string())
    } else {
        d.unusable.clone()
    };
    if let Some(reason) = skip {
        settle(&ctx, id, from, S::Skipped, &reason).await?;
        return Ok(report(id, S::Skipped, None, Some(reason)));
    }
    let key = d.channel.as_str();
    let disabled = match d.channel {
        Channel::Telegram => channels.telegram.as_ref().err(),
        Channel::Email => channels.mailer.as_ref().err(),
    };
    if let Some(why) = disabled {
        let reason = format!("the {key} channel is disabled: {why}");
        settle(&ctx, id, from, S::Failed, &reason).await?;
        return Err(JobError::permanent(reason));
    }

    // The breaker's row came with the notice: a clean one (the usual case) is not asked again.
    let admission = if d.breaker_clean {
        Admission::Closed
    } else {
        channels.breaker.admit(ctx.db(), key).await?
    };
    if let Admission::Open { wait } = admission {
        return Err(JobError::snooze(
            format!("the {key} channel is paused after repeated failures (circuit breaker)"),
            wait,
        ));
    }
    let rendered = outbox::render(d.template, &d.params, d.name.as_deref());
    // Up to the send: slots, then `sending`. A probe that cannot send now (a snooze for a
    // slot, a lost lease) hands the probe back at once instead of holding it for a minute.
    let ready = ready_to_send(&ctx, &d, resend).await;
    if let (Err(_), Admission::Probe) = (&ready, admission) {
        if let Err(error) = channels.breaker.release_probe(ctx.db(), key).await {
            tracing::warn!(%error, breaker = key, "cannot hand the probe back");
        }
    }
    let address = ready?;
    let outcome = match (&channels.telegram, &channels.mailer, d.channel) {
        (Ok(telegram), _, Channel::Telegram) => {
            let chat_id = d.chat_id.unwrap_or_default();
            match telegram.send_message(&ctx, chat_id, &rendered.text).await {
                Ok(sent) => telegram_outcome(&ctx, &d, chat_id, sent).await,
                // Nothing went out (the request could not be built).
                Err(e) => Outcome::end(S::Failed, format!("not sent: {e}")).neutral(),
            }
        }
        (_, Ok(mailer), Channel::Email) => {
            // Within the attempt's time, whatever the relay does with each command.
            let budget = ctx.remaining().saturating_sub(Duration::from_secs(2));
            let mailed = tokio::time::timeout(
                budget,
                mailer.send(&ctx, id, &address, &rendered.subject, &rendered.text),
            )
            .await
            .unwrap_or_else(|_| Mailed::Later {
                message: format!("the relay did not finish within {} s", budget.as_secs()),
                quota: false,
            });
            email_outcome(&ctx, &d, mailer, &address, mailed).await
        }
        _ => unreachable!("a disabled channel was settled above"),
    };
    let transient = matches!(outcome.result, Err(JobError::Transient { .. }));
    // Out of attempts with a notice still not sent: failed, not left waiting.
    let outcome = if outcome.to == S::Queued && transient && ctx.attempt >= ctx.max_attempts {
        let reason = format!(
            "not sent after {} attempts: {}",
            ctx.attempt,
            outcome.reason.clone().unwrap_or_default()
        );
        Outcome {
            health: outcome.health,
            ..Outcome::end(S::Failed, reason)
        }
    } else {
        outcome
    };
    // What the provider said is written first: nothing after the send may leave the notice
    // `sending` (a successor would take it for a send that may have happened).
    let reason = outcome.reason.as_deref().and_then(|r| clean_text(r, 1000));
    record(&ctx, id, &outcome, reason.as_deref()).await?;
    let counted = match outcome.health {
        Health::Up if d.breaker_clean => Ok(()),
        Health::Up => channels.breaker.success(ctx.db(), key).await.map(|_| ()),
        Health::Down => channels.breaker.failure(ctx.db(), key).await.map(|_| ()),
        // A throttled probe decided nothing: hand it back.
        Health::Throttled if admission == Admission::Probe => {
            channels.breaker.release_probe(ctx.db(), key).await
        }
        Health::Throttled => Ok(()),
    };
    if let Err(error) = counted {
        // The notice is recorded; a missed count only delays the breaker.
        tracing::warn!(%error, breaker = key, "cannot update the circuit breaker");
    }
    tracing::info!(notification.id = %id, channel = key, state = %outcome.to, "notification delivered");
    outcome
        .result
        .map(|()| report(id, outcome.to, outcome.message_id, reason))
}

/// Takes the channel's rate-limit slots and commits `sending`; the address the notice goes to.
///
/// Telegram: the bot's slot, then the chat's, each only if free now (else the job snoozes for
/// its turn): a slot taken now is used now, so the spacing PostgreSQL grants is the spacing
/// Telegram sees, and a 429's hold on the bot stops every send that starts after it. A busy
/// chat wastes one bot slot (1/27 s of the bot's time); the other order was measured worse:
/// with a queue, nearly every attempt finds the bot busy, and each wasted the chat's slot,
/// pushing that chat 2 s back again and again (300 reminders took 74 s instead of 20). E-mail: the hour's slot, then the day's (the tighter first: with the
/// defaults the day's is then always free), waiting up to 2 s for each.
async fn ready_to_send(ctx: &JobContext, d: &Delivery, resend: bool) -> Result<String, JobError> {
    let address = match d.channel {
        Channel::Telegram => {
            let chat_id = d.chat_id.unwrap_or_default();
            ctx.acquire("telegram", Duration::ZERO).await?;
            ctx.acquire(&format!("telegram:chat:{chat_id}"), Duration::ZERO)
                .await?;
            chat_id.to_string()
        }
        Channel::Email => {
            ctx.acquire("email", SLOT_WAIT).await?;
            ctx.acquire("email:day", SLOT_WAIT).await?;
            // Sent again: to the address it went to, under the same Message-ID.
            match (resend, &d.address) {
                (true, Some(a)) => a.clone(),
                _ => d.email.clone().unwrap_or_default(),
            }
        }
    };
    begin(ctx, d, &address, resend).await?;
    Ok(address)
}

/// Commits `queued → sending` (`sending` again for an e-mail resend) in one statement fenced
/// on the lease, unless a person cancelled the job meanwhile (then `skipped`, not sent).
async fn begin(
    ctx: &JobContext,
    d: &Delivery,
    address: &str,
    resend: bool,
) -> Result<(), JobError> {
    let from = if resend { S::Sending } else { S::Queued };
    match outbox::start_sending(ctx.db(), d.id, from, address, &ctx.id, ctx.lease).await? {
        Begun::Sending => Ok(()),
        Begun::LeaseLost => Err(JobError::LeaseLost),
        Begun::CancelRequested => {
            let reason = "cancelled by a person before sending: not sent";
            settle(ctx, d.id, from, S::Skipped, reason).await?;
            Err(JobError::Cancelled)
        }
        Begun::Moved => Err(JobError::transient("the notice changed under the job")),
    }
}

/// Writes what the provider answered, retrying a failed write (a pool timeout, a dropped
/// connection) until the attempt's time is nearly up: a notice left `sending` would be taken
/// by the next attempt for a send that may have happened.
async fn record(
    ctx: &JobContext,
    id: Uuid,
    outcome: &Outcome,
    reason: Option<&str>,
) -> Result<(), JobError> {
    let mut pause = Duration::from_millis(50);
    loop {
        match outbox::record_sent(
            ctx.db(),
            id,
            outcome.to,
            outcome.message_id.as_deref(),
            reason,
        )
        .await
        {
            Ok(true) => return Ok(()),
            Ok(false) => {
                // Decided meanwhile (a successor took the job over and found it `sending`):
                // what the provider said is logged, not lost silently.
                tracing::warn!(notification.id = %id, state = %outcome.to,
                    message_id = ?outcome.message_id,
                    "the notice was no longer sending: outcome not recorded");
                return Ok(());
            }
            Err(error) if ctx.remaining() > pause + Duration::from_secs(1) => {
                tracing::warn!(%error, notification.id = %id, message_id = ?outcome.message_id,
                    "cannot record the outcome yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(error) => {
                tracing::error!(%error, notification.id = %id, state = %outcome.to,
                    message_id = ?outcome.message_id, "the outcome could not be recorded");
                return Err(error.into());
            }
        }
    }
}

/// A write that follows a provider's answer and must not keep the notice from being recorded:
/// its failure is logged (the notice's own outcome is written next).
async fn noted<E: std::fmt::Display>(
    write: impl std::future::Future<Output = Result<(), E>>,
    what: &str,
) {
    // Bounded: the notice's own outcome is written next and must not wait behind this.
    match tokio::time::timeout(Duration::from_secs(2), write).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "cannot record the {what}"),
        Err(_) => tracing::warn!("recording the {what} took over 2 s: skipped"),
    }
}

/// What Telegram's answer means for the notice (called after the send: its own writes are
/// [`noted`], never failing the run before the outcome is recorded).
async fn telegram_outcome(ctx: &JobContext, d: &Delivery, chat_id: i64, sent: Sent) -> Outcome {
    match sent {
        Sent::Delivered { message_id } => Outcome::sent(message_id.to_string()),
        Sent::Blocked { description } => {
            if let Some(client) = d.client_id {
                noted(
                    outbox::mark_chat_blocked(ctx.db(), client, chat_id),
                    "blocked chat",
                )
                .await;
            }
            Outcome::end(
                S::Skipped,
                format!("the client blocked the bot: {description}"),
            )
        }
        Sent::Migrated { to } => {
            if let Some(client) = d.client_id {
                noted(
                    outbox::migrate_chat(ctx.db(), client, chat_id, to),
                    "migrated chat",
                )
                .await;
            }
            let reason = format!("the chat moved to {to}: sent there next");
            Outcome::again(
                reason.clone(),
                // An attempt each (a snooze would loop for ever if the move was not recorded).
                JobError::transient(reason),
                Health::Up,
            )
        }
        Sent::Refused { description } => {
            Outcome::end(S::Failed, format!("Telegram refused: {description}"))
        }
        // The bot's token is wrong or revoked: no message can go out; the notice waits.
        Sent::BotRefused { description } => Outcome::again(
            description.clone(),
            JobError::transient(format!("Telegram refused the bot: {description}")),
            Health::Down,
        ),
        Sent::NotSent {
            message,
            retry_after: Some(wait),
        } => {
            // 429 holds the whole bot, not one chat: every replica waits.
            noted(ctx.limiter().hold("telegram", wait), "bot hold").await;
            Outcome::again(
                message.clone(),
                JobError::snooze(format!("Telegram: {message}"), wait),
                Health::Throttled,
            )
        }
        Sent::NotSent {
            message,
            retry_after: None,
        } => Outcome::again(
            message.clone(),
            JobError::transient(format!("Telegram did not take the message: {message}")),
            Health::Down,
        ),
        Sent::Unknown { message } => Outcome::end(
            S::Failed,
            format!(
                "Telegram did not confirm the message ({message}): it may have been \
                 delivered — not sent again"
            ),
        )
        .down(),
    }
}

/// What the relay's answer means for the notice (its own writes are [`noted`]).
async fn email_outcome(
    ctx: &JobContext,
    d: &Delivery,
    mailer: &Mailer,
    address: &str,
    mailed: Mailed,
) -> Outcome {
    match mailed {
        Mailed::Accepted => Outcome::sent(mailer.message_id(d.id)),
        Mailed::Rejected {
            message,
            mailbox_bad,
        } => {
            if mailbox_bad {
                if let Some(client) = d.client_id {
                    noted(
                        outbox::mark_email_bad(ctx.db(), client, address, &message),
                        "refused mailbox",
                    )
                    .await;
                }
            }
            Outcome::end(S::Failed, format!("the mail relay refused: {message}"))
        }
        Mailed::Later {
            message,
            quota: true,
        } => Outcome::again(
            message.clone(),
            // An attempt each (with the backoff, up to 30 min apart): a recipient's "over
            // quota" read as the relay's cannot wait for ever.
            JobError::transient(format!("the mail relay's quota: {message}")),
            Health::Throttled,
        ),
        Mailed::Later {
            message,
            quota: false,
        } => Outcome::again(
            message.clone(),
            JobError::transient(format!(
                "the mail relay did not take the message: {message}"
            )),
            Health::Down,
        ),
    }
}

pub async fn broadcast(job: Broadcast, ctx: JobContext) -> Result<BroadcastReport, JobError> {
    let recipients = outbox::broadcast_recipients(ctx.db(), job.group_id, job.lesson_id).await?;
    let notices: Vec<NewNotice> = recipients
        .iter()
        .flat_map(|&client| {
            let ctx = &ctx;
            let text = &job.text;
            job.channels.iter().map(move |&channel| NewNotice {
                recipient: Recipient::Client(client),
                channel: Some(channel),
                template: Template::Broadcast,
                params: serde_json::json!({"text": text}),
                dedup_key: format!("broadcast:{}:{client}:{channel}", ctx.id),
                not_after: None,
            })
        })
        .collect();
    let mut tx = ctx.db().begin().await?;
    ctx.fence(&mut tx).await?;
    let enqueued = notify(&mut tx, &requester(&ctx), &notices).await?;
    tx.commit().await?;
    jobs::committed(&enqueued);
    tracing::info!(
        recipients = recipients.len(),
        notifications = enqueued.len(),
        "broadcast queued"
    );
    Ok(BroadcastReport {
        recipients: recipients.len(),
        notifications: enqueued.len(),
    })
}

/// The delivery jobs a job creates belong to whoever asked for it.
fn requester(ctx: &JobContext) -> Requester {
    Requester {
        user_id: ctx.requested_by,
        request_id: Some(ctx.id.clone()),
    }
}

/// Most reminders created by one run (the next run, ten minutes on, takes the rest).
const REMINDERS_PER_RUN: i64 = 20_000;

pub async fn reminders(
    _job: LessonReminders,
    ctx: JobContext,
) -> Result<RemindersReport, JobError> {
    let notices = outbox::due_reminders(ctx.db(), REMINDERS_PER_RUN).await?;
    let mut tx = ctx.db().begin().await?;
    ctx.fence(&mut tx).await?;
    let enqueued = notify(&mut tx, &requester(&ctx), &notices).await?;
    tx.commit().await?;
    jobs::committed(&enqueued);
    tracing::info!(created = enqueued.len(), "lesson reminders queued");
    Ok(RemindersReport {
        created: enqueued.len(),
    })
}
