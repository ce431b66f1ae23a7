//! A fresh server per test: its own database, a frozen clock, the real router. The database
//! is a SQLite file, or — when `FRESHET_TEST_POSTGRES_URL` names a PostgreSQL server (as
//! `scripts/test` does for its second run) — a fresh database on that server.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use freshet_rules::RefreshPolicy;
use serde_json::{Value, json};
use server::bank::sandbox::SandboxBank;
use server::clock::Clock;
use server::services::{ApiRate, Limits, Services};
use server::store::Store;
use server::webhooks::{Deliverer, DeliveryConfig, TargetPolicy};
use server::{AppState, router};
use tower::ServiceExt;

/// The PostgreSQL server the tests run on instead of SQLite, if any.
pub fn postgres_server() -> Option<String> {
    std::env::var("FRESHET_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A fresh, empty database for one test: a SQLite file in `dir`, or a new database on
/// [`postgres_server`] (created with the C collation: byte order, as SQLite sorts).
pub async fn database_url(dir: &std::path::Path) -> String {
    let Some(server) = postgres_server() else {
        return format!("sqlite://{}", dir.join("freshet.db").display());
    };
    use sqlx::Connection;
    let name = format!("t{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
    sqlx::query(&format!(
        "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    let base = server
        .rsplit_once('/')
        .map_or(server.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

/// 12:00:00Z, the "now" of the worked examples.
pub fn noon() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
}

pub fn minutes(m: i64) -> TimeDelta {
    TimeDelta::minutes(m)
}

/// `2026-11-26T11:30:00.000Z` for `at(11, 30)`.
pub fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, h, m, 0).unwrap()
}

pub fn iso(t: DateTime<Utc>) -> String {
    freshet_rules::format_timestamp(t)
}

pub struct TestApp {
    pub router: axum::Router,
    pub clock: Arc<Clock>,
    /// The same database, for a test's own SQL (`$1` placeholders: both backends read them).
    pub db: sqlx::AnyPool,
    /// Its URL (another store on the same database: a restarted server, a second replica).
    pub url: String,
    pub store: Store,
    pub bank: Arc<SandboxBank>,
    pub targets: TargetPolicy,
    pub services: Arc<Services>,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts a problem+json body with this status and code.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(
            self.headers["content-type"], "application/problem+json",
            "{}",
            self.body
        );
        assert_eq!(self.body["code"], code, "{}", self.body);
        assert_eq!(self.body["status"], status);
        assert!(
            self.body["type"]
                .as_str()
                .unwrap()
                .starts_with("/problems/")
        );
    }
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_sandbox(true).await
    }

    pub async fn with_sandbox(sandbox: bool) -> Self {
        Self::with_options(sandbox, TargetPolicy::secure()).await
    }

    /// A sandbox server whose webhooks may go to the test's loopback receivers.
    pub async fn insecure_webhooks() -> Self {
        Self::with_options(true, TargetPolicy::insecure()).await
    }

    pub async fn with_options(sandbox: bool, targets: TargetPolicy) -> Self {
        Self::build(sandbox, targets, |s| s).await
    }

    /// A sandbox server whose partners have these quotas.
    pub async fn with_limits(limits: Limits) -> Self {
        Self::build(true, TargetPolicy::secure(), |s| s.with_limits(limits)).await
    }

    /// A sandbox server whose partners each have `rate` of the API.
    pub async fn with_api_rate(rate: ApiRate) -> Self {
        Self::build(true, TargetPolicy::secure(), |s| {
            s.with_api_rate(Some(rate))
        })
        .await
    }

    async fn build(
        sandbox: bool,
        targets: TargetPolicy,
        configure: impl FnOnce(Services) -> Services,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = database_url(dir.path()).await;
        let clock = Arc::new(Clock::frozen(noon()));
        Self::on(url, dir, clock, sandbox, targets, configure).await
    }

    /// A second server on this one's database and clock (a replica: on PostgreSQL, as in
    /// production; on SQLite, a second process's view of the same file).
    pub async fn replica(&self) -> Self {
        let sandbox = self.services.sandbox;
        Self::on(
            self.url.clone(),
            tempfile::tempdir().unwrap(),
            Arc::clone(&self.clock),
            sandbox,
            self.targets.clone(),
            |s| s,
        )
        .await
    }

    async fn on(
        url: String,
        dir: tempfile::TempDir,
        clock: Arc<Clock>,
        sandbox: bool,
        targets: TargetPolicy,
        configure: impl FnOnce(Services) -> Services,
    ) -> Self {
        let store = Store::open(&url).await.unwrap();
        store.migrate().await.unwrap();
        let policy = RefreshPolicy::default();
        let bank = Arc::new(SandboxBank::new(Arc::clone(&clock)));
        let services = Arc::new(configure(
            Services::new(store.clone(), Arc::clone(&clock), policy, sandbox)
                .with_sandbox_bank(Arc::clone(&bank))
                .with_webhook_targets(targets.clone()),
        ));
        let state = AppState::new(std::path::Path::new("target/site"), Arc::clone(&services));
        sqlx::any::install_default_drivers();
        let db = sqlx::AnyPool::connect(&url).await.unwrap();
        Self {
            router: router(state),
            clock,
            db,
            url,
            store,
            bank,
            targets,
            services,
            _dir: dir,
        }
    }

    /// A webhook deliverer on this server's database, clock and target policy.
    pub fn deliverer(&self) -> Deliverer {
        self.deliverer_with(DeliveryConfig::default())
    }

    pub fn deliverer_with(&self, config: DeliveryConfig) -> Deliverer {
        Deliverer::new(
            self.store.clone(),
            Arc::clone(&self.clock),
            self.targets.clone(),
            config,
        )
        .unwrap()
    }

    pub async fn patch(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(key), Some(body)).await
    }

    /// Creates a partner through the store (as `freshet partner create` does); returns its key.
    pub async fn partner(&self, direct: bool) -> String {
        self.store
            .partners()
            .create("Test partner", direct, noon())
            .await
            .unwrap()
            .api_key
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let body = match body {
            Some(v) => {
                request = request.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = to_bytes(response.into_body(), 1 << 24).await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, key: &str) -> Reply {
        self.call(Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Option<Value>) -> Reply {
        self.call(Method::POST, path, Some(key), body).await
    }

    /// A direct user of the partner.
    pub async fn user(&self, key: &str) -> String {
        let r = self.post("/v1/users", key, None).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["userId"].as_str().unwrap().to_owned()
    }

    /// Connects accounts through the sandbox; returns their ids in the request's order.
    pub async fn connect(&self, key: &str, user: &str, accounts: Value) -> Vec<String> {
        let r = self
            .post(
                &format!("/sandbox/v1/users/{user}/accounts"),
                key,
                Some(json!({ "accounts": accounts })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["accountId"].as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn refresh(&self, key: &str, user: &str) -> Reply {
        self.post(&format!("/v1/users/{user}/accounts-refresh"), key, None)
            .await
    }

    /// Whether this server's database is PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        self.store.backend() == server::store::Backend::Postgres
    }

    /// The SQLite file (and, beside it, its WAL).
    pub fn db_file(&self) -> std::path::PathBuf {
        self._dir.path().join("freshet.db")
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// Rows of every table, to prove a request wrote nothing.
    pub async fn footprint(&self) -> Vec<i64> {
        let mut counts = Vec::new();
        for table in [
            "partners",
            "api_keys",
            "users",
            "accounts",
            "transactions",
            "refresh_jobs",
            "refresh_job_items",
            "idempotency_keys",
            "webhook_subscriptions",
            "webhook_deliveries",
            "webhook_attempts",
        ] {
            counts.push(self.count(table).await);
        }
        counts
    }
}

/// Whether the file holds `needle` anywhere (a secret must not be at rest in clear).
pub fn file_contains(file: &std::path::Path, needle: &str) -> bool {
    let bytes = std::fs::read(file).unwrap_or_default();
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// `{"consentStatus": ..., "lastTransactionRefreshDate": ...}` for the sandbox.
pub fn acct(consent: &str, last: Option<DateTime<Utc>>) -> Value {
    let mut a = json!({ "consentStatus": consent });
    if let Some(last) = last {
        a["lastTransactionRefreshDate"] = json!(iso(last));
    }
    a
}
