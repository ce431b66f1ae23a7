//! A subscription paused by its partner, or disabled by a 410, sends nothing until resumed.

use chrono::TimeDelta;

use super::{
    Subscribed, attempts, redeliver, refresh_new_user, send_test_event, set_paused, sub_path,
    subscribed,
};
use crate::worker::worker;

#[tokio::test]
async fn a_410_disables_the_subscription_until_it_is_resumed() {
    let Subscribed {
        app,
        receiver,
        key,
        sub,
        ..
    } = subscribed().await;
    receiver.answer(410);
    let first = send_test_event(&app, &key, &sub).await;
    let deliverer = app.deliverer();
    deliverer.run_pending().await.unwrap();
    let s = app.get(&sub_path(&sub, ""), &key).await;
    assert_eq!(s.body["status"], "DISABLED", "{}", s.body);
    assert_eq!(s.body["disabledReason"], "GONE");
    let log = attempts(&app, &key, &sub).await;
    assert_eq!(log[0]["deliveryStatus"], "FAILED", "a 410 is not retried");

    // Nothing goes out while disabled; what happens meanwhile waits: a test event, and the
    // events of a refresh (they were never queued for a disabled subscription once).
    send_test_event(&app, &key, &sub).await;
    let w = worker(&app).await;
    let (_, accounts) = refresh_new_user(&app, &w, &key, 2).await;
    app.clock.shift(TimeDelta::hours(1));
    assert_eq!(deliverer.run_pending().await.unwrap(), 0);
    assert_eq!(receiver.received().len(), 1);

    receiver.answer(200);
    let r = set_paused(&app, &key, &sub, false).await;
    assert_eq!(r.body["status"], "ACTIVE", "{}", r.body);
    assert_eq!(
        deliverer.run_pending().await.unwrap(),
        1 + accounts.len(),
        "the waiting test event and the refresh's events"
    );
    let r = redeliver(&app, &key, &sub, &first).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        deliverer.run_pending().await.unwrap(),
        1,
        "the failed one, by hand"
    );
    assert_eq!(receiver.received().len(), 3 + accounts.len());
}

#[tokio::test]
async fn a_paused_subscription_keeps_its_events_and_delivers_them_on_resume() {
    let Subscribed {
        app,
        receiver,
        key,
        sub,
        ..
    } = subscribed().await;
    let w = worker(&app).await;
    let r = set_paused(&app, &key, &sub, true).await;
    assert_eq!(r.body["status"], "PAUSED", "{}", r.body);
    let (_, mut accounts) = refresh_new_user(&app, &w, &key, 3).await;
    let deliverer = app.deliverer();
    assert_eq!(deliverer.run_pending().await.unwrap(), 0);
    assert!(receiver.received().is_empty());

    app.clock.shift(TimeDelta::days(2));
    let r = set_paused(&app, &key, &sub, false).await;
    assert_eq!(r.body["status"], "ACTIVE", "{}", r.body);
    assert_eq!(deliverer.run_pending().await.unwrap(), 3);
    let mut got: Vec<String> = receiver
        .received()
        .iter()
        .map(|d| {
            d.json()["payload"]["accountId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    got.sort();
    accounts.sort();
    assert_eq!(got, accounts, "one per account, none lost, none twice");
}
