//! The OpenAPI 3.1 document lists every route (the router is built from the same calls), with
//! request and response schemas and the error shape; every secured route in it answers 401
//! with that error shape without a token.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::PgPool;

#[sqlx::test(migrations = false)]
async fn every_route_in_the_openapi_document_answers_401_without_a_token(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let res = app
        .http
        .get(format!("{}/api/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(
        doc["paths"]["/api/lessons"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"]
            .is_object(),
        "request schemas are documented"
    );

    let mut secured = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|c| c.starts_with('2')),
                "{method} {path}: success response"
            );
            if op["security"].is_null() {
                continue; // login, health, metrics
            }
            assert!(
                responses.contains_key("401"),
                "{method} {path} documents 401"
            );
            // Path parameters: a well-formed id that exists nowhere (ULID for jobs).
            let id = if path.starts_with("/api/jobs") {
                "01KBQ5ZQ9V8R3J6D2M4N7P1X0S".to_string()
            } else {
                uuid::Uuid::new_v4().to_string()
            };
            let url = path
                .split('/')
                .map(|seg| {
                    if seg.starts_with('{') {
                        id.as_str()
                    } else {
                        seg
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let res = app
                .http
                .request(method.clone(), format!("{}{url}", app.base))
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap();
            let error = error_body(res, StatusCode::UNAUTHORIZED).await;
            assert_eq!(error["code"], "unauthorized", "{method} {path}");
            secured += 1;
        }
    }
    assert!(secured >= 45, "{secured} secured operations documented");
    app.stop().await;
}
