//! The runtime ready for external effects, in process: one bad outcome fails one job (never a
//! batch), a cancel racing a claim never deadlocks, and waiting for a rate limit snoozes the
//! job instead of burning attempts.
use std::time::Duration;

use jobs::{Job, JobContext, JobError, Limiter, Rate};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::PgPool;
use worker::Registry;

use crate::support::*;

/// Returns its text as the result.
#[derive(Serialize, Deserialize)]
struct Echo {
    text: String,
}
impl Job for Echo {
    const KIND: &'static str = "test_echo";
    const TIMEOUT: Duration = Duration::from_secs(10);
}

#[sqlx::test(migrations = false)]
async fn one_result_the_database_refuses_fails_that_job_alone_and_the_batch_succeeds(db: PgPool) {
    let mut app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (user, token) = app.user("manager").await;
    // All queued before the worker starts, so they finish together and share outcome batches.
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(
            app.enqueue(
                user,
                Echo {
                    text: format!("fine {i}"),
                },
            )
            .await,
        );
    }
    let bad = app
        .enqueue(
            user,
            Echo {
                text: "nul \u{0000} inside".into(),
            },
        )
        .await;
    // All 51 finish together, so their outcomes reach the completer as one batch.
    let together = std::sync::Arc::new(tokio::sync::Barrier::new(51));
    app.start_worker(
        Registry::new().register(60, move |job: Echo, _ctx: JobContext| {
            let together = together.clone();
            async move {
                together.wait().await;
                Ok::<Value, JobError>(json!({ "text": job.text }))
            }
        }),
    );
    let started = std::time::Instant::now();
    for id in &ids {
        let done = app.wait_terminal(&token, id, Duration::from_secs(10)).await;
        assert_eq!(done["state"], "succeeded", "{done}");
        assert_eq!(done["attempts"], 1, "{done}");
    }
    let failed = app
        .wait_terminal(&token, &bad, Duration::from_secs(10))
        .await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.starts_with("the job's outcome could not be stored"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // The bad outcome came in a batch with good ones, which was split to find it.
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counter = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(
        counter("jobs_outcome_batches_split_total") >= 1.0,
        "{metrics}"
    );
    assert_eq!(counter("jobs_outcomes_refused_total"), 1.0, "{metrics}");
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn cancelling_while_a_worker_claims_never_deadlocks(db: PgPool) {
    let calls = Calls::default();
    let app = TestApp::spawn(db.clone(), test_registry(&calls)).await;
    let (user, token) = app.user("manager").await;
    let deadlocks = || async {
        sqlx::query_scalar::<_, i64>(
            "select deadlocks from pg_stat_database where datname = current_database()",
        )
        .fetch_one(&db)
        .await
        .unwrap()
    };
    let deadlocks_before = deadlocks().await;
    let mut ids = Vec::new();
    for _ in 0..500 {
        // The insert's NOTIFY wakes the worker: its claim races this cancel.
        let id = app.enqueue(user, Steps::new(1, 0)).await;
        let res = app
            .post(&token, &format!("/api/jobs/{id}/cancel"), json!({}))
            .await;
        let status = res.status();
        assert!(
            status == StatusCode::OK || status == StatusCode::ACCEPTED,
            "cancel answered {status}: {}",
            res.text().await.unwrap()
        );
        ids.push(id);
    }
    let mut cancelled = 0;
    for id in &ids {
        let done = app.wait_terminal(&token, id, Duration::from_secs(20)).await;
        match done["state"].as_str() {
            Some("cancelled") => cancelled += 1,
            Some("succeeded") => {}
            other => panic!("{id} ended {other:?}: {done}"),
        }
    }
    assert!(cancelled > 0, "no cancel won a race");
    // Neither side was chosen as a deadlock victim (the worker would retry silently).
    sqlx::query("select pg_stat_force_next_flush()")
        .execute(&db)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(deadlocks().await, deadlocks_before, "deadlocks happened");
    app.stop().await;
}

/// Takes a slot of the `test:pace` limit, waiting at most what its timeout allows.
#[derive(Serialize, Deserialize)]
struct Paced {}
impl Job for Paced {
    const KIND: &'static str = "test_paced";
    const TIMEOUT: Duration = Duration::from_secs(5);
    const MAX_ATTEMPTS: u32 = 3;
}

#[sqlx::test(migrations = false)]
async fn jobs_waiting_for_a_rate_limit_snooze_and_burn_no_attempt(db: PgPool) {
    let mut app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (user, token) = app.user("manager").await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(app.enqueue(user, Paced {}).await);
    }
    // 6 a minute: a slot every 10 s, far beyond the 5 s timeout of a job that would sleep.
    let limiter =
        Limiter::new(db.clone()).with_limit("test:pace", Rate::new(6, Duration::from_secs(60), 1));
    let registry = Registry::new().register(10, |_: Paced, ctx: JobContext| async move {
        let permit = ctx.acquire("test:pace", Duration::from_secs(60)).await?;
        Ok::<Value, JobError>(json!({ "slot_us": permit.slot.timestamp_micros() }))
    });
    app.start_worker_with_limiter(registry, limiter);
    let mut slots = Vec::new();
    for id in &ids {
        let done = app
            .wait_terminal(&token, id, Duration::from_secs(150))
            .await;
        assert_eq!(done["state"], "succeeded", "{done}");
        assert_eq!(done["attempts"], 1, "a wait burnt an attempt: {done}");
        slots.push(done["result"]["slot_us"].as_i64().unwrap());
    }
    slots.sort_unstable();
    for pair in slots.windows(2) {
        let gap = Duration::from_micros((pair[1] - pair[0]) as u64);
        assert!(gap >= Duration::from_millis(9_990), "slots {gap:?} apart");
    }
    let snoozes: i64 =
        sqlx::query_scalar("select sum(snoozes)::bigint from job_runs where kind = 'test_paced'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(snoozes >= 9, "{snoozes} snoozes");
    app.stop().await;
}
