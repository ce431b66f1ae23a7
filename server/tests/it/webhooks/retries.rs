//! A failed attempt is tried again on the schedule (or when the receiver asks), until the
//! delivery fails for good; then `recover` and `redeliver` send it again.

use std::time::Duration;

use chrono::TimeDelta;
use serde_json::json;
use server::webhooks::DeliveryConfig;

use super::{
    Subscribed, assert_signed_by, attempts, recover, redeliver, send_test_event, subscribed,
};
use crate::harness::{iso, noon};

#[tokio::test]
async fn a_500_then_a_200_is_two_attempts_of_one_event_on_the_schedule() {
    let Subscribed {
        app,
        receiver,
        key,
        sub,
        secret,
    } = subscribed().await;
    receiver.answer(500);
    let event_id = send_test_event(&app, &key, &sub).await;
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
    let Subscribed {
        app,
        receiver,
        key,
        sub,
        ..
    } = subscribed().await;
    receiver.answer_with(429, Duration::ZERO, vec![("retry-after", "120".to_owned())]);
    send_test_event(&app, &key, &sub).await;
    app.deliverer().run_pending().await.unwrap();
    let log = attempts(&app, &key, &sub).await;
    assert_eq!(
        log[0]["nextAttemptAt"],
        iso(noon() + TimeDelta::seconds(120))
    );
}

#[tokio::test]
async fn after_eleven_failures_the_delivery_fails_and_recover_sends_it_again() {
    let Subscribed {
        app,
        receiver,
        key,
        sub,
        ..
    } = subscribed().await;
    receiver.answer(503);
    send_test_event(&app, &key, &sub).await;
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
    let r = recover(&app, &key, &sub, json!(iso(noon()))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["recovered"], 1);
    assert_eq!(deliverer.run_pending().await.unwrap(), 1);
    let log = attempts(&app, &key, &sub).await;
    assert_eq!(log[0]["attempt"], 12);
    assert_eq!(log[0]["deliveryStatus"], "SUCCEEDED");

    // Sent again by hand while the receiver fails: the ladder starts over (5 s), no "failed".
    receiver.answer(503);
    let event = log[0]["eventId"].as_str().unwrap().to_owned();
    let r = redeliver(&app, &key, &sub, &event).await;
    assert_eq!(r.status, 202, "{}", r.body);
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

    let later = recover(&app, &key, &sub, json!(iso(noon()))).await;
    assert_eq!(later.body["recovered"], 0, "nothing failed any more");
    recover(&app, &key, &sub, json!("yesterday"))
        .await
        .assert_problem(400, "INVALID_BODY");
}

#[tokio::test]
async fn a_receiver_that_does_not_answer_in_time_is_a_timeout() {
    let Subscribed {
        app,
        receiver,
        key,
        sub,
        ..
    } = subscribed().await;
    receiver.answer_with(200, Duration::from_secs(5), Vec::new());
    send_test_event(&app, &key, &sub).await;
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
