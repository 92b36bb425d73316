//! The call routes without a worker: what a request must be (an extension, a client, one of
//! the client's numbers, a teacher's own group), the request row and its job written together,
//! the lists, and users' extensions. (Dialling against the fake Novofon runs with real
//! processes in `bench/tests/multiprocess/calls.rs`.)
#![allow(clippy::unwrap_used)]

use jobs::{kinds::calls::Call, testing::assert_enqueued};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::*;

async fn client(db: &PgPool, phone: Option<&str>, guardian: Option<Uuid>) -> Uuid {
    sqlx::query_scalar(
        "insert into clients (last_name, first_name, phone, guardian_id)
         values ('Звонкова', 'Анна', $1, $2) returning id",
    )
    .bind(phone)
    .bind(guardian)
    .fetch_one(db)
    .await
    .unwrap()
}

#[sqlx::test(migrations = false)]
async fn a_call_request_is_checked_stored_with_its_job_and_listed(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, admin) = app.user("admin").await;
    let (manager_id, manager) = app.user("manager").await;
    let parent = client(&db, Some("+79160000100"), None).await;
    let child = client(&db, Some("+79160000101"), Some(parent)).await;
    let nobody = client(&db, None, None).await;

    // No extension yet: 422 naming it, nothing stored.
    let res = app
        .post(&manager, "/api/calls", json!({"client_id": child}))
        .await;
    let error = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(error["fields"]["extension"].is_string(), "{error}");

    // An admin gives the manager an extension.
    for (extension, status) in [(json!("12"), 422), (json!("1a1"), 422), (json!("101"), 200)] {
        let res = app
            .patch(
                &admin,
                &format!("/api/users/{manager_id}"),
                json!({ "extension": extension }),
            )
            .await;
        assert_eq!(res.status().as_u16(), status, "{extension}");
        if status == 422 {
            let error: Value = res.json().await.unwrap();
            assert!(error["error"]["fields"]["extension"].is_string());
        }
    }
    let users: Value = app.get(&admin, "/api/users").await.json().await.unwrap();
    assert!(users["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["id"] == json!(manager_id) && u["extension"] == "101"));

    // Bad requests, each named; none stored.
    for (body, status, field) in [
        (
            json!({"client_id": child, "phone": "12-34"}),
            422,
            Some("phone"),
        ),
        (
            json!({"client_id": child, "phone": "+7 916 555-00-00"}),
            422,
            Some("phone"),
        ),
        (json!({"client_id": nobody}), 422, Some("phone")),
        (json!({"client_id": Uuid::new_v4()}), 404, None),
        (json!({"client_id": "nope"}), 422, Some("client_id")),
        (json!({}), 422, Some("client_id")),
    ] {
        let res = app.post(&manager, "/api/calls", body.clone()).await;
        assert_eq!(res.status().as_u16(), status, "{body}");
        let error: Value = res.json().await.unwrap();
        if let Some(field) = field {
            assert!(
                error["error"]["fields"][field].is_string(),
                "{body} → {error}"
            );
        }
    }
    let stored: i64 = sqlx::query_scalar("select count(*) from call_requests")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stored, 0);

    // The client's own number by default; the guardian's when asked (any local form).
    let res = app
        .post(&manager, "/api/calls", json!({"client_id": child}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let own: Value = res.json().await.unwrap();
    // A double click: the same call, not a second one.
    let res = app
        .post(&manager, "/api/calls", json!({"client_id": child}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let again: Value = res.json().await.unwrap();
    assert_eq!(again, own);
    let res = app
        .post(
            &manager,
            "/api/calls",
            json!({"client_id": child, "phone": "8 (916) 000-01-00"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let guardians: Value = res.json().await.unwrap();
    let call_id: Uuid = own["call_id"].as_str().unwrap().parse().unwrap();
    let (job_id, job) = assert_enqueued::<Call>(&db, |j| j.call_id == call_id).await;
    assert_eq!(own["job_id"], job_id);
    assert_eq!(job.call_id, call_id);

    let row: Value = app
        .get(&manager, &format!("/api/calls/{call_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(row["state"], "queued");
    assert_eq!(row["number"], "+79160000101");
    assert_eq!(row["extension"], "101");
    assert_eq!(row["job_id"], job_id);
    let row: Value = app
        .get(
            &manager,
            &format!("/api/calls/{}", guardians["call_id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(row["number"], "+79160000100");

    // The client card's history; filters; a bad state is named.
    let history: Value = app
        .get(&manager, &format!("/api/calls?client_id={child}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history["total"], 2);
    let none: Value = app
        .get(&manager, &format!("/api/calls?client_id={parent}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["total"], 0);
    let queued: Value = app
        .get(
            &admin,
            &format!("/api/calls?user_id={manager_id}&state=queued"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(queued["total"], 2);
    let res = app.get(&manager, "/api/calls?state=ringing").await;
    assert!(res.status().is_client_error());
    let res = app
        .get(&manager, &format!("/api/calls/{}", Uuid::new_v4()))
        .await;
    error_body(res, StatusCode::NOT_FOUND).await;

    // A job cancelled by a person before it dialled: the call shows cancelled, not queued.
    let res = app
        .post(&manager, &format!("/api/jobs/{job_id}/cancel"), json!({}))
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    let row: Value = app
        .get(&manager, &format!("/api/calls/{call_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(row["state"], "cancelled", "{row}");

    // Idempotency-Key: the same key answers the same call, also after the 30 s window.
    let third = client(&db, Some("+79160000103"), None).await;
    let keyed = |key: &str| {
        app.http
            .post(format!("{}/api/calls", app.base))
            .bearer_auth(&manager)
            .header("idempotency-key", key)
            .json(&json!({"client_id": third}))
            .send()
    };
    let first: Value = keyed("click-1").await.unwrap().json().await.unwrap();
    sqlx::query("update call_requests set created_at = now() - interval '1 minute'")
        .execute(&db)
        .await
        .unwrap();
    let same: Value = keyed("click-1").await.unwrap().json().await.unwrap();
    assert_eq!(same, first);
    let res = app
        .post(&manager, "/api/calls", json!({"client_id": third}))
        .await;
    let later: Value = res.json().await.unwrap();
    assert_ne!(
        later["call_id"], first["call_id"],
        "a new call after the window"
    );
    let res = keyed(&"k".repeat(201)).await.unwrap();
    let error = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(error["fields"]["Idempotency-Key"].is_string(), "{error}");
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn a_teacher_rings_only_the_clients_of_their_groups(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (teacher_user, teacher) = app.user("teacher").await;
    shared::domain::calls::set_extension(&db, teacher_user, Some("205"))
        .await
        .unwrap();
    let (_, manager) = app.user("manager").await;
    let pupil = client(&db, Some("+79160000201"), None).await;
    let stranger = client(&db, Some("+79160000202"), None).await;
    let teacher_id: Uuid = sqlx::query_scalar(
        "insert into teachers (user_id, full_name) values ($1, 'Петрова Анна') returning id",
    )
    .bind(teacher_user)
    .fetch_one(&db)
    .await
    .unwrap();
    let group: Uuid = sqlx::query_scalar(
        "insert into study_groups (name, teacher_id, capacity) values ('Хор', $1, 10) returning id",
    )
    .bind(teacher_id)
    .fetch_one(&db)
    .await
    .unwrap();
    sqlx::query(
        "insert into group_members (group_id, client_id, status) values ($1, $2, 'active')",
    )
    .bind(group)
    .bind(pupil)
    .execute(&db)
    .await
    .unwrap();

    let res = app
        .post(&teacher, "/api/calls", json!({"client_id": pupil}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let mine: Value = res.json().await.unwrap();
    let res = app
        .post(&teacher, "/api/calls", json!({"client_id": stranger}))
        .await;
    error_body(res, StatusCode::FORBIDDEN).await;
    // Whether a client exists is none of a teacher's business either.
    let res = app
        .post(&teacher, "/api/calls", json!({"client_id": Uuid::new_v4()}))
        .await;
    error_body(res, StatusCode::FORBIDDEN).await;
    // A manager's call is not the teacher's to see.
    sqlx::query("update users set extension = '300' where role = 'manager'")
        .execute(&db)
        .await
        .unwrap();
    let res = app
        .post(&manager, "/api/calls", json!({"client_id": stranger}))
        .await;
    let theirs: Value = res.json().await.unwrap();
    let list: Value = app.get(&teacher, "/api/calls").await.json().await.unwrap();
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["id"], mine["call_id"]);
    let res = app
        .get(
            &teacher,
            &format!("/api/calls/{}", theirs["call_id"].as_str().unwrap()),
        )
        .await;
    error_body(res, StatusCode::NOT_FOUND).await;
    app.stop().await;
}
