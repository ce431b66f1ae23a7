//! Partner isolation: every endpoint called with partner B's key on partner A's ids answers
//! exactly as for ids that do not exist.

use axum::http::Method;
use serde_json::json;

use crate::harness::{TestApp, acct};

#[tokio::test]
async fn another_partners_ids_answer_like_unknown_ids_on_every_endpoint() {
    let app = TestApp::new().await;
    let a = app.partner(true).await;
    let b = app.partner(true).await;
    let user = app.user(&a).await;
    let account = app
        .connect(&a, &user, json!([acct("ACTIVE", None)]))
        .await
        .remove(0);
    let job = app.refresh(&a, &user).await.body["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let unknown = uuid::Uuid::new_v4().to_string();

    let endpoints: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::GET, format!("/v1/users/{user}"), None),
        (Method::GET, format!("/v1/users/{user}/accounts"), None),
        (Method::GET, format!("/v1/users/{user}/transactions"), None),
        (
            Method::GET,
            format!("/v1/users/{user}/accounts/{account}/transactions"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/users/{user}/accounts-refresh"),
            None,
        ),
        (
            Method::GET,
            format!("/v1/users/{user}/accounts-refresh/{job}"),
            None,
        ),
        (
            Method::POST,
            format!("/sandbox/v1/users/{user}/accounts"),
            Some(json!({ "accounts": [{}] })),
        ),
    ];
    let before = app.footprint().await;
    for (method, path, body) in endpoints {
        let theirs = app
            .call(method.clone(), &path, Some(&b), body.clone())
            .await;
        let nobodys = app
            .call(
                method.clone(),
                &path.replace(&user, &unknown),
                Some(&b),
                body,
            )
            .await;
        theirs.assert_problem(404, "USER_NOT_FOUND");
        assert_eq!(theirs.body["code"], nobodys.body["code"], "{method} {path}");
        assert_eq!(
            theirs.body["detail"], nobodys.body["detail"],
            "{method} {path}"
        );
    }
    assert_eq!(app.footprint().await, before, "B's calls wrote nothing");
    // A still sees its own.
    assert_eq!(
        app.get(&format!("/v1/users/{user}/accounts-refresh/{job}"), &a)
            .await
            .status,
        200
    );
}

/// Finding 3 of the hardening issue: partner A moving its sandbox clock moved B's time too.
#[tokio::test]
async fn one_partners_sandbox_clock_moves_only_its_own_time() {
    use crate::harness::{iso, minutes, noon};
    let app = TestApp::new().await;
    let (a, b) = (app.partner(true).await, app.partner(true).await);
    let five_minutes_ago = Some(noon() - minutes(5));
    let (user_a, user_b) = (app.user(&a).await, app.user(&b).await);
    app.connect(&a, &user_a, json!([acct("ACTIVE", five_minutes_ago)]))
        .await;
    app.connect(&b, &user_b, json!([acct("ACTIVE", five_minutes_ago)]))
        .await;

    let set = app
        .post(
            "/sandbox/v1/clock",
            &a,
            Some(json!({ "offsetSeconds": 3600 })),
        )
        .await;
    assert_eq!(set.status, 200);
    assert_eq!(set.body["now"], iso(noon() + minutes(60)));

    let theirs = app.get("/sandbox/v1/clock", &b).await;
    assert_eq!(theirs.body["offsetSeconds"], 0, "B's clock did not move");
    assert_eq!(theirs.body["now"], iso(noon()));
    let b_refresh = app.refresh(&b, &user_b).await;
    assert_eq!(b_refresh.status, 200, "B is still within its 20 minutes");
    assert_eq!(
        b_refresh.body["metadata"]["accounts"][0]["reason"],
        "RATE_LIMITED"
    );
    let a_refresh = app.refresh(&a, &user_a).await;
    assert_eq!(a_refresh.status, 201, "A's own time moved an hour");
    // The account is in flight since A's now: A's next refresh is within its 20 minutes.
    let again = app.refresh(&a, &user_a).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(
        again.body["metadata"]["accounts"][0]["reason"],
        "RATE_LIMITED"
    );

    // A's bank data and its account's refresh date are as of A's time.
    let w = crate::worker::worker(&app).await;
    while w.run_pending(50).await.unwrap() > 0 {}
    let accounts = app.get(&format!("/v1/users/{user_a}/accounts"), &a).await;
    assert_eq!(
        accounts.body["data"][0]["lastTransactionRefreshDate"],
        iso(noon() + minutes(60))
    );

    // The scheduler, too, runs each partner on its own time: six hours on, only A is due.
    app.post(
        "/sandbox/v1/clock",
        &a,
        Some(json!({ "offsetSeconds": 7 * 3600 })),
    )
    .await;
    let scheduled =
        server::scheduler::run_once(&app.store, &app.clock, chrono::TimeDelta::hours(6))
            .await
            .unwrap();
    assert_eq!(scheduled, 1, "A's account only");
}
