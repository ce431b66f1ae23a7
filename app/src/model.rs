//! The data the portal's pages show, shared by the server (which fills it) and the
//! browser (which hydrates from it). Instants travel as Unix milliseconds: the browser
//! then needs no date parser, which keeps the wasm small.

use chrono::serde::{ts_milliseconds, ts_milliseconds_option};
use chrono::{DateTime, Utc};
use freshet_rules::{AccountState, ConsentStatus, EventType, Outcome, SkipReason};
use serde::{Deserialize, Serialize};

/// The signed-in portal user, as the server found them from the session cookie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewer {
    /// Their email.
    pub email: String,
    /// Their partner's id.
    pub partner_id: String,
    /// Their partner's name.
    pub partner_name: String,
    /// The token this session's state-changing forms carry (CSRF).
    pub csrf: String,
}

/// The token the sign-in form carries, matching the cookie set with the form (login CSRF:
/// another site cannot sign a visitor in to an account of its choosing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignInToken(pub String);

/// A word of a closed set, as the portal shows and styles it (`data-state` attributes).
pub trait Label {
    /// The wire name, e.g. `PARTIALLY_FAILED`.
    fn as_str(&self) -> &'static str;
}

/// Defines a closed set of names that travels as `SCREAMING_SNAKE_CASE`.
macro_rules! states {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }
        impl Label for $name {
            fn as_str(&self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }
    };
}

states! {
    /// Where a job, or one account of it, is.
    JobState {
        /// Waiting for a worker.
        Queued => "QUEUED",
        /// Being fetched.
        Running => "RUNNING",
        /// Done.
        Succeeded => "SUCCEEDED",
        /// Some accounts failed (jobs only).
        PartiallyFailed => "PARTIALLY_FAILED",
        /// Failed.
        Failed => "FAILED",
    }
}

impl JobState {
    /// Whether it has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::PartiallyFailed | Self::Failed)
    }
}

states! {
    /// Why a job exists.
    JobKind {
        /// A partner's on-demand refresh.
        OnDemand => "ON_DEMAND",
        /// The scheduler's periodic refresh.
        Scheduled => "SCHEDULED",
        /// The first fetch after a connection.
        Initial => "INITIAL",
    }
}

states! {
    /// Where a user came from.
    UserSource {
        /// The partner's direct connection journey: refreshable on demand.
        Direct => "DIRECT",
        /// The marketplace: never refreshed on demand.
        Marketplace => "MARKETPLACE",
    }
}

states! {
    /// Whether a subscription's deliveries go out.
    SubscriptionState {
        /// Delivering.
        Active => "ACTIVE",
        /// Paused by the partner.
        Paused => "PAUSED",
        /// Disabled by a 410 Gone.
        Disabled => "DISABLED",
    }
}

states! {
    /// How one webhook attempt went.
    AttemptOutcome {
        /// Being sent now.
        InProgress => "IN_PROGRESS",
        /// Acknowledged with a 2xx.
        Succeeded => "SUCCEEDED",
        /// Anything else.
        Failed => "FAILED",
    }
}

states! {
    /// Where a webhook delivery stands.
    DeliveryState {
        /// Waiting for its next attempt.
        Pending => "PENDING",
        /// Acknowledged.
        Succeeded => "SUCCEEDED",
        /// Failed for good (until redelivered).
        Failed => "FAILED",
    }
}

/// What the portal does to a webhook subscription (the value of its forms' `action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionAction {
    /// Stop delivering; events are kept.
    Pause,
    /// Deliver again (and re-enable after a 410).
    Resume,
    /// Send a signed test event.
    Test,
    /// Delete it with its log.
    Delete,
    /// Replace the secret (the new one is shown once).
    Rotate,
}

impl SubscriptionAction {
    /// The form value, e.g. `pause`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Test => "test",
            Self::Delete => "delete",
            Self::Rotate => "rotate",
        }
    }
}

/// How the sandbox bank should behave for the viewer's accounts (the value of the form's `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Healthy.
    None,
    /// Answers 5xx.
    ServerError,
    /// Answers 429.
    RateLimited,
    /// Never answers.
    Timeout,
    /// Says the consent was revoked.
    ConsentRevoked,
}

/// One event of the portal's live stream, as the page needs it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct LiveEvent {
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// What it is about.
    pub payload: LivePayload,
}

/// The part of an event's payload the live page reads.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LivePayload {
    /// The job (on-demand refreshes only).
    pub job_id: Option<String>,
    /// The account.
    pub account_id: String,
}

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
    /// Transactions stored for it.
    pub transaction_count: i64,
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
        format!(
            "{} {}",
            self.provider_name,
            Self::type_words(&self.account_type)
        )
    }

    /// An account type in words: "current account", "savings", ...
    pub fn type_words(account_type: &str) -> &str {
        match account_type {
            "CURRENT" => "current account",
            "SAVINGS" => "savings",
            "CREDIT_CARD" => "credit card",
            "LOAN" => "loan",
            "MORTGAGE" => "mortgage",
            other => other,
        }
    }
}

