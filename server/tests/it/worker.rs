//! Refresh → workers → the sandbox bank over HTTP → ingestion, job states and events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use server::bank::http::HttpBank;
use server::bank::retry::RetryPolicy;
use server::bank::sandbox::{Fault, FaultKind, router};
use server::bank::{Bank, BankAccount, BankError, FetchedTransaction};
use server::worker::Worker;

use crate::harness::{TestApp, minutes};

/// A worker on this app's store and clock, fetching from its sandbox bank over real HTTP.
pub async fn worker(app: &TestApp) -> Worker {
    worker_on(app, Arc::new(sandbox_connector(app).await))
}

/// The HTTP connector to this app's sandbox bank, served on its own port.
pub async fn sandbox_connector(app: &TestApp) -> HttpBank {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bank_router = router(Arc::clone(&app.bank));
    tokio::spawn(async move { axum::serve(listener, bank_router).await.unwrap() });
    HttpBank::new(format!("http://{addr}"), Duration::from_millis(300)).unwrap()
}

pub fn worker_on(app: &TestApp, bank: Arc<dyn Bank>) -> Worker {
    let mut w = Worker::new(app.store.clone(), bank, Arc::clone(&app.clock));
    w.retry = RetryPolicy {
        max_attempts: 2,
        base: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    };
    w
}

/// A bank that counts the calls made to it, by account id, and passes them on.
struct CountingBank<B> {
    inner: B,
    calls: Mutex<HashMap<String, usize>>,
}

