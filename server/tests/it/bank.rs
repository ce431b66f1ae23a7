//! The sandbox bank over real HTTP, through the Open Banking connector.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use server::bank::http::HttpBank;
use server::bank::sandbox::{Fault, FaultKind, SandboxBank, consent_id, router, schedule};
use server::bank::{Bank, BankAccount, BankError};
use server::clock::Clock;

use crate::harness::noon;

async fn bank() -> (Arc<SandboxBank>, Arc<Clock>, HttpBank) {
    let clock = Arc::new(Clock::frozen(noon()));
    let bank = Arc::new(SandboxBank::new(Arc::clone(&clock)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(Arc::clone(&bank));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = HttpBank::new(format!("http://{addr}"), Duration::from_millis(400)).unwrap();
    (bank, clock, client)
}

fn account(persona: &str, id: &str) -> BankAccount {
    BankAccount {
        bank_id: "sandbox".into(),
        consent_id: consent_id(persona, "partner-1", id),
        account_id: id.to_owned(),
    }
}

#[tokio::test]
async fn a_fetch_pages_through_ninety_days_of_deterministic_history() {
    let (_, _, client) = bank().await;
    let a = account("salaried", "acc-1");
    let first = client.transactions(&a, None).await.unwrap();
    assert!(first.len() > 100, "more than one page: {}", first.len());
    let expected = schedule("salaried", "acc-1", noon() - TimeDelta::days(90), noon());
    assert_eq!(first.len(), expected.len());
    assert!(first.windows(2).all(|w| w[0].booked_at <= w[1].booked_at));
    let mut ids: Vec<&str> = first
        .iter()
        .map(|t| t.bank_transaction_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), first.len(), "bank ids are unique");
    assert!(
        first
            .iter()
            .any(|t| t.category.as_deref() == Some("income") && !t.amount.starts_with('-'))
    );
    assert!(first.iter().any(|t| t.amount.starts_with('-')));
    assert_eq!(
        client.transactions(&a, None).await.unwrap(),
        first,
        "the same clock, the same answer"
    );
}

#[tokio::test]
async fn new_transactions_appear_as_the_sandbox_clock_moves() {
    let (_, clock, client) = bank().await;
    let a = account("gambler", "acc-2");
    let before = client.transactions(&a, None).await.unwrap();
    let newest = before.last().unwrap().booked_at;
    clock.shift(TimeDelta::days(3));
    let since = client
        .transactions(&a, Some(newest + TimeDelta::milliseconds(1)))
        .await
        .unwrap();
    assert!(!since.is_empty(), "three days bring new transactions");
    assert!(since.iter().all(|t| t.booked_at > newest));
    let everything = client.transactions(&a, None).await.unwrap();
    assert!(everything.ends_with(&since));
}

#[tokio::test]
async fn each_fault_maps_to_its_typed_error_and_clears() {
    let (bank, _, client) = bank().await;
    let a = account("overdraft", "acc-3");
    let other = account("savings", "acc-4");
    let cases = [
        (FaultKind::ServerError, BankError::Unavailable),
        (
            FaultKind::RateLimited,
            BankError::RateLimited {
                retry_after: Some(7),
            },
        ),
        (FaultKind::Hang, BankError::Timeout),
        (FaultKind::ConsentRevoked, BankError::ConsentRevoked),
    ];
    for (kind, expected) in cases {
        bank.set_fault(Fault {
            account_id: Some("acc-3".into()),
            kind: Some(kind),
            retry_after_seconds: Some(7),
            ..Fault::default()
        });
        assert_eq!(
            client.transactions(&a, None).await.unwrap_err(),
            expected,
            "{kind:?}"
        );
        assert!(
            client.transactions(&other, None).await.is_ok(),
            "a fault on one account leaves the others alone"
        );
    }
    bank.set_fault(Fault {
        account_id: Some("acc-3".into()),
        ..Fault::default()
    });
    assert!(client.transactions(&a, None).await.is_ok());

    bank.set_fault(Fault {
        latency_ms: Some(100),
        ..Fault::default()
    });
    let started = std::time::Instant::now();
    assert!(client.transactions(&other, None).await.is_ok());
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "latency applies to every account"
    );
    bank.set_fault(Fault::default());
}

