//! The banks: registering one (`freshet bank add`: its endpoints given or discovered, its
//! client secret sealed before it is stored), rotating the key that seals the secrets, and
//! listing them for partners (`GET /v1/banks`) with a status read from their recent answers.

use crate::bank::gate::GateState;
use chrono::{DateTime, TimeDelta, Utc};

use super::{Error, Services};
use crate::bank::directory::SANDBOX;
use crate::bank::discovery::{check_endpoint, discover};
use crate::secrets::{Keyring, SecretError};
use crate::store::{BankRecord, Store};

/// The sandbox bank's name, as partners see it.
pub const SANDBOX_NAME: &str = "freshet Sandbox Bank";
/// How far back a bank's answers count towards its status.
const STATUS_WINDOW: TimeDelta = TimeDelta::minutes(15);

/// Where a bank's OAuth endpoints are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoints {
    /// Read from its OpenID Provider Configuration at this URL.
    Discovery(String),
    /// Given.
    Given {
        /// The authorization endpoint.
        authorization_url: String,
        /// The token endpoint.
        token_url: String,
    },
}

/// A bank to register (or update), as the operator gives it.
#[derive(Clone, PartialEq)]
pub struct BankRegistration {
    /// Its id in freshet: 1–64 of `a-z 0-9 -`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The base URL of its AIS API.
    pub api_base: String,
    /// Its OAuth endpoints.
    pub endpoints: Endpoints,
    /// freshet's client id there.
    pub client_id: String,
    /// freshet's client secret there, in clear (sealed before it is stored).
    pub client_secret: String,
    /// A private CA (PEM) its certificates chain to.
    pub ca_pem: Option<String>,
    /// Requests in flight at once.
    pub max_in_flight: u32,
    /// Requests a second.
    pub requests_per_second: f64,
}

impl std::fmt::Debug for BankRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BankRegistration")
            .field("id", &self.id)
            .field("client_secret", &"…")
            .finish_non_exhaustive()
    }
}

/// How a bank has been answering lately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BankStatus {
    /// Answering (or not asked lately).
    Available,
    /// A quarter or more of its recent fetches failed on its side.
    Degraded,
    /// Its recent fetches (three or more) all failed on its side.
    Unavailable,
}

impl BankStatus {
    /// The status of a bank whose recent fetches `succeeded` and `failed` (on its side:
    /// unavailable, timed out, rate-limiting) so many times.
    pub fn of(succeeded: u64, failed: u64) -> Self {
        if failed >= 3 && succeeded == 0 {
            Self::Unavailable
        } else if failed > 0 && failed * 4 >= (succeeded + failed) {
            Self::Degraded
        } else {
            Self::Available
        }
    }
}

/// A bank as partners see it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BankSummary {
    /// Its id: what accounts' `bankId` names.
    pub bank_id: String,
    /// Its name.
    pub name: String,
    /// How it has been answering in the last 15 minutes.
    pub status: BankStatus,
}

