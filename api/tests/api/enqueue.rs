//! The enqueue path: transactional, deduplicated, batched, listed.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use jobs::Requester;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;

#[derive(Serialize, Deserialize)]
struct Keyed {
    key: String,
}
impl jobs::Job for Keyed {
    const KIND: &'static str = "test_keyed";
    const TIMEOUT: Duration = Duration::from_secs(1);
    fn dedup_key(&self) -> Option<String> {
        Some(self.key.clone())
    }
}

async fn count(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn enqueue_inside_a_rolled_back_transaction_leaves_no_job_and_no_ledger_row(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let mut tx = app.db.begin().await.unwrap();
    let out = jobs::enqueue(&mut tx, &Requester::system(), &Steps::new(1, 1))
        .await
        .unwrap();
    assert_eq!(count_in(&mut tx, &out.job_id).await, (1, 1));
    tx.rollback().await.unwrap();

    assert_eq!(count(&app.db, "select count(*) from job_runs").await, 0);
    assert_eq!(count(&app.db, "select count(*) from apalis.jobs").await, 0);
    app.stop().await;
}

async fn count_in(tx: &mut sqlx::PgConnection, id: &str) -> (i64, i64) {
    let ledger: i64 = sqlx::query_scalar("select count(*) from job_runs where id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let engine: i64 = sqlx::query_scalar("select count(*) from apalis.jobs where id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    (ledger, engine)
}

#[sqlx::test(migrations = false)]
async fn the_same_dedup_key_while_pending_returns_the_existing_job(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let mut tx = app.db.begin().await.unwrap();
    let jobs = [
        Keyed { key: "a".into() },
        Keyed { key: "b".into() },
        Keyed { key: "a".into() },
    ];
    let out = jobs::enqueue_many(&mut tx, &Requester::system(), &jobs)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(out.len(), 3);
    assert!(!out[0].deduplicated && !out[1].deduplicated && out[2].deduplicated);
    assert_eq!(out[0].job_id, out[2].job_id);
    assert_ne!(out[0].job_id, out[1].job_id);

    let mut tx = app.db.begin().await.unwrap();
    let again = jobs::enqueue(&mut tx, &Requester::system(), &Keyed { key: "b".into() })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(again.job_id, out[1].job_id);
    assert!(again.deduplicated);
    assert_eq!(count(&app.db, "select count(*) from job_runs").await, 2);
    assert_eq!(count(&app.db, "select count(*) from apalis.jobs").await, 2);
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn a_users_jobs_are_listed_newest_first_with_filters_and_a_total(db: PgPool) {
    let calls = Calls::default();
    let app = TestApp::spawn(db, test_registry(&calls)).await;
    let (user, token) = app.user("manager").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.enqueue(user, Steps::new(1, 1)).await);
    }
    let broken = app.enqueue(user, Broken).await;
    app.wait_terminal(&token, &broken, Duration::from_secs(10))
        .await;
    for id in &ids {
        app.wait_terminal(&token, id, Duration::from_secs(10)).await;
    }

    let page: Value = app
        .get(&token, "/api/jobs?limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 4);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["items"][0]["id"], broken.as_str());
    let failed: Value = app
        .get(&token, "/api/jobs?state=failed")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(failed["total"], 1);
    let steps: Value = app
        .get(&token, "/api/jobs?kind=test_steps&offset=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(steps["total"], 3);
    assert_eq!(steps["items"].as_array().unwrap().len(), 1);
    let beyond: Value = app
        .get(&token, "/api/jobs?offset=100")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(beyond["total"], 4);
    assert_eq!(beyond["items"].as_array().unwrap().len(), 0);
    let item = &page["items"][1];
    for key in [
        "id",
        "kind",
        "state",
        "attempts",
        "max_attempts",
        "progress",
        "result",
        "error",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
        "status_url",
        "artifact_url",
    ] {
        assert!(item.get(key).is_some(), "{key} missing in {item}");
    }
    assert_eq!(
        item["status_url"],
        format!("/api/jobs/{}", item["id"].as_str().unwrap())
    );
    assert!(item["artifact_url"].is_null());
    app.stop().await;
}
