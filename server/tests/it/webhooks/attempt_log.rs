//! The attempt log: paged with a cursor, and keeping attempts cut off by a crash.

use super::*;

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
