//! The sandbox bank's OAuth and consent endpoints over HTTP (the logic is `oauth.rs`): the
//! discovery document, client registration, the token endpoint, account-access consents,
//! the end user's authorization page, and the account and balance reads a consent's access
//! token opens.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::oauth::{
    AuthorizationRequest, Denied, Grant, OAuthError, PERSONA_ACCOUNTS, PERSONA_NAMES, escape,
    persona_of,
};
use super::{SandboxBank, ob_error};

/// The AIS API's base path.
pub const AISP: &str = "/open-banking/v3.1/aisp";

fn oauth_error(status: StatusCode, e: &OAuthError) -> Response {
    let body = serde_json::json!({ "error": e.error, "error_description": e.description });
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        "no-store"
            .parse()
            .unwrap_or(header::HeaderValue::from_static("no-store")),
    );
    response
}

/// The bank's own base URL: configured at start, else as the request reached it.
fn issuer(bank: &SandboxBank, headers: &HeaderMap) -> String {
    bank.issuer().unwrap_or_else(|| {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        format!("http://{host}")
    })
}

/// `GET /.well-known/openid-configuration`.
pub async fn discovery(State(bank): State<Arc<SandboxBank>>, headers: HeaderMap) -> Response {
    let base = issuer(&bank, &headers);
    Json(serde_json::json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "registration_endpoint": format!("{base}/register"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": ["openid", "accounts"],
    }))
    .into_response()
}

/// A registration request: where the client's users may be sent back.
#[derive(Debug, Deserialize)]
pub struct Registration {
    #[serde(default)]
    redirect_uris: Vec<String>,
}

/// `POST /register` (RFC 7591's shape, open in the sandbox).
pub async fn register(
    State(bank): State<Arc<SandboxBank>>,
    body: Option<Json<Registration>>,
) -> Response {
    let uris = body.map(|Json(r)| r.redirect_uris).unwrap_or_default();
    match bank.authority.register(uris.clone()) {
        Ok((client_id, client_secret)) => (
            StatusCode::CREATED,
            Json(serde_json::json!({
                "client_id": client_id, "client_secret": client_secret, "redirect_uris": uris,
                "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
                "token_endpoint_auth_method": "client_secret_basic",
            })),
        )
            .into_response(),
        Err(e) => oauth_error(StatusCode::BAD_REQUEST, &e),
    }
}

/// The client's credentials: HTTP Basic, else the form's `client_id`/`client_secret`.
fn client_credentials(headers: &HeaderMap, form: &HashMap<String, String>) -> (String, String) {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            let decode = |s: &str| {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            Some((decode(id)?, decode(secret)?))
        });
    basic.unwrap_or_else(|| {
        (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        )
    })
}

/// `POST /token` (form).
pub async fn token(
    State(bank): State<Arc<SandboxBank>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let (id, secret) = client_credentials(&headers, &form);
    match bank.authority.token(&id, &secret, &form, bank.clock.now()) {
        Ok(tokens) => {
            let mut body = serde_json::json!({
                "access_token": tokens.access_token, "token_type": "Bearer",
                "expires_in": tokens.expires_in, "scope": "accounts",
            });
            if let Some(refresh) = tokens.refresh_token {
                body["refresh_token"] = serde_json::json!(refresh);
            }
            if let Some(consent) = tokens.consent_id {
                body["consent_id"] = serde_json::json!(consent);
            }
            let mut response = Json(body).into_response();
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            response
        }
        Err(e) if e.error == "invalid_client" => oauth_error(StatusCode::UNAUTHORIZED, &e),
        Err(e) => oauth_error(StatusCode::BAD_REQUEST, &e),
    }
}

fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
}

fn denied(d: Denied) -> Response {
    match d {
        Denied::Unauthenticated => ob_error(
            StatusCode::UNAUTHORIZED,
            "UK.OBIE.Header.Invalid",
            "the access token is unknown or expired",
        ),
        Denied::ConsentNotAuthorised => ob_error(
            StatusCode::FORBIDDEN,
            "UK.OBIE.Resource.ConsentRevoked",
            "the consent is revoked, expired or not authorised",
        ),
    }
}

/// The client of a `client_credentials` token.
fn client_of(bank: &SandboxBank, headers: &HeaderMap) -> Result<String, Box<Response>> {
    match bank.authority.grant_of(bearer(headers), bank.clock.now()) {
        Ok(Grant::Client(id)) => Ok(id),
        Ok(Grant::Consent { .. }) => Err(Box::new(ob_error(
            StatusCode::FORBIDDEN,
            "UK.OBIE.Resource.InvalidScope",
            "consents are managed with a client_credentials token",
        ))),
        Err(d) => Err(Box::new(denied(d))),
    }
}

