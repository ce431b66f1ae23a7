//! Users, accounts and transactions through HTTP.

use axum::http::StatusCode;
use serde_json::json;

use crate::harness::{TestApp, acct, at, iso, noon};

#[tokio::test]
async fn a_created_user_reads_back_with_its_source_and_reference() {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    let r = app
        .post(
            "/v1/users",
            &key,
            Some(json!({ "externalReference": "crm-77" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["source"], "DIRECT");
    assert_eq!(r.body["createdAt"], iso(noon()));
    let id = r.body["userId"].as_str().unwrap();
    let got = app.get(&format!("/v1/users/{id}"), &key).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, r.body);
    assert_eq!(got.body["externalReference"], "crm-77");
}

#[tokio::test]
async fn accounts_list_consent_and_refresh_dates_and_omit_the_date_before_the_first_ingestion() {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    let ids = app
        .connect(&key, &user, json!([
            { "providerName": "Monzo", "lastTransactionRefreshDate": iso(at(11, 30)), "consentExpiresAt": "2027-01-01T00:00:00.000Z" },
            acct("EXPIRED", None),
        ]))
        .await;
    let r = app.get(&format!("/v1/users/{user}/accounts"), &key).await;
    assert_eq!(r.status, StatusCode::OK);
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let monzo = data
        .iter()
        .find(|a| a["accountId"] == ids[0].as_str())
        .unwrap();
    assert_eq!(monzo["providerName"], "Monzo");
    assert_eq!(monzo["consentStatus"], "ACTIVE");
    assert_eq!(monzo["consentExpiresAt"], "2027-01-01T00:00:00.000Z");
    assert_eq!(
        monzo["lastTransactionRefreshDate"],
        "2026-11-26T11:30:00.000Z"
    );
    let expired = data
        .iter()
        .find(|a| a["accountId"] == ids[1].as_str())
        .unwrap();
    assert_eq!(expired["consentStatus"], "EXPIRED");
    assert!(
        expired.get("lastTransactionRefreshDate").is_none(),
        "absent until the first ingestion"
    );
}

#[tokio::test]
async fn transactions_page_newest_first_with_filters_and_a_cursor() {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    let ids = app
        .connect(&key, &user, json!([
            { "lastTransactionRefreshDate": iso(at(11, 0)), "transactionCount": 30 },
            { "lastTransactionRefreshDate": iso(at(10, 0)), "transactionCount": 5, "persona": "gambler" },
        ]))
        .await;
    let all = app
        .get(&format!("/v1/users/{user}/transactions?limit=500"), &key)
        .await;
    assert_eq!(all.status, StatusCode::OK);
    let data = all.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 35);
    assert_eq!(all.body["nextCursor"], serde_json::Value::Null);
    let created: Vec<&str> = data
        .iter()
        .map(|t| t["created"].as_str().unwrap())
        .collect();
    assert!(
        created.windows(2).all(|w| w[0] >= w[1]),
        "newest first by created"
    );

    // Pages of 8 cover the same 35 transactions, in the same order, once each.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/users/{user}/transactions?limit=8&cursor={c}"),
            None => format!("/v1/users/{user}/transactions?limit=8"),
        };
        let page = app.get(&path, &key).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        paged.extend(
            page.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["transactionId"].clone()),
        );
        match page.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let ids_all: Vec<_> = data.iter().map(|t| t["transactionId"].clone()).collect();
    assert_eq!(paged, ids_all);

    // Filters: one account; a created window that holds only the second account's ingestion.
    let one = app
        .get(
            &format!(
                "/v1/users/{user}/transactions?accountId={}&limit=500",
                ids[1]
            ),
            &key,
        )
        .await;
    assert_eq!(one.body["data"].as_array().unwrap().len(), 5);
    let window = app
        .get(&format!("/v1/users/{user}/transactions?dateFrom=2026-11-26T09:59:00.000Z&dateTo=2026-11-26T10:01:00.000Z"), &key)
        .await;
    assert_eq!(window.body["data"].as_array().unwrap().len(), 5);
    let by_account = app
        .get(
            &format!(
                "/v1/users/{user}/accounts/{}/transactions?limit=500",
                ids[0]
            ),
            &key,
        )
        .await;
    assert_eq!(by_account.body["data"].as_array().unwrap().len(), 30);
    assert!(
        by_account.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["accountId"] == ids[0].as_str())
    );
}

