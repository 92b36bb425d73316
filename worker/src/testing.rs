//! Running one handler in-process against a database, without a worker runtime (in the manner
//! of Oban's `perform_job`): the job is enqueued and claimed for real, so its ledger row,
//! progress and artifact behave as in production, and its outcome is recorded.
use jobs::{
    engine,
    ledger::{self, Completion, Outcome},
    Job, JobContext, JobError, Requester,
};
use serde_json::Value;
use sqlx::PgPool;

use crate::Registry;

/// Enqueues `job`, runs the handler `registry` has for its kind once (attempt 1, no timeout),
/// records the outcome in the ledger and returns the job id with the handler's result.
/// Panics if the kind is not registered or the job cannot be claimed (another due job of the
/// kind does not interfere: the claim is by id).
pub async fn perform<J: Job>(
    db: &PgPool,
    registry: &Registry,
    job: &J,
) -> (String, Result<Value, JobError>) {
    let registered = registry
        .kinds
        .iter()
        .find(|k| k.spec.kind == J::KIND)
        .unwrap_or_else(|| panic!("{} is not registered", J::KIND))
        .clone();
    let enqueued = jobs::enqueue_alone(db, &Requester::system(), job)
        .await
        .unwrap_or_else(|e| panic!("enqueue {}: {e}", J::KIND));
    let process = format!("perform:{}", ulid::Ulid::generate());
    engine::register_worker(db, &process, &[J::KIND])
        .await
        .unwrap_or_else(|e| panic!("register: {e}"));
    let worker = engine::worker_name(&process, J::KIND);
    let claimed = ledger::claim_one(db, &worker, J::KIND, &enqueued.job_id)
        .await
        .unwrap_or_else(|e| panic!("claim: {e}"))
        .unwrap_or_else(|| panic!("job {} could not be claimed", enqueued.job_id));
    let ctx = JobContext::new(
        claimed.id.clone(),
        J::KIND,
        claimed.attempt as u32,
        claimed.max_attempts as u32,
        claimed.requested_by,
        claimed.request_id.clone(),
        claimed.lease,
        J::TIMEOUT,
        db.clone(),
    );
    let result = (registered.handler)(claimed.payload, ctx).await;
    let outcome = match &result {
        Ok(v) => Outcome::Succeeded(v.clone()),
        Err(JobError::Cancelled) => Outcome::Cancelled,
        Err(JobError::Snooze { reason, delay }) => Outcome::Snoozed {
            reason: reason.clone(),
            delay: *delay,
        },
        Err(e) => Outcome::Failed(e.to_string()),
    };
    ledger::complete(
        db,
        &[Completion {
            id: claimed.id.clone(),
            lease: claimed.lease,
            outcome,
        }],
    )
    .await
    .unwrap_or_else(|e| panic!("recording the outcome: {e}"));
    (claimed.id, result)
}
