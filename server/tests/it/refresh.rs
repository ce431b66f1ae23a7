//! `POST /v1/users/{userId}/accounts-refresh` and the job it creates, through HTTP:
//! every worked example of refresh-semantics.md, every status and code, concurrency,
//! and `Idempotency-Key` replays.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestApp, acct, at, iso, minutes, noon};

/// Outcomes by account id, as `"TRIGGERED"`, `"ACCOUNT_EXPIRED"` or `"RATE_LIMITED"`.
fn outcomes(body: &Value, ids: &[String]) -> Vec<String> {
    let listed = body["metadata"]["accounts"].as_array().unwrap();
    let mut sorted: Vec<&str> = listed
        .iter()
        .map(|a| a["accountId"].as_str().unwrap())
        .collect();
    let mut expected_order = sorted.clone();
    expected_order.sort_unstable();
    assert_eq!(sorted, expected_order, "accounts are listed by accountId");
    sorted.clear();
    ids.iter()
        .map(|id| {
            let a = listed
                .iter()
                .find(|a| a["accountId"] == id.as_str())
                .expect("every account is listed");
            match a["outcome"].as_str().unwrap() {
                "TRIGGERED" => {
                    assert!(a.get("reason").is_none());
                    "TRIGGERED".to_owned()
                }
                _ => a["reason"].as_str().unwrap().to_owned(),
            }
        })
        .collect()
}

async fn setup(accounts: Value) -> (TestApp, String, String, Vec<String>) {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    let ids = if accounts.as_array().unwrap().is_empty() {
        vec![]
    } else {
        app.connect(&key, &user, accounts).await
    };
    (app, key, user, ids)
}

fn assert_created(r: &crate::harness::Reply) -> String {
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["status"], "TRIGGERED");
    assert!(r.headers.get("retry-after").is_none());
    assert!(r.body["metadata"].get("nextRefreshAvailableAt").is_none());
    r.body["jobId"].as_str().unwrap().to_owned()
}

fn assert_skipped(r: &crate::harness::Reply, next: Option<&str>, retry_after: Option<&str>) {
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "SKIPPED");
    assert!(r.body.get("jobId").is_none());
    assert_eq!(r.body["metadata"]["nextRefreshAvailableAt"].as_str(), next);
    assert_eq!(
        r.headers.get("retry-after").map(|v| v.to_str().unwrap()),
        retry_after
    );
}

