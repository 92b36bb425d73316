//! Teachers (optionally linked to a login) and rooms.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{
    check, check_text,
    clients::{Email, Phone},
    nullable,
    page::{self, Cte, Page, PageRequest},
    DomainError, FieldErrors,
};

crate::text_enum! {
    /// Whether a room can be booked.
    pub enum RoomStatus { Active = "active", Archived = "archived" }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Teacher {
    pub id: Uuid,
    pub user_id: Option<Uuid>,
    pub full_name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const TEACHER: &str = "t.id, t.user_id, t.full_name, t.phone, t.email, t.active, t.created_at, \
     t.updated_at";

/// A new teacher (`full_name` required) or the changes to one: absent keys stay, `null`
/// clears an optional field.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TeacherPatch {
    // The patterns state what `check` accepts: a name with something besides whitespace (as
    // `str::trim` reads it) and no NUL; a phone as `Phone::parse` reads it (E.164, or a Russian
    // number as written locally, with spaces, dashes and brackets); an e-mail as `Email::parse`
    // reads it, in printable ASCII.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = r"^[^\u0000]*[^\u0000\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
        )
    )]
    pub full_name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            value_type = Option<String>,
            pattern = r"^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:(\+[-+() ]*([1-689]([-+() ]*[0-9]){7,14}|7([-+() ]*[0-9]){10})|([-()][-+() ]*)?([78]([-+() ]*[0-9]){10}|[0-9]([-+() ]*[0-9]){9}))[-+() ]*)[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
        )
    )]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            value_type = Option<String>,
            max_length = 254,
            pattern = r"^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:[\x21-\x3f\x41-\x7e]+@[\x21-\x2d\x2f-\x3f\x41-\x7e][\x21-\x3f\x41-\x7e]*\.[\x21-\x3f\x41-\x7e]*[\x21-\x2d\x2f-\x3f\x41-\x7e])[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
        )
    )]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub user_id: Option<Option<Uuid>>,
    pub active: Option<bool>,
}

/// The body of `POST /api/teachers` as documented: a [`TeacherPatch`] reads it (so every
/// missing field is named at once), this states what a new teacher requires.
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTeacher {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\u0000\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    pub full_name: String,
    #[schema(
        pattern = r"^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:(\+[-+() ]*([1-689]([-+() ]*[0-9]){7,14}|7([-+() ]*[0-9]){10})|([-()][-+() ]*)?([78]([-+() ]*[0-9]){10}|[0-9]([-+() ]*[0-9]){9}))[-+() ]*)[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub phone: Option<String>,
    #[schema(
        max_length = 254,
        pattern = r"^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:[\x21-\x3f\x41-\x7e]+@[\x21-\x2d\x2f-\x3f\x41-\x7e][\x21-\x3f\x41-\x7e]*\.[\x21-\x3f\x41-\x7e]*[\x21-\x2d\x2f-\x3f\x41-\x7e])[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub email: Option<String>,
    pub user_id: Option<Uuid>,
    pub active: Option<bool>,
}

impl TeacherPatch {
    /// Validates and normalises in place (phone to E.164, e-mail lower-cased).
    fn check(&mut self, creating: bool) -> Result<(), DomainError> {
        let mut fields = FieldErrors::new();
        match &self.full_name {
            Some(name) => check_text(&mut fields, "full_name", name, 200),
            None if creating => {
                fields.insert("full_name".into(), "required".into());
            }
            None => {}
        }
        if let Some(Some(phone)) = &self.phone {
            match Phone::parse(phone) {
                Some(p) => self.phone = Some(Some(p.as_str().to_string())),
                None => {
                    fields.insert("phone".into(), Phone::EXPECTED.into());
                }
            }
        }
        if let Some(Some(email)) = &self.email {
            match Email::parse(email) {
                Some(e) => self.email = Some(Some(e.as_str().to_string())),
                None => {
                    fields.insert("email".into(), Email::EXPECTED.into());
                }
            }
        }
        check(fields)
    }
}

const TEACHER_CONSTRAINTS: &[(&str, &str, &str)] = &[
    ("teachers_user_id_fkey", "user_id", "no such user"),
    (
        "teachers_user_unique",
        "user_id",
        "this user is already linked to a teacher",
    ),
];

pub async fn create_teacher(
    db: impl PgExecutor<'_>,
    mut t: TeacherPatch,
) -> Result<Teacher, DomainError> {
    t.check(true)?;
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into teachers as t (full_name, phone, email, user_id, active)
         values ($1, $2, $3, $4, coalesce($5, true)) returning {TEACHER}"
    )))
    .bind(t.full_name.as_deref().map(str::trim))
    .bind(t.phone.flatten())
    .bind(t.email.flatten())
    .bind(t.user_id.flatten())
    .bind(t.active)
    .fetch_one(db)
    .await
    .map_err(|e| DomainError::on_constraint(e, TEACHER_CONSTRAINTS))
}

