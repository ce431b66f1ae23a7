//! A user's consent at a registered Open Banking bank (the sandbox bank's authorization
//! server over real HTTP): the granted tokens kept sealed, the accounts and balances read
//! and connected, the first fetch and later refreshes through the Open Banking connector,
//! the access token refreshed when it expires, and the consent ended when the bank refuses
//! the refresh token or revokes the consent. The connection journey's pages will lead to the
//! same use case (`Services::connect_consent`).

use std::sync::Arc;

use chrono::TimeDelta;
use serde_json::{Value, json};
use server::bank::Bank as _;
use server::bank::openbanking::OpenBankingBank;
use server::bank::sandbox::oauth::challenge_of;
use server::bank::sandbox::{SandboxBank, router};
use server::secrets::Keyring;
use server::services::banks::{self, BankRegistration, Endpoints};
use server::services::connections::GrantedConsent;
use uuid::Uuid;

use crate::harness::TestApp;
use crate::harness::file_contains as contains;
use crate::worker::{drain, events, worker_on};

/// Everything the server logs while a test runs on this thread (a current-thread runtime:
/// the server's tasks and the bank's run here too), at every level.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

const VERIFIER: &str = "verifier-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEF";
const REDIRECT: &str = "http://127.0.0.1:3000/connect/callback";

/// The bank's authorization server on its own port, on the app's clock, registered with
/// freshet as bank `acme`; the connector added to the app's services.
pub struct Acme {
    pub base: String,
    pub http: reqwest::Client,
    pub client_id: String,
    pub secret: String,
    bank: Arc<SandboxBank>,
}

