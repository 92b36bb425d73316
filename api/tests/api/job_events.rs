//! Server-Sent Events of a job's state and progress.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use futures::StreamExt;
use serde_json::Value;
use sqlx::PgPool;

#[sqlx::test(migrations = false)]
async fn a_subscriber_sees_queued_running_progress_succeeded_then_the_stream_ends(db: PgPool) {
    let calls = Calls::default();
    let app = TestApp::spawn(db, test_registry(&calls)).await;
    let (user, token) = app.user("manager").await;
    let id = app.enqueue(user, Steps::new(2, 150)).await;

    let res = app.get(&token, &format!("/api/jobs/{id}/events")).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = String::new();
    let mut stream = res.bytes_stream();
    // The stream must end by itself after the terminal state.
    tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(chunk) = stream.next().await {
            body.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    })
    .await
    .expect("the SSE stream did not end after the job finished");

    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let seen: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["state"].as_str().unwrap(),
                e["progress"]["percent"]
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            "queued:0",
            "running:0",
            "running:50",
            "running:100",
            "succeeded:100"
        ],
        "{body}"
    );
    assert_eq!(events[2]["progress"]["message"], "step 1 of 2");
    assert!(body.contains("event: job"));
    app.stop().await;
}