#[tokio::test]
async fn a_consent_for_another_account_or_none_is_refused() {
    let (_, _, client) = bank().await;
    let stolen = BankAccount {
        bank_id: "sandbox".into(),
        consent_id: consent_id("salaried", "partner-1", "acc-5"),
        account_id: "acc-6".into(),
    };
    assert_eq!(
        client.transactions(&stolen, None).await.unwrap_err(),
        BankError::ConsentRevoked
    );
    let none = BankAccount {
        bank_id: "sandbox".into(),
        consent_id: "nope".into(),
        account_id: "acc-6".into(),
    };
    assert!(matches!(
        client.transactions(&none, None).await.unwrap_err(),
        BankError::Internal(_)
    ));
}

#[tokio::test]
async fn an_unreachable_bank_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = HttpBank::new(format!("http://{addr}"), Duration::from_millis(400)).unwrap();
    assert_eq!(
        client
            .transactions(&account("salaried", "x"), None)
            .await
            .unwrap_err(),
        BankError::Unavailable
    );
}

#[tokio::test]
async fn the_sandbox_api_sets_faults_on_the_callers_accounts_only() {
    use serde_json::json;
    let app = crate::harness::TestApp::new().await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    let account = app.connect(&key, &user, json!([{}])).await.remove(0);
    let r = app
        .post(
            "/sandbox/v1/bank/faults",
            &key,
            Some(json!({ "accountId": account, "kind": "RATE_LIMITED", "retryAfterSeconds": 5 })),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let partner = app.services.partner_by_key(&key).await.unwrap().unwrap().id;
    let fault = app.bank.fault_for(&partner.to_string(), &account).unwrap();
    assert!(
        app.bank.fault_for("another partner", &account).is_none(),
        "the fault is the caller's own"
    );
    assert_eq!(
        (fault.kind, fault.retry_after_seconds),
        (Some(FaultKind::RateLimited), Some(5))
    );

    let other = app.partner(true).await;
    app.post(
        "/sandbox/v1/bank/faults",
        &other,
        Some(json!({ "accountId": account, "kind": "HANG" })),
    )
    .await
    .assert_problem(404, "ACCOUNT_NOT_FOUND");
    app.post(
        "/sandbox/v1/bank/faults",
        &key,
        Some(json!({ "kind": "EXPLODE" })),
    )
    .await
    .assert_problem(400, "INVALID_BODY");
    app.post(
        "/sandbox/v1/bank/faults",
        &key,
        Some(json!({ "latencyMs": 600_001 })),
    )
    .await
    .assert_problem(400, "INVALID_BODY");
    assert_eq!(
        app.post(
            "/sandbox/v1/bank/faults",
            &key,
            Some(json!({ "accountId": account }))
        )
        .await
        .status,
        204
    );
    assert_eq!(
        app.bank.fault_for("any partner", &account),
        None,
        "an empty fault clears it"
    );
}

#[tokio::test]
async fn a_partner_wide_fault_leaves_other_partners_accounts_alone() {
    use serde_json::json;
    let app = crate::harness::TestApp::new().await;
    let w = crate::worker::worker(&app).await;
    let (a, b) = (app.partner(true).await, app.partner(true).await);
    let (a_user, b_user) = (app.user(&a).await, app.user(&b).await);
    app.connect(&a, &a_user, json!([{}])).await;
    app.connect(&b, &b_user, json!([{}])).await;
    // A makes the bank fail for "every account": every account of A's, that is.
    let r = app
        .post(
            "/sandbox/v1/bank/faults",
            &a,
            Some(json!({ "kind": "SERVER_ERROR" })),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let a_job = app.refresh(&a, &a_user).await.body["jobId"].clone();
    let b_job = app.refresh(&b, &b_user).await.body["jobId"].clone();
    crate::worker::drain(&w).await;

    let mine = app
        .get(
            &format!(
                "/v1/users/{a_user}/accounts-refresh/{}",
                a_job.as_str().unwrap()
            ),
            &a,
        )
        .await;
    assert_eq!(mine.body["status"], "FAILED", "{}", mine.body);
    assert_eq!(
        mine.body["accounts"][0]["error"]["code"],
        "BANK_UNAVAILABLE"
    );
    let theirs = app
        .get(
            &format!(
                "/v1/users/{b_user}/accounts-refresh/{}",
                b_job.as_str().unwrap()
            ),
            &b,
        )
        .await;
    assert_eq!(
        theirs.body["status"], "SUCCEEDED",
        "partner A's fault without an accountId reached partner B's account: {}",
        theirs.body
    );
}
