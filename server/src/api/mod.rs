//! The partner API (`/v1`) and the sandbox API (`/sandbox/v1`): thin handlers over the
//! store and the refresh service. Contract: `shared/spec/api.md`.

mod error;
mod extract;
mod problems;
mod refresh;
mod sandbox;
mod transactions;
mod users;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use freshet_rules::RefreshPolicy;
use sha2::{Digest, Sha256};

pub use error::{ApiError, REQUEST_ID};

use crate::clock::Clock;
use crate::model::Partner;
use crate::refresh::RefreshService;
use crate::store::{Store, StoreError};

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

/// The API's routes, for state `S` holding an `Arc<Api>`.
pub fn routes<S>(sandbox: bool) -> Router<S>
where
    Arc<Api>: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    let v1 = Router::new()
        .route("/users", post(users::create))
        .route("/users/{user_id}", get(users::get))
        .route("/users/{user_id}/accounts", get(users::accounts))
        .route("/users/{user_id}/transactions", get(transactions::of_user))
        .route(
            "/users/{user_id}/accounts/{account_id}/transactions",
            get(transactions::of_account),
        )
        .route("/users/{user_id}/accounts-refresh", post(refresh::trigger))
        .route(
            "/users/{user_id}/accounts-refresh/{job_id}",
            get(refresh::job),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    let mut router = Router::new()
        .nest("/v1", v1)
        .route("/problems/{slug}", get(problems::describe));
    if sandbox {
        let sandbox = Router::new()
            .route("/users", post(sandbox::create_user))
            .route("/users/{user_id}/accounts", post(sandbox::connect_accounts))
            .route("/clock", get(sandbox::clock).post(sandbox::set_clock))
            .route("/bank/faults", post(sandbox::faults))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed);
        router = router.nest("/sandbox/v1", sandbox);
    } else {
        router = router.route("/sandbox/{*rest}", axum::routing::any(not_found));
    }
    router
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
