//! The rules' inputs and outputs, serialized with the JSON names of `shared/spec/api.md`.

use chrono::{DateTime, Utc};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use crate::policy::RefreshPolicy;
use crate::timestamp;

/// The Open Banking consent status of an account, as the API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsentStatus {
    /// The user's consent is in force (until `consentExpiresAt`, when that is set).
    Active,
    /// The consent has expired or was revoked; the account cannot be refreshed.
    Expired,
}

/// What the rules need to know about one connected account.
///
/// Unknown fields are ignored when reading, so an `Account` object of the API
/// (`GET /v1/users/{userId}/accounts`) can be passed as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountState {
    /// The account's id; decisions are listed in ascending order of it.
    pub account_id: String,
    /// Whether the consent is in force.
    pub consent_status: ConsentStatus,
    /// When the consent ends, if it has an end. Expiry exactly at `now` counts as expired.
    #[serde(
        default,
        serialize_with = "timestamp::serialize_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub consent_expires_at: Option<DateTime<Utc>>,
    /// When transaction data was last ingested for the account; absent before the first ingestion.
    #[serde(
        default,
        serialize_with = "timestamp::serialize_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_transaction_refresh_date: Option<DateTime<Utc>>,
    /// When a refresh of this account is queued or running: the moment that refresh was triggered.
    #[serde(
        default,
        serialize_with = "timestamp::serialize_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub in_flight_since: Option<DateTime<Utc>>,
}

impl AccountState {
    /// An account with active consent, no expiry, never refreshed and nothing in flight.
    pub fn active(account_id: impl Into<String>) -> Self {
        Self {
            account_id: account_id.into(),
            consent_status: ConsentStatus::Active,
            consent_expires_at: None,
            last_transaction_refresh_date: None,
            in_flight_since: None,
        }
    }

    /// An account whose consent has expired.
    pub fn expired(account_id: impl Into<String>) -> Self {
        Self {
            consent_status: ConsentStatus::Expired,
            ..Self::active(account_id)
        }
    }

    /// The same account, last refreshed at `at`.
    pub fn refreshed_at(self, at: DateTime<Utc>) -> Self {
        Self {
            last_transaction_refresh_date: Some(at),
            ..self
        }
    }

    /// The same account, with its consent ending at `at`.
    pub fn consent_until(self, at: DateTime<Utc>) -> Self {
        Self {
            consent_expires_at: Some(at),
            ..self
        }
    }

    /// The same account, with a refresh triggered at `at` still queued or running.
    pub fn in_flight_since(self, at: DateTime<Utc>) -> Self {
        Self {
            in_flight_since: Some(at),
            ..self
        }
    }

    /// Rule 1: the consent is active and, when it has an end, that end is later than `now`.
    pub fn has_valid_consent(&self, now: DateTime<Utc>) -> bool {
        self.consent_valid_at(now)
    }

    pub(crate) fn consent_valid_at(&self, at: DateTime<Utc>) -> bool {
        consent_status_at(self.consent_status, self.consent_expires_at, at) == ConsentStatus::Active
    }

    /// The moment the account counts as refreshed for rule 2: the later of its last
    /// ingestion and the trigger time of a refresh still in flight.
    pub fn effective_refreshed_at(&self) -> Option<DateTime<Utc>> {
        match (self.last_transaction_refresh_date, self.in_flight_since) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// `TRIGGERED` or `SKIPPED`: the `outcome` of one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// A bank fetch is started for the account.
    Triggered,
    /// Nothing is fetched; `reason` says why.
    Skipped,
}

/// Why an account was skipped: the `reason` of a `SKIPPED` account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SkipReason {
    /// No valid Open Banking consent.
    AccountExpired,
    /// Every eligible account was refreshed within the interval.
    RateLimited,
}

/// The decision for one account: triggered, or skipped with its reason.
/// An enum rather than two fields, so that a reason without a skip cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// `outcome: TRIGGERED`.
    Triggered,
    /// `outcome: SKIPPED` with a `reason`.
    Skipped(SkipReason),
}

impl Verdict {
    /// The `outcome` field.
    pub fn outcome(self) -> Outcome {
        match self {
            Self::Triggered => Outcome::Triggered,
            Self::Skipped(_) => Outcome::Skipped,
        }
    }

    /// The `reason` field, present only on a skip.
    pub fn reason(self) -> Option<SkipReason> {
        match self {
            Self::Triggered => None,
            Self::Skipped(reason) => Some(reason),
        }
    }
}

/// The overall `status` of a refresh request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// At least one account triggered: 201 with a job.
    Triggered,
    /// Every account skipped (or there is none): 200, no job.
    Skipped,
}

