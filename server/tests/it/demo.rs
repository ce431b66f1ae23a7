//! `serve --demo`: its users connect through the journey at the in-process sandbox bank (an
//! OAuth bank like any other), and the refresh answers each demo user's label promises.

use std::sync::Arc;

use serde_json::Value;
use server::bank::sandbox::in_process::SandboxConnector;
use server::bank::sandbox::router;
use server::secrets::Keyring;

use crate::harness::TestApp;
use crate::worker::{events, worker_on};

/// The sandbox bank served over HTTP and registered as `serve --sandbox` does.
pub async fn sandbox_bank_over_http(app: &TestApp) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::clone(&app.bank);
    tokio::spawn(async move { axum::serve(listener, router(served)).await.unwrap() });
    let (connector, oauth) = SandboxConnector::register(
        &app.bank,
        &base,
        &app.services.callback_url(),
        Keyring::ephemeral().unwrap(),
        app.store.clone(),
        Arc::clone(&app.clock),
    )
    .unwrap();
    app.services.add_sandbox_bank(connector, oauth);
}

fn outcomes(answer: &Value) -> Vec<String> {
    let mut list: Vec<String> = answer["metadata"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            a["reason"]
                .as_str()
                .map_or_else(|| a["outcome"].as_str().unwrap().to_owned(), str::to_owned)
        })
        .collect();
    list.sort();
    list
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_connects_its_users_through_the_journey_in_every_refresh_state() {
    let app = TestApp::new().await;
    sandbox_bank_over_http(&app).await;
    // The engine runs while the demo seeds: it waits for the first connections' fetches.
    let _engine = worker_on(&app, Arc::new(app.services.bank_directory().clone())).spawn();
    let demo = server::demo::seed_if_empty(&app.services)
        .await
        .unwrap()
        .expect("an empty database is seeded");
    // The engine keeps running (aborting it mid-transaction would leave the store's one
    // write connection in that transaction): wait until the first fetches have all ended.
    for _ in 0..2000 {
        let (open,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM refresh_job_items WHERE state IN ('QUEUED', 'RUNNING')",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        if open == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let key = demo.partner.api_key.clone();

    // Every connection went through a session the partner completed, at the sandbox bank.
    let sessions: Vec<(String,)> = sqlx::query_as("SELECT status FROM connection_sessions")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(sessions.len(), 6);
    assert!(sessions.iter().all(|(s,)| s == "COMPLETED"), "{sessions:?}");
    let consents: Vec<(String, String)> =
        sqlx::query_as("SELECT bank_id, bank_consent_id FROM bank_consents")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(consents.len(), 6);
    assert!(
        consents
            .iter()
            .all(|(b, c)| b == "sandbox" && c.starts_with("aac-"))
    );

    let expected: [&[&str]; 5] = [
        &["TRIGGERED", "TRIGGERED"],
        &["RATE_LIMITED", "RATE_LIMITED"],
        &["ACCOUNT_EXPIRED", "ACCOUNT_EXPIRED"],
        &["ACCOUNT_EXPIRED", "TRIGGERED", "TRIGGERED"],
        &[],
    ];
    for ((label, user), want) in demo.users.iter().zip(expected) {
        let listed = app.get(&format!("/v1/users/{user}/accounts"), &key).await;
        for a in listed.body["data"].as_array().unwrap() {
            assert_eq!(a["bankId"], "sandbox", "{label}");
            assert_eq!(a["bankName"], "freshet Sandbox Bank", "{label}");
        }
        let answer = app.refresh(&key, &user.to_string()).await;
        assert_eq!(outcomes(&answer.body), want, "{label}: {}", answer.body);
        let triggered = want.contains(&"TRIGGERED");
        assert_eq!(answer.status, if triggered { 201 } else { 200 }, "{label}");
    }

    // What the partner heard: each connected account's first fetch, the two unlinks.
    let heard = events(&app).await;
    let revoked: Vec<&Value> = heard
        .iter()
        .filter(|(t, _)| t == "v1.consent.revoked")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(revoked.len(), 2, "{heard:?}");
    assert!(revoked.iter().all(|p| p["reason"] == "USER_UNLINKED"));
    let first_fetches = heard
        .iter()
        .filter(|(t, _)| t == "v1.account_transactions.user_initiated.succeeded")
        .count();
    assert!(
        first_fetches >= 6,
        "the six accounts never unlinked: {heard:?}"
    );

    // Seeding again changes nothing.
    assert!(
        server::demo::seed_if_empty(&app.services)
            .await
            .unwrap()
            .is_none()
    );
}