#[tokio::test]
async fn transaction_queries_are_validated() {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    for query in [
        "dateFrom=2026-11-26T10:00:00Z",
        "dateTo=2026-11-26",
        "dateFrom=2026-11-26T10:00:00.000%2B01:00",
        "limit=0",
        "limit=501",
        "limit=ten",
        "cursor=nonsense",
        "accountId=42",
        "color=blue",
    ] {
        app.get(&format!("/v1/users/{user}/transactions?{query}"), &key)
            .await
            .assert_problem(400, "INVALID_QUERY_PARAMETER");
    }
    // A window that ends before it starts holds nothing: an empty page, not an error (each
    // bound is well formed, which is all the document can say of them).
    let empty = app
        .get(
            &format!("/v1/users/{user}/transactions?dateFrom=2026-11-26T11:00:00.000Z&dateTo=2026-11-26T10:00:00.000Z"),
            &key,
        )
        .await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(empty.body["data"], serde_json::json!([]));
    let unknown = uuid::Uuid::new_v4();
    app.get(
        &format!("/v1/users/{user}/accounts/{unknown}/transactions"),
        &key,
    )
    .await
    .assert_problem(404, "ACCOUNT_NOT_FOUND");
}

#[tokio::test]
async fn the_sandbox_answers_404_when_the_server_is_not_a_sandbox() {
    let app = TestApp::with_sandbox(false).await;
    let key = app.partner(true).await;
    app.post("/sandbox/v1/users", &key, None)
        .await
        .assert_problem(404, "ROUTE_NOT_FOUND");
    app.post(
        "/sandbox/v1/clock",
        &key,
        Some(json!({ "offsetSeconds": 60 })),
    )
    .await
    .assert_problem(404, "ROUTE_NOT_FOUND");
}

