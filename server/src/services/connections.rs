//! Connecting a user's accounts once they have consented at their bank: the tokens the bank
//! granted are sealed and kept with the consent, the accounts and balances are read from the
//! bank, and the accounts are created with their first fetch queued (each announced by
//! `user_initiated.succeeded` or `.failed`). The connection journey's callback ends here.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Error, Services};
use crate::bank::{AccountInfo, BankError};
use freshet_rules::ConsentStatus;

use crate::model::Account;
use crate::store::{AccountAtBank, BankConsent, ConnectQuota, Connected, NewAccount};

/// What the bank granted for one consent of one user.
#[derive(Clone, PartialEq, Eq)]
pub struct GrantedConsent {
    /// The bank.
    pub bank_id: String,
    /// The bank's id for the consent.
    pub bank_consent_id: String,
    /// When the consent ends at the bank, if it said.
    pub expires_at: Option<DateTime<Utc>>,
    /// The access token.
    pub access_token: String,
    /// Seconds the access token lives, if the bank said.
    pub expires_in: Option<i64>,
    /// The refresh token.
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for GrantedConsent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantedConsent")
            .field("bank_id", &self.bank_id)
            .field("bank_consent_id", &self.bank_consent_id)
            .finish_non_exhaustive()
    }
}

impl Services {
    /// Keeps `granted` (tokens sealed) for `user_id` of `partner`, reads the accounts it
    /// covers from the bank, and connects them with their first fetch queued.
    pub async fn connect_consent(
        &self,
        partner: Uuid,
        user_id: Uuid,
        granted: GrantedConsent,
    ) -> Result<Vec<Account>, Error> {
        let found = self.keep_and_read(partner, user_id, &granted).await?;
        self.connect_found(partner, user_id, &granted, found).await
    }

    /// Consent `old` was re-authenticated as `granted`: its accounts that the bank still
    /// lists move to the new consent (`v1.consent.renewed`), accounts the user added are
    /// connected with their first fetch. Returns the accounts connected anew.
    pub async fn renew_consent(
        &self,
        partner: Uuid,
        user_id: Uuid,
        old: &str,
        granted: GrantedConsent,
    ) -> Result<Vec<Account>, Error> {
        let found = self.keep_and_read(partner, user_id, &granted).await?;
        let at_bank: Vec<(String, String)> = found
            .iter()
            .map(|a| (a.account_id.clone(), a.balance.clone()))
            .collect();
        let moved = self
            .store
            .bank_consents()
            .renewed(
                &granted.bank_id,
                old,
                &granted.bank_consent_id,
                granted.expires_at,
                &at_bank,
                self.clock.now(),
            )
            .await?;
        let added: Vec<AccountInfo> = found
            .into_iter()
            .filter(|a| !moved.contains(&a.account_id))
            .collect();
        if added.is_empty() {
            return Ok(Vec::new());
        }
        self.connect_found(partner, user_id, &granted, added).await
    }

    /// Keeps the grant's tokens (sealed) and reads the accounts it covers from the bank.
    async fn keep_and_read(
        &self,
        partner: Uuid,
        user_id: Uuid,
        granted: &GrantedConsent,
    ) -> Result<Vec<AccountInfo>, Error> {
        let connector = self
            .open_banking(&granted.bank_id)
            .ok_or_else(|| Error::Invalid(format!("no bank {} on this server", granted.bank_id)))?;
        // Refused before anything is kept: not this partner's user.
        self.user(partner, user_id).await?;
        let sealed = connector
            .seal(
                &granted.bank_consent_id,
                &granted.access_token,
                granted.expires_in,
                granted.refresh_token.as_deref(),
            )
            .map_err(|e| Error::Internal(e.to_string()))?;
        let now = self.clock.now();
        self.store
            .bank_consents()
            .save(
                &BankConsent {
                    bank_id: granted.bank_id.clone(),
                    bank_consent_id: granted.bank_consent_id.clone(),
                    user_id: user_id.to_string(),
                    tokens: sealed,
                    expires_at: granted.expires_at,
                    ended_at: None,
                },
                now,
            )
            .await?;
        let found = self
            .bank_directory
            .accounts(&granted.bank_id, &granted.bank_consent_id)
            .await
            .map_err(|e| match e {
                BankError::Unavailable | BankError::Timeout | BankError::RateLimited { .. } => {
                    Error::BankUnavailable
                }
                other => Error::Internal(other.to_string()),
            })?;
        Ok(found)
    }

    /// Connects the accounts `found` under `granted`, their first fetch queued.
    async fn connect_found(
        &self,
        partner: Uuid,
        user_id: Uuid,
        granted: &GrantedConsent,
        found: Vec<AccountInfo>,
    ) -> Result<Vec<Account>, Error> {
        let now = self.clock.now();
        let provider = self
            .bank_directory
            .name_of(&granted.bank_id)
            .unwrap_or_else(|| granted.bank_id.clone());
        let accounts: Vec<NewAccount> = found
            .into_iter()
            .map(|a| NewAccount {
                account_id: crate::model::new_id(),
                provider_name: provider.clone(),
                account_type: a.account_type,
                currency: a.currency,
                balance: a.balance,
                consent_status: ConsentStatus::Active,
                consent_expires_at: granted.expires_at,
                last_transaction_refresh_date: None,
                bank: AccountAtBank {
                    bank_id: granted.bank_id.clone(),
                    account_id: a.account_id,
                    consent_id: granted.bank_consent_id.clone(),
                },
                history: Vec::new(),
            })
            .collect();
        let quota = ConnectQuota {
            accounts_per_user: u32::MAX,
            transactions_per_partner: u32::MAX,
        };
        match self
            .store
            .accounts()
            .connect(
                partner,
                user_id,
                &accounts,
                Some(now),
                self.clock.now_for(partner),
                quota,
            )
            .await?
        {
            Connected::Accounts(mut accounts) => {
                self.name_banks(&mut accounts);
                Ok(accounts)
            }
            Connected::NoSuchUser => Err(Error::UserNotFound),
            Connected::OverQuota => Err(Error::Internal("over an unlimited quota".to_owned())),
        }
    }
}
