//! Webhooks end to end: subscriptions through the API, deliveries from the event log to a
//! real receiver on 127.0.0.1:0 whose answers change mid-test, signatures checked three
//! ways, retries on the frozen clock, the attempt log, redelivery, recovery, and the SSRF guard.
//!
//! This file holds the shared set-up (the receiver, a subscribed partner, the requests every
//! test makes); each behaviour has its own file.

mod attempt_log;
mod delivery;
mod https;
mod pausing;
mod retries;
mod signatures;
mod ssrf;
mod subscriptions;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use server::webhooks::signature::{Secret, verify_standard, verify_x_signature};
use server::worker::Worker;

use crate::harness::{Reply, TestApp};
use crate::worker::drain;

const SUCCEEDED: &str = "v1.account_transactions.on_demand_refresh.succeeded";
const ALL_TYPES: [&str; 5] = [
    "v1.account_transactions.user_initiated.succeeded",
    "v1.account_transactions.scheduled_refresh.succeeded",
    SUCCEEDED,
    "v1.account_transactions.on_demand_refresh.failed",
    "v1.account_transactions.scheduled_refresh.failed",
];

/// One request the receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers[name].to_str().unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone)]
struct Answer {
    status: u16,
    delay: Duration,
    headers: Vec<(&'static str, String)>,
}

/// A webhook receiver on a real socket; what it answers can change mid-test.
#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) url: String,
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    answer: Arc<Mutex<Answer>>,
}

impl Receiver {
    pub(crate) async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(Mutex::new(Answer {
            status: 200,
            delay: Duration::ZERO,
            headers: Vec::new(),
        }));
        let (log, now) = (Arc::clone(&received), Arc::clone(&answer));
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let (log, now) = (Arc::clone(&log), Arc::clone(&now));
            async move {
                log.lock().unwrap().push(Received { headers, body });
                let answer = now.lock().unwrap().clone();
                tokio::time::sleep(answer.delay).await;
                let mut response = (
                    StatusCode::from_u16(answer.status).unwrap(),
                    "receiver says hello",
                )
                    .into_response();
                for (name, value) in answer.headers {
                    response.headers_mut().insert(name, value.parse().unwrap());
                }
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}/hooks"),
            port: addr.port(),
            received,
            answer,
        }
    }

    fn answer(&self, status: u16) {
        self.answer.lock().unwrap().status = status;
    }

    fn answer_with(&self, status: u16, delay: Duration, headers: Vec<(&'static str, String)>) {
        *self.answer.lock().unwrap() = Answer {
            status,
            delay,
            headers,
        };
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn subscribe(app: &TestApp, key: &str, url: &str, types: &[&str]) -> (String, String) {
    let r = app
        .post(
            "/v1/webhooks/subscriptions",
            key,
            Some(json!({ "targetUrl": url, "eventTypes": types })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    (
        r.body["subscriptionId"].as_str().unwrap().to_owned(),
        r.body["secret"].as_str().unwrap().to_owned(),
    )
}

/// A partner's subscription to every event type, pointing at a receiver of its own, on a
/// server that may deliver to loopback.
pub(crate) struct Subscribed {
    pub(crate) app: TestApp,
    pub(crate) receiver: Receiver,
    pub(crate) key: String,
    pub(crate) sub: String,
    pub(crate) secret: String,
}

pub(crate) async fn subscribed() -> Subscribed {
    let app = TestApp::insecure_webhooks().await;
    let receiver = Receiver::start().await;
    let key = app.partner(true).await;
    let (sub, secret) = subscribe(&app, &key, &receiver.url, &ALL_TYPES).await;
    Subscribed {
        app,
        receiver,
        key,
        sub,
        secret,
    }
}

/// `/v1/webhooks/subscriptions/{sub}` followed by `rest`.
fn sub_path(sub: &str, rest: &str) -> String {
    format!("/v1/webhooks/subscriptions/{sub}{rest}")
}

/// The attempt log of the subscription, newest first (its first page).
async fn attempts(app: &TestApp, key: &str, sub: &str) -> Vec<Value> {
    let r = app.get(&sub_path(sub, "/deliveries"), key).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["data"].as_array().unwrap().clone()
}

/// `POST .../test`: a `v1.webhook.test` event for the subscription; returns its eventId.
async fn send_test_event(app: &TestApp, key: &str, sub: &str) -> String {
    let r = app.post(&sub_path(sub, "/test"), key, None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    r.body["eventId"].as_str().unwrap().to_owned()
}

/// `POST .../deliveries/{event}/redeliver`.
async fn redeliver(app: &TestApp, key: &str, sub: &str, event: &str) -> Reply {
    app.post(
        &sub_path(sub, &format!("/deliveries/{event}/redeliver")),
        key,
        None,
    )
    .await
}

/// `POST .../recover` with `{"since": since}`.
async fn recover(app: &TestApp, key: &str, sub: &str, since: Value) -> Reply {
    app.post(
        &sub_path(sub, "/recover"),
        key,
        Some(json!({ "since": since })),
    )
    .await
}

/// `PATCH` the subscription's `paused`; returns the subscription as answered.
async fn set_paused(app: &TestApp, key: &str, sub: &str, paused: bool) -> Reply {
    app.patch(&sub_path(sub, ""), key, json!({ "paused": paused }))
        .await
}

/// A new user of the partner with `accounts` never-fetched accounts, refreshed on demand, the
/// fetches done by `w`: one `on_demand_refresh.succeeded` event per account. Returns the user
/// and its account ids.
pub(crate) async fn refresh_new_user(
    app: &TestApp,
    w: &Worker,
    key: &str,
    accounts: usize,
) -> (String, Vec<String>) {
    let user = app.user(key).await;
    let ids = app
        .connect(key, &user, Value::Array(vec![json!({}); accounts]))
        .await;
    let r = app.refresh(key, &user).await;
    assert_eq!(r.status, 201, "{}", r.body);
    drain(w).await;
    (user, ids)
}

fn unix_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Both signatures, three ways: our verifier, the `standardwebhooks` crate, and a plain
/// HMAC-SHA256 hex computed here from the secret's bytes.
fn assert_signed_by(secret: &str, d: &Received) {
    let ours = Secret::parse(secret).unwrap();
    verify_x_signature(&ours, &d.body, d.header("x-signature")).unwrap();
    let ts: i64 = d.header("webhook-timestamp").parse().unwrap();
    verify_standard(
        &ours,
        d.header("webhook-id"),
        ts,
        &d.body,
        d.header("webhook-signature"),
        unix_now(),
        300,
    )
    .unwrap();
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&d.body, &d.headers)
        .unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(&d.body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        d.header("x-signature")
            .split(',')
            .any(|s| s == format!("sha256={hex}")),
        "{} has no sha256={hex}",
        d.header("x-signature")
    );
}

async fn deliver_all(app: &TestApp) {
    let deliverer = app.deliverer();
    while deliverer.run_pending().await.unwrap() > 0 {}
}
