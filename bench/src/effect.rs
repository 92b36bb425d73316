//! `test_effect`: a job whose external effect goes through the idempotency path the provider
//! calls of the integrations use — the key committed (under the lease's fence) before the
//! call, a run that finds the key of an earlier attempt never calling again — against a
//! simulated provider (`CHAOS_PROVIDER_URL`, served by `artsvao-bench chaos`) that records every
//! call it receives and every execution of the job.
use std::{sync::OnceLock, time::Duration};

use jobs::{Job, JobContext, JobError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The table of effect keys the chaos run creates.
pub const TABLE: &str = "create table if not exists chaos_effects (
    job_id text primary key,
    state  text not null,            -- calling | done
    at     timestamptz not null default now())";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Effect {
    pub n: u64,
}

impl Job for Effect {
    const KIND: &'static str = "test_effect";
    const TIMEOUT: Duration = Duration::from_secs(30);
    const MAX_ATTEMPTS: u32 = 20;
    const BACKOFF_BASE: Duration = Duration::from_millis(200);
    const BACKOFF_CAP: Duration = Duration::from_secs(2);
}

fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default()
    })
}

pub async fn perform(job: Effect, ctx: JobContext) -> Result<Value, JobError> {
    let provider = std::env::var("CHAOS_PROVIDER_URL")
        .map_err(|_| JobError::permanent("CHAOS_PROVIDER_URL is not set"))?;
    let pid = std::process::id();
    // Every execution, recorded outside PostgreSQL (it survives the database's restarts).
    http()
        .post(format!("{provider}/executions"))
        .json(&json!({"job": ctx.id, "attempt": ctx.attempt, "pid": pid}))
        .send()
        .await
        .map_err(|e| JobError::transient(format!("provider: {e}")))?;

    // The key, committed before the call, by the run that holds the lease.
    let mut tx = ctx.db().begin().await?;
    ctx.fence(&mut tx).await?;
    let state: Option<String> =
        sqlx::query_scalar("select state from chaos_effects where job_id = $1 for update")
            .bind(&ctx.id)
            .fetch_optional(&mut *tx)
            .await?;
    match state.as_deref() {
        Some("done") => return Ok(json!({"effect": "done before", "n": job.n})),
        // An earlier attempt committed the key and may have called: never call again.
        Some(_) => return Ok(json!({"effect": "unknown", "n": job.n})),
        None => {}
    }
    sqlx::query("insert into chaos_effects (job_id, state) values ($1, 'calling')")
        .bind(&ctx.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;

    // The key is ours; a run that lost its lease since (paused right here) must not call.
    ctx.check_lease().await?;
    let sent = http()
        .post(format!("{provider}/calls"))
        .json(&json!({"key": ctx.id, "pid": pid}))
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => {
            let mut tx = ctx.db().begin().await?;
            ctx.fence(&mut tx).await?;
            sqlx::query("update chaos_effects set state = 'done' where job_id = $1")
                .bind(&ctx.id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(json!({"effect": "called", "n": job.n}))
        }
        // Refused before anything was sent: safe to try again, so the key goes.
        Err(e) if e.is_connect() => {
            let mut tx = ctx.db().begin().await?;
            ctx.fence(&mut tx).await?;
            sqlx::query("delete from chaos_effects where job_id = $1 and state = 'calling'")
                .bind(&ctx.id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Err(JobError::transient(format!("provider refused: {e}")))
        }
        // Sent, answer unknown: the call may have happened; it is never repeated.
        other => Ok(json!({
            "effect": "unknown",
            "n": job.n,
            "error": other.map(|r| r.status().to_string()).unwrap_or_else(|e| e.to_string()),
        })),
    }
}
