//! `GET /v1/openapi.json`: an OpenAPI 3.1 document that holds every route of the contract,
//! and only routes the server really serves.

use axum::http::Method;
use serde_json::Value;

use crate::harness::TestApp;

/// Every endpoint of shared/spec/api.md that this build serves (sandbox mode).
const CONTRACT: &[(&str, &str)] = &[
    ("post", "/v1/users"),
    ("get", "/v1/users/{userId}"),
    ("get", "/v1/users/{userId}/accounts"),
    ("get", "/v1/users/{userId}/transactions"),
    (
        "get",
        "/v1/users/{userId}/accounts/{accountId}/transactions",
    ),
    ("post", "/v1/users/{userId}/accounts-refresh"),
    ("get", "/v1/users/{userId}/accounts-refresh/{jobId}"),
    ("post", "/sandbox/v1/users"),
    ("post", "/sandbox/v1/users/{userId}/accounts"),
    ("post", "/sandbox/v1/clock"),
    ("post", "/sandbox/v1/bank/faults"),
    ("get", "/v1/events"),
    ("post", "/v1/webhooks/subscriptions"),
    ("get", "/v1/webhooks/subscriptions"),
    ("get", "/v1/webhooks/subscriptions/{subscriptionId}"),
    ("patch", "/v1/webhooks/subscriptions/{subscriptionId}"),
    ("delete", "/v1/webhooks/subscriptions/{subscriptionId}"),
    (
        "post",
        "/v1/webhooks/subscriptions/{subscriptionId}/rotate-secret",
    ),
    ("post", "/v1/webhooks/subscriptions/{subscriptionId}/test"),
    (
        "get",
        "/v1/webhooks/subscriptions/{subscriptionId}/deliveries",
    ),
    (
        "post",
        "/v1/webhooks/subscriptions/{subscriptionId}/deliveries/{eventId}/redeliver",
    ),
    (
        "post",
        "/v1/webhooks/subscriptions/{subscriptionId}/recover",
    ),
];

#[tokio::test]
async fn the_document_is_openapi_3_1_and_lists_every_contract_route() {
    let app = TestApp::new().await;
    let doc = app.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(doc.status, 200);
    assert!(
        doc.body["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc.body["openapi"]
    );
    let paths = doc.body["paths"].as_object().unwrap();
    for (method, path) in CONTRACT {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} is missing"
        );
    }
    let refresh = &paths["/v1/users/{userId}/accounts-refresh"]["post"]["responses"];
    assert_eq!(
        refresh["201"]["content"]["application/json"]["example"]["status"],
        "TRIGGERED"
    );
    assert!(refresh["200"]["headers"].get("Retry-After").is_some());
    assert!(doc.body["components"]["securitySchemes"]["api_key"].is_object());
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    let doc = app
        .call(Method::GET, "/v1/openapi.json", None, None)
        .await
        .body;
    let id = uuid::Uuid::new_v4().to_string();
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{userId}", &id)
            .replace("{accountId}", &id)
            .replace("{jobId}", &id);
        for method in ops.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let request = axum::http::Request::builder()
                .method(method.clone())
                .uri(&concrete)
                .header("x-api-key", &key)
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{}"))
                .unwrap();
            let response = tower::ServiceExt::oneshot(app.router.clone(), request)
                .await
                .unwrap();
            assert_ne!(
                response.status().as_u16(),
                405,
                "{method} {path} is documented but not routed"
            );
            // Read problem bodies only: the event stream never ends.
            if response
                .headers()
                .get("content-type")
                .is_some_and(|v| v == "application/problem+json")
            {
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                let body: Value = serde_json::from_slice(&body).unwrap();
                assert_ne!(
                    body["code"], "ROUTE_NOT_FOUND",
                    "{method} {path} is documented but not routed"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= CONTRACT.len());
}
