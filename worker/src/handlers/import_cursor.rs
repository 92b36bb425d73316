//! Where an import stands (`import_cursors`, one row per job): saved in the transaction that
//! writes each page, so a retry or a crash of the job continues from the next page and never
//! fetches a committed page again. A finished import leaves its cursor marked done (with the
//! report), so a run after a crash that lost the outcome answers at once instead of importing
//! everything again; the pruner removes cursors a day after their last write.
use serde::{de::DeserializeOwned, Serialize};
use sqlx::{PgConnection, PgExecutor};

/// The saved cursor of job `job_id`, if it ran before.
pub async fn load<C: DeserializeOwned>(
    db: impl PgExecutor<'_>,
    job_id: &str,
) -> Result<Option<C>, sqlx::Error> {
    let raw: Option<serde_json::Value> =
        sqlx::query_scalar("select cursor from import_cursors where job_id = $1")
            .bind(job_id)
            .fetch_optional(db)
            .await?;
    Ok(raw.and_then(|v| match serde_json::from_value(v) {
        Ok(cursor) => Some(cursor),
        Err(e) => {
            // Written by another version of the handler: start over (pages are idempotent).
            tracing::warn!(job.id = %job_id, error = %e, "the saved import cursor does not decode; the import starts over");
            None
        }
    }))
}

/// Saves the cursor in the caller's (page) transaction.
pub async fn save<C: Serialize>(
    conn: &mut PgConnection,
    job_id: &str,
    cursor: &C,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into import_cursors (job_id, cursor) values ($1, $2)
         on conflict (job_id) do update set cursor = excluded.cursor, updated_at = now()",
    )
    .bind(job_id)
    .bind(sqlx::types::Json(cursor))
    .execute(conn)
    .await?;
    Ok(())
}

/// Cursors untouched for a day, for the pruner: finished imports, and failed ones (a live
/// import saves its cursor every page).
pub async fn prune(db: impl PgExecutor<'_>) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("delete from import_cursors where updated_at < now() - interval '1 day'")
            .execute(db)
            .await?
            .rows_affected(),
    )
}
