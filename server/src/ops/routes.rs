//! The operator's routes — `/healthz`, `/readyz`, `/metrics` — and the middleware that
//! gives every request its id, its log span, its access-log line and its metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{FromRef, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::Health;
use crate::api::REQUEST_ID;
use crate::services::Services;

/// Who may read `/metrics` on the main listener: nobody (the default: serve them on
/// `--metrics-bind` instead), or whoever sends `Authorization: Bearer <token>`.
#[derive(Clone, Debug, Default)]
pub struct MetricsAccess(Option<Arc<[u8; 32]>>);

impl MetricsAccess {
    /// Access with this bearer token (kept as its digest only).
    pub fn token(token: &str) -> Self {
        Self(Some(Arc::new(Sha256::digest(token.as_bytes()).into())))
    }

    fn admits(&self, headers: &HeaderMap) -> Option<bool> {
        let want = self.0.as_ref()?;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        // Digests compared, so the comparison's time says nothing about the token.
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        Some(given == **want)
    }
}

/// What the operator's routes read.
#[derive(Clone, Debug, FromRef)]
pub struct OpsState {
    pub services: Arc<Services>,
    pub health: Health,
    pub metrics: MetricsAccess,
}

/// `/healthz`, `/readyz` and (when a token admits it) `/metrics`, for the main router.
pub fn routes<S>() -> Router<S>
where
    OpsState: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz::<S>))
        .route("/metrics", get(metrics_with_token::<S>))
}

/// The router of `--metrics-bind`: `/metrics` without a token (the address is the access
/// control), and the health routes beside it for probes on the same port.
pub fn metrics_listener(state: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz::<OpsState>))
        .route("/metrics", get(metrics::<OpsState>))
        .with_state(state)
}

async fn readyz<S>(State(state): State<S>) -> Response
where
    OpsState: FromRef<S>,
{
    let ops = OpsState::from_ref(&state);
    let problems = ops.health.problems(&ops.services.store).await;
    if problems.is_empty() {
        return (
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(serde_json::json!({ "status": "ready" })),
        )
            .into_response();
    }
    tracing::warn!(?problems, "not ready");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::CONTENT_TYPE, "application/problem+json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        serde_json::json!({
            "type": "/problems/not-ready",
            "title": "Service Unavailable",
            "status": 503,
            "code": "NOT_READY",
            "detail": problems.join("; "),
            "reasons": problems,
        })
        .to_string(),
    )
        .into_response()
}

async fn metrics<S>(State(state): State<S>) -> Response
where
    OpsState: FromRef<S>,
{
    let ops = OpsState::from_ref(&state);
    let text = super::metrics::render(&ops.services.store, ops.services.clock.now()).await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn metrics_with_token<S>(State(state): State<S>, headers: HeaderMap) -> Response
where
    OpsState: FromRef<S>,
    S: Send + Sync,
{
    match OpsState::from_ref(&state).metrics.admits(&headers) {
        None => crate::api::ApiError::NotFound(
            "ROUTE_NOT_FOUND",
            "metrics are not served here (see --metrics-bind and --metrics-token)",
        )
        .into_response(),
        Some(false) => crate::api::ApiError::Unauthorized.into_response(),
        Some(true) => metrics(State(state)).await,
    }
}

/// Every request: an id (the caller's `x-request-id` when it is sane, else a new one)
/// echoed in the response and kept for error bodies; a `request` span that every log line
/// of the request carries (`partner_id` is filled in once the key is known); one access-log
/// line (target `freshet::access`; probes and assets are not logged); and the HTTP metrics,
/// by the matched route pattern (never the raw path: ids would make a series each).
pub async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = req.method().clone();
    let unlogged = quiet(&route, req.uri().path());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        route = %route,
        partner_id = tracing::field::Empty,
    );
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(req))
        .instrument(span.clone())
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    super::metrics::http_request(
        route,
        super::metrics::method_label(&method),
        status,
        elapsed,
    );
    if !unlogged {
        span.in_scope(|| {
            tracing::info!(
                target: "freshet::access",
                status,
                latency_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                "answered"
            );
        });
    }
    response
}

/// Requests not worth a log line each: probes, scrapes, static assets (the portal's bundle
/// is a nested service, which axum gives no matched route).
fn quiet(route: &str, path: &str) -> bool {
    matches!(
        route,
        "/healthz" | "/readyz" | "/metrics" | "/favicon.ico" | "/favicon.svg"
    ) || path.starts_with("/pkg/")
}

/// Records the authenticated partner on the request's span.
pub fn record_partner(partner: uuid::Uuid) {
    tracing::Span::current().record("partner_id", tracing::field::display(partner));
}
