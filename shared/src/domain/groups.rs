//! Study groups and membership: enrol (active while seats are free, else waitlisted), leave
//! (the first waitlisted member takes the freed seat). The group row is locked for both, so
//! concurrent enrolments see each other's seats (no overbooking). Membership changes keep the
//! lessons' expected rosters in step ([`super::roster`]).
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::{
    check, check_text, nullable,
    page::{self, Cte, Page, PageRequest},
    roster, DomainError, FieldErrors,
};

crate::text_enum! {
    pub enum GroupStatus { Open = "open", Closed = "closed", Archived = "archived" }
}

crate::text_enum! {
    /// Which absences take a visit of the subscription.
    pub enum AbsenceCharge { None = "none", Unexcused = "unexcused", All = "all" }
}

crate::text_enum! {
    pub enum MemberStatus { Active = "active", Waitlist = "waitlist", Left = "left" }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Group {
    pub id: Uuid,
    pub name: String,
    pub teacher_id: Uuid,
    pub room_id: Option<Uuid>,
    pub capacity: i32,
    pub status: GroupStatus,
    pub absence_charge: AbsenceCharge,
    pub active_members: i64,
    pub waitlisted: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A group with its member counts, from `g` (a `study_groups` row source).
const GROUP: &str = "g.id, g.name, g.teacher_id, g.room_id, g.capacity, g.status, \
     g.absence_charge, \
     (select count(*) from group_members m where m.group_id = g.id and m.status = 'active') \
         as active_members, \
     (select count(*) from group_members m where m.group_id = g.id and m.status = 'waitlist') \
         as waitlisted, \
     g.created_at, g.updated_at";

/// A new group (`name`, `teacher_id`, `capacity` required) or the changes to one.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GroupPatch {
    // The name's pattern: not blank, no NUL (as on `directory::TeacherPatch`).
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = r"^[^\u0000]*[^\u0000\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
        )
    )]
    pub name: Option<String>,
    pub teacher_id: Option<Uuid>,
    #[serde(default, deserialize_with = "nullable")]
    pub room_id: Option<Option<Uuid>>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub capacity: Option<i32>,
    pub status: Option<GroupStatus>,
    pub absence_charge: Option<AbsenceCharge>,
}

/// The body of `POST /api/groups` as documented: a [`GroupPatch`] reads it (so every missing
/// field is named at once), this states what a new group requires.
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\u0000\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    pub name: String,
    pub teacher_id: Uuid,
    pub room_id: Option<Uuid>,
    #[schema(minimum = 1, maximum = 1000)]
    pub capacity: i32,
    /// Default `open`.
    pub status: Option<GroupStatus>,
    /// Default `none`.
    pub absence_charge: Option<AbsenceCharge>,
}

impl GroupPatch {
    fn check(&self, creating: bool) -> Result<(), DomainError> {
        let mut fields = FieldErrors::new();
        match &self.name {
            Some(name) => check_text(&mut fields, "name", name, 200),
            None if creating => {
                fields.insert("name".into(), "required".into());
            }
            None => {}
        }
        if creating && self.teacher_id.is_none() {
            fields.insert("teacher_id".into(), "required".into());
        }
        match self.capacity {
            Some(c) if !(1..=1000).contains(&c) => {
                fields.insert("capacity".into(), "must be between 1 and 1000".into());
            }
            None if creating => {
                fields.insert("capacity".into(), "required".into());
            }
            _ => {}
        }
        check(fields)
    }
}

const GROUP_CONSTRAINTS: &[(&str, &str, &str)] = &[
    (
        "study_groups_teacher_id_fkey",
        "teacher_id",
        "no such teacher",
    ),
    ("study_groups_room_id_fkey", "room_id", "no such room"),
];

pub async fn create(db: impl PgExecutor<'_>, g: GroupPatch) -> Result<Group, DomainError> {
    g.check(true)?;
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "with g as (
             insert into study_groups (name, teacher_id, room_id, capacity, status, absence_charge)
             values ($1, $2, $3, $4, coalesce($5, 'open'), coalesce($6, 'none'))
             returning *
         )
         select {GROUP} from g"
    )))
    .bind(g.name.as_deref().map(str::trim))
    .bind(g.teacher_id)
    .bind(g.room_id.flatten())
    .bind(g.capacity)
    .bind(g.status)
    .bind(g.absence_charge)
    .fetch_one(db)
    .await
    .map_err(|e| DomainError::on_constraint(e, GROUP_CONSTRAINTS))
}

