//! Season tickets: sale with its invoice, payments activating it, freezes (never in the past,
//! extending the end date), the daily expiry job ending a subscription once.
#![allow(clippy::unwrap_used)]

use std::time::Duration as StdDuration;

use crate::support::*;
use chrono::{Duration, NaiveDate, Utc};
use jobs::kinds::subscriptions::EndSubscriptions;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use worker::Registry;

fn today() -> NaiveDate {
    Utc::now().with_timezone(&shared::time::MOSCOW).date_naive()
}

/// A plan of 8 visits / `validity_days` days, 14 freeze days, for a new group; and a client.
async fn plan_and_client(app: &TestApp, token: &str, validity_days: i32) -> (String, String) {
    let teacher = ok(app, token, "/api/teachers", json!({"full_name": "Олег"})).await;
    let group = ok(
        app,
        token,
        "/api/groups",
        json!({"name": "Гитара", "teacher_id": teacher["id"], "capacity": 8}),
    )
    .await;
    let plan = ok(
        app,
        token,
        "/api/subscription-plans",
        json!({"name": "Гитара 8", "visits": 8, "validity_days": validity_days, "price": "4000.00",
               "group_ids": [group["id"]], "max_freeze_days": 14}),
    )
    .await;
    let client = ok(
        app,
        token,
        "/api/clients",
        json!({"last_name": "Юрьева", "first_name": "Ася"}),
    )
    .await;
    (
        plan["id"].as_str().unwrap().into(),
        client["id"].as_str().unwrap().into(),
    )
}

