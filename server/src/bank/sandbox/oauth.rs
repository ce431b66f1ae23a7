//! The sandbox bank as an OAuth 2.0 authorization server in the UK Open Banking AIS shape,
//! so that freshet's connection journey meets the real protocol: client registration
//! (`POST /register`), the discovery document, `client_credentials` tokens to create
//! account-access consents, the end user's authorization page (sign in as a persona, pick
//! accounts, approve or deny), authorization codes bound to PKCE (S256) and single-use,
//! short-lived access tokens (5 minutes) with rotating refresh tokens, consents that expire
//! (90 days unless the consent asks for less) and can be revoked.
//!
//! Where UK banks take the consent id inside a signed request object, this bank takes it as
//! a `consent_id` query parameter (FAPI request signing is later work). State lives in
//! memory: a restarted sandbox bank has forgotten its clients and consents.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// How long an access token lives.
pub const ACCESS_TTL: TimeDelta = TimeDelta::minutes(5);
/// How long an authorization code lives.
pub const CODE_TTL: TimeDelta = TimeDelta::seconds(60);
/// How long a consent lasts unless it asks for less.
pub const CONSENT_TTL: TimeDelta = TimeDelta::days(90);

/// The personas an end user may sign in as, with their names on the authorization page.
pub const PERSONA_NAMES: &[(&str, &str)] = &[
    ("salaried", "Salaried"),
    ("gambler", "Gambler"),
    ("overdraft", "Arranged Overdraft"),
    ("returned-dd", "Returned DD"),
    ("multiple-loans", "Multiple Loans"),
    ("savings", "Saver"),
];

/// The accounts every persona holds: (suffix of the account id, type, nickname).
pub const PERSONA_ACCOUNTS: &[(&str, &str, &str)] = &[
    ("current", "CurrentAccount", "Current account"),
    ("savings", "Savings", "Savings account"),
];

/// Where a consent is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsentStatus {
    /// Created by the client; the user has not decided.
    AwaitingAuthorisation,
    /// The user approved it.
    Authorised,
    /// The user denied it.
    Rejected,
    /// Revoked (by the client, or the user at the bank).
    Revoked,
}

impl ConsentStatus {
    /// Open Banking's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingAuthorisation => "AwaitingAuthorisation",
            Self::Authorised => "Authorised",
            Self::Rejected => "Rejected",
            Self::Revoked => "Revoked",
        }
    }
}

/// A registered client (freshet, at this bank).
#[derive(Clone, Debug)]
struct Client {
    secret: [u8; 32],
    redirect_uris: Vec<String>,
}

/// An account-access consent.
#[derive(Clone, Debug)]
pub struct Consent {
    /// The client that created it.
    pub client_id: String,
    /// Where it is.
    pub status: ConsentStatus,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
    /// The persona who approved it.
    pub persona: Option<String>,
    /// The accounts the user picked.
    pub accounts: Vec<String>,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    consent_id: String,
    challenge: String,
    expires_at: DateTime<Utc>,
}

struct Access {
    client_id: String,
    consent_id: Option<String>,
    expires_at: DateTime<Utc>,
}

struct Refresh {
    client_id: String,
    consent_id: String,
}

#[derive(Default)]
struct State {
    clients: HashMap<String, Client>,
    consents: HashMap<String, Consent>,
    /// By the SHA-256 of the code or token: what is stored cannot be replayed.
    codes: HashMap<[u8; 32], Code>,
    access: HashMap<[u8; 32], Access>,
    refresh: HashMap<[u8; 32], Refresh>,
}

/// The authorization server's state.
#[derive(Default)]
pub struct Authority {
    state: Mutex<State>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// An OAuth error (RFC 6749 §5.2): its code and what went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthError {
    /// `invalid_client`, `invalid_grant`, `invalid_request`, `unsupported_grant_type`.
    pub error: &'static str,
    /// For the client's developer.
    pub description: String,
}

