//! The direct connection journey (D•One: "create a user, then create a session"): the
//! partner creates a session for its user and sends the user to the session's
//! `connectionUrl`; the user picks a bank, freshet creates the consent there and sends the
//! browser to the bank's authorization page; the bank sends the browser back to freshet's
//! callback, which exchanges the code (PKCE), keeps the tokens sealed, connects the accounts
//! with their first fetch, and sends the user back to the partner with a termination token
//! the partner completes the session with.
//!
//! Every token here — the partnerToken in the URLs, the OAuth `state`, the termination
//! token — is 256 random bits, stored as its SHA-256, and single-purpose; the state and the
//! PKCE verifier are single-use.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::connections::GrantedConsent;
use super::{Error, Services};
use crate::model::{Partner, UserSource, ts};
use crate::store::{Attempt, SessionRecord, StoredStatus};

/// How long a session's URLs work, on the partner's time (a sandbox partner that moves its
/// clock sees its sessions expire).
pub const SESSION_TTL: TimeDelta = TimeDelta::minutes(30);
/// The longest `correlationId`.
pub const MAX_CORRELATION_ID: usize = 256;

/// Where a session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionStatus {
    /// Created; the user has not opened a URL.
    Created,
    /// The user opened a URL.
    InProgress,
    /// The user came back from the bank; the partner has not completed it.
    AwaitingCompletion,
    /// Completed by the partner.
    Completed,
    /// Its 30 minutes passed before it was completed.
    Expired,
    /// It failed.
    Failed,
}

/// A session as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// Its id.
    pub session_id: Uuid,
    /// The user it connects.
    pub user_id: Uuid,
    /// Where it is.
    pub status: SessionStatus,
    /// The page to send the user to (only in the answer that created the session: it holds
    /// the session's secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_url: Option<String>,
    /// The page where the user manages their connections (same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub management_url: Option<String>,
    /// When its URLs stop working.
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: DateTime<Utc>,
    /// The partner's reference, unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// What `POST /v1/sessions` asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession {
    /// The user.
    pub user_id: Uuid,
    /// Where the user goes back to.
    pub partner_redirect_url: String,
    /// The partner's reference.
    pub correlation_id: Option<String>,
}

/// What the connection page shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionPage {
    /// The partner's name.
    pub partner_name: String,
    /// The banks the user may pick: (id, name).
    pub banks: Vec<(String, String)>,
}

/// What the management page shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagementPage {
    /// The partner's name.
    pub partner_name: String,
    /// The user's connections, newest first.
    pub connections: Vec<Connection>,
}

/// One consent of the user at a bank, with its accounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The bank.
    pub bank_id: String,
    /// Its name.
    pub bank_name: String,
    /// The bank's id for the consent.
    pub consent_id: String,
    /// When it ends.
    pub expires_at: Option<DateTime<Utc>>,
    /// Neither ended nor past its end.
    pub active: bool,
    /// Its accounts.
    pub accounts: Vec<crate::model::Account>,
}

/// Why a journey page cannot go on, in words for the end user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JourneyError {
    /// Unknown session, wrong token, or a used state: nothing changes.
    #[error("This link is not valid, or was already used.")]
    NotValid,
    /// The session's 30 minutes passed, or it was completed.
    #[error("This link has expired. Go back to the app you came from and start again.")]
    Expired,
    /// That bank is not one freshet reaches.
    #[error("That bank is not available.")]
    NoSuchBank,
    /// The bank could not be reached.
    #[error("Your bank could not be reached just now. Please try again in a moment.")]
    BankUnavailable,
    /// Ours.
    #[error("Something went wrong on our side. Please try again in a moment.")]
    Internal(String),
}

impl From<crate::store::StoreError> for JourneyError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn fresh_token() -> Result<String, Error> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `url` may receive users back: an absolute https URL, or http on loopback where
/// the server allows it (sandbox, insecure targets).
fn redirect_allowed(url: &str, loopback_http: bool) -> bool {
    use crate::model::forms::{is_https_url, is_loopback_http_url};
    url::Url::parse(url).is_ok()
        && (is_https_url(url) || (loopback_http && is_loopback_http_url(url)))
}

