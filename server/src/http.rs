//! The HTTP surface: health, the portal (SSR + server functions), and its static assets.

use std::sync::Arc;

use app::services::Services;
use app::{App, shell};
use axum::Router;
use axum::extract::FromRef;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::services::ServeDir;

use crate::api::{self, ApiError};
use crate::ops::Health;
use crate::ops::routes::{MetricsAccess, OpsState};
use crate::portal::Portal;
use crate::portal::session::{self, TrustedClientHeader};
use crate::services::Services as UseCases;

/// Everything a request handler may need, built once at start-up.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// Where the portal's assets are and how the pages name them.
    pub leptos: LeptosOptions,
    /// What the portal's server functions call.
    pub portal: Services,
    /// The use cases both fronts call.
    pub services: Arc<UseCases>,
    /// Where a trusted proxy puts the client's address (else: the connection's peer).
    pub trusted_client_header: TrustedClientHeader,
    /// What `/readyz` checks beyond the database: the background loops, shutdown.
    pub health: Health,
    /// Who may read `/metrics` on this listener.
    pub metrics: MetricsAccess,
}

impl FromRef<AppState> for OpsState {
    fn from_ref(state: &AppState) -> Self {
        Self {
            services: Arc::clone(&state.services),
            health: state.health.clone(),
            metrics: state.metrics.clone(),
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("leptos", &self.leptos)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The state of a server: the use cases, and the portal's services over them.
    pub fn new(site_root: &std::path::Path, services: Arc<UseCases>) -> Self {
        Self {
            leptos: Self::leptos_options(site_root),
            portal: Portal::services(Arc::clone(&services)),
            services,
            trusted_client_header: TrustedClientHeader::default(),
            health: Health::default(),
            metrics: MetricsAccess::default(),
        }
    }

    /// The same state, its readiness watching `health`'s loops.
    pub fn with_health(self, health: Health) -> Self {
        Self { health, ..self }
    }

    /// The same state, serving `/metrics` to holders of `token` (`--metrics-token`).
    pub fn with_metrics_token(self, token: Option<&str>) -> Self {
        Self {
            metrics: token.map(MetricsAccess::token).unwrap_or_default(),
            ..self
        }
    }

    /// The same state, reading the client's address from `header` (set by a trusted proxy).
    pub fn with_trusted_client_header(self, header: Option<String>) -> Self {
        Self {
            trusted_client_header: TrustedClientHeader(header.map(Into::into)),
            ..self
        }
    }

    /// Leptos options for the portal built into `site_root` (`pkg/freshet.js`, `pkg/freshet_bg.wasm`,
    /// `pkg/freshet.css`), set here rather than read from compile-time variables.
    pub fn leptos_options(site_root: &std::path::Path) -> LeptosOptions {
        LeptosOptions::builder()
            .output_name(bundle_name(site_root))
            .site_root(site_root.to_string_lossy().into_owned())
            .site_pkg_dir("pkg")
            .build()
    }
}

/// The name the build gave the portal's bundle: `freshet-<content hash>` (see
/// `scripts/lib.sh`), or `freshet` when no hashed bundle is there.
fn bundle_name(site_root: &std::path::Path) -> String {
    std::fs::read_dir(site_root.join("pkg"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .find_map(|name| {
            name.strip_suffix(".js")
                .filter(|stem| stem.starts_with("freshet-"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "freshet".to_owned())
}

/// Hashed bundle files never change: a year. Anything else (the stylesheet): revalidate.
async fn cache_control(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let immutable = req
        .uri()
        .path()
        .rsplit('/')
        .next()
        .is_some_and(|name| name.starts_with("freshet-"));
    let mut response = next.run(req).await;
    let value = if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static(value),
    );
    response
}

/// Every portal response: no framing by other sites (clickjacking), no sniffing, no
/// referrer beyond this site, and no copy kept by any cache — pages show partners' data,
/// and some show a secret once. The page's Content-Security-Policy, which needs the
/// page's nonce, is the shell's (`app::shell`).
async fn portal_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The site's icon. Browsers ask for `/favicon.ico` on every page that names none (the
/// journey's pages, the problem pages); an SVG answers there too.
async fn favicon() -> impl IntoResponse {
    (
        [
            (axum::http::header::CONTENT_TYPE, "image/svg+xml"),
            (axum::http::header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../style/favicon.svg"),
    )
}

/// The most a portal request body may hold: its forms and server-function calls are small.
const PORTAL_BODY_LIMIT: usize = 64 * 1024;

/// Server functions answer every failure 500, also the caller's own (a missing or
/// malformed argument, a body too large): those become 400 and 413, with the same body
/// (the message the page shows). Failures of the functions themselves set their own
/// status (`app::services::to_client`).
async fn server_fn_statuses(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::StatusCode;
    let response = next.run(req).await;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !response.headers().contains_key("serverfnerror")
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, PORTAL_BODY_LIMIT).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let kind = bytes.split(|b| *b == b'|').next().unwrap_or_default();
    if matches!(
        kind,
        b"Args" | b"MissingArg" | b"Deserialization" | b"Request"
    ) {
        let too_large = bytes
            .windows(b"length limit exceeded".len())
            .any(|w| w == b"length limit exceeded");
        parts.status = if too_large {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
    }
    axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// The portal's routes, generated once per process. Leptos numbers routes from a global
/// counter while it generates the list; generating it again while another router renders
/// a page (as parallel tests did) made that render wait forever.
fn portal_routes() -> Vec<leptos_axum::AxumRouteListing> {
    static ROUTES: std::sync::OnceLock<Vec<leptos_axum::AxumRouteListing>> =
        std::sync::OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// The whole server as one router, for `main` and for tests.
pub fn router(state: AppState) -> Router {
    let options = state.leptos.clone();
    let portal: Services = state.portal.clone();
    let pkg_dir =
        std::path::Path::new(options.site_root.as_ref()).join(options.site_pkg_dir.as_ref());
    // Every page and server function sits behind the session gate.
    let portal_pages = Router::new()
        .leptos_routes_with_context(
            &state,
            portal_routes(),
            move || provide_context(portal.clone()),
            {
                let options = options.clone();
                move || shell(options.clone())
            },
        )
        .route("/portal/events", get(session::events))
        .route("/auth/sign-out", post(session::sign_out))
        .route("/auth/sign-in", post(session::sign_in))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.services),
            session::gate,
        ))
        .layer(axum::middleware::from_fn(server_fn_statuses))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            PORTAL_BODY_LIMIT,
        ))
        .layer(axum::middleware::from_fn(portal_headers));
    // The recorder is in place before the first request is counted.
    crate::ops::metrics::handle();
    Router::new()
        .merge(crate::ops::routes::routes::<AppState>())
        .route("/favicon.svg", get(favicon))
        .route("/favicon.ico", get(favicon))
        .merge(api::routes::<AppState>(state.services.sandbox))
        .merge(crate::journey::routes::<AppState>())
        .merge(portal_pages)
        .nest_service(
            "/pkg",
            Router::new()
                .fallback_service(
                    ServeDir::new(pkg_dir)
                        .precompressed_br()
                        .precompressed_gzip(),
                )
                .layer(axum::middleware::from_fn(cache_control)),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        // A panic is a bug; the client still gets a problem body, never a dropped connection.
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::Internal(
                "a handler panicked".to_owned(),
            ))
        }))
        // Outermost: the request's id, span, access-log line and metrics cover all of it.
        .layer(axum::middleware::from_fn(crate::ops::routes::observe))
        .with_state(state)
}
