//! Attendance marks and the visit they charge, in one transaction, and the lesson's roster
//! with its marks.
//!
//! Which marks charge a visit: `present` always; `absent` when the group charges unexcused
//! absences (`absence_charge` = `unexcused` or `all`); `excused` only with `all`; `free` and
//! `trial` never. A charge takes one visit of exactly one valid subscription — active, its plan
//! covers the lesson's group, the lesson's Moscow date within its period and outside its
//! freeze, visits left — the one ending first. Re-sending the same marks changes nothing;
//! a mark that stops charging gives its visit back. The lesson row is locked for the
//! transaction, so concurrent requests for a lesson apply one after the other and a client is
//! never charged twice for it; a subscription's last visit is guarded by its own UPDATE.
use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Acquire, PgConnection, Postgres};
use uuid::Uuid;

use super::{check, groups::AbsenceCharge, DomainError, FieldErrors};

crate::text_enum! {
    pub enum Mark {
        Present = "present", Absent = "absent", Excused = "excused", Free = "free", Trial = "trial"
    }
}

impl Mark {
    /// Whether this mark takes a visit under the group's absence rule.
    pub fn charges(self, absence_charge: AbsenceCharge) -> bool {
        match self {
            Self::Present => true,
            Self::Absent => absence_charge != AbsenceCharge::None,
            Self::Excused => absence_charge == AbsenceCharge::All,
            Self::Free | Self::Trial => false,
        }
    }
}

/// Most marks in one request.
pub const MAX_MARKS: usize = 500;

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MarkIn {
    pub client_id: Uuid,
    pub mark: Mark,
}

/// A mark as sent (the value not yet checked): what [`parse_marks`] takes.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RawMark {
    pub client_id: Uuid,
    /// present, absent, excused, free, trial.
    #[cfg_attr(feature = "openapi", schema(value_type = Mark))]
    pub mark: String,
}

/// Checks a request's marks — 1 to [`MAX_MARKS`], each a known mark, each client once —
/// naming every bad one (`marks[i].mark`, `marks[i].client_id`).
pub fn parse_marks(raw: &[RawMark]) -> Result<Vec<MarkIn>, DomainError> {
    let mut fields = FieldErrors::new();
    if raw.is_empty() || raw.len() > MAX_MARKS {
        fields.insert("marks".into(), format!("between 1 and {MAX_MARKS} marks"));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        match m.mark.parse::<Mark>() {
            Ok(mark) => out.push(MarkIn {
                client_id: m.client_id,
                mark,
            }),
            Err(expected) => {
                fields.insert(format!("marks[{i}].mark"), expected);
            }
        }
        if !seen.insert(m.client_id) {
            fields.insert(format!("marks[{i}].client_id"), "marked twice".into());
        }
    }
    check(fields)?;
    Ok(out)
}

/// One line of a lesson's attendance: an expected member (maybe not marked yet) or anyone
/// marked (a trial visitor).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RosterLine {
    pub client_id: Uuid,
    pub full_name: String,
    /// On the lesson's roster (a member of the group when it was planned or since).
    pub expected: bool,
    /// Null until marked.
    pub mark: Option<Mark>,
    pub subscription_id: Option<Uuid>,
    /// The mark should take a visit but no valid subscription could pay for it.
    pub unpaid: bool,
    pub marked_at: Option<DateTime<Utc>>,
}

/// A lesson's attendance sheet: `{lesson_id, items, total}`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Sheet {
    pub lesson_id: Uuid,
    pub items: Vec<RosterLine>,
    pub total: usize,
}

/// Who marks: managers and admins any lesson, anyone, at any time (the office corrects); a
/// teacher (`teacher_user` = their user id) only the lessons taught by their teacher record,
/// only the clients on the lesson's roster or already on its sheet (a visitor the office
/// added) — a pupil of their own groups also as `trial` — and only within `window` of the
/// lesson's start.
#[derive(Debug, Clone, Copy)]
pub struct Marker {
    pub user_id: Uuid,
    pub teacher_user: Option<Uuid>,
    pub window: MarkingWindow,
}

/// When a teacher may mark a lesson: from `opens_before` before its start until
/// `closes_after` after it (default: from the start to seven days later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkingWindow {
    pub opens_before: chrono::Duration,
    pub closes_after: chrono::Duration,
}