fn view(record: &SessionRecord, now: DateTime<Utc>) -> Session {
    let status = match record.status {
        StoredStatus::Completed => SessionStatus::Completed,
        StoredStatus::Failed => SessionStatus::Failed,
        _ if record.expires_at <= now => SessionStatus::Expired,
        StoredStatus::Created => SessionStatus::Created,
        StoredStatus::InProgress => SessionStatus::InProgress,
        StoredStatus::AwaitingCompletion => SessionStatus::AwaitingCompletion,
    };
    Session {
        session_id: record.id,
        user_id: record.user_id,
        status,
        connection_url: None,
        management_url: None,
        expires_at: record.expires_at,
        correlation_id: record.correlation_id.clone(),
    }
}

impl Services {
    /// The base URL of freshet's own pages (`--public-url`).
    pub fn public_url(&self) -> String {
        self.public_url
            .get()
            .cloned()
            .unwrap_or_else(|| "http://127.0.0.1:3000".to_owned())
    }

    /// Where banks send users back: freshet's callback.
    pub fn callback_url(&self) -> String {
        format!("{}/connect/callback", self.public_url())
    }

    /// Creates a session for `partner`'s user, with its URLs.
    pub async fn create_session(
        &self,
        partner: &Partner,
        new: NewSession,
    ) -> Result<Session, Error> {
        let user = self.user(partner.id, new.user_id).await?;
        if user.source == UserSource::Marketplace {
            return Err(Error::MarketplaceUser);
        }
        let loopback_http = self.sandbox || self.webhook_targets.allows_loopback();
        if !redirect_allowed(&new.partner_redirect_url, loopback_http) {
            return Err(Error::InvalidRedirect);
        }
        if new
            .correlation_id
            .as_ref()
            .is_some_and(|c| c.is_empty() || c.chars().count() > MAX_CORRELATION_ID)
        {
            return Err(Error::Invalid(format!(
                "correlationId must be 1 to {MAX_CORRELATION_ID} characters"
            )));
        }
        let now = self.clock.now_for(partner.id);
        let token = fresh_token()?;
        let record = SessionRecord {
            id: crate::model::new_id(),
            partner_id: partner.id,
            user_id: new.user_id,
            partner_redirect_url: new.partner_redirect_url,
            correlation_id: new.correlation_id,
            status: StoredStatus::Created,
            outcome: None,
            created_at: now,
            expires_at: now + SESSION_TTL,
        };
        self.store.sessions().create(&record, &hash(&token)).await?;
        let base = self.public_url();
        Ok(Session {
            connection_url: Some(format!("{base}/connect/{}?partnerToken={token}", record.id)),
            management_url: Some(format!("{base}/manage/{}?partnerToken={token}", record.id)),
            ..view(&record, now)
        })
    }

    /// `partner`'s session `id`.
    pub async fn session_of(&self, partner: Uuid, id: Uuid) -> Result<Session, Error> {
        let record = self
            .store
            .sessions()
            .get(partner, id)
            .await?
            .ok_or(Error::SessionNotFound)?;
        Ok(view(&record, self.clock.now_for(partner)))
    }

    /// Completes the session whose termination token is `token` (again: the same answer).
    pub async fn complete_session(&self, partner: Uuid, token: &str) -> Result<Session, Error> {
        let record = self
            .store
            .sessions()
            .by_termination_token(partner, &hash(token))
            .await?
            .ok_or(Error::SessionTokenInvalid)?;
        let now = self.clock.now_for(partner);
        if record.status == StoredStatus::Completed {
            return Ok(view(&record, now));
        }
        if record.expires_at <= now {
            return Err(Error::SessionNotFound);
        }
        self.store
            .sessions()
            .advance(
                record.id,
                &[StoredStatus::AwaitingCompletion],
                StoredStatus::Completed,
                None,
                None,
                now,
            )
            .await?;
        self.session_of(partner, record.id).await
    }

