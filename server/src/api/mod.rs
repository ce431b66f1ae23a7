//! The partner API (`/v1`) and the sandbox API (`/sandbox/v1`): thin handlers that read the
//! request, call one use case of `services`, and render its result as JSON or its error as
//! problem+json. Contract: `shared/spec/api.md`.

mod banks;
mod error;
mod events;
mod exact;
mod extract;
pub mod openapi;
mod problems;
mod refresh;
mod sandbox;
mod sessions;
mod transactions;
mod users;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::routing::{any, get};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, REQUEST_ID};

use crate::services::Services;

/// The API's routes, for state `S` holding an `Arc<Services>`, and `GET /v1/openapi.json`
/// generated from the very same route list.
pub fn routes<S>(sandbox: bool) -> Router<S>
where
    Arc<Services>: FromRef<S>,
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
        .routes(routes!(webhooks::recover))
        .routes(routes!(banks::list))
        .routes(routes!(sessions::create))
        .routes(routes!(sessions::complete))
        .routes(routes!(sessions::get));
    if sandbox {
        api = api
            .routes(routes!(sandbox::create_user))
            .routes(routes!(sandbox::connect_accounts))
            .routes(routes!(sandbox::clock, sandbox::set_clock))
            .routes(routes!(sandbox::faults));
    }
    let (router, mut doc) = api.split_for_parts();
    openapi::document_rate_limit(&mut doc);
    let mut doc = serde_json::to_value(&doc).unwrap_or_default();
    exact::make_exact(
        &mut doc,
        exact::Leniency {
            loopback_redirects: sandbox,
        },
    );
    let doc: Arc<str> = serde_json::to_string_pretty(&doc)
        .unwrap_or_default()
        .into();
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
}

async fn not_found() -> ApiError {
    ApiError::NotFound("ROUTE_NOT_FOUND", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
