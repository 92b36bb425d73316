//! Job kinds used only by the benchmarks, the multi-process tests and the chaos run, and the
//! registry that the `artsvao-testworker` binary runs: the production worker runtime and kinds
//! plus these.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub mod cluster;
pub mod effect;

pub use effect::Effect;

use jobs::{Job, JobContext, JobError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::Registry;

/// Microseconds since the Unix epoch (wall clock, comparable across local processes).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

/// Does nothing but report when its handler started.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Noop {}

impl Job for Noop {
    const KIND: &'static str = "test_noop";
    const TIMEOUT: Duration = Duration::from_secs(30);
}

/// Sleeps `ms` milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sleep {
    pub ms: u64,
}

impl Job for Sleep {
    const KIND: &'static str = "test_sleep";
    const TIMEOUT: Duration = Duration::from_secs(60);
}

/// Takes one slot of the global rate limiter under `key`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Limited {
    pub key: String,
}

impl Job for Limited {
    const KIND: &'static str = "test_limited";
    const TIMEOUT: Duration = Duration::from_secs(60);
}

/// Sleeps `ms`, then stores an artifact naming its process: a run that lost its lease meanwhile
/// must not be able to store it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ArtifactAfter {
    pub ms: u64,
}

impl Job for ArtifactAfter {
    const KIND: &'static str = "test_artifact_after";
    const TIMEOUT: Duration = Duration::from_secs(60);
}

/// Enqueued by the `test_tick` cron schedule (off unless `WORKER_CRON` sets it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tick {}

impl Job for Tick {
    const KIND: &'static str = "test_tick";
    const TIMEOUT: Duration = Duration::from_secs(10);
}

/// [`registry`] with the default configuration (no provider configured), for in-process tests.
pub fn default_registry() -> Registry {
    use clap::Parser;
    registry(&worker::WorkerConfig::parse_from(["artsvao-testworker"]))
}

/// Production kinds and schedules (with the providers `config` names) plus the test kinds;
/// `test_tick` schedule off by default.
pub fn registry(config: &worker::WorkerConfig) -> Registry {
    let integrations = worker::clients::Integrations::from_config(&config.integrations);
    Registry::production(config.retention_days, &integrations)
        .register::<Noop, _, _, _>(200, |_job, _ctx: JobContext| async move {
            Ok::<Value, JobError>(json!({ "started_us": now_us() }))
        })
        .register::<Sleep, _, _, _>(4, |job: Sleep, _ctx: JobContext| async move {
            let started_us = now_us();
            tokio::time::sleep(Duration::from_millis(job.ms)).await;
            Ok::<Value, JobError>(json!({ "started_us": started_us, "pid": std::process::id() }))
        })
        .register::<Limited, _, _, _>(20, |job: Limited, ctx: JobContext| async move {
            let permit = ctx.limiter().acquire(&job.key).await?;
            Ok::<Value, JobError>(json!({
                "slot_us": permit.slot.timestamp_micros(),
                "acquired_us": now_us(),
                "waited_ms": permit.waited.as_millis() as u64,
                "pid": std::process::id(),
            }))
        })
        .register::<ArtifactAfter, _, _, _>(4, |job: ArtifactAfter, ctx: JobContext| async move {
            tokio::time::sleep(Duration::from_millis(job.ms)).await;
            let pid = std::process::id();
            ctx.store_artifact("owner.txt", "text/plain", format!("pid {pid}").into_bytes())
                .await?;
            Ok::<Value, JobError>(json!({ "pid": pid }))
        })
        .register::<Effect, _, _, _>(8, effect::perform)
        .register::<Tick, _, _, _>(1, |_job, _ctx: JobContext| async move {
            Ok::<Value, JobError>(json!({ "pid": std::process::id() }))
        })
        .schedule("test_tick", "off", Tick {})
}

/// `n` study groups for scheduling benchmarks and tests, each with its own room and teacher
/// and `members` active members; returns `(group, room, teacher)` ids.
pub async fn plan_groups(
    db: &sqlx::PgPool,
    n: i32,
    members: i32,
) -> Result<Vec<(uuid::Uuid, uuid::Uuid, uuid::Uuid)>, sqlx::Error> {
    sqlx::query_as(
        "with r as (
             insert into rooms (name, capacity)
             select 'Зал ' || i, 40 from generate_series(1, $1) i returning id, name
         ), t as (
             insert into teachers (full_name)
             select 'Преподаватель ' || i from generate_series(1, $1) i returning id, full_name
         ), pairs as (
             select r.id as room_id, t.id as teacher_id
             from (select id, row_number() over (order by name) n from r) r
             join (select id, row_number() over (order by full_name) n from t) t using (n)
         ), g as (
             insert into study_groups (name, teacher_id, room_id, capacity)
             select 'Группа ' || teacher_id, teacher_id, room_id, 40 from pairs
             returning id, room_id, teacher_id
         ), c as (
             insert into clients (last_name, first_name)
             select 'Ученик', g.id::text || '/' || k from g, generate_series(1, $2) k
             returning id, first_name
         ), m as (
             insert into group_members (group_id, client_id, status)
             select split_part(c.first_name, '/', 1)::uuid, c.id, 'active' from c
         )
         select id, room_id, teacher_id from g",
    )
    .bind(n)
    .bind(members)
    .fetch_all(db)
    .await
}