fn consent_body(id: &str, consent: &super::oauth::Consent) -> serde_json::Value {
    serde_json::json!({
        "Data": {
            "ConsentId": id,
            "Status": consent.status.as_str(),
            "CreationDateTime": freshet_rules::format_timestamp(consent.created_at),
            "StatusUpdateDateTime": freshet_rules::format_timestamp(consent.created_at),
            "ExpirationDateTime": freshet_rules::format_timestamp(consent.expires_at),
            "Permissions": ["ReadAccountsDetail", "ReadBalances", "ReadTransactionsDetail"],
        },
        "Risk": {},
    })
}

/// A consent request (only its expiry is read: the permissions are fixed).
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct NewConsent {
    #[serde(default)]
    data: NewConsentData,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct NewConsentData {
    expiration_date_time: Option<DateTime<Utc>>,
}

/// `POST /open-banking/v3.1/aisp/account-access-consents`.
pub async fn create_consent(
    State(bank): State<Arc<SandboxBank>>,
    headers: HeaderMap,
    body: Option<Json<NewConsent>>,
) -> Response {
    let client = match client_of(&bank, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let expires = body.and_then(|Json(b)| b.data.expiration_date_time);
    match bank
        .authority
        .create_consent(&client, expires, bank.clock.now())
    {
        Ok((id, consent)) => {
            (StatusCode::CREATED, Json(consent_body(&id, &consent))).into_response()
        }
        Err(e) => ob_error(
            StatusCode::BAD_REQUEST,
            "UK.OBIE.Field.Invalid",
            &e.description,
        ),
    }
}

/// `GET /open-banking/v3.1/aisp/account-access-consents/{id}`.
pub async fn get_consent(
    State(bank): State<Arc<SandboxBank>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let client = match client_of(&bank, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    match bank.authority.consent(&client, &id) {
        Some(consent) => Json(consent_body(&id, &consent)).into_response(),
        None => ob_error(
            StatusCode::NOT_FOUND,
            "UK.OBIE.Resource.NotFound",
            "no such consent",
        ),
    }
}

/// `DELETE /open-banking/v3.1/aisp/account-access-consents/{id}`.
pub async fn delete_consent(
    State(bank): State<Arc<SandboxBank>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let client = match client_of(&bank, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if bank.authority.revoke(&client, &id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        ob_error(
            StatusCode::NOT_FOUND,
            "UK.OBIE.Resource.NotFound",
            "no such consent",
        )
    }
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} — freshet Sandbox Bank</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}\
         fieldset{{margin:1rem 0}}button{{font-size:1rem;padding:.5rem 1rem;margin-right:.5rem}}</style></head>\
         <body><main><h1>{title}</h1>{body}</main></body></html>",
        title = escape(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    headers.insert("x-frame-options", header::HeaderValue::from_static("DENY"));
    response
}

fn hidden(req: &AuthorizationRequest) -> String {
    [
        ("response_type", &req.response_type),
        ("client_id", &req.client_id),
        ("redirect_uri", &req.redirect_uri),
        ("state", &req.state),
        ("consent_id", &req.consent_id),
        ("code_challenge", &req.code_challenge),
        ("code_challenge_method", &req.code_challenge_method),
    ]
    .iter()
    .map(|(name, value)| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        )
    })
    .collect()
}

/// `GET /authorize`: the end user signs in as a persona, picks accounts, and decides.
pub async fn authorize_page(
    State(bank): State<Arc<SandboxBank>>,
    Query(req): Query<AuthorizationRequest>,
) -> Response {
    if let Err(why) = bank.authority.check_request(&req) {
        return page(
            StatusCode::BAD_REQUEST,
            "This request cannot be authorised",
            &format!("<p>{}</p>", escape(&why)),
        );
    }
    let personas: String = PERSONA_NAMES
        .iter()
        .enumerate()
        .map(|(i, (id, name))| {
            format!(
                "<label><input type=\"radio\" name=\"persona\" value=\"{id}\"{}> {}</label><br>",
                if i == 0 { " checked" } else { "" },
                escape(name)
            )
        })
        .collect();
    let accounts: String = PERSONA_ACCOUNTS
        .iter()
        .map(|(id, _, name)| {
            format!(
                "<label><input type=\"checkbox\" name=\"accounts\" value=\"{id}\" checked> {}</label><br>",
                escape(name)
            )
        })
        .collect();
    let body = format!(
        "<p>An application asks to read your accounts' details, balances and transactions.</p>\
         <form method=\"post\" action=\"/authorize\">{hidden}\
         <fieldset><legend>Sign in as</legend>{personas}</fieldset>\
         <fieldset><legend>Share these accounts</legend>{accounts}</fieldset>\
         <button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
        hidden = hidden(&req)
    );
    page(StatusCode::OK, "Share your accounts", &body)
}

/// `POST /authorize`: the decision; back to the client with a code, or with
/// `error=access_denied`.
pub async fn authorize(State(bank): State<Arc<SandboxBank>>, body: Bytes) -> Response {
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut picked = Vec::new();
    for (name, value) in form_urlencoded::parse(&body) {
        if name == "accounts" {
            picked.push(value.into_owned());
        } else {
            fields.insert(name.into_owned(), value.into_owned());
        }
    }
    let field = |n: &str| fields.get(n).cloned().unwrap_or_default();
    let req = AuthorizationRequest {
        response_type: field("response_type"),
        client_id: field("client_id"),
        redirect_uri: field("redirect_uri"),
        state: field("state"),
        consent_id: field("consent_id"),
        code_challenge: field("code_challenge"),
        code_challenge_method: field("code_challenge_method"),
    };
    let persona = field("persona");
    let approval = (field("decision") == "approve").then_some((persona.as_str(), picked));
    match bank.authority.decide(&req, approval, bank.clock.now()) {
        Ok(code) => {
            let Ok(mut to) = url::Url::parse(&req.redirect_uri) else {
                return page(
                    StatusCode::BAD_REQUEST,
                    "This request cannot be authorised",
                    "<p>Bad redirect.</p>",
                );
            };
            {
                let mut query = to.query_pairs_mut();
                match &code {
                    Some(code) => query.append_pair("code", code),
                    None => query.append_pair("error", "access_denied"),
                };
                if !req.state.is_empty() {
                    query.append_pair("state", &req.state);
                }
            }
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(location) = header::HeaderValue::from_str(to.as_str()) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(why) => page(
            StatusCode::BAD_REQUEST,
            "This request cannot be authorised",
            &format!("<p>{}</p>", escape(&why)),
        ),
    }
}

/// The consent a data request's access token opens, and its accounts.
fn consent_of(
    bank: &SandboxBank,
    headers: &HeaderMap,
) -> Result<super::oauth::Consent, Box<Response>> {
    match bank.authority.grant_of(bearer(headers), bank.clock.now()) {
        Ok(Grant::Consent { consent_id, .. }) => bank
            .authority
            .consent_by_id(&consent_id)
            .ok_or_else(|| Box::new(denied(Denied::ConsentNotAuthorised))),
        Ok(Grant::Client(_)) => Err(Box::new(ob_error(
            StatusCode::FORBIDDEN,
            "UK.OBIE.Resource.InvalidScope",
            "a client_credentials token reads no accounts",
        ))),
        Err(d) => Err(Box::new(denied(d))),
    }
}

fn account_kind(account_id: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
    let kind = account_id.split('.').nth(1)?;
    PERSONA_ACCOUNTS.iter().find(|(k, _, _)| *k == kind)
}

/// `GET /open-banking/v3.1/aisp/accounts`.
pub async fn accounts(State(bank): State<Arc<SandboxBank>>, headers: HeaderMap) -> Response {
    let consent = match consent_of(&bank, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let list: Vec<serde_json::Value> = consent
        .accounts
        .iter()
        .filter_map(|id| {
            let (_, kind, nickname) = account_kind(id)?;
            Some(serde_json::json!({
                "AccountId": id, "Currency": "GBP", "AccountType": "Personal",
                "AccountSubType": kind, "Nickname": nickname,
            }))
        })
        .collect();
    Json(serde_json::json!({ "Data": { "Account": list }, "Links": { "Self": format!("{AISP}/accounts") }, "Meta": {} }))
        .into_response()
}

/// `GET /open-banking/v3.1/aisp/accounts/{id}/balances`: the balance moves with the
/// account's booked transactions.
pub async fn balances(
    State(bank): State<Arc<SandboxBank>>,
    Path(account_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let consent = match consent_of(&bank, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if !consent.accounts.contains(&account_id) {
        return ob_error(
            StatusCode::FORBIDDEN,
            "UK.OBIE.Resource.ConsentMismatch",
            "the consent does not cover this account",
        );
    }
    let now = bank.clock.now();
    let persona = persona_of(&account_id).unwrap_or("salaried");
    let pence: i64 = super::schedule(
        persona,
        &account_id,
        now - chrono::TimeDelta::days(super::HISTORY_DAYS),
        now,
    )
    .iter()
    .filter_map(|t| {
        let (whole, frac) = t.amount.trim_start_matches('-').split_once('.')?;
        let v = whole.parse::<i64>().ok()? * 100 + frac.parse::<i64>().ok()?;
        Some(if t.amount.starts_with('-') { -v } else { v })
    })
    .sum::<i64>()
        + 250_000;
    let indicator = if pence < 0 { "Debit" } else { "Credit" };
    Json(serde_json::json!({
        "Data": { "Balance": [{
            "AccountId": account_id, "CreditDebitIndicator": indicator, "Type": "InterimAvailable",
            "DateTime": freshet_rules::format_timestamp(now),
            "Amount": { "Amount": format!("{}.{:02}", pence.abs() / 100, pence.abs() % 100), "Currency": "GBP" },
        }]},
        "Links": { "Self": format!("{AISP}/accounts/{account_id}/balances") }, "Meta": {},
    }))
    .into_response()
}