#[tokio::test]
async fn worked_1_one_stale_account_triggers_all_eligible_and_creates_a_queued_job() {
    let (app, key, user, ids) = setup(json!([
        acct("ACTIVE", Some(at(11, 30))),
        acct("ACTIVE", Some(at(11, 55)))
    ]))
    .await;
    let r = app.refresh(&key, &user).await;
    let job = assert_created(&r);
    assert_eq!(outcomes(&r.body, &ids), ["TRIGGERED", "TRIGGERED"]);
    let j = app
        .get(&format!("/v1/users/{user}/accounts-refresh/{job}"), &key)
        .await;
    assert_eq!(j.status, StatusCode::OK);
    assert_eq!(j.body["status"], "QUEUED");
    assert_eq!(j.body["userId"], user.as_str());
    assert_eq!(j.body["createdAt"], iso(noon()));
    let states: Vec<&str> = j.body["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["QUEUED", "QUEUED"]);
}

#[tokio::test]
async fn worked_2_all_fresh_is_rate_limited_until_the_earliest_interval_end() {
    let (app, key, user, ids) = setup(json!([
        acct("ACTIVE", Some(at(11, 50))),
        acct("ACTIVE", Some(at(11, 55)))
    ]))
    .await;
    let r = app.refresh(&key, &user).await;
    assert_skipped(&r, Some("2026-11-26T12:10:00.000Z"), Some("600"));
    assert_eq!(outcomes(&r.body, &ids), ["RATE_LIMITED", "RATE_LIMITED"]);
    assert_eq!(app.count("refresh_jobs").await, 0);
}

#[tokio::test]
async fn worked_3_expired_and_fresh() {
    let (app, key, user, ids) = setup(json!([
        acct("EXPIRED", Some(at(10, 0))),
        acct("ACTIVE", Some(at(11, 55)))
    ]))
    .await;
    let r = app.refresh(&key, &user).await;
    assert_skipped(&r, Some("2026-11-26T12:15:00.000Z"), Some("900"));
    assert_eq!(outcomes(&r.body, &ids), ["ACCOUNT_EXPIRED", "RATE_LIMITED"]);
}

#[tokio::test]
async fn worked_4_expired_and_never_refreshed() {
    let (app, key, user, ids) = setup(json!([acct("EXPIRED", None), acct("ACTIVE", None)])).await;
    let r = app.refresh(&key, &user).await;
    assert_created(&r);
    assert_eq!(outcomes(&r.body, &ids), ["ACCOUNT_EXPIRED", "TRIGGERED"]);
}

#[tokio::test]
async fn worked_5_exactly_twenty_minutes_ago_triggers() {
    let (app, key, user, ids) = setup(json!([acct("ACTIVE", Some(at(11, 40)))])).await;
    let r = app.refresh(&key, &user).await;
    assert_created(&r);
    assert_eq!(outcomes(&r.body, &ids), ["TRIGGERED"]);
}

#[tokio::test]
async fn one_millisecond_inside_the_interval_is_rate_limited_with_retry_after_rounded_up() {
    let last = at(11, 40) + chrono::TimeDelta::milliseconds(1);
    let (app, key, user, _) = setup(json!([{ "lastTransactionRefreshDate": iso(last) }])).await;
    let r = app.refresh(&key, &user).await;
    assert_skipped(&r, Some("2026-11-26T12:00:00.001Z"), Some("1"));
}

#[tokio::test]
async fn worked_6_consent_expiring_exactly_now_is_expired() {
    let (app, key, user, ids) = setup(json!([{ "consentExpiresAt": iso(noon()) }])).await;
    let r = app.refresh(&key, &user).await;
    assert_skipped(&r, None, None);
    assert_eq!(outcomes(&r.body, &ids), ["ACCOUNT_EXPIRED"]);
}

#[tokio::test]
async fn worked_7_no_accounts_is_skipped_with_an_empty_list() {
    let (app, key, user, _) = setup(json!([])).await;
    let r = app.refresh(&key, &user).await;
    assert_skipped(&r, None, None);
    assert_eq!(r.body["metadata"]["accounts"], json!([]));
}

#[tokio::test]
async fn worked_8_an_in_flight_account_triggers_again_when_another_is_stale() {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    app.clock.set(at(11, 59));
    let a = app
        .connect(&key, &user, json!([acct("ACTIVE", Some(at(11, 0)))]))
        .await;
    assert_created(&app.refresh(&key, &user).await);
    app.clock.set(noon());
    let b = app
        .connect(&key, &user, json!([acct("ACTIVE", Some(at(11, 30)))]))
        .await;
    let r = app.refresh(&key, &user).await;
    assert_created(&r);
    assert_eq!(
        outcomes(&r.body, &[a[0].clone(), b[0].clone()]),
        ["TRIGGERED", "TRIGGERED"]
    );
    // A keeps the trigger time of the fetch already running: it is not started twice.
    let since: Option<i64> =
        sqlx::query_scalar("SELECT in_flight_since FROM accounts WHERE id = $1")
            .bind(&a[0])
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(since, Some(at(11, 59).timestamp_millis()));
}

#[tokio::test]
async fn worked_9_an_in_flight_refresh_counts_from_its_trigger_time() {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    app.clock.set(at(11, 59));
    let a = app
        .connect(&key, &user, json!([acct("ACTIVE", Some(at(11, 0)))]))
        .await;
    assert_created(&app.refresh(&key, &user).await);
    app.clock.set(noon());
    let r = app.refresh(&key, &user).await;
    assert_skipped(&r, Some("2026-11-26T12:19:00.000Z"), Some("1140"));
    assert_eq!(outcomes(&r.body, &a), ["RATE_LIMITED"]);
}

#[tokio::test]
async fn a_marketplace_user_is_refused() {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    let r = app
        .post(
            "/sandbox/v1/users",
            &key,
            Some(json!({ "source": "MARKETPLACE" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["source"], "MARKETPLACE");
    let user = r.body["userId"].as_str().unwrap();
    app.refresh(&key, user)
        .await
        .assert_problem(403, "MARKETPLACE_USER_NOT_SUPPORTED");
}

#[tokio::test]
async fn a_partner_outside_the_direct_journey_is_refused() {
    let app = TestApp::new().await;
    let key = app.partner(false).await;
    let r = app
        .post(
            "/sandbox/v1/users",
            &key,
            Some(json!({ "source": "DIRECT" })),
        )
        .await;
    let user = r.body["userId"].as_str().unwrap();
    app.refresh(&key, user)
        .await
        .assert_problem(403, "DIRECT_CONNECTION_NOT_ENABLED");
    app.post("/v1/users", &key, None)
        .await
        .assert_problem(403, "DIRECT_CONNECTION_NOT_ENABLED");
}

#[tokio::test]
async fn unknown_users_keys_and_jobs_get_their_codes() {
    let (app, key, user, _) = setup(json!([acct("ACTIVE", None)])).await;
    let unknown = uuid::Uuid::new_v4();
    app.refresh(&key, &unknown.to_string())
        .await
        .assert_problem(404, "USER_NOT_FOUND");
    app.refresh(&key, "12345")
        .await
        .assert_problem(400, "INVALID_PATH_PARAMETER");
    app.call(
        Method::POST,
        &format!("/v1/users/{user}/accounts-refresh"),
        None,
        None,
    )
    .await
    .assert_problem(401, "UNAUTHORIZED");
    app.refresh("fsk_wrong", &user)
        .await
        .assert_problem(401, "UNAUTHORIZED");
    app.get(&format!("/v1/users/{user}/accounts-refresh"), &key)
        .await
        .assert_problem(405, "METHOD_NOT_ALLOWED");
    app.get(
        &format!("/v1/users/{user}/accounts-refresh/{unknown}"),
        &key,
    )
    .await
    .assert_problem(404, "JOB_NOT_FOUND");
    app.get(
        &format!("/v1/users/{unknown}/accounts-refresh/{unknown}"),
        &key,
    )
    .await
    .assert_problem(404, "USER_NOT_FOUND");
    assert_eq!(app.count("refresh_jobs").await, 0);
}

#[tokio::test]
async fn fifty_concurrent_requests_for_one_user_yield_exactly_one_job() {
    let (app, key, user, _) = setup(json!([
        acct("ACTIVE", None),
        acct("ACTIVE", Some(at(9, 0))),
        acct("EXPIRED", None)
    ]))
    .await;
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (app, key, user) = (app.clone(), key.clone(), user.clone());
            tokio::spawn(async move { app.refresh(&key, &user).await })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        let r = task.await.unwrap();
        match r.status {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => assert_eq!(r.body["status"], "SKIPPED"),
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(app.count("refresh_jobs").await, 1);
    assert_eq!(app.count("refresh_job_items").await, 2);
}

async fn refresh_with_key(
    app: &TestApp,
    key: &str,
    user: &str,
    idempotency_key: &str,
) -> crate::harness::Reply {
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/v1/users/{user}/accounts-refresh"))
        .header("x-api-key", key)
        .header("idempotency-key", idempotency_key)
        .body(Body::empty())
        .unwrap();
    app.send(request).await
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_for_24_hours() {
    let (app, key, user, _) = setup(json!([acct("ACTIVE", None)])).await;
    let first = refresh_with_key(&app, &key, &user, "order-42").await;
    assert_eq!(first.status, StatusCode::CREATED);
    // A plain request now is rate-limited; the keyed one still gets the first answer.
    assert_eq!(app.refresh(&key, &user).await.status, StatusCode::OK);
    app.clock.shift(minutes(60 * 23));
    let replay = refresh_with_key(&app, &key, &user, "order-42").await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.body, first.body);
    assert_eq!(app.count("refresh_jobs").await, 1);
    // Another user with the same key is refused, and nothing is written.
    let other = app.user(&key).await;
    let before = app.footprint().await;
    refresh_with_key(&app, &key, &other, "order-42")
        .await
        .assert_problem(422, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(
        app.footprint().await,
        before,
        "the refused request wrote nothing"
    );
    // After 24 hours the key is forgotten: the request is decided afresh (the refresh of the
    // first job is still in flight, triggered a day ago, so the account is stale again).
    app.clock.shift(minutes(61));
    let later = refresh_with_key(&app, &key, &user, "order-42").await;
    assert_eq!(later.status, StatusCode::CREATED, "{}", later.body);
    assert_ne!(later.body["jobId"], first.body["jobId"]);
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_refused_and_nothing_is_written() {
    let (app, key, user, _) = setup(json!([acct("ACTIVE", None)])).await;
    let before = app.footprint().await;
    refresh_with_key(&app, &key, &user, "")
        .await
        .assert_problem(400, "INVALID_IDEMPOTENCY_KEY");
    refresh_with_key(&app, &key, &user, &"k".repeat(256))
        .await
        .assert_problem(400, "INVALID_IDEMPOTENCY_KEY");
    assert_eq!(app.footprint().await, before);
}
