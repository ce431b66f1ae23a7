//! The data the portal's pages show, shared by the server (which fills it) and the
//! browser (which hydrates from it). Instants travel as Unix milliseconds: the browser
//! then needs no date parser, which keeps the wasm small.

use chrono::serde::{ts_milliseconds, ts_milliseconds_option};
use chrono::{DateTime, Utc};
use freshet_rules::{AccountState, ConsentStatus};
use serde::{Deserialize, Serialize};

/// One connected account as the portal shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortalAccount {
    /// The account's id.
    pub account_id: String,
    /// The bank, e.g. "Monzo".
    pub provider_name: String,
    /// `CURRENT`, `SAVINGS`, `CREDIT_CARD`, ...
    pub account_type: String,
    /// Whether the Open Banking consent is in force.
    pub consent_status: ConsentStatus,
    /// When the consent ends, if it has an end.
    #[serde(with = "ts_milliseconds_option")]
    pub consent_expires_at: Option<DateTime<Utc>>,
    /// When transaction data was last ingested; absent before the first ingestion.
    #[serde(with = "ts_milliseconds_option")]
    pub last_transaction_refresh_date: Option<DateTime<Utc>>,
    /// When a refresh still queued or running was triggered.
    #[serde(with = "ts_milliseconds_option")]
    pub in_flight_since: Option<DateTime<Utc>>,
}

impl PortalAccount {
    /// What the refresh rules read of this account: the same fields the server decides on.
    pub fn rules_state(&self) -> AccountState {
        AccountState {
            account_id: self.account_id.clone(),
            consent_status: self.consent_status,
            consent_expires_at: self.consent_expires_at,
            last_transaction_refresh_date: self.last_transaction_refresh_date,
            in_flight_since: self.in_flight_since,
        }
    }

    /// "Monzo current account", "Barclays credit card".
    pub fn label(&self) -> String {
        let kind = match self.account_type.as_str() {
            "CURRENT" => "current account",
            "SAVINGS" => "savings",
            "CREDIT_CARD" => "credit card",
            "LOAN" => "loan",
            "MORTGAGE" => "mortgage",
            other => other,
        };
        format!("{} {kind}", self.provider_name)
    }
}

/// A user and their accounts, with the server's clock and refresh interval at the
/// moment of reading, so that the browser's preview decides exactly as the server would.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAccounts {
    /// The user's id.
    pub user_id: String,
    /// The server's `now` when the data was read (the sandbox clock, when shifted).
    #[serde(with = "ts_milliseconds")]
    pub now: DateTime<Utc>,
    /// The server's refresh interval.
    pub interval_seconds: i64,
    /// The user's connected accounts, by account id.
    pub accounts: Vec<PortalAccount>,
}
