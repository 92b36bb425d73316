//! Novofon Call API: a placed call, the 999 employee rule, token and parameter errors, the log.

use serde_json::{json, Value};

use crate::support::{Fakes, NOVOFON_TOKEN};

pub fn employee_call(token: &str, contact: &str, extension: &str, external_id: &str) -> Value {
    json!({
        "jsonrpc": "2.0", "id": external_id, "method": "start.employee_call",
        "params": {
            "access_token": token, "first_call": "employee", "switch_at_once": true,
            "virtual_phone_number": "74993720692", "contact": contact, "direction": "out",
            "external_id": external_id, "employee": {"id": 25, "phone_number": extension},
        },
    })
}

#[tokio::test]
async fn a_call_is_placed_and_answers_a_session_id_and_limits() {
    let fakes = Fakes::start(&[]).await;
    let (status, body) = fakes
        .post(
            "/novofon/v4.0",
            &employee_call(NOVOFON_TOKEN, "79261234567", "101", "call-1"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], "call-1");
    assert!(
        body["result"]["data"]["call_session_id"].as_u64().is_some(),
        "{body}"
    );
    assert_eq!(body["result"]["metadata"]["limits"]["minute_limit"], 100);
    assert_eq!(body["result"]["metadata"]["limits"]["minute_remaining"], 99);

    let (status, body) = fakes
        .post(
            "/novofon",
            &employee_call(NOVOFON_TOKEN, "79261234567", "10234", "call-2"),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        body["result"].is_object(),
        "the bare /novofon path works too: {body}"
    );
}

#[tokio::test]
async fn extension_999_is_employee_not_found_and_bad_input_gets_the_real_errors() {
    let fakes = Fakes::start(&[]).await;
    let (status, body) = fakes
        .post(
            "/novofon/v4.0",
            &employee_call(NOVOFON_TOKEN, "79261234567", "999", "a"),
        )
        .await;
    assert_eq!(status, 200, "JSON-RPC errors come with HTTP 200");
    assert_eq!(body["error"]["code"], -32602);
    assert_eq!(body["error"]["data"]["mnemonic"], "employee_not_found");

    let (_, body) = fakes
        .post(
            "/novofon/v4.0",
            &employee_call("wrong", "79261234567", "101", "b"),
        )
        .await;
    assert_eq!(body["error"]["code"], -32001);
    assert_eq!(body["error"]["data"]["mnemonic"], "access_token_invalid");

    let (_, body) = fakes
        .post(
            "/novofon/v4.0",
            &employee_call(NOVOFON_TOKEN, "8 (926) 123", "101", "c"),
        )
        .await;
    assert_eq!(body["error"]["data"]["mnemonic"], "invalid_parameter_value");
    assert_eq!(body["error"]["data"]["field"], "contact");

    let mut unknown = employee_call(NOVOFON_TOKEN, "79261234567", "101", "d");
    unknown["method"] = json!("start.simple_call");
    let (_, body) = fakes.post("/novofon/v4.0", &unknown).await;
    assert_eq!(body["error"]["code"], -32601);
}

#[tokio::test]
async fn the_log_counts_employee_calls_and_keeps_their_external_ids() {
    let fakes = Fakes::start(&[]).await;
    for (n, extension) in ["101", "999", "102"].iter().enumerate() {
        let call = employee_call(
            NOVOFON_TOKEN,
            "79261234567",
            extension,
            &format!("crm_call_{n}"),
        );
        fakes.post("/novofon/v4.0", &call).await;
    }
    let calls = fakes.requests("novofon").await;
    let external_ids: Vec<&str> = calls
        .iter()
        .filter(|r| r["body"]["method"] == "start.employee_call")
        .filter_map(|r| r["body"]["params"]["external_id"].as_str())
        .collect();
    assert_eq!(external_ids, ["crm_call_0", "crm_call_1", "crm_call_2"]);
    assert!(calls
        .iter()
        .all(|r| r["status"] == 200 && r["method"] == "POST"));
}