    /// The session behind a journey URL, while its URLs work.
    async fn journey_session(&self, id: Uuid, token: &str) -> Result<SessionRecord, JourneyError> {
        let record = self
            .store
            .sessions()
            .by_partner_token(id, &hash(token))
            .await?
            .ok_or(JourneyError::NotValid)?;
        if record.expires_at <= self.clock.now_for(record.partner_id)
            || matches!(
                record.status,
                StoredStatus::Completed | StoredStatus::Failed
            )
        {
            return Err(JourneyError::Expired);
        }
        Ok(record)
    }

    /// The connection page of session `id` (the user opened it: `IN_PROGRESS`).
    pub async fn connection_page(
        &self,
        id: Uuid,
        token: &str,
    ) -> Result<ConnectionPage, JourneyError> {
        let record = self.journey_session(id, token).await?;
        self.store
            .sessions()
            .advance(
                id,
                &[StoredStatus::Created],
                StoredStatus::InProgress,
                None,
                None,
                self.clock.now_for(record.partner_id),
            )
            .await?;
        let partner = self
            .partner(record.partner_id)
            .await
            .map_err(|e| JourneyError::Internal(e.to_string()))?
            .ok_or(JourneyError::NotValid)?;
        let banks = self
            .open_banking
            .read()
            .map(|banks| {
                let mut list: Vec<(String, String)> = banks
                    .values()
                    .map(|b| (b.bank_id().to_owned(), b.bank_name().to_owned()))
                    .collect();
                list.sort_by(|a, b| a.1.cmp(&b.1));
                list
            })
            .unwrap_or_default();
        Ok(ConnectionPage {
            partner_name: partner.name,
            banks,
        })
    }

    /// The management page of session `id`: the partner's name and the user's connections,
    /// each consent with its accounts.
    pub async fn management_page(
        &self,
        id: Uuid,
        token: &str,
    ) -> Result<ManagementPage, JourneyError> {
        let record = self.journey_session(id, token).await?;
        let partner = self
            .partner(record.partner_id)
            .await
            .map_err(|e| JourneyError::Internal(e.to_string()))?
            .ok_or(JourneyError::NotValid)?;
        let accounts = self
            .accounts(record.partner_id, record.user_id)
            .await
            .map_err(|e| JourneyError::Internal(e.to_string()))?;
        let now = self.clock.now_for(record.partner_id);
        let connections = self
            .store
            .bank_consents()
            .of_user(&record.user_id.to_string())
            .await?
            .into_iter()
            .map(|(consent, ids)| Connection {
                bank_name: self
                    .bank_directory
                    .name_of(&consent.bank_id)
                    .unwrap_or_else(|| consent.bank_id.clone()),
                active: consent.ended_at.is_none()
                    && consent.expires_at.is_none_or(|end| end > now),
                accounts: accounts
                    .iter()
                    .filter(|a| ids.contains(&a.account_id.to_string()))
                    .cloned()
                    .collect(),
                bank_id: consent.bank_id,
                consent_id: consent.bank_consent_id,
                expires_at: consent.expires_at,
            })
            // A consent renewed by another holds no accounts any more: not a connection.
            .filter(|c| !c.accounts.is_empty())
            .collect();
        Ok(ManagementPage {
            partner_name: partner.name,
            connections,
        })
    }

