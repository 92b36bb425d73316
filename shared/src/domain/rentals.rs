//! Room rental applications from outside organisations: create, read, approve (books the room
//! for every day of the period with one statement, refused as a clash listing every clashing
//! booking, nothing booked), reject.
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Acquire, PgConnection, PgExecutor, Postgres};
use uuid::Uuid;

use super::{
    check, check_text,
    clients::{Email, Phone},
    page::{self, Cte, Page, PageRequest},
    DomainError, FieldErrors,
};

/// Longest rental period, in days (the audit's loop had no limit).
pub const MAX_DAYS: i64 = 366;

crate::text_enum! {
    pub enum ApplicationStatus { New = "new", Approved = "approved", Rejected = "rejected" }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Application {
    pub id: Uuid,
    pub organisation: String,
    pub contact_name: String,
    pub contact_phone: Option<String>,
    pub contact_email: Option<String>,
    pub room_id: Uuid,
    pub date_from: NaiveDate,
    pub date_to: NaiveDate,
    pub time_from: NaiveTime,
    pub time_to: NaiveTime,
    pub status: ApplicationStatus,
    pub comment: Option<String>,
    pub bookings: i64,
    pub decided_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const APPLICATION: &str = "a.id, a.organisation, a.contact_name, a.contact_phone, \
     a.contact_email, a.room_id, a.date_from, a.date_to, a.time_from, a.time_to, a.status, \
     a.comment, (select count(*) from lessons l where l.rental_application_id = a.id \
                 and l.status <> 'cancelled') as bookings, a.decided_at, a.created_at";

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewApplication {
    // The patterns state what `check` accepts, as for a teacher (`directory::TeacherPatch`).
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 300,
            pattern = r"^[^\u0000]*[^\u0000\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
        )
    )]
    pub organisation: String,
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = r"^[^\u0000]*[^\u0000\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
        )
    )]
    pub contact_name: String,
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:(\+[-+() ]*([1-689]([-+() ]*[0-9]){7,14}|7([-+() ]*[0-9]){10})|([-()][-+() ]*)?([78]([-+() ]*[0-9]){10}|[0-9]([-+() ]*[0-9]){9}))[-+() ]*)[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
        )
    )]
    pub contact_phone: Option<String>,
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 254,
            pattern = r"^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:[\x21-\x3f\x41-\x7e]+@[\x21-\x2d\x2f-\x3f\x41-\x7e][\x21-\x3f\x41-\x7e]*\.[\x21-\x3f\x41-\x7e]*[\x21-\x2d\x2f-\x3f\x41-\x7e])[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
        )
    )]
    pub contact_email: Option<String>,
    pub room_id: Uuid,
    pub date_from: NaiveDate,
    /// Not before `date_from`; a rental lasts at most 366 days.
    pub date_to: NaiveDate,
    /// "HH:MM", Moscow time.
    #[serde(deserialize_with = "hh_mm")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")
    )]
    pub time_from: NaiveTime,
    /// "HH:MM", Moscow time, after `time_from`.
    #[serde(deserialize_with = "hh_mm")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")
    )]
    pub time_to: NaiveTime,
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 2000, pattern = r"^[^\u0000]*$")
    )]
    pub comment: Option<String>,
}

/// A time of day exactly as documented, `HH:MM`.
fn hh_mm<'de, D: serde::Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    super::scheduling::parse_hh_mm(&s).ok_or_else(|| serde::de::Error::custom("expected HH:MM"))
}

impl NewApplication {
    /// Validates and normalises in place (phone to E.164).
    pub fn check(&mut self) -> Result<(), DomainError> {
        let mut fields = FieldErrors::new();
        check_text(&mut fields, "organisation", &self.organisation, 300);
        check_text(&mut fields, "contact_name", &self.contact_name, 200);
        if let Some(phone) = &self.contact_phone {
            match Phone::parse(phone) {
                Some(p) => self.contact_phone = Some(p.as_str().to_string()),
                None => {
                    fields.insert("contact_phone".into(), Phone::EXPECTED.into());
                }
            }
        }
        if let Some(email) = &self.contact_email {
            match Email::parse(email) {
                Some(e) => self.contact_email = Some(e.as_str().to_string()),
                None => {
                    fields.insert("contact_email".into(), Email::EXPECTED.into());
                }
            }
        }
        if self
            .comment
            .as_ref()
            .is_some_and(|c| c.chars().count() > 2000)
        {
            fields.insert("comment".into(), "at most 2000 characters".into());
        }
        if self.date_to < self.date_from {
            fields.insert("date_to".into(), "must not be before date_from".into());
        } else if (self.date_to - self.date_from).num_days() + 1 > MAX_DAYS {
            fields.insert(
                "date_to".into(),
                format!("a rental lasts at most {MAX_DAYS} days"),
            );
        }
        if self.time_to <= self.time_from {
            fields.insert("time_to".into(), "must be after time_from".into());
        }
        check(fields)
    }
}