/// Changes a group. A new teacher takes over the group's scheduled lessons from now on that
/// the old teacher was to give (a substitute's lessons and past ones stay as they are), in
/// the same transaction: the lesson's teacher is who may mark it. A clash with the new
/// teacher's other lessons refuses the change (409).
pub async fn update(
    conn: &mut PgConnection,
    id: Uuid,
    g: GroupPatch,
) -> Result<Group, DomainError> {
    g.check(false)?;
    let mut tx = sqlx::Acquire::begin(conn).await?;
    // The row lock orders concurrent changes: the teacher read here is the one replaced (no
    // key update: rows referencing the group, such as new members, are not held up).
    let old_teacher: Option<Uuid> =
        sqlx::query_scalar("select teacher_id from study_groups where id = $1 for no key update")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(old_teacher) = old_teacher else {
        return Err(DomainError::NotFound);
    };
    let group: Group = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "with g as (
             update study_groups set
                 name = coalesce($2, name), teacher_id = coalesce($3, teacher_id),
                 room_id = case when $4 then $5 else room_id end,
                 capacity = coalesce($6, capacity), status = coalesce($7, status),
                 absence_charge = coalesce($8, absence_charge), updated_at = now()
             where id = $1 returning *
         )
         select {GROUP} from g"
    )))
    .bind(id)
    .bind(g.name.as_deref().map(str::trim))
    .bind(g.teacher_id)
    .bind(g.room_id.is_some())
    .bind(g.room_id.flatten())
    .bind(g.capacity)
    .bind(g.status)
    .bind(g.absence_charge)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| DomainError::on_constraint(e, GROUP_CONSTRAINTS))?;
    if let Some(new_teacher) = g.teacher_id.filter(|t| *t != old_teacher) {
        sqlx::query(
            "update lessons set teacher_id = $3, updated_at = now()
             where group_id = $1 and teacher_id = $2 and kind = 'lesson'
               and status = 'scheduled' and starts_at > now()",
        )
        .bind(id)
        .bind(old_teacher)
        .bind(new_teacher)
        .execute(&mut *tx)
        .await
        .map_err(
            |e| match e.as_database_error().and_then(|d| d.constraint()) {
                Some("lessons_teacher_no_overlap") => DomainError::Conflict(
                    "the new teacher already teaches at the time of one of this group's \
                     coming lessons; move or cancel that lesson first"
                        .into(),
                ),
                _ => e.into(),
            },
        )?;
    }
    tx.commit().await?;
    Ok(group)
}

pub async fn fetch(db: impl PgExecutor<'_>, id: Uuid) -> Result<Group, DomainError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {GROUP} from study_groups g where g.id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(DomainError::NotFound)
}

/// Groups by name, optionally of one teacher and in one status.
pub async fn list(
    db: impl PgExecutor<'_>,
    teacher_id: Option<Uuid>,
    status: Option<GroupStatus>,
    page: PageRequest,
) -> Result<Page<Group>, DomainError> {
    let query = sqlx::query(page::page_sql(
        "select * from study_groups
         where ($1::uuid is null or teacher_id = $1) and ($2::text is null or status = $2)",
        Cte::Inline,
        "g",
        GROUP,
        "g.name, g.id",
        3,
    ))
    .bind(teacher_id)
    .bind(status);
    Ok(page::fetch(db, query, page).await?)
}

// ----- members -----

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    pub client_id: Uuid,
    pub full_name: String,
    pub status: MemberStatus,
    pub joined_on: Option<NaiveDate>,
    pub left_on: Option<NaiveDate>,
}

crate::text_enum! {
    /// Which members a list shows: `current` = active and waitlisted.
    pub enum MemberFilter {
        Current = "current", Active = "active", Waitlist = "waitlist", Left = "left", All = "all"
    }
}

/// The members of a group (NotFound when the group does not exist): active first, the
/// waitlist in arrival order, then by name.
pub async fn members(
    db: impl sqlx::Acquire<'_, Database = sqlx::Postgres>,
    group_id: Uuid,
    filter: MemberFilter,
    page: PageRequest,
) -> Result<Page<Member>, DomainError> {
    let mut conn = db.acquire().await?;
    let rows = sqlx::query(page::page_sql(
        "select m.client_id, concat_ws(' ', c.last_name, c.first_name, c.middle_name) as full_name,
                m.status, m.joined_on, m.left_on, m.created_at
         from group_members m join clients c on c.id = m.client_id
         where m.group_id = $1
           and ($2 = 'all' or m.status = $2
                or ($2 = 'current' and m.status in ('active', 'waitlist')))",
        Cte::Materialized,
        "m",
        "m.client_id, m.full_name, m.status, m.joined_on, m.left_on",
        "m.status, case when m.status = 'waitlist' then m.created_at end, m.full_name, m.client_id",
        3,
    ))
    .bind(group_id)
    .bind(filter)
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(&mut *conn)
    .await?;
    let page: Page<Member> = page::decode(&rows)?;
    // Only an empty answer needs to know whether the group exists.
    if page.total == 0 && !exists(&mut conn, group_id).await? {
        return Err(DomainError::NotFound);
    }
    Ok(page)
}

async fn exists(conn: &mut PgConnection, group_id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from study_groups where id = $1)")
        .bind(group_id)
        .fetch_one(conn)
        .await
}

/// Locks the group row for this transaction; its status, or NotFound.
async fn lock(conn: &mut PgConnection, group_id: Uuid) -> Result<GroupStatus, DomainError> {
    sqlx::query_scalar("select status from study_groups where id = $1 for update")
        .bind(group_id)
        .fetch_optional(conn)
        .await?
        .ok_or(DomainError::NotFound)
}

