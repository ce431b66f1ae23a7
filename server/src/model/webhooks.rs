//! The webhook resources as the API writes them (`shared/spec/api.md`, Webhooks).

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ts, ts_opt};

/// The type of the event `POST .../test` sends (to every subscription, whatever it asked for).
pub const TEST_EVENT_TYPE: &str = "v1.webhook.test";

/// Whether deliveries go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SubscriptionStatus {
    /// Delivering.
    Active,
    /// Paused by the partner: events are kept and delivered when it resumes.
    Paused,
    /// The receiver answered `410 Gone`: nothing is delivered until the partner resumes it.
    Disabled,
}

/// A webhook subscription.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// Its id.
    pub subscription_id: Uuid,
    /// Where deliveries are POSTed.
    pub target_url: String,
    /// The event types delivered.
    pub event_types: Vec<String>,
    /// `ACTIVE`, `PAUSED` or `DISABLED`.
    pub status: SubscriptionStatus,
    /// Why it was disabled (`GONE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Until when the secret before the last rotation still signs.
    #[serde(serialize_with = "ts_opt", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// When it was created.
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String)]
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String)]
    pub updated_at: DateTime<Utc>,
}

/// A subscription with its signing secret: the answer of create and rotate, the only time
/// the secret is shown.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WithSecret {
    /// The subscription.
    #[serde(flatten)]
    pub subscription: Subscription,
    /// `whsec_...`: keep it; it is not shown again.
    pub secret: String,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx acknowledged it.
    Succeeded,
    /// Every attempt failed, or the subscription was disabled: redeliver or recover it.
    Failed,
}

/// How one attempt went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AttemptOutcome {
    /// Being sent now.
    InProgress,
    /// Acknowledged with a 2xx.
    Succeeded,
    /// Anything else.
    Failed,
}

/// Why an attempt failed, beyond its status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorKind {
    /// The receiver answered a non-2xx status (see `statusCode`).
    HttpStatus,
    /// A 3xx: redirects are never followed.
    Redirect,
    /// No answer within 5 seconds.
    Timeout,
    /// The connection failed (refused, reset, TLS, DNS).
    Connection,
    /// The target resolved to an address that is not public (SSRF guard).
    TargetForbidden,
    /// The server stopped while the attempt was in flight; the delivery was tried again.
    Interrupted,
}

impl ErrorKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::HttpStatus => "HTTP_STATUS",
            Self::Redirect => "REDIRECT",
            Self::Timeout => "TIMEOUT",
            Self::Connection => "CONNECTION",
            Self::TargetForbidden => "TARGET_FORBIDDEN",
            Self::Interrupted => "INTERRUPTED",
        }
    }
}

/// One attempt of the attempt log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// The event (and delivery) id.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// 1 for the first attempt of this event to this subscription.
    pub attempt: u32,
    /// When it started.
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String)]
    pub attempted_at: DateTime<Utc>,
    /// How it went.
    pub outcome: AttemptOutcome,
    /// The receiver's status code, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// From the request's start to the answer's headers, or to the failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub error_kind: Option<String>,
    /// The start of the receiver's answer (at most 512 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_excerpt: Option<String>,
    /// When this failure is tried again (absent when it is not).
    #[serde(serialize_with = "ts_opt", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Where the delivery stands now.
    pub delivery_status: DeliveryStatus,
}
