//! The worker's own health and metrics endpoint.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use worker::{Registry, Runtime, RuntimeConfig};

#[derive(Serialize, Deserialize)]
struct Unhandled;
impl jobs::Job for Unhandled {
    const KIND: &'static str = "test_unhandled";
    const TIMEOUT: Duration = Duration::from_secs(1);
}

#[sqlx::test(migrations = false)]
async fn the_worker_reports_liveness_readiness_and_queue_metrics(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let mut tx = db.begin().await.unwrap();
    jobs::enqueue(&mut tx, &jobs::Requester::system(), &Unhandled)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let runtime = Runtime::new(
        db.clone(),
        db.clone(),
        Registry::new(),
        RuntimeConfig::default(),
    );
    let health = runtime.health();
    let stop = CancellationToken::new();
    let run = tokio::spawn(runtime.run(stop.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let http = tokio::spawn(worker::serve_health(
        listener,
        db.clone(),
        health,
        stop.clone(),
    ));
    shared::metrics::handle();

    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{base}/api/health/liveness"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while client
        .get(format!("{base}/api/health/readiness"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "worker never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("jobs_queued{kind=\"test_unhandled\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("jobs_oldest_queued_age_seconds{kind=\"test_unhandled\"}"),
        "{metrics}"
    );

    stop.cancel();
    run.await.unwrap();
    http.await.unwrap();
}
