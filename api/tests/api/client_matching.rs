//! Match-or-create (the rule imports use): a contact is found by e-mail, by phone, or both,
//! never duplicated, and a contradiction is reported, not guessed.
use shared::domain::clients::{self, ClientInput, Contact, Email, Match, Phone};
use sqlx::PgPool;

async fn client(
    db: &PgPool,
    last: &str,
    first: &str,
    phone: Option<&str>,
    email: Option<&str>,
) -> uuid::Uuid {
    let input = ClientInput {
        last_name: last.into(),
        first_name: first.into(),
        phone: phone.and_then(Phone::parse),
        email: email.and_then(Email::parse),
        ..ClientInput::default()
    };
    clients::save(db, None, &input).await.unwrap().id
}

fn contact(last: &str, first: &str, phone: Option<&str>, email: Option<&str>) -> Contact {
    Contact {
        last_name: last.into(),
        first_name: first.into(),
        phone: phone.and_then(Phone::parse),
        email: email.and_then(Email::parse),
    }
}

async fn resolve(db: &PgPool, c: &Contact) -> Match {
    let mut tx = db.begin().await.unwrap();
    let m = clients::match_or_create(&mut tx, c).await.unwrap();
    tx.commit().await.unwrap();
    m
}

#[sqlx::test(migrations = false)]
async fn contacts_match_by_email_or_phone_and_contradictions_are_conflicts(db: PgPool) {
    jobs::engine::migrate(&db).await.unwrap();
    let ivan = client(
        &db,
        "Иванов",
        "Иван",
        Some("+79160000001"),
        Some("ivan@example.ru"),
    )
    .await;
    let olga = client(&db, "Петрова", "Ольга", Some("+79160000002"), None).await;
    // A family phone: a parent and a child share it.
    let mother = client(&db, "Сидорова", "Анна", Some("+79160000003"), None).await;
    let son = client(&db, "Сидоров", "Лев", Some("+79160000003"), None).await;

    // By e-mail (any case), by phone (any local form), by both.
    let by_email = contact("Иванов", "Иван", None, Some("IVAN@example.ru"));
    assert_eq!(
        resolve(&db, &by_email).await,
        Match::Matched { client_id: ivan }
    );
    let by_phone = contact("Петрова", "Оля", Some("8 (916) 000-00-02"), None);
    assert_eq!(
        resolve(&db, &by_phone).await,
        Match::Matched { client_id: olga }
    );
    let both = contact(
        "Иванов",
        "Иван",
        Some("+7 916 000 00 01"),
        Some("ivan@example.ru"),
    );
    assert_eq!(
        resolve(&db, &both).await,
        Match::Matched { client_id: ivan }
    );

    // A shared phone: the name decides; without a name match it is a conflict.
    let m = resolve(&db, &contact("Сидоров", "Лев", Some("89160000003"), None)).await;
    assert_eq!(m, Match::Matched { client_id: son });
    let m = resolve(
        &db,
        &contact("Кузнецова", "Мария", Some("89160000003"), None),
    )
    .await;
    let mut both_ids = vec![mother, son];
    both_ids.sort();
    assert_eq!(
        m,
        Match::Conflict {
            candidates: both_ids
        }
    );

    // The e-mail says Ivan, the phone says Olga: recorded as a conflict, nothing created.
    let m = resolve(
        &db,
        &contact(
            "Иванов",
            "Иван",
            Some("+79160000002"),
            Some("ivan@example.ru"),
        ),
    )
    .await;
    let mut pair = vec![ivan, olga];
    pair.sort();
    assert_eq!(m, Match::Conflict { candidates: pair });

    // Someone new is created once, then matched.
    let new = contact(
        "Новикова",
        "Дарья",
        Some("+79160000009"),
        Some("daria@example.ru"),
    );
    let Match::Created { client_id } = resolve(&db, &new).await else {
        panic!("expected a new client")
    };
    assert_eq!(resolve(&db, &new).await, Match::Matched { client_id });
    // Concurrent imports of the same new buyer create one client.
    let twin = contact("Орлова", "Вера", Some("+79160000010"), None);
    let (x, y) = tokio::join!(resolve(&db, &twin), resolve(&db, &twin));
    let created = [&x, &y]
        .iter()
        .filter(|m| matches!(m, Match::Created { .. }))
        .count();
    assert_eq!(created, 1, "{x:?} {y:?}");
    let count: i64 =
        sqlx::query_scalar("select count(*) from clients where phone = '+79160000010'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(count, 1);
    assert!(clients::match_or_create(
        &mut db.acquire().await.unwrap(),
        &contact("X", "Y", None, None)
    )
    .await
    .is_err());
}
