//! Portal sessions: sign-in (argon2id, rate-limited), sign-out, and the gate in front of
//! every page and server function, which finds the signed-in user from the session cookie
//! and hands it to the app as a request extension ([`Viewer`]). Thin: the checks are
//! `services::sessions`'. The cookie is HttpOnly and
//! SameSite=Lax, so no script reads it and no other site's form posts with it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use app::model::Viewer;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::services::Services;
use crate::services::events::{Grant, Resume, resume_from};
use crate::services::sessions::{SignIn, TTL, csrf_token};

/// The session cookie's name.
pub const COOKIE: &str = "freshet_session";
/// The cookie the sign-in form's token must match (sent only to the form's target).
pub const SIGN_IN_COOKIE: &str = "freshet_sign_in";
/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";

fn cookie(headers: &HeaderMap, wanted: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    cookie(headers, COOKIE)
}

/// Whether the body is JSON: a browser sends that cross-site only after a CORS preflight,
/// which this server never grants — so no other site's page can make one. The portal's
/// live island calls its server functions with JSON; plain forms carry the token.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// The largest form body the gate reads to find its token.
const GATE_FORM_LIMIT: usize = 64 * 1024;

/// The value of form field `name` in a urlencoded body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A request whose form carries `expected` in its token field, rebuilt to go on; else the
/// refusal (403, or 413 for a body too large to read).
async fn with_form_token(req: Request, expected: &str) -> Result<Request, Response> {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, GATE_FORM_LIMIT).await else {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, "the form is too large").into_response());
    };
    match form_field(&bytes, CSRF_FIELD) {
        Some(sent) if crate::services::sessions::same_token(&sent, expected) => {
            Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
        }
        _ => Err(refused(
            "This form has expired. Go back, reload the page and try again.",
        )),
    }
}

fn refused(why: &'static str) -> Response {
    (StatusCode::FORBIDDEN, why).into_response()
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

/// Whether a browser says this request comes from another site: `Sec-Fetch-Site` other than
/// `same-origin`, or an `Origin` (`null` included) that is not this server's host. A request
/// with neither header is not a browser's cross-site request (browsers send `Origin` with
/// every POST), so it passes.
fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or(""));
    if text(header::HeaderName::from_static("sec-fetch-site")).is_some_and(|s| s != "same-origin") {
        return true;
    }
    match text(header::ORIGIN) {
        None => false,
        Some(origin) => {
            let authority = origin
                .split_once("://")
                .map(|(_, rest)| rest.trim_end_matches('/'));
            authority.is_none() || authority != text(header::HOST)
        }
    }
}

/// Where a sign-in may send the visitor on: a path of this site, read as a browser reads
/// it. Anything else — another host, `//host`, a backslash, a tab or other control
/// character that browsers strip before resolving (`/\t/evil.example`) — sends them home.
fn same_site_path(next: &str) -> &str {
    let plain = next.starts_with('/')
        && !next.starts_with("//")
        && !next
            .chars()
            .any(|c| c == '\\' || c.is_control() || c.is_whitespace());
    let stays = url::Url::parse("http://portal.invalid/")
        .and_then(|base| base.join(next))
        .is_ok_and(|to| to.host_str() == Some("portal.invalid") && to.port().is_none());
    if plain && stays { next } else { "/" }
}

