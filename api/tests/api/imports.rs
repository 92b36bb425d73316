//! The import routes: requests queue one import of each kind (cron's job, deduplicated), bad
//! bodies are named 422s, imported events and orders are listed, and a service without
//! configuration fails its job at once. (The imports against the fakes run with real processes
//! in `bench/tests/multiprocess/imports.rs`.)
#![allow(clippy::unwrap_used)]

use chrono::{TimeZone, Utc};
use jobs::{
    kinds::imports::{PyrusSync, TimepadImport},
    testing::{assert_enqueued, enqueued},
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::domain::timepad::{self, EventRow, OrderRow, TicketRow};
use sqlx::PgPool;
use worker::{clients::Integrations, testing::perform, Registry};

use crate::support::*;

#[sqlx::test(migrations = false)]
async fn import_requests_queue_one_import_each_and_bad_bodies_are_named(db: PgPool) {
    // The api alone: the jobs stay queued where the assertions can read them.
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, manager) = app.user("manager").await;
    let (_, teacher) = app.user("teacher").await;

    // No body: every event.
    let res = app
        .http
        .post(format!("{}/api/imports/timepad", app.base))
        .bearer_auth(&manager)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let first: Value = res.json().await.unwrap();
    let (id, job) = assert_enqueued::<TimepadImport>(&db, |j| j.event_ids.is_none()).await;
    assert_eq!(first["job_id"], id);
    assert_eq!(job.event_ids, None);
    // Asked again while it waits: the same import, not a second one.
    let res = app.post(&manager, "/api/imports/timepad", json!({})).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let again: Value = res.json().await.unwrap();
    assert_eq!(again["job_id"], id);
    // Two events are another import (it must not swallow the full one, nor be swallowed);
    // asked again with the ids in another order, the same one.
    let res = app
        .post(
            &manager,
            "/api/imports/timepad",
            json!({"event_ids": [7, 5, 7]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let two: Value = res.json().await.unwrap();
    assert_ne!(two["job_id"], id);
    let (_, job) = assert_enqueued::<TimepadImport>(&db, |j| j.event_ids == Some(vec![5, 7])).await;
    assert_eq!(job.recent_days, None);
    let res = app
        .post(
            &manager,
            "/api/imports/timepad",
            json!({"event_ids": [5, 7]}),
        )
        .await;
    let same: Value = res.json().await.unwrap();
    assert_eq!(same["job_id"], two["job_id"]);
    assert_eq!(enqueued::<TimepadImport>(&db).await.len(), 2);

    for (body, field) in [
        (json!({"event_ids": []}), "event_ids"),
        (json!({"event_ids": [0]}), "event_ids"),
        (
            json!({"event_ids": (1..=101).collect::<Vec<i64>>()}),
            "event_ids",
        ),
        (json!({"event_ids": "all"}), "event_ids"),
        (json!({"events": [1]}), "events"),
    ] {
        let res = app
            .post(&manager, "/api/imports/timepad", body.clone())
            .await;
        let error = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(error["fields"][field].is_string(), "{body} → {error}");
    }
    let res = app
        .http
        .post(format!("{}/api/imports/timepad", app.base))
        .bearer_auth(&manager)
        .header("content-type", "application/json")
        .body("{\"event_ids\": [1,")
        .send()
        .await
        .unwrap();
    error_body(res, StatusCode::BAD_REQUEST).await;
    let res = app.post(&teacher, "/api/imports/timepad", json!({})).await;
    error_body(res, StatusCode::FORBIDDEN).await;
    assert_eq!(enqueued::<TimepadImport>(&db).await.len(), 2);

    let res = app.post(&manager, "/api/imports/pyrus", json!({})).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let pyrus: Value = res.json().await.unwrap();
    let (pyrus_id, _) = assert_enqueued::<PyrusSync>(&db, |_| true).await;
    assert_eq!(pyrus["job_id"], pyrus_id);
    let res = app.post(&teacher, "/api/imports/pyrus", json!({})).await;
    error_body(res, StatusCode::FORBIDDEN).await;
    app.stop().await;
}

fn order(id: i64, event_id: i64, status: &str, email: &str, phone: &str) -> OrderRow {
    OrderRow {
        id,
        event_id,
        status: status.into(),
        status_title: None,
        email: Some(email.into()),
        phone: Some(phone.into()),
        surname: Some("Лебедева".into()),
        name: Some("Алиса".into()),
        amount: Some(shared::money::Money::from_kopecks(150_000)),
        ordered_at: Some(Utc.with_ymd_and_hms(2027, 2, 1, 12, 0, 0).unwrap()),
        tickets: vec![
            TicketRow {
                id: id * 10,
                number: Some(format!("{id}-1")),
                ticket_type: Some("Взрослый".into()),
                price_nominal: Some(shared::money::Money::from_kopecks(75_000)),
            },
            TicketRow {
                id: id * 10 + 1,
                number: Some(format!("{id}-2")),
                ticket_type: Some("Детский".into()),
                price_nominal: Some(shared::money::Money::from_kopecks(75_000)),
            },
        ],
    }
}

#[sqlx::test(migrations = false)]
async fn imported_events_are_listed_with_counts_and_their_orders(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, manager) = app.user("manager").await;
    let (_, teacher) = app.user("teacher").await;
    let mut tx = db.begin().await.unwrap();
    let event = |id: i64, month: u32| EventRow {
        id,
        name: format!("Концерт {id}"),
        starts_at: Some(Utc.with_ymd_and_hms(2027, month, 1, 16, 0, 0).unwrap()),
        ends_at: None,
        url: None,
        access: Some("public".into()),
    };
    timepad::upsert_events(&mut tx, &[event(501, 3), event(502, 4)])
        .await
        .unwrap();
    let written = timepad::upsert_orders(
        &mut tx,
        &[
            order(9001, 501, "paid", "alisa@example.ru", "+7 916 555-01-01"),
            order(9002, 501, "returned", "boris@example.ru", "89165550202"),
        ],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!((written.new, written.clients_created), (2, 1));
    // The same page again: nothing written. A partial refund (one ticket fewer) is a change,
    // and the ticket goes.
    let mut tx = db.begin().await.unwrap();
    let again = timepad::upsert_orders(
        &mut tx,
        &[
            order(9001, 501, "paid", "alisa@example.ru", "+7 916 555-01-01"),
            order(9002, 501, "returned", "boris@example.ru", "89165550202"),
        ],
    )
    .await
    .unwrap();
    assert_eq!((again.new, again.updated, again.skipped), (0, 0, 2));
    let mut refunded = order(9001, 501, "paid", "alisa@example.ru", "+7 916 555-01-01");
    refunded.tickets.pop();
    let partial = timepad::upsert_orders(&mut tx, &[refunded]).await.unwrap();
    assert_eq!((partial.updated, partial.clients_matched), (1, 1));
    let tickets: Vec<i64> =
        sqlx::query_scalar("select id from timepad_tickets where order_id = 9001 order by id")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    assert_eq!(tickets, vec![90010]);
    // Both tickets again, for the lists below.
    timepad::upsert_orders(
        &mut tx,
        &[order(
            9001,
            501,
            "paid",
            "alisa@example.ru",
            "+7 916 555-01-01",
        )],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let events: Value = app
        .get(&manager, "/api/timepad/events")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events["total"], 2, "{events}");
    // Latest first.
    assert_eq!(events["items"][0]["id"], 502);
    assert_eq!(events["items"][1]["id"], 501);
    assert_eq!(events["items"][1]["orders"], 2);
    // The paid order's two tickets are two participants; the refunded one none.
    assert_eq!(events["items"][1]["participants"], 2);

    let orders: Value = app
        .get(&manager, "/api/timepad/events/501/orders")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(orders["total"], 2, "{orders}");
    let paid = &orders["items"][0];
    assert_eq!(paid["id"], 9001);
    assert_eq!(paid["participant"], true);
    assert_eq!(paid["tickets"], 2);
    assert!(paid["client_id"].is_string(), "{paid}");
    assert_eq!(paid["conflict"], false);
    let refunded = &orders["items"][1];
    assert_eq!(refunded["participant"], false);
    assert!(refunded["client_id"].is_null(), "{refunded}");
    let client: Value = app
        .get(
            &manager,
            &format!("/api/clients/{}", paid["client_id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(client["phone"], "+79165550101", "{client}");
    assert_eq!(client["email"], "alisa@example.ru");

    let res = app.get(&manager, "/api/timepad/events/999/orders").await;
    error_body(res, StatusCode::NOT_FOUND).await;
    let res = app.get(&manager, "/api/timepad/events?limit=0").await;
    let error = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(error["fields"]["limit"].is_string(), "{error}");
    let res = app.get(&manager, "/api/timepad/events/abc/orders").await;
    assert!(res.status().is_client_error(), "{}", res.status());
    let res = app.get(&teacher, "/api/timepad/events").await;
    error_body(res, StatusCode::FORBIDDEN).await;
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn a_service_without_configuration_fails_its_job_at_once_saying_so(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, admin) = app.user("admin").await;
    let registry = Registry::production(30, &Integrations::none());
    for (id, result) in [
        perform(&db, &registry, &TimepadImport::default()).await,
        perform(&db, &registry, &PyrusSync {}).await,
    ] {
        let error = result.unwrap_err().to_string();
        assert!(error.contains("is disabled: set "), "{error}");
        let status: Value = app
            .get(&admin, &format!("/api/jobs/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(status["state"], "failed", "{status}");
        assert_eq!(status["attempts"], 1);
        assert!(
            status["error"].as_str().unwrap().contains("disabled"),
            "{status}"
        );
    }
    app.stop().await;
}
