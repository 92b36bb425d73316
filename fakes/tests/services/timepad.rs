//! Timepad: paging, auth errors, validation envelope, deterministic data, demo-client reuse.

use std::collections::HashSet;

use serde_json::Value;

use crate::support::{Fakes, TIMEPAD_TOKEN};

const ARGS: &[&str] = &[
    "--seed",
    "42",
    "--timepad-events",
    "3",
    "--timepad-orders",
    "1000",
];

async fn all_orders(fakes: &Fakes, event_id: u64) -> Vec<Value> {
    let mut orders = Vec::new();
    let mut skip = 0;
    loop {
        let path = format!("/timepad/v1/events/{event_id}/orders?limit=100&skip={skip}");
        let (status, page) = fakes.get(&path, Some(TIMEPAD_TOKEN)).await;
        assert_eq!(status, 200, "{page}");
        let values = page["values"].as_array().cloned().unwrap_or_default();
        if values.is_empty() {
            return orders;
        }
        skip += values.len();
        orders.extend(values);
    }
}

#[tokio::test]
async fn events_and_orders_page_with_limit_and_skip() {
    let fakes = Fakes::start(ARGS).await;

    let (status, first) = fakes
        .get(
            "/timepad/v1/events?organization_ids=123456&limit=2&skip=0",
            Some(TIMEPAD_TOKEN),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(first["total"], 3);
    assert_eq!(first["values"].as_array().map(Vec::len), Some(2));
    let (_, rest) = fakes
        .get(
            "/timepad/v1/events?organization_ids=123456&limit=2&skip=2",
            Some(TIMEPAD_TOKEN),
        )
        .await;
    assert_eq!(rest["values"].as_array().map(Vec::len), Some(1));
    let starts = rest["values"][0]["starts_at"].as_str().unwrap_or_default();
    assert!(starts.ends_with("+03:00"), "{starts}");
    let (_, other_org) = fakes
        .get("/timepad/v1/events?organization_ids=1", Some(TIMEPAD_TOKEN))
        .await;
    assert_eq!(other_org["total"], 0);

    let event_id = first["values"][0]["id"].as_u64().unwrap_or_default();
    let orders = all_orders(&fakes, event_id).await;
    assert_eq!(
        orders.len(),
        334,
        "1000 orders over 3 events, the first gets the remainder"
    );
    let ids: Vec<u64> = orders.iter().filter_map(|o| o["id"].as_u64()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "orders come sorted by id"
    );
    let (_, page) = fakes
        .get(
            &format!("/timepad/v1/events/{event_id}/orders?limit=250"),
            Some(TIMEPAD_TOKEN),
        )
        .await;
    assert_eq!(page["total"], 334);
    assert_eq!(page["values"].as_array().map(Vec::len), Some(250));
}

#[tokio::test]
async fn orders_cover_every_status_and_reuse_demo_client_contacts() {
    let fakes = Fakes::start(ARGS).await;
    let mut orders = Vec::new();
    for event_id in 2_845_100..2_845_103 {
        orders.extend(all_orders(&fakes, event_id).await);
    }
    let statuses: HashSet<&str> = orders
        .iter()
        .filter_map(|o| o["status"]["name"].as_str())
        .collect();
    for status in [
        "paid",
        "ok",
        "booked",
        "notpaid",
        "inactive",
        "returned",
        "return_org",
        "return_tp",
    ] {
        assert!(
            statuses.contains(status),
            "{status} missing from {statuses:?}"
        );
    }
    assert_eq!(statuses.len(), 18);

    // A demo client n has the phone +79 (100000000 + 7919 n).
    let demo_phone = |o: &Value| {
        let digits: String = o["answers"]["phone"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let national: u64 = digits[digits.len().saturating_sub(9)..]
            .parse()
            .unwrap_or(0);
        national >= 100_000_000
            && (national - 100_000_000).is_multiple_of(7919)
            && (1..=8000).contains(&((national - 100_000_000) / 7919))
    };
    let by_phone = orders.iter().filter(|o| demo_phone(o)).count();
    let by_email = orders
        .iter()
        .filter(|o| {
            let mail = o["mail"].as_str().unwrap_or_default().to_lowercase();
            mail.starts_with("client") && mail.ends_with("@example.ru")
        })
        .count();
    assert!(
        by_phone >= 40,
        "every 20th order uses a demo phone, got {by_phone}"
    );
    assert!(
        by_email >= 50,
        "every 20th order and then some use demo e-mails, got {by_email}"
    );

    let phones: Vec<&str> = orders
        .iter()
        .filter_map(|o| o["answers"]["phone"].as_str())
        .collect();
    assert!(
        phones.iter().any(|p| p.starts_with("+7 ")),
        "typed with spaces"
    );
    assert!(
        phones.iter().any(|p| p.starts_with('8') && p.len() == 11),
        "typed as 8XXXXXXXXXX"
    );
}

#[tokio::test]
async fn the_same_seed_yields_the_same_data_and_another_seed_does_not() {
    let a = Fakes::start(ARGS).await;
    let b = Fakes::start(ARGS).await;
    let c = Fakes::start(&[
        "--seed",
        "43",
        "--timepad-events",
        "3",
        "--timepad-orders",
        "1000",
    ])
    .await;
    let path = "/timepad/v1/events/2845101/orders?limit=50&skip=50";
    let (_, from_a) = a.get(path, Some(TIMEPAD_TOKEN)).await;
    let (_, from_b) = b.get(path, Some(TIMEPAD_TOKEN)).await;
    let (_, from_c) = c.get(path, Some(TIMEPAD_TOKEN)).await;
    assert_eq!(from_a["values"].as_array().map(Vec::len), Some(50));
    assert_eq!(from_a, from_b);
    assert_ne!(from_a, from_c);
}

#[tokio::test]
async fn a_wrong_token_is_401_a_missing_one_403_and_a_bad_limit_422() {
    let fakes = Fakes::start(ARGS).await;

    let (status, body) = fakes.get("/timepad/v1/events", Some("nope")).await;
    assert_eq!(status, 401);
    assert_eq!(body["response_status"]["error_code"], 401);

    let (status, body) = fakes.get("/timepad/v1/events/2845100/orders", None).await;
    assert_eq!(status, 403);
    assert_eq!(body["response_status"]["message"], "Token required");

    let (status, body) = fakes
        .get(
            "/timepad/v1/events/2845100/orders?limit=251",
            Some(TIMEPAD_TOKEN),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["response_status"]["errors"][0]["field_name"], "limit");

    let (status, _) = fakes
        .get("/timepad/v1/events?limit=101", Some(TIMEPAD_TOKEN))
        .await;
    assert_eq!(status, 422);

    let (status, body) = fakes
        .get("/timepad/v1/events/1/orders", Some(TIMEPAD_TOKEN))
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["response_status"]["error_code"], 404);
}
