//! `GET /v1/openapi.json`: an OpenAPI 3.1 document that holds every route of the contract,
//! and only routes the server really serves.

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{TestApp, iso, noon};

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
    ("get", "/v1/banks"),
    ("post", "/v1/sessions"),
    ("get", "/v1/sessions/{sessionId}"),
    ("put", "/v1/sessions/completed"),
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
    // Every operation documents the per-partner limit's 429 and its headers.
    for (method, path) in CONTRACT {
        let limited = &paths[*path][*method]["responses"]["429"];
        for header in ["Retry-After", "RateLimit-Policy", "RateLimit"] {
            assert!(
                limited["headers"].get(header).is_some(),
                "{method} {path}: 429 without {header}"
            );
        }
    }
}

/// A request body that the operation accepts, for the operations that need one.
/// Replaced by the test's user id in the bodies that name one.
const USER_PLACEHOLDER: &str = "{userId}";

fn valid_body(method: &Method, path: &str) -> Option<Value> {
    let body = match (method.as_str(), path) {
        ("POST", "/sandbox/v1/users") => json!({ "source": "MARKETPLACE" }),
        ("POST", "/sandbox/v1/users/{userId}/accounts") => json!({ "accounts": [{}] }),
        ("POST", "/sandbox/v1/clock") => json!({ "offsetSeconds": 0 }),
        // Neither latency nor kind: clears the caller's faults.
        ("POST", "/sandbox/v1/bank/faults") => json!({}),
        ("POST", "/v1/webhooks/subscriptions") => json!({
            "targetUrl": "http://127.0.0.1:9/hooks",
            "eventTypes": ["v1.account_transactions.on_demand_refresh.succeeded"],
        }),
        ("PATCH", "/v1/webhooks/subscriptions/{subscriptionId}") => json!({ "paused": false }),
        ("POST", "/v1/sessions") => json!({
            "userId": USER_PLACEHOLDER,
            "partnerRedirectUrl": "https://partner.example/back",
        }),
        ("POST", "/v1/webhooks/subscriptions/{subscriptionId}/recover") => {
            json!({ "since": iso(noon()) })
        }
        _ => return None,
    };
    Some(body)
}

