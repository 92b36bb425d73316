//! Bulk scheduling under a crash: a real worker process SIGKILLed in the middle of the job
//! (plan expanded and checked, its transaction open, held at the write), restarted: the plan
//! is written exactly once.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use chrono::{Datelike, NaiveDate, NaiveTime};
use jobs::kinds::scheduling::{BulkSchedule, Mode, PlanEntry};
use sqlx::PgPool;
use uuid::Uuid;

#[sqlx::test(migrations = false)]
async fn a_worker_killed_mid_plan_and_restarted_writes_every_lesson_exactly_once(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let url = db_url(&db);
    let groups = bench::plan_groups(&db, 20, 4).await.unwrap();
    let (from, to) = (
        NaiveDate::from_ymd_opt(2027, 2, 1).unwrap(),
        NaiveDate::from_ymd_opt(2027, 5, 31).unwrap(),
    );
    let plan = BulkSchedule {
        plan_id: Uuid::new_v4(),
        from,
        to,
        holidays: vec![],
        mode: Mode::AllOrNothing,
        dry_run: false,
        entries: groups
            .iter()
            .map(|&(group_id, room_id, teacher_id)| PlanEntry {
                group_id,
                weekdays: vec![2, 5],
                start_time: NaiveTime::from_hms_opt(17, 0, 0).unwrap(),
                duration_min: 90,
                room_id,
                teacher_id,
            })
            .collect(),
    };
    let expected = 20
        * (0..=(to - from).num_days())
            .map(|d| from + chrono::Duration::days(d))
            .filter(|d| [2, 5].contains(&d.weekday().number_from_monday()))
            .count() as i64;

    // Hold the job at its write statement (it needs lesson_enrolments): transaction open.
    let mut hold = db.begin().await.unwrap();
    sqlx::query("lock table lesson_enrolments in access exclusive mode")
        .execute(&mut *hold)
        .await
        .unwrap();
    let mut a = WorkerProc::start(&url, "replica-a", free_port(), &[]).await;
    let id = enqueue(&db, &[plan]).await.remove(0);
    wait_for("the plan checked", Duration::from_secs(30), || async {
        let p: i16 = sqlx::query_scalar("select progress_percent from job_runs where id = $1")
            .bind(&id)
            .fetch_one(&db)
            .await
            .unwrap();
        (p >= 50).then_some(())
    })
    .await;
    a.kill().await;
    hold.rollback().await.unwrap();

    let _a2 = a.restart_same().await;
    wait_for("the plan written", Duration::from_secs(60), || async {
        let (state, attempts): (String, i32) =
            sqlx::query_as("select state, attempts from job_runs where id = $1")
                .bind(&id)
                .fetch_one(&db)
                .await
                .unwrap();
        assert_ne!(state, "failed");
        (state == "succeeded").then_some(attempts)
    })
    .await;
    let (lessons, distinct, enrolments, attempts): (i64, i64, i64, i32) = sqlx::query_as(
        "select (select count(*) from lessons),
                (select count(distinct (group_id, starts_at)) from lessons),
                (select count(*) from lesson_enrolments),
                (select attempts from job_runs where id = $1)",
    )
    .bind(&id)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(attempts, 2, "the killed attempt and the one that finished");
    assert_eq!(lessons, expected);
    assert_eq!(distinct, expected, "no duplicates");
    assert_eq!(enrolments, expected * 4);
}