/// A user and their accounts, with the partner's clock and refresh interval at the
/// moment of reading, so that the browser's preview decides exactly as the server would.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDetail {
    /// The user's id.
    pub user_id: String,
    /// Direct or marketplace (never refreshed on demand).
    pub source: UserSource,
    /// The partner's reference.
    pub external_reference: Option<String>,
    /// The server's `now` when the data was read (the sandbox clock, when shifted).
    #[serde(with = "ts_milliseconds")]
    pub now: DateTime<Utc>,
    /// The server's refresh interval.
    pub interval_seconds: i64,
    /// The user's connected accounts, by account id.
    pub accounts: Vec<PortalAccount>,
    /// The user's consents at their banks, each with its accounts.
    pub connections: Vec<PortalConnection>,
    /// A refresh of this user still running when the page was read.
    pub open_job: Option<JobProgress>,
    /// Whether the server runs the sandbox (its panel is offered).
    pub sandbox: bool,
}

/// One consent of a user at a bank, as the user's page lists it (the bank's id for the
/// consent stays on the server).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalConnection {
    /// The bank's name.
    pub bank_name: String,
    /// The consent's stored status (ended by a revocation or an unlink: `EXPIRED`).
    pub consent_status: ConsentStatus,
    /// When the user must renew it, if it has an end.
    #[serde(with = "ts_milliseconds_option")]
    pub consent_expires_at: Option<DateTime<Utc>>,
    /// Its accounts, in words ("current account", "savings").
    pub accounts: Vec<String>,
}

/// One user of the users list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserListItem {
    /// The user.
    pub user_id: String,
    /// Direct or marketplace.
    pub source: UserSource,
    /// The partner's reference.
    pub external_reference: Option<String>,
    /// When it was created.
    #[serde(with = "ts_milliseconds")]
    pub created_at: DateTime<Utc>,
    /// Connected accounts.
    pub accounts: i64,
    /// The newest refresh of its accounts.
    #[serde(with = "ts_milliseconds_option")]
    pub last_refresh: Option<DateTime<Utc>>,
}

/// A page of the users list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsersPage {
    /// The users.
    pub items: Vec<UserListItem>,
    /// Whether a next page exists.
    pub has_more: bool,
    /// The server's now.
    #[serde(with = "ts_milliseconds")]
    pub now: DateTime<Utc>,
}

/// One account's answer of a refresh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountOutcome {
    /// The account.
    pub account_id: String,
    /// Triggered or skipped.
    pub outcome: Outcome,
    /// Why it was skipped.
    pub reason: Option<SkipReason>,
}

/// What the refresh answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshReply {
    /// 201 (a job) or 200 (nothing triggered).
    pub status: u16,
    /// The job, on a 201.
    pub job_id: Option<String>,
    /// Per account.
    pub accounts: Vec<AccountOutcome>,
    /// On a 200: when a refresh would trigger next.
    #[serde(with = "ts_milliseconds_option")]
    pub next_refresh_available_at: Option<DateTime<Utc>>,
    /// A refusal the user can act on (marketplace user, partner not enrolled).
    pub refused: Option<String>,
}

/// Where one account of a job is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemProgress {
    /// The account.
    pub account_id: String,
    /// Where its fetch is.
    pub state: JobState,
    /// New transactions, once succeeded.
    pub new_transactions: Option<i64>,
    /// Why it failed.
    pub error_code: Option<String>,
    /// The account's `lastTransactionRefreshDate` now.
    #[serde(with = "ts_milliseconds_option")]
    pub last_refresh: Option<DateTime<Utc>>,
    /// Transactions stored for the account now.
    pub transaction_count: i64,
}

/// Where a job is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProgress {
    /// The job.
    pub job_id: String,
    /// Its status.
    pub status: JobState,
    /// Its accounts.
    pub items: Vec<ItemProgress>,
}

/// One job of the jobs list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobListItem {
    /// The job.
    pub job_id: String,
    /// Whose.
    pub user_id: String,
    /// Why it exists.
    pub kind: JobKind,
    /// Its status.
    pub status: JobState,
    /// When it was created.
    #[serde(with = "ts_milliseconds")]
    pub created_at: DateTime<Utc>,
    /// When it ended.
    #[serde(with = "ts_milliseconds_option")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Its accounts.
    pub accounts: i64,
    /// Those that ended.
    pub done: i64,
}

/// A page of the jobs list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsPage {
    /// The jobs.
    pub items: Vec<JobListItem>,
    /// Whether a next page exists.
    pub has_more: bool,
}