pub async fn create(
    db: impl PgExecutor<'_>,
    mut req: NewApplication,
) -> Result<Application, DomainError> {
    req.check()?;
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "with a as (
             insert into rental_applications (organisation, contact_name, contact_phone,
                 contact_email, room_id, date_from, date_to, time_from, time_to, comment)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) returning *
         )
         select {APPLICATION} from a"
    )))
    .bind(req.organisation.trim())
    .bind(req.contact_name.trim())
    .bind(&req.contact_phone)
    .bind(&req.contact_email)
    .bind(req.room_id)
    .bind(req.date_from)
    .bind(req.date_to)
    .bind(req.time_from)
    .bind(req.time_to)
    .bind(&req.comment)
    .fetch_one(db)
    .await
    .map_err(|e| {
        DomainError::on_constraint(
            e,
            &[(
                "rental_applications_room_id_fkey",
                "room_id",
                "no such room",
            )],
        )
    })
}

pub async fn fetch(db: impl PgExecutor<'_>, id: Uuid) -> Result<Application, DomainError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {APPLICATION} from rental_applications a where a.id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(DomainError::NotFound)
}

/// Applications, newest first, optionally in one status.
pub async fn list(
    db: impl PgExecutor<'_>,
    status: Option<ApplicationStatus>,
    page: PageRequest,
) -> Result<Page<Application>, DomainError> {
    let query = sqlx::query(page::page_sql(
        "select * from rental_applications where $1::text is null or status = $1",
        Cte::Inline,
        "a",
        APPLICATION,
        "a.created_at desc, a.id",
        2,
    ))
    .bind(status);
    Ok(page::fetch(db, query, page).await?)
}

/// The days of an application as half-open UTC ranges (Moscow wall-clock window each day).
const DAYS: &str = "select a.room_id,
            ((d::date + a.time_from) at time zone 'Europe/Moscow') as starts_at,
            ((d::date + a.time_to) at time zone 'Europe/Moscow') as ends_at
     from rental_applications a,
          generate_series(a.date_from, a.date_to, interval '1 day') as d
     where a.id = $1";

/// Every existing booking of the room overlapping one of the application's days.
async fn clashes(db: impl PgExecutor<'_>, id: Uuid) -> Result<serde_json::Value, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "with days as ({DAYS})
         select coalesce(jsonb_agg(jsonb_build_object(
                    'day_starts_at', d.starts_at, 'lesson_id', l.id, 'kind', l.kind,
                    'group_id', l.group_id, 'starts_at', l.starts_at, 'ends_at', l.ends_at)
                    order by d.starts_at, l.starts_at), '[]')
         from days d join lessons l
           on l.room_id = d.room_id and l.status <> 'cancelled'
          and tstzrange(l.starts_at, l.ends_at, '[)') && tstzrange(d.starts_at, d.ends_at, '[)')"
    )))
    .bind(id)
    .fetch_one(db)
    .await
}

