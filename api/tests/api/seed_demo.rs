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

    // People a person believes: thousands of distinct full names (the first seed had 30),
    // gendered forms, children younger than the guardian whose surname they carry.
    let (distinct, largest_namesake): (i64, i64) = sqlx::query_as(
        "select count(*), max(n) from (select count(*) as n from clients
                                       group by last_name, first_name, middle_name) c",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(distinct > 6000, "{distinct} distinct full names");
    assert!(
        largest_namesake <= 5,
        "{largest_namesake} clients share one full name"
    );
    let mismatched_gender: i64 = sqlx::query_scalar(
        "select count(*) from clients
         where (middle_name like '%вна' or middle_name = 'Ильинична') <> (first_name in (
                 select unnest(array['Анна','Мария','Елена','Ольга','Наталья','Ирина','Татьяна',
                   'Светлана','Екатерина','Юлия','Дарья','Алиса','Полина','Софья','Виктория',
                   'Ксения','Вера','Надежда','Людмила','Галина','Марина','Алёна','Анастасия',
                   'Евгения','Валентина','Любовь','Кира','Варвара','Ульяна','Милана','Ева',
                   'Василиса','Арина','Вероника','Диана','Злата','Лилия','Маргарита','Нина',
                   'Оксана','Раиса','Таисия','Эльвира','Яна','Зоя'])))
            or (middle_name like '%вна' and last_name ~ '(ов|ев|ёв|ин)$')
            or (middle_name like '%вич' and last_name ~ '(ова|ева|ёва|ина)$')",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(mismatched_gender, 0, "gendered name forms agree");
    let (children, younger, same_family): (i64, i64, i64) = sqlx::query_as(
        "select count(*), count(*) filter (where k.birth_date > g.birth_date + 15 * 365),
                count(*) filter (where left(k.last_name, 4) = left(g.last_name, 4))
         from clients k join clients g on g.id = k.guardian_id",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((children, younger, same_family), (1600, 1600, 1600));
    // A father's first name is his child's patronymic (Кирилл → Кириллович / Кирилловна).
    let fathers_names_wrong: i64 = sqlx::query_scalar(
        "select count(*) from clients k join clients g on g.id = k.guardian_id
         where (g.middle_name like '%вич' or g.middle_name = 'Ильич')
           and left(translate(k.middle_name, 'ё', 'е'), 2)
               <> left(translate(g.first_name, 'ё', 'е'), 2)",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(fathers_names_wrong, 0);
    let (chats, telegram_opt_outs, email_opt_outs): (i64, i64, i64) = sqlx::query_as(
        "select count(telegram_chat_id), count(*) filter (where not notify_telegram),
                count(*) filter (where not notify_email) from clients",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(chats > 1500 && chats < 2500, "{chats} linked chats");
    assert!(
        telegram_opt_outs > 200 && email_opt_outs > 150,
        "{telegram_opt_outs} {email_opt_outs}"
    );

    let again = api::seed::seed_demo(&db).await;
    assert!(matches!(again, Err(api::seed::SeedError::NotEmpty)));
}
