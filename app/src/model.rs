//! The data the portal's pages show, shared by the server (which fills it) and the
//! browser (which hydrates from it).

use chrono::{DateTime, Utc};
use freshet_rules::AccountState;
use serde::{Deserialize, Serialize};

/// One connected account as the portal shows it: what the rules need, and labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortalAccount {
    /// Consent, last refresh and in-flight state: exactly what the server's rules read.
    #[serde(flatten)]
    pub state: AccountState,
    /// The bank, e.g. "Monzo".
    pub provider_name: String,
    /// E.g. "CURRENT", "SAVINGS", "CREDIT_CARD".
    pub account_type: String,
}

/// A user and their accounts, with the server's clock and refresh interval at the
/// moment of reading, so that the browser's preview decides exactly as the server would.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAccounts {
    /// The user's id.
    pub user_id: String,
    /// The server's `now` when the data was read (the sandbox clock, when shifted).
    pub now: DateTime<Utc>,
    /// The server's refresh interval.
    pub interval_seconds: i64,
    /// The user's connected accounts, by account id.
    pub accounts: Vec<PortalAccount>,
}