/// Puts the signed-in user into the request, or sends the visitor to sign in (server
/// functions answer 401: a script called them, not a person). Refuses a state-changing
/// request that a browser says comes from another site (CSRF, login CSRF included), before
/// anything else.
pub async fn gate(State(services): State<Arc<Services>>, mut req: Request, next: Next) -> Response {
    let reads_only = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    if !reads_only && cross_site(req.headers()) {
        return refused("This request came from another site and was refused.");
    }
    let viewer = match session_token(req.headers()) {
        Some(token) => match services.session(&token).await {
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
            if let Err(throttled) = services.admit_partner(user.partner_id) {
                return too_many(&throttled);
            }
            let csrf = csrf_token(&token_of(&req));
            // A state-changing request of a session carries its token (or is JSON).
            if !reads_only && !is_json(req.headers()) {
                match with_form_token(req, &csrf).await {
                    Ok(checked) => req = checked,
                    Err(refusal) => return refusal,
                }
            }
            crate::ops::routes::record_partner(user.partner_id);
            req.extensions_mut().insert(Viewer {
                email: user.email,
                partner_id: user.partner_id.to_string(),
                partner_name: user.partner_name,
                csrf,
            });
            next.run(req).await
        }
        None if path == "/sign-in" => sign_in_page(req, next).await,
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

/// A signed-in request past its partner's share: 429, with when to come back.
fn too_many(throttled: &crate::services::limits::Throttled) -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests from your organisation just now; try again in a moment.",
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&throttled.retry_after_seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn token_of(req: &Request) -> String {
    session_token(req.headers()).unwrap_or_default()
}

/// The sign-in page, with a fresh token in its form and the same in a cookie that only the
/// form's target receives: the POST must bring both (double submit). Another site can
/// make a browser post the form, but cannot set or read this site's cookie.
async fn sign_in_page(mut req: Request, next: Next) -> Response {
    let mut bytes = [0_u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "try again in a moment").into_response();
    }
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    req.extensions_mut()
        .insert(app::model::SignInToken(token.clone()));
    let mut response = next.run(req).await;
    let cookie = format!(
        "{SIGN_IN_COOKIE}={token}; Path=/auth/sign-in; HttpOnly; SameSite=Strict; Max-Age=3600"
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The visitor's address: from the trusted proxy header when one is configured, else the
/// connection's peer. Of a list (`X-Forwarded-For: client, proxy1, …`) the **last** entry
/// counts: it is the one the trusted proxy added; the entries before it are whatever the
/// client sent and could be anything. `None` when the header is missing or unreadable (the
/// guards then count all such visitors together).
fn client_address(req: &Request, trusted: &TrustedClientHeader) -> Option<IpAddr> {
    if let Some(name) = &trusted.0 {
        return req
            .headers()
            .get_all(name.as_ref())
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok());
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip())
}

/// The header a trusted reverse proxy puts the client's address in (`--trusted-client-ip-header`),
/// if freshet runs behind one.
#[derive(Clone, Debug, Default)]
pub struct TrustedClientHeader(pub Option<Arc<str>>);

/// The largest sign-in form read.
const FORM_LIMIT: usize = 16 * 1024;

/// `POST /auth/sign-in` (a form: `email`, `password`, `next`).
pub async fn sign_in(
    State(services): State<Arc<Services>>,
    State(trusted): State<TrustedClientHeader>,
    req: Request,
) -> Response {
    let client = client_address(&req, &trusted);
    let headers = req.headers().clone();
    let Ok(body) = axum::body::to_bytes(req.into_body(), FORM_LIMIT).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "the form is too large").into_response();
    };
    let mut email = String::new();
    let mut password = String::new();
    let mut next = String::new();
    let mut token = String::new();
    for (name, value) in form_urlencoded::parse(&body) {
        match name.as_ref() {
            "email" => email = value.trim().to_owned(),
            "password" => password = value.into_owned(),
            "next" => next = value.into_owned(),
            CSRF_FIELD => token = value.into_owned(),
            _ => {}
        }
    }
    // Login CSRF: the form's token must be the one this site gave with the form.
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !crate::services::sessions::same_token(&token, &expected) {
        return redirect(&format!(
            "/sign-in?error=expired&email={}&next={}",
            encode(&email),
            encode(&next)
        ));
    }
    let again = |error: &str| {
        redirect(&format!(
            "/sign-in?error={error}&email={}&next={}",
            encode(&email),
            encode(&next)
        ))
    };
    let token = match services.sign_in(&email, &password, client).await {
        Ok(SignIn::Session(token)) => token,
        Ok(SignIn::Refused) => return again("invalid"),
        Ok(SignIn::Throttled) => return again("throttled"),
        // A redirect, not a 429: a browser shows a 429's (empty) body, not the page it
        // points to, and the page says to try again in a moment.
        Ok(SignIn::Busy) => return again("busy"),
        Err(e) => {
            tracing::error!(error = %e, "signing in");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again in a moment").into_response();
        }
    };
    // Only our own paths: `next` must not send anyone to another site.
    let to = same_site_path(&next);
    let mut response = redirect(to);
    let secure = reached_over_https(&headers);
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

/// Whether a proxy in front says the browser came over https: `X-Forwarded-Proto: https`
/// or the standard `Forwarded: proto=https` (RFC 7239), which freshet behind TLS
/// termination cannot see for itself. Believing a forged one only makes the forger's own
/// cookie `Secure`.
fn reached_over_https(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let forwarded = headers
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| {
            name.trim().eq_ignore_ascii_case("proto")
                && value.trim().trim_matches('"').eq_ignore_ascii_case("https")
        });
    forwarded_proto || forwarded
}