fn oauth(error: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError {
        error,
        description: description.into(),
    }
}

/// Tokens as the token endpoint answers them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    /// The access token.
    pub access_token: String,
    /// Seconds it lives.
    pub expires_in: i64,
    /// The refresh token (not for `client_credentials`).
    pub refresh_token: Option<String>,
    /// The consent the tokens are for.
    pub consent_id: Option<String>,
}

/// What an access token grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// The client itself (`client_credentials`): consents.
    Client(String),
    /// Access to a consent's accounts.
    Consent {
        /// The client.
        client_id: String,
        /// The consent.
        consent_id: String,
    },
}

/// Why a bearer token does not give access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// Unknown or expired token: 401.
    Unauthenticated,
    /// The consent is not (or no longer) authorised: 403.
    ConsentNotAuthorised,
}

/// The parameters of an authorization request.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AuthorizationRequest {
    /// Must be `code`.
    #[serde(default)]
    pub response_type: String,
    /// The client.
    #[serde(default)]
    pub client_id: String,
    /// Where to send the user back: one of the client's registered URIs, exactly.
    #[serde(default)]
    pub redirect_uri: String,
    /// Echoed back.
    #[serde(default)]
    pub state: String,
    /// The consent the user is asked to authorise.
    #[serde(default)]
    pub consent_id: String,
    /// BASE64URL(SHA-256(verifier)).
    #[serde(default)]
    pub code_challenge: String,
    /// Must be `S256`.
    #[serde(default)]
    pub code_challenge_method: String,
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn random_token(prefix: &str) -> Result<String, OAuthError> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| oauth("server_error", e.to_string()))?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// Constant-time equality of two digests.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0_u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The S256 challenge of a PKCE verifier.
pub fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl Authority {
    fn state(&self) -> Result<std::sync::MutexGuard<'_, State>, OAuthError> {
        self.state
            .lock()
            .map_err(|_| oauth("server_error", "the bank's state is poisoned"))
    }

    /// Registers a client for `redirect_uris`: (client id, client secret).
    pub fn register(&self, redirect_uris: Vec<String>) -> Result<(String, String), OAuthError> {
        if redirect_uris.is_empty()
            || redirect_uris
                .iter()
                .any(|u| url::Url::parse(u).is_err() || u.contains('#'))
        {
            return Err(oauth(
                "invalid_redirect_uri",
                "redirect_uris must be one or more absolute URLs without a fragment",
            ));
        }
        let id = random_token("client-")?;
        let secret = random_token("secret-")?;
        self.state()?.clients.insert(
            id.clone(),
            Client {
                secret: digest(&secret),
                redirect_uris,
            },
        );
        Ok((id, secret))
    }

    /// Registers a client with a chosen id and secret (the standalone bank's client for
    /// freshet, printed at start).
    pub fn register_as(&self, id: &str, secret: &str, redirect_uris: Vec<String>) {
        if let Ok(mut state) = self.state() {
            state.clients.insert(
                id.to_owned(),
                Client {
                    secret: digest(secret),
                    redirect_uris,
                },
            );
        }
    }

    fn authenticate(state: &State, id: &str, secret: &str) -> Result<(), OAuthError> {
        match state.clients.get(id) {
            Some(client) if same(&client.secret, &digest(secret)) => Ok(()),
            _ => Err(oauth("invalid_client", "unknown client or wrong secret")),
        }
    }

    /// The token endpoint: `grant_type` with its parameters, from client `id` with `secret`.
    pub fn token(
        &self,
        id: &str,
        secret: &str,
        form: &HashMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<Tokens, OAuthError> {
        let mut state = self.state()?;
        Self::authenticate(&state, id, secret)?;
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
        match field("grant_type") {
            "client_credentials" => Self::issue(&mut state, id, None, false, now),
            "authorization_code" => {
                // Taken out whatever happens next: a code is tried once.
                let code = state
                    .codes
                    .remove(&digest(field("code")))
                    .ok_or_else(|| oauth("invalid_grant", "unknown or used code"))?;
                if code.client_id != id || code.expires_at <= now {
                    return Err(oauth("invalid_grant", "the code is expired or not yours"));
                }
                if code.redirect_uri != field("redirect_uri") {
                    return Err(oauth(
                        "invalid_grant",
                        "redirect_uri differs from the authorization's",
                    ));
                }
                if challenge_of(field("code_verifier")) != code.challenge {
                    return Err(oauth(
                        "invalid_grant",
                        "the code_verifier does not match the challenge",
                    ));
                }
                Self::consent_usable(&state, &code.consent_id, now)?;
                Self::issue(&mut state, id, Some(code.consent_id), true, now)
            }
            "refresh_token" => {
                let refresh = state
                    .refresh
                    .remove(&digest(field("refresh_token")))
                    .ok_or_else(|| oauth("invalid_grant", "unknown or used refresh token"))?;
                if refresh.client_id != id {
                    return Err(oauth("invalid_grant", "the refresh token is not yours"));
                }
                Self::consent_usable(&state, &refresh.consent_id, now)?;
                Self::issue(&mut state, id, Some(refresh.consent_id), true, now)
            }
            "" => Err(oauth("invalid_request", "grant_type is missing")),
            _ => Err(oauth(
                "unsupported_grant_type",
                "client_credentials, authorization_code or refresh_token",
            )),
        }
    }

    fn consent_usable(
        state: &State,
        consent_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), OAuthError> {
        match state.consents.get(consent_id) {
            Some(c) if c.status == ConsentStatus::Authorised && c.expires_at > now => Ok(()),
            _ => Err(oauth(
                "invalid_grant",
                "the consent is revoked, expired or not authorised",
            )),
        }
    }

    fn issue(
        state: &mut State,
        client_id: &str,
        consent_id: Option<String>,
        with_refresh: bool,
        now: DateTime<Utc>,
    ) -> Result<Tokens, OAuthError> {
        let access_token = random_token("at-")?;
        state.access.insert(
            digest(&access_token),
            Access {
                client_id: client_id.to_owned(),
                consent_id: consent_id.clone(),
                expires_at: now + ACCESS_TTL,
            },
        );
        let refresh_token = match (&consent_id, with_refresh) {
            (Some(consent), true) => {
                let token = random_token("rt-")?;
                state.refresh.insert(
                    digest(&token),
                    Refresh {
                        client_id: client_id.to_owned(),
                        consent_id: consent.clone(),
                    },
                );
                Some(token)
            }
            _ => None,
        };
        // Expired access tokens are forgotten as new ones are made.
        state.access.retain(|_, a| a.expires_at > now);
        Ok(Tokens {
            access_token,
            expires_in: ACCESS_TTL.num_seconds(),
            refresh_token,
            consent_id,
        })
    }

    /// What the bearer `token` grants now.
    pub fn grant_of(&self, token: &str, now: DateTime<Utc>) -> Result<Grant, Denied> {
        let state = self.state().map_err(|_| Denied::Unauthenticated)?;
        let access = state
            .access
            .get(&digest(token))
            .filter(|a| a.expires_at > now)
            .ok_or(Denied::Unauthenticated)?;
        match &access.consent_id {
            None => Ok(Grant::Client(access.client_id.clone())),
            Some(consent_id) => {
                Self::consent_usable(&state, consent_id, now)
                    .map_err(|_| Denied::ConsentNotAuthorised)?;
                Ok(Grant::Consent {
                    client_id: access.client_id.clone(),
                    consent_id: consent_id.clone(),
                })
            }
        }
    }

    /// Creates a consent for `client_id`, ending at `expires_at` (at most 90 days on).
    pub fn create_consent(
        &self,
        client_id: &str,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(String, Consent), OAuthError> {
        let latest = now + CONSENT_TTL;
        let expires_at = expires_at.map_or(latest, |at| at.min(latest));
        if expires_at <= now {
            return Err(oauth(
                "invalid_request",
                "ExpirationDateTime is in the past",
            ));
        }
        let id = format!("aac-{}", uuid::Uuid::new_v4());
        let consent = Consent {
            client_id: client_id.to_owned(),
            status: ConsentStatus::AwaitingAuthorisation,
            created_at: now,
            expires_at,
            persona: None,
            accounts: Vec::new(),
        };
        self.state()?.consents.insert(id.clone(), consent.clone());
        Ok((id, consent))
    }

    /// Client `client_id`'s consent `id`.
    pub fn consent(&self, client_id: &str, id: &str) -> Option<Consent> {
        let state = self.state().ok()?;
        state
            .consents
            .get(id)
            .filter(|c| c.client_id == client_id)
            .cloned()
    }

    /// Any client's consent `id` (the data endpoints, after the token was checked).
    pub fn consent_by_id(&self, id: &str) -> Option<Consent> {
        self.state().ok()?.consents.get(id).cloned()
    }

    /// Revokes client `client_id`'s consent `id`, and every refresh token of it.
    pub fn revoke(&self, client_id: &str, id: &str) -> bool {
        let Ok(mut state) = self.state() else {
            return false;
        };
        let Some(consent) = state
            .consents
            .get_mut(id)
            .filter(|c| c.client_id == client_id)
        else {
            return false;
        };
        consent.status = ConsentStatus::Revoked;
        state.refresh.retain(|_, r| r.consent_id != id);
        true
    }

    /// Checks an authorization request before anything is shown: the client, its redirect
    /// URI (exactly one it registered), PKCE, and a consent of this client awaiting the
    /// user. An error here is shown to the user, never sent to the redirect URI.
    pub fn check_request(&self, req: &AuthorizationRequest) -> Result<(), String> {
        let state = self.state().map_err(|e| e.description)?;
        let client = state
            .clients
            .get(&req.client_id)
            .ok_or("This application is not known to the bank.")?;
        if !client.redirect_uris.contains(&req.redirect_uri) {
            return Err("The address to return to is not one this application registered.".into());
        }
        if req.response_type != "code" {
            return Err(
                "Only the authorization code flow is supported (response_type=code).".into(),
            );
        }
        if req.code_challenge_method != "S256" || req.code_challenge.len() < 43 {
            return Err(
                "PKCE with S256 is required (code_challenge, code_challenge_method=S256).".into(),
            );
        }
        match state.consents.get(&req.consent_id) {
            Some(c)
                if c.client_id == req.client_id
                    && c.status == ConsentStatus::AwaitingAuthorisation =>
            {
                Ok(())
            }
            _ => Err("This consent request is unknown, used, or not this application's.".into()),
        }
    }

    /// The user's decision: approve as `persona` with `accounts` (a code to send back), or
    /// deny (`None`).
    pub fn decide(
        &self,
        req: &AuthorizationRequest,
        approval: Option<(&str, Vec<String>)>,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, String> {
        self.check_request(req)?;
        let mut state = self.state().map_err(|e| e.description)?;
        let Some(consent) = state.consents.get_mut(&req.consent_id) else {
            return Err("This consent request is unknown.".into());
        };
        let Some((persona, accounts)) = approval else {
            consent.status = ConsentStatus::Rejected;
            return Ok(None);
        };
        if !PERSONA_NAMES.iter().any(|(p, _)| *p == persona) || accounts.is_empty() {
            return Err("Pick who you are and at least one account.".into());
        }
        // The same persona at the same client holds the same accounts, consent after
        // consent: a renewal finds them again, as at a real bank.
        let suffix: String = Sha256::new()
            .chain_update(req.client_id.as_bytes())
            .chain_update(b"\0")
            .chain_update(persona.as_bytes())
            .finalize()
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut picked = Vec::new();
        for account in accounts {
            if !PERSONA_ACCOUNTS.iter().any(|(kind, _, _)| *kind == account) {
                return Err(format!("There is no account {account}."));
            }
            picked.push(format!("{persona}.{account}.{suffix}"));
        }
        consent.status = ConsentStatus::Authorised;
        consent.persona = Some(persona.to_owned());
        consent.accounts = picked;
        let code = random_token("code-").map_err(|e| e.description)?;
        state.codes.insert(
            digest(&code),
            Code {
                client_id: req.client_id.clone(),
                redirect_uri: req.redirect_uri.clone(),
                consent_id: req.consent_id.clone(),
                challenge: req.code_challenge.clone(),
                expires_at: now + CODE_TTL,
            },
        );
        Ok(Some(code))
    }
}

/// The persona of an account id this bank made (`persona.kind.suffix`).
pub fn persona_of(account_id: &str) -> Option<&str> {
    let persona = account_id.split('.').next()?;
    PERSONA_NAMES
        .iter()
        .any(|(p, _)| *p == persona)
        .then_some(persona)
}

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_790_000_000_000).unwrap_or_default()
    }

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_code_is_bound_to_its_verifier_and_used_once() {
        let authority = Authority::default();
        let redirect = "https://freshet.example/connect/callback".to_owned();
        let (id, secret) = authority
            .register(vec![redirect.clone()])
            .unwrap_or_default();
        let (consent, _) = authority
            .create_consent(&id, None, now())
            .unwrap_or_else(|e| panic!("{e:?}"));
        let verifier = "a-verifier-of-enough-length-0123456789-abcdefghij";
        let req = AuthorizationRequest {
            response_type: "code".into(),
            client_id: id.clone(),
            redirect_uri: redirect.clone(),
            state: "s".into(),
            consent_id: consent.clone(),
            code_challenge: challenge_of(verifier),
            code_challenge_method: "S256".into(),
        };
        let code = authority
            .decide(&req, Some(("gambler", vec!["current".into()])), now())
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_default();
        let exchange = |verifier: &str| {
            authority.token(
                &id,
                &secret,
                &form(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", &redirect),
                    ("code_verifier", verifier),
                ]),
                now(),
            )
        };
        assert_eq!(
            exchange("wrong").map(|_| ()).unwrap_err().error,
            "invalid_grant"
        );
        // The failed try used the code up.
        assert_eq!(
            exchange(verifier).map(|_| ()).unwrap_err().error,
            "invalid_grant"
        );
    }

    #[test]
    fn a_request_with_an_unregistered_redirect_or_without_pkce_is_refused() {
        let authority = Authority::default();
        let (id, _) = authority
            .register(vec!["https://freshet.example/cb".into()])
            .unwrap_or_default();
        let (consent, _) = authority
            .create_consent(&id, None, now())
            .unwrap_or_else(|e| panic!("{e:?}"));
        let good = AuthorizationRequest {
            response_type: "code".into(),
            client_id: id,
            redirect_uri: "https://freshet.example/cb".into(),
            state: String::new(),
            consent_id: consent,
            code_challenge: challenge_of("v"),
            code_challenge_method: "S256".into(),
        };
        assert!(authority.check_request(&good).is_ok());
        for bad in [
            AuthorizationRequest {
                redirect_uri: "https://evil.example/cb".into(),
                ..good.clone()
            },
            AuthorizationRequest {
                redirect_uri: "https://freshet.example/cb/x".into(),
                ..good.clone()
            },
            AuthorizationRequest {
                code_challenge_method: "plain".into(),
                ..good.clone()
            },
            AuthorizationRequest {
                consent_id: "aac-unknown".into(),
                ..good.clone()
            },
            AuthorizationRequest {
                client_id: "client-unknown".into(),
                ..good.clone()
            },
        ] {
            assert!(authority.check_request(&bad).is_err(), "{bad:?}");
        }
    }
}
