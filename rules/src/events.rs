//! The event types freshet tells partners about, by webhook and by server-sent event: the
//! one list that the server, the portal and the portal's wasm all read.

use serde::{Deserialize, Serialize};

/// A type of event a webhook subscription may ask for (`shared/spec/api.md`, Webhooks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// An on-demand refresh of one account ended with fresh data.
    #[serde(rename = "v1.account_transactions.on_demand_refresh.succeeded")]
    OnDemandRefreshSucceeded,
    /// An on-demand refresh of one account failed.
    #[serde(rename = "v1.account_transactions.on_demand_refresh.failed")]
    OnDemandRefreshFailed,
    /// The first fetch after a connection ended with data.
    #[serde(rename = "v1.account_transactions.user_initiated.succeeded")]
    UserInitiatedSucceeded,
    /// The first fetch after a connection failed (`shared/spec/connections.md`).
    #[serde(rename = "v1.account_transactions.user_initiated.failed")]
    UserInitiatedFailed,
    /// A scheduled refresh of one account ended with fresh data.
    #[serde(rename = "v1.account_transactions.scheduled_refresh.succeeded")]
    ScheduledRefreshSucceeded,
    /// A scheduled refresh of one account failed.
    #[serde(rename = "v1.account_transactions.scheduled_refresh.failed")]
    ScheduledRefreshFailed,
    /// A consent ends in 7 days, or in 1 day (once each).
    #[serde(rename = "v1.consent.expiring")]
    ConsentExpiring,
    /// A consent's end passed: its accounts are `EXPIRED`.
    #[serde(rename = "v1.consent.expired")]
    ConsentExpired,
    /// A consent was revoked (by the user at the bank or through freshet).
    #[serde(rename = "v1.consent.revoked")]
    ConsentRevoked,
    /// A consent was renewed (re-authenticated): a new end.
    #[serde(rename = "v1.consent.renewed")]
    ConsentRenewed,
}

impl EventType {
    /// Every event type, in the order the portal offers them.
    pub const ALL: [Self; 10] = [
        Self::OnDemandRefreshSucceeded,
        Self::OnDemandRefreshFailed,
        Self::UserInitiatedSucceeded,
        Self::UserInitiatedFailed,
        Self::ScheduledRefreshSucceeded,
        Self::ScheduledRefreshFailed,
        Self::ConsentExpiring,
        Self::ConsentExpired,
        Self::ConsentRevoked,
        Self::ConsentRenewed,
    ];

    /// The types that tell of one account's fetch (the others are about consents).
    pub const FETCHES: [Self; 6] = [
        Self::OnDemandRefreshSucceeded,
        Self::OnDemandRefreshFailed,
        Self::UserInitiatedSucceeded,
        Self::UserInitiatedFailed,
        Self::ScheduledRefreshSucceeded,
        Self::ScheduledRefreshFailed,
    ];

    /// The type's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnDemandRefreshSucceeded => "v1.account_transactions.on_demand_refresh.succeeded",
            Self::OnDemandRefreshFailed => "v1.account_transactions.on_demand_refresh.failed",
            Self::UserInitiatedSucceeded => "v1.account_transactions.user_initiated.succeeded",
            Self::UserInitiatedFailed => "v1.account_transactions.user_initiated.failed",
            Self::ScheduledRefreshSucceeded => {
                "v1.account_transactions.scheduled_refresh.succeeded"
            }
            Self::ScheduledRefreshFailed => "v1.account_transactions.scheduled_refresh.failed",
            Self::ConsentExpiring => "v1.consent.expiring",
            Self::ConsentExpired => "v1.consent.expired",
            Self::ConsentRevoked => "v1.consent.revoked",
            Self::ConsentRenewed => "v1.consent.renewed",
        }
    }

    /// The type named `text`, if there is one.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Whether the event tells of a fetch that ended with data.
    pub fn succeeded(self) -> bool {
        matches!(
            self,
            Self::OnDemandRefreshSucceeded
                | Self::UserInitiatedSucceeded
                | Self::ScheduledRefreshSucceeded
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_json() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        assert_eq!(EventType::parse("v1.webhook.test"), None);
    }
}
