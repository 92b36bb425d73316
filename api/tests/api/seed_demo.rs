//! `seed-demo` fills an empty database with a consistent demo centre, and refuses a used one.
#![allow(clippy::unwrap_used)]

use sqlx::PgPool;

#[sqlx::test(migrations = false)]
async fn the_demo_centre_is_seeded_once_and_consistently(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let seeded = api::seed::seed_demo(&db).await.unwrap();
    assert_eq!(
        (seeded.rooms, seeded.teachers, seeded.groups, seeded.clients),
        (30, 60, 300, 8000)
    );
    assert_eq!(seeded.memberships, 8000);
    // Two lessons a week per group over two months, none lost to a clash.
    assert!(seeded.lessons >= 300 * 2 * 8, "{seeded:?}");
    let per_group: (i64, i64) = sqlx::query_as(
        "select min(n), max(n) from (select count(*) as n from lessons group by group_id) c",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(per_group.0 >= 16 && per_group.1 <= 20, "{per_group:?}");
    assert!(
        seeded.attendance > 50_000 && seeded.subscriptions > 7000,
        "{seeded:?}"
    );
    // Charged visits agree with the counters, never above a subscription's visits.
    let mismatched: i64 = sqlx::query_scalar(
        "select count(*) from subscriptions s
         where s.visits_used <> (select count(*) from attendance a where a.subscription_id = s.id)",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(mismatched, 0);
    let future_held: i64 = sqlx::query_scalar(
        "select count(*) from lessons where status = 'held' and ends_at > now()",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(future_held, 0);

    let again = api::seed::seed_demo(&db).await;
    assert!(matches!(again, Err(api::seed::SeedError::NotEmpty)));
}
