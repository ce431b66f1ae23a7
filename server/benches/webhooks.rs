//! Webhook delivery, measured in one run (figures for BENCHMARKS.md):
//! 1. throughput: 5,000 events already committed, the deliverer started — deliveries/s to a
//!    local receiver;
//! 2. latency: events committed one per transaction at 500/s for 10 s — commit → arrival at
//!    the receiver, p50/p99;
//! 3. the same while a second subscription's receiver hangs (never answers; every attempt
//!    to it times out after 5 s).
//!
//! Real parts throughout: a SQLite file with `synchronous=FULL`, the trigger fan-out, the
//! deliverer's loop, reqwest over loopback to an axum receiver, signatures included.
//! Run: `cargo bench -p server --bench webhooks`.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)] // a benchmark: a failure should stop it loudly

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use server::clock::Clock;
use server::store::Store;
use server::webhooks::signature::Secret;
use server::webhooks::{Deliverer, DeliveryConfig, TargetPolicy};

const EVENT: &str = "v1.account_transactions.on_demand_refresh.succeeded";
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn receiver(hang: bool) -> (String, Arrivals) {
    let arrivals: Arrivals = Arc::default();
    let log = Arc::clone(&arrivals);
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let log = Arc::clone(&log);
        async move {
            let now = Instant::now();
            if let Some(id) = headers.get("x-event-id").and_then(|v| v.to_str().ok()) {
                log.lock().unwrap().entry(id.to_owned()).or_insert(now);
            }
            if hang {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, arrivals)
}

struct Setup {
    store: Store,
    partner: uuid::Uuid,
    clock: Arc<Clock>,
    fast: Arrivals,
    hanging: Arrivals,
    _dir: tempfile::TempDir,
}

async fn setup(with_hanging: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ))
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let clock = Arc::new(Clock::default());
    let partner = store
        .partners()
        .create("bench", true, clock.now())
        .await
        .unwrap()
        .partner_id;
    let (fast_url, fast) = receiver(false).await;
    let mut urls = vec![fast_url];
    let (hanging_url, hanging) = receiver(true).await;
    if with_hanging {
        urls.push(hanging_url);
    }
    for url in urls {
        store
            .subscriptions()
            .create(
                partner,
                &url,
                &[EVENT.to_owned()],
                Secret::generate().unwrap().expose(),
                clock.now(),
                u32::MAX,
            )
            .await
            .unwrap()
            .expect("no cap in the benchmark");
    }
    Setup {
        store,
        partner,
        clock,
        fast,
        hanging,
        _dir: dir,
    }
}

fn start_deliverer(s: &Setup, config: DeliveryConfig) -> tokio::task::JoinHandle<()> {
    Deliverer::new(
        s.store.clone(),
        Arc::clone(&s.clock),
        TargetPolicy::insecure(),
        config,
    )
    .unwrap()
    .spawn()
}

async fn append(s: &Setup, i: usize) -> String {
    let payload = serde_json::json!({ "jobId": uuid::Uuid::new_v4(), "userId": uuid::Uuid::new_v4(),
        "accountId": format!("acc-{i}"), "lastTransactionRefreshDate": "2026-11-26T12:00:00.000Z", "newTransactions": 3 });
    s.store
        .events()
        .append(s.partner, EVENT, &payload, s.clock.now())
        .await
        .unwrap()
        .id
}

async fn wait_for(arrivals: &Arrivals, n: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while arrivals.lock().unwrap().len() < n {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

async fn throughput(n: usize, config: DeliveryConfig) -> f64 {
    let s = setup(false).await;
    for i in 0..n {
        append(&s, i).await;
    }
    let started = Instant::now();
    let deliverer = start_deliverer(&s, config);
    assert!(
        wait_for(&s.fast, n, Duration::from_secs(300)).await,
        "not all delivered"
    );
    let elapsed = started.elapsed();
    deliverer.abort();
    n as f64 / elapsed.as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Returns (p50, p99, max) in ms of commit → arrival, the rate achieved, and how many
/// events the hanging receiver was sent.
async fn latency(with_hanging: bool, rate: u32, seconds: u32) -> (f64, f64, f64, f64, usize) {
    let s = setup(with_hanging).await;
    let deliverer = start_deliverer(&s, DeliveryConfig::default());
    let n = (rate * seconds) as usize;
    let period = Duration::from_secs(1) / rate;
    let mut committed = HashMap::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        tokio::time::sleep_until((started + period * i as u32).into()).await;
        let id = append(&s, i).await;
        committed.insert(id, Instant::now());
    }
    let achieved = n as f64 / started.elapsed().as_secs_f64();
    assert!(
        wait_for(&s.fast, n, Duration::from_secs(120)).await,
        "not all delivered"
    );
    deliverer.abort();
    let arrivals = s.fast.lock().unwrap().clone();
    let mut ms: Vec<f64> = committed
        .iter()
        .map(|(id, at)| arrivals[id].saturating_duration_since(*at).as_secs_f64() * 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    let hung = s.hanging.lock().unwrap().len();
    (
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        *ms.last().unwrap(),
        achieved,
        hung,
    )
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    for per_subscription in [8, 32] {
        // One partner's one receiver: its partner's share must not be what limits it.
        let config = DeliveryConfig {
            per_subscription,
            per_partner: per_subscription.max(DeliveryConfig::default().per_partner),
            ..DeliveryConfig::default()
        };
        let rate = throughput(5_000, config).await;
        println!(
            "| webhook throughput (5,000 queued events, one receiver, {per_subscription} in flight) | {rate:.0} deliveries/s |"
        );
    }
    let (p50, p99, max, achieved, _) = latency(false, 500, 10).await;
    println!(
        "| commit → first attempt at {achieved:.0} events/s | p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms |"
    );
    let (p50, p99, max, achieved, hung) = latency(true, 500, 10).await;
    println!(
        "| the same, another subscription's receiver hanging ({hung} attempts sent to it, all timing out) | p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms (at {achieved:.0} events/s) |"
    );
}