/// The sealed secret's context: a sealed secret moved to another bank's row does not open.
pub fn client_secret_context(bank_id: &str) -> String {
    format!("bank:{bank_id}:client_secret")
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Registers (or updates) a bank: checks what it can, reads the endpoints from the bank's
/// discovery document when asked to, seals the client secret, stores it. Returns whether
/// the bank is new.
pub async fn register(
    store: &Store,
    keys: &Keyring,
    bank: BankRegistration,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    if !valid_id(&bank.id) {
        return Err(Error::Invalid(
            "a bank id is 1 to 64 of a-z, 0-9 and '-'".to_owned(),
        ));
    }
    if bank.id == SANDBOX {
        return Err(Error::Invalid(
            "'sandbox' is the id of the sandbox bank (serve --sandbox)".to_owned(),
        ));
    }
    if bank.name.trim().is_empty() || bank.client_id.is_empty() || bank.client_secret.is_empty() {
        return Err(Error::Invalid(
            "a bank needs a name, a client id and a client secret".to_owned(),
        ));
    }
    if bank.max_in_flight == 0
        || !bank.requests_per_second.is_finite()
        || bank.requests_per_second <= 0.0
    {
        return Err(Error::Invalid(
            "a bank's limits must be positive".to_owned(),
        ));
    }
    check_endpoint(&bank.api_base).map_err(Error::Invalid)?;
    let (issuer, authorization_url, token_url) = match &bank.endpoints {
        Endpoints::Given {
            authorization_url,
            token_url,
        } => (None, authorization_url.clone(), token_url.clone()),
        Endpoints::Discovery(url) => {
            check_endpoint(url).map_err(Error::Invalid)?;
            let found = discover(&client_for(bank.ca_pem.as_deref())?, url)
                .await
                .map_err(Error::Invalid)?;
            (
                Some(found.issuer),
                found.authorization_endpoint,
                found.token_endpoint,
            )
        }
    };
    for endpoint in [&authorization_url, &token_url] {
        check_endpoint(endpoint).map_err(Error::Invalid)?;
    }
    let client_secret = keys
        .seal(
            &client_secret_context(&bank.id),
            bank.client_secret.as_bytes(),
        )
        .map_err(|e| Error::Internal(e.to_string()))?;
    let record = BankRecord {
        id: bank.id,
        name: bank.name.trim().to_owned(),
        api_base: bank.api_base.trim_end_matches('/').to_owned(),
        issuer,
        authorization_url,
        token_url,
        client_id: bank.client_id,
        client_secret,
        ca_pem: bank.ca_pem,
        max_in_flight: bank.max_in_flight,
        requests_per_second: bank.requests_per_second,
        created_at: now,
        updated_at: now,
    };
    Ok(store.banks().upsert(&record).await?)
}

/// An HTTP client that trusts the public roots and, when given, a private CA.
fn client_for(ca_pem: Option<&str>) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = ca_pem {
        let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| Error::Invalid(format!("the CA file: {e}")))?;
        if certificates.is_empty() {
            return Err(Error::Invalid(
                "the CA file holds no certificate".to_owned(),
            ));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(|e| Error::Internal(e.to_string()))
}

/// Seals every bank's client secret with the current key of `keys` (those it sealed are
/// left alone): all are opened first, so one that does not open stops the rotation before
/// anything is written. Returns how many were sealed again.
pub async fn reseal_secrets(store: &Store, keys: &Keyring) -> Result<u64, Error> {
    let mut resealed = Vec::new();
    for (id, sealed) in store.banks().sealed_secrets().await? {
        if keys.is_current(&sealed) {
            continue;
        }
        let context = client_secret_context(&id);
        let new = keys
            .open(&context, &sealed)
            .and_then(|plain| keys.seal(&context, &plain))
            .map_err(|e: SecretError| Error::Internal(format!("bank {id}: {e}")))?;
        resealed.push((id, sealed, new));
    }
    Ok(store.banks().replace_secrets(&resealed).await?)
}

impl Services {
    /// The banks a partner's users can connect, with how each has been answering.
    pub async fn banks(&self) -> Result<Vec<BankSummary>, Error> {
        let since = self.clock.now() - STATUS_WINDOW;
        let answers = self.store.banks().recent_answers(since).await?;
        let status = |id: &str| {
            // The gate knows first: a bank refused (breaker open) or paused right now.
            match self.bank_directory.gate_state(id) {
                Some(GateState::Open) => return BankStatus::Unavailable,
                Some(GateState::HalfOpen | GateState::Paused) => return BankStatus::Degraded,
                _ => {}
            }
            answers
                .iter()
                .find(|a| a.bank_id == id)
                .map_or(BankStatus::Available, |a| {
                    BankStatus::of(
                        u64::try_from(a.succeeded).unwrap_or(0),
                        u64::try_from(a.failed).unwrap_or(0),
                    )
                })
        };
        let mut banks: Vec<BankSummary> = self
            .store
            .banks()
            .list()
            .await?
            .into_iter()
            .map(|b| BankSummary {
                status: status(&b.id),
                bank_id: b.id,
                name: b.name,
            })
            .collect();
        if self.sandbox_bank.is_some() {
            banks.push(BankSummary {
                bank_id: SANDBOX.to_owned(),
                name: SANDBOX_NAME.to_owned(),
                status: status(SANDBOX),
            });
            banks.sort_by(|a, b| a.bank_id.cmp(&b.bank_id));
        }
        Ok(banks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bank_is_degraded_at_a_quarter_of_failures_and_unavailable_when_all_fail() {
        assert_eq!(BankStatus::of(0, 0), BankStatus::Available);
        assert_eq!(BankStatus::of(10, 0), BankStatus::Available);
        assert_eq!(BankStatus::of(10, 3), BankStatus::Available);
        assert_eq!(BankStatus::of(9, 3), BankStatus::Degraded);
        assert_eq!(BankStatus::of(0, 2), BankStatus::Degraded);
        assert_eq!(BankStatus::of(0, 3), BankStatus::Unavailable);
        assert_eq!(BankStatus::of(1, 30), BankStatus::Degraded);
    }

    #[test]
    fn bank_ids_are_short_lowercase_slugs() {
        assert!(valid_id("acme-bank-2"));
        assert!(!valid_id(""));
        assert!(!valid_id("Acme"));
        assert!(!valid_id("acme bank"));
        assert!(!valid_id(&"a".repeat(65)));
    }
}
