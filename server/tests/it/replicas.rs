//! Several servers on one database: what a single SQLite server promises must hold across
//! PostgreSQL replicas. Each test starts two stores (or two whole servers) on one database;
//! on SQLite, where a second server is a second view of the same file, the same assertions
//! hold and run too, except where a test says it is PostgreSQL's alone.

use std::collections::HashSet;
use std::time::Duration;

use axum::http::StatusCode;
use chrono::TimeDelta;
use futures_util::future::join_all;
use serde_json::json;
use server::store::Role;
use uuid::Uuid;

use crate::harness::{TestApp, acct, minutes, noon};

/// A stale user refreshed 16 times at once, half through each replica: exactly one 201.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_through_two_replicas_trigger_once() {
    let a = TestApp::new().await;
    let b = a.replica().await;
    let key = a.partner(true).await;
    for _ in 0..3 {
        let user = a.user(&key).await;
        a.connect(
            &key,
            &user,
            json!([
                acct("ACTIVE", Some(noon() - minutes(30))),
                acct("ACTIVE", None)
            ]),
        )
        .await;
        let replies = join_all((0..16).map(|i| {
            let app = if i % 2 == 0 { &a } else { &b };
            let (key, user) = (key.clone(), user.clone());
            async move { app.refresh(&key, &user).await }
        }))
        .await;
        let created: Vec<_> = replies
            .iter()
            .filter(|r| r.status == StatusCode::CREATED)
            .collect();
        assert_eq!(created.len(), 1, "one 201 per stale user");
        assert!(
            replies
                .iter()
                .all(|r| r.status == StatusCode::CREATED || r.status == StatusCode::OK),
            "the others are answered, not failed"
        );
        let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM refresh_jobs WHERE user_id = $1")
            .bind(&user)
            .fetch_one(&a.db)
            .await
            .unwrap();
        assert_eq!(jobs, 1);
    }
}

/// One `Idempotency-Key`, used through both replicas at once: one job, one answer replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotency_key_is_one_request_across_replicas() {
    let a = TestApp::new().await;
    let b = a.replica().await;
    let key = a.partner(true).await;
    let user = a.user(&key).await;
    a.connect(&key, &user, json!([acct("ACTIVE", None)])).await;
    let path = format!("/v1/users/{user}/accounts-refresh");
    let replies = join_all((0..8).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        let (key, path) = (key.clone(), path.clone());
        async move {
            let request = axum::http::Request::post(&path)
                .header("x-api-key", &key)
                .header("idempotency-key", "same-key-1")
                .body(axum::body::Body::empty())
                .unwrap();
            app.send(request).await
        }
    }))
    .await;
    let job_ids: HashSet<String> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
            r.body["jobId"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(job_ids.len(), 1, "every answer is the first one's");
    assert_eq!(a.count("refresh_jobs").await, 1);
}

/// Two replicas' workers claiming at once never hold one account together, and together
/// they claim every queued account.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_claim_one_account() {
    let a = TestApp::new().await;
    let b = a.replica().await;
    let key = a.partner(true).await;
    let mut accounts = HashSet::new();
    for _ in 0..20 {
        let user = a.user(&key).await;
        let ids = a
            .connect(
                &key,
                &user,
                json!([acct("ACTIVE", None), acct("ACTIVE", None)]),
            )
            .await;
        accounts.extend(ids);
        assert_eq!(a.refresh(&key, &user).await.status, StatusCode::CREATED);
    }
    let now = noon();
    let lease = now + TimeDelta::minutes(5);
    let mut held: Vec<HashSet<String>> = vec![HashSet::new(), HashSet::new()];
    loop {
        let (x, y) = tokio::join!(
            a.store.work().claim("replica-a", now, lease, 7, &[]),
            b.store.work().claim("replica-b", now, lease, 7, &[]),
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        if x.is_empty() && y.is_empty() {
            break;
        }
        held[0].extend(x.into_iter().map(|c| c.account_id));
        held[1].extend(y.into_iter().map(|c| c.account_id));
    }
    assert!(
        held[0].is_disjoint(&held[1]),
        "an account held by both: {:?}",
        held[0].intersection(&held[1]).collect::<Vec<_>>()
    );
    let all: HashSet<String> = held[0].union(&held[1]).cloned().collect();
    assert_eq!(all, accounts, "every queued account claimed once");
}