#[tokio::test]
async fn the_sandbox_clock_sets_an_offset_from_real_time() {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    let r = app
        .post(
            "/sandbox/v1/clock",
            &key,
            Some(json!({ "offsetSeconds": 3600 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["offsetSeconds"], 3600);
    // The test server's clock stands at noon; the partner's runs an hour ahead of it.
    assert_eq!(r.body["now"], iso(noon() + chrono::TimeDelta::hours(1)));
    let read = app.get("/sandbox/v1/clock", &key).await;
    assert_eq!(read.body, r.body, "the offset stays set");
}

#[tokio::test]
async fn portal_users_have_unique_emails_whatever_their_case_and_real_passwords() {
    use server::store::PortalUserError;
    let app = TestApp::new().await;
    let partner = app
        .store
        .partners()
        .create("P", true, noon())
        .await
        .unwrap()
        .partner_id;
    app.store
        .portal_users()
        .create(partner, "Ann@Example.com", "correct horse battery", noon())
        .await
        .unwrap();
    let again = app
        .store
        .portal_users()
        .create(partner, "ann@example.com", "another long password", noon())
        .await;
    assert!(
        matches!(again, Err(PortalUserError::EmailTaken(_))),
        "{again:?}"
    );
    let weak = app
        .store
        .portal_users()
        .create(partner, "bo@example.com", "short", noon())
        .await;
    assert!(
        matches!(weak, Err(PortalUserError::WeakPassword)),
        "{weak:?}"
    );
    let nobody = app
        .store
        .portal_users()
        .create(
            uuid::Uuid::new_v4(),
            "cy@example.com",
            "long enough password",
            noon(),
        )
        .await;
    assert!(
        matches!(nobody, Err(PortalUserError::UnknownPartner(_))),
        "{nobody:?}"
    );
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM portal_users")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("correct horse"));
}

/// Finding 10 of the hardening issue: three requests put 114 MB on one user. Now every
/// quota is refused whole (nothing written), and another partner is not held up.
#[tokio::test]
async fn the_sandbox_keeps_each_partner_within_its_quotas() {
    let app = TestApp::with_limits(server::services::Limits {
        sandbox_users_per_partner: 3,
        sandbox_accounts_per_user: 4,
        sandbox_transactions_per_account: 50,
        sandbox_transactions_per_partner: 120,
        ..Default::default()
    })
    .await;
    let (key, other) = (app.partner(true).await, app.partner(true).await);
    let history =
        |n: u32| json!({ "lastTransactionRefreshDate": iso(noon()), "transactionCount": n });
    let user = app.user(&key).await;
    let connect = |user: String, accounts: Vec<serde_json::Value>| {
        let app = &app;
        let key = key.clone();
        async move {
            app.post(
                &format!("/sandbox/v1/users/{user}/accounts"),
                &key,
                Some(json!({ "accounts": accounts })),
            )
            .await
        }
    };
    connect(user.clone(), vec![history(51)])
        .await
        .assert_problem(422, "SANDBOX_QUOTA_EXCEEDED");
    assert_eq!(
        connect(user.clone(), vec![history(50), history(50)])
            .await
            .status,
        201
    );
    // 100 held: 21 more would pass the partner's 120.
    let before = app.footprint().await;
    connect(user.clone(), vec![history(21)])
        .await
        .assert_problem(422, "SANDBOX_QUOTA_EXCEEDED");
    // Three accounts more would make five on one user.
    connect(user.clone(), vec![json!({}), json!({}), json!({})])
        .await
        .assert_problem(422, "SANDBOX_QUOTA_EXCEEDED");
    assert_eq!(
        app.footprint().await,
        before,
        "a refused request wrote nothing"
    );
    assert_eq!(
        connect(user.clone(), vec![json!({}), json!({})])
            .await
            .status,
        201
    );

    // Users: three in all, whichever way they were made.
    app.post(
        "/sandbox/v1/users",
        &key,
        Some(json!({ "source": "MARKETPLACE" })),
    )
    .await;
    app.post("/v1/users", &key, None).await;
    app.post("/v1/users", &key, None)
        .await
        .assert_problem(422, "SANDBOX_QUOTA_EXCEEDED");
    app.post(
        "/sandbox/v1/users",
        &key,
        Some(json!({ "source": "MARKETPLACE" })),
    )
    .await
    .assert_problem(422, "SANDBOX_QUOTA_EXCEEDED");
    assert_eq!(app.post("/v1/users", &other, None).await.status, 201);
}

/// Finding 8 of the hardening issue: one partner's flood took another's time. Past its
/// bucket a partner is refused at once, with when to come back; the other is served.
#[tokio::test]
async fn a_partner_past_its_api_rate_gets_429_and_another_partner_does_not() {
    let app = TestApp::with_api_rate(server::services::ApiRate::new(1, 10)).await;
    let (a, b) = (app.partner(true).await, app.partner(true).await);
    let user = app.user(&a).await;
    // The user's creation took one token: nine more, then the bucket is empty.
    let path = format!("/v1/users/{user}/accounts");
    let replies = futures_util::future::join_all((0..12).map(|_| app.get(&path, &a))).await;
    assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 9);
    let refused = replies.iter().find(|r| r.status == 429).unwrap();
    refused.assert_problem(429, "RATE_LIMITED");
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(refused.headers["ratelimit-policy"], "\"partner\";q=10;w=10");
    assert_eq!(refused.headers["ratelimit"], "\"partner\";r=0;t=1");
    let theirs = app.user(&b).await;
    assert_eq!(
        app.get(&format!("/v1/users/{theirs}"), &b).await.status,
        200,
        "B is not held up"
    );
    // A key nobody holds is still a 401, not counted against anyone.
    app.get(&path, "nobody's key")
        .await
        .assert_problem(401, "UNAUTHORIZED");
}

/// connections.md: an account's consentStatus is `EXPIRED` from the moment its
/// consentExpiresAt passes — in the accounts API as in the refresh decision.
#[tokio::test]
async fn an_accounts_consent_reads_expired_once_its_end_passes() {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    let ends = iso(noon() + chrono::TimeDelta::hours(1));
    app.connect(&key, &user, json!([{ "consentExpiresAt": ends }]))
        .await;
    let accounts = app.get(&format!("/v1/users/{user}/accounts"), &key).await;
    assert_eq!(accounts.body["data"][0]["consentStatus"], "ACTIVE");
    app.clock.shift(chrono::TimeDelta::hours(1));
    let accounts = app.get(&format!("/v1/users/{user}/accounts"), &key).await;
    assert_eq!(accounts.body["data"][0]["consentStatus"], "EXPIRED");
    assert_eq!(accounts.body["data"][0]["consentExpiresAt"], ends);
    let refused = app.refresh(&key, &user).await;
    assert_eq!(refused.status, 200);
    assert_eq!(
        refused.body["metadata"]["accounts"][0]["reason"],
        "ACCOUNT_EXPIRED"
    );
}