pub async fn update_teacher(
    db: impl PgExecutor<'_>,
    id: Uuid,
    mut t: TeacherPatch,
) -> Result<Teacher, DomainError> {
    t.check(false)?;
    let teacher: Option<Teacher> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "update teachers t set
             full_name = coalesce($2, full_name),
             phone = case when $3 then $4 else phone end,
             email = case when $5 then $6 else email end,
             user_id = case when $7 then $8 else user_id end,
             active = coalesce($9, active),
             updated_at = now()
         where id = $1 returning {TEACHER}"
    )))
    .bind(id)
    .bind(t.full_name.as_deref().map(str::trim))
    .bind(t.phone.is_some())
    .bind(t.phone.flatten())
    .bind(t.email.is_some())
    .bind(t.email.flatten())
    .bind(t.user_id.is_some())
    .bind(t.user_id.flatten())
    .bind(t.active)
    .fetch_optional(db)
    .await
    .map_err(|e| DomainError::on_constraint(e, TEACHER_CONSTRAINTS))?;
    teacher.ok_or(DomainError::NotFound)
}

pub async fn teacher(db: impl PgExecutor<'_>, id: Uuid) -> Result<Teacher, DomainError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {TEACHER} from teachers t where t.id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(DomainError::NotFound)
}

/// Teachers by name; `active` None lists all.
pub async fn teachers(
    db: impl PgExecutor<'_>,
    active: Option<bool>,
    page: PageRequest,
) -> Result<Page<Teacher>, DomainError> {
    let query = sqlx::query(page::page_sql(
        "select * from teachers where ($1::bool is null or active = $1)",
        Cte::Inline,
        "t",
        TEACHER,
        "t.full_name, t.id",
        2,
    ))
    .bind(active);
    Ok(page::fetch(db, query, page).await?)
}

/// The teacher record linked to a login, if any.
pub async fn teacher_of_user(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
) -> Result<Option<Uuid>, DomainError> {
    Ok(
        sqlx::query_scalar("select id from teachers where user_id = $1")
            .bind(user_id)
            .fetch_optional(db)
            .await?,
    )
}

// ----- rooms -----

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Room {
    pub id: Uuid,
    pub name: String,
    pub capacity: i32,
    pub status: RoomStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const ROOM: &str = "r.id, r.name, r.capacity, r.status, r.created_at, r.updated_at";

/// A new room (`name` and `capacity` required) or the changes to one.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RoomPatch {
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 100,
            pattern = r"^[^\u0000]*[^\u0000\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
        )
    )]
    pub name: Option<String>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10_000))]
    pub capacity: Option<i32>,
    pub status: Option<RoomStatus>,
}

/// The body of `POST /api/rooms` as documented (a [`RoomPatch`] reads it).
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRoom {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000]*[^\u0000\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    pub name: String,
    #[schema(minimum = 1, maximum = 10_000)]
    pub capacity: i32,
    pub status: Option<RoomStatus>,
}

crate::text_enum! {
    /// Which rooms a list shows.
    pub enum RoomFilter { Active = "active", Archived = "archived", All = "all" }
}

impl RoomPatch {
    fn check(&self, creating: bool) -> Result<(), DomainError> {
        let mut fields = FieldErrors::new();
        match &self.name {
            Some(name) => check_text(&mut fields, "name", name, 100),
            None if creating => {
                fields.insert("name".into(), "required".into());
            }
            None => {}
        }
        match self.capacity {
            Some(c) if !(1..=10_000).contains(&c) => {
                fields.insert("capacity".into(), "must be between 1 and 10000".into());
            }
            None if creating => {
                fields.insert("capacity".into(), "required".into());
            }
            _ => {}
        }
        check(fields)
    }
}

const ROOM_CONSTRAINTS: &[(&str, &str, &str)] =
    &[("rooms_name_unique", "name", "a room with this name exists")];

pub async fn create_room(db: impl PgExecutor<'_>, r: RoomPatch) -> Result<Room, DomainError> {
    r.check(true)?;
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into rooms as r (name, capacity, status) values ($1, $2, coalesce($3, 'active'))
         returning {ROOM}"
    )))
    .bind(r.name.as_deref().map(str::trim))
    .bind(r.capacity)
    .bind(r.status)
    .fetch_one(db)
    .await
    .map_err(|e| DomainError::on_constraint(e, ROOM_CONSTRAINTS))
}

pub async fn update_room(
    db: impl PgExecutor<'_>,
    id: Uuid,
    r: RoomPatch,
) -> Result<Room, DomainError> {
    r.check(false)?;
    let room: Option<Room> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "update rooms r set name = coalesce($2, name), capacity = coalesce($3, capacity),
             status = coalesce($4, status), updated_at = now()
         where id = $1 returning {ROOM}"
    )))
    .bind(id)
    .bind(r.name.as_deref().map(str::trim))
    .bind(r.capacity)
    .bind(r.status)
    .fetch_optional(db)
    .await
    .map_err(|e| DomainError::on_constraint(e, ROOM_CONSTRAINTS))?;
    room.ok_or(DomainError::NotFound)
}

pub async fn room(db: impl PgExecutor<'_>, id: Uuid) -> Result<Room, DomainError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {ROOM} from rooms r where r.id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(DomainError::NotFound)
}

/// Rooms by name; `status` None lists all.
pub async fn rooms(
    db: impl PgExecutor<'_>,
    status: Option<RoomStatus>,
    page: PageRequest,
) -> Result<Page<Room>, DomainError> {
    let query = sqlx::query(page::page_sql(
        "select * from rooms where $1::text is null or status = $1",
        Cte::Inline,
        "r",
        ROOM,
        "r.name, r.id",
        2,
    ))
    .bind(status);
    Ok(page::fetch(db, query, page).await?)
}
