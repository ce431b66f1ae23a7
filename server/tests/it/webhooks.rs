//! Webhooks end to end: subscriptions through the API, deliveries from the event log to a
//! real receiver on 127.0.0.1:0 whose answers change mid-test, signatures checked three
//! ways, retries on the frozen clock, the attempt log, redelivery, recovery, and the SSRF guard.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use chrono::TimeDelta;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use server::bank::sandbox::{Fault, FaultKind};
use server::webhooks::signature::{Secret, verify_standard, verify_x_signature};
use server::webhooks::target::Lookup;
use server::webhooks::{DeliveryConfig, TargetPolicy};

use crate::harness::{TestApp, iso, noon};
use crate::worker::{drain, worker};

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
struct Received {
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
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    answer: Arc<Mutex<Answer>>,
}

impl Receiver {
    async fn start() -> Self {
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
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url,
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

    fn received(&self) -> Vec<Received> {
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

async fn attempts(app: &TestApp, key: &str, sub: &str) -> Vec<Value> {
    let r = app
        .get(&format!("/v1/webhooks/subscriptions/{sub}/deliveries"), key)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["data"].as_array().unwrap().clone()
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

#[tokio::test]
async fn every_event_type_is_delivered_once_signed_both_ways() {
    let app = TestApp::insecure_webhooks().await;
    let w = worker(&app).await;
    let receiver = Receiver::start().await;
    let key = app.partner(true).await;
    let (sub, secret) = subscribe(&app, &key, &receiver.url, &ALL_TYPES).await;
    let user = app.user(&key).await;

    // user_initiated.succeeded
    let r = app
        .post(
            &format!("/sandbox/v1/users/{user}/accounts"),
            &key,
            Some(json!({ "accounts": [{}], "initialFetch": true })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    drain(&w).await;
    // on_demand_refresh.succeeded, then .failed
    app.clock.shift(TimeDelta::minutes(30));
    let job = app.refresh(&key, &user).await.body["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    drain(&w).await;
    app.clock.shift(TimeDelta::minutes(30));
    app.bank.set_fault(Fault {
        kind: Some(FaultKind::ServerError),
        ..Fault::default()
    });
    app.refresh(&key, &user).await;
    drain(&w).await;
    // scheduled_refresh.failed, then .succeeded
    app.clock.shift(TimeDelta::hours(7));
    server::scheduler::run_once(&app.store, &app.clock, TimeDelta::hours(6))
        .await
        .unwrap();
    drain(&w).await;
    app.bank.set_fault(Fault::default());
    app.clock.shift(TimeDelta::hours(7));
    server::scheduler::run_once(&app.store, &app.clock, TimeDelta::hours(6))
        .await
        .unwrap();
    drain(&w).await;

    deliver_all(&app).await;
    let got = receiver.received();
    let mut types: Vec<String> = got
        .iter()
        .map(|d| d.json()["type"].as_str().unwrap().to_owned())
        .collect();
    types.sort();
    let mut expected: Vec<String> = ALL_TYPES.iter().map(|t| (*t).to_owned()).collect();
    expected.sort();
    assert_eq!(types, expected, "one delivery per event, each type once");
    for d in &got {
        assert_signed_by(&secret, d);
        let body = d.json();
        assert_eq!(d.header("x-event-id"), body["eventId"]);
        assert_eq!(d.header("webhook-id"), body["eventId"]);
        assert_eq!(d.header("x-event-timestamp"), body["timestamp"]);
        assert_eq!(body["subscriptionId"], sub.as_str());
        assert_eq!(body["payload"]["userId"], user.as_str());
        assert_eq!(d.header("content-type"), "application/json");
    }
    let on_demand = got
        .iter()
        .map(Received::json)
        .find(|b| b["type"] == SUCCEEDED)
        .unwrap();
    assert_eq!(on_demand["payload"]["jobId"], job.as_str());
    assert!(on_demand["payload"]["newTransactions"].is_u64());
    let failed = got
        .iter()
        .map(Received::json)
        .find(|b| b["type"] == "v1.account_transactions.on_demand_refresh.failed")
        .unwrap();
    assert_eq!(failed["payload"]["error"]["code"], "BANK_UNAVAILABLE");

    let log = attempts(&app, &key, &sub).await;
    assert_eq!(log.len(), 5);
    for a in &log {
        assert_eq!(a["outcome"], "SUCCEEDED");
        assert_eq!(a["statusCode"], 200);
        assert_eq!(a["deliveryStatus"], "SUCCEEDED");
        assert_eq!(a["responseExcerpt"], "receiver says hello");
        assert!(a["latencyMs"].is_u64());
        assert!(a.get("nextAttemptAt").is_none());
    }
}

#[tokio::test]
async fn a_subscription_gets_only_its_event_types_and_only_its_partners_events() {
    let app = TestApp::insecure_webhooks().await;
    let w = worker(&app).await;
    let receiver = Receiver::start().await;
    let key = app.partner(true).await;
    let other = app.partner(true).await;
    subscribe(
        &app,
        &key,
        &receiver.url,
        &["v1.account_transactions.on_demand_refresh.failed"],
    )
    .await;
    for k in [&key, &other] {
        let user = app.user(k).await;
        app.connect(k, &user, json!([{}])).await;
        app.refresh(k, &user).await;
    }
    drain(&w).await;
    deliver_all(&app).await;
    assert!(
        receiver.received().is_empty(),
        "succeeded events were not asked for"
    );
}

#[tokio::test]
async fn a_500_then_a_200_is_two_attempts_of_one_event_on_the_schedule() {
    let app = TestApp::insecure_webhooks().await;
    let receiver = Receiver::start().await;
    let key = app.partner(true).await;
    let (sub, secret) = subscribe(&app, &key, &receiver.url, &ALL_TYPES).await;
    receiver.answer(500);
    let event = app
        .post(
            &format!("/v1/webhooks/subscriptions/{sub}/test"),
            &key,
            None,
        )
        .await;
    assert_eq!(event.status, 202, "{}", event.body);
    let event_id = event.body["eventId"].as_str().unwrap();
    let deliverer = app.deliverer();
    assert_eq!(deliverer.run_pending().await.unwrap(), 1);

    let log = attempts(&app, &key, &sub).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["outcome"], "FAILED");
    assert_eq!(log[0]["statusCode"], 500);
    assert_eq!(log[0]["errorKind"], "HTTP_STATUS");
    assert_eq!(log[0]["deliveryStatus"], "PENDING");
    let next =
        chrono::DateTime::parse_from_rfc3339(log[0]["nextAttemptAt"].as_str().unwrap()).unwrap();
    let wait = (next.with_timezone(&chrono::Utc) - noon()).num_milliseconds();
    assert!(
        (4_000..=6_000).contains(&wait),
        "first retry 5 s ± 20 %, got {wait} ms"
    );

    assert_eq!(deliverer.run_pending().await.unwrap(), 0, "not due yet");
    receiver.answer(200);
    app.clock.shift(TimeDelta::milliseconds(wait));
    assert_eq!(deliverer.run_pending().await.unwrap(), 1, "due now");
    assert_eq!(
        deliverer.run_pending().await.unwrap(),
        0,
        "acknowledged: done"
    );

    let got = receiver.received();
    assert_eq!(got.len(), 2);
    for d in &got {
        assert_eq!(d.header("webhook-id"), event_id);
        assert_eq!(d.header("x-event-id"), event_id);
        assert_eq!(d.json()["type"], "v1.webhook.test");
        assert_signed_by(&secret, d);
    }
    assert_eq!(
        got[0].body, got[1].body,
        "the body is the same on every attempt"
    );
    let log = attempts(&app, &key, &sub).await;
    assert_eq!(
        log.iter()
            .map(|a| a["attempt"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [2, 1],
        "newest first"
    );
    assert_eq!(log[0]["outcome"], "SUCCEEDED");
    assert_eq!(log[0]["deliveryStatus"], "SUCCEEDED");
}

#[tokio::test]
async fn retry_after_pushes_the_next_attempt_back() {
    let app = TestApp::insecure_webhooks().await;
    let receiver = Receiver::start().await;
    let key = app.partner(true).await;
    let (sub, _) = subscribe(&app, &key, &receiver.url, &ALL_TYPES).await;
    receiver.answer_with(429, Duration::ZERO, vec![("retry-after", "120".to_owned())]);
    app.post(
        &format!("/v1/webhooks/subscriptions/{sub}/test"),
        &key,
        None,
    )
    .await;
    app.deliverer().run_pending().await.unwrap();
    let log = attempts(&app, &key, &sub).await;
    assert_eq!(
        log[0]["nextAttemptAt"],
        iso(noon() + TimeDelta::seconds(120))
    );
}

#[tokio::test]
async fn after_eleven_failures_the_delivery_fails_and_recover_sends_it_again() {
    let app = TestApp::insecure_webhooks().await;
    let receiver = Receiver::start().await;
    let key = app.partner(true).await;
    let (sub, _) = subscribe(&app, &key, &receiver.url, &ALL_TYPES).await;
    receiver.answer(503);
    app.post(
        &format!("/v1/webhooks/subscriptions/{sub}/test"),
        &key,
        None,
    )
    .await;
    let deliverer = app.deliverer();
    let mut sent = 0;
    for _ in 0..15 {
        sent += deliverer.run_pending().await.unwrap();
        app.clock.shift(TimeDelta::hours(30));
    }
    assert_eq!(
        sent, 11,
        "eleven attempts over about three days, then no more"
    );
    let log = attempts(&app, &key, &sub).await;
    assert_eq!(log[0]["deliveryStatus"], "FAILED");
    assert!(log[0].get("nextAttemptAt").is_none());

    receiver.answer(200);
    let r = app
        .post(
            &format!("/v1/webhooks/subscriptions/{sub}/recover"),
            &key,
            Some(json!({ "since": iso(noon()) })),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["recovered"], 1);
    assert_eq!(deliverer.run_pending().await.unwrap(), 1);
    let log = attempts(&app, &key, &sub).await;
    assert_eq!(log[0]["attempt"], 12);
    assert_eq!(log[0]["deliveryStatus"], "SUCCEEDED");

    // Sent again by hand while the receiver fails: the ladder starts over (5 s), no "failed".
    receiver.answer(503);
    let event = log[0]["eventId"].as_str().unwrap().to_owned();
    app.post(
        &format!("/v1/webhooks/subscriptions/{sub}/deliveries/{event}/redeliver"),
        &key,
        None,
    )
    .await;
    assert_eq!(deliverer.run_pending().await.unwrap(), 1);
    let log = attempts(&app, &key, &sub).await;
    assert_eq!(log[0]["attempt"], 13);
    assert_eq!(log[0]["deliveryStatus"], "PENDING", "{log:?}");
    let next =
        chrono::DateTime::parse_from_rfc3339(log[0]["nextAttemptAt"].as_str().unwrap()).unwrap();
    let wait = next.with_timezone(&chrono::Utc) - app.clock.now();
    assert!(
        wait <= TimeDelta::seconds(6),
        "the first rung again: {wait}"
    );

    let later = app
        .post(
            &format!("/v1/webhooks/subscriptions/{sub}/recover"),
            &key,
            Some(json!({ "since": iso(noon()) })),
        )
        .await;
    assert_eq!(later.body["recovered"], 0, "nothing failed any more");
    app.post(
        &format!("/v1/webhooks/subscriptions/{sub}/recover"),
        &key,
        Some(json!({ "since": "yesterday" })),
    )
    .await
    .assert_problem(400, "INVALID_BODY");
}

#[tokio::test]
async fn a_410_disables_the_subscription_until_it_is_resumed() {
    let app = TestApp::insecure_webhooks().await;
    let receiver = Receiver::start().await;
    let key = app.partner(true).await;
    let (sub, _) = subscribe(&app, &key, &receiver.url, &ALL_TYPES).await;
    receiver.answer(410);
    let first = app
        .post(
            &format!("/v1/webhooks/subscriptions/{sub}/test"),
            &key,
            None,
        )
        .await;
    let deliverer = app.deliverer();
    deliverer.run_pending().await.unwrap();
    let s = app
        .get(&format!("/v1/webhooks/subscriptions/{sub}"), &key)
        .await;
    assert_eq!(s.body["status"], "DISABLED", "{}", s.body);
    assert_eq!(s.body["disabledReason"], "GONE");
    let log = attempts(&app, &key, &sub).await;
    assert_eq!(log[0]["deliveryStatus"], "FAILED", "a 410 is not retried");

    // Nothing goes out while disabled.
    app.post(
        &format!("/v1/webhooks/subscriptions/{sub}/test"),
        &key,
        None,
    )
    .await;
    app.clock.shift(TimeDelta::hours(1));
    assert_eq!(deliverer.run_pending().await.unwrap(), 0);
    assert_eq!(receiver.received().len(), 1);

    receiver.answer(200);
    let r = app
        .patch(
            &format!("/v1/webhooks/subscriptions/{sub}"),
            &key,
            json!({ "paused": false }),
        )
        .await;
    assert_eq!(r.body["status"], "ACTIVE", "{}", r.body);
    assert_eq!(
        deliverer.run_pending().await.unwrap(),
        1,
        "the waiting test event"
    );
    let r = app
        .post(
            &format!(
                "/v1/webhooks/subscriptions/{sub}/deliveries/{}/redeliver",
                first.body["eventId"].as_str().unwrap()
            ),
            &key,
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        deliverer.run_pending().await.unwrap(),
        1,
        "the failed one, by hand"
    );
    assert_eq!(receiver.received().len(), 3);
}

#[tokio::test]
async fn a_paused_subscription_keeps_its_events_and_delivers_them_on_resume() {
    let app = TestApp::insecure_webhooks().await;
    let w = worker(&app).await;
    let receiver = Receiver::start().await;
    let key = app.partner(true).await;
    let (sub, _) = subscribe(&app, &key, &receiver.url, &ALL_TYPES).await;
    let r = app
        .patch(
            &format!("/v1/webhooks/subscriptions/{sub}"),
            &key,
            json!({ "paused": true }),
        )
        .await;
    assert_eq!(r.body["status"], "PAUSED", "{}", r.body);
    let user = app.user(&key).await;
    app.connect(&key, &user, json!([{}, {}, {}])).await;
    app.refresh(&key, &user).await;
    drain(&w).await;
    let deliverer = app.deliverer();
    assert_eq!(deliverer.run_pending().await.unwrap(), 0);
    assert!(receiver.received().is_empty());

    app.clock.shift(TimeDelta::days(2));
    app.patch(
        &format!("/v1/webhooks/subscriptions/{sub}"),
        &key,
        json!({ "paused": false }),
    )
    .await;
    assert_eq!(deliverer.run_pending().await.unwrap(), 3);
    let mut accounts: Vec<String> = receiver
        .received()
        .iter()
        .map(|d| {
            d.json()["payload"]["accountId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    accounts.sort();
    accounts.dedup();
    assert_eq!(accounts.len(), 3, "one per account, none lost");
}

#[tokio::test]
async fn during_a_rotation_both_secrets_sign_for_24_hours() {
    let app = TestApp::insecure_webhooks().await;
    let receiver = Receiver::start().await;
    let key = app.partner(true).await;
    let (sub, old) = subscribe(&app, &key, &receiver.url, &ALL_TYPES).await;
    let r = app
        .post(
            &format!("/v1/webhooks/subscriptions/{sub}/rotate-secret"),
            &key,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new = r.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(
        r.body["previousSecretExpiresAt"],
        iso(noon() + TimeDelta::hours(24))
    );
    let deliverer = app.deliverer();
    app.post(
        &format!("/v1/webhooks/subscriptions/{sub}/test"),
        &key,
        None,
    )
    .await;
    deliverer.run_pending().await.unwrap();
    let during = receiver.received().pop().unwrap();
    assert_eq!(during.header("webhook-signature").split(' ').count(), 2);
    assert_signed_by(&new, &during);
    assert_signed_by(&old, &during);

    app.clock
        .shift(TimeDelta::hours(24) + TimeDelta::seconds(1));
    app.post(
        &format!("/v1/webhooks/subscriptions/{sub}/test"),
        &key,
        None,
    )
    .await;
    deliverer.run_pending().await.unwrap();
    let after = receiver.received().pop().unwrap();
    assert_eq!(after.header("webhook-signature").split(' ').count(), 1);
    assert_signed_by(&new, &after);
    assert!(
        standardwebhooks::Webhook::new(&old)
            .unwrap()
            .verify(&after.body, &after.headers)
            .is_err(),
        "the old secret no longer signs"
    );
    let s = app
        .get(&format!("/v1/webhooks/subscriptions/{sub}"), &key)
        .await;
    assert!(
        s.body.get("secret").is_none(),
        "the secret is never shown again"
    );
    assert!(s.body.get("previousSecretExpiresAt").is_none());
}

#[tokio::test]
async fn redirects_are_never_followed() {
    let app = TestApp::insecure_webhooks().await;
    let receiver = Receiver::start().await;
    let elsewhere = Receiver::start().await;
    let key = app.partner(true).await;
    let (sub, _) = subscribe(&app, &key, &receiver.url, &ALL_TYPES).await;
    receiver.answer_with(
        302,
        Duration::ZERO,
        vec![("location", elsewhere.url.clone())],
    );
    app.post(
        &format!("/v1/webhooks/subscriptions/{sub}/test"),
        &key,
        None,
    )
    .await;
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

#[tokio::test]
async fn a_receiver_that_does_not_answer_in_time_is_a_timeout() {
    let app = TestApp::insecure_webhooks().await;
    let receiver = Receiver::start().await;
    let key = app.partner(true).await;
    let (sub, _) = subscribe(&app, &key, &receiver.url, &ALL_TYPES).await;
    receiver.answer_with(200, Duration::from_secs(5), Vec::new());
    app.post(
        &format!("/v1/webhooks/subscriptions/{sub}/test"),
        &key,
        None,
    )
    .await;
    let deliverer = app.deliverer_with(DeliveryConfig {
        timeout: Duration::from_millis(300),
        ..DeliveryConfig::default()
    });
    deliverer.run_pending().await.unwrap();
    let log = attempts(&app, &key, &sub).await;
    assert_eq!(log[0]["errorKind"], "TIMEOUT", "{log:?}");
    assert!(log[0].get("statusCode").is_none());
    assert_eq!(log[0]["deliveryStatus"], "PENDING");
}

#[tokio::test]
async fn a_busy_subscription_cannot_take_every_delivery_slot() {
    let app = TestApp::insecure_webhooks().await;
    let key = app.partner(true).await;
    let slow = Receiver::start().await;
    let fast = Receiver::start().await;
    let (slow_sub, _) = subscribe(&app, &key, &slow.url, &ALL_TYPES).await;
    let (fast_sub, _) = subscribe(&app, &key, &fast.url, &ALL_TYPES).await;
    for sub in [&slow_sub, &fast_sub] {
        for _ in 0..5 {
            app.post(
                &format!("/v1/webhooks/subscriptions/{sub}/test"),
                &key,
                None,
            )
            .await;
        }
    }
    let in_flight = std::collections::HashMap::from([(slow_sub.clone(), 2_usize)]);
    let claimed = app
        .store
        .claim_deliveries(
            "t",
            noon(),
            noon() + TimeDelta::minutes(1),
            100,
            2,
            &in_flight,
        )
        .await
        .unwrap();
    assert_eq!(
        claimed.len(),
        2,
        "the slow one is at its limit; the fast one gets its two"
    );
    assert!(claimed.iter().all(|d| d.subscription_id == fast_sub));
    let claimed = app
        .store
        .claim_deliveries(
            "t",
            noon(),
            noon() + TimeDelta::minutes(1),
            100,
            3,
            &std::collections::HashMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        claimed.len(),
        6,
        "three each: the per-subscription bound holds in one claim"
    );
}

#[tokio::test]
async fn an_attempt_cut_off_by_a_crash_stays_in_the_log_and_the_delivery_goes_out_again() {
    let app = TestApp::insecure_webhooks().await;
    let receiver = Receiver::start().await;
    let key = app.partner(true).await;
    let (sub, _) = subscribe(&app, &key, &receiver.url, &ALL_TYPES).await;
    app.post(
        &format!("/v1/webhooks/subscriptions/{sub}/test"),
        &key,
        None,
    )
    .await;
    // A deliverer claims it and dies before recording anything.
    let lost = app
        .store
        .claim_deliveries(
            "dead",
            noon(),
            noon() + TimeDelta::seconds(60),
            10,
            8,
            &std::collections::HashMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(lost.len(), 1);
    let deliverer = app.deliverer();
    assert_eq!(deliverer.run_pending().await.unwrap(), 0, "leased");
    app.clock.shift(TimeDelta::seconds(61));
    assert_eq!(
        deliverer.run_pending().await.unwrap(),
        1,
        "lease expired: sent again"
    );
    let log = attempts(&app, &key, &sub).await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[1]["attempt"], 1);
    assert_eq!(log[1]["outcome"], "FAILED");
    assert_eq!(log[1]["errorKind"], "INTERRUPTED");
    assert_eq!(log[0]["attempt"], 2);
    assert_eq!(log[0]["outcome"], "SUCCEEDED");
}

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
async fn the_attempt_log_pages_with_a_cursor() {
    let app = TestApp::insecure_webhooks().await;
    let receiver = Receiver::start().await;
    let key = app.partner(true).await;
    let (sub, _) = subscribe(&app, &key, &receiver.url, &ALL_TYPES).await;
    for _ in 0..5 {
        app.post(
            &format!("/v1/webhooks/subscriptions/{sub}/test"),
            &key,
            None,
        )
        .await;
    }
    deliver_all(&app).await;
    let mut seen = Vec::new();
    let mut path = format!("/v1/webhooks/subscriptions/{sub}/deliveries?limit=2");
    loop {
        let r = app.get(&path, &key).await;
        for a in r.body["data"].as_array().unwrap() {
            seen.push(a["eventId"].as_str().unwrap().to_owned());
        }
        match r.body["nextCursor"].as_str() {
            Some(c) => {
                path = format!("/v1/webhooks/subscriptions/{sub}/deliveries?limit=2&cursor={c}")
            }
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5, "every attempt once across pages");
}

// --- the SSRF guard -------------------------------------------------------------------

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
        .assert_problem(400, code);
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
    let port = receiver
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let (sub, _) = subscribe(
        &app,
        &key,
        &format!("https://rebind.test:{port}/hooks"),
        &ALL_TYPES,
    )
    .await;
    app.post(
        &format!("/v1/webhooks/subscriptions/{sub}/test"),
        &key,
        None,
    )
    .await;
    app.deliverer().run_pending().await.unwrap();
    let log = attempts(&app, &key, &sub).await;
    assert_eq!(log[0]["errorKind"], "TARGET_FORBIDDEN", "{log:?}");
    assert!(receiver.received().is_empty(), "no connection was made");
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

#[tokio::test]
async fn the_background_deliverer_sends_each_committed_event_without_being_asked() {
    let app = TestApp::insecure_webhooks().await;
    let w = worker(&app).await;
    let receiver = Receiver::start().await;
    let key = app.partner(true).await;
    subscribe(&app, &key, &receiver.url, &ALL_TYPES).await;
    let running = app.deliverer().spawn();
    let user = app.user(&key).await;
    app.connect(&key, &user, json!([{}, {}])).await;
    app.refresh(&key, &user).await;
    drain(&w).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while receiver.received().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.abort();
    assert_eq!(receiver.received().len(), 2);
}

/// A receiver over TLS on 127.0.0.1, its certificate signed by a CA made here; returns the
/// URL, the CA (DER) and what it received.
async fn tls_receiver() -> (String, Vec<u8>, Arc<Mutex<Vec<Received>>>) {
    use tokio_rustls::rustls;
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf_params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&received);
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let log = Arc::clone(&log);
        async move {
            log.lock().unwrap().push(Received { headers, body });
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(tls),
                        hyper_util::service::TowerToHyperService::new(app),
                    )
                    .await;
                }
            });
        }
    });
    (url, ca.der().to_vec(), received)
}

#[tokio::test]
async fn deliveries_go_over_https_and_an_untrusted_certificate_is_a_connection_failure() {
    let app = TestApp::insecure_webhooks().await;
    let (url, ca, received) = tls_receiver().await;
    let key = app.partner(true).await;
    let (sub, secret) = subscribe(&app, &key, &url, &ALL_TYPES).await;
    app.post(
        &format!("/v1/webhooks/subscriptions/{sub}/test"),
        &key,
        None,
    )
    .await;

    // The public web PKI does not know our CA: refused like any bad certificate.
    app.deliverer().run_pending().await.unwrap();
    let log = attempts(&app, &key, &sub).await;
    assert_eq!(log[0]["errorKind"], "CONNECTION", "{log:?}");
    assert!(received.lock().unwrap().is_empty());

    // Trusting it (`--webhook-ca-file`), the retry goes through, signed as ever.
    let trusting = server::webhooks::Deliverer::with_roots(
        app.store.clone(),
        Arc::clone(&app.clock),
        app.targets.clone(),
        DeliveryConfig::default(),
        vec![reqwest::Certificate::from_der(&ca).unwrap()],
    )
    .unwrap();
    app.clock.shift(TimeDelta::seconds(10));
    assert_eq!(trusting.run_pending().await.unwrap(), 1);
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_signed_by(&secret, &got[0]);
    assert_eq!(attempts(&app, &key, &sub).await[0]["statusCode"], 200);
}