/// One account of a job, with timings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobItemView {
    /// The account.
    pub account_id: String,
    /// Its state.
    pub state: JobState,
    /// Fetch attempts.
    pub attempts: i64,
    /// When a worker took it.
    #[serde(with = "ts_milliseconds_option")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(with = "ts_milliseconds_option")]
    pub finished_at: Option<DateTime<Utc>>,
    /// New transactions.
    pub new_transactions: Option<i64>,
    /// Why it failed.
    pub error_code: Option<String>,
}

/// An event of a job and its webhook deliveries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEventView {
    /// The event.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// Its account.
    pub account_id: String,
    /// When it was committed.
    #[serde(with = "ts_milliseconds")]
    pub created_at: DateTime<Utc>,
    /// Each delivery: (subscription, its state, attempts).
    pub deliveries: Vec<(String, DeliveryState, i64)>,
}

/// A job with everything about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDetail {
    /// The job.
    pub job: JobListItem,
    /// Its accounts.
    pub items: Vec<JobItemView>,
    /// Its events.
    pub events: Vec<JobEventView>,
}

/// A webhook subscription.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionView {
    /// Its id.
    pub id: String,
    /// Where deliveries go.
    pub target_url: String,
    /// What it receives.
    pub event_types: Vec<EventType>,
    /// Whether it delivers.
    pub status: SubscriptionState,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// When it was created.
    #[serde(with = "ts_milliseconds")]
    pub created_at: DateTime<Utc>,
}

/// One attempt of the attempt log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptView {
    /// The event.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// 1-based.
    pub attempt: u32,
    /// When.
    #[serde(with = "ts_milliseconds")]
    pub attempted_at: DateTime<Utc>,
    /// How it went.
    pub outcome: AttemptOutcome,
    /// The receiver's status.
    pub status_code: Option<u16>,
    /// Latency.
    pub latency_ms: Option<u64>,
    /// Why it failed.
    pub error_kind: Option<String>,
    /// The start of the answer.
    pub response_excerpt: Option<String>,
    /// When it is tried again.
    #[serde(with = "ts_milliseconds_option")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The delivery's state now.
    pub delivery_status: DeliveryState,
}

/// One point of the delivery chart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartPoint {
    /// When.
    #[serde(with = "ts_milliseconds")]
    pub at: DateTime<Utc>,
    /// Latency, when the receiver answered.
    pub latency_ms: Option<i64>,
    /// Whether it succeeded.
    pub succeeded: bool,
}

/// A subscription with its attempt log and the last 24 h of outcomes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionDetail {
    /// The subscription.
    pub subscription: SubscriptionView,
    /// The newest attempts.
    pub attempts: Vec<AttemptView>,
    /// The last 24 hours.
    pub chart: Vec<ChartPoint>,
    /// The server's now.
    #[serde(with = "ts_milliseconds")]
    pub now: DateTime<Utc>,
}

/// A bank the partner's users can connect, and how it has been answering.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankView {
    /// Its id.
    pub bank_id: String,
    /// Its name.
    pub name: String,
    /// `AVAILABLE`, `DEGRADED` or `UNAVAILABLE`.
    pub status: String,
}

/// One hour of the operations page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpsHour {
    /// When the hour starts.
    #[serde(with = "ts_milliseconds")]
    pub start: DateTime<Utc>,
    /// Account refreshes that ended with data.
    pub fetches_succeeded: u32,
    /// Account refreshes that failed.
    pub fetches_failed: u32,
    /// Webhook attempts acknowledged.
    pub webhooks_succeeded: u32,
    /// Webhook attempts that failed.
    pub webhooks_failed: u32,
    /// Median webhook latency, in milliseconds.
    pub webhook_p50_ms: Option<i64>,
    /// 95th percentile webhook latency, in milliseconds.
    pub webhook_p95_ms: Option<i64>,
}

/// One bank's last 24 hours.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankLatency {
    /// The bank.
    pub bank_id: String,
    /// Fetches ended.
    pub fetches: u32,
    /// Of them, failed.
    pub failed: u32,
    /// Median fetch time, in milliseconds.
    pub p50_ms: Option<i64>,
    /// 95th percentile fetch time, in milliseconds.
    pub p95_ms: Option<i64>,
}

/// The operations page: the partner's last 24 hours.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationsView {
    /// The server's now (the last hour ends here).
    #[serde(with = "ts_milliseconds")]
    pub now: DateTime<Utc>,
    /// 24 hours, oldest first.
    pub hours: Vec<OpsHour>,
    /// The banks fetched from.
    pub banks: Vec<BankLatency>,
}

/// An API key (never the key itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyView {
    /// Its id.
    pub id: String,
    /// Its first characters.
    pub prefix: String,
    /// When it was created.
    #[serde(with = "ts_milliseconds")]
    pub created_at: DateTime<Utc>,
    /// When it was revoked.
    #[serde(with = "ts_milliseconds_option")]
    pub revoked_at: Option<DateTime<Utc>>,
}
