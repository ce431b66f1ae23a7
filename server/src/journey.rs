//! The connection journey's pages, as the end user sees them: server-rendered HTML that
//! works without script, on a phone, with the partner's name on it. `connectionUrl`
//! (pick a bank → the bank's authorization page), the callback the bank sends the user back
//! to (→ the partner's redirect URL), and `managementUrl` (the user's connections). The
//! use cases are `services::journey`'s.
//!
//! The URLs carry the session's partnerToken: the pages send no `Referer` anywhere
//! (`Referrer-Policy: no-referrer`), are never cached, and cannot be framed.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use uuid::Uuid;

use crate::bank::sandbox::oauth::escape;
use crate::services::Services;
use crate::services::journey::JourneyError;

/// The journey's routes, for state `S` holding an `Arc<Services>`.
pub fn routes<S>() -> Router<S>
where
    Arc<Services>: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/connect/callback", get(callback))
        .route("/connect/{session_id}", get(connection_page))
        .route("/connect/{session_id}/bank", post(pick_bank))
        .route("/manage/{session_id}", get(management_page))
        .route("/manage/{session_id}/unlink", post(unlink))
        .route("/manage/{session_id}/renew", post(renew))
        .route("/sandbox/return", get(sandbox_return))
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:30rem;margin:0 auto;padding:1rem;line-height:1.5;color:#1a1a1a}}\
         h1{{font-size:1.4rem}}ul{{list-style:none;padding:0}}li{{margin:.5rem 0}}\
         button{{width:100%;font-size:1rem;padding:.75rem;border:1px solid #1a1a1a;border-radius:.4rem;background:#fff;cursor:pointer}}\
         button:focus-visible{{outline:3px solid #1565c0;outline-offset:2px}}\
         table{{width:100%;border-collapse:collapse}}td,th{{text-align:left;padding:.3rem;border-bottom:1px solid #ddd}}\
         </style></head><body><main>{body}</main></body></html>",
        title = escape(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn refused(e: &JourneyError) -> Response {
    let status = match e {
        JourneyError::NotValid | JourneyError::NoSuchBank => StatusCode::BAD_REQUEST,
        JourneyError::Expired => StatusCode::GONE,
        JourneyError::BankUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        JourneyError::Internal(why) => {
            tracing::error!(error = %why, "the connection journey failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    page(
        status,
        "Connecting your bank",
        &format!(
            "<h1>We could not go on</h1><p role=\"alert\">{}</p>",
            escape(&e.to_string())
        ),
    )
}

fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    match HeaderValue::from_str(to) {
        Ok(location) => {
            response.headers_mut().insert(header::LOCATION, location);
            response.headers_mut().insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            response
        }
        Err(_) => refused(&JourneyError::Internal(format!("a redirect to {to:?}"))),
    }
}

/// Where the journey sends a user back to, as the partner's redirect URL would receive it.
#[derive(Debug, Deserialize)]
struct Returned {
    #[serde(rename = "sessionTerminationToken", default)]
    token: String,
    error: Option<String>,
    #[serde(rename = "correlationId")]
    correlation_id: Option<String>,
}

/// `GET /sandbox/return` (`--sandbox` only): a stand-in for a partner's redirect URL, for
/// trying the journey without an app of one's own. It shows what the partner receives and
/// the call that completes the session (the partner's API key is the partner's: the page
/// does not complete it on anyone's behalf).
async fn sandbox_return(
    State(services): State<Arc<Services>>,
    Query(back): Query<Returned>,
) -> Response {
    if !services.sandbox {
        return StatusCode::NOT_FOUND.into_response();
    }
    let outcome = match back.error.as_deref() {
        None => "The user connected their bank.".to_owned(),
        Some("access_denied") => {
            "The user declined at their bank: nothing was connected.".to_owned()
        }
        Some(other) => format!("Nothing was connected ({}).", escape(other)),
    };
    let correlation = back
        .correlation_id
        .map(|c| format!("<p>correlationId: <code>{}</code></p>", escape(&c)))
        .unwrap_or_default();
    page(
        StatusCode::OK,
        "Back at the partner (sandbox)",
        &format!(
            "<h1>Back at the partner</h1><p role=\"status\" data-testid=\"outcome\">{outcome}</p>{correlation}\
             <p>The partner completes the session with its API key and this token:</p>\
             <pre data-testid=\"complete\">curl -X PUT -H 'x-api-key: YOUR_KEY' -H 'Authorization: Bearer {token}' {base}/v1/sessions/completed</pre>",
            token = escape(&back.token),
            base = escape(&services.public_url()),
        ),
    )
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    #[serde(rename = "partnerToken", default)]
    partner_token: String,
}

fn session_id(text: &str) -> Result<Uuid, JourneyError> {
    crate::model::canonical_id(text).ok_or(JourneyError::NotValid)
}

/// `GET /connect/{sessionId}?partnerToken=…`: the banks to pick from.
async fn connection_page(
    State(services): State<Arc<Services>>,
    Path(id): Path<String>,
    Query(query): Query<TokenQuery>,
) -> Response {
    let id = match session_id(&id) {
        Ok(id) => id,
        Err(e) => return refused(&e),
    };
    match services.connection_page(id, &query.partner_token).await {
        Ok(shown) => {
            let banks: String = if shown.banks.is_empty() {
                "<p>No bank can be connected on this server yet.</p>".to_owned()
            } else {
                let items: String = shown
                    .banks
                    .iter()
                    .map(|(bank_id, name)| {
                        format!(
                            "<li><form method=\"post\" action=\"/connect/{id}/bank\">\
                             <input type=\"hidden\" name=\"partnerToken\" value=\"{token}\">\
                             <input type=\"hidden\" name=\"bankId\" value=\"{bank}\">\
                             <button type=\"submit\">{name}</button></form></li>",
                            token = escape(&query.partner_token),
                            bank = escape(bank_id),
                            name = escape(name)
                        )
                    })
                    .collect();
                format!("<ul aria-label=\"Banks\">{items}</ul>")
            };
            let partner = escape(&shown.partner_name);
            page(
                StatusCode::OK,
                &format!("Connect your bank to {}", shown.partner_name),
                &format!(
                    "<h1>Connect your bank to {partner}</h1>\
                     <p>{partner} asks to read your accounts' details, balances and transactions. \
                     Pick your bank: you will sign in there and choose what to share.</p>{banks}"
                ),
            )
        }
        Err(e) => refused(&e),
    }
}

/// `POST /connect/{sessionId}/bank` (`partnerToken`, `bankId`): on to the bank.
async fn pick_bank(
    State(services): State<Arc<Services>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match session_id(&id) {
        Ok(id) => id,
        Err(e) => return refused(&e),
    };
    let (token, bank, _) = journey_form(&body);
    match services.start_at_bank(id, &token, &bank).await {
        Ok(to) => see_other(&to),
        Err(e) => refused(&e),
    }
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    #[serde(default)]
    state: String,
    code: Option<String>,
    error: Option<String>,
}

/// `GET /connect/callback?state=…&code=…` (or `error=…`): back from the bank, on to the
/// partner.
async fn callback(
    State(services): State<Arc<Services>>,
    Query(query): Query<CallbackQuery>,
) -> Response {
    match services
        .callback(&query.state, query.code.as_deref(), query.error.as_deref())
        .await
    {
        Ok(to) => see_other(&to),
        Err(e) => refused(&e),
    }
}

/// `GET /manage/{sessionId}?partnerToken=…`: the user's connections, each with Unlink.
async fn management_page(
    State(services): State<Arc<Services>>,
    Path(id): Path<String>,
    Query(query): Query<TokenQuery>,
) -> Response {
    let id = match session_id(&id) {
        Ok(id) => id,
        Err(e) => return refused(&e),
    };
    let shown = match services.management_page(id, &query.partner_token).await {
        Ok(shown) => shown,
        Err(e) => return refused(&e),
    };
    let token = escape(&query.partner_token);
    let sections: String = shown
        .connections
        .iter()
        .map(|c| {
            let accounts: String = c
                .accounts
                .iter()
                .map(|a| {
                    format!(
                        "<li>{} · {} · {}</li>",
                        escape(&a.account_type),
                        escape(&a.currency),
                        escape(&a.balance)
                    )
                })
                .collect();
            let until = c
                .expires_at
                .map(|at| at.format("%-d %B %Y").to_string())
                .unwrap_or_else(|| "no end date".to_owned());
            let state = if c.active {
                format!("Shared until {until}.")
            } else {
                "No longer shared.".to_owned()
            };
            let renew = format!(
                "<form method=\"post\" action=\"/manage/{id}/renew\">\
                 <input type=\"hidden\" name=\"partnerToken\" value=\"{token}\">\
                 <input type=\"hidden\" name=\"bankId\" value=\"{bank}\">\
                 <input type=\"hidden\" name=\"consentId\" value=\"{consent}\">\
                 <button type=\"submit\">Re-authenticate with {name}</button></form>",
                bank = escape(&c.bank_id),
                consent = escape(&c.consent_id),
                name = escape(&c.bank_name)
            );
            let unlink = if c.active {
                format!(
                    "<form method=\"post\" action=\"/manage/{id}/unlink\">\
                     <input type=\"hidden\" name=\"partnerToken\" value=\"{token}\">\
                     <input type=\"hidden\" name=\"bankId\" value=\"{bank}\">\
                     <input type=\"hidden\" name=\"consentId\" value=\"{consent}\">\
                     <button type=\"submit\">Unlink {name}</button></form>",
                    bank = escape(&c.bank_id),
                    consent = escape(&c.consent_id),
                    name = escape(&c.bank_name)
                )
            } else {
                String::new()
            };
            format!(
                "<section><h2>{name}</h2><p>{state}</p><ul>{accounts}</ul>{renew}{unlink}</section>",
                name = escape(&c.bank_name)
            )
        })
        .collect();
    let body = if shown.connections.is_empty() {
        "<p>No bank is connected yet.</p>".to_owned()
    } else {
        sections
    };
    page(
        StatusCode::OK,
        &format!("Your connections with {}", shown.partner_name),
        &format!(
            "<h1>Your connections with {}</h1>{body}",
            escape(&shown.partner_name)
        ),
    )
}

/// The fields of a journey form: (partnerToken, bankId, consentId), each empty when absent.
fn journey_form(body: &[u8]) -> (String, String, String) {
    let (mut token, mut bank, mut consent) = (String::new(), String::new(), String::new());
    for (name, value) in form_urlencoded::parse(body) {
        match name.as_ref() {
            "partnerToken" => token = value.into_owned(),
            "bankId" => bank = value.into_owned(),
            "consentId" => consent = value.into_owned(),
            _ => {}
        }
    }
    (token, bank, consent)
}

/// `POST /manage/{sessionId}/renew` (`partnerToken`, `bankId`, `consentId`): a new
/// authorization at the bank for the same accounts.
async fn renew(
    State(services): State<Arc<Services>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match session_id(&id) {
        Ok(id) => id,
        Err(e) => return refused(&e),
    };
    let (token, bank, consent) = journey_form(&body);
    match services.renew_at_bank(id, &token, &bank, &consent).await {
        Ok(to) => see_other(&to),
        Err(e) => refused(&e),
    }
}

/// `POST /manage/{sessionId}/unlink` (`partnerToken`, `bankId`, `consentId`): the consent
/// is revoked at the bank; back to the management page.
async fn unlink(
    State(services): State<Arc<Services>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match session_id(&id) {
        Ok(id) => id,
        Err(e) => return refused(&e),
    };
    let (token, bank, consent) = journey_form(&body);
    match services.unlink(id, &token, &bank, &consent).await {
        Ok(()) => {
            let back: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("partnerToken", &token)
                .finish();
            see_other(&format!("/manage/{id}?{back}"))
        }
        Err(e) => refused(&e),
    }
}
