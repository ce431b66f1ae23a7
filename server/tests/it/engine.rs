//! The refresh engine as a pipeline: claims never take an account another worker holds, a
//! hung bank holds only its own accounts, a bank's `429` pauses it and its accounts still
//! succeed, a failing bank's breaker shows in `GET /v1/banks`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use server::bank::directory::Directory;
use server::bank::gate::BankLimits;
use server::bank::{Bank, BankAccount, BankError, FetchedTransaction};

use crate::demo::sandbox_bank_over_http;
use crate::harness::{TestApp, minutes};
use crate::worker::{drain, worker_on};

/// A bank that answers every account with no transactions (after `delay`), counting the
/// calls per account; `fail_first` calls are answered 429 (`Retry-After: 1`) first.
struct Tally {
    delay: Duration,
    calls: Mutex<HashMap<String, usize>>,
    at: Mutex<Vec<tokio::time::Instant>>,
    fail_first: AtomicUsize,
}

impl Tally {
    fn new(delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            delay,
            calls: Mutex::default(),
            at: Mutex::default(),
            fail_first: AtomicUsize::new(0),
        })
    }

    fn calls(&self) -> HashMap<String, usize> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Bank for Tally {
    async fn transactions(
        &self,
        account: &BankAccount,
        _: Option<DateTime<Utc>>,
    ) -> Result<Vec<FetchedTransaction>, BankError> {
        *self
            .calls
            .lock()
            .unwrap()
            .entry(account.account_id.clone())
            .or_default() += 1;
        self.at.lock().unwrap().push(tokio::time::Instant::now());
        tokio::time::sleep(self.delay).await;
        let limited = self
            .fail_first
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if limited {
            return Err(BankError::RateLimited {
                retry_after: Some(1),
            });
        }
        Ok(Vec::new())
    }
}

/// A bank that never answers.
struct Hung;

#[async_trait::async_trait]
impl Bank for Hung {
    async fn transactions(
        &self,
        _: &BankAccount,
        _: Option<DateTime<Utc>>,
    ) -> Result<Vec<FetchedTransaction>, BankError> {
        std::future::pending().await
    }
}

const OPEN: BankLimits = BankLimits {
    max_in_flight: 64,
    requests_per_second: f64::INFINITY,
};

/// `n` users of a new partner with `per_user` never-refreshed accounts each, every one
/// refreshed (201); returns the key and the users.
async fn refreshed_users(app: &TestApp, n: usize, per_user: usize) -> (String, Vec<String>) {
    let key = app.partner(true).await;
    let mut users = Vec::new();
    for _ in 0..n {
        let user = app.user(&key).await;
        app.connect(&key, &user, json!(vec![json!({}); per_user]))
            .await;
        assert_eq!(app.refresh(&key, &user).await.status, 201);
        users.push(user);
    }
    (key, users)
}

