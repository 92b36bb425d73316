//! PostgreSQL stopped for 5 s while jobs run, on a private cluster started by the test: no job
//! is lost, the workers resume unaided and log little meanwhile, api readiness says 503 (with
//! `Retry-After`, within its timeout) during the outage.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::support::*;
use bench::Sleep;
use clap::Parser;
use jobs::Job;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5_second_database_outage_loses_no_job_and_the_workers_resume_by_themselves() {
    shared::telemetry::init_for_tests();
    let cluster = PrivateCluster::start();
    let url = cluster.url("artsvao");
    let env = [("WORKER_CONCURRENCY", "test_sleep=4")];
    // The workers create the database and migrate it.
    let (a, b) = tokio::join!(
        WorkerProc::start(&url, "replica-a", free_port(), &env),
        WorkerProc::start(&url, "replica-b", free_port(), &env),
    );

    // The real api, in process, with a 2 s acquire timeout.
    let config = api::ApiConfig::parse_from([
        "artsvao-api",
        "--database-url",
        &url,
        "--jwt-secret",
        "outage-test-secret-long-enough-for-hs256-0123456789",
        "--db-acquire-timeout-secs",
        "2",
    ]);
    let api_db = shared::db::connect(&config.db, "artsvao-api")
        .await
        .unwrap();
    let state = api::state(&config, api_db).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_base = format!("http://{}", listener.local_addr().unwrap());
    let stop_api = CancellationToken::new();
    tokio::spawn(api::serve(listener, state, stop_api.clone()));
    let http = reqwest::Client::new();
    let ready = |base: String| {
        let http = http.clone();
        async move {
            let t = Instant::now();
            let r = http
                .get(format!("{base}/api/health/readiness"))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers().get("retry-after").is_some(),
                t.elapsed(),
            )
        }
    };
    assert_eq!(ready(api_base.clone()).await.0, 200);
    let admin_db = sqlx::PgPool::connect(&url).await.unwrap();
    api::auth::upsert_user(
        &admin_db,
        "ops@artsvao.test",
        "correct horse battery",
        api::auth::Role::Manager,
    )
    .await
    .unwrap();
    admin_db.close().await;
    let login: serde_json::Value = http
        .post(format!("{api_base}/api/auth/login"))
        .json(
            &serde_json::json!({"email": "ops@artsvao.test", "password": "correct horse battery"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_string();

    let db = sqlx::PgPool::connect(&url).await.unwrap();
    enqueue(&db, &vec![Sleep { ms: 500 }; 60]).await;
    wait_for("jobs running on both", Duration::from_secs(10), || async {
        (count(&db, Sleep::KIND, "succeeded").await >= 8).then_some(())
    })
    .await;
    db.close().await;

    let lines_before = (a.log_lines(), b.log_lines());
    cluster.stop_server();
    let outage = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, retry_after, took) = ready(api_base.clone()).await;
    assert_eq!(status, 503, "api readiness during the outage");
    assert!(retry_after, "503 carries Retry-After");
    assert!(
        took < Duration::from_secs(4),
        "readiness answered in {took:?}"
    );
    // An ordinary endpoint: 503 + Retry-After in the JSON error shape, within the 2 s acquire
    // timeout (plus slack), never a hang.
    let t = Instant::now();
    let res = http
        .get(format!("{api_base}/api/jobs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let took = t.elapsed();
    assert_eq!(res.status().as_u16(), 503);
    assert!(res.headers().get("retry-after").is_some());
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(
        took < Duration::from_secs(4),
        "GET /api/jobs answered in {took:?}"
    );
    for w in [&a, &b] {
        let (status, _, took) = ready(format!("http://{}", w.addr)).await;
        assert_eq!(status, 503, "worker readiness during the outage");
        assert!(
            took < Duration::from_secs(4),
            "worker readiness answered in {took:?}"
        );
    }
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(outage.elapsed())).await;
    let lines_during = (
        a.log_lines() - lines_before.0,
        b.log_lines() - lines_before.1,
    );
    cluster.start_server();

    let db = sqlx::PgPool::connect(&url).await.unwrap();
    wait_for(
        "every job succeeded after the outage",
        Duration::from_secs(60),
        || async { (count(&db, Sleep::KIND, "succeeded").await == 60).then_some(()) },
    )
    .await;
    assert_eq!(ready(api_base.clone()).await.0, 200, "api ready again");
    for w in [&a, &b] {
        assert_eq!(ready(format!("http://{}", w.addr)).await.0, 200);
    }
    let lost: i64 = sqlx::query_scalar("select count(*) from job_runs where state <> 'succeeded'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(lost, 0);
    assert!(
        lines_during.0 < 50 && lines_during.1 < 50,
        "worker log lines during the outage: {lines_during:?}\n{}",
        a.log_text()
    );
    stop_api.cancel();
    db.close().await;
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_binaries_wait_for_a_database_that_is_not_up_yet() {
    shared::telemetry::init_for_tests();
    let cluster = PrivateCluster::start();
    cluster.stop_server();
    let url = cluster.url("artsvao");
    let mut worker = WorkerProc::launch(&url, "replica-early", free_port(), &[]);
    let config = api::ApiConfig::parse_from([
        "artsvao-api",
        "--database-url",
        &url,
        "--jwt-secret",
        "outage-test-secret-long-enough-for-hs256-0123456789",
    ]);
    let api = tokio::spawn(async move { api::connect_and_migrate(&config.db).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!api.is_finished(), "the api gave up instead of retrying");
    cluster.start_server();
    let pool = tokio::time::timeout(Duration::from_secs(40), api)
        .await
        .expect("the api connected once the database was up")
        .unwrap()
        .expect("connect_and_migrate");
    worker.wait_ready().await;
    assert!(
        worker
            .log_text()
            .contains("database not reachable yet; retrying"),
        "{}",
        worker.log_text()
    );
    let one: i32 = sqlx::query_scalar("select 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
    pool.close().await;
    drop(worker);
}
