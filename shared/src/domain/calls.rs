//! Click-to-call requests (`call_requests`): who rings whom from which extension, and the state
//! the `call` job moves. The state says whether the phone may have rung:
//!
//! `queued` → `dialling` (committed before Novofon is asked) → `placed` | `failed` (refused
//! before anything rang) | `unknown` (the request may have reached Novofon: never dialled
//! again) — or `queued` → `cancelled` (too late to ring). A request found `dialling` by a later
//! attempt becomes `unknown`, never a second dial.
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::{
    clients::Phone,
    page::{self, Cte, PageRequest},
    DomainError, Page,
};

crate::text_enum! {
    pub enum CallState {
        Queued = "queued",
        Dialling = "dialling",
        Placed = "placed",
        Failed = "failed",
        Unknown = "unknown",
        Cancelled = "cancelled",
    }
}

/// A checked call request, not yet stored.
#[derive(Debug, Clone)]
pub struct CallPlan {
    pub client_id: Uuid,
    pub user_id: Uuid,
    pub extension: String,
    /// E.164 (`+7…`).
    pub number: String,
}

/// Checks a call request: the caller has an extension, the client exists (a teacher may ring
/// only the clients they may read, `teacher_clients` — and learns nothing about other
/// clients, not even whether they exist), and the number is the client's phone, or — when given — one
/// of the client's numbers (their own or their guardian's).
pub async fn plan(
    conn: &mut PgConnection,
    user_id: Uuid,
    teacher: bool,
    client_id: Uuid,
    phone: Option<&str>,
) -> Result<CallPlan, DomainError> {
    let extension: Option<String> = sqlx::query_scalar("select extension from users where id = $1")
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?
        .flatten();
    let Some(extension) = extension else {
        return Err(DomainError::field(
            "extension",
            "your user has no PBX extension to ring from: an admin sets one (POST /api/users)",
        ));
    };
    if teacher {
        let theirs: bool =
            sqlx::query_scalar("select exists (select 1 from teacher_clients($2) c where c = $1)")
                .bind(client_id)
                .bind(user_id)
                .fetch_one(&mut *conn)
                .await?;
        if !theirs {
            return Err(DomainError::Forbidden);
        }
    }
    let numbers: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "select c.phone, g.phone from clients c left join clients g on g.id = c.guardian_id
         where c.id = $1",
    )
    .bind(client_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((own, guardian)) = numbers else {
        return Err(DomainError::NotFound);
    };
    let known: Vec<String> = own.into_iter().chain(guardian).collect();
    let number = match phone {
        Some(raw) => {
            let Some(parsed) = Phone::parse(raw) else {
                return Err(DomainError::field(
                    "phone",
                    "not a phone number (+7 916 123-45-67, 8 916 …)",
                ));
            };
            if !known.iter().any(|k| k == parsed.as_str()) {
                return Err(DomainError::field(
                    "phone",
                    "not one of the client's numbers (their own or their guardian's)",
                ));
            }
            parsed.as_str().to_string()
        }
        None => known
            .into_iter()
            .next()
            .ok_or_else(|| DomainError::field("phone", "the client has no phone number to ring"))?,
    };
    Ok(CallPlan {
        client_id,
        user_id,
        extension,
        number,
    })
}

/// A click is not repeated within this window: the same caller asking to ring the same number
/// again gets the call already requested (a double click, a resent request).
pub const REPEAT_WINDOW_SECS: i64 = 30;