/// Waits (up to 20 s) until `done` holds of the job items' states, polling the database.
async fn until_items(app: &TestApp, done: impl Fn(&[(String, String)]) -> bool) {
    for _ in 0..2000 {
        let items: Vec<(String, String)> = sqlx::query_as(
            "SELECT a.bank_id, i.state FROM refresh_job_items i JOIN accounts a ON a.id = i.account_id",
        )
        .fetch_all(&app.db)
        .await
        .unwrap();
        if done(&items) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the job items never got there");
}

#[tokio::test]
async fn a_claim_never_takes_an_account_another_worker_holds() {
    let app = TestApp::new().await;
    let bank = Tally::new(Duration::ZERO);
    let (key, users) = refreshed_users(&app, 1, 1).await;
    let a = worker_on(&app, Arc::clone(&bank) as Arc<dyn Bank>);
    let b = worker_on(&app, Arc::clone(&bank) as Arc<dyn Bank>);
    let now = app.clock.now();
    let held = app
        .store
        .work()
        .claim(a.owner(), now, now + a.lease, 10, &[])
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    // The account is triggered again while A holds it (21 minutes on for the partner; the
    // server's time, which leases run on, has not moved): a second job queues it.
    let partner = app.services.partner_by_key(&key).await.unwrap().unwrap().id;
    app.clock.shift_of(partner, minutes(21));
    assert_eq!(app.refresh(&key, &users[0]).await.status, 201);
    // B finds the queued item but not the account: A's lease is live.
    assert_eq!(b.run_pending(10).await.unwrap(), 0);
    assert!(bank.calls().is_empty(), "B fetched nothing");
    // A's one fetch ends both jobs' items.
    assert!(
        app.store
            .work()
            .finish(
                a.owner(),
                &held[0],
                server::store::Outcome::Fetched(server::store::Fetch::transactions(&[])),
                server::store::Ending::at(app.clock.now()),
            )
            .await
            .unwrap()
    );
    let open: (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM refresh_job_items WHERE state IN ('QUEUED', 'RUNNING')",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(open.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_running_workers_fetch_each_account_once() {
    let app = TestApp::new().await;
    let bank = Tally::new(Duration::from_millis(5));
    let (_, _) = refreshed_users(&app, 40, 3).await;
    let mut engines = Vec::new();
    for _ in 0..2 {
        let mut w = worker_on(&app, Arc::clone(&bank) as Arc<dyn Bank>);
        // Small claims, so that the two interleave.
        w.batch = 7;
        engines.push(w.spawn());
    }
    until_items(&app, |items| {
        items.len() == 120 && items.iter().all(|(_, s)| s == "SUCCEEDED")
    })
    .await;
    for e in engines {
        e.abort();
    }
    let calls = bank.calls();
    assert_eq!(calls.len(), 120);
    assert!(calls.values().all(|&n| n == 1), "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_bank_holds_only_its_own_accounts() {
    let app = TestApp::new().await;
    let healthy = Tally::new(Duration::from_millis(1));
    let directory = Directory::default();
    directory.register(
        "sandbox",
        "Healthy",
        Some(Arc::clone(&healthy) as Arc<dyn Bank>),
        OPEN,
    );
    directory.register(
        "hung",
        "Hung",
        Some(Arc::new(Hung)),
        BankLimits {
            max_in_flight: 4,
            requests_per_second: f64::INFINITY,
        },
    );
    let (key, users) = refreshed_users(&app, 20, 2).await;
    // Half of the users bank at the hung bank.
    for user in &users[..10] {
        sqlx::query("UPDATE accounts SET bank_id = 'hung' WHERE user_id = $1")
            .bind(user)
            .execute(&app.db)
            .await
            .unwrap();
    }
    let engine = worker_on(&app, Arc::new(directory)).spawn();
    until_items(&app, |items| {
        items
            .iter()
            .filter(|(b, _)| b == "sandbox")
            .all(|(_, s)| s == "SUCCEEDED")
    })
    .await;
    // Twenty-one minutes on, the healthy bank's users refresh again: they do not wait
    // behind the hung bank's accounts either.
    app.clock.shift(minutes(21));
    for user in &users[10..] {
        assert_eq!(app.refresh(&key, user).await.status, 201);
    }
    until_items(&app, |items| {
        items
            .iter()
            .filter(|(b, s)| b == "sandbox" && s == "SUCCEEDED")
            .count()
            == 40
    })
    .await;
    engine.abort();
    let items: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.bank_id, i.state FROM refresh_job_items i JOIN accounts a ON a.id = i.account_id
         WHERE a.bank_id = 'hung'",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(items.len(), 20);
    assert!(
        items.iter().all(|(_, s)| s == "RUNNING"),
        "the hung bank's accounts are still in hand: {items:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_that_answers_429_is_paused_and_its_accounts_still_succeed() {
    let app = TestApp::new().await;
    let bank = Tally::new(Duration::ZERO);
    bank.fail_first.store(1, Ordering::Release);
    let directory = Directory::default();
    directory.register(
        "sandbox",
        "Limited",
        Some(Arc::clone(&bank) as Arc<dyn Bank>),
        BankLimits {
            max_in_flight: 1,
            requests_per_second: f64::INFINITY,
        },
    );
    refreshed_users(&app, 1, 3).await;
    let mut w = worker_on(&app, Arc::new(directory));
    w.retry = server::bank::retry::RetryPolicy::default();
    drain(&w).await;
    let states: Vec<(String,)> = sqlx::query_as("SELECT state FROM refresh_job_items")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert!(states.iter().all(|(s,)| s == "SUCCEEDED"), "{states:?}");
    // After the 429, nothing reached the bank for the second it asked.
    let at = bank.at.lock().unwrap().clone();
    assert_eq!(at.len(), 4, "three accounts, one asked again");
    assert!(at[1] - at[0] >= Duration::from_secs(1), "{at:?}");
}

/// A bank whose every call fails (503) while `down`.
struct Flaky {
    down: AtomicBool,
}

#[async_trait::async_trait]
impl Bank for Flaky {
    async fn transactions(
        &self,
        _: &BankAccount,
        _: Option<DateTime<Utc>>,
    ) -> Result<Vec<FetchedTransaction>, BankError> {
        if self.down.load(Ordering::Acquire) {
            Err(BankError::Unavailable)
        } else {
            Ok(Vec::new())
        }
    }
}

#[tokio::test]
async fn a_failing_bank_opens_its_breaker_and_shows_unavailable() {
    let app = TestApp::new().await;
    sandbox_bank_over_http(&app).await;
    let key = app.partner(true).await;
    let listed = app.get("/v1/banks", &key).await;
    assert_eq!(listed.body["data"][0]["status"], "AVAILABLE");
    // Every call of this partner's accounts answers 503.
    let fault = app
        .post(
            "/sandbox/v1/bank/faults",
            &key,
            Some(json!({ "kind": "SERVER_ERROR" })),
        )
        .await;
    assert_eq!(fault.status, 204, "{}", fault.body);
    for _ in 0..3 {
        let user = app.user(&key).await;
        app.connect(&key, &user, json!([{}, {}])).await;
        assert_eq!(app.refresh(&key, &user).await.status, 201);
    }
    let w = worker_on(&app, Arc::new(app.services.bank_directory().clone()));
    drain(&w).await;
    let listed = app.get("/v1/banks", &key).await;
    assert_eq!(listed.body["data"][0]["bankId"], "sandbox");
    assert_eq!(
        listed.body["data"][0]["status"], "UNAVAILABLE",
        "{}",
        listed.body
    );
    // While open, the bank is not called: a new account fails at once, retryable.
    let flaky = Arc::new(Flaky {
        down: AtomicBool::new(true),
    });
    let directory = Directory::default();
    directory.register(
        "sandbox",
        "Flaky",
        Some(Arc::clone(&flaky) as Arc<dyn Bank>),
        OPEN,
    );
    let w = worker_on(&app, Arc::new(directory.clone()));
    let user = app.user(&key).await;
    app.connect(&key, &user, json!(vec![json!({}); 6])).await;
    assert_eq!(app.refresh(&key, &user).await.status, 201);
    drain(&w).await;
    assert_eq!(
        directory.gate_state("sandbox"),
        Some(server::bank::gate::GateState::Open)
    );
    let failed: Vec<(String, i64)> = sqlx::query_as(
        "SELECT error_code, error_retryable FROM refresh_job_items i JOIN accounts a ON a.id = i.account_id
         WHERE a.user_id = $1",
    )
    .bind(&user)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert!(
        failed
            .iter()
            .all(|(c, r)| c == "BANK_UNAVAILABLE" && *r == 1),
        "{failed:?}"
    );
}
