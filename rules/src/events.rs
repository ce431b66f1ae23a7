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
    /// A scheduled refresh of one account ended with fresh data.
    #[serde(rename = "v1.account_transactions.scheduled_refresh.succeeded")]
    ScheduledRefreshSucceeded,
    /// A scheduled refresh of one account failed.
    #[serde(rename = "v1.account_transactions.scheduled_refresh.failed")]
    ScheduledRefreshFailed,
}

impl EventType {
    /// Every event type, in the order the portal offers them.
    pub const ALL: [Self; 5] = [
        Self::OnDemandRefreshSucceeded,
        Self::OnDemandRefreshFailed,
        Self::UserInitiatedSucceeded,
        Self::ScheduledRefreshSucceeded,
        Self::ScheduledRefreshFailed,
    ];

    /// The type's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnDemandRefreshSucceeded => "v1.account_transactions.on_demand_refresh.succeeded",
            Self::OnDemandRefreshFailed => "v1.account_transactions.on_demand_refresh.failed",
            Self::UserInitiatedSucceeded => "v1.account_transactions.user_initiated.succeeded",
            Self::ScheduledRefreshSucceeded => {
                "v1.account_transactions.scheduled_refresh.succeeded"
            }
            Self::ScheduledRefreshFailed => "v1.account_transactions.scheduled_refresh.failed",
        }
    }

    /// The type named `text`, if there is one.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Whether the event tells of a fetch that ended with data (else: one that failed).
    pub fn succeeded(self) -> bool {
        !matches!(
            self,
            Self::OnDemandRefreshFailed | Self::ScheduledRefreshFailed
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