impl Default for MarkingWindow {
    fn default() -> Self {
        Self {
            opens_before: chrono::Duration::zero(),
            closes_after: chrono::Duration::days(7),
        }
    }
}

impl MarkingWindow {
    /// Why a lesson starting at `starts_at` cannot be marked at `now`, if it cannot.
    pub fn refuses(&self, starts_at: DateTime<Utc>, now: DateTime<Utc>) -> Option<String> {
        let local = |t: DateTime<Utc>| {
            t.with_timezone(&crate::time::MOSCOW)
                .format("%d.%m.%Y %H:%M")
                .to_string()
        };
        let opens = starts_at - self.opens_before;
        let closes = starts_at + self.closes_after;
        if now < opens {
            Some(format!(
                "marking this lesson opens at {} (Moscow time)",
                local(opens)
            ))
        } else if now > closes {
            Some(format!(
                "marking this lesson closed at {} (Moscow time); the office can still correct it",
                local(closes)
            ))
        } else {
            None
        }
    }
}

struct LessonLock {
    status: String,
    group_id: Option<Uuid>,
    starts_at: DateTime<Utc>,
    date: NaiveDate,
    absence_charge: AbsenceCharge,
}

/// Reads (and with `lock`, locks for the transaction) the lesson and checks the marker may
/// see it: a teacher only the lessons they give, of a group not archived, their teacher
/// record active (as everywhere, a teacher sees no archived group's people).
async fn lesson(
    conn: &mut PgConnection,
    id: Uuid,
    teacher_user: Option<Uuid>,
    lock: bool,
) -> Result<LessonLock, DomainError> {
    /// status, group, start, the group's absence rule, whether it is archived, the teacher's
    /// login.
    type Row = (
        String,
        Option<Uuid>,
        DateTime<Utc>,
        Option<AbsenceCharge>,
        bool,
        Option<Uuid>,
    );
    let row: Option<Row> = sqlx::query_as(if lock {
        "select l.status, l.group_id, l.starts_at, g.absence_charge,
                    coalesce(g.status = 'archived', false),
                    case when t.active then t.user_id end
             from lessons l
             left join study_groups g on g.id = l.group_id
             left join teachers t on t.id = l.teacher_id
             where l.id = $1 and l.kind = 'lesson'
             for update of l"
    } else {
        "select l.status, l.group_id, l.starts_at, g.absence_charge,
                    coalesce(g.status = 'archived', false),
                    case when t.active then t.user_id end
             from lessons l
             left join study_groups g on g.id = l.group_id
             left join teachers t on t.id = l.teacher_id
             where l.id = $1 and l.kind = 'lesson'"
    })
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let (status, group_id, starts_at, absence_charge, archived, teacher_of_lesson) =
        row.ok_or(DomainError::NotFound)?;
    if teacher_user.is_some() && (teacher_of_lesson != teacher_user || archived) {
        return Err(DomainError::Forbidden);
    }
    Ok(LessonLock {
        status,
        group_id,
        starts_at,
        date: crate::time::moscow_date(starts_at),
        absence_charge: absence_charge.unwrap_or(AbsenceCharge::None),
    })
}

/// The roster and the marks of a lesson, by name.
async fn sheet(
    conn: &mut PgConnection,
    id: Uuid,
    absence_charge: AbsenceCharge,
) -> Result<Sheet, DomainError> {
    type Row = (
        Uuid,
        String,
        bool,
        Option<Mark>,
        Option<Uuid>,
        Option<DateTime<Utc>>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "with lines as (
             select client_id from lesson_enrolments where lesson_id = $1
             union
             select client_id from attendance where lesson_id = $1
         )
         select x.client_id, concat_ws(' ', c.last_name, c.first_name, c.middle_name),
                exists (select 1 from lesson_enrolments e
                        where e.lesson_id = $1 and e.client_id = x.client_id),
                a.mark, a.subscription_id, a.marked_at
         from lines x
         join clients c on c.id = x.client_id
         left join attendance a on a.lesson_id = $1 and a.client_id = x.client_id
         order by c.name_key, c.id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let items: Vec<RosterLine> = rows
        .into_iter()
        .map(
            |(client_id, full_name, expected, mark, subscription_id, marked_at)| RosterLine {
                unpaid: subscription_id.is_none()
                    && mark.is_some_and(|m| m.charges(absence_charge)),
                client_id,
                full_name,
                expected,
                mark,
                subscription_id,
                marked_at,
            },
        )
        .collect();
    Ok(Sheet {
        lesson_id: id,
        total: items.len(),
        items,
    })
}

