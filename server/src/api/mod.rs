//! The partner API (`/v1`) and the sandbox API (`/sandbox/v1`): thin handlers over the
//! store and the refresh service. Contract: `shared/spec/api.md`.

mod error;
pub(crate) mod events;
mod extract;
pub mod openapi;
mod problems;
mod refresh;
mod sandbox;
mod transactions;
mod users;
pub(crate) mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{any, get};
use freshet_rules::RefreshPolicy;
use sha2::{Digest, Sha256};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, REQUEST_ID};

use crate::bank::sandbox::SandboxBank;
use crate::clock::Clock;
use crate::model::Partner;
use crate::refresh::RefreshService;
use crate::store::{Store, StoreError};
use crate::webhooks::TargetPolicy;

/// What the API's handlers share.
#[derive(Debug)]
pub struct Api {
    /// The database.
    pub store: Store,
    /// The refresh decision, committed in groups.
    pub refresh: RefreshService,
    /// The server's clock (shiftable in the sandbox).
    pub clock: Arc<Clock>,
    /// The refresh interval.
    pub policy: RefreshPolicy,
    /// Whether `/sandbox/v1` is served.
    pub sandbox: bool,
    /// Partners by API key, so that authentication costs no query after the first request.
    pub partners: PartnerCache,
    /// The sandbox bank served beside a sandbox server (its faults are set through the API).
    pub sandbox_bank: Option<Arc<SandboxBank>>,
    /// Where webhook targets may point (the SSRF guard).
    pub webhook_targets: TargetPolicy,
}

impl Api {
    /// The API's services over `store`, starting the refresh writer on the current runtime.
    pub fn new(store: Store, clock: Arc<Clock>, policy: RefreshPolicy, sandbox: bool) -> Self {
        Self {
            refresh: RefreshService::start(store.clone(), Arc::clone(&clock), policy),
            store,
            clock,
            policy,
            sandbox,
            partners: PartnerCache::default(),
            sandbox_bank: None,
            webhook_targets: TargetPolicy::secure(),
        }
    }

    /// The same services with another webhook target policy (`--insecure-webhook-targets`).
    pub fn with_webhook_targets(self, webhook_targets: TargetPolicy) -> Self {
        Self {
            webhook_targets,
            ..self
        }
    }

    /// The same services, with the sandbox bank whose faults `/sandbox/v1/bank/faults` sets.
    pub fn with_sandbox_bank(self, bank: Arc<SandboxBank>) -> Self {
        Self {
            sandbox_bank: Some(bank),
            ..self
        }
    }
}

/// Known API keys (by hash) and their partners. Keys are only ever added here; revocation
/// (which comes with the portal's key management) must call [`PartnerCache::forget_all`].
#[derive(Debug, Default)]
pub struct PartnerCache {
    by_hash: RwLock<HashMap<[u8; 32], Partner>>,
}

impl PartnerCache {
    /// The partner holding `key`, from memory or the database.
    pub async fn by_key(&self, store: &Store, key: &str) -> Result<Option<Partner>, StoreError> {
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        if let Some(p) = self.by_hash.read().ok().and_then(|m| m.get(&hash).cloned()) {
            return Ok(Some(p));
        }
        let partner = store.partner_by_key(key).await?;
        if let (Some(p), Ok(mut m)) = (&partner, self.by_hash.write()) {
            m.insert(hash, p.clone());
        }
        Ok(partner)
    }

    /// Drops every cached key (after a revocation).
    pub fn forget_all(&self) {
        if let Ok(mut m) = self.by_hash.write() {
            m.clear();
        }
    }
}

/// The API's routes, for state `S` holding an `Arc<Api>`, and `GET /v1/openapi.json`
/// generated from the very same route list.
pub fn routes<S>(sandbox: bool) -> Router<S>
where
    Arc<Api>: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    let mut api = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(users::create))
        .routes(routes!(users::get))
        .routes(routes!(users::accounts))
        .routes(routes!(transactions::of_user))
        .routes(routes!(transactions::of_account))
        .routes(routes!(refresh::trigger))
        .routes(routes!(refresh::job))
        .routes(routes!(events::stream))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::test))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::redeliver))
        .routes(routes!(webhooks::recover));
    if sandbox {
        api = api
            .routes(routes!(sandbox::create_user))
            .routes(routes!(sandbox::connect_accounts))
            .routes(routes!(sandbox::clock, sandbox::set_clock))
            .routes(routes!(sandbox::faults));
    }
    let (router, doc) = api.split_for_parts();
    let doc: Arc<str> = doc.to_pretty_json().unwrap_or_default().into();
    router
        .route(
            "/v1/openapi.json",
            get(move || {
                let doc = Arc::clone(&doc);
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        doc.to_string(),
                    )
                }
            }),
        )
        .route("/v1/{*rest}", any(not_found))
        .route("/sandbox/{*rest}", any(not_found))
        .route("/problems/{slug}", get(problems::describe))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .layer(axum::middleware::from_fn(request_id))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("ROUTE_NOT_FOUND", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Gives every request an id (the caller's `x-request-id` when it is sane), echoes it in
/// the response, and makes it available to error bodies and logs.
async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let mut response = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
