//! The one way to create a job: a ledger row plus an engine row, inside the caller's
//! transaction, with a fresh ULID. A rolled-back transaction leaves neither.
use sqlx::PgConnection;
use ulid::Ulid;
use uuid::Uuid;

use crate::{engine, ledger, Job};

/// Who asked for the work: recorded in the ledger (job ownership) and logged with the job.
#[derive(Debug, Clone, Default)]
pub struct Requester {
    pub user_id: Option<Uuid>,
    pub request_id: Option<String>,
}

impl Requester {
    /// Work nobody asked for in a request (cron ticks).
    pub fn system() -> Self {
        Self::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub job_id: String,
    pub kind: &'static str,
    /// True when a queued or running job with the same dedup key was returned instead.
    pub deduplicated: bool,
}

/// Counts jobs in `jobs_enqueued_total` once their transaction committed (a rolled-back
/// enqueue created nothing, so it is not counted). Call after `commit`.
pub fn committed(enqueued: &[Enqueued]) {
    for e in enqueued.iter().filter(|e| !e.deduplicated) {
        metrics::counter!("jobs_enqueued_total", "kind" => e.kind).increment(1);
    }
}

/// Enqueues one job in a transaction of its own (ledger and engine rows together) and counts
/// it after the commit: for work that needs no rows of its own.
pub async fn enqueue_alone<J: Job>(
    pool: &sqlx::PgPool,
    requester: &Requester,
    job: &J,
) -> Result<Enqueued, EnqueueError> {
    let mut tx = pool.begin().await?;
    let enqueued = enqueue(&mut tx, requester, job).await?;
    tx.commit().await?;
    committed(std::slice::from_ref(&enqueued));
    Ok(enqueued)
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("cannot encode job payload: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("queue engine: {0}")]
    Engine(String),
}

/// Enqueues one job in the caller's transaction (`&mut *tx`); call [`committed`] after the
/// commit.
pub async fn enqueue<J: Job>(
    conn: &mut PgConnection,
    requester: &Requester,
    job: &J,
) -> Result<Enqueued, EnqueueError> {
    let mut out = enqueue_many(conn, requester, std::slice::from_ref(job)).await?;
    out.pop()
        .ok_or_else(|| EnqueueError::Engine("enqueue returned no job".into()))
}

/// Enqueues many jobs of one kind with two statements (ledger, engine), in input order, in the
/// caller's transaction; call [`committed`] after the commit.
pub async fn enqueue_many<J: Job>(
    conn: &mut PgConnection,
    requester: &Requester,
    jobs: &[J],
) -> Result<Vec<Enqueued>, EnqueueError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = jobs.iter().map(|_| Ulid::generate().to_string()).collect();
    let keys: Vec<Option<String>> = jobs.iter().map(Job::dedup_key).collect();
    let payloads = jobs
        .iter()
        .map(serde_json::to_vec)
        .collect::<Result<Vec<_>, _>>()?;

    let inserted = ledger::insert(conn, J::KIND, J::MAX_ATTEMPTS, requester, &ids, &keys).await?;
    let all_new = inserted.len() == ids.len();
    let mut existing_by_key = std::collections::HashMap::new();
    if !all_new {
        let wanted: Vec<String> = keys.iter().flatten().cloned().collect();
        let rows = ledger::open_by_dedup_key(conn, J::KIND, &wanted).await?;
        existing_by_key.extend(rows);
    }
    let inserted: std::collections::HashSet<String> = inserted.into_iter().collect();

    let mut to_push = Vec::with_capacity(inserted.len());
    let mut out = Vec::with_capacity(ids.len());
    for ((id, key), payload) in ids.into_iter().zip(keys).zip(payloads) {
        if inserted.contains(&id) {
            to_push.push((id.clone(), payload));
            out.push(Enqueued {
                job_id: id,
                kind: J::KIND,
                deduplicated: false,
            });
        } else {
            let existing = key
                .and_then(|k| existing_by_key.get(&k).cloned())
                .ok_or_else(|| EnqueueError::Engine("deduplicated job not found".into()))?;
            out.push(Enqueued {
                job_id: existing,
                kind: J::KIND,
                deduplicated: true,
            });
        }
    }
    engine::push(conn, J::KIND, J::MAX_ATTEMPTS, to_push).await?;
    Ok(out)
}