/// Enrols a client from `joined_on`: `active` while the group has free seats, else `waitlist`.
/// An active member is added to the rosters of the group's lessons from that day on that have
/// not started. Runs in the caller's transaction.
pub async fn enrol(
    conn: &mut PgConnection,
    group_id: Uuid,
    client_id: Uuid,
    joined_on: NaiveDate,
) -> Result<Member, DomainError> {
    if lock(conn, group_id).await? != GroupStatus::Open {
        return Err(DomainError::field(
            "group",
            "the group is not open for enrolment",
        ));
    }
    let member: Member = sqlx::query_as(
        "with seat as (
             select g.capacity > (select count(*) from group_members m
                                  where m.group_id = g.id and m.status = 'active') as free
             from study_groups g where g.id = $1
         ), ins as (
             insert into group_members (group_id, client_id, status, joined_on)
             select $1, $2, case when seat.free then 'active' else 'waitlist' end,
                    case when seat.free then $3::date end
             from seat
             returning client_id, status, joined_on, left_on
         )
         select ins.client_id, concat_ws(' ', c.last_name, c.first_name, c.middle_name) as full_name,
                ins.status, ins.joined_on, ins.left_on
         from ins join clients c on c.id = ins.client_id",
    )
    .bind(group_id)
    .bind(client_id)
    .bind(joined_on)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| {
        DomainError::on_constraint(
            e,
            &[
                (
                    "group_members_client_id_fkey",
                    "client_id",
                    "no such client",
                ),
                (
                    "group_members_current",
                    "client_id",
                    "already a member or on the waitlist",
                ),
            ],
        )
    })?;
    if member.status == MemberStatus::Active {
        roster::join(conn, group_id, client_id, joined_on).await?;
    }
    Ok(member)
}

/// What leaving a group changed.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Left {
    pub left: Uuid,
    /// The waitlisted client who took the freed seat.
    pub promoted_from_waitlist: Option<Uuid>,
}

/// Ends a membership (or leaves the waitlist) on `left_on`; a freed seat goes to the first
/// waitlisted client, who joins on that day. Rosters follow: the leaver leaves the group's
/// lessons after `left_on` that have not started (and are not marked), the promoted client
/// joins them. Runs in the caller's transaction.
pub async fn leave(
    conn: &mut PgConnection,
    group_id: Uuid,
    client_id: Uuid,
    left_on: NaiveDate,
) -> Result<Left, DomainError> {
    lock(conn, group_id).await?;
    let left = sqlx::query(
        "update group_members set status = 'left', left_on = $3, updated_at = now()
         where group_id = $1 and client_id = $2 and status in ('active', 'waitlist')",
    )
    .bind(group_id)
    .bind(client_id)
    .bind(left_on)
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        DomainError::on_constraint(
            e,
            &[(
                "group_members_dates",
                "left_on",
                "before the day the client joined",
            )],
        )
    })?;
    if left.rows_affected() == 0 {
        return Err(DomainError::NotFound);
    }
    roster::leave(conn, group_id, client_id, left_on).await?;
    let promoted: Option<Uuid> = sqlx::query_scalar(
        "update group_members set status = 'active', joined_on = $2, updated_at = now()
         where id = (
             select m.id from group_members m join study_groups g on g.id = m.group_id
             where m.group_id = $1 and m.status = 'waitlist'
               and g.capacity > (select count(*) from group_members a
                                 where a.group_id = $1 and a.status = 'active')
             order by m.created_at limit 1)
         returning client_id",
    )
    .bind(group_id)
    .bind(left_on)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(promoted) = promoted {
        roster::join(conn, group_id, promoted, left_on).await?;
    }
    Ok(Left {
        left: client_id,
        promoted_from_waitlist: promoted,
    })
}

/// Whose groups these are, for a user asking about them (a teacher may export only their
/// own): the user's active teacher record (one who left owns nothing), which of `group_ids`
/// do not exist, which are not taught by that teacher, and whether `teacher_id` (if given)
/// exists. One round trip. A teacher's own archived groups stay theirs here: a timesheet is
/// the record of lessons they gave, which a past month may hold.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Ownership {
    pub own_teacher: Option<Uuid>,
    pub missing: Vec<Uuid>,
    #[sqlx(rename = "foreign_ids")]
    pub foreign: Vec<Uuid>,
    pub teacher_exists: bool,
}

pub async fn ownership(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    group_ids: &[Uuid],
    teacher_id: Option<Uuid>,
) -> Result<Ownership, DomainError> {
    Ok(sqlx::query_as(
        "with me as (select id from teachers where user_id = $1 and active)
         select (select id from me) as own_teacher,
                coalesce((select array_agg(i order by i) from unnest($2::uuid[]) i
                          where not exists (select 1 from study_groups g where g.id = i)), '{}')
                    as missing,
                coalesce((select array_agg(g.id order by g.id) from study_groups g
                          where g.id = any($2) and g.teacher_id is distinct from (select id from me)),
                         '{}') as foreign_ids,
                $3::uuid is null or exists (select 1 from teachers where id = $3) as teacher_exists",
    )
    .bind(user_id)
    .bind(group_ids)
    .bind(teacher_id)
    .fetch_one(db)
    .await?)
}
