//! What is delivered, and to whom: every event type once, signed; only the subscribed types
//! and only the subscriber's own partner's events; the background deliverer; fairness between
//! subscriptions.

use std::time::Duration;

use chrono::TimeDelta;
use serde_json::json;
use server::bank::sandbox::{Fault, FaultKind};
use server::store::webhooks::{ClaimQuota, InFlight};

use super::{
    ALL_TYPES, Received, Receiver, SUCCEEDED, Subscribed, assert_signed_by, attempts, deliver_all,
    refresh_new_user, send_test_event, subscribe, subscribed,
};
use crate::harness::{TestApp, noon};
use crate::worker::{drain, worker};

#[tokio::test]
async fn every_event_type_is_delivered_once_signed_both_ways() {
    let Subscribed {
        app,
        receiver,
        key,
        sub,
        secret,
    } = subscribed().await;
    let w = worker(&app).await;
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
async fn a_subscription_gets_only_the_event_types_it_asked_for() {
    let app = TestApp::insecure_webhooks().await;
    let w = worker(&app).await;
    let key = app.partner(true).await;
    let failures = Receiver::start().await;
    let successes = Receiver::start().await;
    subscribe(
        &app,
        &key,
        &failures.url,
        &["v1.account_transactions.on_demand_refresh.failed"],
    )
    .await;
    subscribe(&app, &key, &successes.url, &[SUCCEEDED]).await;
    let (_, accounts) = refresh_new_user(&app, &w, &key, 1).await;
    deliver_all(&app).await;
    assert!(
        failures.received().is_empty(),
        "succeeded events were not asked for"
    );
    let got = successes.received();
    assert_eq!(got.len(), 1, "the succeeded event went to who asked for it");
    assert_eq!(got[0].json()["type"], SUCCEEDED);
    assert_eq!(got[0].json()["payload"]["accountId"], accounts[0].as_str());
}

/// The receiver got one event per account, all of them the subscription's and the user's.
fn assert_got_exactly(receiver: &Receiver, sub: &str, user: &str, accounts: &[String]) {
    let mut got: Vec<String> = receiver
        .received()
        .iter()
        .map(|d| {
            let body = d.json();
            assert_eq!(body["type"], SUCCEEDED, "{body}");
            assert_eq!(body["subscriptionId"], sub, "{body}");
            assert_eq!(
                body["payload"]["userId"], user,
                "another partner's event: {body}"
            );
            body["payload"]["accountId"].as_str().unwrap().to_owned()
        })
        .collect();
    got.sort();
    let mut expected = accounts.to_vec();
    expected.sort();
    assert_eq!(got, expected, "one event per account of its own partner's");
}

#[tokio::test]
async fn each_partners_receiver_gets_exactly_its_own_partners_events() {
    let app = TestApp::insecure_webhooks().await;
    let w = worker(&app).await;
    let (a, b) = (app.partner(true).await, app.partner(true).await);
    let (a_receiver, b_receiver) = (Receiver::start().await, Receiver::start().await);
    // Both subscribe to the same event type, and both produce it: A for one account, B for two.
    let (a_sub, _) = subscribe(&app, &a, &a_receiver.url, &[SUCCEEDED]).await;
    let (b_sub, _) = subscribe(&app, &b, &b_receiver.url, &[SUCCEEDED]).await;
    let (a_user, a_accounts) = refresh_new_user(&app, &w, &a, 1).await;
    let (b_user, b_accounts) = refresh_new_user(&app, &w, &b, 2).await;
    deliver_all(&app).await;
    assert_got_exactly(&a_receiver, &a_sub, &a_user, &a_accounts);
    assert_got_exactly(&b_receiver, &b_sub, &b_user, &b_accounts);
}

#[tokio::test]
async fn the_background_deliverer_sends_each_committed_event_without_being_asked() {
    let Subscribed {
        app,
        receiver,
        key,
        sub,
        ..
    } = subscribed().await;
    let w = worker(&app).await;
    let running = app.deliverer().spawn();
    let (user, accounts) = refresh_new_user(&app, &w, &key, 2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while receiver.received().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.abort();
    assert_eq!(receiver.received().len(), 2);
    assert_got_exactly(&receiver, &sub, &user, &accounts);
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
            send_test_event(&app, &key, sub).await;
        }
    }
    let in_flight = InFlight {
        subscriptions: std::collections::HashMap::from([(slow_sub.clone(), 2_usize)]),
        ..InFlight::default()
    };
    let claimed = app
        .store
        .deliveries()
        .claim(
            "t",
            noon(),
            noon() + TimeDelta::minutes(1),
            ClaimQuota {
                limit: 100,
                per_subscription: 2,
                per_partner: 100,
                in_flight: &in_flight,
            },
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
        .deliveries()
        .claim(
            "t",
            noon(),
            noon() + TimeDelta::minutes(1),
            ClaimQuota {
                limit: 100,
                per_subscription: 3,
                per_partner: 100,
                in_flight: &InFlight::default(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        claimed.len(),
        6,
        "three each: the per-subscription bound holds in one claim"
    );
}

/// Finding 4 of the hardening issue: one partner with many slow receivers filled the whole
/// pool and another partner's webhook waited half a minute. Now a partner holds at most its
/// share, and the other's delivery goes out in the same round.
#[tokio::test]
async fn one_partners_slow_receivers_take_only_its_share_of_the_pool() {
    use super::{Receiver, SUCCEEDED, send_test_event, subscribe};
    use server::webhooks::DeliveryConfig;
    let app = TestApp::insecure_webhooks().await;
    let (a, b) = (app.partner(true).await, app.partner(true).await);
    let slow = Receiver::start().await;
    slow.answer_with(200, Duration::from_secs(5), Vec::new());
    let fast = Receiver::start().await;
    for _ in 0..3 {
        let (sub, _) = subscribe(&app, &a, &slow.url, &[SUCCEEDED]).await;
        for _ in 0..6 {
            send_test_event(&app, &a, &sub).await;
        }
    }
    // B's event is the last one due: ordered by due time alone, A's 18 come first.
    let (b_sub, _) = subscribe(&app, &b, &fast.url, &[SUCCEEDED]).await;
    send_test_event(&app, &b, &b_sub).await;

    let config = DeliveryConfig {
        timeout: Duration::from_millis(300),
        concurrency: 12,
        per_subscription: 8,
        per_partner: 8,
        ..DeliveryConfig::default()
    };
    let claimed = app
        .store
        .deliveries()
        .claim(
            "look",
            noon(),
            noon(),
            ClaimQuota {
                limit: config.concurrency,
                per_subscription: config.per_subscription,
                per_partner: config.per_partner,
                in_flight: &InFlight::default(),
            },
        )
        .await
        .unwrap();
    let of_b = claimed
        .iter()
        .filter(|d| d.subscription_id == b_sub)
        .count();
    assert_eq!(
        (claimed.len() - of_b, of_b),
        (8, 1),
        "A at its share, B served"
    );
    // With A's eight in flight, a claim takes nothing more of A's.
    let mut in_flight = InFlight::default();
    for d in claimed.iter().filter(|d| d.subscription_id != b_sub) {
        in_flight.add(&d.subscription_id, &d.partner_id);
    }
    app.clock.shift(TimeDelta::seconds(1));
    let more = app
        .store
        .deliveries()
        .claim(
            "look",
            app.clock.now(),
            app.clock.now(),
            ClaimQuota {
                limit: config.concurrency,
                per_subscription: config.per_subscription,
                per_partner: config.per_partner,
                in_flight: &in_flight,
            },
        )
        .await
        .unwrap();
    assert!(more.iter().all(|d| d.subscription_id == b_sub), "{more:?}");

    // The deliverer itself, one round: B's webhook arrives though A's receivers hang.
    app.clock.shift(TimeDelta::seconds(1));
    app.deliverer_with(config).run_pending().await.unwrap();
    assert_eq!(fast.received().len(), 1);
    assert_eq!(slow.received().len(), 8, "A's share, no more");
}

/// A partner's sandbox clock moves its data's time, not the server's: its events are
/// stamped with the server's time, so a partner a day ahead (or behind) gets its webhooks
/// now — not a day late — and its job ends after it began.
#[tokio::test]
async fn a_partner_on_a_shifted_sandbox_clock_gets_its_webhooks_now() {
    let Subscribed {
        app,
        receiver,
        key,
        secret,
        ..
    } = subscribed().await;
    let w = worker(&app).await;
    for offset in [86_400, -86_400] {
        let set = app
            .post(
                "/sandbox/v1/clock",
                &key,
                Some(json!({ "offsetSeconds": offset })),
            )
            .await;
        assert_eq!(set.status, 200, "{}", set.body);
        let before = receiver.received().len();
        let (user, _) = refresh_new_user(&app, &w, &key, 1).await;
        deliver_all(&app).await;
        let received = receiver.received();
        assert_eq!(received.len(), before + 1, "offset {offset}: delivered now");
        let delivered = &received[before];
        assert_signed_by(&secret, delivered);
        let body = delivered.json();
        assert_eq!(body["payload"]["userId"], user);
        // The data is on the partner's time…
        let as_of = noon() + TimeDelta::seconds(offset);
        assert_eq!(
            body["payload"]["lastTransactionRefreshDate"],
            crate::harness::iso(as_of)
        );
        // …the job's own times on the server's.
        let job = body["payload"]["jobId"].as_str().unwrap();
        let job = app
            .get(&format!("/v1/users/{user}/accounts-refresh/{job}"), &key)
            .await;
        assert_eq!(job.status, 200, "{}", job.body);
        assert_eq!(job.body["createdAt"], crate::harness::iso(noon()));
        assert_eq!(
            job.body["accounts"][0]["finishedAt"],
            crate::harness::iso(noon())
        );
    }
}
