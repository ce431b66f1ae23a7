//! The connector for a registered UK Open Banking bank: it presents each consent's access
//! token, refreshes it with the refresh token shortly before it expires (or when the bank
//! answers 401), keeps the new tokens sealed, and ends the consent — its accounts turn
//! `EXPIRED` — when the bank refuses the refresh token or says the consent is revoked.
//!
//! One refresh at a time per consent in this process: a bank that rotates refresh tokens
//! would refuse the second of two concurrent refreshes. (Several replicas will need the
//! same under a database lock.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;

use super::http::{UNAUTHORIZED, fetch_transactions};
use super::{AccountInfo, Bank, BankAccount, BankError, FetchedTransaction};
use crate::clock::Clock;
use crate::secrets::Keyring;
use crate::store::{BankConsent, BankRecord, SealedTokens, Store};

/// A token this close to its end is refreshed before use.
const REFRESH_MARGIN: TimeDelta = TimeDelta::seconds(30);

/// What a token's sealed value is, so that it opens only as that.
pub fn token_context(bank_id: &str, consent_id: &str, which: &str) -> String {
    format!("consent:{bank_id}:{consent_id}:{which}")
}

/// A registered bank, reached over HTTPS (or http on loopback) with OAuth tokens.
pub struct OpenBankingBank {
    bank: BankRecord,
    client_secret: String,
    http: reqwest::Client,
    store: Store,
    keys: Keyring,
    clock: Arc<Clock>,
    refreshing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for OpenBankingBank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenBankingBank")
            .field("bank", &self.bank.id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<i64>,
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AccountsAnswer {
    data: AccountsData,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AccountsData {
    #[serde(default)]
    account: Vec<ObAccount>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ObAccount {
    account_id: String,
    currency: String,
    account_sub_type: Option<String>,
    nickname: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BalancesAnswer {
    data: BalancesData,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BalancesData {
    #[serde(default)]
    balance: Vec<ObBalance>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ObBalance {
    amount: ObAmount,
    credit_debit_indicator: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ObAmount {
    amount: String,
}

fn unavailable(e: &reqwest::Error) -> BankError {
    if e.is_timeout() {
        BankError::Timeout
    } else {
        BankError::Unavailable
    }
}

impl OpenBankingBank {
    /// The connector of `bank`, its client secret opened with `keys`.
    /// The bank's registered limits.
    pub fn limits(&self) -> crate::bank::gate::BankLimits {
        crate::bank::gate::BankLimits {
            max_in_flight: self.bank.max_in_flight,
            requests_per_second: self.bank.requests_per_second,
        }
    }

    pub fn new(
        bank: BankRecord,
        keys: Keyring,
        store: Store,
        clock: Arc<Clock>,
    ) -> Result<Self, String> {
        let secret = keys
            .open(
                &crate::services::banks::client_secret_context(&bank.id),
                &bank.client_secret,
            )
            .map_err(|e| format!("bank {}: {e}", bank.id))?;
        let client_secret =
            String::from_utf8(secret).map_err(|_| format!("bank {}: secret not UTF-8", bank.id))?;
        let mut builder = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &bank.ca_pem {
            for certificate in reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| format!("bank {}: its CA: {e}", bank.id))?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        Ok(Self {
            bank,
            client_secret,
            http,
            store,
            keys,
            clock,
            refreshing: Mutex::new(HashMap::new()),
        })
    }

    /// The bank's id.
    pub fn bank_id(&self) -> &str {
        &self.bank.id
    }

    fn open(&self, consent_id: &str, which: &str, sealed: &str) -> Result<String, BankError> {
        let plain = self
            .keys
            .open(&token_context(&self.bank.id, consent_id, which), sealed)
            .map_err(|e| BankError::Internal(e.to_string()))?;
        String::from_utf8(plain).map_err(|_| BankError::Internal("a token is not UTF-8".into()))
    }

    /// Seals tokens the bank just gave for `consent_id`.
    pub fn seal(
        &self,
        consent_id: &str,
        access_token: &str,
        expires_in: Option<i64>,
        refresh_token: Option<&str>,
    ) -> Result<SealedTokens, BankError> {
        let seal = |which: &str, token: &str| {
            self.keys
                .seal(
                    &token_context(&self.bank.id, consent_id, which),
                    token.as_bytes(),
                )
                .map_err(|e| BankError::Internal(e.to_string()))
        };
        Ok(SealedTokens {
            access_token: seal("access", access_token)?,
            access_expires_at: self.clock.now()
                + TimeDelta::seconds(expires_in.unwrap_or(300).clamp(0, 86_400)),
            refresh_token: refresh_token.map(|t| seal("refresh", t)).transpose()?,
        })
    }

    async fn consent(&self, consent_id: &str) -> Result<BankConsent, BankError> {
        let consent = self
            .store
            .bank_consents()
            .get(&self.bank.id, consent_id)
            .await
            .map_err(|e| BankError::Storage(e.to_string()))?;
        match consent {
            Some(c) if c.ended_at.is_none() => Ok(c),
            _ => Err(BankError::ConsentRevoked),
        }
    }

    /// A usable access token of `consent_id`: the stored one, or — when it is about to
    /// expire, or `stale` says the bank refused it — a refreshed one.
    async fn access_token(
        &self,
        consent_id: &str,
        stale: Option<&str>,
    ) -> Result<String, BankError> {
        let lock = {
            let mut map = self
                .refreshing
                .lock()
                .map_err(|_| BankError::Internal("poisoned".into()))?;
            Arc::clone(map.entry(consent_id.to_owned()).or_default())
        };
        let _one_at_a_time = lock.lock().await;
        // Read under the lock: another task may have refreshed meanwhile.
        let consent = self.consent(consent_id).await?;
        let current = self.open(consent_id, "access", &consent.tokens.access_token)?;
        let expiring = consent.tokens.access_expires_at - REFRESH_MARGIN <= self.clock.now();
        if !expiring && stale != Some(current.as_str()) {
            return Ok(current);
        }
        let Some(sealed_refresh) = &consent.tokens.refresh_token else {
            self.end(consent_id).await?;
            return Err(BankError::ConsentRevoked);
        };
        let refresh = self.open(consent_id, "refresh", sealed_refresh)?;
        let answer = self
            .http
            .post(&self.bank.token_url)
            .basic_auth(&self.bank.client_id, Some(&self.client_secret))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
            ])
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        let status = answer.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(BankError::Unavailable);
        }
        if !status.is_success() {
            // invalid_grant: the refresh token is refused. Not a retry loop: the consent ends.
            tracing::warn!(bank = %self.bank.id, %status, "a refresh token was refused; the consent ends");
            self.end(consent_id).await?;
            return Err(BankError::ConsentRevoked);
        }
        let tokens: TokenAnswer = answer
            .json()
            .await
            .map_err(|e| BankError::Internal(format!("the token endpoint's answer: {e}")))?;
        let sealed = self.seal(
            consent_id,
            &tokens.access_token,
            tokens.expires_in,
            tokens.refresh_token.as_deref(),
        )?;
        self.store
            .bank_consents()
            .refreshed(&self.bank.id, consent_id, &sealed, self.clock.now())
            .await
            .map_err(|e| BankError::Storage(e.to_string()))?;
        Ok(tokens.access_token)
    }

    /// The bank ended the consent (refused its refresh token, or answered 403).
    async fn end(&self, consent_id: &str) -> Result<(), BankError> {
        self.store
            .bank_consents()
            .ended(&self.bank.id, consent_id, self.clock.now(), "BANK_REVOKED")
            .await
            .map(|_| ())
            .map_err(|e| BankError::Storage(e.to_string()))
    }

    /// Revokes consent `consent_id` at the bank (the user unlinked it). A consent the bank
    /// no longer knows counts as revoked.
    pub async fn revoke_consent(&self, consent_id: &str) -> Result<(), BankError> {
        let client = self.client_token().await?;
        let answer = self
            .http
            .delete(format!(
                "{}/account-access-consents/{consent_id}",
                self.bank.api_base
            ))
            .bearer_auth(&client)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        match answer.status() {
            s if s.is_success() || s == reqwest::StatusCode::NOT_FOUND => Ok(()),
            s if s.is_server_error() => Err(BankError::Unavailable),
            s => Err(BankError::Internal(format!("revoking the consent: {s}"))),
        }
    }

    /// GETs `path` of the AIS API with the consent's token (refreshed once on a 401).
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        consent_id: &str,
        path: &str,
    ) -> Result<T, BankError> {
        let url = format!("{}{path}", self.bank.api_base);
        let mut token = self.access_token(consent_id, None).await?;
        for attempt in 0..2 {
            let answer = self
                .http
                .get(&url)
                .bearer_auth(&token)
                .header("accept", "application/json")
                .send()
                .await
                .map_err(|e| unavailable(&e))?;
            match answer.status() {
                s if s.is_success() => {
                    return answer
                        .json()
                        .await
                        .map_err(|e| BankError::Internal(format!("{path}: {e}")));
                }
                reqwest::StatusCode::UNAUTHORIZED if attempt == 0 => {
                    token = self.access_token(consent_id, Some(&token)).await?;
                }
                reqwest::StatusCode::FORBIDDEN => {
                    self.end(consent_id).await?;
                    return Err(BankError::ConsentRevoked);
                }
                reqwest::StatusCode::TOO_MANY_REQUESTS => {
                    return Err(BankError::RateLimited { retry_after: None });
                }
                s if s.is_server_error() => return Err(BankError::Unavailable),
                s => {
                    return Err(BankError::Internal(format!(
                        "{path}: the bank answered {s}"
                    )));
                }
            }
        }
        Err(BankError::Internal(format!("{path}: unauthorized twice")))
    }
}

/// Tokens a bank granted for a consent (an authorization code exchanged).
#[derive(Clone, PartialEq, Eq)]
pub struct GrantedTokens {
    /// The access token.
    pub access_token: String,
    /// Seconds it lives.
    pub expires_in: Option<i64>,
    /// The refresh token.
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for GrantedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantedTokens")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConsentAnswer {
    data: ConsentData,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConsentData {
    consent_id: String,
    expiration_date_time: Option<DateTime<Utc>>,
}

/// The journey's calls: a consent at the bank, where to send the user, the code exchanged.
impl OpenBankingBank {
    async fn post_token(&self, form: &[(&str, &str)]) -> Result<TokenAnswer, BankError> {
        let answer = self
            .http
            .post(&self.bank.token_url)
            .basic_auth(&self.bank.client_id, Some(&self.client_secret))
            .form(form)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        let status = answer.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(BankError::Unavailable);
        }
        if !status.is_success() {
            return Err(BankError::Internal(format!(
                "the token endpoint answered {status}"
            )));
        }
        answer
            .json()
            .await
            .map_err(|e| BankError::Internal(format!("the token endpoint's answer: {e}")))
    }

    /// An access token for freshet itself (`client_credentials`): what consents are
    /// created, read and revoked with.
    async fn client_token(&self) -> Result<String, BankError> {
        self.post_token(&[("grant_type", "client_credentials"), ("scope", "accounts")])
            .await
            .map(|t| t.access_token)
    }

    /// Creates an account-access consent at the bank (with a `client_credentials` token):
    /// its id and when it ends.
    pub async fn create_consent(&self) -> Result<(String, Option<DateTime<Utc>>), BankError> {
        let client = self.client_token().await?;
        let answer = self
            .http
            .post(format!("{}/account-access-consents", self.bank.api_base))
            .bearer_auth(&client)
            .json(&serde_json::json!({
                "Data": { "Permissions": ["ReadAccountsDetail", "ReadBalances", "ReadTransactionsDetail"] },
                "Risk": {},
            }))
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        if answer.status().is_server_error() {
            return Err(BankError::Unavailable);
        }
        if !answer.status().is_success() {
            return Err(BankError::Internal(format!(
                "creating a consent: {}",
                answer.status()
            )));
        }
        let consent: ConsentAnswer = answer
            .json()
            .await
            .map_err(|e| BankError::Internal(format!("the consent's answer: {e}")))?;
        Ok((consent.data.consent_id, consent.data.expiration_date_time))
    }

    /// Where to send the user's browser to authorise `consent_id`, coming back to
    /// `redirect_uri` with `state`; PKCE S256 over `verifier`.
    pub fn authorization_url(
        &self,
        consent_id: &str,
        state: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, BankError> {
        let challenge = {
            use base64::Engine;
            use sha2::Digest;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()))
        };
        let mut url = url::Url::parse(&self.bank.authorization_url)
            .map_err(|e| BankError::Internal(format!("the authorization endpoint: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.bank.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "openid accounts")
            .append_pair("state", state)
            .append_pair("consent_id", consent_id)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// Exchanges an authorization code (with its PKCE verifier) for the consent's tokens.
    pub async fn exchange_code(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<GrantedTokens, BankError> {
        let tokens = self
            .post_token(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ])
            .await?;
        Ok(GrantedTokens {
            access_token: tokens.access_token,
            expires_in: tokens.expires_in,
            refresh_token: tokens.refresh_token,
        })
    }

    /// When consent `consent_id` ends, as the bank says.
    pub async fn consent_expiry(
        &self,
        consent_id: &str,
    ) -> Result<Option<DateTime<Utc>>, BankError> {
        let client = self.client_token().await?;
        let answer = self
            .http
            .get(format!(
                "{}/account-access-consents/{consent_id}",
                self.bank.api_base
            ))
            .bearer_auth(&client)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        if !answer.status().is_success() {
            return Err(BankError::Internal(format!(
                "reading the consent: {}",
                answer.status()
            )));
        }
        let consent: ConsentAnswer = answer
            .json()
            .await
            .map_err(|e| BankError::Internal(format!("the consent's answer: {e}")))?;
        Ok(consent.data.expiration_date_time)
    }

    /// The bank's name as registered.
    pub fn bank_name(&self) -> &str {
        &self.bank.name
    }
}

/// A decimal amount with its sign from the credit/debit indicator.
fn signed(amount: &str, indicator: &str) -> String {
    if indicator.eq_ignore_ascii_case("Debit") && !amount.starts_with('-') {
        format!("-{amount}")
    } else {
        amount.to_owned()
    }
}

#[async_trait::async_trait]
impl Bank for OpenBankingBank {
    async fn transactions(
        &self,
        account: &BankAccount,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<FetchedTransaction>, BankError> {
        let token = self.access_token(&account.consent_id, None).await?;
        let fetched = fetch_transactions(
            &self.http,
            &self.bank.api_base,
            &account.account_id,
            &token,
            since,
        )
        .await;
        match fetched {
            Err(BankError::Internal(why)) if why == UNAUTHORIZED => {
                let token = self.access_token(&account.consent_id, Some(&token)).await?;
                fetch_transactions(
                    &self.http,
                    &self.bank.api_base,
                    &account.account_id,
                    &token,
                    since,
                )
                .await
            }
            Err(BankError::ConsentRevoked) => {
                self.end(&account.consent_id).await?;
                Err(BankError::ConsentRevoked)
            }
            other => other,
        }
    }

    async fn balance(&self, account: &BankAccount) -> Result<Option<String>, BankError> {
        let balances: BalancesAnswer = self
            .get(
                &account.consent_id,
                &format!("/accounts/{}/balances", account.account_id),
            )
            .await?;
        Ok(balances
            .data
            .balance
            .first()
            .map(|b| signed(&b.amount.amount, &b.credit_debit_indicator)))
    }

    async fn accounts(&self, consent_id: &str) -> Result<Vec<AccountInfo>, BankError> {
        let listed: AccountsAnswer = self.get(consent_id, "/accounts").await?;
        let mut out = Vec::with_capacity(listed.data.account.len());
        for account in listed.data.account {
            let balances: BalancesAnswer = self
                .get(
                    consent_id,
                    &format!("/accounts/{}/balances", account.account_id),
                )
                .await?;
            let balance = balances.data.balance.first().map_or_else(
                || "0.00".to_owned(),
                |b| signed(&b.amount.amount, &b.credit_debit_indicator),
            );
            out.push(AccountInfo {
                account_type: match account.account_sub_type.as_deref() {
                    Some("Savings") => "SAVINGS",
                    Some("CreditCard") => "CREDIT_CARD",
                    _ => "CURRENT",
                }
                .to_owned(),
                account_id: account.account_id,
                currency: account.currency,
                nickname: account.nickname,
                balance,
            });
        }
        Ok(out)
    }
}
