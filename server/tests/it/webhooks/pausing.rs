//! A subscription paused by its partner, or disabled by a 410, sends nothing until resumed.

use super::*;

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
