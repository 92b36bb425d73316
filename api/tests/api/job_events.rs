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

/// The status JSON's links carry a signature that stands in for the bearer header (a browser's
/// `EventSource` and download links cannot send one): for that job, for 10 minutes, nothing
/// else. A reconnecting stream resumes after its `Last-Event-ID`.
#[sqlx::test(migrations = false)]
async fn signed_links_open_one_jobs_events_and_file_until_they_expire(db: PgPool) {
    let registry = worker::Registry::production(30, &worker::clients::Integrations::none());
    let app = TestApp::spawn(db, registry).await;
    let (user, token) = app.user("manager").await;
    // Two timesheet exports (empty months still give a file).
    let mut ids = Vec::new();
    let month = last_month();
    let before = shared::time::Month::of(month.first_day() - chrono::Days::new(1));
    for month in [before.to_string(), month.to_string()] {
        let res = app
            .post(
                &token,
                "/api/exports/timesheets",
                serde_json::json!({"month": month}),
            )
            .await;
        assert_eq!(res.status(), 202);
        let body: Value = res.json().await.unwrap();
        ids.push(body["job_id"].as_str().unwrap().to_string());
    }
    let (id, other) = (ids[0].clone(), ids[1].clone());
    let done = app
        .wait_terminal(&token, &id, Duration::from_secs(15))
        .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    app.wait_terminal(&token, &other, Duration::from_secs(15))
        .await;

    let events_url = done["events_url"].as_str().unwrap().to_string();
    let artifact_url = done["artifact_url"].as_str().unwrap().to_string();
    assert!(events_url.contains("?sig="), "{events_url}");
    let anonymous = |path: String| {
        let http = app.http.clone();
        let base = app.base.clone();
        async move { http.get(format!("{base}{path}")).send().await.unwrap() }
    };
    // The file, with no header at all.
    let res = anonymous(artifact_url.clone()).await;
    assert_eq!(res.status(), 200);
    let with_header = app.get(&token, &format!("/api/jobs/{id}/artifact")).await;
    let (a, b) = (
        res.bytes().await.unwrap(),
        with_header.bytes().await.unwrap(),
    );
    assert!(!a.is_empty());
    assert_eq!(a, b);
    // The stream, with no header: the job's events, ending after the terminal one.
    let res = anonymous(events_url.clone()).await;
    assert_eq!(res.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(10), res.text())
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<i64> = body
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(ids.len() >= 3, "{body}");
    // Resumed after the second event: only the later ones, and it ends.
    let resumed = app
        .http
        .get(format!("{}{events_url}", app.base))
        .header("Last-Event-ID", ids[1].to_string())
        .send()
        .await
        .unwrap();
    let body = tokio::time::timeout(Duration::from_secs(10), resumed.text())
        .await
        .unwrap()
        .unwrap();
    let later: Vec<i64> = body
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(later, ids[2..].to_vec(), "{body}");

    // Another job's path with this signature: 401. Nothing but the two routes takes it.
    let sig = events_url.split("?sig=").nth(1).unwrap().to_string();
    for path in [
        format!("/api/jobs/{other}/events?sig={sig}"),
        format!("/api/jobs/{other}/artifact?sig={sig}"),
        format!("/api/jobs/{id}?sig={sig}"),
    ] {
        assert_eq!(anonymous(path.clone()).await.status(), 401, "{path}");
    }
    let res = app
        .http
        .get(format!("{}/api/jobs/{id}", app.base))
        .bearer_auth(&sig)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "a link is not an access token");
    // Expired (signed with the same secret a second ago): 401; an access token as a link: 401.
    let tokens = api::auth::Tokens::new(SECRET.as_bytes(), 3600);
    let expired = tokens
        .sign_link_until(&id, user, 0, chrono::Utc::now().timestamp() - 1)
        .unwrap();
    let res = anonymous(format!("/api/jobs/{id}/artifact?sig={expired}")).await;
    assert_eq!(res.status(), 401);
    let res = anonymous(format!("/api/jobs/{id}/artifact?sig={token}")).await;
    assert_eq!(res.status(), 401);
    let fresh = tokens
        .sign_link_until(&id, user, 0, chrono::Utc::now().timestamp() + 600)
        .unwrap();
    let res = anonymous(format!("/api/jobs/{id}/artifact?sig={fresh}")).await;
    assert_eq!(res.status(), 200);
    app.stop().await;
}
