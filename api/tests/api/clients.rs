//! Clients: E.164 phones, partial updates, archive, search by name / phone fragment with
//! totals, validation naming the field, roles, and the list page in one statement.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

async fn created(app: &TestApp, token: &str, body: Value) -> Value {
    let res = app.post(token, "/api/clients", body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

async fn list(app: &TestApp, token: &str, query: &str) -> Value {
    let res = app.get(token, &format!("/api/clients?{query}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

#[sqlx::test(migrations = false)]
async fn a_client_is_created_with_an_e164_phone_updated_in_part_and_archived(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let (_, token) = app.user("manager").await;
    let mother = created(
        &app,
        &token,
        json!({"last_name": "Петрова", "first_name": "Анна", "phone": "8 (916) 123-45-67",
               "email": "Anna@Example.ORG"}),
    )
    .await;
    assert_eq!(mother["phone"], "+79161234567");
    assert_eq!(mother["email"], "anna@example.org");
    assert_eq!(mother["full_name"], "Петрова Анна");
    assert_eq!(mother["notify"], json!({"telegram": true, "email": true}));
    let child = created(
        &app,
        &token,
        json!({"last_name": "Петров", "first_name": "Иван", "middle_name": "Сергеевич",
               "birth_date": "2016-03-01", "guardian_id": mother["id"]}),
    )
    .await;
    assert_eq!(child["guardian_id"], mother["id"]);

    let id = child["id"].as_str().unwrap();
    let res = app
        .patch(
            &token,
            &format!("/api/clients/{id}"),
            json!({"middle_name": null, "telegram_chat_id": 123456789, "notify": {"email": false}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let updated: Value = res.json().await.unwrap();
    assert_eq!(updated["middle_name"], Value::Null);
    assert_eq!(updated["last_name"], "Петров", "fields not sent stay");
    assert_eq!(updated["birth_date"], "2016-03-01");
    assert_eq!(updated["telegram_chat_id"], 123456789);
    assert_eq!(updated["notify"], json!({"telegram": true, "email": false}));

    let res = app
        .post(&token, &format!("/api/clients/{id}/archive"), json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        list(&app, &token, "").await["total"],
        1,
        "archived clients are hidden"
    );
    assert_eq!(list(&app, &token, "archived=true").await["total"], 2);
    let shown: Value = app
        .get(&token, &format!("/api/clients/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["archived"], true);
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn bad_client_input_is_422_naming_every_field_and_writes_nothing(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, token) = app.user("manager").await;
    let res = app
        .post(
            &token,
            "/api/clients",
            json!({"first_name": "  ", "phone": "12-34", "email": "nope", "birth_date": "2099-01-01",
                   "guardain_id": "x"}),
        )
        .await;
    let error = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    for field in [
        "last_name",
        "first_name",
        "phone",
        "email",
        "birth_date",
        "guardain_id",
    ] {
        assert!(error["fields"][field].is_string(), "{field}: {error}");
    }
    let res = app
        .post(
            &token,
            "/api/clients",
            json!({"last_name": "Сидоров", "first_name": "Олег",
                   "guardian_id": "00000000-0000-0000-0000-000000000001"}),
        )
        .await;
    let error = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error["fields"]["guardian_id"], "no such client");
    let count: i64 = sqlx::query_scalar("select count(*) from clients")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(count, 0);

    let c = created(
        &app,
        &token,
        json!({"last_name": "Сидоров", "first_name": "Олег"}),
    )
    .await;
    let id = c["id"].as_str().unwrap();
    let res = app
        .patch(
            &token,
            &format!("/api/clients/{id}"),
            json!({"guardian_id": id}),
        )
        .await;
    error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    let res = app.get(&token, "/api/clients/not-a-uuid").await;
    assert!(res.status().is_client_error());
    let res = app
        .get(&token, "/api/clients/00000000-0000-0000-0000-000000000001")
        .await;
    error_body(res, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn teachers_read_clients_but_cannot_write_them(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let (_, manager) = app.user("manager").await;
    let (_, teacher) = app.user("teacher").await;
    let c = created(
        &app,
        &manager,
        json!({"last_name": "Орлова", "first_name": "Вера"}),
    )
    .await;
    let res = app
        .post(
            &teacher,
            "/api/clients",
            json!({"last_name": "X", "first_name": "Y"}),
        )
        .await;
    error_body(res, StatusCode::FORBIDDEN).await;
    let res = app
        .patch(
            &teacher,
            &format!("/api/clients/{}", c["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    error_body(res, StatusCode::FORBIDDEN).await;
    // Vera is nobody's pupil: the teacher does not see her.
    assert_eq!(list(&app, &teacher, "").await["total"], 0);
    app.stop().await;
}

/// A teacher reads the clients, subscriptions and rosters of their own groups only (many
/// clients are children): every search kind, the card, subscriptions; others are not found.
/// Invoices are the office's.
#[sqlx::test(migrations = false)]
async fn teachers_read_only_their_groups_members(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let (_, manager) = app.user("manager").await;
    let (teacher_user, teacher) = app.user("teacher").await;
    let mine = ok(
        &app,
        &manager,
        "/api/teachers",
        json!({"full_name": "Анна Петровна", "user_id": teacher_user}),
    )
    .await;
    let other = ok(
        &app,
        &manager,
        "/api/teachers",
        json!({"full_name": "Пётр"}),
    )
    .await;
    let my_group = ok(
        &app,
        &manager,
        "/api/groups",
        json!({"name": "Скрипка", "teacher_id": mine["id"], "capacity": 10}),
    )
    .await;
    let other_group = ok(
        &app,
        &manager,
        "/api/groups",
        json!({"name": "Флейта", "teacher_id": other["id"], "capacity": 10}),
    )
    .await;
    let pupil = created(&app, &manager, json!({"last_name": "Орлова", "first_name": "Вера", "phone": "+7 916 111-22-33", "email": "vera@example.ru"})).await;
    let stranger = created(&app, &manager, json!({"last_name": "Орлов", "first_name": "Иван", "phone": "+7 916 111-22-44", "email": "ivan@example.ru"})).await;
    for (group, client) in [(&my_group, &pupil), (&other_group, &stranger)] {
        ok(
            &app,
            &manager,
            &format!("/api/groups/{}/members", group["id"].as_str().unwrap()),
            json!({"client_id": client["id"]}),
        )
        .await;
    }
    let plan = ok(&app, &manager, "/api/subscription-plans", json!({"name": "Все", "visits": 4, "validity_days": 30, "price": "1000.00", "group_ids": [my_group["id"], other_group["id"]]})).await;
    let mut subscriptions = Vec::new();
    for client in [&pupil, &stranger] {
        let sale = ok(
            &app,
            &manager,
            "/api/subscriptions",
            json!({"client_id": client["id"], "plan_id": plan["id"]}),
        )
        .await;
        subscriptions.push(sale["subscription"]["id"].as_str().unwrap().to_string());
    }

    for query in [
        "",
        "search=Орлов",
        "search=Орл",
        "search=916",
        "search=9161112",
        "search=example",
    ] {
        let office = list(&app, &manager, query).await;
        let theirs = list(&app, &teacher, query).await;
        assert_eq!(office["total"], 2, "{query}");
        assert_eq!(theirs["total"], 1, "{query}");
        assert_eq!(theirs["items"][0]["id"], pupil["id"], "{query}");
    }
    assert_eq!(list(&app, &teacher, "search=Иван").await["total"], 0);
    let card = |c: &Value| format!("/api/clients/{}", c["id"].as_str().unwrap());
    assert_eq!(
        app.get(&teacher, &card(&pupil)).await.status(),
        StatusCode::OK
    );
    error_body(
        app.get(&teacher, &card(&stranger)).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    let subs: Value = app
        .get(&teacher, "/api/subscriptions")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(subs["total"], 1);
    assert_eq!(subs["items"][0]["id"], subscriptions[0]);
    let subs: Value = app
        .get(
            &teacher,
            &format!(
                "/api/subscriptions?client_id={}",
                stranger["id"].as_str().unwrap()
            ),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(subs["total"], 0);
    let office: Value = app
        .get(&manager, "/api/subscriptions")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(office["total"], 2);
    let sub = |id: &str| format!("/api/subscriptions/{id}");
    assert_eq!(
        app.get(&teacher, &sub(&subscriptions[0])).await.status(),
        StatusCode::OK
    );
    error_body(
        app.get(&teacher, &sub(&subscriptions[1])).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    error_body(
        app.get(&teacher, "/api/invoices").await,
        StatusCode::FORBIDDEN,
    )
    .await;

    let roster = |g: &Value| format!("/api/groups/{}/members", g["id"].as_str().unwrap());
    let members: Value = app
        .get(&teacher, &roster(&my_group))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(members["total"], 1);
    error_body(
        app.get(&teacher, &roster(&other_group)).await,
        StatusCode::FORBIDDEN,
    )
    .await;

    // A teacher who left (record inactive, login not yet closed) reads nobody.
    let res = app
        .patch(
            &manager,
            &format!("/api/teachers/{}", mine["id"].as_str().unwrap()),
            json!({"active": false}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(list(&app, &teacher, "").await["total"], 0);
    error_body(
        app.get(&teacher, &card(&pupil)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    error_body(
        app.get(&teacher, &roster(&my_group)).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    app.stop().await;
}

/// The ids of the clients a search finds, in list order, and the total.
async fn found(app: &TestApp, token: &str, search: &str) -> (Vec<String>, i64) {
    let page = list(app, token, &format!("search={}", urlencoding(search))).await;
    let ids = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["full_name"].as_str().unwrap().to_string())
        .collect();
    (ids, page["total"].as_i64().unwrap())
}

fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[sqlx::test(migrations = false)]
async fn search_finds_surname_prefixes_first_names_phone_starts_and_ends_and_emails(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let (_, token) = app.user("manager").await;
    for (last, first, phone, email) in [
        ("Фёдорова", "Анна", "+7 916 123-45-67", "anna@example.org"),
        ("Федоров", "Пётр", "+7 903 555-00-11", "petr@mail.test"),
        (
            "Иванов",
            "Дмитрий",
            "+44 20 7946 0958",
            "ivanov@example.org",
        ),
        ("Сидорова", "Ольга", "8 (495) 000-12-34", "olga@sid.test"),
    ] {
        created(
            &app,
            &token,
            json!({"last_name": last, "first_name": first, "phone": phone, "email": email}),
        )
        .await;
    }
    let cases: &[(&str, &[&str])] = &[
        // Surname prefix, ё and е alike, list order by name.
        ("федор", &["Федоров Пётр", "Фёдорова Анна"]),
        ("ФЁДОРОВА", &["Фёдорова Анна"]),
        ("Федоров Пётр", &["Федоров Пётр"]),
        // No name starts with it: substring of any name.
        ("Дмитр", &["Иванов Дмитрий"]),
        ("дорова", &["Сидорова Ольга", "Фёдорова Анна"]),
        // Phone: start with or without the country code, trunk 8, or the last digits.
        ("916 12", &["Фёдорова Анна"]),
        ("+7 903", &["Федоров Пётр"]),
        ("8 495 000 12 34", &["Сидорова Ольга"]),
        ("4420", &["Иванов Дмитрий"]),
        ("00-11", &["Федоров Пётр"]),
        ("0958", &["Иванов Дмитрий"]),
        // E-mail fragment.
        ("example.org", &["Иванов Дмитрий", "Фёдорова Анна"]),
        ("SID.test", &["Сидорова Ольга"]),
        ("нет такого", &[]),
    ];
    for (search, expected) in cases {
        let (names, total) = found(&app, &token, search).await;
        assert_eq!(names, *expected, "search {search:?}");
        assert_eq!(total, expected.len() as i64, "search {search:?}");
    }
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn searching_100000_clients_by_phone_fragment_or_surname_takes_one_statement(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, token) = app.user("manager").await;
    sqlx::query(
        "insert into clients (last_name, first_name, phone)
         select (array['Иванов','Петров','Сидоров','Кузнецов','Смирнов'])[1 + g % 5] || g,
                'Имя' || g, '+7916' || lpad(g::text, 7, '0')
         from generate_series(1, 100000) g",
    )
    .execute(&db)
    .await
    .unwrap();
    created(
        &app,
        &token,
        json!({"last_name": "Шостакович", "first_name": "Дмитрий",
                                 "phone": "+7 999 555-12-34"}),
    )
    .await;

    let (count, _guard) = count_statements();
    let before = count.load(Ordering::SeqCst);
    let me = app.get(&token, "/api/auth/me").await;
    assert_eq!(me.status(), StatusCode::OK);
    // Every authenticated request reads its user once (deactivation takes effect at once).
    let auth = count.load(Ordering::SeqCst) - before;

    for (query, total) in [
        ("search=999%20555", 1),
        ("search=5551234", 1), // the end of a phone number
        ("search=%D0%94%D0%BC%D0%B8%D1%82%D1%80", 1), // "Дмитр": no name starts with it
        ("", 100001),
        ("search=%D1%88%D0%BE%D1%81%D1%82%D0%B0%D0%BA", 1), // "шостак"
        (
            "search=%D0%98%D0%B2%D0%B0%D0%BD%D0%BE%D0%B2&limit=50",
            20000,
        ), // "Иванов"
    ] {
        let before = count.load(Ordering::SeqCst);
        let page = list(&app, &token, query).await;
        let statements = count.load(Ordering::SeqCst) - before - auth;
        assert_eq!(
            statements, 1,
            "{query}: {statements} statements for the page"
        );
        assert_eq!(page["total"], total, "{query}");
        assert!(!page["items"].as_array().unwrap().is_empty());
    }
    let page = list(&app, &token, "search=999%20555").await;
    assert_eq!(page["items"][0]["last_name"], "Шостакович");
    // Past the end: no items, the total still there.
    let page = list(&app, &token, "search=Шостакович&offset=10").await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"], json!([]));
    app.stop().await;
}