impl<B> CountingBank<B> {
    fn calls(&self, account: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .get(account)
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl<B: Bank> Bank for CountingBank<B> {
    async fn transactions(
        &self,
        account: &BankAccount,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<FetchedTransaction>, BankError> {
        *self
            .calls
            .lock()
            .unwrap()
            .entry(account.account_id.clone())
            .or_default() += 1;
        self.inner.transactions(account, since).await
    }
}

/// A worker whose every bank call is counted.
async fn counting_worker(app: &TestApp) -> (Worker, Arc<CountingBank<HttpBank>>) {
    let bank = Arc::new(CountingBank {
        inner: sandbox_connector(app).await,
        calls: Mutex::new(HashMap::new()),
    });
    (worker_on(app, Arc::clone(&bank) as Arc<dyn Bank>), bank)
}

pub async fn drain(w: &Worker) {
    while w.run_pending(50).await.unwrap() > 0 {}
}

/// Every event, oldest first: (type, payload).
pub async fn events(app: &TestApp) -> Vec<(String, Value)> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT type, payload FROM events ORDER BY seq")
            .fetch_all(&app.db)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(t, p)| (t, serde_json::from_str(&p).unwrap()))
        .collect()
}

#[tokio::test]
async fn a_triggered_refresh_is_fetched_ingested_and_announced_once_per_account() {
    let app = TestApp::new().await;
    let w = worker(&app).await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    let ids = app
        .connect(
            &key,
            &user,
            json!([{ "persona": "salaried" }, { "persona": "gambler" }]),
        )
        .await;
    let job = app.refresh(&key, &user).await.body["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    drain(&w).await;

    let j = app
        .get(&format!("/v1/users/{user}/accounts-refresh/{job}"), &key)
        .await;
    assert_eq!(j.body["status"], "SUCCEEDED", "{}", j.body);
    for item in j.body["accounts"].as_array().unwrap() {
        assert_eq!(item["state"], "SUCCEEDED");
        assert!(item["newTransactions"].as_i64().unwrap() > 0);
    }
    let accounts = app.get(&format!("/v1/users/{user}/accounts"), &key).await;
    for a in accounts.body["data"].as_array().unwrap() {
        assert_eq!(
            a["lastTransactionRefreshDate"], "2026-11-26T12:00:00.000Z",
            "moved to the fetch's now"
        );
    }
    let stored = app.count("transactions").await;
    assert!(stored > 100);
    // Every column in its place (they are written from one JSON array per row).
    let listed = app
        .get(&format!("/v1/users/{user}/transactions?limit=500"), &key)
        .await;
    let listed = listed.body["data"].as_array().unwrap();
    assert!(listed.len() > 100);
    for t in listed {
        assert_eq!(t["created"], "2026-11-26T12:00:00.000Z", "{t}");
        assert!(
            t["bookedAt"].as_str().unwrap() <= "2026-11-26T12:00:00.000Z",
            "{t}"
        );
        assert!(t["amount"].as_str().unwrap().parse::<f64>().is_ok(), "{t}");
        assert_eq!(t["currency"], "GBP", "{t}");
        assert!(!t["description"].as_str().unwrap().is_empty(), "{t}");
        assert!(
            ids.contains(&t["accountId"].as_str().unwrap().to_owned()),
            "{t}"
        );
    }
    assert!(listed.iter().any(|t| t.get("merchantName").is_some()));
    assert!(listed.iter().any(|t| t.get("category").is_some()));
    let ev = events(&app).await;
    assert_eq!(ev.len(), 2);
    for (kind, payload) in &ev {
        assert_eq!(kind, "v1.account_transactions.on_demand_refresh.succeeded");
        assert_eq!(payload["jobId"], job.as_str());
        assert!(ids.contains(&payload["accountId"].as_str().unwrap().to_owned()));
    }

    // 21 minutes later: the accounts are stale again, no longer in flight; the new fetch
    // stores only what is new, never a duplicate.
    app.clock.shift(minutes(60 * 24));
    assert_eq!(app.refresh(&key, &user).await.status, 201);
    drain(&w).await;
    let dupes: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT account_id, bank_transaction_id FROM transactions GROUP BY 1, 2 HAVING COUNT(*) > 1) AS dupes",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(dupes, 0);
    assert!(
        app.count("transactions").await > stored,
        "a day brings new transactions"
    );
}

#[tokio::test]
async fn a_failing_bank_fails_the_item_with_its_code_and_frees_the_account() {
    let app = TestApp::new().await;
    let w = worker(&app).await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    let ids = app.connect(&key, &user, json!([{}, {}])).await;
    app.bank.set_fault(Fault {
        account_id: Some(ids[0].clone()),
        kind: Some(FaultKind::ServerError),
        ..Fault::default()
    });
    app.bank.set_fault(Fault {
        account_id: Some(ids[1].clone()),
        kind: Some(FaultKind::ConsentRevoked),
        ..Fault::default()
    });
    let job = app.refresh(&key, &user).await.body["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    drain(&w).await;

    let j = app
        .get(&format!("/v1/users/{user}/accounts-refresh/{job}"), &key)
        .await;
    assert_eq!(j.body["status"], "FAILED", "{}", j.body);
    let item = |id: &str| {
        j.body["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["accountId"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        item(&ids[0])["error"],
        json!({ "code": "BANK_UNAVAILABLE", "retryable": true })
    );
    assert_eq!(
        item(&ids[1])["error"],
        json!({ "code": "CONSENT_REVOKED", "retryable": false })
    );
    let ev = events(&app).await;
    assert_eq!(ev.len(), 2);
    assert!(
        ev.iter()
            .all(|(t, _)| t == "v1.account_transactions.on_demand_refresh.failed")
    );

    // The failed account is no longer in flight: the partner may retry at once. The revoked
    // one is ACCOUNT_EXPIRED from now on.
    app.bank.set_fault(Fault::default());
    let again = app.refresh(&key, &user).await;
    assert_eq!(again.status, 201, "{}", again.body);
    let reasons: Vec<(String, Value)> = again.body["metadata"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["accountId"].as_str().unwrap().to_owned(),
                a.get("reason").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    assert!(reasons.contains(&(ids[0].clone(), Value::Null)));
    assert!(reasons.contains(&(ids[1].clone(), json!("ACCOUNT_EXPIRED"))));
}

#[tokio::test]
async fn a_stale_lease_owner_cannot_end_an_item_another_worker_took() {
    let app = TestApp::new().await;
    let first = worker(&app).await;
    let second = worker(&app).await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    app.connect(&key, &user, json!([{}])).await;
    app.refresh(&key, &user).await;
    let now = app.clock.now();
    let taken = app
        .store
        .work()
        .claim(first.owner(), now, now + first.lease, 10, &[])
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    // The first worker stalls past its lease; the second takes the account and ends it.
    app.clock.shift(first.lease + chrono::TimeDelta::seconds(1));
    drain(&second).await;
    assert_eq!(app.count("events").await, 1);
    let late = app
        .store
        .work()
        .finish(
            first.owner(),
            &taken[0],
            server::store::Outcome::Fetched(server::store::Fetch::transactions(&[])),
            server::store::Ending::at(app.clock.now()),
        )
        .await
        .unwrap();
    assert!(!late, "the stale owner's late write is refused");
    assert_eq!(app.count("events").await, 1);
}

#[tokio::test]
async fn an_account_triggered_again_while_its_fetch_runs_is_fetched_once_for_both_jobs() {
    let app = TestApp::new().await;
    let (w, bank) = counting_worker(&app).await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    let a = app.connect(&key, &user, json!([{}])).await.remove(0);
    let first = app.refresh(&key, &user).await.body["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    // The worker claims A; before its fetch ends, B (stale) is connected and a refresh
    // triggers both (worked example 8).
    let now = app.clock.now();
    let taken = app
        .store
        .work()
        .claim(w.owner(), now, now + w.lease, 10, &[])
        .await
        .unwrap();
    app.clock.shift(minutes(1));
    let b = app
        .connect(
            &key,
            &user,
            json!([{ "lastTransactionRefreshDate": "2026-11-26T11:30:00.000Z" }]),
        )
        .await
        .remove(0);
    let second = app.refresh(&key, &user).await;
    assert_eq!(second.status, 201, "{}", second.body);
    let second = second.body["jobId"].as_str().unwrap().to_owned();
    let ended = app
        .store
        .work()
        .finish(
            w.owner(),
            &taken[0],
            server::store::Outcome::Fetched(server::store::Fetch::transactions(&[])),
            server::store::Ending::at(app.clock.now()),
        )
        .await
        .unwrap();
    assert!(ended);
    let ev = events(&app).await;
    let for_a: Vec<&str> = ev
        .iter()
        .filter(|(_, p)| p["accountId"] == a.as_str())
        .map(|(_, p)| p["jobId"].as_str().unwrap())
        .collect();
    assert_eq!(
        for_a,
        [first.as_str(), second.as_str()],
        "one fetch, one event per job"
    );
    drain(&w).await;
    let second_job = app
        .get(&format!("/v1/users/{user}/accounts-refresh/{second}"), &key)
        .await;
    assert_eq!(
        second_job.body["status"], "SUCCEEDED",
        "{}",
        second_job.body
    );
    // A's one fetch was the claimed one, ended above; the worker fetched only B.
    assert_eq!(bank.calls(&a), 0, "A was not fetched a second time");
    assert_eq!(bank.calls(&b), 1, "B was fetched once");
    let announced_a = events(&app)
        .await
        .iter()
        .filter(|(_, p)| p["accountId"] == a.as_str())
        .count();
    assert_eq!(announced_a, 2, "A is announced once per job, no more");
}

#[tokio::test]
async fn an_initial_fetch_ingests_new_accounts_and_says_user_initiated() {
    let app = TestApp::new().await;
    let w = worker(&app).await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    let r = app
        .post(
            &format!("/sandbox/v1/users/{user}/accounts"),
            &key,
            Some(json!({ "accounts": [{}], "initialFetch": true })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        r.body["data"][0]
            .get("lastTransactionRefreshDate")
            .is_none(),
        "not fetched yet"
    );
    // Until the first fetch ends, the account counts as in flight.
    assert_eq!(
        app.refresh(&key, &user).await.body["metadata"]["accounts"][0]["reason"],
        "RATE_LIMITED"
    );
    drain(&w).await;
    let accounts = app.get(&format!("/v1/users/{user}/accounts"), &key).await;
    assert_eq!(
        accounts.body["data"][0]["lastTransactionRefreshDate"],
        "2026-11-26T12:00:00.000Z"
    );
    let ev = events(&app).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].0, "v1.account_transactions.user_initiated.succeeded");
    assert!(
        ev[0].1.get("jobId").is_none(),
        "only on-demand events carry a jobId"
    );
    assert!(ev[0].1["newTransactions"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn the_scheduler_refreshes_stale_data_with_valid_consent_and_nothing_else() {
    let app = TestApp::new().await;
    let w = worker(&app).await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    let ids = app
        .connect(&key, &user, json!([
            { "lastTransactionRefreshDate": "2026-11-26T05:00:00.000Z" },
            { "lastTransactionRefreshDate": "2026-11-26T11:00:00.000Z" },
            { "lastTransactionRefreshDate": "2026-11-26T01:00:00.000Z", "consentStatus": "EXPIRED" },
        ]))
        .await;
    let period = chrono::TimeDelta::hours(6);
    assert_eq!(
        server::scheduler::run_once(&app.store, &app.clock, period)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        server::scheduler::run_once(&app.store, &app.clock, period)
            .await
            .unwrap(),
        0,
        "in flight: not twice"
    );
    drain(&w).await;
    let ev = events(&app).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(
        ev[0].0,
        "v1.account_transactions.scheduled_refresh.succeeded"
    );
    assert_eq!(ev[0].1["accountId"], ids[0].as_str());
    // The scheduled refresh moved the date like any ingestion: that account is fresh now,
    // the 11:00 one is stale, so an on-demand refresh triggers both eligible ones.
    let r = app.refresh(&key, &user).await;
    assert_eq!(r.status, 201);
}

#[tokio::test]
async fn every_fault_kind_ends_the_item_with_its_code_and_a_failed_event() {
    let app = TestApp::new().await;
    let w = worker(&app).await;
    let key = app.partner(true).await;
    let cases = [
        (FaultKind::ServerError, "BANK_UNAVAILABLE", true),
        (FaultKind::RateLimited, "BANK_RATE_LIMITED", true),
        (FaultKind::Hang, "BANK_TIMEOUT", true),
        (FaultKind::ConsentRevoked, "CONSENT_REVOKED", false),
    ];
    for (kind, code, retryable) in cases {
        let user = app.user(&key).await;
        let account = app.connect(&key, &user, json!([{}])).await.remove(0);
        app.bank.set_fault(Fault {
            account_id: Some(account.clone()),
            kind: Some(kind),
            retry_after_seconds: Some(1),
            ..Fault::default()
        });
        let job = app.refresh(&key, &user).await.body["jobId"]
            .as_str()
            .unwrap()
            .to_owned();
        drain(&w).await;
        let j = app
            .get(&format!("/v1/users/{user}/accounts-refresh/{job}"), &key)
            .await;
        assert_eq!(j.body["status"], "FAILED", "{kind:?}: {}", j.body);
        assert_eq!(j.body["accounts"][0]["state"], "FAILED");
        assert_eq!(
            j.body["accounts"][0]["error"],
            json!({ "code": code, "retryable": retryable }),
            "{kind:?}"
        );
        let ev = events(&app).await;
        let (t, p) = ev.last().unwrap();
        assert_eq!(t, "v1.account_transactions.on_demand_refresh.failed");
        assert_eq!(
            (p["accountId"].as_str(), p["jobId"].as_str()),
            (Some(account.as_str()), Some(job.as_str()))
        );
        assert_eq!(p["error"]["code"], code);
    }
}

/// Moving a partner's sandbox clock far ahead makes the bank serve a new stretch of
/// history at every refresh: the partner's transaction quota holds at ingestion too. A
/// fetch that would pass it stores nothing and fails with `SANDBOX_QUOTA_EXCEEDED`; the
/// same fetch under a larger quota is stored.
#[tokio::test]
async fn ingestion_keeps_a_sandbox_partner_within_its_transaction_quota() {
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    let account = app
        .connect(
            &key,
            &user,
            json!([{ "lastTransactionRefreshDate": "2026-11-26T11:00:00.000Z", "transactionCount": 10 }]),
        )
        .await
        .remove(0);
    let held = app.count("transactions").await;
    assert_eq!(held, 10);
    // Sixty days on: the bank has two months of new transactions for the account.
    let shifted = app
        .post(
            "/sandbox/v1/clock",
            &key,
            Some(json!({ "offsetSeconds": 60 * 86_400 })),
        )
        .await;
    assert_eq!(shifted.status, 200, "{}", shifted.body);
    let first = app.refresh(&key, &user).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let mut w = worker(&app).await;
    w.transactions_per_partner = Some(20);
    drain(&w).await;
    let job = first.body["jobId"].as_str().unwrap();
    let ended = app
        .get(&format!("/v1/users/{user}/accounts-refresh/{job}"), &key)
        .await;
    assert_eq!(ended.body["status"], "FAILED", "{}", ended.body);
    assert_eq!(
        ended.body["accounts"][0]["error"],
        json!({ "code": "SANDBOX_QUOTA_EXCEEDED", "retryable": false })
    );
    assert_eq!(app.count("transactions").await, held, "nothing stored");
    let accounts = app.get(&format!("/v1/users/{user}/accounts"), &key).await;
    assert_eq!(
        accounts.body["data"][0]["lastTransactionRefreshDate"], "2026-11-26T11:00:00.000Z",
        "the account did not move"
    );

    // Under a quota with room, the same stretch is stored.
    let second = app.refresh(&key, &user).await;
    assert_eq!(second.status, 201, "{}", second.body);
    w.transactions_per_partner = Some(100_000);
    drain(&w).await;
    let stored = app.count("transactions").await;
    assert!(stored > held + 10, "{stored} stored for {account}");
    let counted: i64 = sqlx::query_scalar("SELECT transactions_held FROM partners")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(counted, stored, "the database's own count agrees");
}

/// connections.md: a transaction the bank reported pending and later books is one
/// transaction, updated in place — also when the bank books it under a new id (the sandbox
/// bank does so for a third of them, keeping the reference).
#[tokio::test]
async fn a_pending_transaction_that_books_under_a_new_id_stays_one_transaction() {
    let app = TestApp::new().await;
    let w = worker(&app).await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    // Ten accounts: about seventeen pending transactions, so that some book under a new id
    // (two in five of them do).
    let account =
        json!({ "persona": "gambler", "lastTransactionRefreshDate": "2026-11-20T12:00:00.000Z" });
    app.connect(&key, &user, json!(vec![account; 10])).await;
    assert_eq!(app.refresh(&key, &user).await.status, 201);
    drain(&w).await;
    let rows = || async {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT match_key, bank_transaction_id, status FROM transactions ORDER BY match_key",
        )
        .fetch_all(&app.db)
        .await
        .unwrap();
        rows
    };
    let first = rows().await;
    let pending: Vec<&(String, String, String)> =
        first.iter().filter(|(_, _, s)| s == "PENDING").collect();
    assert!(
        !pending.is_empty(),
        "the last day's transactions are pending: {first:?}"
    );
    let renamed: Vec<&String> = pending
        .iter()
        .filter(|(_, id, _)| id.ends_with("-pending"))
        .map(|(key, _, _)| key)
        .collect();
    assert!(!renamed.is_empty(), "some book under a new id: {pending:?}");
    // Two days on, every one of them is booked: the same rows, no second copy.
    app.clock.shift(chrono::TimeDelta::days(2));
    assert_eq!(app.refresh(&key, &user).await.status, 201);
    drain(&w).await;
    let second = rows().await;
    for (key, _, _) in &pending {
        let same: Vec<&(String, String, String)> =
            second.iter().filter(|(k, _, _)| k == key).collect();
        assert_eq!(same.len(), 1, "{key} stored once");
        assert_eq!(same[0].2, "BOOKED");
        assert!(!same[0].1.ends_with("-pending"), "booked under its new id");
    }
    let ids: std::collections::HashSet<&String> = second.iter().map(|(_, id, _)| id).collect();
    assert_eq!(ids.len(), second.len(), "no bank id twice");
    // The API shows the status.
    let page = app
        .get(&format!("/v1/users/{user}/transactions"), &key)
        .await;
    assert!(
        page.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "BOOKED" || t["status"] == "PENDING")
    );
    eprintln!(
        "{} pending, {} of them renamed when booked",
        pending.len(),
        renamed.len()
    );
}
