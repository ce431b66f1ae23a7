//! The sandbox bank as an authorization server, over real HTTP, as freshet's connector and
//! an end user's browser will meet it: discovery, registration, a consent made with a
//! `client_credentials` token, the authorization page, PKCE-bound single-use codes,
//! short-lived access tokens with rotating refresh tokens, accounts, balances and
//! transactions read with them, denial, expiry and revocation.

use std::sync::Arc;

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::{Value, json};
use server::bank::sandbox::oauth::challenge_of;
use server::bank::sandbox::{SandboxBank, router};
use server::clock::Clock;

use crate::harness::noon;

const VERIFIER: &str = "verifier-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEF";
const REDIRECT: &str = "https://freshet.example/connect/callback";

struct Bank {
    base: String,
    clock: Arc<Clock>,
    http: reqwest::Client,
    client_id: String,
    secret: String,
}

impl Bank {
    async fn start() -> Self {
        let clock = Arc::new(Clock::frozen(noon()));
        let bank = Arc::new(SandboxBank::new(Arc::clone(&clock)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        bank.set_issuer(&base);
        tokio::spawn(async move { axum::serve(listener, router(bank)).await.unwrap() });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let registered: Value = http
            .post(format!("{base}/register"))
            .json(&json!({ "redirect_uris": [REDIRECT] }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Self {
            base,
            clock,
            http,
            client_id: registered["client_id"].as_str().unwrap().to_owned(),
            secret: registered["client_secret"].as_str().unwrap().to_owned(),
        }
    }

    async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/token", self.base))
            .basic_auth(&self.client_id, Some(&self.secret))
            .form(form)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    async fn consent(&self, body: Value) -> String {
        let (_, client) = self.token(&[("grant_type", "client_credentials")]).await;
        assert!(client.get("refresh_token").is_none());
        let r = self
            .http
            .post(format!(
                "{}/open-banking/v3.1/aisp/account-access-consents",
                self.base
            ))
            .bearer_auth(client["access_token"].as_str().unwrap())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["Data"]["Status"], "AwaitingAuthorisation");
        body["Data"]["ConsentId"].as_str().unwrap().to_owned()
    }

    fn authorize_query(&self, consent: &str) -> Vec<(&'static str, String)> {
        vec![
            ("response_type", "code".to_owned()),
            ("client_id", self.client_id.clone()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("state", "st-42".to_owned()),
            ("consent_id", consent.to_owned()),
            ("code_challenge", challenge_of(VERIFIER)),
            ("code_challenge_method", "S256".to_owned()),
        ]
    }

    /// The user's decision on the authorization page; the redirect it answers.
    async fn decide(&self, consent: &str, decision: &str, persona: &str) -> url::Url {
        let page = self
            .http
            .get(format!("{}/authorize", self.base))
            .query(&self.authorize_query(consent))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains("Arranged Overdraft") && html.contains("Multiple Loans"));
        let mut form = self.authorize_query(consent);
        form.extend([
            ("persona", persona.to_owned()),
            ("accounts", "current".to_owned()),
            ("accounts", "savings".to_owned()),
            ("decision", decision.to_owned()),
        ]);
        let r = self
            .http
            .post(format!("{}/authorize", self.base))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap()
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}/open-banking/v3.1/aisp{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }
}

fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn an_approved_consent_gives_tokens_that_read_its_accounts_until_revoked() {
    let bank = Bank::start().await;
    let discovery: Value = bank
        .http
        .get(format!("{}/.well-known/openid-configuration", bank.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["token_endpoint"], format!("{}/token", bank.base));
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        json!(["S256"])
    );

    let consent = bank
        .consent(json!({ "Data": { "Permissions": ["ReadAccountsDetail"] } }))
        .await;
    let back = bank.decide(&consent, "approve", "overdraft").await;
    assert!(back.as_str().starts_with(REDIRECT));
    assert_eq!(param(&back, "state").as_deref(), Some("st-42"));
    let code = param(&back, "code").unwrap();

    let exchange = |verifier: &'static str| {
        let code = code.clone();
        let bank = &bank;
        async move {
            bank.token(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier),
            ])
            .await
        }
    };
    let (status, tokens) = exchange(VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["expires_in"], 300);
    assert_eq!(tokens["consent_id"], consent.as_str());
    let (replayed, said) = exchange(VERIFIER).await;
    assert_eq!(
        (replayed, said["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    let access = tokens["access_token"].as_str().unwrap();
    let (status, accounts) = bank.get("/accounts", access).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = accounts["Data"]["Account"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["AccountId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(|id| id.starts_with("overdraft.")));
    let (status, balance) = bank
        .get(&format!("/accounts/{}/balances", ids[0]), access)
        .await;
    assert_eq!(status, 200);
    assert_eq!(balance["Data"]["Balance"][0]["Amount"]["Currency"], "GBP");
    let (status, transactions) = bank
        .get(&format!("/accounts/{}/transactions", ids[0]), access)
        .await;
    assert_eq!(status, 200);
    assert!(
        !transactions["Data"]["Transaction"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (status, _) = bank
        .get("/accounts/someone-else.current.x/transactions", access)
        .await;
    assert_eq!(status, 403, "an account outside the consent");

    // Five minutes on, the access token is dead; the refresh token (once) gives another.
    bank.clock.shift(TimeDelta::minutes(6));
    assert_eq!(bank.get("/accounts", access).await.0, 401);
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, renewed) = bank
        .token(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(
        bank.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
            .await
            .0,
        400,
        "rotated"
    );
    let access = renewed["access_token"].as_str().unwrap();
    assert_eq!(bank.get("/accounts", access).await.0, 200);

    // Revoked by the client: data 403, refresh refused.
    let (_, client) = bank.token(&[("grant_type", "client_credentials")]).await;
    let revoked = bank
        .http
        .delete(format!(
            "{}/open-banking/v3.1/aisp/account-access-consents/{consent}",
            bank.base
        ))
        .bearer_auth(client["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    assert_eq!(bank.get("/accounts", access).await.0, 403);
    let (status, said) = bank
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", renewed["refresh_token"].as_str().unwrap()),
        ])
        .await;
    assert_eq!(
        (status, said["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn denial_expiry_wrong_clients_and_forged_requests_give_nothing() {
    let bank = Bank::start().await;
    // Denied: back with error=access_denied and no code; the consent cannot be asked again.
    let consent = bank.consent(json!({})).await;
    let back = bank.decide(&consent, "deny", "gambler").await;
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&back, "code"), None);
    let again = bank
        .http
        .get(format!("{}/authorize", bank.base))
        .query(&bank.authorize_query(&consent))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);

    // A redirect the client did not register: an error page, never a redirect.
    let consent = bank.consent(json!({})).await;
    let mut forged = bank.authorize_query(&consent);
    forged[2].1 = "https://evil.example/steal".to_owned();
    let refused = bank
        .http
        .get(format!("{}/authorize", bank.base))
        .query(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.headers().get("location").is_none());

    // A consent asked for one day expires after it.
    let consent = bank
        .consent(json!({ "Data": { "ExpirationDateTime": crate::harness::iso(noon() + TimeDelta::days(1)) } }))
        .await;
    let code = param(&bank.decide(&consent, "approve", "salaried").await, "code").unwrap();
    let (_, tokens) = bank
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .await;
    bank.clock.shift(TimeDelta::days(1) + TimeDelta::seconds(1));
    let (status, said) = bank
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ])
        .await;
    assert_eq!(
        (status, said["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    // A wrong client secret: 401 invalid_client.
    let r = bank
        .http
        .post(format!("{}/token", bank.base))
        .basic_auth(&bank.client_id, Some("not-the-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let said: Value = r.json().await.unwrap();
    assert_eq!(said["error"], "invalid_client");
}
