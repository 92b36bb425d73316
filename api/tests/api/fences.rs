//! Every write of a run is fenced on its lease: once the job is taken over (its worker
//! declared lost, the job re-queued and claimed by another run), the old run's progress,
//! cancel checks, artifact, effect fence and outcome all refuse — deterministically, here,
//! by taking the lease over in the database.
use std::time::Duration;

use jobs::{
    engine,
    ledger::{self, Completion, Outcome},
    JobContext, JobError, Requester,
};
use sqlx::PgPool;

use crate::support::*;

#[sqlx::test(migrations = false)]
async fn a_run_whose_lease_was_taken_over_can_write_nothing(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let job = jobs::enqueue_alone(&db, &Requester::system(), &Steps::new(1, 1))
        .await
        .unwrap();
    engine::register_worker(&db, "fence-test", &["test_steps"])
        .await
        .unwrap();
    let worker = engine::worker_name("fence-test", "test_steps");
    let claimed = ledger::claim_one(&db, &worker, "test_steps", &job.job_id)
        .await
        .unwrap()
        .unwrap();
    let ctx = JobContext::new(
        claimed.id.clone(),
        "test_steps",
        1,
        5,
        None,
        None,
        claimed.lease,
        Duration::from_secs(60),
        db.clone(),
    );
    // While it holds the lease, everything works.
    ctx.progress(10, "working").await.unwrap();
    ctx.check_cancelled().await.unwrap();
    ctx.store_artifact("a.txt", "text/plain", b"first".to_vec())
        .await
        .unwrap();
    let mut tx = db.begin().await.unwrap();
    ctx.fence(&mut tx).await.unwrap();
    tx.rollback().await.unwrap();

    // Taken over: the job was re-queued and claimed by another run with a new lease.
    sqlx::query("update job_runs set lease = gen_random_uuid() where id = $1")
        .bind(&claimed.id)
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("update apalis.jobs set lease = gen_random_uuid() where id = $1")
        .bind(&claimed.id)
        .execute(&db)
        .await
        .unwrap();
    let lost = |r: Result<(), JobError>| assert!(matches!(r, Err(JobError::LeaseLost)), "{r:?}");
    lost(ctx.progress(50, "zombie").await);
    lost(ctx.check_cancelled().await);
    lost(ctx.check_lease().await);
    lost(
        ctx.store_artifact("a.txt", "text/plain", b"zombie".to_vec())
            .await,
    );
    let mut tx = db.begin().await.unwrap();
    lost(ctx.fence(&mut tx).await);
    tx.rollback().await.unwrap();
    let recorded = ledger::complete(
        &db,
        &[Completion {
            id: claimed.id.clone(),
            lease: claimed.lease,
            outcome: Outcome::Succeeded(serde_json::json!({"zombie": true})),
        }],
    )
    .await
    .unwrap();
    assert!(recorded.is_empty(), "the zombie's outcome was recorded");

    let (state, message, bytes): (String, Option<String>, Vec<u8>) = sqlx::query_as(
        "select r.state, r.progress_message, a.bytes
         from job_runs r join artifacts a on a.job_id = r.id where r.id = $1",
    )
    .bind(&claimed.id)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(state, "running");
    assert_eq!(message.as_deref(), Some("working"));
    assert_eq!(bytes, b"first");
}