/// The lesson's roster with its marks. A plain read: no row is locked, so a teacher reading
/// the sheet never waits behind a marking in progress.
pub async fn show(
    db: impl Acquire<'_, Database = Postgres>,
    id: Uuid,
    teacher_user: Option<Uuid>,
) -> Result<Sheet, DomainError> {
    let mut conn = db.acquire().await?;
    let lesson = lesson(&mut conn, id, teacher_user, false).await?;
    sheet(&mut conn, id, lesson.absence_charge).await
}

/// Saves marks and charges or gives back visits, in one transaction under a lock on the
/// lesson row; returns the sheet after the change.
pub async fn mark(
    db: impl Acquire<'_, Database = Postgres>,
    id: Uuid,
    marks: &[MarkIn],
    marker: Marker,
) -> Result<Sheet, DomainError> {
    let mut fields = FieldErrors::new();
    if marks.is_empty() || marks.len() > MAX_MARKS {
        fields.insert("marks".into(), format!("between 1 and {MAX_MARKS} marks"));
    }
    let mut seen = HashSet::new();
    for (i, m) in marks.iter().enumerate() {
        if !seen.insert(m.client_id) {
            fields.insert(format!("marks[{i}].client_id"), "marked twice".into());
        }
    }
    check(fields)?;
    let clients: Vec<Uuid> = marks.iter().map(|m| m.client_id).collect();
    let values: Vec<Mark> = marks.iter().map(|m| m.mark).collect();

    let mut tx = db.begin().await?;
    let lesson = lesson(&mut tx, id, marker.teacher_user, true).await?;
    if lesson.status == "cancelled" {
        return Err(DomainError::Conflict(
            "the lesson is cancelled; nobody can be marked".into(),
        ));
    }
    if marker.teacher_user.is_some() {
        if let Some(refusal) = marker.window.refuses(lesson.starts_at, Utc::now()) {
            return Err(DomainError::Conflict(refusal));
        }
        // Who this teacher may mark: the lesson's roster; a visitor already on its sheet (the
        // office added them, or a trial) only with the mark stored, so a visitor is never
        // turned into a charged visit; and, as `trial` only, a pupil of their own groups.
        // Anyone else is refused as if unknown: a teacher learns nothing about other clients.
        let (roster, theirs): (Vec<Uuid>, Vec<Uuid>) = sqlx::query_as(
            "select array(select client_id from lesson_enrolments
                          where lesson_id = $1 and client_id = any($2)),
                    array(select c from teacher_clients($3) c where c = any($2))",
        )
        .bind(id)
        .bind(&clients)
        .bind(marker.teacher_user)
        .fetch_one(&mut *tx)
        .await?;
        let stored: Vec<(Uuid, Mark)> = sqlx::query_as(
            "select client_id, mark from attendance where lesson_id = $1 and client_id = any($2)",
        )
        .bind(id)
        .bind(&clients)
        .fetch_all(&mut *tx)
        .await?;
        let mut fields = FieldErrors::new();
        for (i, m) in marks.iter().enumerate() {
            let allowed = roster.contains(&m.client_id)
                || stored.contains(&(m.client_id, m.mark))
                || (m.mark == Mark::Trial && theirs.contains(&m.client_id));
            if !allowed {
                fields.insert(
                    format!("marks[{i}].client_id"),
                    "not on this lesson's roster: a visitor is marked trial (a pupil of your \
                     groups) or by the office"
                        .into(),
                );
            }
        }
        check(fields)?;
    }
    // Save the marks; learn which visit each client had charged before.
    let before: Vec<(Uuid, Mark, Option<Uuid>)> = sqlx::query_as(
        "with input as (select * from unnest($2::uuid[], $3::text[]) as i(client_id, mark)),
         old as (select client_id, subscription_id from attendance
                 where lesson_id = $1 and client_id = any($2)),
         saved as (
             insert into attendance (lesson_id, client_id, mark, marked_by)
             select $1, client_id, mark, $4 from input
             on conflict (lesson_id, client_id) do update
                 set mark = excluded.mark, marked_by = excluded.marked_by,
                     marked_at = case when attendance.mark = excluded.mark
                                      then attendance.marked_at else now() end
             returning client_id
         )
         select i.client_id, i.mark, o.subscription_id
         from input i left join old o on o.client_id = i.client_id
         where exists (select 1 from saved s where s.client_id = i.client_id)",
    )
    .bind(id)
    .bind(&clients)
    .bind(&values)
    .bind(marker.user_id)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| {
        DomainError::on_constraint(
            e,
            &[(
                "attendance_client_id_fkey",
                "marks",
                "a client does not exist",
            )],
        )
    })?;

    let mut release = Vec::new();
    let mut charge = Vec::new();
    for (client, mark, charged) in &before {
        match (charged, mark.charges(lesson.absence_charge)) {
            (Some(sub), false) => release.push((*client, *sub)),
            (None, true) => charge.push(*client),
            _ => {}
        }
    }
    // Every subscription this marking may touch — visits given back and the charged clients'
    // active ones — locked in id order before any update: two markings never wait on each
    // other crosswise.
    let released: Vec<Uuid> = release.iter().map(|r| r.1).collect();
    if !release.is_empty() || !charge.is_empty() {
        sqlx::query(
            "select s.id from subscriptions s
             where s.id = any($1) or (s.client_id = any($2) and s.status = 'active')
             order by s.id for update",
        )
        .bind(&released)
        .bind(&charge)
        .execute(&mut *tx)
        .await?;
    }
    if !release.is_empty() {
        let (rc, rs): (Vec<Uuid>, Vec<Uuid>) = release.into_iter().unzip();
        sqlx::query(
            "with given_back as (
                 update subscriptions s set visits_used = s.visits_used - 1, updated_at = now()
                 from unnest($2::uuid[]) as r(id) where s.id = r.id
                 returning s.id
             )
             update attendance set subscription_id = null
             where lesson_id = $1 and client_id = any($3)",
        )
        .bind(id)
        .bind(&rs)
        .bind(&rc)
        .execute(&mut *tx)
        .await?;
    }
    if let (false, Some(group_id)) = (charge.is_empty(), lesson.group_id) {
        // Each client's first valid subscription is charged; the UPDATE re-checks visits left
        // against the row locked above.
        sqlx::query(
            "with pick as (
                 select distinct on (s.client_id) s.id, s.client_id
                 from subscriptions s
                 join plan_groups pg on pg.plan_id = s.plan_id and pg.group_id = $3
                 where s.client_id = any($2) and s.status = 'active'
                   and $4::date between s.begins_on and s.ends_on
                   and not (s.freeze_from is not null and $4::date between s.freeze_from and s.freeze_to)
                   and (s.visits_total is null or s.visits_used < s.visits_total)
                 order by s.client_id, s.ends_on, s.id
             ), charged as (
                 update subscriptions s set visits_used = s.visits_used + 1, updated_at = now()
                 from pick
                 where s.id = pick.id and (s.visits_total is null or s.visits_used < s.visits_total)
                 returning s.id, pick.client_id
             )
             update attendance a set subscription_id = c.id
             from charged c where a.lesson_id = $1 and a.client_id = c.client_id",
        )
        .bind(id)
        .bind(&charge)
        .bind(group_id)
        .bind(lesson.date)
        .execute(&mut *tx)
        .await?;
    }
    let sheet = sheet(&mut tx, id, lesson.absence_charge).await?;
    tx.commit().await?;
    Ok(sheet)
}

/// Gives back every visit charged for a lesson (the lesson is being cancelled), in the
/// caller's transaction.
pub async fn release_lesson(conn: &mut PgConnection, lesson_id: Uuid) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "select s.id from subscriptions s
         where s.id in (select subscription_id from attendance
                        where lesson_id = $1 and subscription_id is not null)
         order by s.id for update",
    )
    .bind(lesson_id)
    .execute(&mut *conn)
    .await?;
    let released = sqlx::query(
        "with charged as (
             select subscription_id, count(*) as n from attendance
             where lesson_id = $1 and subscription_id is not null group by subscription_id
         ), given_back as (
             update subscriptions s set visits_used = s.visits_used - c.n, updated_at = now()
             from charged c where s.id = c.subscription_id
         )
         update attendance set subscription_id = null
         where lesson_id = $1 and subscription_id is not null",
    )
    .bind(lesson_id)
    .execute(conn)
    .await?;
    Ok(released.rows_affected())
}
