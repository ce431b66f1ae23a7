//! The attempt log: paged with a cursor, and keeping attempts cut off by a crash.

use chrono::TimeDelta;

use super::{Subscribed, attempts, deliver_all, send_test_event, sub_path, subscribed};
use crate::harness::noon;
use server::store::webhooks::{ClaimQuota, InFlight};

#[tokio::test]
async fn the_attempt_log_pages_with_a_cursor() {
    let Subscribed { app, key, sub, .. } = subscribed().await;
    let mut sent = Vec::new();
    for _ in 0..5 {
        sent.push(send_test_event(&app, &key, &sub).await);
    }
    deliver_all(&app).await;
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut path = sub_path(&sub, "/deliveries?limit=2");
    loop {
        let r = app.get(&path, &key).await;
        let page = r.body["data"].as_array().unwrap();
        assert!(page.len() <= 2, "{}", r.body);
        pages += 1;
        for a in page {
            seen.push(a["eventId"].as_str().unwrap().to_owned());
        }
        match r.body["nextCursor"].as_str() {
            Some(c) => path = sub_path(&sub, &format!("/deliveries?limit=2&cursor={c}")),
            None => break,
        }
    }
    assert_eq!(pages, 3, "five attempts, two a page");
    seen.sort();
    sent.sort();
    assert_eq!(seen, sent, "every attempt once across pages");
}

#[tokio::test]
async fn an_attempt_cut_off_by_a_crash_stays_in_the_log_and_the_delivery_goes_out_again() {
    let Subscribed { app, key, sub, .. } = subscribed().await;
    send_test_event(&app, &key, &sub).await;
    // A deliverer claims it and dies before recording anything.
    let lost = app
        .store
        .deliveries()
        .claim(
            "dead",
            noon(),
            noon() + TimeDelta::seconds(60),
            ClaimQuota {
                limit: 10,
                per_subscription: 8,
                per_partner: 8,
                in_flight: &InFlight::default(),
            },
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
