//! Secret rotation: both secrets sign for 24 hours, then only the new one.

use chrono::TimeDelta;

use super::{Subscribed, assert_signed_by, send_test_event, sub_path, subscribed};
use crate::harness::{iso, noon};

#[tokio::test]
async fn during_a_rotation_both_secrets_sign_for_24_hours() {
    let Subscribed {
        app,
        receiver,
        key,
        sub,
        secret: old,
    } = subscribed().await;
    let r = app
        .post(&sub_path(&sub, "/rotate-secret"), &key, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new = r.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(
        r.body["previousSecretExpiresAt"],
        iso(noon() + TimeDelta::hours(24))
    );
    let deliverer = app.deliverer();
    send_test_event(&app, &key, &sub).await;
    deliverer.run_pending().await.unwrap();
    let during = receiver.received().pop().unwrap();
    assert_eq!(during.header("webhook-signature").split(' ').count(), 2);
    assert_signed_by(&new, &during);
    assert_signed_by(&old, &during);

    app.clock
        .shift(TimeDelta::hours(24) + TimeDelta::seconds(1));
    send_test_event(&app, &key, &sub).await;
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
    let s = app.get(&sub_path(&sub, ""), &key).await;
    assert!(
        s.body.get("secret").is_none(),
        "the secret is never shown again"
    );
    assert!(s.body.get("previousSecretExpiresAt").is_none());
}
