//! The metrics freshet exports, in the Prometheus text format (`GET /metrics`), through the
//! `metrics` facade and its Prometheus exporter. Every metric's name, labels and meaning are
//! here: the rest of the code calls these functions, never the macros with a name of its own.
//!
//! Counters and histograms are this process's since it started; the queue gauges are read
//! from the database at each scrape (they are shared by every process on it).

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::{Gauges, Store};

/// Latencies from a millisecond to a minute (HTTP handlers, bank calls, webhook attempts).
const SECONDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];
/// How many fetches one engine commit ends.
const BATCH: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use (by `main`, or the first test that scrapes):
/// there is one per process, as there is one registry for Prometheus to scrape.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = match builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("freshet_engine_commit_batch_size".to_owned()),
                    &BATCH,
                )
            }) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "metric buckets refused: histograms export as summaries");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was installed already: /metrics shows only ours");
        }
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(
        "freshet_http_requests_total",
        "HTTP requests answered, by route (the matched pattern), method and status"
    );
    describe_histogram!(
        "freshet_http_request_duration_seconds",
        "Time to the response's head, by route and method"
    );
    describe_counter!(
        "freshet_refresh_decisions_total",
        "Per-account decisions of on-demand refreshes, by outcome (TRIGGERED, SKIPPED) and reason"
    );
    describe_counter!(
        "freshet_jobs_created_total",
        "Refresh jobs created, by kind (ON_DEMAND, SCHEDULED, INITIAL)"
    );
    describe_gauge!(
        "freshet_job_items_open",
        "Job items not ended yet, by state (QUEUED, RUNNING), in the database"
    );
    describe_counter!(
        "freshet_bank_fetches_total",
        "Account fetches from banks, by bank and outcome (the error code when it failed)"
    );
    describe_histogram!(
        "freshet_bank_fetch_duration_seconds",
        "One account's fetch (transactions with retries, and balance), by bank"
    );
    describe_counter!(
        "freshet_webhook_attempts_total",
        "Webhook delivery attempts, by outcome (SUCCEEDED, FAILED) and error kind"
    );
    describe_histogram!(
        "freshet_webhook_attempt_duration_seconds",
        "One delivery attempt, request to response or failure"
    );
    describe_gauge!(
        "freshet_webhook_deliveries_due",
        "Deliveries due now (the deliverer's queue), in the database"
    );
    describe_gauge!(
        "freshet_webhook_oldest_due_age_seconds",
        "How long the oldest due delivery has waited since it came due"
    );
    describe_gauge!(
        "freshet_sse_clients",
        "Server-sent event streams open (partner API and portal)"
    );
    describe_histogram!(
        "freshet_db_write_wait_seconds",
        "Wait for a serial write: SQLite's one writer, or PostgreSQL's serial advisory lock"
    );
    describe_histogram!(
        "freshet_engine_commit_batch_size",
        "Fetches ended per engine commit (the engine commits what ended while the last one ran)"
    );
}

/// One HTTP request answered.
pub fn http_request(route: String, method: &'static str, status: u16, elapsed: Duration) {
    histogram!("freshet_http_request_duration_seconds",
        "route" => route.clone(), "method" => method)
    .record(elapsed.as_secs_f64());
    counter!("freshet_http_requests_total",
        "route" => route, "method" => method, "status" => status.to_string())
    .increment(1);
}

/// A request method as a label: the standard ones by name, any other `OTHER` (a client
/// inventing methods must not invent series).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// One account's decision in an on-demand refresh (`reason` empty when triggered).
pub fn refresh_decision(outcome: &'static str, reason: &'static str) {
    counter!("freshet_refresh_decisions_total", "outcome" => outcome, "reason" => reason)
        .increment(1);
}

/// Refresh jobs committed.
pub fn jobs_created(kind: &'static str, n: usize) {
    counter!("freshet_jobs_created_total", "kind" => kind).increment(n as u64);
}

/// One account fetched from `bank` (`outcome`: `SUCCEEDED` or the failure's code).
pub fn bank_fetch(bank: &str, outcome: &'static str, elapsed: Duration) {
    counter!("freshet_bank_fetches_total", "bank" => bank.to_owned(), "outcome" => outcome)
        .increment(1);
    histogram!("freshet_bank_fetch_duration_seconds", "bank" => bank.to_owned())
        .record(elapsed.as_secs_f64());
}

/// One webhook attempt (`error`: the failure's kind, empty on success or an HTTP answer).
pub fn webhook_attempt(outcome: &'static str, error: &'static str, elapsed: Duration) {
    counter!("freshet_webhook_attempts_total", "outcome" => outcome, "error" => error).increment(1);
    histogram!("freshet_webhook_attempt_duration_seconds").record(elapsed.as_secs_f64());
}

/// The writer waited `elapsed` for its turn.
pub fn db_write_wait(elapsed: Duration) {
    histogram!("freshet_db_write_wait_seconds").record(elapsed.as_secs_f64());
}

/// One engine commit ended `n` fetches.
pub fn commit_batch(n: usize) {
    #[allow(clippy::cast_precision_loss)] // a batch is at most a few thousand
    histogram!("freshet_engine_commit_batch_size").record(n as f64);
}

/// An open event stream: counted while this lives.
#[derive(Debug)]
pub struct SseClient(());

impl SseClient {
    /// Counts a stream that opens now.
    pub fn open() -> Self {
        gauge!("freshet_sse_clients").increment(1.0);
        Self(())
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        gauge!("freshet_sse_clients").decrement(1.0);
    }
}

/// The text exposition: the queue gauges read now, then everything.
pub async fn render(store: &Store, now: chrono::DateTime<chrono::Utc>) -> String {
    let handle = handle();
    match store.gauges(now).await {
        Ok(Gauges {
            items_queued,
            items_running,
            deliveries_due,
            oldest_due_ms,
        }) => {
            #[allow(clippy::cast_precision_loss)] // counts and ages far below 2^52
            {
                gauge!("freshet_job_items_open", "state" => "QUEUED").set(items_queued as f64);
                gauge!("freshet_job_items_open", "state" => "RUNNING").set(items_running as f64);
                gauge!("freshet_webhook_deliveries_due").set(deliveries_due as f64);
                gauge!("freshet_webhook_oldest_due_age_seconds").set(oldest_due_ms as f64 / 1000.0);
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading the queue gauges failed"),
    }
    handle.run_upkeep();
    handle.render()
}
