//! Fault rules: after_n/times counters, latency, hang, drop, timeout_after_receive, reset.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::novofon::employee_call;
use crate::support::{Fakes, NOVOFON_TOKEN};

async fn call(fakes: &Fakes, timeout: Duration) -> Result<Value, reqwest::Error> {
    let body = employee_call(NOVOFON_TOKEN, "79261234567", "101", "x");
    let response = fakes
        .http
        .post(fakes.url("/novofon/v4.0"))
        .timeout(timeout)
        .json(&body)
        .send()
        .await?;
    response.json().await
}

fn session(answer: &Value) -> u64 {
    answer["result"]["data"]["call_session_id"]
        .as_u64()
        .expect("a call session id")
}

#[tokio::test]
async fn after_n_lets_requests_through_then_times_bounds_the_hits() {
    let fakes = Fakes::start(&[]).await;
    let fault = fakes
        .fault(
            json!({"service": "telegram", "path_prefix": "/getMe", "fault": "status",
                      "status": 500, "after_n": 1, "times": 2}),
        )
        .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, _) = Fakes::answer(
            fakes
                .http
                .get(fakes.telegram("getMe"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 500, 500, 200]);
    let (_, listed) = fakes.get("/_fakes/faults", None).await;
    assert_eq!(listed["items"][0]["id"], fault["id"]);
    assert_eq!(listed["items"][0]["hits"], 2);

    let (_, other) = Fakes::answer(
        fakes
            .http
            .get(fakes.telegram("getWebhookInfo"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(other["ok"], true, "path_prefix limits the fault to getMe");
}

#[tokio::test]
async fn latency_delays_the_real_answer() {
    let fakes = Fakes::start(&[]).await;
    fakes
        .fault(json!({"service": "novofon", "fault": "latency", "latency_ms": 300}))
        .await;
    let started = Instant::now();
    let answer = call(&fakes, Duration::from_secs(5)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(answer["result"].is_object());
}

#[tokio::test]
async fn hang_never_answers_and_does_not_do_the_work() {
    let fakes = Fakes::start(&[]).await;
    let before = session(&call(&fakes, Duration::from_secs(5)).await.unwrap());
    fakes
        .fault(json!({"service": "novofon", "fault": "hang", "times": 1}))
        .await;
    let error = call(&fakes, Duration::from_millis(300)).await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    let after = session(&call(&fakes, Duration::from_secs(5)).await.unwrap());
    assert_eq!(after, before + 1, "the hung request placed no call");

    let log = fakes.requests("novofon").await;
    assert_eq!(log.len(), 3);
    assert_eq!(log[1]["status"], Value::Null);
    assert_eq!(log[1]["fault"], "hang");
}

#[tokio::test]
async fn drop_closes_the_connection_without_an_answer() {
    let fakes = Fakes::start(&[]).await;
    fakes
        .fault(json!({"service": "telegram", "fault": "drop", "times": 1}))
        .await;
    let started = Instant::now();
    let error = fakes
        .http
        .get(fakes.telegram("getMe"))
        .send()
        .await
        .unwrap_err();
    assert!(!error.is_timeout(), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let log = fakes.requests("telegram").await;
    assert_eq!(
        (log[0]["status"].clone(), log[0]["fault"].clone()),
        (Value::Null, json!("drop"))
    );
}

#[tokio::test]
async fn timeout_after_receive_does_the_work_but_never_answers() {
    let fakes = Fakes::start(&[]).await;
    let before = session(&call(&fakes, Duration::from_secs(5)).await.unwrap());
    fakes
        .fault(json!({"service": "novofon", "fault": "timeout_after_receive", "times": 1}))
        .await;
    let error = call(&fakes, Duration::from_millis(300)).await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    let after = session(&call(&fakes, Duration::from_secs(5)).await.unwrap());
    assert_eq!(after, before + 2, "the unanswered request placed a call");

    let log = fakes.requests("novofon").await;
    assert_eq!(log[1]["fault"], "timeout_after_receive");
    assert_eq!(log[1]["status"], Value::Null);
}

#[tokio::test]
async fn reset_clears_faults_and_the_log_and_bad_faults_are_refused() {
    let fakes = Fakes::start(&[]).await;
    let (status, body) = fakes
        .post(
            "/_fakes/faults",
            &json!({"service": "pyrus", "fault": "status"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["error"]["fields"]["status"].is_string(), "{body}");

    fakes
        .fault(json!({"service": "novofon", "fault": "status", "status": 503}))
        .await;
    let (_, answer) = fakes
        .post(
            "/novofon/v4.0",
            &employee_call(NOVOFON_TOKEN, "79261234567", "101", "x"),
        )
        .await;
    assert_eq!(answer["error"]["code"], -32603);
    assert_eq!(fakes.requests("novofon").await.len(), 1);

    let (status, _) = fakes.post("/_fakes/reset", &json!({})).await;
    assert_eq!(status, 204);
    assert!(fakes.requests("novofon").await.is_empty());
    let (_, faults) = fakes.get("/_fakes/faults", None).await;
    assert_eq!(faults["items"], json!([]));
    let answer = call(&fakes, Duration::from_secs(5)).await.unwrap();
    assert!(answer["result"].is_object());
}