    /// The user unlinks a connection from the management page: the consent is revoked at
    /// the bank, its accounts turn `EXPIRED`, `v1.consent.revoked` (`USER_UNLINKED`).
    pub async fn unlink(
        &self,
        id: Uuid,
        token: &str,
        bank_id: &str,
        consent_id: &str,
    ) -> Result<(), JourneyError> {
        let record = self.journey_session(id, token).await?;
        let consent = self
            .store
            .bank_consents()
            .get(bank_id, consent_id)
            .await?
            .filter(|c| c.user_id == record.user_id.to_string())
            .ok_or(JourneyError::NotValid)?;
        let bank = self
            .open_banking(&consent.bank_id)
            .ok_or(JourneyError::NoSuchBank)?;
        // Ended here first: a fetch running meanwhile then meets a consent freshet no longer
        // uses (not one "the bank revoked"), and the user's wish holds even if the bank is
        // not reachable now — unlinking again asks the bank again.
        self.store
            .bank_consents()
            .ended(bank_id, consent_id, self.clock.now(), "USER_UNLINKED")
            .await?;
        bank.revoke_consent(consent_id).await.map_err(|e| match e {
            crate::bank::BankError::Internal(why) | crate::bank::BankError::Storage(why) => {
                JourneyError::Internal(why)
            }
            _ => JourneyError::BankUnavailable,
        })?;
        Ok(())
    }

    /// The user picked `bank_id`: a consent is created there, and the answer is where to
    /// send the browser (the bank's authorization page).
    pub async fn start_at_bank(
        &self,
        id: Uuid,
        token: &str,
        bank_id: &str,
    ) -> Result<String, JourneyError> {
        self.authorize_at_bank(id, token, bank_id, None).await
    }

    /// The user asked to re-authenticate consent `consent_id` from the management page: a
    /// new consent at the same bank, whose callback moves the accounts to it.
    pub async fn renew_at_bank(
        &self,
        id: Uuid,
        token: &str,
        bank_id: &str,
        consent_id: &str,
    ) -> Result<String, JourneyError> {
        let record = self.journey_session(id, token).await?;
        self.store
            .bank_consents()
            .get(bank_id, consent_id)
            .await?
            .filter(|c| c.user_id == record.user_id.to_string())
            .ok_or(JourneyError::NotValid)?;
        self.authorize_at_bank(id, token, bank_id, Some(consent_id.to_owned()))
            .await
    }

    async fn authorize_at_bank(
        &self,
        id: Uuid,
        token: &str,
        bank_id: &str,
        renews: Option<String>,
    ) -> Result<String, JourneyError> {
        let record = self.journey_session(id, token).await?;
        let bank = self.open_banking(bank_id).ok_or(JourneyError::NoSuchBank)?;
        let (consent_id, _) = bank.create_consent().await.map_err(|e| match e {
            crate::bank::BankError::Internal(why) | crate::bank::BankError::Storage(why) => {
                JourneyError::Internal(why)
            }
            _ => JourneyError::BankUnavailable,
        })?;
        let state = fresh_token().map_err(|e| JourneyError::Internal(e.to_string()))?;
        let verifier = fresh_token().map_err(|e| JourneyError::Internal(e.to_string()))?;
        let sealed = self
            .keys
            .seal(&verifier_context(&state), verifier.as_bytes())
            .map_err(|e| JourneyError::Internal(e.to_string()))?;
        self.store
            .sessions()
            .begin_attempt(
                &hash(&state),
                &Attempt {
                    session_id: record.id,
                    bank_id: bank_id.to_owned(),
                    bank_consent_id: consent_id.clone(),
                    verifier: sealed,
                    renews,
                },
                self.clock.now(),
            )
            .await?;
        bank.authorization_url(&consent_id, &state, &verifier, &self.callback_url())
            .map_err(|e| JourneyError::Internal(e.to_string()))
    }