/// Approves a new application: one INSERT … SELECT books every day; any clash refuses the
/// whole approval (listing every clashing booking) and nothing is booked.
pub async fn approve(
    db: impl Acquire<'_, Database = Postgres>,
    id: Uuid,
    by: Uuid,
) -> Result<Application, DomainError> {
    let mut conn = db.acquire().await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let status: Option<ApplicationStatus> =
        sqlx::query_scalar("select status from rental_applications where id = $1 for update")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    match status {
        None => return Err(DomainError::NotFound),
        Some(ApplicationStatus::New) => {}
        Some(other) => return Err(DomainError::Conflict(format!("the application is {other}"))),
    }
    let booked = sqlx::query(sqlx::AssertSqlSafe(format!(
        "insert into lessons (kind, room_id, starts_at, ends_at, rental_application_id)
         select 'rental', days.room_id, days.starts_at, days.ends_at, $1 from ({DAYS}) days"
    )))
    .bind(id)
    .execute(&mut *tx)
    .await;
    match booked {
        Ok(done) => tracing::info!(days = done.rows_affected(), "rental booked"),
        Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("23P01") => {
            tx.rollback().await?;
            return Err(DomainError::Clash {
                message: "the room is already booked on some of these days".into(),
                clashes: clashes(&mut *conn, id).await?,
            });
        }
        Err(e) => return Err(e.into()),
    }
    sqlx::query(
        "update rental_applications set status = 'approved', decided_by = $2, decided_at = now(),
             updated_at = now() where id = $1",
    )
    .bind(id)
    .bind(by)
    .execute(&mut *tx)
    .await?;
    let application = fetch(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(application)
}

pub async fn reject(
    db: impl Acquire<'_, Database = Postgres>,
    id: Uuid,
    by: Uuid,
) -> Result<Application, DomainError> {
    let mut conn = db.acquire().await?;
    let updated = sqlx::query(
        "update rental_applications set status = 'rejected', decided_by = $2, decided_at = now(),
             updated_at = now() where id = $1 and status = 'new'",
    )
    .bind(id)
    .bind(by)
    .execute(&mut *conn)
    .await?;
    let application = fetch(&mut *conn, id).await?;
    if updated.rows_affected() == 0 {
        return Err(DomainError::Conflict(format!(
            "the application is {}",
            application.status
        )));
    }
    Ok(application)
}

/// Room ids by name as given, matched without regard to case (one query).
pub async fn rooms_by_name(
    db: impl PgExecutor<'_>,
    names: &[String],
) -> Result<std::collections::HashMap<String, Uuid>, DomainError> {
    // Both sides lowered by PostgreSQL (under a C ctype it folds no Cyrillic, and neither side
    // then; Rust's folding would differ), keyed by the name as given.
    let rows: Vec<(String, Uuid)> = sqlx::query_as(
        "select distinct on (n.name) n.name, r.id
         from unnest($1::text[]) n(name) join rooms r on lower(r.name) = lower(n.name)
         order by n.name, r.id",
    )
    .bind(names)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().collect())
}

/// What [`upsert_imported`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    pub created: i64,
    pub updated: i64,
    /// Unchanged, or already approved / rejected in the CRM (a decision is never overwritten).
    pub unchanged: i64,
}

/// Upserts applications imported from an outside system by its ids (`pyrus_task_id`), each
/// checked like any application first (the caller keeps the ones that fail the check). One
/// statement for the page.
pub async fn upsert_imported(
    conn: &mut PgConnection,
    apps: &[(i64, NewApplication)],
) -> Result<Imported, DomainError> {
    if apps.is_empty() {
        return Ok(Imported::default());
    }
    let rows: Vec<bool> = sqlx::query_scalar(
        "insert into rental_applications as a (pyrus_task_id, organisation, contact_name,
             contact_phone, contact_email, room_id, date_from, date_to, time_from, time_to, comment)
         select * from unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::uuid[], $7::date[], $8::date[], $9::time[], $10::time[], $11::text[])
         on conflict (pyrus_task_id) where pyrus_task_id is not null do update
         set organisation = excluded.organisation, contact_name = excluded.contact_name,
             contact_phone = excluded.contact_phone, contact_email = excluded.contact_email,
             room_id = excluded.room_id, date_from = excluded.date_from, date_to = excluded.date_to,
             time_from = excluded.time_from, time_to = excluded.time_to, comment = excluded.comment,
             updated_at = now()
         where a.status = 'new'
           and (a.organisation, a.contact_name, a.contact_phone, a.contact_email, a.room_id,
                a.date_from, a.date_to, a.time_from, a.time_to, a.comment)
               is distinct from
               (excluded.organisation, excluded.contact_name, excluded.contact_phone,
                excluded.contact_email, excluded.room_id, excluded.date_from, excluded.date_to,
                excluded.time_from, excluded.time_to, excluded.comment)
         returning (xmax = 0)",
    )
    .bind(apps.iter().map(|a| a.0).collect::<Vec<_>>())
    .bind(apps.iter().map(|a| a.1.organisation.trim()).collect::<Vec<_>>())
    .bind(apps.iter().map(|a| a.1.contact_name.trim()).collect::<Vec<_>>())
    .bind(apps.iter().map(|a| a.1.contact_phone.as_deref()).collect::<Vec<_>>())
    .bind(apps.iter().map(|a| a.1.contact_email.as_deref()).collect::<Vec<_>>())
    .bind(apps.iter().map(|a| a.1.room_id).collect::<Vec<_>>())
    .bind(apps.iter().map(|a| a.1.date_from).collect::<Vec<_>>())
    .bind(apps.iter().map(|a| a.1.date_to).collect::<Vec<_>>())
    .bind(apps.iter().map(|a| a.1.time_from).collect::<Vec<_>>())
    .bind(apps.iter().map(|a| a.1.time_to).collect::<Vec<_>>())
    .bind(apps.iter().map(|a| a.1.comment.as_deref()).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    let created = rows.iter().filter(|r| **r).count() as i64;
    Ok(Imported {
        created,
        updated: rows.len() as i64 - created,
        unchanged: apps.len() as i64 - rows.len() as i64,
    })
}
