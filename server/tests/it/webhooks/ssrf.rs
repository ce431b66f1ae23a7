//! The SSRF guard: targets must be HTTPS and public when registered and when delivered to,
//! and redirects are never followed.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use server::webhooks::TargetPolicy;
use server::webhooks::target::Lookup;

use super::{
    ALL_TYPES, Receiver, SUCCEEDED, Subscribed, attempts, send_test_event, subscribe, subscribed,
};
use crate::harness::TestApp;

#[tokio::test]
async fn targets_must_be_https_and_public_at_registration() {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    for (url, code) in [
        ("http://example.com/hooks", "INVALID_WEBHOOK_TARGET"),
        ("not a url", "INVALID_WEBHOOK_TARGET"),
        ("https://127.0.0.1/hooks", "WEBHOOK_TARGET_NOT_ALLOWED"),
        ("https://10.1.2.3/hooks", "WEBHOOK_TARGET_NOT_ALLOWED"),
        ("https://172.16.0.1/hooks", "WEBHOOK_TARGET_NOT_ALLOWED"),
        ("https://192.168.0.10/hooks", "WEBHOOK_TARGET_NOT_ALLOWED"),
        (
            "https://169.254.169.254/latest/meta-data",
            "WEBHOOK_TARGET_NOT_ALLOWED",
        ),
        ("https://100.64.0.1/hooks", "WEBHOOK_TARGET_NOT_ALLOWED"),
        ("https://224.0.0.1/hooks", "WEBHOOK_TARGET_NOT_ALLOWED"),
        ("https://0.0.0.0/hooks", "WEBHOOK_TARGET_NOT_ALLOWED"),
        ("https://[::1]/hooks", "WEBHOOK_TARGET_NOT_ALLOWED"),
        (
            "https://[::ffff:127.0.0.1]/hooks",
            "WEBHOOK_TARGET_NOT_ALLOWED",
        ),
        (
            "https://[::ffff:a9fe:a9fe]/hooks",
            "WEBHOOK_TARGET_NOT_ALLOWED",
        ),
        (
            "https://[fd00:ec2::254]/hooks",
            "WEBHOOK_TARGET_NOT_ALLOWED",
        ),
        ("https://[fe80::1]/hooks", "WEBHOOK_TARGET_NOT_ALLOWED"),
        ("https://[ff02::1]/hooks", "WEBHOOK_TARGET_NOT_ALLOWED"),
        // A name that resolves to loopback (through /etc/hosts: no network needed).
        ("https://localhost/hooks", "WEBHOOK_TARGET_NOT_ALLOWED"),
    ] {
        app.post(
            "/v1/webhooks/subscriptions",
            &key,
            Some(json!({ "targetUrl": url, "eventTypes": [SUCCEEDED] })),
        )
        .await
        // A malformed target is a 400; a well-formed one whose host is not public, a 422.
        .assert_problem(
            if code == "INVALID_WEBHOOK_TARGET" {
                400
            } else {
                422
            },
            code,
        );
    }
    assert_eq!(app.count("webhook_subscriptions").await, 0);
}

/// A resolver that answers a public address first and loopback afterwards: DNS rebinding.
struct Rebinding {
    calls: Mutex<u32>,
}

