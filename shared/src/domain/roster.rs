//! Who is expected at a lesson (`lesson_enrolments`): the roster a teacher marks and that
//! reminders go to. Every path that creates lessons or changes membership keeps it here, so
//! it cannot drift:
//! - a new lesson (one, or a bulk plan) expects the group's members active on its Moscow date;
//! - an active member (an enrolment, a promotion from the waitlist) joins the rosters of the
//!   group's lessons from that day on that have not started;
//! - a member who leaves leaves the rosters of lessons after the last day that have not started
//!   and carry no mark for them.
//!
//! Lessons that have started keep their roster: it is the record of who was expected.
//! A moved lesson keeps its roster; a cancelled one keeps it too (it expects nobody any more,
//! and the cancellation is what a reader sees).
use chrono::NaiveDate;
use sqlx::PgConnection;
use uuid::Uuid;

/// The insert that fills the rosters of new lessons from `source`, a row source (table or
/// CTE name) with the columns `id`, `group_id`, `starts_at` of lessons that have no roster
/// yet: no conflict handling is needed, so a bulk plan's statement can embed it over its
/// `INSERT … RETURNING`.
pub fn fill_new_lessons_sql(source: &str) -> String {
    format!(
        "insert into lesson_enrolments (lesson_id, client_id)
         select n.id, m.client_id
         from {source} n
         join group_members m on m.group_id = n.group_id and m.status = 'active'
          and (m.joined_on is null
               or m.joined_on <= (n.starts_at at time zone 'Europe/Moscow')::date)"
    )
}

/// Fills the rosters of lessons just created (in the caller's transaction). Returns the
/// number of roster rows.
pub async fn fill_new_lessons(
    conn: &mut PgConnection,
    lesson_ids: &[Uuid],
) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "with new as (select id, group_id, starts_at from lessons
                      where id = any($1) and group_id is not null)
         {}",
        fill_new_lessons_sql("new")
    );
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(lesson_ids)
        .execute(conn)
        .await?
        .rows_affected())
}

/// An active member from `from` (Moscow date) on: added to the group's scheduled lessons of
/// that day or later that have not started.
pub async fn join(
    conn: &mut PgConnection,
    group_id: Uuid,
    client_id: Uuid,
    from: NaiveDate,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "insert into lesson_enrolments (lesson_id, client_id)
         select l.id, $2 from lessons l
         where l.group_id = $1 and l.status = 'scheduled' and l.starts_at > now()
           and (l.starts_at at time zone 'Europe/Moscow')::date >= $3
         on conflict do nothing",
    )
    .bind(group_id)
    .bind(client_id)
    .bind(from)
    .execute(conn)
    .await?
    .rows_affected())
}

/// A member whose last day is `last_day`: removed from the group's lessons after it that have
/// not started and have no mark for them. Those lessons are locked first (in id order, as
/// marking locks its lesson), and the marks are read by a later statement: a mark being saved
/// for one of them (a teacher's window may open before the start) is waited for and seen, so a
/// marked client never loses their place on the roster.
pub async fn leave(
    conn: &mut PgConnection,
    group_id: Uuid,
    client_id: Uuid,
    last_day: NaiveDate,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "select l.id from lessons l
         where l.group_id = $1 and l.starts_at > now()
           and (l.starts_at at time zone 'Europe/Moscow')::date > $2
         order by l.id for update",
    )
    .bind(group_id)
    .bind(last_day)
    .execute(&mut *conn)
    .await?;
    Ok(sqlx::query(
        "delete from lesson_enrolments e using lessons l
         where e.lesson_id = l.id and e.client_id = $2
           and l.group_id = $1 and l.starts_at > now()
           and (l.starts_at at time zone 'Europe/Moscow')::date > $3
           and not exists (select 1 from attendance a
                           where a.lesson_id = l.id and a.client_id = $2)",
    )
    .bind(group_id)
    .bind(client_id)
    .bind(last_day)
    .execute(conn)
    .await?
    .rows_affected())
}
