//! Click-to-call with real processes (`artsvao-fakes` as Novofon, worker replicas, the
//! `artsvao-api` binary): concurrent calls each dialled once, a Novofon that takes the call
//! and never answers (also with the worker SIGKILLed mid-call), throttling, a request that
//! waited too long, and a refusal in Novofon's words.
#![allow(clippy::unwrap_used)]

use std::{collections::HashSet, time::Duration};

use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::*;

const FAST: [(&str, &str); 2] = [
    ("WORKER_HEARTBEAT_MS", "1000"),
    ("WORKER_DEAD_AFTER_MS", "5000"),
];

/// `n` clients with phones `+7916000000{i}`.
async fn clients(db: &PgPool, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id: Uuid = sqlx::query_scalar(
            "insert into clients (last_name, first_name, phone) values ($1, 'Анна', $2)
             returning id",
        )
        .bind(format!("Звонкова{i}"))
        .bind(format!("+7916{:07}", 1000 + i))
        .fetch_one(db)
        .await
        .unwrap();
        ids.push(id);
    }
    ids
}

/// `POST /api/calls` for `client`: (call id, job id).
async fn call(api: &ApiProc, client: Uuid) -> (Uuid, String) {
    let res = reqwest::Client::new()
        .post(format!("{}/api/calls", api.base))
        .bearer_auth(&api.token)
        .json(&json!({"client_id": client}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    (
        body["call_id"].as_str().unwrap().parse().unwrap(),
        body["job_id"].as_str().unwrap().to_string(),
    )
}

async fn call_row(api: &ApiProc, id: Uuid) -> Value {
    reqwest::Client::new()
        .get(format!("{}/api/calls/{id}", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The `start.employee_call` requests the fake received.
async fn dials(fakes: &FakesProc) -> Vec<Value> {
    fakes
        .requests("novofon")
        .await
        .into_iter()
        .filter(|r| r["body"]["method"] == "start.employee_call")
        .collect()
}

#[sqlx::test(migrations = false)]
async fn ten_concurrent_calls_ring_ten_times_each_with_its_own_external_id(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let fakes = FakesProc::start(&[]).await;
    let api = ApiProc::start(&url).await;
    let clients = clients(&db, 10).await;
    let env = fakes.worker_env();
    let (a, b) = tokio::join!(
        worker_with(&url, "replica-a", &env, &[]),
        worker_with(&url, "replica-b", &env, &[]),
    );
    let calls: Vec<(Uuid, String)> =
        futures::future::join_all(clients.iter().map(|c| call(&api, *c))).await;
    for (_, job) in &calls {
        let (state, attempts, result, error, _) = job_done(&db, job, Duration::from_secs(30)).await;
        assert_eq!(state, "succeeded", "{error:?}");
        assert_eq!(attempts, 1);
        assert!(result.unwrap()["call_session_id"].is_i64());
    }
    for (id, _) in &calls {
        let row = call_row(&api, *id).await;
        assert_eq!(row["state"], "placed", "{row}");
        assert!(row["provider_call_id"].is_i64(), "{row}");
    }
    let dials = dials(&fakes).await;
    assert_eq!(dials.len(), 10);
    let external: HashSet<String> = dials
        .iter()
        .map(|d| {
            d["body"]["params"]["external_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let expected: HashSet<String> = calls.iter().map(|(id, _)| id.to_string()).collect();
    assert_eq!(external, expected);
    for d in &dials {
        assert_eq!(d["body"]["params"]["employee"]["phone_number"], "101");
        assert_eq!(d["status"], 200);
    }
    drop((a, b));
}

#[sqlx::test(migrations = false)]
async fn a_call_novofon_takes_without_answering_is_unknown_and_never_dialled_again(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let fakes = FakesProc::start(&[]).await;
    let api = ApiProc::start(&url).await;
    let clients = clients(&db, 2).await;
    fakes
        .fault(json!({"service": "novofon", "fault": "timeout_after_receive"}))
        .await;
    let mut extra = FAST.to_vec();
    extra.push(("NOVOFON_TIMEOUT_MS", "1500"));
    let mut worker = worker_with(&url, "replica-a", &fakes.worker_env(), &extra).await;

    // 1. The answer never comes: the attempt times out, the call is unknown, not retried.
    let (first, job) = call(&api, clients[0]).await;
    let (state, attempts, _, error, _) = job_done(&db, &job, Duration::from_secs(30)).await;
    assert_eq!(state, "failed");
    assert_eq!(attempts, 1, "a call that may have rung is never retried");
    assert!(
        error
            .as_deref()
            .unwrap_or("")
            .contains("may have been placed"),
        "{error:?}"
    );
    let row = call_row(&api, first).await;
    assert_eq!(row["state"], "unknown", "{row}");

    // 2. The worker is SIGKILLed while Novofon holds the call; its successor takes the job
    //    over and records `unknown` instead of dialling again.
    fakes.reset().await;
    fakes
        .fault(json!({"service": "novofon", "fault": "timeout_after_receive"}))
        .await;
    worker.kill().await;
    let mut slow = FAST.to_vec();
    slow.push(("NOVOFON_TIMEOUT_MS", "60000"));
    let mut worker = worker_with(&url, "replica-a", &fakes.worker_env(), &slow).await;
    let (second, job) = call(&api, clients[1]).await;
    wait_for(
        "Novofon received the call",
        Duration::from_secs(20),
        || async { (!dials(&fakes).await.is_empty()).then_some(()) },
    )
    .await;
    worker.kill().await;
    let _successor = worker.restart_same().await;
    let (state, attempts, _, error, _) = job_done(&db, &job, Duration::from_secs(40)).await;
    assert_eq!(state, "failed");
    assert_eq!(attempts, 2, "taken over after the kill");
    assert!(
        error.as_deref().unwrap_or("").contains("may have placed"),
        "{error:?}"
    );
    let row = call_row(&api, second).await;
    assert_eq!(row["state"], "unknown", "{row}");
    let dials = dials(&fakes).await;
    assert_eq!(dials.len(), 1, "dialled once: {dials:?}");
    assert_eq!(
        dials[0]["body"]["params"]["external_id"],
        second.to_string()
    );
}

#[sqlx::test(migrations = false)]
async fn a_throttled_call_waits_and_is_placed_without_using_an_attempt(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let fakes = FakesProc::start(&[]).await;
    let api = ApiProc::start(&url).await;
    let clients = clients(&db, 1).await;
    // HTTP 429 with Novofon's `limit_exceeded` and Retry-After: 2.
    fakes
        .fault(
            json!({"service": "novofon", "fault": "status", "status": 429,
                      "retry_after_s": 2, "times": 1}),
        )
        .await;
    let _worker = worker_with(&url, "replica-a", &fakes.worker_env(), &[]).await;
    let (id, job) = call(&api, clients[0]).await;
    let (state, attempts, _, error, snoozes) = job_done(&db, &job, Duration::from_secs(30)).await;
    assert_eq!(state, "succeeded", "{error:?}");
    assert_eq!(attempts, 1);
    assert_eq!(snoozes, 1);
    assert_eq!(call_row(&api, id).await["state"], "placed");
    let dials = dials(&fakes).await;
    assert_eq!(dials.len(), 2);
    assert_eq!(dials[0]["status"], 429);
    assert_eq!(dials[1]["status"], 200);
    let at = |r: &Value| {
        r["at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    assert!(at(&dials[1]) - at(&dials[0]) >= chrono::Duration::seconds(2));
}

#[sqlx::test(migrations = false)]
async fn a_call_too_late_to_ring_is_cancelled_and_a_refused_one_fails_in_novofons_words(
    db: PgPool,
) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let fakes = FakesProc::start(&[]).await;
    let api = ApiProc::start(&url).await;
    let clients = clients(&db, 2).await;
    // No worker runs: the request waits; three minutes pass (the row is aged).
    let (late, late_job) = call(&api, clients[0]).await;
    sqlx::query("update call_requests set created_at = now() - interval '3 minutes' where id = $1")
        .bind(late)
        .execute(&db)
        .await
        .unwrap();
    // A caller whose extension Novofon does not know (the fake's 999).
    sqlx::query("update users set extension = '999' where extension = '101'")
        .execute(&db)
        .await
        .unwrap();
    let (refused, refused_job) = call(&api, clients[1]).await;
    let _worker = worker_with(&url, "replica-a", &fakes.worker_env(), &[]).await;

    let (state, _, _, error, _) = job_done(&db, &late_job, Duration::from_secs(30)).await;
    assert_eq!(state, "failed");
    assert!(error.unwrap().contains("too late to ring"));
    let row = call_row(&api, late).await;
    assert_eq!(row["state"], "cancelled", "{row}");

    let (state, attempts, _, error, _) = job_done(&db, &refused_job, Duration::from_secs(30)).await;
    assert_eq!(state, "failed");
    assert_eq!(attempts, 1);
    assert!(error.unwrap().contains("employee_not_found"));
    let row = call_row(&api, refused).await;
    assert_eq!(row["state"], "failed", "{row}");
    assert!(
        row["error"]
            .as_str()
            .unwrap()
            .contains("employee_not_found"),
        "{row}"
    );

    // Only the refused call reached Novofon.
    let dials = dials(&fakes).await;
    assert_eq!(dials.len(), 1);
    assert_eq!(
        dials[0]["body"]["params"]["external_id"],
        refused.to_string()
    );
}
