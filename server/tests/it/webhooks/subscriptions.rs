//! Subscriptions through the API: listed, changed, deleted, scoped to their partner; bad
//! requests are problems that write nothing.

use serde_json::{Value, json};

use super::{ALL_TYPES, SUCCEEDED, subscribe};
use crate::harness::TestApp;

#[tokio::test]
async fn subscriptions_are_listed_changed_deleted_and_scoped_to_their_partner() {
    let app = TestApp::insecure_webhooks().await;
    let key = app.partner(true).await;
    let other = app.partner(true).await;
    let (sub, _) = subscribe(&app, &key, "http://127.0.0.1:9/a", &[SUCCEEDED]).await;
    let list = app.get("/v1/webhooks/subscriptions", &key).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    assert!(list.body["data"][0].get("secret").is_none());
    assert_eq!(
        app.get("/v1/webhooks/subscriptions", &other).await.body["data"],
        json!([])
    );
    for path in [
        format!("/v1/webhooks/subscriptions/{sub}"),
        format!("/v1/webhooks/subscriptions/{sub}/deliveries"),
    ] {
        app.get(&path, &other)
            .await
            .assert_problem(404, "SUBSCRIPTION_NOT_FOUND");
    }
    for path in ["rotate-secret", "test"] {
        app.post(
            &format!("/v1/webhooks/subscriptions/{sub}/{path}"),
            &other,
            None,
        )
        .await
        .assert_problem(404, "SUBSCRIPTION_NOT_FOUND");
    }
    app.patch(
        &format!("/v1/webhooks/subscriptions/{sub}"),
        &other,
        json!({ "paused": true }),
    )
    .await
    .assert_problem(404, "SUBSCRIPTION_NOT_FOUND");
    app.call(
        axum::http::Method::DELETE,
        &format!("/v1/webhooks/subscriptions/{sub}"),
        Some(&other),
        None,
    )
    .await
    .assert_problem(404, "SUBSCRIPTION_NOT_FOUND");

    let r = app
        .patch(
            &format!("/v1/webhooks/subscriptions/{sub}"),
            &key,
            json!({ "targetUrl": "http://127.0.0.1:9/b", "eventTypes": ALL_TYPES }),
        )
        .await;
    assert_eq!(r.body["targetUrl"], "http://127.0.0.1:9/b", "{}", r.body);
    assert_eq!(r.body["eventTypes"].as_array().unwrap().len(), 5);
    app.patch(
        &format!("/v1/webhooks/subscriptions/{sub}"),
        &key,
        json!({ "eventTypes": ["v1.nope"] }),
    )
    .await
    .assert_problem(400, "INVALID_EVENT_TYPE");
    app.post(
        "/v1/webhooks/subscriptions",
        &key,
        Some(json!({ "targetUrl": "http://127.0.0.1:9/", "eventTypes": [] })),
    )
    .await
    .assert_problem(400, "INVALID_EVENT_TYPE");
    app.post(
        &format!("/v1/webhooks/subscriptions/{sub}/deliveries/nope/redeliver"),
        &key,
        None,
    )
    .await
    .assert_problem(404, "DELIVERY_NOT_FOUND");
    app.get(
        &format!("/v1/webhooks/subscriptions/{sub}/deliveries?cursor=zz"),
        &key,
    )
    .await
    .assert_problem(400, "INVALID_QUERY_PARAMETER");
    let r = app
        .call(
            axum::http::Method::DELETE,
            &format!("/v1/webhooks/subscriptions/{sub}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    app.get(&format!("/v1/webhooks/subscriptions/{sub}"), &key)
        .await
        .assert_problem(404, "SUBSCRIPTION_NOT_FOUND");
}

#[tokio::test]
async fn bad_webhook_requests_get_problems_and_write_nothing() {
    let app = TestApp::insecure_webhooks().await;
    let key = app.partner(true).await;
    let (sub, _) = subscribe(&app, &key, "http://127.0.0.1:9/", &[SUCCEEDED]).await;
    let before = app.footprint().await;
    let subs = "/v1/webhooks/subscriptions";
    let one = format!("{subs}/{sub}");
    let long = format!("http://127.0.0.1:9/{}", "a".repeat(2100));
    let cases: Vec<(axum::http::Method, String, Option<Value>, u16, &str)> = vec![
        (
            axum::http::Method::POST,
            subs.to_owned(),
            None,
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            axum::http::Method::POST,
            subs.to_owned(),
            Some(json!({ "targetUrl": "http://127.0.0.1:9/" })),
            400,
            "INVALID_BODY",
        ),
        (
            axum::http::Method::POST,
            subs.to_owned(),
            Some(json!({ "targetUrl": "http://127.0.0.1:9/", "eventTypes": SUCCEEDED })),
            400,
            "INVALID_BODY",
        ),
        (
            axum::http::Method::POST,
            subs.to_owned(),
            Some(
                json!({ "targetUrl": "http://127.0.0.1:9/", "eventTypes": [SUCCEEDED], "secret": "mine" }),
            ),
            400,
            "INVALID_BODY",
        ),
        (
            axum::http::Method::POST,
            subs.to_owned(),
            Some(json!({ "targetUrl": long, "eventTypes": [SUCCEEDED] })),
            400,
            "INVALID_WEBHOOK_TARGET",
        ),
        (
            axum::http::Method::POST,
            subs.to_owned(),
            Some(json!({ "targetUrl": "ftp://x/", "eventTypes": [SUCCEEDED] })),
            400,
            "INVALID_WEBHOOK_TARGET",
        ),
        (
            axum::http::Method::PATCH,
            one.clone(),
            Some(json!({ "paused": "yes" })),
            400,
            "INVALID_BODY",
        ),
        (
            axum::http::Method::PATCH,
            one.clone(),
            Some(json!({ "targetUrl": "nope" })),
            400,
            "INVALID_WEBHOOK_TARGET",
        ),
        (
            axum::http::Method::PATCH,
            format!("{subs}/not-a-uuid"),
            Some(json!({ "paused": true })),
            400,
            "INVALID_PATH_PARAMETER",
        ),
        (
            axum::http::Method::POST,
            format!("{one}/recover"),
            None,
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            axum::http::Method::POST,
            format!("{one}/recover"),
            Some(json!({ "since": 5 })),
            400,
            "INVALID_BODY",
        ),
        (
            axum::http::Method::GET,
            format!("{one}/deliveries?limit=0"),
            None,
            400,
            "INVALID_QUERY_PARAMETER",
        ),
        (
            axum::http::Method::GET,
            format!("{one}/deliveries?color=red"),
            None,
            400,
            "INVALID_QUERY_PARAMETER",
        ),
        (
            axum::http::Method::PUT,
            one.clone(),
            None,
            405,
            "METHOD_NOT_ALLOWED",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let r = app.call(method.clone(), &path, Some(&key), body).await;
        assert_eq!(r.status.as_u16(), status, "{method} {path}: {}", r.body);
        r.assert_problem(status, code);
    }
    assert_eq!(app.footprint().await, before);
}
