//! Job kinds used only by the queue benchmark and the multi-process tests, and the registry
//! that the `artsvao-testworker` binary runs: the production worker runtime and kinds plus these.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// Enqueued by the `test_tick` cron schedule (off unless `WORKER_CRON` sets it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tick {}

impl Job for Tick {
    const KIND: &'static str = "test_tick";
    const TIMEOUT: Duration = Duration::from_secs(10);
}

/// Production kinds and schedules plus the test kinds; `test_tick` schedule off by default.
pub fn registry() -> Registry {
    Registry::production(jobs::maintenance::DEFAULT_RETENTION_DAYS)
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
        .register::<Tick, _, _, _>(1, |_job, _ctx: JobContext| async move {
            Ok::<Value, JobError>(json!({ "pid": std::process::id() }))
        })
        .schedule("test_tick", "off", Tick {})
}
