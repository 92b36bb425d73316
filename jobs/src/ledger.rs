//! Reading the `job_runs` ledger: what `GET /api/jobs…` shows. Visibility is decided here: a
//! `viewer` of `None` is an admin (sees every job), `Some(user)` sees only their own.
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRun {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub progress_percent: i16,
    pub progress_message: Option<String>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub requested_by: Option<Uuid>,
    pub cancel_requested: bool,
    pub run_after: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub has_artifact: bool,
}

impl JobRun {
    pub fn is_terminal(&self) -> bool {
        matches!(self.state.as_str(), "succeeded" | "failed" | "cancelled")
    }
}

const COLUMNS: &str = "r.id, r.kind, r.state, r.attempts, r.max_attempts, r.progress_percent,
    r.progress_message, r.result, r.error, r.requested_by, r.cancel_requested, r.run_after,
    r.created_at, r.started_at, r.finished_at,
    exists (select 1 from artifacts a where a.job_id = r.id) as has_artifact";

pub async fn get(
    pool: &PgPool,
    id: &str,
    viewer: Option<Uuid>,
) -> Result<Option<JobRun>, sqlx::Error> {
    let sql = format!(
        "select {COLUMNS} from job_runs r where r.id = $1 and ($2::uuid is null or r.requested_by = $2)"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(viewer)
        .fetch_optional(pool)
        .await
}

#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub kind: Option<String>,
    pub state: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// One page, newest first, and the total matching count.
pub async fn list(
    pool: &PgPool,
    viewer: Option<Uuid>,
    filter: &ListFilter,
) -> Result<(Vec<JobRun>, i64), sqlx::Error> {
    let sql = format!(
        "with matching as (
             select r.id from job_runs r
             where ($1::uuid is null or r.requested_by = $1)
               and ($2::text is null or r.kind = $2) and ($3::text is null or r.state = $3)
         )
         select (select count(*) from matching) as total, page.*
         from (select {COLUMNS} from job_runs r join matching m on m.id = r.id
               order by r.created_at desc, r.id desc limit $4 offset $5) page
         right join (select 1) one on true"
    );
    let rows: Vec<ListRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(viewer)
        .bind(&filter.kind)
        .bind(&filter.state)
        .bind(filter.limit)
        .bind(filter.offset)
        .fetch_all(pool)
        .await?;
    let total = rows.first().map(|r| r.total).unwrap_or(0);
    let items = rows.into_iter().filter_map(|r| r.run).collect();
    Ok((items, total))
}

/// A page row: the total repeats on each row; an empty page still yields one row (no job).
struct ListRow {
    total: i64,
    run: Option<JobRun>,
}

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for ListRow {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        let total: i64 = row.try_get("total")?;
        let id: Option<String> = row.try_get("id")?;
        let run = match id {
            Some(_) => Some(JobRun::from_row(row)?),
            None => None,
        };
        Ok(Self { total, run })
    }
}

/// One recorded change of a job (state, attempts or progress), in order.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobEvent {
    pub id: i64,
    pub state: String,
    pub attempts: i32,
    pub progress_percent: i16,
    pub progress_message: Option<String>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

pub async fn events_after(
    pool: &PgPool,
    job_id: &str,
    after: i64,
) -> Result<Vec<JobEvent>, sqlx::Error> {
    sqlx::query_as(
        "select id, state, attempts, progress_percent, progress_message, error, at
         from job_events where job_id = $1 and id > $2 order by id limit 500",
    )
    .bind(job_id)
    .bind(after)
    .fetch_all(pool)
    .await
}

#[derive(Debug, sqlx::FromRow)]
pub struct Artifact {
    pub file_name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

pub async fn artifact(
    pool: &PgPool,
    job_id: &str,
    viewer: Option<Uuid>,
) -> Result<Option<Artifact>, sqlx::Error> {
    sqlx::query_as(
        "select a.file_name, a.content_type, a.bytes from artifacts a join job_runs r on r.id = a.job_id
         where a.job_id = $1 and ($2::uuid is null or r.requested_by = $2)",
    )
    .bind(job_id)
    .bind(viewer)
    .fetch_optional(pool)
    .await
}