/// Money travels as decimal strings and is never rounded: a number, a part below the kopeck,
/// or a malformed amount is a 422 naming the field, and nothing is recorded; a free plan's
/// sale is paid and active without a payment.
/// The client's latest invoice, as the invoice list shows it, is paid in full (4000.00).
async fn assert_paid_in_full(app: &TestApp, token: &str, client: &str) {
    let invoices: Value = app
        .get(token, &format!("/api/invoices?client_id={client}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(invoices["items"][0]["status"], "paid");
    assert_eq!(invoices["items"][0]["paid"], "4000.00");
}

#[sqlx::test(migrations = false)]
async fn money_is_exact_decimal_text_and_a_free_plan_needs_no_payment(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, token) = app.user("manager").await;
    let (plan, client) = plan_and_client(&app, &token, 30).await;
    let sale = ok(
        &app,
        &token,
        "/api/subscriptions",
        json!({"client_id": client, "plan_id": plan}),
    )
    .await;
    let invoice = sale["invoice"]["id"].clone();
    for (amount, problem) in [
        (json!(1500.5), "decimal string"),
        (json!(1500), "decimal string"),
        (json!("0.001"), "whole kopecks"),
        (json!("100.505"), "whole kopecks"),
        (json!("1e3"), "decimal string"),
        (json!("1,50"), "decimal string"),
        (json!("0"), "at least 0.01"),
        (json!("-5"), "decimal string"),
        (json!("007"), "decimal string"),
        (json!("1.000"), "whole kopecks"),
        (json!("10000000.01"), "at most 10000000.00"),
    ] {
        let res = app
            .post(
                &token,
                "/api/payments",
                json!({"invoice_id": invoice, "amount": amount, "method": "cash"}),
            )
            .await;
        let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        let said = e["fields"]["amount"].as_str().unwrap_or_default();
        assert!(said.contains(problem), "{amount}: {e}");
    }
    let payments: i64 = sqlx::query_scalar("select count(*) from payments")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(payments, 0);
    // Kopecks add up exactly: 0.10 + 0.20 + 3999.70 is the invoice, not 4000.0000000000005.
    for amount in ["0.10", "0.2", "3999.70"] {
        ok(
            &app,
            &token,
            "/api/payments",
            json!({"invoice_id": invoice, "amount": amount, "method": "cash"}),
        )
        .await;
    }
    assert_paid_in_full(&app, &token, &client).await;

    let res = app
        .post(
            &token,
            "/api/subscription-plans",
            json!({"name": "Дорого", "validity_days": 30, "price": 99.99,
                   "group_ids": [uuid::Uuid::new_v4()]}),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["price"].is_string(), "{e}");

    let group: String = sqlx::query_scalar("select group_id::text from plan_groups limit 1")
        .fetch_one(&db)
        .await
        .unwrap();
    let free = ok(
        &app,
        &token,
        "/api/subscription-plans",
        json!({"name": "Пробный", "visits": 1, "validity_days": 7, "price": "0",
               "group_ids": [group]}),
    )
    .await;
    assert_eq!(free["price"], "0.00");
    let sale = ok(
        &app,
        &token,
        "/api/subscriptions",
        json!({"client_id": client, "plan_id": free["id"]}),
    )
    .await;
    assert_eq!(sale["subscription"]["status"], "active");
    assert_eq!(sale["invoice"]["status"], "paid");
    assert_eq!(sale["invoice"]["amount"], "0.00");
    let res = app
        .post(
            &token,
            "/api/payments",
            json!({"invoice_id": sale["invoice"]["id"], "amount": "0.01", "method": "cash"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn a_sale_creates_its_invoice_and_paying_it_in_full_activates_the_subscription(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), None, api_config(&[])).await;
    let (_, token) = app.user("manager").await;
    let (plan, client) = plan_and_client(&app, &token, 30).await;
    let sale = ok(
        &app,
        &token,
        "/api/subscriptions",
        json!({"client_id": client, "plan_id": plan}),
    )
    .await;
    assert_eq!(sale["subscription"]["status"], "inactive");
    assert_eq!(
        sale["subscription"]["ends_on"],
        (today() + Duration::days(29)).to_string()
    );
    assert_eq!(sale["invoice"]["amount"], "4000.00");
    let invoice = sale["invoice"]["id"].clone();

    let part = ok(
        &app,
        &token,
        "/api/payments",
        json!({"invoice_id": invoice, "amount": "1500.50", "method": "cash"}),
    )
    .await;
    assert_eq!(part["invoice"]["status"], "open");
    assert_eq!(part["activated_subscription"], Value::Null);
    let res = app
        .post(
            &token,
            "/api/payments",
            json!({"invoice_id": invoice, "amount": "3000", "method": "card"}),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(e["fields"]["amount"], "more than the 2499.50 left to pay");
    let res = app
        .post(
            &token,
            "/api/payments",
            json!({"invoice_id": invoice, "amount": "10", "method": "barter"}),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["method"].is_string());
    let rest = ok(
        &app,
        &token,
        "/api/payments",
        json!({"invoice_id": invoice, "amount": "2499.5", "method": "transfer"}),
    )
    .await;
    assert_eq!(rest["invoice"]["status"], "paid");
    assert_eq!(rest["invoice"]["paid"], "4000.00");
    assert_eq!(rest["activated_subscription"], sale["subscription"]["id"]);
    assert_paid_in_full(&app, &token, &client).await;

    let res = app
        .post(
            &token,
            "/api/subscriptions",
            json!({"client_id": client, "plan_id": uuid::Uuid::new_v4()}),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["plan_id"].is_string());
    let subs: i64 = sqlx::query_scalar("select count(*) from subscriptions")
        .fetch_one(&db)
        .await
        .unwrap();
    let invs: i64 = sqlx::query_scalar("select count(*) from invoices")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!((subs, invs), (1, 1));
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn a_freeze_never_starts_in_the_past_and_extends_the_end_date(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let (_, token) = app.user("manager").await;
    let (plan, client) = plan_and_client(&app, &token, 30).await;
    let sale = ok(
        &app,
        &token,
        "/api/subscriptions",
        json!({"client_id": client, "plan_id": plan}),
    )
    .await;
    let id = sale["subscription"]["id"].as_str().unwrap().to_string();
    let path = format!("/api/subscriptions/{id}/freeze");
    let res = app
        .post(
            &token,
            &path,
            json!({"from": today() + Duration::days(1), "to": today() + Duration::days(7)}),
        )
        .await;
    error_body(res, StatusCode::CONFLICT).await; // not paid yet
    ok(
        &app,
        &token,
        "/api/payments",
        json!({"invoice_id": sale["invoice"]["id"], "amount": "4000.00", "method": "card"}),
    )
    .await;

    let res = app
        .post(
            &token,
            &path,
            json!({"from": today() - Duration::days(1), "to": today() + Duration::days(5)}),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(e["fields"]["from"], "a freeze cannot start in the past");
    let res = app
        .post(
            &token,
            &path,
            json!({"from": today(), "to": today() + Duration::days(20)}),
        )
        .await;
    let e = error_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["fields"]["to"].as_str().unwrap().contains("14 days"));

    let frozen = ok(
        &app,
        &token,
        &path,
        json!({"from": today(), "to": today() + Duration::days(6)}),
    )
    .await;
    assert_eq!(
        frozen["ends_on"],
        (today() + Duration::days(29 + 7)).to_string(),
        "extended by 7 days"
    );
    assert_eq!(frozen["status"], "frozen");
    let res = app
        .post(
            &token,
            &path,
            json!({"from": today() + Duration::days(10), "to": today() + Duration::days(11)}),
        )
        .await;
    error_body(res, StatusCode::CONFLICT).await;
    app.stop().await;
}

/// Sells a ticket from `begins_days_ago` days ago, pays `paid` of it (if any), then moves its
/// period `moved_back` days further back, as if sold then (a period over takes no payment).
async fn ticket(
    app: &TestApp,
    token: &str,
    db: &PgPool,
    (client, plan): (&str, &str),
    begins_days_ago: i64,
    paid: Option<&str>,
    moved_back: i32,
) -> Value {
    let begins_on = today() - Duration::days(begins_days_ago);
    let sale = ok(
        app,
        token,
        "/api/subscriptions",
        json!({"client_id": client, "plan_id": plan, "begins_on": begins_on}),
    )
    .await;
    if let Some(amount) = paid {
        ok(
            app,
            token,
            "/api/payments",
            json!({"invoice_id": sale["invoice"]["id"], "amount": amount, "method": "card"}),
        )
        .await;
    }
    sqlx::query(
        "update subscriptions set begins_on = begins_on - $2, ends_on = ends_on - $2
         where id = $1::uuid",
    )
    .bind(sale["subscription"]["id"].as_str().unwrap())
    .bind(moved_back)
    .execute(db)
    .await
    .unwrap();
    sale
}

/// Pays an invoice in full and expects 409; returns the error.
async fn refused_payment(app: &TestApp, token: &str, invoice: &Value) -> Value {
    let res = app
        .post(
            token,
            "/api/payments",
            json!({"invoice_id": invoice, "amount": "4000.00", "method": "card"}),
        )
        .await;
    error_body(res, StatusCode::CONFLICT).await
}

#[sqlx::test(migrations = false)]
async fn the_expiry_job_ends_an_expired_subscription_once_burning_its_leftovers(db: PgPool) {
    let registry = Registry::new().register::<EndSubscriptions, _, _, _>(
        1,
        worker::handlers::end_subscriptions::end_subscriptions,
    );
    let app = TestApp::spawn(db.clone(), registry).await;
    let (user, token) = app.user("manager").await;
    let (plan, client) = plan_and_client(&app, &token, 5).await;
    let sell = |begins_days_ago, paid, moved_back| {
        ticket(
            &app,
            &token,
            &db,
            (&client, &plan),
            begins_days_ago,
            paid,
            moved_back,
        )
    };
    // Paid, then moved 28 days back: ended 26 days ago. Another ends in 2 days.
    sell(2, Some("4000.00"), 28).await;
    sell(2, Some("4000.00"), 0).await;
    // Never paid, its period (from 20 days ago, 5 days) over as well: before the daily end
    // reaches it, paying it is refused already.
    let unpaid = sell(20, None, 0).await;
    let e = refused_payment(&app, &token, &unpaid["invoice"]["id"]).await;
    assert!(
        e["message"].as_str().unwrap().contains("period is over"),
        "{e}"
    );
    // Partly paid while its period lasted (from 31 days ago): its invoice stays open for the
    // office to settle.
    let partly = sell(3, Some("1000.00"), 28).await;

    let mut reports = Vec::new();
    for _ in 0..2 {
        let id = app.enqueue(user, EndSubscriptions {}).await;
        let job = app
            .wait_terminal(&token, &id, StdDuration::from_secs(10))
            .await;
        assert_eq!(job["state"], "succeeded", "{job}");
        reports.push(job["result"].clone());
    }
    assert_eq!(
        reports[0],
        json!({"ended": 3, "visits_burned": 8, "notices": 2}),
        "the unpaid one ends unannounced"
    );
    assert_eq!(
        reports[1],
        json!({"ended": 0, "visits_burned": 0, "notices": 0})
    );
    let statuses: Vec<(String, i32)> =
        sqlx::query_as("select status, visits_burned from subscriptions order by begins_on")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(
        statuses,
        [
            ("ended".to_string(), 0),
            ("ended".to_string(), 8),
            ("ended".to_string(), 0),
            ("active".to_string(), 0)
        ]
    );
    // Its invoice closed with it: paying it now is refused and records nothing.
    let invoice = &unpaid["invoice"]["id"];
    let status: String = sqlx::query_scalar("select status from invoices where id = $1::uuid")
        .bind(invoice.as_str().unwrap())
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(status, "cancelled");
    let status: String = sqlx::query_scalar("select status from invoices where id = $1::uuid")
        .bind(partly["invoice"]["id"].as_str().unwrap())
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(status, "open", "partly paid: left for the office");
    refused_payment(&app, &token, invoice).await;
    // One ended before this rule (its invoice still open) is refused just the same.
    sqlx::query("update invoices set status = 'open' where id = $1::uuid")
        .bind(invoice.as_str().unwrap())
        .execute(&db)
        .await
        .unwrap();
    let e = refused_payment(&app, &token, invoice).await;
    assert!(
        e["message"].as_str().unwrap().contains("period is over"),
        "{e}"
    );
    let payments: i64 = sqlx::query_scalar("select count(*) from payments")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(payments, 3);
    app.stop().await;
}