    /// The bank sent the user back with `state` and a `code` (or an `error`): the accounts
    /// are connected (or nothing is), and the answer is where to send the user — the
    /// partner's redirect URL with the termination token.
    pub async fn callback(
        &self,
        state: &str,
        code: Option<&str>,
        error: Option<&str>,
    ) -> Result<String, JourneyError> {
        // Taken out whatever happens next: a state is used once.
        let attempt = self
            .store
            .sessions()
            .take_attempt(&hash(state))
            .await?
            .ok_or(JourneyError::NotValid)?;
        let record = self
            .store
            .sessions()
            .by_id(attempt.session_id)
            .await?
            .ok_or(JourneyError::NotValid)?;
        let now = self.clock.now_for(record.partner_id);
        // A session waiting for completion may still come back from a renewal on its
        // management page: the newest termination token is the one that completes it.
        let open = [
            StoredStatus::Created,
            StoredStatus::InProgress,
            StoredStatus::AwaitingCompletion,
        ];
        if record.expires_at <= now || !open.contains(&record.status) {
            return Err(JourneyError::Expired);
        }
        let outcome = match (code, error) {
            (Some(code), None) => match self
                .exchange_and_connect(&record, &attempt, state, code)
                .await
            {
                Ok(()) => None,
                Err(e) => {
                    tracing::warn!(session = %record.id, error = %e, "a bank connection failed");
                    Some("bank_error")
                }
            },
            (_, Some("access_denied")) => Some("access_denied"),
            _ => Some("bank_error"),
        };
        let termination = fresh_token().map_err(|e| JourneyError::Internal(e.to_string()))?;
        let moved = self
            .store
            .sessions()
            .advance(
                record.id,
                &open,
                StoredStatus::AwaitingCompletion,
                Some(&hash(&termination)),
                outcome,
                now,
            )
            .await?;
        if !moved {
            return Err(JourneyError::Expired);
        }
        let mut back = url::Url::parse(&record.partner_redirect_url)
            .map_err(|e| JourneyError::Internal(e.to_string()))?;
        {
            let mut query = back.query_pairs_mut();
            query.append_pair("sessionTerminationToken", &termination);
            if let Some(error) = outcome {
                query.append_pair("error", error);
            }
            if let Some(correlation) = &record.correlation_id {
                query.append_pair("correlationId", correlation);
            }
        }
        Ok(back.into())
    }

    async fn exchange_and_connect(
        &self,
        record: &SessionRecord,
        attempt: &Attempt,
        state: &str,
        code: &str,
    ) -> Result<(), Error> {
        let bank = self
            .open_banking(&attempt.bank_id)
            .ok_or_else(|| Error::Internal(format!("bank {} is gone", attempt.bank_id)))?;
        let verifier = self
            .keys
            .open(&verifier_context(state), &attempt.verifier)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let verifier = String::from_utf8(verifier).map_err(|e| Error::Internal(e.to_string()))?;
        let tokens = bank
            .exchange_code(code, &verifier, &self.callback_url())
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let expires_at = bank
            .consent_expiry(&attempt.bank_consent_id)
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let granted = GrantedConsent {
            bank_id: attempt.bank_id.clone(),
            bank_consent_id: attempt.bank_consent_id.clone(),
            expires_at,
            access_token: tokens.access_token,
            expires_in: tokens.expires_in,
            refresh_token: tokens.refresh_token,
        };
        match &attempt.renews {
            Some(old) => {
                self.renew_consent(record.partner_id, record.user_id, old, granted)
                    .await?;
            }
            None => {
                self.connect_consent(record.partner_id, record.user_id, granted)
                    .await?;
            }
        }
        Ok(())
    }
}

/// What a sealed PKCE verifier is: the one of this state.
fn verifier_context(state: &str) -> String {
    format!("journey:{}:verifier", hex(&hash(state)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partners_send_users_back_to_https_or_in_development_to_loopback() {
        assert!(redirect_allowed("https://partner.example/back?x=1", false));
        assert!(!redirect_allowed(
            "https://partner.example/back#frag",
            false
        ));
        assert!(!redirect_allowed("http://partner.example/back", true));
        assert!(!redirect_allowed("http://127.0.0.1:8080/back", false));
        assert!(redirect_allowed("http://127.0.0.1:8080/back", true));
        assert!(redirect_allowed("http://localhost/back", true));
        assert!(!redirect_allowed("javascript:alert(1)", true));
        assert!(!redirect_allowed("/relative", true));
    }
}
