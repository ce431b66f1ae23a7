//! The resources of the partner API, as the API writes them (`shared/spec/api.md`):
//! camelCase JSON, instants as RFC 3339 UTC with milliseconds, absent fields left out.

use chrono::{DateTime, Utc};
use freshet_rules::ConsentStatus;
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;
use uuid::Uuid;

pub mod forms;
pub mod webhooks;

/// A new id: UUID v7, time-ordered, so that new rows land at the end of their B-trees
/// and ids sort by creation.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// `text` as an id, only in the contract's one form: lowercase, hyphenated (the `uuid`
/// parser also takes `{…}`, `urn:uuid:`, unhyphenated and upper-case forms, which would
/// make one resource answer at many paths).
pub fn canonical_id(text: &str) -> Option<Uuid> {
    Uuid::try_parse(text)
        .ok()
        .filter(|id| id.hyphenated().encode_lower(&mut Uuid::encode_buffer()) == text)
}

pub(crate) fn ts<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&freshet_rules::format_timestamp(*at))
}

pub(crate) fn ts_opt<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => ts(at, s),
        None => s.serialize_none(),
    }
}

/// A Unix-millisecond column as an instant (out-of-range values read as the epoch, which
/// only a hand-edited database could hold).
pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// An instant as a Unix-millisecond column.
pub(crate) fn to_ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// `ACTIVE` or `EXPIRED`: how the OpenAPI document shows the rules' `ConsentStatus`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsentStatusDoc {
    /// The consent is in force.
    Active,
    /// The consent expired or was revoked.
    Expired,
}

/// A partner, as the authenticated caller of the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partner {
    /// The partner's id.
    pub id: Uuid,
    /// Its display name.
    pub name: String,
    /// Enrolled in the direct connection journey (may create and refresh direct users).
    pub direct_enabled: bool,
}

/// Where a user came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserSource {
    /// Through the partner's direct connection journey: refreshable on demand.
    Direct,
    /// Sourced from the marketplace: never refreshed on demand.
    Marketplace,
}

impl UserSource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "DIRECT",
            Self::Marketplace => "MARKETPLACE",
        }
    }

    pub(crate) fn parse(text: &str) -> Self {
        if text == "MARKETPLACE" {
            Self::Marketplace
        } else {
            Self::Direct
        }
    }
}

/// A partner's user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The user's id.
    pub user_id: Uuid,
    /// `DIRECT` or `MARKETPLACE`.
    pub source: UserSource,
    /// The partner's own reference, if it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_reference: Option<String>,
    /// When the user was created.
    #[serde(serialize_with = "ts")]
    pub created_at: DateTime<Utc>,
}

/// A connected bank account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// The account's id.
    pub account_id: Uuid,
    /// The bank.
    pub provider_name: String,
    /// `CURRENT`, `SAVINGS`, `CREDIT_CARD`, ...
    pub account_type: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Decimal string, e.g. `"1250.40"`.
    pub balance: String,
    /// `ACTIVE` or `EXPIRED`.
    #[schema(value_type = ConsentStatusDoc)]
    pub consent_status: ConsentStatus,
    /// When the consent ends, if it has an end.
    #[serde(serialize_with = "ts_opt", skip_serializing_if = "Option::is_none")]
    pub consent_expires_at: Option<DateTime<Utc>>,
    /// When transactions were last ingested; absent until the first ingestion.
    #[serde(serialize_with = "ts_opt", skip_serializing_if = "Option::is_none")]
    pub last_transaction_refresh_date: Option<DateTime<Utc>>,
    /// When a refresh still queued or running was triggered (not part of the API).
    #[serde(skip)]
    #[schema(ignore)]
    pub in_flight_since: Option<DateTime<Utc>>,
    /// The bank that holds the account: `sandbox`, or a `bankId` of `GET /v1/banks`.
    pub bank_id: String,
    /// That bank's name.
    pub bank_name: String,
    /// The consent at the bank that covers the account (not part of the API: the bank's
    /// id for it is the user's business with their bank).
    #[serde(skip)]
    #[schema(ignore)]
    pub bank_consent_id: String,
}

/// One booked transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    /// Our id.
    pub transaction_id: Uuid,
    /// The account it belongs to.
    pub account_id: Uuid,
    /// When freshet stored it (the order of the listing).
    #[serde(serialize_with = "ts")]
    pub created: DateTime<Utc>,
    /// When the bank booked it.
    #[serde(serialize_with = "ts")]
    pub booked_at: DateTime<Utc>,
    /// Decimal string; negative for money out.
    pub amount: String,
    /// ISO 4217 code.
    pub currency: String,
    /// The bank's description.
    pub description: String,
    /// The merchant, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_name: Option<String>,
    /// A category, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// `PENDING` until the bank books it (then the same transaction turns `BOOKED`).
    pub status: TransactionStatus,
}

