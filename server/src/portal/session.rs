//! Portal sessions: sign-in (argon2id, rate-limited), sign-out, and the gate in front of
//! every page and server function, which finds the signed-in user from the session cookie
//! and hands it to the app as a request extension ([`Viewer`]). The cookie is HttpOnly and
//! SameSite=Lax, so no script reads it and no other site's form posts with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::model::Viewer;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::TimeDelta;

use crate::api::Api;

/// The session cookie's name.
pub const COOKIE: &str = "freshet_session";
/// How long a session lasts.
const TTL: TimeDelta = TimeDelta::hours(12);
/// Failed sign-ins allowed per email within [`WINDOW`].
const MAX_FAILURES: usize = 5;
const WINDOW: Duration = Duration::from_secs(15 * 60);

/// Counts failed sign-ins per email, to slow down password guessing.
#[derive(Debug, Default)]
pub struct SignInLimiter {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl SignInLimiter {
    fn recent(&self, email: &str, now: Instant) -> usize {
        self.failures.lock().map_or(0, |mut map| {
            let list = map.entry(email.to_owned()).or_default();
            list.retain(|at| now.duration_since(*at) < WINDOW);
            list.len()
        })
    }

    fn failed(&self, email: &str, now: Instant) {
        if let Ok(mut map) = self.failures.lock() {
            // Bounded memory under a spray of emails: forget everything rather than grow.
            if map.len() > 100_000 {
                map.clear();
            }
            map.entry(email.to_owned()).or_default().push(now);
        }
    }

    fn succeeded(&self, email: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(email);
        }
    }

    /// Whether `email` may try again now.
    pub fn allows(&self, email: &str) -> bool {
        self.recent(email, Instant::now()) < MAX_FAILURES
    }
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Pages and server functions need a session; the sign-in page and its POST do not.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/sign-in" | "/auth/sign-in" | "/auth/sign-out" | "/favicon.ico"
    )
}

/// Puts the signed-in user into the request, or sends the visitor to sign in (server
/// functions answer 401: a script called them, not a person).
pub async fn gate(State(api): State<Arc<Api>>, mut req: Request, next: Next) -> Response {
    let viewer = match session_token(req.headers()) {
        Some(token) => match api.store.session(&token, api.clock.now()).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "reading a portal session");
                return (StatusCode::SERVICE_UNAVAILABLE, "try again in a moment").into_response();
            }
        },
        None => None,
    };
    let path = req.uri().path().to_owned();
    match viewer {
        Some(user) => {
            if path == "/sign-in" {
                return redirect("/");
            }
            req.extensions_mut().insert(Viewer {
                email: user.email,
                partner_id: user.partner_id.to_string(),
                partner_name: user.partner_name,
            });
            next.run(req).await
        }
        None if is_public(&path) => next.run(req).await,
        None if path.starts_with("/api/") || path.starts_with("/portal/") => {
            (StatusCode::UNAUTHORIZED, app::services::NOT_SIGNED_IN).into_response()
        }
        None => {
            let target = req
                .uri()
                .path_and_query()
                .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
            redirect(&format!("/sign-in?next={}", encode(&target)))
        }
    }
}

/// `POST /auth/sign-in` (a form: `email`, `password`, `next`).
pub async fn sign_in(
    State((api, limiter)): State<(Arc<Api>, Arc<SignInLimiter>)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut email = String::new();
    let mut password = String::new();
    let mut next = String::new();
    for (name, value) in form_urlencoded::parse(&body) {
        match name.as_ref() {
            "email" => email = value.trim().to_owned(),
            "password" => password = value.into_owned(),
            "next" => next = value.into_owned(),
            _ => {}
        }
    }
    let key = email.to_lowercase();
    let again = |error: &str| {
        redirect(&format!(
            "/sign-in?error={error}&email={}&next={}",
            encode(&email),
            encode(&next)
        ))
    };
    if !limiter.allows(&key) {
        return again("throttled");
    }
    let user = match api.store.authenticate(&email, &password).await {
        Ok(user) => user,
        Err(e) => {
            tracing::error!(error = %e, "signing in");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again in a moment").into_response();
        }
    };
    let Some(user) = user else {
        limiter.failed(&key, Instant::now());
        return again("invalid");
    };
    limiter.succeeded(&key);
    let token = match api.store.create_session(user, TTL, api.clock.now()).await {
        Ok(token) => token,
        Err(e) => {
            tracing::error!(error = %e, "opening a portal session");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again in a moment").into_response();
        }
    };
    // Only our own paths: `next` must not send anyone to another site.
    let to = if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") {
        next.as_str()
    } else {
        "/"
    };
    let mut response = redirect(to);
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        TTL.num_seconds(),
        if secure { "; Secure" } else { "" }
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /auth/sign-out`.
pub async fn sign_out(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    if let Some(token) = session_token(&headers)
        && let Err(e) = api.store.end_session(&token, api.clock.now()).await
    {
        tracing::error!(error = %e, "ending a portal session");
    }
    let mut response = redirect("/sign-in?signed_out=1");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("freshet_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    response
}

/// `GET /portal/events`: the signed-in user's partner's events, as the API streams them.
pub async fn events(
    State(api): State<Arc<Api>>,
    axum::Extension(viewer): axum::Extension<Viewer>,
    headers: HeaderMap,
) -> Response {
    let Ok(partner) = uuid::Uuid::parse_str(&viewer.partner_id) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match crate::api::events::start_after(&api.store, partner, &headers).await {
        Ok(after) => crate::api::events::partner_stream(&api.store, partner, after).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_within_the_window_lock_the_email_until_it_passes() {
        let limiter = SignInLimiter::default();
        let start = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(limiter.recent("a@b.c", start) < MAX_FAILURES);
            limiter.failed("a@b.c", start);
        }
        assert_eq!(limiter.recent("a@b.c", start), MAX_FAILURES);
        assert_eq!(limiter.recent("other@b.c", start), 0, "per email");
        assert_eq!(
            limiter.recent("a@b.c", start + WINDOW),
            0,
            "the window passed"
        );
        limiter.failed("x@y.z", start);
        limiter.succeeded("x@y.z");
        assert_eq!(
            limiter.recent("x@y.z", start),
            0,
            "a success clears the count"
        );
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; freshet_session=abc; b=2"),
        );
        assert_eq!(session_token(&headers).as_deref(), Some("abc"));
        assert_eq!(session_token(&HeaderMap::new()), None);
    }
}