pub async fn acme(app: &TestApp) -> Acme {
    let bank = Arc::new(SandboxBank::new(Arc::clone(&app.clock)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    bank.set_issuer(&base);
    let served = Arc::clone(&bank);
    tokio::spawn(async move { axum::serve(listener, router(served)).await.unwrap() });
    let (client_id, secret) = bank.authority.register(vec![REDIRECT.to_owned()]).unwrap();
    let keys = Keyring::ephemeral().unwrap();
    banks::register(
        &app.store,
        &keys,
        BankRegistration {
            id: "acme".into(),
            name: "Acme Bank".into(),
            api_base: format!("{base}/open-banking/v3.1/aisp"),
            endpoints: Endpoints::Discovery(format!("{base}/.well-known/openid-configuration")),
            client_id: client_id.clone(),
            client_secret: secret.clone(),
            ca_pem: None,
            max_in_flight: 8,
            requests_per_second: 10.0,
        },
        app.clock.now(),
    )
    .await
    .unwrap();
    let record = app.store.banks().get("acme").await.unwrap().unwrap();
    let connector =
        OpenBankingBank::new(record, keys, app.store.clone(), Arc::clone(&app.clock)).unwrap();
    app.services
        .add_open_banking("Acme Bank", Arc::new(connector));
    Acme {
        base,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        client_id,
        secret,
        bank,
    }
}

impl Acme {
    async fn token(&self, form: &[(&str, &str)]) -> Value {
        self.http
            .post(format!("{}/token", self.base))
            .basic_auth(&self.client_id, Some(&self.secret))
            .form(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// What the journey will do: a consent, the user's approval as `persona`, the code
    /// exchanged. The bank's grant, as freshet receives it.
    async fn consent_of(&self, persona: &str) -> GrantedConsent {
        let client = self.token(&[("grant_type", "client_credentials")]).await;
        let consent: Value = self
            .http
            .post(format!(
                "{}/open-banking/v3.1/aisp/account-access-consents",
                self.base
            ))
            .bearer_auth(client["access_token"].as_str().unwrap())
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let consent_id = consent["Data"]["ConsentId"].as_str().unwrap().to_owned();
        let expires = consent["Data"]["ExpirationDateTime"].as_str().unwrap();
        let decided = self
            .http
            .post(format!("{}/authorize", self.base))
            .form(&[
                ("response_type", "code"),
                ("client_id", &self.client_id),
                ("redirect_uri", REDIRECT),
                ("state", "s"),
                ("consent_id", &consent_id),
                ("code_challenge", &challenge_of(VERIFIER)),
                ("code_challenge_method", "S256"),
                ("persona", persona),
                ("accounts", "current"),
                ("accounts", "savings"),
                ("decision", "approve"),
            ])
            .send()
            .await
            .unwrap();
        let back = url::Url::parse(decided.headers()["location"].to_str().unwrap()).unwrap();
        let code = back
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .into_owned();
        let tokens = self
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ])
            .await;
        GrantedConsent {
            bank_id: "acme".into(),
            bank_consent_id: consent_id,
            expires_at: Some(expires.parse().unwrap()),
            access_token: tokens["access_token"].as_str().unwrap().to_owned(),
            expires_in: tokens["expires_in"].as_i64(),
            refresh_token: tokens["refresh_token"].as_str().map(str::to_owned),
        }
    }
}

#[tokio::test]
async fn a_consented_users_accounts_are_connected_fetched_and_refreshed_with_their_tokens() {
    let log = Captured::default();
    // A global subscriber (one that takes nothing) first: with a scoped one alone, tracing
    // decides a callsite another test thread reaches first by that thread's (empty) default
    // and caches "never" for it, so this test's log came out empty when tests ran in
    // parallel. With two dispatchers registered, every callsite asks them all.
    let _ = tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
    let _logging = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish(),
    );
    let app = TestApp::new().await;
    let acme = acme(&app).await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    let granted = acme.consent_of("gambler").await;
    let (access, refresh) = (
        granted.access_token.clone(),
        granted.refresh_token.clone().unwrap(),
    );
    let partner = app.services.partner_by_key(&key).await.unwrap().unwrap().id;
    let connected = app
        .services
        .connect_consent(partner, Uuid::parse_str(&user).unwrap(), granted.clone())
        .await
        .unwrap();
    assert_eq!(connected.len(), 2);

    // The accounts as the API lists them: the bank's name, balances, the consent's end.
    let listed = app.get(&format!("/v1/users/{user}/accounts"), &key).await;
    let accounts = listed.body["data"].as_array().unwrap().clone();
    assert_eq!(accounts.len(), 2, "{}", listed.body);
    for a in &accounts {
        assert_eq!(a["providerName"], "Acme Bank");
        assert_eq!(a["bankId"], "acme");
        assert_eq!(a["bankName"], "Acme Bank");
        assert_eq!(a["consentStatus"], "ACTIVE");
        assert_eq!(
            a["consentExpiresAt"],
            crate::harness::iso(app.clock.now() + TimeDelta::days(90))
        );
        assert!(a["balance"].as_str().unwrap().contains('.'));
    }
    let types: Vec<&str> = accounts
        .iter()
        .map(|a| a["accountType"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"CURRENT") && types.contains(&"SAVINGS"),
        "{types:?}"
    );

    // The first fetch, through the directory's Open Banking connector.
    let w = worker_on(&app, Arc::new(app.services.bank_directory().clone()));
    drain(&w).await;
    let first = events(&app).await;
    assert_eq!(first.len(), 2);
    assert!(
        first
            .iter()
            .all(|(t, _)| t == "v1.account_transactions.user_initiated.succeeded"),
        "{first:?}"
    );
    let stored = app.count("transactions").await;
    assert!(stored > 0);

    // Twenty-one minutes on, the 5-minute access token has expired: a refresh uses the
    // refresh token (the bank rotates it), and the fetch succeeds.
    app.clock.shift(TimeDelta::minutes(21));
    assert_eq!(app.refresh(&key, &user).await.status, 201);
    drain(&w).await;
    let second = events(&app).await;
    assert_eq!(second.len(), 4);
    assert!(
        second[2..]
            .iter()
            .all(|(t, _)| t == "v1.account_transactions.on_demand_refresh.succeeded"),
        "{second:?}"
    );
    let used_old_refresh = acme
        .token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .await;
    assert_eq!(
        used_old_refresh["error"], "invalid_grant",
        "the bank rotated it: freshet used it"
    );

    // Nothing secret at rest: neither the first tokens nor anything in clear; nor in the
    // server's log, at any level.
    // (Sealing is above the store; the SQLite run reads the files themselves.)
    let files = if app.on_postgres() {
        Vec::new()
    } else {
        vec![app.db_file(), app.db_file().with_extension("db-wal")]
    };
    for file in files {
        for token in [&access, &refresh] {
            assert!(!contains(&file, token), "{} holds a token", file.display());
        }
    }
    let logged = log.text();
    assert!(!logged.is_empty(), "the log was captured");
    for secret in [&access, &refresh, &acme.secret] {
        assert!(!logged.contains(secret.as_str()), "the log holds a secret");
    }

    // The user revokes the consent at the bank: the next fetch ends it, both accounts EXPIRED.
    let client = acme.token(&[("grant_type", "client_credentials")]).await;
    let revoked = acme
        .http
        .delete(format!(
            "{}/open-banking/v3.1/aisp/account-access-consents/{}",
            acme.base, granted.bank_consent_id
        ))
        .bearer_auth(client["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    app.clock.shift(TimeDelta::minutes(21));
    assert_eq!(app.refresh(&key, &user).await.status, 201);
    drain(&w).await;
    let third = events(&app).await;
    assert!(
        third[4..]
            .iter()
            .filter(|(t, _)| t.starts_with("v1.account_transactions."))
            .all(
                |(t, p)| t == "v1.account_transactions.on_demand_refresh.failed"
                    && p["error"]["code"] == "CONSENT_REVOKED"
            ),
        "{third:?}"
    );
    let listed = app.get(&format!("/v1/users/{user}/accounts"), &key).await;
    assert!(
        listed.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["consentStatus"] == "EXPIRED"),
        "{}",
        listed.body
    );
    let refused = app.refresh(&key, &user).await;
    assert_eq!(refused.status, 200);
    assert_eq!(
        refused.body["metadata"]["accounts"][0]["reason"],
        "ACCOUNT_EXPIRED"
    );
    // The partner heard it once, with the reason: the bank revoked it.
    let revoked: Vec<Value> = third
        .iter()
        .filter(|(t, _)| t == "v1.consent.revoked")
        .map(|(_, p)| p.clone())
        .collect();
    assert_eq!(revoked.len(), 1, "{third:?}");
    assert_eq!(revoked[0]["reason"], "BANK_REVOKED");
    assert_eq!(revoked[0]["accountIds"].as_array().unwrap().len(), 2);
    drop(acme.bank);
}

#[tokio::test]
async fn a_refused_refresh_token_ends_the_consent_rather_than_retrying() {
    let app = TestApp::new().await;
    let acme = acme(&app).await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    let partner = app.services.partner_by_key(&key).await.unwrap().unwrap().id;
    let mut granted = acme.consent_of("multiple-loans").await;
    // The bank no longer knows this refresh token (as after a reset at the bank).
    granted.refresh_token = Some("rt-not-known-to-the-bank".to_owned());
    app.services
        .connect_consent(partner, Uuid::parse_str(&user).unwrap(), granted)
        .await
        .unwrap();
    let w = worker_on(&app, Arc::new(app.services.bank_directory().clone()));
    drain(&w).await;
    app.clock.shift(TimeDelta::minutes(21));
    assert_eq!(app.refresh(&key, &user).await.status, 201);
    drain(&w).await;
    let ended = events(&app).await;
    let failed: Vec<_> = ended
        .iter()
        .filter(|(t, _)| t.ends_with(".failed"))
        .collect();
    assert_eq!(failed.len(), 2, "{ended:?}");
    assert!(
        failed
            .iter()
            .all(|(_, p)| p["error"] == json!({ "code": "CONSENT_REVOKED", "retryable": false }))
    );
    let listed = app.get(&format!("/v1/users/{user}/accounts"), &key).await;
    assert!(
        listed.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["consentStatus"] == "EXPIRED")
    );
    // Another user of another partner is refused the consent outright.
    let stranger = app.partner(true).await;
    let theirs = app
        .services
        .partner_by_key(&stranger)
        .await
        .unwrap()
        .unwrap()
        .id;
    let refused = app
        .services
        .connect_consent(
            theirs,
            Uuid::parse_str(&user).unwrap(),
            acme.consent_of("gambler").await,
        )
        .await;
    assert!(matches!(
        refused,
        Err(server::services::Error::UserNotFound)
    ));
}

/// connections.md: `v1.consent.expiring` 7 days and 1 day before a consent's end, once each,
/// and `v1.consent.expired` at its end (its accounts `EXPIRED`) — also when the scheduler
/// that sends them is a new process on the same database.
#[tokio::test]
async fn consent_notices_come_once_each_across_a_restart() {
    let app = TestApp::new().await;
    let acme = acme(&app).await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    let partner = app.services.partner_by_key(&key).await.unwrap().unwrap().id;
    let granted = acme.consent_of("salaried").await;
    let ends = granted.expires_at.unwrap();
    let connected = app
        .services
        .connect_consent(partner, Uuid::parse_str(&user).unwrap(), granted)
        .await
        .unwrap();
    let notices = || async {
        events(&app)
            .await
            .into_iter()
            .filter(|(t, _)| t.starts_with("v1.consent."))
            .collect::<Vec<_>>()
    };
    let run = |store: server::store::Store| {
        let clock = Arc::clone(&app.clock);
        async move {
            server::scheduler::announce_consents(&store, &clock)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        run(app.store.clone()).await,
        0,
        "90 days ahead: nothing yet"
    );

    app.clock.set(ends - TimeDelta::days(7));
    assert_eq!(run(app.store.clone()).await, 1);
    // A restarted server (a new store on the same file) sends it no second time.
    let restarted = server::store::Store::open(&app.url).await.unwrap();
    assert_eq!(run(restarted.clone()).await, 0);
    app.clock.set(ends - TimeDelta::days(2));
    assert_eq!(run(restarted.clone()).await, 0);
    app.clock.set(ends - TimeDelta::hours(23));
    assert_eq!(run(restarted.clone()).await, 1);
    assert_eq!(run(app.store.clone()).await, 0);
    app.clock.set(ends);
    assert_eq!(run(restarted).await, 1);
    assert_eq!(run(app.store.clone()).await, 0);

    let sent = notices().await;
    let types: Vec<&str> = sent.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "v1.consent.expiring",
            "v1.consent.expiring",
            "v1.consent.expired"
        ]
    );
    let ids: Vec<String> = connected.iter().map(|a| a.account_id.to_string()).collect();
    for (_, payload) in &sent {
        assert_eq!(payload["userId"], user);
        assert_eq!(payload["bankId"], "acme");
        assert_eq!(payload["consentExpiresAt"], crate::harness::iso(ends));
        let mut named: Vec<String> = payload["accountIds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        named.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(named, expected);
    }
    // The consent's accounts are EXPIRED, stored so (not only read so by time).
    let stored: Vec<(String,)> = sqlx::query_as("SELECT consent_status FROM accounts")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert!(stored.iter().all(|(s,)| s == "EXPIRED"), "{stored:?}");
}

/// The balance is read again with every successful fetch (connections.md: "retrieve updated
/// account information and transactions").
#[tokio::test]
async fn each_fetch_brings_the_accounts_balance_as_the_bank_tells_it_now() {
    let app = TestApp::new().await;
    let acme = acme(&app).await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    let partner = app.services.partner_by_key(&key).await.unwrap().unwrap().id;
    let granted = acme.consent_of("gambler").await;
    let consent = granted.bank_consent_id.clone();
    app.services
        .connect_consent(partner, Uuid::parse_str(&user).unwrap(), granted)
        .await
        .unwrap();
    let w = worker_on(&app, Arc::new(app.services.bank_directory().clone()));
    drain(&w).await;
    let balance = || async {
        app.get(&format!("/v1/users/{user}/accounts"), &key)
            .await
            .body["data"][0]["balance"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = balance().await;
    // Three days on, the gambler has spent: the bank's balance moved.
    app.clock.shift(TimeDelta::days(3));
    let (bank_account,): (String,) = sqlx::query_as("SELECT bank_account_id FROM accounts")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let at_bank = app
        .services
        .bank_directory()
        .balance(&server::bank::BankAccount {
            bank_id: "acme".into(),
            consent_id: consent,
            account_id: bank_account,
        })
        .await
        .unwrap()
        .unwrap();
    assert_ne!(at_bank, before, "the bank's balance moved in three days");
    assert_eq!(app.refresh(&key, &user).await.status, 201);
    drain(&w).await;
    assert_eq!(balance().await, at_bank);
}
