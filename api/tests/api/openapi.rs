//! The OpenAPI 3.1 document lists every route (the router is built from the same calls), with
//! request and response schemas and the error shape; every secured route in it answers 401
//! with that error shape without a token.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::PgPool;

/// The served document (public: no token), asserting it is served.
async fn document(app: &TestApp) -> Value {
    let res = app
        .http
        .get(format!("{}/api/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

#[sqlx::test(migrations = false)]
async fn every_route_in_the_openapi_document_answers_401_without_a_token(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let doc = document(&app).await;
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

/// Operation ids are unique, and each creating `POST` links to the operations on what it
/// created (stateful clients and fuzzers follow them with real ids); every link names an
/// operation that exists. Money is a decimal string with its pattern.
#[sqlx::test(migrations = false)]
async fn operations_have_unique_ids_and_creations_link_to_what_they_created(db: PgPool) {
    let app = TestApp::spawn_with(db, None, api_config(&[])).await;
    let doc = document(&app).await;
    let mut ids = std::collections::HashSet::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_string()), "operation id {id} repeats");
        }
    }
    let mut links = 0;
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            for answer in op["responses"].as_object().unwrap().values() {
                for link in answer["links"]
                    .as_object()
                    .into_iter()
                    .flat_map(|l| l.values())
                {
                    let target = link["operationId"].as_str().unwrap();
                    assert!(ids.contains(target), "link to unknown operation {target}");
                    assert!(link["parameters"]["id"]
                        .as_str()
                        .unwrap()
                        .starts_with("$response.body#/"));
                    links += 1;
                }
            }
        }
    }
    let client_links = doc["paths"]["/api/clients"]["post"]["responses"]["201"]["links"]
        .as_object()
        .unwrap();
    for target in [
        "get_api_clients_id",
        "patch_api_clients_id",
        "post_api_clients_id_archive",
    ] {
        assert_eq!(
            client_links[target]["parameters"]["id"], "$response.body#/id",
            "{target}"
        );
    }
    let sale_links = doc["paths"]["/api/subscriptions"]["post"]["responses"]["201"]["links"]
        .as_object()
        .unwrap();
    assert_eq!(
        sale_links["post_api_subscriptions_id_freeze"]["parameters"]["id"],
        "$response.body#/subscription/id"
    );
    assert!(links >= 30, "{links} links");
    let money = &doc["components"]["schemas"]["Money"];
    assert_eq!(money["type"], "string", "{money}");
    assert!(money["pattern"].is_string(), "{money}");
    app.stop().await;
}
