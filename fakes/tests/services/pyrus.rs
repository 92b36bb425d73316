//! Pyrus: auth, token expiry, keyset paging of the register by task id.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::Fakes;

async fn token(fakes: &Fakes) -> String {
    let (status, body) = fakes
        .post(
            "/pyrus/auth",
            &json!({"login": "bot@artsvao.example", "security_key": "key"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn register(fakes: &Fakes, token: &str, body: Value) -> (u16, Value) {
    let response = fakes
        .http
        .post(fakes.url("/pyrus/v4/forms/321/register"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("the register answers");
    Fakes::answer(response).await
}

#[tokio::test]
async fn auth_refuses_wrong_credentials_and_points_api_url_at_the_fake() {
    let fakes = Fakes::start(&[]).await;
    let (status, body) = fakes
        .post(
            "/pyrus/auth",
            &json!({"login": "bot@artsvao.example", "security_key": "wrong"}),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["error_code"], "invalid_credentials");

    let (status, body) = fakes
        .post(
            "/pyrus/auth",
            &json!({"login": "bot@artsvao.example", "security_key": "key"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["api_url"], format!("{}/pyrus/v4/", fakes.base));

    let (status, body) = register(&fakes, "made-up", json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(body["error_code"], "invalid_token");
}

#[tokio::test]
async fn paging_by_task_id_returns_every_task_once_in_id_order() {
    let fakes = Fakes::start(&["--pyrus-tasks", "3000"]).await;
    let token = token(&fakes).await;
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let mut request = json!({"sort": "id", "item_count": 1000, "include_archived": "y"});
        if let Some(last) = ids.last() {
            request["id"] = json!(format!("gt{last}"));
        }
        let (status, body) = register(&fakes, &token, request).await;
        assert_eq!(status, 200, "{body}");
        let tasks = body["tasks"].as_array().cloned().unwrap_or_default();
        pages += 1;
        ids.extend(tasks.iter().filter_map(|t| t["id"].as_u64()));
        if tasks.len() < 1000 {
            break;
        }
    }
    assert_eq!(ids.len(), 3000);
    assert_eq!(pages, 4, "three full pages and an empty one");
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    let (_, open) = register(&fakes, &token, json!({"item_count": 20000})).await;
    let open = open["tasks"].as_array().cloned().unwrap_or_default();
    assert!(
        open.len() > 1500 && open.len() < 3000,
        "closed tasks need include_archived"
    );
    assert!(open.iter().all(|t| t["is_closed"] == false));

    // Task index 39 is broken on purpose: it has no rental date (field 6).
    let (_, broken) = register(
        &fakes,
        &token,
        json!({"id": format!("gt{},lt{}", 11_600 + 3 * 39 - 1, 11_600 + 3 * 40), "include_archived": "y"}),
    )
    .await;
    let fields = broken["tasks"][0]["fields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!fields.is_empty());
    assert!(fields.iter().all(|f| f["id"] != 6), "{fields:?}");

    let (status, body) = register(&fakes, &token, json!({"item_count": 20001})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error_code"], "items_count_out_of_range");
}

#[tokio::test]
async fn an_expired_token_gets_401_expired_token_until_auth_again() {
    let fakes = Fakes::start(&["--pyrus-token-ttl-secs", "1"]).await;
    let stale = token(&fakes).await;
    let (status, _) = register(&fakes, &stale, json!({"item_count": 1})).await;
    assert_eq!(status, 200);

    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = register(&fakes, &stale, json!({"item_count": 1})).await;
        if status == 401 {
            break body;
        }
        assert!(Instant::now() < deadline, "the token never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["error_code"], "expired_token");
}

#[tokio::test]
async fn expire_tokens_admin_route_expires_every_issued_token() {
    let fakes = Fakes::start(&[]).await;
    let old = token(&fakes).await;
    let (status, _) = fakes.post("/_fakes/pyrus/expire-tokens", &json!({})).await;
    assert_eq!(status, 204);
    let (status, body) = register(&fakes, &old, json!({})).await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (401, json!("expired_token"))
    );
    let fresh = token(&fakes).await;
    let (status, body) = register(&fakes, &fresh, json!({})).await;
    assert_eq!(status, 200);
    let tasks = body["tasks"].as_array().cloned().unwrap_or_default();
    assert_eq!(tasks.len(), 200 - tasks_closed(&fakes, &fresh).await);
}

async fn tasks_closed(fakes: &Fakes, token: &str) -> usize {
    let (_, body) = register(fakes, token, json!({"include_archived": "y"})).await;
    let tasks = body["tasks"].as_array().cloned().unwrap_or_default();
    assert_eq!(tasks.len(), 200, "the default form has 200 tasks");
    tasks.iter().filter(|t| t["is_closed"] == true).count()
}
