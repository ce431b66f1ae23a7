//! The direct connection journey end to end: the partner creates a session through the API,
//! the user's browser (requests made here, redirects followed by hand) opens the
//! connectionUrl, picks the bank, approves at the bank's authorization page (the sandbox
//! bank's, over real HTTP), comes back through freshet's callback to the partner's redirect
//! with a termination token, and the partner completes the session. Also: denial, a replayed
//! callback, expiry, and every refusal of `POST /v1/sessions`.

use axum::body::{Body, to_bytes};
use axum::http::{Request, header};
use chrono::TimeDelta;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::connections::acme;
use crate::harness::TestApp;
use crate::worker::{drain, worker_on};

const BACK: &str = "https://partner.example/back";

/// One browser request to freshet's router: (status, Location, body).
async fn browse(app: &TestApp, request: Request<Body>) -> (u16, Option<String>, String) {
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(header::LOCATION)
        .map(|l| l.to_str().unwrap().to_owned());
    let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (
        status,
        location,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn path_of(url: &str) -> String {
    let url = url::Url::parse(url).unwrap();
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn new_session(app: &TestApp, key: &str, user: &str) -> Value {
    let created = app
        .post(
            "/v1/sessions",
            key,
            Some(json!({ "userId": user, "partnerRedirectUrl": BACK, "correlationId": "corr-7" })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    created.body
}

/// The user opens the connectionUrl, picks Acme, and decides at the bank; returns where
/// freshet's callback sends them.
async fn through_the_bank(
    app: &TestApp,
    acme: &crate::connections::Acme,
    session: &Value,
    decision: &str,
) -> String {
    let connection = session["connectionUrl"].as_str().unwrap();
    let (status, _, html) = browse(
        app,
        Request::get(path_of(connection))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("Connect your bank to") && html.contains("Acme Bank"),
        "{html}"
    );
    let token = param(connection, "partnerToken").unwrap();
    let sid = session["sessionId"].as_str().unwrap();
    let (status, to_bank, _) = browse(
        app,
        Request::post(format!("/connect/{sid}/bank"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("partnerToken={token}&bankId=acme")))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 303);
    let to_bank = to_bank.unwrap();
    assert!(
        to_bank.starts_with(&format!("{}/authorize?", acme.base)),
        "{to_bank}"
    );
    // At the bank: the authorization page's form, submitted.
    let query: Vec<(String, String)> = url::Url::parse(&to_bank)
        .unwrap()
        .query_pairs()
        .filter(|(k, _)| k != "scope")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut form = query.clone();
    form.extend([
        ("persona".to_owned(), "salaried".to_owned()),
        ("accounts".to_owned(), "current".to_owned()),
        ("decision".to_owned(), decision.to_owned()),
    ]);
    let decided = acme
        .http
        .post(format!("{}/authorize", acme.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(decided.status(), 303);
    let callback = decided.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        callback.starts_with("http://127.0.0.1:3000/connect/callback?"),
        "{callback}"
    );
    callback
}

#[tokio::test]
async fn a_user_connects_through_the_journey_and_the_partner_completes_it() {
    let app = TestApp::new().await;
    let acme = acme(&app).await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    let session = new_session(&app, &key, &user).await;
    assert_eq!(session["status"], "CREATED");
    assert_eq!(session["correlationId"], "corr-7");
    assert_eq!(
        session["expiresAt"],
        crate::harness::iso(app.clock.now() + TimeDelta::minutes(30))
    );
    assert!(
        session["managementUrl"]
            .as_str()
            .unwrap()
            .contains("/manage/")
    );
    let sid = session["sessionId"].as_str().unwrap().to_owned();

    let callback = through_the_bank(&app, &acme, &session, "approve").await;
    let read = app.get(&format!("/v1/sessions/{sid}"), &key).await;
    assert_eq!(read.body["status"], "IN_PROGRESS");
    assert!(
        read.body.get("connectionUrl").is_none(),
        "the URLs are shown once"
    );

    let (status, back, _) = browse(
        &app,
        Request::get(path_of(&callback))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 303);
    let back = back.unwrap();
    assert!(back.starts_with(BACK), "{back}");
    assert_eq!(param(&back, "correlationId").as_deref(), Some("corr-7"));
    assert_eq!(param(&back, "error"), None);
    let termination = param(&back, "sessionTerminationToken").unwrap();
    assert_eq!(
        app.get(&format!("/v1/sessions/{sid}"), &key).await.body["status"],
        "AWAITING_COMPLETION"
    );

    // The same callback again changes nothing.
    let (status, _, html) = browse(
        &app,
        Request::get(path_of(&callback))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{html}");
    assert_eq!(app.count("accounts").await, 1);

    // The account is there (its balance read from the bank), its first fetch queued.
    let accounts = app.get(&format!("/v1/users/{user}/accounts"), &key).await;
    assert_eq!(accounts.body["data"][0]["providerName"], "Acme Bank");
    let w = worker_on(
        &app,
        std::sync::Arc::new(app.services.bank_directory().clone()),
    );
    drain(&w).await;
    let events: Vec<(String,)> = sqlx::query_as("SELECT type FROM events")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(
        events,
        [("v1.account_transactions.user_initiated.succeeded".to_owned(),)]
    );

    // The partner completes the session: a wrong token is refused, the right one twice is fine.
    let complete = |token: String| {
        let app = &app;
        let key = key.clone();
        async move {
            app.send(
                Request::put("/v1/sessions/completed")
                    .header("x-api-key", key)
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
        }
    };
    complete("not-the-token".to_owned())
        .await
        .assert_problem(401, "SESSION_TOKEN_INVALID");
    for _ in 0..2 {
        let done = complete(termination.clone()).await;
        assert_eq!(done.status, 200, "{}", done.body);
        assert_eq!(done.body["status"], "COMPLETED");
    }
    // Another partner cannot complete it.
    let other = app.partner(true).await;
    let theirs = app
        .send(
            Request::put("/v1/sessions/completed")
                .header("x-api-key", other)
                .header(header::AUTHORIZATION, termination.clone())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    theirs.assert_problem(401, "SESSION_TOKEN_INVALID");
    // After completion, its URLs no longer work.
    let (status, _, _) = browse(
        &app,
        Request::get(path_of(session["connectionUrl"].as_str().unwrap()))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 410);
}

#[tokio::test]
async fn denial_forged_tokens_and_expiry_connect_nothing() {
    let app = TestApp::new().await;
    let acme = acme(&app).await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;

    // Denied at the bank: back to the partner with error=access_denied, nothing connected.
    let session = new_session(&app, &key, &user).await;
    let callback = through_the_bank(&app, &acme, &session, "deny").await;
    let (status, back, _) = browse(
        &app,
        Request::get(path_of(&callback))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 303);
    let back = back.unwrap();
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    assert!(param(&back, "sessionTerminationToken").is_some());
    assert_eq!(app.count("accounts").await, 0);

    // A forged state or a wrong partnerToken: a clear page, nothing changes.
    let (status, _, html) = browse(
        &app,
        Request::get("/connect/callback?state=forged&code=whatever")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(html.contains("not valid"));
    let fresh = new_session(&app, &key, &user).await;
    let sid = fresh["sessionId"].as_str().unwrap();
    let (status, _, _) = browse(
        &app,
        Request::get(format!("/connect/{sid}?partnerToken=guess"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        app.get(&format!("/v1/sessions/{sid}"), &key).await.body["status"],
        "CREATED"
    );

    // Thirty minutes on: EXPIRED, its pages gone, completion 404.
    app.clock.shift(TimeDelta::minutes(31));
    assert_eq!(
        app.get(&format!("/v1/sessions/{sid}"), &key).await.body["status"],
        "EXPIRED"
    );
    let (status, _, _) = browse(
        &app,
        Request::get(path_of(fresh["connectionUrl"].as_str().unwrap()))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 410);
    let term = param(&back, "sessionTerminationToken").unwrap();
    let late = app
        .send(
            Request::put("/v1/sessions/completed")
                .header("x-api-key", key.clone())
                .header(header::AUTHORIZATION, format!("Bearer {term}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    late.assert_problem(404, "SESSION_NOT_FOUND");
}

#[tokio::test]
async fn a_session_is_refused_for_a_bad_redirect_a_marketplace_user_or_a_stranger() {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    for url in [
        "http://partner.example/back",
        "ftp://partner.example",
        "/relative",
        "https://p.example/#frag",
    ] {
        app.post(
            "/v1/sessions",
            &key,
            Some(json!({ "userId": user, "partnerRedirectUrl": url })),
        )
        .await
        .assert_problem(400, "INVALID_REDIRECT_URL");
    }
    // Loopback http is for development: a sandbox server allows it.
    let local = app
        .post(
            "/v1/sessions",
            &key,
            Some(json!({ "userId": user, "partnerRedirectUrl": "http://127.0.0.1:8080/back" })),
        )
        .await;
    assert_eq!(local.status, 201);
    app.post(
        "/v1/sessions",
        &key,
        Some(
            json!({ "userId": user, "partnerRedirectUrl": BACK, "correlationId": "x".repeat(257) }),
        ),
    )
    .await
    .assert_problem(400, "INVALID_BODY");
    let marketplace = app
        .post(
            "/sandbox/v1/users",
            &key,
            Some(json!({ "source": "MARKETPLACE" })),
        )
        .await
        .body["userId"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post(
        "/v1/sessions",
        &key,
        Some(json!({ "userId": marketplace, "partnerRedirectUrl": BACK })),
    )
    .await
    .assert_problem(403, "MARKETPLACE_USER_NOT_SUPPORTED");
    let stranger = app.partner(true).await;
    app.post(
        "/v1/sessions",
        &stranger,
        Some(json!({ "userId": user, "partnerRedirectUrl": BACK })),
    )
    .await
    .assert_problem(404, "USER_NOT_FOUND");
    let sid = local.body["sessionId"].as_str().unwrap();
    app.get(&format!("/v1/sessions/{sid}"), &stranger)
        .await
        .assert_problem(404, "SESSION_NOT_FOUND");
}

/// The managementUrl: the user's connection with Unlink; unlinking revokes the consent at
/// the bank, the accounts turn `EXPIRED`, `v1.consent.revoked` (`USER_UNLINKED`) is sent, and
/// a refresh answers `ACCOUNT_EXPIRED`.
#[tokio::test]
async fn unlinking_from_the_management_page_revokes_the_consent_everywhere() {
    let app = TestApp::new().await;
    let acme = acme(&app).await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    let session = new_session(&app, &key, &user).await;
    let callback = through_the_bank(&app, &acme, &session, "approve").await;
    let (status, _, _) = browse(
        &app,
        Request::get(path_of(&callback))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 303);

    let manage = session["managementUrl"].as_str().unwrap();
    let (status, _, html) = browse(
        &app,
        Request::get(path_of(manage)).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Unlink Acme Bank") && html.contains("Shared until"),
        "{html}"
    );
    let consent: (String,) = sqlx::query_as("SELECT bank_consent_id FROM bank_consents")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let token = param(manage, "partnerToken").unwrap();
    let sid = session["sessionId"].as_str().unwrap();
    // Someone without the session's token cannot unlink.
    let (status, _, _) = browse(
        &app,
        Request::post(format!("/manage/{sid}/unlink"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "partnerToken=guess&bankId=acme&consentId={}",
                consent.0
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, back, _) = browse(
        &app,
        Request::post(format!("/manage/{sid}/unlink"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "partnerToken={token}&bankId=acme&consentId={}",
                consent.0
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 303);
    let (_, _, html) = browse(
        &app,
        Request::get(back.unwrap()).body(Body::empty()).unwrap(),
    )
    .await;
    assert!(
        html.contains("No longer shared") && !html.contains("Unlink Acme Bank"),
        "{html}"
    );

    // At the bank: revoked.
    let client = acme
        .http
        .post(format!("{}/token", acme.base))
        .basic_auth(&acme.client_id, Some(&acme.secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let at_bank: Value = acme
        .http
        .get(format!(
            "{}/open-banking/v3.1/aisp/account-access-consents/{}",
            acme.base, consent.0
        ))
        .bearer_auth(client["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(at_bank["Data"]["Status"], "Revoked");
    // Here: EXPIRED, the event once, and the refresh skips the account.
    let accounts = app.get(&format!("/v1/users/{user}/accounts"), &key).await;
    assert_eq!(accounts.body["data"][0]["consentStatus"], "EXPIRED");
    let revoked: Vec<(String,)> =
        sqlx::query_as("SELECT payload FROM events WHERE type = 'v1.consent.revoked'")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(revoked.len(), 1);
    let payload: Value = serde_json::from_str(&revoked[0].0).unwrap();
    assert_eq!(payload["reason"], "USER_UNLINKED");
    assert_eq!(payload["userId"], user);
    let refused = app.refresh(&key, &user).await;
    assert_eq!(
        refused.body["metadata"]["accounts"][0]["reason"],
        "ACCOUNT_EXPIRED"
    );
}

/// Re-authenticate from the managementUrl: a new consent at the bank for the same accounts;
/// the accounts keep their ids, get the new end and the new tokens, `v1.consent.renewed`.
#[tokio::test]
async fn re_authenticating_moves_the_accounts_to_a_new_consent_with_a_new_end() {
    let app = TestApp::new().await;
    let acme = acme(&app).await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    let session = new_session(&app, &key, &user).await;
    let callback = through_the_bank(&app, &acme, &session, "approve").await;
    browse(
        &app,
        Request::get(path_of(&callback))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let before = app
        .get(&format!("/v1/users/{user}/accounts"), &key)
        .await
        .body["data"][0]
        .clone();
    let (old,): (String,) = sqlx::query_as("SELECT bank_consent_id FROM bank_consents")
        .fetch_one(&app.db)
        .await
        .unwrap();

    app.clock.shift(TimeDelta::minutes(10));
    let manage = session["managementUrl"].as_str().unwrap();
    let (_, _, html) = browse(
        &app,
        Request::get(path_of(manage)).body(Body::empty()).unwrap(),
    )
    .await;
    assert!(html.contains("Re-authenticate with Acme Bank"), "{html}");
    let token = param(manage, "partnerToken").unwrap();
    let sid = session["sessionId"].as_str().unwrap();
    let (status, to_bank, _) = browse(
        &app,
        Request::post(format!("/manage/{sid}/renew"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "partnerToken={token}&bankId=acme&consentId={old}"
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 303);
    let to_bank = to_bank.unwrap();
    let mut form: Vec<(String, String)> = url::Url::parse(&to_bank)
        .unwrap()
        .query_pairs()
        .filter(|(k, _)| k != "scope")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    form.extend([
        ("persona".to_owned(), "salaried".to_owned()),
        ("accounts".to_owned(), "current".to_owned()),
        ("decision".to_owned(), "approve".to_owned()),
    ]);
    let decided = acme
        .http
        .post(format!("{}/authorize", acme.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    let callback = decided.headers()["location"].to_str().unwrap().to_owned();
    let (status, back, _) = browse(
        &app,
        Request::get(path_of(&callback))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 303);
    assert!(back.unwrap().contains("sessionTerminationToken="));

    let after = app
        .get(&format!("/v1/users/{user}/accounts"), &key)
        .await
        .body["data"]
        .clone();
    assert_eq!(
        after.as_array().unwrap().len(),
        1,
        "the same account, not a second one"
    );
    assert_eq!(after[0]["accountId"], before["accountId"]);
    assert_eq!(after[0]["consentStatus"], "ACTIVE");
    assert_eq!(
        after[0]["consentExpiresAt"],
        crate::harness::iso(app.clock.now() + TimeDelta::days(90))
    );
    assert_ne!(after[0]["consentExpiresAt"], before["consentExpiresAt"]);
    let renewed: Vec<(String,)> =
        sqlx::query_as("SELECT payload FROM events WHERE type = 'v1.consent.renewed'")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(renewed.len(), 1);
    let payload: Value = serde_json::from_str(&renewed[0].0).unwrap();
    assert_eq!(payload["accountIds"], json!([before["accountId"]]));
    // The account is fetched with the new consent's tokens.
    app.clock.shift(TimeDelta::minutes(21));
    assert_eq!(app.refresh(&key, &user).await.status, 201);
    let w = worker_on(
        &app,
        std::sync::Arc::new(app.services.bank_directory().clone()),
    );
    drain(&w).await;
    let (last,): (String,) = sqlx::query_as("SELECT type FROM events ORDER BY seq DESC LIMIT 1")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(last, "v1.account_transactions.on_demand_refresh.succeeded");
}