/// Every operation of the document, called with real ids (a user, its account, a refresh job,
/// a subscription and an event delivered to it) and a valid body, reaches its handler and
/// answers a success status that the document lists for it.
#[tokio::test]
async fn every_documented_route_answers_a_documented_success_for_real_ids() {
    let app = TestApp::insecure_webhooks().await;
    let key = app.partner(true).await;
    let doc = app
        .call(Method::GET, "/v1/openapi.json", None, None)
        .await
        .body;
    let user = app.user(&key).await;
    let account = app.connect(&key, &user, json!([{}])).await.remove(0);
    let job = app.refresh(&key, &user).await;
    assert_eq!(job.status, 201, "{}", job.body);
    let job = job.body["jobId"].as_str().unwrap().to_owned();
    let sub = app
        .post(
            "/v1/webhooks/subscriptions",
            &key,
            valid_body(&Method::POST, "/v1/webhooks/subscriptions"),
        )
        .await;
    assert_eq!(sub.status, 201, "{}", sub.body);
    let sub = sub.body["subscriptionId"].as_str().unwrap().to_owned();
    let event = app
        .post(
            &format!("/v1/webhooks/subscriptions/{sub}/test"),
            &key,
            None,
        )
        .await;
    assert_eq!(event.status, 202, "{}", event.body);
    let event = event.body["eventId"].as_str().unwrap().to_owned();
    let session = app
        .post(
            "/v1/sessions",
            &key,
            Some(json!({ "userId": user, "partnerRedirectUrl": "https://partner.example/back" })),
        )
        .await;
    assert_eq!(session.status, 201, "{}", session.body);
    let session = session.body["sessionId"].as_str().unwrap().to_owned();

    let mut operations: Vec<(Method, String, &Value)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            operations.push((method, path.clone(), &op["responses"]));
        }
    }
    // The subscription is deleted last: every other operation still finds it.
    operations.sort_by_key(|(method, _, _)| *method == Method::DELETE);
    assert!(operations.len() >= CONTRACT.len());
    let mut wrong = Vec::new();
    for (method, path, responses) in &operations {
        let concrete = path
            .replace("{userId}", &user)
            .replace("{accountId}", &account)
            .replace("{jobId}", &job)
            .replace("{subscriptionId}", &sub)
            .replace("{eventId}", &event)
            .replace("{sessionId}", &session);
        assert!(!concrete.contains('{'), "{path} has a parameter not filled");
        let mut request = axum::http::Request::builder()
            .method(method.clone())
            .uri(&concrete)
            .header("x-api-key", &key);
        let body = match valid_body(method, path) {
            Some(body) => {
                request = request.header("content-type", "application/json");
                axum::body::Body::from(body.to_string().replace(USER_PLACEHOLDER, &user))
            }
            None => axum::body::Body::empty(),
        };
        let response = tower::ServiceExt::oneshot(app.router.clone(), request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        // Read problem bodies only: the event stream never ends.
        let problem = if response
            .headers()
            .get("content-type")
            .is_some_and(|v| v == "application/problem+json")
        {
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            serde_json::from_slice::<Value>(&body).unwrap()
        } else {
            Value::Null
        };
        // Completing a session needs the termination token the user's browser brings back
        // from the bank (the journey's own tests do that): here, its documented 401.
        let needs_the_journey = *method == Method::PUT && path == "/v1/sessions/completed";
        let expected = status.is_success() || (needs_the_journey && status == 401);
        if !expected || responses.get(status.as_str()).is_none() {
            let documented: Vec<&String> = responses.as_object().unwrap().keys().collect();
            wrong.push(format!(
                "{method} {path}: {status} (documented: {documented:?}) {problem}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// What the document says of a request, the server holds to: the same patterns, the same
/// bounds, the JSON number model of JSON Schema (`129.0` is an integer), bodies that are
/// objects; and what every operation may answer is listed on it.
#[tokio::test]
async fn the_document_is_as_strict_as_the_server_and_lists_every_answer() {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    let doc = app
        .call(Method::GET, "/v1/openapi.json", None, None)
        .await
        .body;
    let schemas = &doc["components"]["schemas"];
    let names: Vec<&str> = schemas["EventType"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(names.contains(&"v1.account_transactions.user_initiated.failed"));
    assert_eq!(names.len(), freshet_rules::EventType::ALL.len());
    assert_eq!(
        schemas["NewSubscription"]["properties"]["eventTypes"]["items"]["$ref"],
        "#/components/schemas/EventType"
    );
    let pattern = schemas["NewSubscription"]["properties"]["targetUrl"]["pattern"]
        .as_str()
        .unwrap();
    assert_eq!(pattern, server::model::forms::HTTPS_URL);
    let since = &schemas["Recover"]["properties"]["since"];
    assert_eq!(since["pattern"], server::model::forms::TIMESTAMP);
    for (path, method) in [
        ("/v1/users/{userId}", "get"),
        ("/v1/webhooks/subscriptions/{subscriptionId}/test", "post"),
        ("/v1/banks", "get"),
    ] {
        let op = &doc["paths"][path][method];
        assert_eq!(op["security"], json!([{"api_key": []}]), "{path}");
        for status in ["401", "429", "500"] {
            assert!(
                op["responses"].get(status).is_some(),
                "{method} {path} {status}"
            );
        }
    }
    let with_body = &doc["paths"]["/v1/webhooks/subscriptions"]["post"];
    for status in ["400", "413", "415", "422"] {
        assert!(with_body["responses"].get(status).is_some(), "{status}");
    }
    let optional = &doc["paths"]["/v1/users"]["post"]["requestBody"];
    assert_eq!(optional["required"], false);
    assert_eq!(
        optional["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/NewUser",
        "an optional object, not a null"
    );

    // The server, the same.
    let clock = app
        .post(
            "/sandbox/v1/clock",
            &key,
            Some(json!({ "offsetSeconds": 120.0 })),
        )
        .await;
    assert_eq!(clock.status, 200, "{}", clock.body);
    assert_eq!(clock.body["offsetSeconds"], 120);
    app.post(
        "/sandbox/v1/clock",
        &key,
        Some(json!({ "offsetSeconds": 315_360_001 })),
    )
    .await
    .assert_problem(400, "INVALID_BODY");
    app.post("/sandbox/v1/users", &key, Some(json!([null, null])))
        .await
        .assert_problem(400, "INVALID_BODY");
    app.post(
        "/sandbox/v1/users",
        &key,
        Some(json!({ "externalReference": "" })),
    )
    .await
    .assert_problem(400, "INVALID_BODY");
    app.post(
        "/sandbox/v1/bank/faults",
        &key,
        Some(json!({ "kind": "RATE_LIMITED", "retryAfterSeconds": 86_401 })),
    )
    .await
    .assert_problem(400, "INVALID_BODY");
    let user = app.user(&key).await;
    for (url, status) in [
        ("https://partner.example/back?x=1", 201),
        ("https://partner.example*/back", 400),
        ("https://partner.example/%zz", 400),
        ("https://partner.example/back#fragment", 400),
    ] {
        let r = app
            .post(
                "/v1/sessions",
                &key,
                Some(json!({ "userId": user, "partnerRedirectUrl": url })),
            )
            .await;
        assert_eq!(r.status.as_u16(), status, "{url}: {}", r.body);
    }
}