/// The event log under two writers: a writer that appended but has not committed holds
/// back every later append, so a reader that resumes after the last event it saw never
/// skips one that committed late (the trap of sequence ids under concurrent writers).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_committed_late_is_never_skipped_by_a_resuming_reader() {
    let a = TestApp::new().await;
    if !a.on_postgres() {
        // One writer at a time is SQLite's own rule; the interleaving needs two.
        return;
    }
    let b = a.replica().await;
    a.partner(true).await;
    let partner = only_partner(&a).await;
    let seen = a.store.events().last_seq(partner).await.unwrap();

    // Writer 1 follows the event log's protocol by hand and stops before its commit.
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&a.url).await.unwrap();
    let mut first = conn.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(server::store::EVENT_LOG_LOCK)
        .execute(&mut *first)
        .await
        .unwrap();
    let first_seq: i64 = sqlx::query_scalar(
        "INSERT INTO events (id, partner_id, type, payload, created_at)
         VALUES ($1, $2, 'test.first', '{}', 0) RETURNING seq",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(partner.to_string())
    .fetch_one(&mut *first)
    .await
    .unwrap();

    // Writer 2 is a replica's store: its append must wait for writer 1's commit.
    let second = tokio::spawn({
        let store = b.store.clone();
        async move {
            store
                .events()
                .append(partner, "test.second", &json!({}), noon())
                .await
                .unwrap()
        }
    });
    // Until writer 2 is seen waiting for the event log (PostgreSQL's lock table, not a
    // timer), a reader sees nothing new: neither the uncommitted event nor a later one.
    let waiting = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
            )
            .fetch_one(&a.db)
            .await
            .unwrap();
            if n > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(waiting.is_ok(), "writer 2 waits for writer 1");
    assert!(
        b.store
            .events()
            .after(partner, seen, 100)
            .await
            .unwrap()
            .is_empty(),
        "no event is visible past one that has not committed"
    );
    first.commit().await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .unwrap()
        .unwrap();
    assert!(
        second.seq > first_seq,
        "the later append has the later position"
    );
    let read: Vec<String> = b
        .store
        .events()
        .after(partner, seen, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(read, ["test.first", "test.second"]);
}

/// The scheduler leads on one replica at a time; when the leader's session ends, another
/// takes over at its next try.
#[tokio::test]
async fn one_replica_leads_and_another_takes_over_when_it_goes() {
    let a = TestApp::new().await;
    if !a.on_postgres() {
        // One process: it always leads.
        assert!(a.store.leadership(Role::Scheduler).held().await);
        return;
    }
    let b = a.replica().await;
    let mut first = a.store.leadership(Role::Scheduler);
    let mut second = b.store.leadership(Role::Scheduler);
    assert!(first.held().await);
    assert!(!second.held().await, "one leader at a time");
    assert!(first.held().await, "the leader keeps leading");
    // Retention is led on its own.
    assert!(b.store.leadership(Role::Retention).held().await);
    drop(first);
    let took = tokio::time::timeout(Duration::from_secs(30), async {
        while !second.held().await {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(took.is_ok(), "the other replica takes the lead");
}

/// Work committed by one replica wakes another's workers (LISTEN/NOTIFY): the hint arrives
/// without the other's polling.
#[tokio::test]
async fn work_committed_on_one_replica_wakes_the_other() {
    let a = TestApp::new().await;
    if !a.on_postgres() {
        return;
    }
    let b = a.replica().await;
    let mut work = b.store.watch_work();
    let mut events = b.store.watch_events();
    // Until b's listener is connected, a's hints may go unheard (b would find the work by
    // polling): wait for the first one heard. Any change after that is a's notification.
    let heard = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            a.store.want_work();
            if tokio::time::timeout(Duration::from_millis(200), work.changed())
                .await
                .is_ok()
            {
                break;
            }
        }
    })
    .await;
    assert!(heard.is_ok(), "replica b listens");
    work.borrow_and_update();
    events.borrow_and_update();
    a.store.want_work();
    tokio::time::timeout(Duration::from_secs(10), work.changed())
        .await
        .expect("replica b hears of replica a's work")
        .unwrap();
    a.partner(true).await;
    let partner = only_partner(&a).await;
    a.store
        .events()
        .append(partner, "test.wake", &json!({}), noon())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), events.changed())
        .await
        .expect("replica b hears of replica a's events")
        .unwrap();
}

