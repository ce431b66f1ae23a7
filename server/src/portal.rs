//! The server's side of the portal: the services its server functions call.
//! Until storage lands, the preview page shows one sample user whose accounts are laid
//! out relative to the server's clock so that every rule is visible at first sight.

use std::sync::Arc;

use app::model::{PortalAccount, UserAccounts};
use app::services::{PortalServices, ServiceError};
use chrono::TimeDelta;
use freshet_rules::{AccountState, RefreshPolicy};

use crate::clock::Clock;

/// The portal services of a server without storage: a sample user.
#[derive(Debug)]
pub struct SamplePortal {
    clock: Arc<Clock>,
    policy: RefreshPolicy,
}

impl SamplePortal {
    /// Services reading `clock` and deciding with `policy`.
    pub fn new(clock: Arc<Clock>, policy: RefreshPolicy) -> Self {
        Self { clock, policy }
    }
}

#[async_trait::async_trait]
impl PortalServices for SamplePortal {
    async fn sample_user(&self) -> Result<UserAccounts, ServiceError> {
        let now = self.clock.now();
        let account = |id: &str, provider: &str, kind: &str, state: AccountState| PortalAccount {
            account_id: id.to_owned(),
            provider_name: provider.to_owned(),
            account_type: kind.to_owned(),
            consent_status: state.consent_status,
            consent_expires_at: state.consent_expires_at,
            last_transaction_refresh_date: state.last_transaction_refresh_date,
            in_flight_since: state.in_flight_since,
        };
        Ok(UserAccounts {
            user_id: "7d1f0c2a-5b8e-4c3d-9a61-2f4e8b9c0d13".to_owned(),
            now,
            interval_seconds: self.policy.interval().num_seconds(),
            accounts: vec![
                // Stale: refreshed 25 minutes ago, so a refresh triggers every eligible account.
                account(
                    "acc-1-current",
                    "Monzo",
                    "CURRENT",
                    AccountState::active("").refreshed_at(now - TimeDelta::minutes(25)),
                ),
                // Fresh: refreshed 5 minutes ago; triggers along with the stale one.
                account(
                    "acc-2-savings",
                    "Starling",
                    "SAVINGS",
                    AccountState::active("").refreshed_at(now - TimeDelta::minutes(5)),
                ),
                // Consent gone: always skipped as ACCOUNT_EXPIRED.
                account(
                    "acc-3-credit",
                    "Barclays",
                    "CREDIT_CARD",
                    AccountState::expired("").refreshed_at(now - TimeDelta::days(3)),
                ),
            ],
        })
    }
}