/// The decision for one account of the request.
///
/// Serializes as `{"accountId", "outcome", "reason"?, "nextEligibleAt"?}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountDecision<'a> {
    /// The account's id, borrowed from the input.
    pub account_id: &'a str,
    /// Triggered, or skipped and why.
    pub verdict: Verdict,
    /// For a `RATE_LIMITED` account: the moment it turns stale, so that a request from then on
    /// triggers it (the portal's countdown). Absent when it is not rate-limited, or when its
    /// consent ends before that moment.
    pub next_eligible_at: Option<DateTime<Utc>>,
}

impl Serialize for AccountDecision<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fields = 2
            + usize::from(self.verdict.reason().is_some())
            + usize::from(self.next_eligible_at.is_some());
        let mut st = s.serialize_struct("AccountDecision", fields)?;
        st.serialize_field("accountId", self.account_id)?;
        st.serialize_field("outcome", &self.verdict.outcome())?;
        if let Some(reason) = self.verdict.reason() {
            st.serialize_field("reason", &reason)?;
        }
        if let Some(at) = self.next_eligible_at {
            st.serialize_field("nextEligibleAt", &crate::format_timestamp(at))?;
        }
        st.end()
    }
}

/// The decision for a whole refresh request.
///
/// Serializes as `{"status", "nextRefreshAvailableAt"?, "accounts": [...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision<'a> {
    /// `TRIGGERED` when any account triggered, else `SKIPPED`.
    pub status: Status,
    /// On a skip: the earliest moment a new request would trigger; absent when none ever would
    /// (no accounts, every consent expired, or every consent ends first).
    #[serde(
        serialize_with = "timestamp::serialize_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_refresh_available_at: Option<DateTime<Utc>>,
    /// One decision per input account, in ascending order of `accountId`.
    pub accounts: Vec<AccountDecision<'a>>,
}

impl<'a> Decision<'a> {
    /// The HTTP status the API answers with: 201 when a job was created, 200 otherwise.
    pub fn http_status(&self) -> u16 {
        match self.status {
            Status::Triggered => 201,
            Status::Skipped => 200,
        }
    }

    /// The accounts that trigger a bank fetch.
    pub fn triggered(&self) -> impl Iterator<Item = &AccountDecision<'a>> {
        self.accounts
            .iter()
            .filter(|a| a.verdict == Verdict::Triggered)
    }

    /// The `Retry-After` header value on a skip: whole seconds until
    /// `nextRefreshAvailableAt`, rounded up so that a client waiting that long is never early.
    pub fn retry_after_seconds(&self, now: DateTime<Utc>) -> Option<u64> {
        let wait = self.next_refresh_available_at? - now;
        let millis = u64::try_from(wait.num_milliseconds()).ok()?;
        Some(millis.div_ceil(1000).max(1))
    }
}

/// A whole evaluation request as data: what the test vectors, the JavaScript package
/// and the portal's preview feed to [`crate::evaluate`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationInput {
    /// The user's connected accounts.
    pub accounts: Vec<AccountState>,
    /// The moment of the request.
    #[serde(serialize_with = "timestamp::serialize")]
    pub now: DateTime<Utc>,
    /// The refresh interval in seconds; the default (1,200) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<i64>,
}

impl EvaluationInput {
    /// The policy this input asks for.
    pub fn policy(&self) -> Result<RefreshPolicy, crate::PolicyError> {
        self.interval_seconds
            .map_or(Ok(RefreshPolicy::default()), RefreshPolicy::from_seconds)
    }
}

/// A consent's status at `now`: `EXPIRED` once its end (`expires_at`) has passed, whatever
/// was stored, else the stored status. The one place this is decided: the refresh decision,
/// the accounts API, the portal's badge and preview all read it.
pub fn consent_status_at(
    stored: ConsentStatus,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> ConsentStatus {
    match expires_at {
        Some(end) if end <= now => ConsentStatus::Expired,
        _ => stored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consent_is_expired_from_the_moment_its_end_passes_whatever_was_stored() {
        let end = DateTime::from_timestamp_millis(1_790_000_000_000).unwrap_or_default();
        let before = end - chrono::TimeDelta::milliseconds(1);
        use ConsentStatus::{Active, Expired};
        assert_eq!(consent_status_at(Active, Some(end), before), Active);
        assert_eq!(consent_status_at(Active, Some(end), end), Expired);
        assert_eq!(consent_status_at(Active, None, end), Active);
        assert_eq!(consent_status_at(Expired, Some(end), before), Expired);
        assert_eq!(consent_status_at(Expired, None, before), Expired);
        let account = AccountState::active("a").consent_until(end);
        assert!(account.has_valid_consent(before) && !account.has_valid_consent(end));
    }
}