/// Whether the bank has booked a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransactionStatus {
    /// Reported, not booked yet.
    Pending,
    /// Booked.
    Booked,
}

/// The state of a refresh job or of one of its accounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Waiting for a worker.
    Queued,
    /// Being fetched.
    Running,
    /// Done.
    Succeeded,
    /// Some accounts failed (jobs only).
    PartiallyFailed,
    /// Failed.
    Failed,
}

impl JobStatus {
    pub(crate) fn parse(text: &str) -> Self {
        match text {
            "RUNNING" => Self::Running,
            "SUCCEEDED" => Self::Succeeded,
            "PARTIALLY_FAILED" => Self::PartiallyFailed,
            "FAILED" => Self::Failed,
            _ => Self::Queued,
        }
    }
}

impl JobStatus {
    /// Whether the job (or item) has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::PartiallyFailed | Self::Failed)
    }
}

/// Why a job exists: it decides the type of the events its accounts produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// A partner's on-demand refresh (its events carry the `jobId`).
    OnDemand,
    /// The scheduler's periodic refresh.
    Scheduled,
    /// The first fetch after accounts were connected.
    Initial,
}

impl JobKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::OnDemand => "ON_DEMAND",
            Self::Scheduled => "SCHEDULED",
            Self::Initial => "INITIAL",
        }
    }

    /// The family of the events its accounts produce (D•One's names).
    pub(crate) fn event_family(self) -> &'static str {
        match self {
            Self::OnDemand => "on_demand_refresh",
            Self::Scheduled => "scheduled_refresh",
            Self::Initial => "user_initiated",
        }
    }

    pub(crate) fn parse(text: &str) -> Self {
        match text {
            "SCHEDULED" => Self::Scheduled,
            "INITIAL" => Self::Initial,
            _ => Self::OnDemand,
        }
    }
}

/// Why one account of a job failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemError {
    /// `BANK_UNAVAILABLE`, `BANK_TIMEOUT`, ...
    pub code: String,
    /// Whether asking again may succeed.
    pub retryable: bool,
}

/// One account of a refresh job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobItem {
    /// The account.
    pub account_id: Uuid,
    /// Where its fetch is.
    pub state: JobStatus,
    /// When it ended.
    #[serde(serialize_with = "ts_opt", skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Transactions new to freshet, once succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_transactions: Option<i64>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
}

/// A refresh job: the accounts one `201` triggered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// The job's id.
    pub job_id: Uuid,
    /// Whose accounts.
    pub user_id: Uuid,
    /// When the refresh was asked for.
    #[serde(serialize_with = "ts")]
    pub created_at: DateTime<Utc>,
    /// The job's state.
    pub status: JobStatus,
    /// Each triggered account.
    pub accounts: Vec<JobItem>,
}

/// `{"type", "eventId", ["subscriptionId",] "timestamp", "payload"}`: the body of an event,
/// the same for every attempt of a webhook delivery (receivers dedupe on `eventId`).
pub fn envelope(
    event_type: &str,
    event_id: &str,
    subscription_id: Option<&str>,
    created_at: DateTime<Utc>,
    payload: &str,
) -> String {
    let text = |s: &str| serde_json::Value::String(s.to_owned());
    let subscription = subscription_id
        .map(|s| format!(r#""subscriptionId":{},"#, text(s)))
        .unwrap_or_default();
    format!(
        r#"{{"type":{},"eventId":{},{subscription}"timestamp":{},"payload":{payload}}}"#,
        text(event_type),
        text(event_id),
        text(&freshet_rules::format_timestamp(created_at)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lowercase_hyphenated_ids_are_ids() {
        let id = "0191c2a4-7e7b-7c3e-9d4e-3a2b1c0d9e8f";
        assert!(canonical_id(id).is_some());
        for other in [
            "0191C2A4-7E7B-7C3E-9D4E-3A2B1C0D9E8F",
            "{0191c2a4-7e7b-7c3e-9d4e-3a2b1c0d9e8f}",
            "urn:uuid:0191c2a4-7e7b-7c3e-9d4e-3a2b1c0d9e8f",
            "0191c2a47e7b7c3e9d4e3a2b1c0d9e8f",
            "not an id",
        ] {
            assert_eq!(canonical_id(other), None, "{other}");
        }
    }
}