/// The call this request repeats, if any: the caller's call with the same `idempotency_key`,
/// or to the same number within [`REPEAT_WINDOW_SECS`] that did not fail or get cancelled.
/// Takes a transaction-level lock on (caller, number) first, so two concurrent requests see
/// each other: call it in the transaction that then inserts. Returns (call id, job id).
pub async fn repeated(
    conn: &mut PgConnection,
    plan: &CallPlan,
    idempotency_key: Option<&str>,
) -> Result<Option<(Uuid, String)>, DomainError> {
    sqlx::query("select pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("call:{}:{}", plan.user_id, plan.number))
        .execute(&mut *conn)
        .await?;
    Ok(sqlx::query_as(
        "select id, job_id from call_requests
         where user_id = $1
           and (idempotency_key = $3
                or (number = $2 and created_at > now() - make_interval(secs => $4)
                    and state not in ('failed', 'cancelled')))
         order by (idempotency_key = $3) desc nulls last, created_at desc
         limit 1",
    )
    .bind(plan.user_id)
    .bind(&plan.number)
    .bind(idempotency_key)
    .bind(REPEAT_WINDOW_SECS as f64)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Stores a planned call as `queued`, with the job that will dial it (same transaction, after
/// [`repeated`] found nothing).
pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    plan: &CallPlan,
    job_id: &str,
    idempotency_key: Option<&str>,
) -> Result<(), DomainError> {
    sqlx::query(
        "insert into call_requests (id, client_id, user_id, extension, number, job_id,
                                    idempotency_key)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(plan.client_id)
    .bind(plan.user_id)
    .bind(&plan.extension)
    .bind(&plan.number)
    .bind(job_id)
    .bind(idempotency_key)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Call {
    pub id: Uuid,
    pub client_id: Uuid,
    pub client_name: String,
    pub user_id: Uuid,
    pub extension: String,
    pub number: String,
    pub state: CallState,
    /// Novofon's `call_session_id` once placed.
    pub provider_call_id: Option<i64>,
    /// Why it failed, or why it is unknown or cancelled, for the person who clicked.
    pub error: Option<String>,
    pub job_id: String,
    pub created_at: DateTime<Utc>,
    pub dialling_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Call requests as shown: a request still `queued` or `dialling` whose job has ended without
/// recording how (cancelled by a person, attempts used up by crashes before the end, pruned)
/// shows `cancelled` (never dialled) or `unknown` (it may have rung); one still `queued` past
/// the two-minute window and the job's timeout, with no run in progress (no worker takes
/// calls), shows `cancelled`: it will not ring.
const SHOWN: &str = "
    select r.id, r.client_id, r.user_id, r.extension, r.number, r.provider_call_id, r.job_id,
           r.created_at, r.dialling_at, coalesce(r.finished_at, e.ended_at) as finished_at,
           coalesce(e.state, r.state) as state, coalesce(e.error, r.error) as error
    from call_requests r
    left join job_runs j on j.id = r.job_id
    left join lateral (
        select case r.state when 'dialling' then 'unknown' else 'cancelled' end as state,
               case when r.state = 'dialling'
                    then 'the job ended after marking the call dialling: it may have been placed'
                    when j.state in ('succeeded', 'failed', 'cancelled') or j.id is null
                    then 'the job ended before dialling: not dialled'
                    else 'no worker took the call in time: it will not ring' end as error,
               coalesce(j.finished_at, r.created_at + interval '3 minutes') as ended_at
        where r.state in ('queued', 'dialling')
          and (j.state in ('succeeded', 'failed', 'cancelled')
               or (j.id is null and r.created_at < now() - interval '1 hour')
               or (r.state = 'queued' and r.created_at < now() - interval '3 minutes'
                   and j.state is distinct from 'running'))
    ) e on true";

const CALL: &str = "r.id, r.client_id, \
     (select c.last_name || ' ' || c.first_name from clients c where c.id = r.client_id) as client_name, \
     r.user_id, r.extension, r.number, r.state, r.provider_call_id, r.error, r.job_id, \
     r.created_at, r.dialling_at, r.finished_at";

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Call, DomainError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {CALL} from ({SHOWN} where r.id = $1) r"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(DomainError::NotFound)
}

/// Filters of the call list; all optional.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub client_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub state: Option<CallState>,
}

/// Calls, newest first.
pub async fn list(
    db: impl PgExecutor<'_>,
    filter: &CallFilter,
    page: PageRequest,
) -> Result<Page<Call>, DomainError> {
    let base = format!(
        "select * from ({SHOWN}
                        where ($1::uuid is null or r.client_id = $1)
                          and ($2::uuid is null or r.user_id = $2)) s
         where $3::text is null or s.state = $3"
    );
    let query = sqlx::query(page::page_sql(
        &base,
        Cte::Inline,
        "r",
        CALL,
        "r.created_at desc, r.id",
        4,
    ))
    .bind(filter.client_id)
    .bind(filter.user_id)
    .bind(filter.state);
    Ok(page::fetch(db, query, page).await?)
}

/// What the job finds when it looks at its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Waiting to be dialled, asked `age` ago.
    Queued {
        number: String,
        extension: String,
        age: std::time::Duration,
    },
    /// An earlier attempt marked it dialling and never recorded how it ended.
    Dialling,
    /// Already decided.
    Done(CallState),
}

/// The request's state, read without a lock (the decisions below re-check under one).
pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> Result<Found, DomainError> {
    let row: Option<(CallState, String, String, f64)> = sqlx::query_as(
        "select state, number, extension, extract(epoch from now() - created_at)::float8
         from call_requests where id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    let Some((state, number, extension, age)) = row else {
        return Err(DomainError::NotFound);
    };
    Ok(match state {
        CallState::Queued => Found::Queued {
            number,
            extension,
            age: std::time::Duration::from_secs_f64(age.max(0.0)),
        },
        CallState::Dialling => Found::Dialling,
        other => Found::Done(other),
    })
}

/// `queued` → `dialling`, in the caller's (fenced) transaction, which must commit before the
/// provider is asked. `false` if it is no longer queued.
pub async fn start_dialling(conn: &mut PgConnection, id: Uuid) -> Result<bool, DomainError> {
    Ok(sqlx::query(
        "update call_requests set state = 'dialling', dialling_at = now(), updated_at = now()
         where id = $1 and state = 'queued'",
    )
    .bind(id)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Records how the call ended, from `from` (`queued` for a cancellation, `dialling` for the
/// rest), in the caller's (fenced) transaction. `false` if it was no longer in `from`.
pub async fn finish(
    conn: &mut PgConnection,
    id: Uuid,
    from: CallState,
    to: CallState,
    provider_call_id: Option<i64>,
    error: Option<&str>,
) -> Result<bool, DomainError> {
    Ok(sqlx::query(
        "update call_requests
         set state = $3, provider_call_id = coalesce($4, provider_call_id), error = $5,
             finished_at = case when $3 in ('queued', 'dialling') then null else now() end,
             updated_at = now()
         where id = $1 and state = $2",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .bind(provider_call_id)
    .bind(error)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Sets or clears a user's PBX extension (3–5 digits).
pub async fn set_extension(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    extension: Option<&str>,
) -> Result<(), DomainError> {
    if let Some(e) = extension {
        if !(3..=5).contains(&e.len()) || !e.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DomainError::field("extension", "3 to 5 digits, e.g. 101"));
        }
    }
    let updated = sqlx::query("update users set extension = $2, updated_at = now() where id = $1")
        .bind(user_id)
        .bind(extension)
        .execute(db)
        .await?
        .rows_affected();
    if updated == 0 {
        return Err(DomainError::NotFound);
    }
    Ok(())
}
