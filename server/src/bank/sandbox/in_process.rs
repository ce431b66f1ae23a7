//! The sandbox bank inside a `--sandbox` server, registered as bank `sandbox` like any other
//! bank: freshet is a client of its authorization server, so the connection journey offers
//! it and accounts connected through the journey are fetched with their consent's OAuth
//! tokens (through the same Open Banking connector as a real bank). The accounts that the
//! sandbox API creates directly hold a shortcut consent (`sbx.…`, see [`super::consent_id`])
//! that this bank reads as its own bearer; those go through the plain HTTP connector.
//!
//! The authorization server keeps its clients, consents and tokens in memory: after a
//! restart, consents made through the journey on the in-process bank are unknown to it, and
//! their next fetch ends them (`BANK_REVOKED`). `freshet sandbox-bank` in its own process
//! has the same limit; the shortcut accounts are unaffected (the bank derives their data).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::SandboxBank;
use crate::bank::http::HttpBank;
use crate::bank::openbanking::OpenBankingBank;
use crate::bank::{AccountInfo, Bank, BankAccount, BankError, FetchedTransaction};
use crate::clock::Clock;
use crate::secrets::Keyring;
use crate::store::{BankRecord, Store};

/// freshet's client id at the in-process sandbox bank.
pub const CLIENT_ID: &str = "freshet";

/// The `sandbox` entry of the bank directory: journey consents through OAuth, the sandbox
/// API's shortcut consents directly.
pub struct SandboxConnector {
    oauth: Arc<OpenBankingBank>,
    shortcut: HttpBank,
}

impl std::fmt::Debug for SandboxConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxConnector").finish_non_exhaustive()
    }
}

impl SandboxConnector {
    /// Makes freshet a client (with a fresh secret) of `bank`, which listens at `base` and
    /// sends users back to `callback`. Returns the directory's connector and the Open
    /// Banking connector the journey uses.
    pub fn register(
        bank: &SandboxBank,
        base: &str,
        callback: &str,
        keys: Keyring,
        store: Store,
        clock: Arc<Clock>,
    ) -> Result<(Self, Arc<OpenBankingBank>), String> {
        let mut secret = [0_u8; 24];
        getrandom::fill(&mut secret).map_err(|e| format!("randomness: {e}"))?;
        let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        bank.set_issuer(base);
        bank.authority
            .register_as(CLIENT_ID, &secret, vec![callback.to_owned()]);
        let sealed = keys
            .seal(
                &crate::services::banks::client_secret_context(super::super::directory::SANDBOX),
                secret.as_bytes(),
            )
            .map_err(|e| e.to_string())?;
        let now = clock.now();
        let record = BankRecord {
            id: super::super::directory::SANDBOX.to_owned(),
            name: crate::services::banks::SANDBOX_NAME.to_owned(),
            api_base: format!("{base}/open-banking/v3.1/aisp"),
            issuer: Some(base.to_owned()),
            authorization_url: format!("{base}/authorize"),
            token_url: format!("{base}/token"),
            client_id: CLIENT_ID.to_owned(),
            client_secret: sealed,
            ca_pem: None,
            // The sandbox bank is freshet's own: as many calls as the engine makes.
            max_in_flight: 4096,
            requests_per_second: f64::INFINITY,
            created_at: now,
            updated_at: now,
        };
        let oauth = Arc::new(OpenBankingBank::new(record, keys, store, clock)?);
        let shortcut = HttpBank::new(base.to_owned(), std::time::Duration::from_secs(10))
            .map_err(|e| format!("the sandbox bank's connector: {e}"))?;
        Ok((
            Self {
                oauth: Arc::clone(&oauth),
                shortcut,
            },
            oauth,
        ))
    }

    fn for_consent(&self, consent_id: &str) -> &dyn Bank {
        if consent_id.starts_with("sbx.") {
            &self.shortcut
        } else {
            &*self.oauth
        }
    }
}

#[async_trait::async_trait]
impl Bank for SandboxConnector {
    async fn transactions(
        &self,
        account: &BankAccount,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<FetchedTransaction>, BankError> {
        self.for_consent(&account.consent_id)
            .transactions(account, since)
            .await
    }

    async fn balance(&self, account: &BankAccount) -> Result<Option<String>, BankError> {
        self.for_consent(&account.consent_id).balance(account).await
    }

    async fn accounts(&self, consent_id: &str) -> Result<Vec<AccountInfo>, BankError> {
        self.for_consent(consent_id).accounts(consent_id).await
    }
}
