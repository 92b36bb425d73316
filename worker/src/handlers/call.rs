//! `call`: dials one click-to-call request through Novofon — at most once, whatever happens.
//!
//! 1. The request is read: already decided → its outcome again; found `dialling` (an earlier
//!    attempt marked it and never recorded the end) → `unknown`, never a second dial; older
//!    than [`Call::TOO_LATE`] → `cancelled`.
//! 2. The run's lease is checked and the global `novofon` rate-limit slot taken (or the job
//!    snoozes, still `queued`).
//! 3. `queued` → `dialling` is committed (fenced on the lease) — only then is Novofon asked,
//!    with the request id as `external_id`.
//! 4. The answer: placed; refused before anything rang → `failed` with Novofon's words; not
//!    taken (a connection never made, 429, `limit_exceeded`) → back to `queued` and retried or
//!    snoozed; anything after which the phone may be ringing (a timeout after sending, a 5xx,
//!    an unreadable answer) → `unknown`, never retried.
//!
//! The job succeeds when the call is placed and fails with the reason otherwise (the call
//! request keeps its state for the caller's screen and the client's history).
use std::sync::Arc;

use jobs::{
    kinds::calls::{Call, CallReport},
    JobContext, JobError,
};
use shared::domain::calls::{self, CallState, Found};

use crate::{
    clients::{
        clean_text, disabled,
        novofon::{Dialled, Novofon},
        Integrations,
    },
    Registry,
};

/// Calls in flight per worker process (a call holds its slot for one JSON-RPC request).
pub const CONCURRENCY: usize = 8;

pub fn register(registry: Registry, integrations: &Integrations) -> Registry {
    let novofon = integrations.novofon.clone();
    registry.register::<Call, _, _, _>(CONCURRENCY, move |job, ctx| {
        let novofon = novofon.clone();
        async move {
            match novofon {
                Ok(n) => dial(job, ctx, n).await,
                Err(why) => {
                    let message = format!("Novofon is disabled: {why}");
                    settle(&ctx, &job, CallState::Queued, CallState::Failed, &message).await?;
                    Err(disabled("Novofon", &why))
                }
            }
        }
    })
}

const UNKNOWN_AFTER_CRASH: &str = "the previous attempt may have placed the call (it stopped \
    after asking Novofon): not dialled again — check with the client before calling back";

/// Moves the request from `from` to `to` with a reason, fenced on the lease; the job's error.
async fn settle(
    ctx: &JobContext,
    job: &Call,
    from: CallState,
    to: CallState,
    reason: &str,
) -> Result<(), JobError> {
    let mut tx = ctx.db().begin().await?;
    ctx.fence(&mut tx).await?;
    let moved = calls::finish(&mut tx, job.call_id, from, to, None, Some(reason)).await?;
    tx.commit().await?;
    if moved {
        tracing::info!(call.id = %job.call_id, state = %to, %reason, "call request settled");
    }
    Ok(())
}