impl Lookup for Rebinding {
    fn lookup(
        &self,
        _host: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>
    {
        let mut calls = self.calls.lock().unwrap();
        *calls += 1;
        let ip: IpAddr = if *calls == 1 {
            "93.184.216.34".parse().unwrap()
        } else {
            "127.0.0.1".parse().unwrap()
        };
        Box::pin(async move { Ok(vec![ip]) })
    }
}

#[tokio::test]
async fn a_host_rebound_to_loopback_after_registration_is_refused_at_delivery() {
    let receiver = Receiver::start().await;
    let lookup = Arc::new(Rebinding {
        calls: Mutex::new(0),
    });
    let app = TestApp::with_options(true, TargetPolicy::secure().with_lookup(lookup)).await;
    let key = app.partner(true).await;
    let (sub, _) = subscribe(
        &app,
        &key,
        &format!("https://rebind.test:{}/hooks", receiver.port),
        &ALL_TYPES,
    )
    .await;
    send_test_event(&app, &key, &sub).await;
    app.deliverer().run_pending().await.unwrap();
    let log = attempts(&app, &key, &sub).await;
    assert_eq!(log[0]["errorKind"], "TARGET_FORBIDDEN", "{log:?}");
    assert!(receiver.received().is_empty(), "no connection was made");
}

#[tokio::test]
async fn redirects_are_never_followed() {
    let Subscribed {
        app,
        receiver,
        key,
        sub,
        ..
    } = subscribed().await;
    let elsewhere = Receiver::start().await;
    receiver.answer_with(
        302,
        Duration::ZERO,
        vec![("location", elsewhere.url.clone())],
    );
    send_test_event(&app, &key, &sub).await;
    app.deliverer().run_pending().await.unwrap();
    assert!(
        elsewhere.received().is_empty(),
        "the redirect was not followed"
    );
    let log = attempts(&app, &key, &sub).await;
    assert_eq!(log[0]["statusCode"], 302);
    assert_eq!(log[0]["errorKind"], "REDIRECT");
    assert_eq!(
        log[0]["deliveryStatus"], "PENDING",
        "a 3xx is retried like any failure"
    );
}

/// Finding 11 of the hardening issue: credentials in a target were stored and echoed back,
/// and port 0 was taken — even with the guard off for local development.
#[tokio::test]
async fn targets_with_credentials_or_port_zero_are_refused_and_not_echoed() {
    let app = TestApp::insecure_webhooks().await;
    let key = app.partner(true).await;
    for url in [
        "https://user:pass@example.com/hooks",
        "https://user@example.com/hooks",
        "http://:secret@127.0.0.1:8080/hooks",
        "https://example.com:0/hooks",
    ] {
        let r = app
            .post(
                "/v1/webhooks/subscriptions",
                &key,
                Some(json!({ "targetUrl": url, "eventTypes": [SUCCEEDED] })),
            )
            .await;
        r.assert_problem(400, "INVALID_WEBHOOK_TARGET");
        let detail = r.body["detail"].as_str().unwrap();
        assert!(
            !detail.contains("user:pass") && !detail.contains(":secret@"),
            "{detail}"
        );
    }
    assert_eq!(app.count("webhook_subscriptions").await, 0);
}

/// Finding 4 of the hardening issue: no cap on subscriptions per partner.
#[tokio::test]
async fn a_partner_holds_at_most_twenty_subscriptions() {
    let app = TestApp::insecure_webhooks().await;
    let (key, other) = (app.partner(true).await, app.partner(true).await);
    let create = |key: String| {
        let app = &app;
        async move {
            app.post(
                "/v1/webhooks/subscriptions",
                &key,
                Some(json!({ "targetUrl": "http://127.0.0.1:9/hooks", "eventTypes": [SUCCEEDED] })),
            )
            .await
        }
    };
    // Concurrently, so that the cap is seen to hold under a race, not only in sequence.
    let replies = futures_util::future::join_all((0..25).map(|_| create(key.clone()))).await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    assert_eq!(created, 20);
    for r in replies.iter().filter(|r| r.status != 201) {
        r.assert_problem(422, "SUBSCRIPTION_LIMIT_REACHED");
    }
    assert_eq!(
        create(other).await.status,
        201,
        "another partner has its own cap"
    );
    // Deleting one makes room.
    let id = replies.iter().find(|r| r.status == 201).unwrap().body["subscriptionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.call(
            axum::http::Method::DELETE,
            &format!("/v1/webhooks/subscriptions/{id}"),
            Some(&key),
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(create(key).await.status, 201);
}