/// `POST /auth/sign-out`.
pub async fn sign_out(State(services): State<Arc<Services>>, headers: HeaderMap) -> Response {
    if let Some(token) = session_token(&headers)
        && let Err(e) = services.sign_out(&token).await
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
    State(services): State<Arc<Services>>,
    axum::Extension(viewer): axum::Extension<Viewer>,
    headers: HeaderMap,
) -> Response {
    let Ok(partner) = uuid::Uuid::parse_str(&viewer.partner_id) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let last = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("not text"));
    let after = match resume_from(last) {
        Some(Resume::Invalid) => {
            return (
                StatusCode::BAD_REQUEST,
                "Last-Event-ID must be an id this stream sent",
            )
                .into_response();
        }
        Some(Resume::After(seq)) => Some(seq),
        None => None,
    };
    match services.stream_start(partner, after).await {
        Ok(after) => {
            // The gate found a session: the stream lasts as long as it does.
            let token = session_token(&headers).unwrap_or_default();
            let ends = Arc::clone(&services).revoked(Grant::Session(token));
            crate::sse::response(services.event_stream(partner, after), ends).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "starting a portal event stream");
            (StatusCode::SERVICE_UNAVAILABLE, "try again in a moment").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_site_are_followed_after_sign_in() {
        for ok in ["/", "/users?q=a%20b", "/webhooks/1?reveal=x", "/%09/x"] {
            assert_eq!(same_site_path(ok), ok);
        }
        for bad in [
            "/\t/evil.example",
            "//evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "http:evil.example",
            "evil.example",
            "/ /evil.example",
            "/\n/evil.example",
            "",
        ] {
            assert_eq!(same_site_path(bad), "/", "{bad:?}");
        }
    }

    #[test]
    fn a_browser_request_from_another_site_is_cross_site() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let host = ("host", "portal.example:3000");
        assert!(!cross_site(&headers(&[host])), "no browser signal");
        assert!(!cross_site(&headers(&[
            host,
            ("origin", "http://portal.example:3000")
        ])));
        assert!(!cross_site(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(cross_site(&headers(&[
            host,
            ("origin", "https://evil.example")
        ])));
        assert!(cross_site(&headers(&[host, ("origin", "null")])));
        assert!(cross_site(&headers(&[
            host,
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(cross_site(&headers(&[
            host,
            ("sec-fetch-site", "same-site")
        ])));
        assert!(cross_site(&headers(&[
            host,
            ("origin", "http://portal.example:3000"),
            ("sec-fetch-site", "cross-site")
        ])));
    }

    #[test]
    fn https_is_read_from_either_proxy_header() {
        let with = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            h
        };
        assert!(reached_over_https(&with("x-forwarded-proto", "https")));
        assert!(reached_over_https(&with(
            "forwarded",
            "for=192.0.2.60;proto=https;by=203.0.113.43"
        )));
        assert!(reached_over_https(&with(
            "forwarded",
            "for=\"[2001:db8::1]\";Proto=\"HTTPS\""
        )));
        assert!(!reached_over_https(&with(
            "forwarded",
            "for=192.0.2.60;proto=http"
        )));
        assert!(!reached_over_https(&HeaderMap::new()));
    }

    #[test]
    fn behind_a_proxy_the_address_it_added_counts_not_what_the_client_sent() {
        let trusted = TrustedClientHeader(Some(Arc::from("x-forwarded-for")));
        let request = |values: &[&'static str]| {
            let mut req = Request::new(axum::body::Body::empty());
            for v in values {
                req.headers_mut()
                    .append("x-forwarded-for", HeaderValue::from_static(v));
            }
            req
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // The client forged the first entry; the proxy appended the real one.
        assert_eq!(
            client_address(&request(&["6.6.6.6, 203.0.113.9"]), &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_address(&request(&["6.6.6.6", "203.0.113.9"]), &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_address(&request(&[" 2001:db8::1 "]), &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(client_address(&request(&["nonsense"]), &trusted), None);
        assert_eq!(client_address(&request(&[]), &trusted), None);
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
