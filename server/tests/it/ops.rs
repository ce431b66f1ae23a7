//! What an operator sees: `/readyz` with its reasons, `/metrics` moving with the work, and
//! the JSON log of the real binary (each request's lines carrying its id, nothing secret).

use std::io::BufRead;
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use server::ops::Health;
use server::{AppState, router};
use sqlx::Connection;
use tower::ServiceExt;

use crate::harness::TestApp;
use crate::webhooks::{Subscribed, refresh_new_user, subscribed};
use crate::worker::worker;

async fn get(app: &axum::Router, path: &str, bearer: Option<&str>) -> (StatusCode, String) {
    let mut request = Request::get(path);
    if let Some(token) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = to_bytes(response.into_body(), 1 << 24).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn ops_router(app: &TestApp, health: Health, token: Option<&str>) -> axum::Router {
    router(
        AppState::new(
            std::path::Path::new("target/site"),
            Arc::clone(&app.services),
        )
        .with_health(health)
        .with_metrics_token(token),
    )
}

#[tokio::test]
async fn readiness_fails_with_its_reason_while_the_database_takes_no_write_and_comes_back() {
    let app = TestApp::new().await;
    if app.on_postgres() {
        // SQLite's write lock; PostgreSQL's readiness has its own test.
        return;
    }
    let health = Health::default();
    let routes = ops_router(&app, health.clone(), None);
    let (status, body) = get(&routes, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Another process holds the database's write lock (as a stuck migration or a backup
    // tool would): not ready, and the body says why.
    let mut other =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", app.db_file().display()))
            .await
            .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let (status, body) = get(&routes, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["code"], "NOT_READY");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("database: it does not take a write"),
        "{body}"
    );
    assert_eq!(
        get(&routes, "/healthz", None).await.0,
        StatusCode::OK,
        "alive all the same"
    );
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    let (status, body) = get(&routes, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A background loop that ended, then shutting down.
    health.watch("refresh workers", tokio::spawn(async {}));
    tokio::task::yield_now().await;
    for _ in 0..100 {
        if get(&routes, "/readyz", None).await.0 != StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    health.stopping();
    let (status, body) = get(&routes, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let reasons: Value = serde_json::from_str::<Value>(&body).unwrap()["reasons"].clone();
    assert_eq!(
        reasons,
        json!(["shutting down", "refresh workers: stopped"]),
        "{body}"
    );
}

#[tokio::test]
async fn readiness_fails_once_the_pool_is_closed() {
    let app = TestApp::new().await;
    let routes = ops_router(&app, Health::default(), None);
    assert_eq!(get(&routes, "/readyz", None).await.0, StatusCode::OK);
    app.store.close().await;
    let (status, body) = get(&routes, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("the connection pool is closed"), "{body}");
}

/// The value of the series `name{labels}` (labels as the exporter writes them), 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn metrics_need_their_token_and_move_with_refreshes_and_webhooks() {
    let Subscribed {
        app, receiver, key, ..
    } = subscribed().await;
    let routes = ops_router(&app, Health::default(), Some("scrape-token-0123456789"));
    assert_eq!(
        get(&app.router, "/metrics", None).await.0,
        StatusCode::NOT_FOUND,
        "without a token configured, not served on the main address"
    );
    assert_eq!(
        get(&routes, "/metrics", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&routes, "/metrics", Some("wrong")).await.0,
        StatusCode::UNAUTHORIZED
    );

    let series = [
        r#"freshet_refresh_decisions_total{outcome="TRIGGERED",reason=""}"#,
        r#"freshet_jobs_created_total{kind="ON_DEMAND"}"#,
        r#"freshet_http_requests_total{route="/v1/users/{userId}/accounts-refresh",method="POST",status="201"}"#,
        r#"freshet_bank_fetches_total{bank="sandbox",outcome="SUCCEEDED"}"#,
        r#"freshet_webhook_attempts_total{outcome="SUCCEEDED",error=""}"#,
    ];
    let (status, before) = get(&routes, "/metrics", Some("scrape-token-0123456789")).await;
    assert_eq!(status, StatusCode::OK);
    let w = worker(&app).await;
    refresh_new_user(&app, &w, &key, 2).await;
    let (_, mid) = get(&routes, "/metrics", Some("scrape-token-0123456789")).await;
    assert!(
        sample(&mid, "freshet_webhook_deliveries_due") >= 2.0,
        "the two events wait for the deliverer:\n{mid}"
    );
    assert_eq!(app.deliverer().run_pending().await.unwrap(), 2);
    assert_eq!(receiver.received().len(), 2);
    let (_, after) = get(&routes, "/metrics", Some("scrape-token-0123456789")).await;
    // The recorder is the process's, shared with tests running beside this one: moved by
    // at least this test's own work.
    for (series, by) in series.iter().zip([2.0, 1.0, 1.0, 2.0, 2.0]) {
        let moved = sample(&after, series) - sample(&before, series);
        assert!(moved >= by, "{series} moved by {moved}:\n{after}");
    }
    for family in [
        "freshet_http_request_duration_seconds_bucket",
        "freshet_bank_fetch_duration_seconds_bucket",
        "freshet_webhook_attempt_duration_seconds_bucket",
        "freshet_db_write_wait_seconds_bucket",
        "freshet_job_items_open{state=\"QUEUED\"}",
        "freshet_webhook_oldest_due_age_seconds",
    ] {
        assert!(after.contains(family), "{family} missing:\n{after}");
    }
}

/// A child process, killed when dropped.
pub(crate) struct Killed(pub(crate) std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real binary with `--log-format json`, a system proxy in its environment that goes
/// nowhere, `--metrics-bind` beside the main address: a partner's requests, a webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_each_requests_id_and_partner_and_nothing_secret() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("freshet.db").display());
    let bin = env!("CARGO_BIN_EXE_freshet");
    let created: Value = serde_json::from_slice(
        &std::process::Command::new(bin)
            .args(["partner", "create", "--name", "Logs", "--database-url", &db])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let (partner, key) = (
        created["partnerId"].as_str().unwrap().to_owned(),
        created["apiKey"].as_str().unwrap().to_owned(),
    );
    let child = std::process::Command::new(bin)
        .args(["--log-format", "json", "serve", "--sandbox"])
        .args(["--bind", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0"])
        .args(["--database-url", &db, "--insecure-webhook-targets"])
        .args(["--site-root", &dir.path().display().to_string()])
        .env("RUST_LOG", "info")
        // Deliveries must not go through a system proxy: this one refuses every connection.
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed however the test ends (a failed assertion must not leave it running).
    let mut child = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut lines: Vec<String> = Vec::new();
    let address_in = |lines: &[String], prefix: &str| {
        lines.iter().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            let m = v["message"].as_str()?;
            m.strip_prefix(prefix).map(str::to_owned)
        })
    };
    let (base, metrics) = loop {
        lines.push(
            rx.recv_timeout(std::time::Duration::from_secs(30))
                .expect("the server logs its addresses"),
        );
        if let (Some(base), Some(metrics)) = (
            address_in(&lines, "freshet listening on "),
            address_in(&lines, "metrics listening on "),
        ) {
            break (base, metrics);
        }
    };

    let receiver = crate::webhooks::Receiver::start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let user: Value = http
        .post(format!("{base}/v1/users"))
        .header("x-api-key", &key)
        .header("x-request-id", "req-logs-0001")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = user["userId"].as_str().expect("a user").to_owned();
    let subscription: Value = http
        .post(format!("{base}/v1/webhooks/subscriptions"))
        .header("x-api-key", &key)
        .header("x-request-id", "req-logs-0002")
        .json(&json!({"targetUrl": receiver.url, "eventTypes": ["v1.account_transactions.on_demand_refresh.succeeded"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = subscription["secret"].as_str().unwrap().to_owned();
    let sub = subscription["subscriptionId"].as_str().unwrap();
    let test = http
        .post(format!("{base}/v1/webhooks/subscriptions/{sub}/test"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(test.status(), 202);
    let missing = http
        .get(format!("{base}/v1/users/{user}/accounts"))
        .header("x-api-key", "not-a-key")
        .header("x-request-id", "req-logs-0003")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["x-request-id"], "req-logs-0003");
    for _ in 0..500 {
        if !receiver.received().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        receiver.received().len(),
        1,
        "the test event reached the receiver directly, not through the proxy"
    );
    let scraped = http
        .get(format!("{metrics}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        scraped.contains("freshet_webhook_attempts_total"),
        "{scraped}"
    );

    drop(child);
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(5)) {
        lines.push(line);
    }
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access = |id: &str| {
        parsed
            .iter()
            .find(|v| v["target"] == "freshet::access" && v["span"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no access line for {id}:\n{}", lines.join("\n")))
            .clone()
    };
    let created_user = access("req-logs-0001");
    assert_eq!(created_user["status"], 201);
    assert_eq!(created_user["span"]["partner_id"], partner.as_str());
    assert_eq!(created_user["span"]["route"], "/v1/users");
    assert_eq!(
        access("req-logs-0002")["span"]["partner_id"],
        partner.as_str()
    );
    let refused = access("req-logs-0003");
    assert_eq!(refused["status"], 401);
    assert!(
        refused["span"].get("partner_id").is_none(),
        "no partner for a bad key"
    );
    for v in &parsed {
        for field in ["timestamp", "level", "target"] {
            assert!(v.get(field).is_some(), "{field} missing: {v}");
        }
    }
    let all = lines.join("\n");
    for secret in [&key, &secret] {
        assert!(!all.contains(secret.as_str()), "the log holds a secret");
    }
}
