//! Test helpers of the job contract, in the manner of Oban's `assert_enqueued` and River's
//! `RequireInserted`: what a request or a handler enqueued, decoded as its payload type.
use sqlx::PgPool;

use crate::{engine, Job};

/// The jobs of kind `J` waiting in the queue (not yet claimed, or waiting for a retry), oldest
/// first, with their ids.
pub async fn enqueued<J: Job>(db: &PgPool) -> Vec<(String, J)> {
    let rows = engine::queued_payloads(db, J::KIND)
        .await
        .unwrap_or_else(|e| panic!("reading the {} queue: {e}", J::KIND));
    rows.into_iter()
        .map(|(id, payload)| {
            let job = serde_json::from_slice(&payload)
                .unwrap_or_else(|e| panic!("a {} payload that does not decode: {e}", J::KIND));
            (id, job)
        })
        .collect()
}

/// Asserts that exactly one waiting job of kind `J` satisfies `matches`, and returns its id
/// and payload. Panics listing what is queued otherwise.
pub async fn assert_enqueued<J: Job + std::fmt::Debug>(
    db: &PgPool,
    matches: impl Fn(&J) -> bool,
) -> (String, J) {
    let all = enqueued::<J>(db).await;
    let mut found: Vec<(String, J)> = Vec::new();
    let mut others = Vec::new();
    for (id, job) in all {
        if matches(&job) {
            found.push((id, job));
        } else {
            others.push(format!("{job:?}"));
        }
    }
    match found.len() {
        1 => found.remove(0),
        0 => panic!(
            "no {} job matching was enqueued; queued: [{}]",
            J::KIND,
            others.join(", ")
        ),
        n => panic!("{n} {} jobs match, expected one: {found:?}", J::KIND),
    }
}

/// Asserts that no waiting job of kind `J` satisfies `matches`.
pub async fn refute_enqueued<J: Job + std::fmt::Debug>(db: &PgPool, matches: impl Fn(&J) -> bool) {
    let hits: Vec<(String, J)> = enqueued::<J>(db)
        .await
        .into_iter()
        .filter(|(_, j)| matches(j))
        .collect();
    assert!(hits.is_empty(), "unexpected {} jobs: {hits:?}", J::KIND);
}
