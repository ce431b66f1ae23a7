//! Talking to banks: the connector interface the refresh workers will call, its typed
//! failures, when a failed fetch is tried again, the HTTP connector, and the sandbox bank
//! it talks to. (The workers that use them come with the rest of the refresh engine.)

pub mod directory;
pub mod discovery;
pub mod gate;
pub mod http;
pub mod openbanking;
pub mod retry;
pub mod sandbox;

use chrono::{DateTime, Utc};

/// Why a fetch from a bank failed, as the job item and the `.failed` event name it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BankError {
    /// The bank answered 5xx or could not be reached.
    #[error("the bank is unavailable")]
    Unavailable,
    /// The bank did not answer within the timeout.
    #[error("the bank did not answer in time")]
    Timeout,
    /// The bank answered 429; `retry_after` is its `Retry-After`, in seconds, when it sent one.
    #[error("the bank is rate-limiting us")]
    RateLimited {
        /// Seconds the bank asked us to wait.
        retry_after: Option<u64>,
    },
    /// The bank says the user's consent was revoked (403): the account's consent becomes `EXPIRED`.
    #[error("the user's consent was revoked at the bank")]
    ConsentRevoked,
    /// Anything else: a malformed answer, a bug.
    #[error("internal: {0}")]
    Internal(String),
    /// freshet's own database failed mid-fetch (a restart, a dropped connection): not the
    /// bank's doing, nor the account's. The engine abandons the fetch, and the account runs
    /// again when its lease ends; nothing of it reaches the partner.
    #[error("the database: {0}")]
    Storage(String),
}

impl BankError {
    /// The stable code of `shared/spec/api.md`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable => "BANK_UNAVAILABLE",
            Self::Timeout => "BANK_TIMEOUT",
            Self::RateLimited { .. } => "BANK_RATE_LIMITED",
            Self::ConsentRevoked => "CONSENT_REVOKED",
            Self::Internal(_) | Self::Storage(_) => "INTERNAL",
        }
    }

    /// Whether asking again later may succeed (reported to partners as `retryable`).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable | Self::Timeout | Self::RateLimited { .. } | Self::Storage(_)
        )
    }
}

/// One transaction as a bank reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedTransaction {
    /// The bank's id for it: what ingestion deduplicates on.
    pub bank_transaction_id: String,
    /// When the bank booked it.
    pub booked_at: DateTime<Utc>,
    /// Decimal string; negative for money out.
    pub amount: String,
    /// ISO 4217 code.
    pub currency: String,
    /// The bank's description.
    pub description: String,
    /// The merchant, when known.
    pub merchant_name: Option<String>,
    /// A category, when known.
    pub category: Option<String>,
    /// Not booked yet: the bank may book it later, under this id or a new one.
    pub pending: bool,
    /// The bank's reference for the transaction, the same pending and booked (what a
    /// booking is matched on when its id changed), when the bank gives one.
    pub reference: Option<String>,
}

/// Which account to fetch, under which consent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankAccount {
    /// The bank's id in freshet (which connector fetches it).
    pub bank_id: String,
    /// The consent the user gave (sent as the bearer of the request).
    pub consent_id: String,
    /// The bank's id of the account.
    pub account_id: String,
}

/// One account a consent covers, as the bank describes it (with its balance now).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountInfo {
    /// The bank's id for the account.
    pub account_id: String,
    /// `CURRENT`, `SAVINGS`, ...
    pub account_type: String,
    /// ISO 4217 code.
    pub currency: String,
    /// What the user calls it.
    pub nickname: Option<String>,
    /// Decimal string; negative when overdrawn.
    pub balance: String,
}

/// A bank, as the refresh workers and the connection journey see it.
#[async_trait::async_trait]
pub trait Bank: Send + Sync + 'static {
    /// The account's transactions booked at or after `since` (all of them when `None`).
    async fn transactions(
        &self,
        account: &BankAccount,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<FetchedTransaction>, BankError>;

    /// The account's balance now (a decimal string, negative when overdrawn), when the
    /// bank tells it; asked after every successful fetch.
    async fn balance(&self, account: &BankAccount) -> Result<Option<String>, BankError> {
        let _ = account;
        Ok(None)
    }

    /// The accounts consent `consent_id` covers, with their balances. Banks reached only
    /// through sandbox shortcuts have no such call.
    async fn accounts(&self, consent_id: &str) -> Result<Vec<AccountInfo>, BankError> {
        let _ = consent_id;
        Err(BankError::Internal(
            "this bank lists no accounts by consent".to_owned(),
        ))
    }

    /// The banks whose share of calls is taken (their gate's slots all waited for, or
    /// their breaker open): the workers claim no more of their accounts for now.
    fn crowded(&self) -> Vec<String> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_retryability_follow_the_contract() {
        let cases = [
            (BankError::Unavailable, "BANK_UNAVAILABLE", true),
            (BankError::Timeout, "BANK_TIMEOUT", true),
            (
                BankError::RateLimited {
                    retry_after: Some(3),
                },
                "BANK_RATE_LIMITED",
                true,
            ),
            (BankError::ConsentRevoked, "CONSENT_REVOKED", false),
            (BankError::Internal("bad json".into()), "INTERNAL", false),
        ];
        for (error, code, retryable) in cases {
            assert_eq!(error.code(), code);
            assert_eq!(error.retryable(), retryable, "{code}");
        }
    }
}