/// One batch ending two fetches of one account (its worker claimed it again after the lease
/// ran out while the first fetch waited for its commit: a database away for longer than a
/// lease) ends its items once: one terminal event per job and account.
#[tokio::test]
async fn two_fetches_of_one_account_in_one_commit_end_its_items_once() {
    use server::store::{Ended, Ending, Fetch, Outcome};
    let app = TestApp::new().await;
    let key = app.partner(true).await;
    let user = app.user(&key).await;
    app.connect(&key, &user, json!([acct("ACTIVE", None)]))
        .await;
    assert_eq!(app.refresh(&key, &user).await.status, StatusCode::CREATED);
    let now = noon();
    let work = app.store.work();
    let claimed = work
        .claim("w", now, now + TimeDelta::seconds(2), 10, &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    // The lease runs out; the same worker claims the account again.
    let later = now + TimeDelta::seconds(3);
    let again = work
        .claim("w", later, later + TimeDelta::seconds(2), 10, &[])
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    let ended = |account| Ended {
        account,
        outcome: Outcome::Fetched(Fetch::transactions(&[])),
        ending: Ending::at(later),
    };
    let held = work
        .finish_many("w", &[ended(&claimed[0]), ended(&again[0])])
        .await
        .unwrap();
    assert_eq!(held, [true, true]);
    let events: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM events WHERE type = 'v1.account_transactions.on_demand_refresh.succeeded'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(events, 1, "one terminal event for the one job and account");
}

/// The id of the one partner `app` holds.
async fn only_partner(app: &TestApp) -> Uuid {
    sqlx::query_scalar::<_, String>("SELECT id FROM partners")
        .fetch_one(&app.db)
        .await
        .unwrap()
        .parse()
        .unwrap()
}

/// `serve --api-only`: on PostgreSQL a replica that answers the API and runs no engine; the
/// job it creates is fetched by another replica's workers. On SQLite, where the one process
/// that writes the file must also do the work, it refuses to start and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_only_replica_decides_and_another_replica_fetches() {
    use std::io::BufRead;
    use std::sync::Arc;

    let a = TestApp::new().await;
    let bin = env!("CARGO_BIN_EXE_freshet");
    let serve = |extra: &[&str]| {
        let mut command = std::process::Command::new(bin);
        command
            .args(["--log-format", "json", "serve", "--api-only"])
            .args(["--database-url", &a.url, "--bind", "127.0.0.1:0"])
            .args(extra)
            // Replicas on PostgreSQL seal secrets with a key from the environment.
            .env(
                "FRESHET_MASTER_KEY",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            )
            .env("RUST_LOG", "info");
        command
    };
    let refused = serve(&["--sandbox"]).output().unwrap();
    assert!(!refused.status.success(), "--api-only --sandbox is refused");
    if !a.on_postgres() {
        let refused = serve(&[]).output().unwrap();
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("--api-only needs PostgreSQL"), "{stderr}");
        return;
    }
    let mut child = crate::ops::Killed(
        serve(&[])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = std::io::BufReader::new(child.0.stderr.take().unwrap());
    let (lines, read) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in stderr.lines() {
            if lines.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut said = Vec::new();
    let base = loop {
        let line = read
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the replica logs its address; it said: {said:#?}"));
        let message = serde_json::from_str::<serde_json::Value>(&line).unwrap()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Some(base) = message.strip_prefix("freshet listening on ") {
            break base.to_owned();
        }
        said.push(message);
    };
    assert!(
        said.iter()
            .any(|m| m.starts_with("--api-only: no refresh workers")),
        "{said:#?}"
    );

    let key = a.partner(true).await;
    let user = a.user(&key).await;
    a.connect(
        &key,
        &user,
        json!([acct("ACTIVE", Some(noon() - minutes(30)))]),
    )
    .await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let refresh = format!("{base}/v1/users/{user}/accounts-refresh");
    let created = http
        .post(&refresh)
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let job: serde_json::Value = created.json().await.unwrap();
    let job = job["jobId"].as_str().unwrap().to_owned();
    let state = || async {
        let body: serde_json::Value = http
            .get(format!("{refresh}/{job}"))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["status"].as_str().unwrap().to_owned()
    };
    assert_eq!(state().await, "QUEUED");
    // The other replica's engine (a's workers, fetching from a's sandbox bank).
    let bank = Arc::new(crate::worker::sandbox_connector(&a).await);
    crate::worker::drain(&crate::worker::worker_on(&a, bank)).await;
    assert_eq!(state().await, "SUCCEEDED");
}
