//! Reads everything a month's timesheet shows, in four queries whatever the number of groups.
use std::collections::HashMap;

use chrono::Utc;
use shared::time::Month;
use sqlx::PgPool;
use uuid::Uuid;

/// A day's mark as the cell shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayMark {
    Present,
    Absent,
    Excused,
}

impl DayMark {
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Present => "+",
            Self::Absent => "Н",
            Self::Excused => "У",
        }
    }

    /// Several lessons on one day: present wins, then absent.
    fn merge(a: Option<Self>, b: Self) -> Self {
        match (a, b) {
            (Some(Self::Present), _) | (_, Self::Present) => Self::Present,
            (Some(Self::Absent), _) | (_, Self::Absent) => Self::Absent,
            _ => Self::Excused,
        }
    }
}

/// One row of a group's sheet.
#[derive(Debug, Clone, Default)]
pub struct MemberRow {
    pub name: String,
    /// Index 0 = day 1.
    pub days: Vec<Option<DayMark>>,
    pub visits: u32,
    pub absences: u32,
    pub excused: u32,
}

#[derive(Debug, Clone, Default)]
pub struct GroupSheet {
    pub id: Uuid,
    pub name: String,
    pub teacher: String,
    pub room: Option<String>,
    /// Lessons per day (index 0 = day 1), cancelled excluded.
    pub lessons_per_day: Vec<u32>,
    pub members: Vec<MemberRow>,
}

impl GroupSheet {
    pub fn lessons(&self) -> u32 {
        self.lessons_per_day.iter().sum()
    }

    pub(crate) fn totals(&self) -> (u32, u32, u32) {
        self.members.iter().fold((0, 0, 0), |(v, a, e), m| {
            (v + m.visits, a + m.absences, e + m.excused)
        })
    }
}

/// Everything the workbook shows, loaded before writing.
#[derive(Debug, Clone)]
pub struct Timesheet {
    pub month: Month,
    pub generated_at: chrono::DateTime<Utc>,
    pub groups: Vec<GroupSheet>,
}

/// Loads the month's groups, rows, lessons and marks: four queries, whatever the group count.
pub async fn load(
    db: &PgPool,
    month: Month,
    group_ids: Option<&[Uuid]>,
    teacher_id: Option<Uuid>,
) -> Result<Timesheet, sqlx::Error> {
    let (from, to) = month.utc_range();
    let days = month.days() as usize;
    let groups: Vec<(Uuid, String, String, Option<String>)> = sqlx::query_as(
        "select g.id, g.name, t.full_name, r.name
         from study_groups g
         join teachers t on t.id = g.teacher_id
         left join rooms r on r.id = g.room_id
         where ($1::uuid[] is null or g.id = any($1))
           and ($2::uuid is null or g.teacher_id = $2)
           and ($1::uuid[] is not null or g.status <> 'archived'
                or exists (select 1 from lessons l where l.group_id = g.id
                           and l.starts_at >= $3 and l.starts_at < $4))
         order by g.name, g.id",
    )
    .bind(group_ids)
    .bind(teacher_id)
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await?;
    let ids: Vec<Uuid> = groups.iter().map(|g| g.0).collect();
    let mut sheets: Vec<GroupSheet> = groups
        .into_iter()
        .map(|(id, name, teacher, room)| GroupSheet {
            id,
            name,
            teacher,
            room,
            lessons_per_day: vec![0; days],
            members: Vec::new(),
        })
        .collect();
    let by_id: HashMap<Uuid, usize> = sheets.iter().enumerate().map(|(i, g)| (g.id, i)).collect();

    let rows: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
        "select x.group_id, c.id,
                concat_ws(' ', c.last_name, c.first_name, c.middle_name)
         from (select m.group_id, m.client_id from group_members m
               where m.group_id = any($1) and m.status in ('active', 'left')
                 and (m.joined_on is null or m.joined_on < $3)
                 and (m.left_on is null or m.left_on >= $2)
               union
               select l.group_id, a.client_id from attendance a
               join lessons l on l.id = a.lesson_id
               where l.group_id = any($1) and l.status <> 'cancelled'
                 and l.starts_at >= $4 and l.starts_at < $5) x
         join clients c on c.id = x.client_id
         order by x.group_id, c.name_key, c.id",
    )
    .bind(&ids)
    .bind(month.first_day())
    .bind(month.next().first_day())
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await?;
    let mut row_of: HashMap<(Uuid, Uuid), usize> = HashMap::with_capacity(rows.len());
    for (group, client, name) in rows {
        if let Some(&g) = by_id.get(&group) {
            row_of.insert((group, client), sheets[g].members.len());
            sheets[g].members.push(MemberRow {
                name,
                days: vec![None; days],
                ..MemberRow::default()
            });
        }
    }

    let lessons: Vec<(Uuid, i32)> = sqlx::query_as(
        "select group_id, extract(day from starts_at at time zone 'Europe/Moscow')::int
         from lessons
         where group_id = any($1) and status <> 'cancelled' and starts_at >= $2 and starts_at < $3",
    )
    .bind(&ids)
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await?;
    for (group, day) in lessons {
        if let (Some(&g), Some(d)) = (by_id.get(&group), day_index(day, days)) {
            sheets[g].lessons_per_day[d] += 1;
        }
    }

    let marks: Vec<(Uuid, Uuid, i32, String)> = sqlx::query_as(
        "select l.group_id, a.client_id,
                extract(day from l.starts_at at time zone 'Europe/Moscow')::int, a.mark
         from attendance a join lessons l on l.id = a.lesson_id
         where l.group_id = any($1) and l.status <> 'cancelled'
           and l.starts_at >= $2 and l.starts_at < $3",
    )
    .bind(&ids)
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await?;
    for (group, client, day, mark) in marks {
        let (Some(&g), Some(&r), Some(d)) = (
            by_id.get(&group),
            row_of.get(&(group, client)),
            day_index(day, days),
        ) else {
            continue;
        };
        let row = &mut sheets[g].members[r];
        let mark = match mark.as_str() {
            "absent" => {
                row.absences += 1;
                DayMark::Absent
            }
            "excused" => {
                row.absences += 1;
                row.excused += 1;
                DayMark::Excused
            }
            // present, free, trial: the client came.
            _ => {
                row.visits += 1;
                DayMark::Present
            }
        };
        row.days[d] = Some(DayMark::merge(row.days[d], mark));
    }
    Ok(Timesheet {
        month,
        generated_at: Utc::now(),
        groups: sheets,
    })
}

fn day_index(day: i32, days: usize) -> Option<usize> {
    usize::try_from(day - 1).ok().filter(|&d| d < days)
}
