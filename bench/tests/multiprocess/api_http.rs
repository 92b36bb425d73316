//! The api process under SIGTERM with open event streams, and its internal metrics address.
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::support::*;

#[sqlx::test(migrations = false)]
async fn sigterm_with_open_event_streams_exits_within_the_shutdown_timeout(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut api = ApiProc::start_with(
        &url,
        &[
            ("SHUTDOWN_TIMEOUT_SECS", "3"),
            ("METRICS_ADDR", &metrics_addr),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    // No worker: the export stays queued and its streams stay open.
    let month = shared::time::Month::of(shared::time::today()).to_string();
    let accepted: Value = http
        .post(format!("{}/api/exports/timesheets", api.base))
        .bearer_auth(&api.token)
        .json(&json!({ "month": month }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = accepted["job_id"].as_str().unwrap().to_string();
    let events = format!("{}/api/jobs/{id}/events", api.base);
    let mut streams = Vec::new();
    for _ in 0..5 {
        let res = http
            .get(&events)
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let mut body = res.bytes_stream();
        let first = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&first).contains("queued"));
        streams.push(body);
    }
    let sixth = http
        .get(&events)
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(sixth.status(), 429);

    // Metrics on the internal address only.
    let metrics = http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("sse_streams_open 5"), "{text}");
    let public = http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);

    let started = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &api.child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(
        Duration::from_secs(3) + Duration::from_millis(1500),
        api.child.wait(),
    )
    .await
    .expect("the api did not exit within its shutdown timeout")
    .unwrap();
    let took = started.elapsed();
    assert!(exit.success(), "{exit}");
    // The streams end at once instead of holding the shutdown to its limit.
    assert!(took < Duration::from_secs(3), "exited after {took:?}");
    for mut s in streams {
        let end = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = s.next().await {}
        })
        .await;
        assert!(end.is_ok(), "a stream stayed open after shutdown");
    }
    let log = std::fs::read_to_string(&api.log).unwrap();
    assert!(log.contains("all connections closed"), "{log}");
}