pub async fn dial(
    job: Call,
    ctx: JobContext,
    novofon: Arc<Novofon>,
) -> Result<CallReport, JobError> {
    let (number, extension, age) = match calls::find(ctx.db(), job.call_id).await? {
        Found::Queued {
            number,
            extension,
            age,
        } => (number, extension, age),
        Found::Dialling => {
            settle(
                &ctx,
                &job,
                CallState::Dialling,
                CallState::Unknown,
                UNKNOWN_AFTER_CRASH,
            )
            .await?;
            return Err(JobError::permanent(UNKNOWN_AFTER_CRASH));
        }
        Found::Done(CallState::Placed) => {
            let call = calls::get(ctx.db(), job.call_id).await?;
            return Ok(CallReport {
                call_id: job.call_id,
                state: call.state.to_string(),
                call_session_id: call.provider_call_id,
            });
        }
        Found::Done(state) => {
            let call = calls::get(ctx.db(), job.call_id).await?;
            return Err(JobError::permanent(format!(
                "the call is {state}: {}",
                call.error.unwrap_or_default()
            )));
        }
    };
    if age > Call::TOO_LATE {
        let reason = format!(
            "too late to ring: asked {} s ago (more than {} s): not dialled",
            age.as_secs(),
            Call::TOO_LATE.as_secs()
        );
        settle(&ctx, &job, CallState::Queued, CallState::Cancelled, &reason).await?;
        return Err(JobError::permanent(reason));
    }

    // Lease and rate-limit slot first: a snooze here leaves the request `queued`.
    novofon.prepare(&ctx).await?;
    let mut tx = ctx.db().begin().await?;
    // Cancelled by a person while waiting for the slot: not dialled. (Read under the fence's
    // lock on the job's row, on this transaction's connection: after any cancel that came
    // first, and without waiting for a second pool connection.)
    if ctx.fence_reading_cancel(&mut tx).await? {
        let reason = "cancelled by a person before dialling: not dialled";
        calls::finish(
            &mut tx,
            job.call_id,
            CallState::Queued,
            CallState::Cancelled,
            None,
            Some(reason),
        )
        .await?;
        tx.commit().await?;
        return Err(JobError::Cancelled);
    }
    if !calls::start_dialling(&mut tx, job.call_id).await? {
        // Decided meanwhile (cannot happen while this run holds the lease): look again.
        tx.rollback().await?;
        return Err(JobError::transient(
            "the call request changed under the job",
        ));
    }
    tx.commit().await?;

    let external_id = job.call_id.to_string();
    let dialled = novofon
        .employee_call(&ctx, &external_id, &extension, &number)
        .await;
    let (to, session, reason, outcome) = match dialled {
        Ok(Dialled::Placed { call_session_id }) => (
            CallState::Placed,
            Some(call_session_id),
            None,
            Ok(CallReport {
                call_id: job.call_id,
                state: CallState::Placed.to_string(),
                call_session_id: Some(call_session_id),
            }),
        ),
        Ok(Dialled::Refused { message }) => {
            let reason = format!("Novofon refused the call: {message}");
            (
                CallState::Failed,
                None,
                Some(reason.clone()),
                Err(JobError::permanent(reason)),
            )
        }
        Ok(Dialled::NotTaken {
            message,
            retry_after,
        }) => {
            // Nothing rang: back in the queue, dialled on the next attempt.
            let error = match retry_after {
                Some(wait) => JobError::snooze(format!("Novofon: {message}"), wait),
                None => JobError::transient(format!("Novofon did not take the call: {message}")),
            };
            (CallState::Queued, None, Some(message), Err(error))
        }
        Ok(Dialled::Unknown { message }) => {
            let reason = format!(
                "Novofon did not confirm the call ({message}): it may have been placed — not \
                 dialled again; check with the client before calling back"
            );
            (
                CallState::Unknown,
                None,
                Some(reason.clone()),
                Err(JobError::permanent(reason)),
            )
        }
        // The request could not even be built: nothing was sent.
        Err(e) => {
            let reason = format!("the call could not be sent: {e}");
            (
                CallState::Failed,
                None,
                Some(reason.clone()),
                Err(JobError::permanent(reason)),
            )
        }
    };
    // Out of attempts with a call nobody took: failed, not left waiting.
    let (to, outcome) = match (to, outcome) {
        (CallState::Queued, Err(JobError::Transient { message, .. }))
            if ctx.attempt >= ctx.max_attempts =>
        {
            let reason = format!("Novofon could not be reached: {message}");
            (CallState::Failed, Err(JobError::permanent(reason)))
        }
        other => other,
    };
    // Not fenced: once Novofon answered, what it said is the truth whoever holds the lease now
    // (a successor that found `dialling` first has written `unknown`; only one write moves the
    // request out of `dialling`).
    let reason = reason.and_then(|r| clean_text(&r, 1000));
    let mut conn = ctx.db().acquire().await?;
    calls::finish(
        &mut conn,
        job.call_id,
        CallState::Dialling,
        to,
        session,
        reason.as_deref(),
    )
    .await?;
    drop(conn);
    tracing::info!(call.id = %job.call_id, state = %to, call_session_id = ?session, "call request dialled");
    outcome
}
