//! Telegram: sendMessage success, token errors, blocked and missing chats, 429 via a fault.

use serde_json::json;

use crate::support::{Fakes, TELEGRAM_TOKEN};

#[tokio::test]
async fn send_message_answers_ok_with_increasing_message_ids() {
    let fakes = Fakes::start(&[]).await;
    let mut ids = Vec::new();
    for chat_id in [100_001, 100_002] {
        let response = fakes
            .http
            .post(fakes.telegram("sendMessage"))
            .json(&json!({"chat_id": chat_id, "text": "Занятие завтра в 18:00", "parse_mode": "HTML"}))
            .send()
            .await
            .unwrap();
        let (status, body) = Fakes::answer(response).await;
        assert_eq!(status, 200);
        assert_eq!(body["ok"], true);
        assert_eq!(body["result"]["chat"]["id"], chat_id);
        assert_eq!(body["result"]["text"], "Занятие завтра в 18:00");
        ids.push(body["result"]["message_id"].as_u64().unwrap());
    }
    assert!(ids[1] > ids[0]);

    let (status, body) = fakes
        .get(&format!("/telegram/bot{TELEGRAM_TOKEN}/getMe"), None)
        .await;
    assert_eq!(
        (status, body["result"]["is_bot"].clone()),
        (200, json!(true))
    );
}

#[tokio::test]
async fn a_wrong_token_is_401_and_a_malformed_one_404() {
    let fakes = Fakes::start(&[]).await;
    let (status, body) = fakes
        .get(
            "/telegram/bot123456789:AAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/getMe",
            None,
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
    );
    let (status, body) = fakes.get("/telegram/botnonsense/getMe", None).await;
    assert_eq!((status, body["error_code"].clone()), (404, json!(404)));
}

#[tokio::test]
async fn blocked_chats_get_403_and_unknown_chats_400() {
    let fakes = Fakes::start(&[]).await;
    let send = |chat_id: i64| {
        let request = fakes
            .http
            .post(fakes.telegram("sendMessage"))
            .json(&json!({"chat_id": chat_id, "text": "hi"}));
        async move { Fakes::answer(request.send().await.unwrap()).await }
    };

    let (status, _) = fakes
        .post("/_fakes/telegram/blocked", &json!({"chat_id": 555}))
        .await;
    assert_eq!(status, 204);
    let (status, body) = send(555).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["description"],
        "Forbidden: bot was blocked by the user"
    );

    let (status, _) = send(7403).await;
    assert_eq!(status, 403, "ids ending in 403 have blocked the bot");
    let (status, body) = send(7404).await;
    assert_eq!(status, 400);
    assert_eq!(body["description"], "Bad Request: chat not found");

    fakes.post("/_fakes/reset", &json!({})).await;
    let (status, _) = send(555).await;
    assert_eq!(status, 200, "reset unblocks");
}

#[tokio::test]
async fn a_429_fault_carries_retry_after_in_header_and_parameters() {
    let fakes = Fakes::start(&[]).await;
    fakes
        .fault(
            json!({"service": "telegram", "path_prefix": "/sendMessage", "fault": "status",
                      "status": 429, "retry_after_s": 35, "times": 1}),
        )
        .await;
    let request = || {
        fakes
            .http
            .post(fakes.telegram("sendMessage"))
            .json(&json!({"chat_id": 1, "text": "hi"}))
            .send()
    };
    let response = request().await.unwrap();
    assert_eq!(response.headers()["retry-after"], "35");
    let (status, body) = Fakes::answer(response).await;
    assert_eq!(status, 429);
    assert_eq!(body["parameters"]["retry_after"], 35);
    assert_eq!(body["description"], "Too Many Requests: retry after 35");

    let (status, _) = Fakes::answer(request().await.unwrap()).await;
    assert_eq!(status, 200, "times: 1 hits once");
}
