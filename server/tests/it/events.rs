//! `GET /v1/events`: server-sent events from the event log, resumable with `Last-Event-ID`.

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::harness::TestApp;

/// An open SSE stream, read block by block.
struct Stream {
    body: axum::body::BodyDataStream,
    buffer: String,
}

impl Stream {
    async fn open(app: &TestApp, key: &str, last_event_id: Option<&str>) -> Self {
        let mut request = Request::get("/v1/events").header("x-api-key", key);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = app
            .router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            body: response.into_body().into_data_stream(),
            buffer: String::new(),
        }
    }

    /// The next event as (id, event type, data), skipping keep-alive comments; `None` after `wait`.
    async fn next(&mut self, wait: Duration) -> Option<(String, String, Value)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(str::to_owned)
                };
                if let (Some(id), Some(kind), Some(data)) =
                    (field("id: "), field("event: "), field("data: "))
                {
                    return Some((id, kind, serde_json::from_str(&data).unwrap()));
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??
                .ok()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[tokio::test]
async fn a_connected_client_sees_each_event_and_a_resuming_one_gets_exactly_what_it_missed() {
    let app = TestApp::new().await;
    let w = crate::worker::worker(&app).await;
    let key = app.partner(true).await;
    let other_partner = app.partner(true).await;
    let user = app.user(&key).await;
    app.connect(&key, &user, json!([{}, {}])).await;
    let mut live = Stream::open(&app, &key, None).await;
    let mut theirs = Stream::open(&app, &other_partner, None).await;

    let job = app.refresh(&key, &user).await.body["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    crate::worker::drain(&w).await;
    let first = live
        .next(Duration::from_secs(1))
        .await
        .expect("first event within 1 s of its commit");
    let second = live
        .next(Duration::from_secs(1))
        .await
        .expect("second event");
    for (_, kind, data) in [&first, &second] {
        assert_eq!(kind, "v1.account_transactions.on_demand_refresh.succeeded");
        assert_eq!(data["type"], kind.as_str());
        assert_eq!(data["payload"]["jobId"], job.as_str());
        assert!(data["eventId"].as_str().is_some());
    }
    assert!(first.0.parse::<i64>().unwrap() < second.0.parse::<i64>().unwrap());
    assert!(
        theirs.next(Duration::from_millis(300)).await.is_none(),
        "another partner sees none of it"
    );

    let mut resumed = Stream::open(&app, &key, Some(&first.0)).await;
    let missed = resumed.next(Duration::from_secs(2)).await.unwrap();
    assert_eq!(missed.0, second.0);
    assert_eq!(missed.2, second.2);
    assert!(
        resumed.next(Duration::from_millis(300)).await.is_none(),
        "nothing twice"
    );

    let mut from_start = Stream::open(&app, &key, Some("0")).await;
    assert_eq!(
        from_start.next(Duration::from_secs(2)).await.unwrap().0,
        first.0
    );
}

#[tokio::test]
async fn a_malformed_last_event_id_is_refused() {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    let request = Request::get("/v1/events")
        .header("x-api-key", &key)
        .header("last-event-id", "yesterday");
    app.send(request.body(Body::empty()).unwrap())
        .await
        .assert_problem(400, "INVALID_LAST_EVENT_ID");
}

#[tokio::test]
async fn events_older_than_seven_days_go_with_their_ended_deliveries_and_nothing_else_does() {
    use chrono::TimeDelta;
    let app = crate::harness::TestApp::insecure_webhooks().await;
    let key = app.partner(true).await;
    let partner = app.store.partners().by_key(&key).await.unwrap().unwrap().id;
    let sub = app
        .post(
            "/v1/webhooks/subscriptions",
            &key,
            Some(serde_json::json!({ "targetUrl": "http://127.0.0.1:9/", "eventTypes": ["v1.account_transactions.on_demand_refresh.succeeded"] })),
        )
        .await;
    assert_eq!(sub.status, 201);
    let noon = crate::harness::noon();
    let old = noon - TimeDelta::days(8);
    let payload = serde_json::json!({ "userId": "u", "accountId": "a" });
    let kind = "v1.account_transactions.on_demand_refresh.succeeded";
    let ended = app
        .store
        .events()
        .append(partner, kind, &payload, old)
        .await
        .unwrap();
    let retrying = app
        .store
        .events()
        .append(partner, kind, &payload, old)
        .await
        .unwrap();
    let recent = app
        .store
        .events()
        .append(partner, kind, &payload, noon - TimeDelta::days(6))
        .await
        .unwrap();
    sqlx::query("UPDATE webhook_deliveries SET status = 'SUCCEEDED', next_attempt_at = NULL WHERE event_id = $1")
        .bind(&ended.id)
        .execute(&app.db)
        .await
        .unwrap();
    app.clock.set(noon);
    let pruned = server::retention::run_once(&app.store, &app.clock)
        .await
        .unwrap();
    assert_eq!((pruned.events, pruned.deliveries), (2, 1), "{pruned:?}");
    let left: Vec<String> = sqlx::query_scalar("SELECT id FROM events")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(left, vec![recent.id.clone()]);
    let deliveries: Vec<String> =
        sqlx::query_scalar("SELECT event_id FROM webhook_deliveries ORDER BY event_id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    let mut expected = vec![retrying.id, recent.id];
    expected.sort();
    assert_eq!(deliveries, expected, "a delivery still being retried stays");
    assert_eq!(
        server::retention::run_once(&app.store, &app.clock)
            .await
            .unwrap(),
        server::store::Pruned::default()
    );
}

impl Stream {
    /// Whether the server ended the stream within `wait` (keep-alives and events skipped).
    async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(None) => return true,
                Ok(Some(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

/// Finding 7 of the hardening issue: revoking a key left its open stream flowing.
#[tokio::test]
async fn revoking_a_key_ends_the_streams_opened_with_it() {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    let partner = app.services.partner_by_key(&key).await.unwrap().unwrap().id;
    let second = app.services.create_api_key(partner).await.unwrap();
    let mut revoked = Stream::open(&app, &key, None).await;
    let mut kept = Stream::open(&app, &second, None).await;
    let id = app
        .services
        .api_keys(partner)
        .await
        .unwrap()
        .into_iter()
        .find(|k| key.starts_with(&k.prefix))
        .unwrap()
        .id;
    app.services.revoke_api_key(partner, &id).await.unwrap();
    assert!(revoked.ends_within(Duration::from_secs(3)).await);
    assert!(
        !kept.ends_within(Duration::from_millis(1500)).await,
        "the partner's other key still streams"
    );
}
